"""Every figure of a chapter has a numbered caption, and the chapter's prose refers to it.

A code cell that draws a figure carries MyST-NB's cell metadata
`{"mystnb": {"figure": {"caption": ..., "name": "fig-..."}}}`, written on the cell's header line
in the jupytext source (`# %% mystnb={"figure": {...}}`). myst-nb then wraps the cell's output in
a numbered figure ("Fig. 4.2", see reidnb.book.fignumbers) with that caption, and the prose
names it with MyST's role {numref}`fig-...`. tools/check_book_offline.py checks the built pages
(no figure image without a numbered caption); these checks read the sources.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
# {numref}`fig-x` or {numref}`Fig. %s, the sweep <fig-x>`
NUMREF_RE = re.compile(r"\{numref\}`([^`]*)`")
# a label Sphinx keeps as written (it lowercases and collapses whitespace in others)
NAME_RE = re.compile(r"^fig-[a-z0-9][a-z0-9-]*$")
VERDICTS_MIME = "application/vnd.reidnb.verdicts+json"  # taken out of the page by the book


def cell_source(cell) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def figures(nb) -> list[tuple[int, dict]]:
    """(cell index, figure options) of every cell with `mystnb.figure` metadata."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        figure = ((cell.get("metadata") or {}).get("mystnb") or {}).get("figure")
        if figure is not None:
            out.append((i, figure))
    return out


def numref_targets(text: str) -> list[str]:
    targets = []
    for ref in NUMREF_RE.findall(text):
        m = re.search(r"<([^<>]+)>\s*$", ref)
        targets.append((m.group(1) if m else ref).strip())
    return targets


def prose_targets(nb) -> list[str]:
    return [t for cell in nb["cells"] if cell["cell_type"] == "markdown"
            for t in numref_targets(cell_source(cell))]


@pytest.fixture(scope="module")
def chapters() -> dict[str, object]:
    return {path.stem: jupytext.read(path) for path in SOURCES}


def test_the_chapters_are_found():
    assert [p.stem[:2] for p in SOURCES][:6] == ["01", "02", "03", "04", "05", "06"]


def test_numref_targets_reads_plain_and_titled_references():
    text = "See {numref}`fig-04-bag` and {numref}`Fig. %s, the sweep <fig-04-sweep>`."
    assert numref_targets(text) == ["fig-04-bag", "fig-04-sweep"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_figure_has_a_caption_and_a_fig_name(path, chapters):
    nb = chapters[path.stem]
    for i, figure in figures(nb):
        where = f"{path.name}, cell {i}"
        assert nb["cells"][i]["cell_type"] == "code", f"{where}: a figure must be a code cell"
        assert isinstance(figure, dict), f"{where}: mystnb.figure must be a mapping"
        caption = figure.get("caption")
        assert isinstance(caption, str) and caption.strip(), f"{where}: no caption"
        name = figure.get("name")
        assert isinstance(name, str) and NAME_RE.match(name), (
            f"{where}: name {name!r} should start with 'fig-' (lowercase letters, digits, '-')")


def test_figure_names_are_unique_in_the_book(chapters):
    # Sphinx labels are global: two chapters may not use one name either
    seen: dict[str, str] = {}
    for stem, nb in chapters.items():
        for i, figure in figures(nb):
            name = figure.get("name")
            assert name not in seen, f"{stem}, cell {i}: figure name {name!r} also in {seen[name]}"
            seen[name] = f"{stem}, cell {i}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_numref_names_a_figure_of_its_chapter(path, chapters):
    nb = chapters[path.stem]
    names = {figure.get("name") for _, figure in figures(nb)}
    unknown = sorted(set(prose_targets(nb)) - names)
    assert unknown == [], f"{path.name}: {{numref}} to no figure of this chapter: {unknown}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_figure_is_referred_to_in_its_chapter(path, chapters):
    nb = chapters[path.stem]
    if not figures(nb):
        if path.stem.startswith("07_"):
            pytest.skip(f"{path.name} has no captioned figure yet")
        return  # a chapter without figures (99_claims) has nothing to refer to
    referred = set(prose_targets(nb))
    silent = [figure["name"] for _, figure in figures(nb) if figure["name"] not in referred]
    assert silent == [], f"{path.name}: no {{numref}} in the prose to {silent}"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.stem[:2] in
                                  ("01", "02", "03", "04", "05", "06")], ids=lambda p: p.name)
def test_chapters_1_to_6_caption_their_figures(path, chapters):
    assert figures(chapters[path.stem]), f"{path.name}: no captioned figure"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_figure_metadata_survives_a_jupytext_round_trip(path, chapters):
    nb = chapters[path.stem]
    again = jupytext.reads(jupytext.writes(nb, fmt="py:percent"), fmt="py:percent")
    assert [(c["cell_type"], cell_source(c), c.get("metadata")) for c in again["cells"]] == \
        [(c["cell_type"], cell_source(c), c.get("metadata")) for c in nb["cells"]]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.name)
def test_a_captioned_cell_of_an_executed_notebook_shows_one_image(path):
    """myst-nb wraps *each* display output of a captioned cell in a figure of that name: a
    second output would repeat the caption and the label (the book takes verdict records out
    before, so they do not count)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, figure in figures(nb):
        shown = [o for o in nb["cells"][i].get("outputs", [])
                 if o.get("output_type") in ("display_data", "execute_result")
                 and VERDICTS_MIME not in (o.get("data") or {})]
        images = [o for o in shown if any(k.startswith("image/") for k in o.get("data", {}))]
        assert len(shown) == 1 and len(images) == 1, (
            f"{path.name}, cell {i} ({figure.get('name')}): {len(shown)} display outputs, "
            f"{len(images)} of them images; a captioned cell must show exactly one figure")
