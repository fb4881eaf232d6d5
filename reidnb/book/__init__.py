"""The book: the main job (papermill over every chapter), its assembly into an offline HTML book,
and what chapters import to set up, show source and browse results (notebook, widgets)."""
