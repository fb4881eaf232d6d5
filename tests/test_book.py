"""Tests of reidnb.book: assembling the book folder, the offline scan, and one real build."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from reidnb.book import assemble as book
from reidnb.book.assemble import BookError

REPO = Path(__file__).resolve().parent.parent


def write_nb(path: Path, title: str, code: str = "1 + 1") -> Path:
    """A minimal nbformat-4 notebook: a title cell and one code cell."""
    nb = {
        "cells": [
            {"cell_type": "markdown", "id": "t", "metadata": {}, "source": f"# {title}"},
            {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": None,
             "outputs": [], "source": code},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def write_book_src(root: Path, claims: bool = True) -> Path:
    src = root / "book"
    src.mkdir(parents=True)
    (src / "_config.yml").write_text("title: t\n")
    (src / "intro.md").write_text("# Intro\n")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: claims\n")
    (src / "package.json").write_text("{}")
    if claims:
        (src / "claims.md").write_text("# Claims\n")
    return src


def toc_files(out: Path) -> list[str]:
    toc = yaml.safe_load((out / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def test_assemble_toc_lists_chapters_in_nn_order(tmp_path):
    src = write_book_src(tmp_path)
    for name in ("10_late", "02_b", "01_a"):
        write_nb(tmp_path / "executed" / f"{name}.ipynb", name)
    (tmp_path / "notebooks").mkdir()
    asm = book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "notebooks")
    assert toc_files(tmp_path / "out") == ["intro", "01_a", "02_b", "10_late", "claims"]
    assert asm.chapters == ["01_a", "02_b", "10_late"] and asm.fallbacks == []
    assert (tmp_path / "out" / "intro.md").is_file()
    assert not (tmp_path / "out" / "package.json").exists()


def test_assemble_falls_back_to_committed_notebook_with_note(tmp_path):
    src = write_book_src(tmp_path)
    write_nb(tmp_path / "executed" / "01_a.ipynb", "A")
    write_nb(tmp_path / "notebooks" / "01_a.ipynb", "A committed")
    write_nb(tmp_path / "notebooks" / "02_b.ipynb", "B")
    (tmp_path / "notebooks" / "02_b.py").write_text("# %%\n1\n")
    asm = book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "notebooks")
    assert asm.fallbacks == ["02_b"]
    executed = json.loads((tmp_path / "out" / "01_a.ipynb").read_text())
    assert executed["cells"][0]["source"] == "# A" and len(executed["cells"]) == 2
    fallback = json.loads((tmp_path / "out" / "02_b.ipynb").read_text())
    note = fallback["cells"][1]
    assert fallback["cells"][0]["source"] == "# B"  # the title stays first
    assert note["metadata"]["tags"] == ["reidnb-fallback"]
    assert "{admonition}" in note["source"] and "02_b.ipynb" in note["source"]
    assert "smoke" in note["source"]


def test_assemble_raises_when_chapter_has_no_notebook(tmp_path):
    src = write_book_src(tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "03_c.py").write_text("# %%\n1\n")
    with pytest.raises(BookError, match=r"chapter 03_c: neither .*03_c\.ipynb"):
        book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "notebooks")


def test_assemble_leaves_out_declared_page_without_file(tmp_path):
    src = write_book_src(tmp_path, claims=False)
    write_nb(tmp_path / "executed" / "01_a.ipynb", "A")
    asm = book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "nb")
    assert asm.missing_pages == ["claims"] and asm.pages == []
    assert toc_files(tmp_path / "out") == ["intro", "01_a"]


def test_assemble_keeps_build_cache_and_drops_stale_chapters(tmp_path):
    src = write_book_src(tmp_path)
    out = tmp_path / "out"
    write_nb(out / "09_old.ipynb", "old")
    (out / "_build").mkdir()
    (out / "_build" / "keep.txt").write_text("cache")
    write_nb(tmp_path / "executed" / "01_a.ipynb", "A")
    book.assemble(tmp_path / "executed", out, src, tmp_path / "nb")
    assert (out / "_build" / "keep.txt").read_text() == "cache"
    assert not (out / "09_old.ipynb").exists()
    assert "09_old" not in toc_files(out)


def test_assemble_refuses_out_dir_holding_its_sources(tmp_path):
    src = write_book_src(tmp_path)
    write_nb(tmp_path / "out" / "executed" / "01_a.ipynb", "A")
    with pytest.raises(BookError, match="would hold executed_dir"):
        book.assemble(tmp_path / "out" / "executed", tmp_path / "out", src, tmp_path / "nb")
    with pytest.raises(BookError, match="would hold book_src"):
        book.assemble(tmp_path / "executed", src, src, tmp_path / "nb")
    assert (tmp_path / "out" / "executed" / "01_a.ipynb").is_file()


def test_assemble_rejects_folder_without_config(tmp_path):
    (tmp_path / "book").mkdir()
    with pytest.raises(BookError, match=r"expected a Jupyter Book folder with _config\.yml"):
        book.assemble(tmp_path / "executed", tmp_path / "out", tmp_path / "book", tmp_path)


def test_chapter_key_orders_by_number_and_rejects_bad_names():
    assert sorted(["10_x", "02_y", "02_a"], key=book.chapter_key) == ["02_a", "02_y", "10_x"]
    with pytest.raises(BookError, match="NN_topic"):
        book.chapter_key("intro")


HTML_PAGE = """<!doctype html><html><head>
<link rel="stylesheet" href="https://cdn.example.org/theme.css">
<link rel="canonical" href="https://book.example.org/page.html">
<link rel="stylesheet" href="_static/local.css">
<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js"></script>
<script src="_static/vendor/requirejs/require.js"></script>
<script data-jupyter-widgets-cdn="https://cdn.jsdelivr.net/npm/" src="_static/e.js"></script>
<script>const X = "https://unpkg.com/thebe@0.8.2/lib/index.js";</script>
<style>body { background: url("https://img.example.org/bg.png"); }</style>
<meta property="og:image" content="https://img.example.org/og.png">
</head><body>
<a href="https://arxiv.org/abs/1703.07737">paper</a>
<img src="http://img.example.org/a.png" srcset="local.png 1x, https://img.example.org/b.png 2x">
<div style="background-image:url(//img.example.org/c.png)">x</div>
<img src="_static/ok.png">
</body></html>
"""


def test_find_remote_references_reports_loading_tags_only(tmp_path):
    (tmp_path / "page.html").write_text(HTML_PAGE)
    urls = sorted(u for _, u in book.find_remote_references(tmp_path))
    assert urls == sorted([
        "https://cdn.example.org/theme.css",
        "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js",
        "https://cdn.jsdelivr.net/npm/",
        "https://unpkg.com/thebe@0.8.2/lib/index.js",
        "https://img.example.org/bg.png",
        "http://img.example.org/a.png",
        "https://img.example.org/b.png",
        "//img.example.org/c.png",
    ])


def test_find_remote_references_scans_css_and_js_but_not_vendored_js(tmp_path):
    static = tmp_path / "_static"
    (static / "vendor" / "lib").mkdir(parents=True)
    (static / "a.css").write_text(
        "/* @import url('https://fonts.googleapis.com/css?family=X'); */\n"
        "@import 'https://fonts.googleapis.com/css?family=Y';\n"
        ".i { background: url(../img/local.svg); }\n")
    (static / "a.js").write_text('var l = "https://github.com/x/LICENSE";\n'
                                 'load("https://cdn.jsdelivr.net/npm/pkg@1/dist/x.js");\n')
    (static / "vendor" / "lib" / "v.js").write_text('var cdn = "https://unpkg.com/";\n')
    (tmp_path / "_sources").mkdir()
    (tmp_path / "_sources" / "p.html").write_text('<script src="https://unpkg.com/x"></script>')
    found = {(p.name, u) for p, u in book.find_remote_references(tmp_path)}
    assert found == {("a.css", "https://fonts.googleapis.com/css?family=Y"),
                     ("a.js", "https://cdn.jsdelivr.net/npm/pkg@1/dist/x.js")}


def test_find_remote_references_rejects_missing_folder(tmp_path):
    with pytest.raises(BookError, match="expected a folder of built HTML"):
        book.find_remote_references(tmp_path / "nope")


def test_install_vendor_names_npm_when_missing(tmp_path, monkeypatch):
    src = tmp_path / "book"
    src.mkdir()
    (src / "package.json").write_text("{}")
    (src / "package-lock.json").write_text("{}")
    monkeypatch.setattr(book.shutil, "which", lambda name: None)
    with pytest.raises(BookError, match="npm not found on PATH"):
        book.install_vendor(src, tmp_path / "vendor")


def test_install_vendor_requires_lock_file(tmp_path):
    (tmp_path / "package.json").write_text("{}")
    with pytest.raises(BookError, match=r"package-lock\.json is missing"):
        book.install_vendor(tmp_path, tmp_path / "vendor")


def test_run_jupyter_book_failure_shows_log_tail(tmp_path):
    (tmp_path / "_config.yml").write_text("title: t\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: missing_page\n")
    with pytest.raises(BookError, match=r"(?s)jupyter-book build .* failed .*build\.log"):
        book.run_jupyter_book(tmp_path)
    assert (tmp_path / "_build" / "build.log").is_file()


# --- one real build -----------------------------------------------------------------------

CHAPTER_PY = '''# %% [markdown]
# # Tiny chapter
#
# The margin loss is $\\ell = [m + d_{ap} - d_{an}]_+$ and
#
# $$ \\mathrm{mAP} = \\frac{1}{|Q|} \\sum_{q \\in Q} \\mathrm{AP}(q) $$

# %% tags=["parameters"]
profile = "smoke"

# %%
import ipywidgets as widgets
widgets.FloatSlider(value=0.3, min=0.0, max=1.0, description=r"$\\lambda$")
'''


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """Execute one tiny chapter with papermill and build the book with the real book/ config."""
    if shutil.which("npm") is None and not (REPO / "build" / "vendor" / "node_modules").is_dir():
        pytest.skip("npm is not installed and build/vendor/ holds no vendored JavaScript")
    jupytext = pytest.importorskip("jupytext")
    papermill = pytest.importorskip("papermill")
    root = tmp_path_factory.mktemp("tinybook")
    nb = jupytext.reads(CHAPTER_PY, fmt="py:percent")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    jupytext.write(nb, root / "src.ipynb")
    (root / "executed").mkdir()
    papermill.execute_notebook(str(root / "src.ipynb"), str(root / "executed" / "01_tiny.ipynb"),
                               parameters={"profile": "synthetic"}, kernel_name="python3",
                               progress_bar=False)
    with warnings.catch_warnings():  # book/ may declare pages (claims.md) not written yet
        warnings.simplefilter("ignore", book.BookWarning)
        return book.build(root / "executed", root / "book", notebooks_dir=root / "nb",
                          vendor_dir=REPO / "build" / "vendor", strict=True)


@pytest.mark.slow
def test_build_tiny_book_serves_math_and_widgets_locally(tiny_book):
    html = tiny_book.parent
    page = (html / "01_tiny.html").read_text()
    assert tiny_book.is_file() and (html / "intro.html").is_file()
    assert 'src="_static/vendor/mathjax/es5/tex-mml-chtml.js' in page
    assert 'src="_static/vendor/requirejs/require.js' in page
    assert 'src="_static/vendor/html-manager/embed-amd.js' in page
    assert "application/vnd.jupyter.widget-state+json" in page
    assert (html / "_static" / "vendor" / "mathjax" / "es5" / "output" / "chtml" / "fonts"
            / "woff-v2" / "MathJax_Main-Regular.woff").is_file()
    assert list((html / "_static" / "vendor" / "html-manager").glob("*.woff2"))
    assert "thebe" not in page.lower()
    assert book.find_remote_references(html) == []


@pytest.mark.slow
def test_book_pages_render_offline_in_chromium(tiny_book, tmp_path):
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    spec = importlib.util.spec_from_file_location(
        "check_book_offline", REPO / "tools" / "check_book_offline.py")
    checker = importlib.util.module_from_spec(spec)
    sys.modules["check_book_offline"] = checker  # dataclasses look their module up there
    spec.loader.exec_module(checker)
    (rep,) = checker.check_book(tiny_book.parent, tmp_path, pages=["01_tiny.html"])
    assert rep.outside_requests == [] and rep.local_404 == []
    assert rep.math_typeset >= 3  # two in the markdown, one in the slider's label
    assert rep.widget_views == 1 and rep.widgets_rendered == 1
    assert rep.console_errors == []
    assert rep.screenshot.stat().st_size > 10_000


def test_clean_notebook_ids_follow_the_sources_so_refreshes_keep_them():
    import nbformat

    from reidnb.book.mainjob import clean_notebook

    def nb(sources):
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])

    a, b = nb(["x = 1", "print(x)", "print(x)"]), nb(["x = 1", "print(x)", "print(x)"])
    c = nb(["x = 2", "print(x)", "print(x)"])
    for n in (a, b, c):
        clean_notebook(n)
    ids = [cell.id for cell in a.cells]
    assert ids == [cell.id for cell in b.cells]        # same sources, same ids
    assert len(set(ids)) == 3                           # repeated sources still get unique ids
    assert c.cells[0].id != ids[0] and [cell.id for cell in c.cells[1:]] == ids[1:]
    nbformat.validate(a)


def test_merge_streams_keeps_what_a_terminal_shows():
    import nbformat

    from reidnb.book.mainjob import merge_streams

    def stream(name, text):
        return nbformat.v4.new_output("stream", name=name, text=text)

    outs = [stream("stderr", "\rep 1:   0%| 0/2"), stream("stderr", "\rep 1:  50%| 1/2"),
            stream("stderr", "\rep 1: 100%| 2/2\r               \r"),
            stream("stdout", "rank-1 91.9\n"), stream("stdout", "done\n"),
            stream("stderr", "abc\rxy\n")]
    merged = merge_streams(outs)
    # the first stderr run is a tqdm bar (leave=False) that cleared itself: nothing is left
    assert [o.name for o in merged] == ["stdout", "stderr"]
    assert merged[0].text == "rank-1 91.9\ndone\n"   # plain prints untouched
    assert merged[1].text == "xyc\n"                 # overwrite from the line's start
