"""reidnb: a thin library behind a reproducibility book for attention-based Siamese re-ID."""

__version__ = "0.1.0"
