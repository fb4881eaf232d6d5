"""Sphinx extension: number a chapter's figures after its file name, "Fig. 4.2" in 04_topic.

With `numfig` on and no numbered toctree (this book numbers its chapters in their titles, not
through the toc), Sphinx numbers figures through the whole book: Fig. 1, 2, ... continuing from
one chapter into the next. After Sphinx has assigned those numbers (`env-get-updated`), this
extension renumbers the figures of every page named `NN_topic` as (NN, k), k counting that
page's figures in order; the caption ("Fig. 4.2") and every {numref} to it, from any page, read
the same numbers. Pages not named `NN_topic`, and numbers that already carry a section number
(a numbered toctree), are left as Sphinx made them. Listed in book/_config.yml's extensions.
"""

from __future__ import annotations

import re
from typing import Any

CHAPTER_RE = re.compile(r"^(\d{2})_[A-Za-z0-9]")

FigNumbers = dict[str, dict[str, dict[str, tuple[int, ...]]]]  # doc -> figtype -> id -> number


def chapter_of(docname: str) -> int | None:
    """The chapter number NN of a page named `NN_topic` (in any folder), else None."""
    m = CHAPTER_RE.match(docname.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def per_chapter(fignumbers: FigNumbers) -> FigNumbers:
    """`fignumbers` (Sphinx's `env.toc_fignumbers`) with each chapter page's numbers (n,)
    replaced by (NN, k), k = 1, 2, ... in the order Sphinx numbered them; a new dict."""
    out: FigNumbers = {}
    for docname, by_type in fignumbers.items():
        chapter = chapter_of(docname)
        out[docname] = {}
        for figtype, numbers in by_type.items():
            if chapter is None or any(len(n) != 1 for n in numbers.values()):
                out[docname][figtype] = dict(numbers)
                continue
            order = sorted(numbers, key=lambda ident: numbers[ident])
            out[docname][figtype] = {ident: (chapter, k) for k, ident in enumerate(order, 1)}
    return out


def _renumber(app: Any, env: Any) -> list[str]:
    if not env.config.numfig:
        return []
    new = per_chapter(env.toc_fignumbers)
    changed = [doc for doc, nums in new.items() if nums != env.toc_fignumbers.get(doc)]
    env.toc_fignumbers = new
    return changed  # pages whose numbers changed are written again


def setup(app: Any) -> dict[str, Any]:
    # after Sphinx's TocTreeCollector (priority 500) has assigned the book-wide numbers
    app.connect("env-get-updated", _renumber, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
