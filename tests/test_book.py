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


def load_checker():
    """tools/check_book_offline.py as a module (it is a script, not part of the package)."""
    if "check_book_offline" in sys.modules:
        return sys.modules["check_book_offline"]
    spec = importlib.util.spec_from_file_location(
        "check_book_offline", REPO / "tools" / "check_book_offline.py")
    checker = importlib.util.module_from_spec(spec)
    sys.modules["check_book_offline"] = checker  # dataclasses look their module up there
    spec.loader.exec_module(checker)
    return checker


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
    # papermill's injected cell is not shown; the parameters are one line with its values
    assert "<em>This build:</em> profile" in page and ">synthetic</span>" in page
    assert load_checker().check_source("01_tiny.html", page).problems() == []


@pytest.mark.slow
def test_book_pages_render_offline_in_chromium(tiny_book, tmp_path):
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    checker = load_checker()
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


# --- the parameters line and folded set-up code --------------------------------------------

def code_cell(source: str, tags: list[str] | None = None, outputs: list | None = None,
              cell_id: str = "c") -> dict:
    return {"cell_type": "code", "id": cell_id, "metadata": {"tags": tags or []},
            "execution_count": 1, "outputs": outputs or [], "source": source}


def md_cell(source: str, cell_id: str = "m") -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def executed_nb(*extra: dict, injected: bool = True) -> dict:
    """A notebook as papermill leaves it: title, parameters, injected parameters, set-up code."""
    cells = [
        md_cell("# Tiny chapter", "title"),
        code_cell('profile = "synthetic"   # the default\ndataset = "synthreid"\n'
                  'device = "cpu"\nseed = 0\nmargin = 0.3\n', ["parameters"], cell_id="params"),
        code_cell('# Parameters\nprofile = "smoke"\ndevice = "cuda"\n', ["injected-parameters"],
                  cell_id="injected"),
        code_cell('import math\nprint("settings", 6 * 7)', ["hide-input"], cell_id="setup",
                  outputs=[{"output_type": "stream", "name": "stdout", "text": "settings 42\n"}]),
        *extra,
    ]
    if not injected:
        cells = [c for c in cells if c["id"] != "injected"]
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}


def test_present_parameters_shows_the_effective_values_as_one_line():
    nb = book.present_parameters(executed_nb())
    assert [c["id"] for c in nb["cells"]] == ["title", "reidnb-parameters", "setup"]
    line = nb["cells"][1]
    assert line["cell_type"] == "markdown" and line["metadata"]["tags"] == ["reidnb-parameters"]
    # the injected values win over the parameters cell's defaults; the rest keep their order
    assert line["source"] == ("*This build:* profile `smoke`, data set `synthreid`, "
                              "device `cuda`, seed 0, margin 0.3.")
    assert nb["cells"][2]["metadata"]["tags"] == ["hide-input"]  # left for myst-nb to fold


def test_present_parameters_names_the_scope_a_none_scope_resolves_to():
    nb = executed_nb()
    nb["cells"][1]["source"] += "scope = None\n"
    line = book.present_parameters(nb)["cells"][1]["source"]
    assert line.endswith("margin 0.3, scope `full` (the profile's default).")  # smoke's
    nb = executed_nb()
    nb["cells"][1]["source"] += "scope = None\n"
    nb["cells"][2]["source"] += 'profile = "synthetic"\nscope = "full"\n'
    line = book.present_parameters(nb)["cells"][1]["source"]
    assert line.startswith("*This build:* profile `synthetic`") and "scope `full`." in line


def test_present_parameters_without_injected_cell_uses_the_defaults():
    nb = book.present_parameters(executed_nb(injected=False))
    assert nb["cells"][1]["source"].startswith("*This build:* profile `synthetic`, data set")
    assert "device `cpu`" in nb["cells"][1]["source"]


def test_present_parameters_with_only_an_injected_cell_replaces_it():
    nb = executed_nb()
    nb["cells"] = [c for c in nb["cells"] if c["id"] != "params"]
    nb = book.present_parameters(nb)
    assert [c["id"] for c in nb["cells"]] == ["title", "reidnb-parameters", "setup"]
    assert nb["cells"][1]["source"] == "*This build:* profile `smoke`, device `cuda`."


def test_present_parameters_leaves_a_notebook_without_parameters_alone():
    nb = {"cells": [md_cell("# T"), code_cell("1 + 1")], "nbformat": 4, "nbformat_minor": 5}
    assert book.present_parameters(json.loads(json.dumps(nb))) == nb


def test_parameter_values_shows_literals_and_expressions():
    values = book.parameter_values('a = "x"  # note\nb: int = 3\nc = d = None\n'
                                   'e = dict(k=1,\n         j=2)\nprint(a)\n')
    assert values == {"a": "`x`", "b": "3", "c": "None", "d": "None", "e": "`dict(k=1, j=2)`"}
    assert book.parameter_values("%load_ext foo\n") == {}  # not Python: nothing, no error


def test_assemble_shows_parameters_as_one_line_in_executed_and_fallback_chapters(tmp_path):
    src = write_book_src(tmp_path)
    (tmp_path / "executed").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "executed" / "01_a.ipynb").write_text(json.dumps(executed_nb()))
    (tmp_path / "notebooks" / "02_b.ipynb").write_text(json.dumps(executed_nb()))
    asm = book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "notebooks")
    assert asm.fallbacks == ["02_b"]
    for name in ("01_a", "02_b"):
        cells = json.loads((tmp_path / "out" / f"{name}.ipynb").read_text())["cells"]
        tags = [t for c in cells for t in c["metadata"].get("tags", [])]
        assert "injected-parameters" not in tags and "parameters" not in tags
        assert sum(c["source"].startswith("*This build:*") for c in cells) == 1
    # the executed notebook itself is not changed
    assert json.loads((tmp_path / "executed" / "01_a.ipynb").read_text()) == executed_nb()


# --- the checks that read the built HTML (tools/check_book_offline.py) ---------------------

# Chapter 3's Step 4 as it was: a $$...$$ inside the paragraph, so MyST pairs its second "$"
# with the one before the later "m" and the sentence between becomes one inline formula.
CH3_STEP4_BROKEN = (
    "## Step 4 — the triplet loss\n"
    "With $d$ the Euclidean distance between embeddings and a margin $m$,\n"
    "$$L(a, p, n) = \\max\\big(d(a, p) - d(a, n) + m,\\ 0\\big).$$\n"
    "The loss is zero once the negative is farther than the positive by at least $m$; only "
    "triplets\nthat break this rule move the weights. A hand-checkable case:")
# What the broken markdown became in the built page (copied from a build before the fix).
CH3_STEP4_BROKEN_HTML = (
    '<p>With <span class="math notranslate nohighlight">\\(d\\)</span> the Euclidean distance '
    'between embeddings and a margin <span class="math notranslate nohighlight">\\(m\\)</span>,\n'
    '$<span class="math notranslate nohighlight">\\(L(a, p, n) = \\max\\big(d(a, p) - d(a, n) + '
    'm,\\ 0\\big).\\)</span><span class="math notranslate nohighlight">\\(\nThe loss is zero '
    'once the negative is farther than the positive by at least \\)</span>m$; only triplets\n'
    'that break this rule move the weights. A hand-checkable case:</p>')
INJECTED_CELL_HTML = (
    '<div class="cell tag_injected-parameters docutils container">\n'
    '<div class="cell_input docutils container">\n<div class="highlight-ipython3 notranslate">'
    '<div class="highlight"><pre><span></span><span class="c1"># Parameters</span>\n'
    '<span class="n">profile</span> <span class="o">=</span> <span class="s2">"smoke"</span>\n')


def test_prose_in_math_finds_the_broken_chapter_3_sentence():
    checker = load_checker()
    (prose,) = [t for t in checker.math_sources(CH3_STEP4_BROKEN_HTML)
                if checker.prose_in_math(t)]
    assert checker.prose_in_math(prose) == ("The loss is zero once the negative is farther "
                                            "than the positive by at least")
    assert checker.prose_in_math("Thelossiszeroonceitisfar") == "Thelossiszeroonceitisfar"
    assert checker.prose_in_math(r"\mathrm{the loss is zero}") == "the loss is zero"


@pytest.mark.parametrize("tex", [
    r"L = \max(d(a,p) - d(a,n) + m, 0)",
    r"\mathrm{ReLU}(f(x_i))^\top",
    r"L(a, p, n) = \max\big(d(a, p) - d(a, n) + m,\ 0\big).",
    r"\mathrm{AP} = \frac{1}{N_{gt}} \sum_{k} P(k)\,\mathrm{rel}(k).",
    r"L_{unif} = \max\big(d(s_q, s_n) - d(s_q, s_p) + m,\ 0\big)",
    r"\hat F = (F \odot A_{ch}) \odot A_{ed}",
    r"y = x \quad \text{for every image in the training set}",
    r"\operatorname{softmax}\left(\frac{QK^\top}{\sqrt{d_k}}\right) V",
    r"a = b",
])
def test_prose_in_math_passes_real_formulas(tex):
    assert load_checker().prose_in_math(tex) is None


def test_math_sources_strip_delimiters_and_entities():
    html = ('<p>x <span class="math notranslate nohighlight">\\(a &lt; b\\)</span></p>'
            '<div class="math notranslate nohighlight">\n\\[L = 1\\]</div>'
            '<span class="mathjax-config">not math</span>')
    assert load_checker().math_sources(html) == ["a < b", "L = 1"]


def test_check_source_reports_injected_cells_prose_and_stray_dollars():
    checker = load_checker()
    rep = checker.check_source("p.html", INJECTED_CELL_HTML + CH3_STEP4_BROKEN_HTML)
    assert rep.injected_cells == 1 and len(rep.prose_math) == 1 and rep.stray_dollars == 1
    assert len(rep.problems()) == 3  # no browser ran, so no "not typeset" problem
    fine = checker.check_source("q.html", '<p>a <span class="math">\\(m\\)</span>; $5</p>')
    assert fine.problems() == []


def _display_math_problems(markdown: str) -> list[str]:
    """Lines where `$$` is not a block of its own (MyST then reads it as inline dollars)."""
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        text = lines[i].strip()
        if text.startswith("$$"):
            end = i if len(text) > 2 and text.endswith("$$") else next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip().endswith("$$")), i)
            if i > 0 and lines[i - 1].strip():
                out.append(f"no blank line before: {text}")
            if end + 1 < len(lines) and lines[end + 1].strip():
                out.append(f"no blank line after: {lines[end].strip()}")
            i = end + 1
            continue
        if "$$" in text:
            out.append(f"$$ inside a line: {text}")
        i += 1
    return out


def test_display_math_helper_flags_the_broken_chapter_3_markdown():
    assert len(_display_math_problems(CH3_STEP4_BROKEN)) == 2
    assert _display_math_problems("a\n\n$$\nx = 1\n$$\n\nb") == []


@pytest.mark.parametrize("source", sorted((REPO / "notebooks").glob("[0-9][0-9]_*.py")),
                         ids=lambda p: p.name)
def test_chapter_display_math_stands_between_blank_lines(source):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(source)
    problems = [p for c in nb.cells if c.cell_type == "markdown"
                for p in _display_math_problems(c.source)]
    assert problems == [], f"{source.name}: put $$...$$ between blank lines: {problems}"


@pytest.fixture(scope="module")
def folded_book(tmp_path_factory) -> Path:
    """The real book config building two hand-made executed chapters (no kernel, no vendored
    JavaScript): one with chapter 3's Step 4 as it is now, one with it as it was."""
    jupytext = pytest.importorskip("jupytext")
    root = tmp_path_factory.mktemp("foldedbook")
    src = root / "src"
    src.mkdir()
    shutil.copy2(REPO / "book" / "_config.yml", src / "_config.yml")
    (src / "intro.md").write_text("# Intro\n")
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    ch3 = jupytext.read(REPO / "notebooks" / "03_lakshmi_siamese_tutorial.py")
    (step4,) = [c.source for c in ch3.cells if c.source.startswith("## Step 4")]
    (root / "executed").mkdir()
    for name, text in (("01_now", step4), ("02_before", CH3_STEP4_BROKEN)):
        nb = executed_nb(md_cell(text, "step4"))
        (root / "executed" / f"{name}.ipynb").write_text(json.dumps(nb))
    book.assemble(root / "executed", root / "book", src, root / "nb")
    return book.run_jupyter_book(root / "book").parent


@pytest.mark.slow
def test_built_page_shows_parameters_line_and_folds_setup_code(folded_book):
    page = (folded_book / "01_now.html").read_text()
    assert "tag_injected-parameters" not in page and "# Parameters" not in page
    assert "tag_parameters" not in page
    assert ("<p><em>This build:</em> profile <code class=\"docutils literal notranslate\">"
            "<span class=\"pre\">smoke</span></code>, data set") in page
    cell = page[page.index('class="cell tag_hide-input'):]
    folded, after = cell.split("</details>", 1)
    assert "<details" in folded and '<span class="kn">import</span>' in folded  # code folded
    assert "settings 42" not in folded and "settings 42" in after.split("</section>")[0]


@pytest.mark.slow
def test_offline_check_passes_chapter_3_now_and_fails_it_before(folded_book):
    checker = load_checker()
    now = checker.check_source("01_now.html", (folded_book / "01_now.html").read_text())
    before = checker.check_source("02_before.html",
                                  (folded_book / "02_before.html").read_text())
    assert now.problems() == []
    assert now.math_in_html >= 4  # d, m, the display equation, m
    assert before.prose_math == ["The loss is zero once the negative is farther than the "
                                 "positive by at least"]
    assert before.stray_dollars == 1


# --- the scoreboard and the table widths (tools/check_book_offline.py) ---------------------

def table_html(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def test_estimate_table_px_sums_each_columns_longest_word():
    checker = load_checker()
    parser = checker._TableParser()
    parser.feed(table_html(["method", "rank1"], [["ResNet-50 +AM+UL", "91.3"]]))
    (rows,) = parser.tables
    width = checker.estimate_table_px(rows, font_px=13)
    # per column the widest word ("ResNet-50" is not broken: a digit follows its hyphen; a
    # header is bold), each with one em of padding
    px = checker.text_px
    expected = (max(px("method", 13, True), px("ResNet-50", 13), px("+AM+UL", 13))
                + max(px("rank1", 13, True), px("91.3", 13)) + 26)
    assert width == pytest.approx(expected)
    # a colspan cell does not widen a column; words wrap at spaces and after "-" + letter
    parser = checker._TableParser()
    parser.feed('<table><tr><th colspan="2">a very long caption over two columns</th></tr>'
                "<tr><td>x</td><td>anchor-positive</td></tr></table>")
    (rows,) = parser.tables
    assert checker.estimate_table_px(rows, 13) == pytest.approx(
        checker.text_px("x", 13) + checker.text_px("positive", 13) + 26)


def test_wide_tables_flags_a_table_past_the_text_column_only():
    checker = load_checker()
    narrow = table_html(["method", "rank-1", "mAP"], [["+self-attn", "90.2", "82.7"]])
    wide = table_html([f"column_{i}_with_a_long_name" for i in range(12)], [["1"] * 12])
    page = f"<html><body><article class='bd-article'>{narrow}{wide}</article></body></html>"
    (found,) = checker.wide_tables(page)
    assert found.startswith("table 2 (column_0_with_a_long_name") and "12 columns" in found
    assert checker.wide_tables(narrow) == []
    # outside <article> (the theme's own chrome) does not count
    assert checker.wide_tables(f"{wide}<article>{narrow}</article>") == []


def test_table_font_follows_the_books_stylesheet():
    checker = load_checker()
    assert checker.table_font_px('<link rel="stylesheet" href="_static/reidnb.css?v=1">') == 13
    assert checker.table_font_px("<p>no stylesheet</p>") == 16


SCOREBOARD_PAGE = """<html><body><article class="bd-article">
<div id="reidnb-scoreboard" class="reidnb-scoreboard">
<p class="reidnb-build"><span class="reidnb-fact" data-fact="profile">profile smoke</span>
<span class="reidnb-fact" data-fact="device">device cpu</span>
<span class="reidnb-fact" data-fact="CPU">CPU x</span>
<span class="reidnb-fact" data-fact="commit">commit abc</span>
<span class="reidnb-fact" data-fact="date">date 2026-11-30</span></p>
<table class="reidnb-scoreboard-table"><tr><td><a href="04_ch.html#{anchor}">Table 5</a></td>
<td><span class="reidnb-v reidnb-v-holds">holds</span></td></tr>
<tr><td><a href="04_ch.html">chapter</a></td></tr></table>
</div></article></body></html>"""


def scoreboard_site(tmp_path: Path, page: str) -> Path:
    (tmp_path / "index.html").write_text(
        '<meta http-equiv="Refresh" content="0; url=intro.html" />')
    (tmp_path / "intro.html").write_text(page)
    (tmp_path / "04_ch.html").write_text('<div id="verdicts-x" class="reidnb-anchor"></div>')
    return tmp_path


def test_scoreboard_problems_pass_a_complete_scoreboard_with_working_links(tmp_path):
    checker = load_checker()
    site = scoreboard_site(tmp_path, SCOREBOARD_PAGE.format(anchor="verdicts-x"))
    assert checker.landing_page(site) == "intro.html"
    assert checker.scoreboard_problems(site, "intro.html",
                                       (site / "intro.html").read_text()) == []


def test_scoreboard_problems_name_what_is_missing(tmp_path):
    checker = load_checker()
    site = scoreboard_site(tmp_path, SCOREBOARD_PAGE.format(anchor="verdicts-gone"))
    page = (site / "intro.html").read_text()
    assert checker.scoreboard_problems(site, "intro.html", page) == [
        "links to 04_ch.html#verdicts-gone, an anchor 04_ch.html does not have"]
    no_date = page.replace('data-fact="date"', "")
    assert "the build's date is not named" in checker.scoreboard_problems(site, "i", no_date)
    broken = page.replace("04_ch.html#verdicts-gone", "05_missing.html#x")
    assert checker.scoreboard_problems(site, "i", broken) == [
        "links to 05_missing.html#x, not a page of this book"]
    empty = page.replace("reidnb-v reidnb-v-holds", "")
    assert "holds no table of verdicts" in checker.scoreboard_problems(site, "i", empty)
    not_built = page.replace("<table", "<p>Scoreboard: not built yet.</p><table")
    assert "not built yet" in checker.scoreboard_problems(site, "i", not_built)[-1]
    assert checker.scoreboard_problems(site, "i", "<p>Hello</p>") == [
        'i has no scoreboard (no element id="reidnb-scoreboard")']


def test_check_book_static_checks_the_scoreboard_on_the_landing_page_only(tmp_path):
    checker = load_checker()
    site = scoreboard_site(tmp_path, SCOREBOARD_PAGE.format(anchor="verdicts-x"))
    reports = {r.page: r for r in checker.check_book(site, tmp_path / "out", static=True)}
    assert reports["intro.html"].scoreboard == [] and reports["intro.html"].problems() == []
    assert reports["04_ch.html"].scoreboard is None and reports["index.html"].scoreboard is None
    (site / "intro.html").write_text("<p>no scoreboard</p>")
    reports = {r.page: r for r in checker.check_book(site, tmp_path / "out", static=True)}
    assert reports["intro.html"].problems() == [
        'scoreboard: intro.html has no scoreboard (no element id="reidnb-scoreboard")']


def test_layout_server_injects_the_measuring_script_on_request(tmp_path):
    from urllib.request import urlopen

    checker = load_checker()
    (tmp_path / "p.html").write_text("<html><body><table></table></body></html>")
    server, port = checker.start_layout_server(tmp_path)
    try:
        plain = urlopen(f"http://127.0.0.1:{port}/p.html").read().decode()
        measured = urlopen(f"http://127.0.0.1:{port}/p.html?reidnb-layout").read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert plain == "<html><body><table></table></body></html>"
    assert measured == ("<html><body><table></table>" + checker.LAYOUT_JS + "</body></html>")


def test_measured_wide_tables_compares_with_the_measured_column():
    checker = load_checker()
    layout = {"column": 688, "viewport": 1280, "tables": [
        {"index": 0, "width": 688, "text": "fits"}, {"index": 1, "width": 689, "text": "round"},
        {"index": 2, "width": 707, "text": "encoder convs here"}]}
    assert checker.measured_wide_tables(layout) == [
        "table 3 (encoder convs here...): 707 px, the column 688 px"]
    rep = checker.PageReport(page="p", wide_tables=["x"], widths_measured=True)
    assert rep.problems() == ["table wider than the text column at 1280 px (measured): x"]


def worst_case_claims_table():
    """The ledger with every own method's cell filled by this build, on SynthReID and (Market)
    on the claim's data set, the widest a claims table can get."""
    from reidnb.claims import is_quoted, load_claims
    from reidnb.results import SYNTH_COLUMN, claims_vs_runs

    table = claims_vs_runs(load_claims(), [])
    own = ~table.method.map(is_quoted)
    table.loc[own, SYNTH_COLUMN] = "88.8 ± 10.2 (n=10)"
    table.loc[own & (table.dataset == "market1501"), "reproduced"] = "88.8 ± 10.2 (n=10)"
    return table


def test_claims_page_tables_fit_the_text_column():
    from reidnb.book.claims_page import paper_claims_html

    checker = load_checker()
    table = worst_case_claims_table()
    for paper in table.paper.unique():
        html = f"<article>{paper_claims_html(table, paper)}</article>"
        assert checker.wide_tables(html, font_px=checker.TABLE_FONT_PX) == [], paper


def test_scoreboard_table_fits_the_text_column():
    import pandas as pd

    from reidnb import verdicts
    from reidnb.book import scoreboard

    vals = pd.DataFrame([(label, s, 10.0 * s + i) for i, label in enumerate(
        ["+AM+UL, Eq. 8 as printed", "+AM (no uniformity loss)"]) for s in range(5)],
        columns=["label", "seed", "rank1"])
    vals["mAP"] = vals["rank1"]
    vals["score ratio"] = vals["rank1"]
    comps = [verdicts.compare(vals, "+AM+UL, Eq. 8 as printed", "+AM (no uniformity loss)", m)
             for m in ("rank1", "mAP", "score ratio")]
    rec = verdicts.record("jeong2020", "Eq. 8: the uniformity loss, either sign, against +AM "
                                       "alone", comps)
    entries = [scoreboard.Entry("04_jeong2020_uniformity", "Chapter 4 — Uniformity attentive "
                                "Siamese network (jeong2020)", "verdicts-x", rec)]
    text = scoreboard.render(entries, {f: "a value" for f in scoreboard.FACTS})
    assert load_checker().wide_tables(f"<article>{text}</article>", font_px=13) == []


@pytest.fixture(scope="module")
def scoreboard_book(tmp_path_factory) -> Path:
    """The real book/ folder (config, landing page, stylesheet) building one chapter that
    published two verdict records and one page of claims tables (no kernel, no vendored
    JavaScript)."""
    from reidnb import verdicts
    from reidnb.book.claims_page import paper_claims_html

    root = tmp_path_factory.mktemp("scoreboardbook")
    (root / "executed").mkdir()
    rec = verdicts.record("jeong2020", "Table 5: baseline < +AM < +AM+UL (ResNet-50)", [])
    untested = verdicts.not_tested_record("jeong2020", "Table 6: layer3 is best",
                                          "one seed per stage", [0])
    outputs = [{"output_type": "display_data", "metadata": {},
                "data": {verdicts.MIME: r, "text/plain": verdicts.summary_line(r)}}
               for r in (rec, untested)]
    nb = executed_nb(md_cell("## 5. Table 5", "s5"),
                     code_cell("verdicts.publish(...)", outputs=outputs[:1], cell_id="v1"),
                     code_cell("verdicts.publish_not_tested(...)", outputs=outputs[1:],
                               cell_id="v2"))
    nb["cells"][0]["source"] = "# Chapter 4 — Uniformity (`jeong2020`)"
    (root / "executed" / "04_jeong2020.ipynb").write_text(json.dumps(nb))
    table = worst_case_claims_table()
    claims = executed_nb(md_cell("## Inconsistencies found while transcribing", "inc"), *[
        code_cell(f"show({paper!r})", cell_id=f"c{i}", outputs=[{
            "output_type": "display_data", "metadata": {},
            "data": {"text/html": paper_claims_html(table, paper), "text/plain": "<HTML>"}}])
        for i, paper in enumerate(table.paper.unique())])
    claims["cells"][0]["source"] = "# Claims and reproductions"
    (root / "executed" / "99_claims.ipynb").write_text(json.dumps(claims))
    (root / "executed" / "build.json").write_text(json.dumps({
        "cpu": "Test CPU", "cores": 2, "commit": "abc1234", "date": "2026-11-30T16:20:00+00:00"}))
    asm = book.assemble(root / "executed", root / "book", REPO / "book", root / "nb")
    assert asm.scoreboard and len(asm.verdicts) == 2
    return book.run_jupyter_book(root / "book").parent


@pytest.mark.slow
def test_built_landing_page_holds_a_scoreboard_whose_links_land(scoreboard_book):
    checker = load_checker()
    landing = checker.landing_page(scoreboard_book)
    page = (scoreboard_book / landing).read_text()
    assert landing == "intro.html" and 'href="_static/reidnb.css' in page
    assert checker.scoreboard_problems(scoreboard_book, landing, page) == []
    assert "04_jeong2020.html#verdicts-jeong2020-table-6-layer3-is-best" in page
    chapter = (scoreboard_book / "04_jeong2020.html").read_text()
    assert 'id="verdicts-jeong2020-table-6-layer3-is-best"' in chapter
    assert verdicts_mime_absent(chapter)
    reports = checker.check_book(scoreboard_book, scoreboard_book / "check", static=True)
    assert {r.page: r.problems() for r in reports if r.problems()} == {}


def verdicts_mime_absent(page: str) -> bool:
    from reidnb import verdicts

    return verdicts.MIME not in page and "scoreboard: jeong2020" not in page


@pytest.mark.slow
def test_built_pages_fit_the_text_column_in_chromium(scoreboard_book, tmp_path):
    if not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    checker = load_checker()
    chromium = checker.find_chromium()
    server, port = checker.start_layout_server(scoreboard_book)
    try:
        layouts = {page: checker.measure_layout(
            chromium, f"http://127.0.0.1:{port}/{page}?reidnb-layout", 5000, 90,
            tmp_path / f"{page}.netlog.json") for page in ("intro.html", "99_claims.html")}
    finally:
        server.shutdown()
        server.server_close()
    for page, layout in layouts.items():
        assert layout is not None and 600 <= layout["column"] <= 800, page
        assert layout["tables"], page
        assert checker.measured_wide_tables(layout) == [], page


# --- figures: numbered captions (tools/check_book_offline.py, reidnb.book.fignumbers) -------

# A code cell's figure as myst-nb renders it with `mystnb.figure` metadata and numfig (copied from
# a build of chapter 2), one without the metadata, and one whose caption has no number (numfig off).
CAPTIONED_FIGURE_HTML = (
    '<div class="cell_output docutils container">\n'
    '<figure class="align-default" id="fig-02-loss">\n'
    '<img alt="_images/fe2d.png" src="_images/fe2d.png" />\n<figcaption>\n'
    '<p><span class="caption-number">Fig. 2.1 </span><span class="caption-text">The IDE\'s '
    'identity loss per epoch.</span><a class="headerlink" href="#fig-02-loss" '
    'title="Link to this image">#</a></p>\n</figcaption>\n</figure>\n</div>')
BARE_FIGURE_HTML = (
    '<div class="cell_output docutils container">\n'
    '<img alt="_images/fae0.png" src="_images/fae0.png" />\n</div>')
UNNUMBERED_FIGURE_HTML = (
    '<figure class="align-default" id="fig-02-cmc">\n<img alt="_images/dd29.png" '
    'src="_images/dd29.png" />\n<figcaption>\n<p><span class="caption-text">CMC.</span></p>\n'
    '</figcaption>\n</figure>')


def chapter_page(*parts: str) -> str:
    return ('<html><body><img src="_static/logo.png"><article class="bd-article">'
            '<section id="training"><h2>Training<a class="headerlink" href="#training">#</a></h2>'
            + "".join(parts) + "</section></article></body></html>")


def test_uncaptioned_images_names_each_image_outside_a_numbered_figure():
    checker = load_checker()
    assert checker.uncaptioned_images(chapter_page(CAPTIONED_FIGURE_HTML)) == []
    page = chapter_page(CAPTIONED_FIGURE_HTML, BARE_FIGURE_HTML, UNNUMBERED_FIGURE_HTML,
                        '<figure><img src="_images/aa.png"></figure>')
    assert checker.uncaptioned_images(page) == [
        "fae0.png under 'Training': not in a figure",
        "dd29.png under 'Training': caption without a number",
        "aa.png under 'Training': figure without a caption"]


def test_check_source_reports_uncaptioned_figures_on_chapter_pages_only():
    checker = load_checker()
    page = chapter_page(CAPTIONED_FIGURE_HTML, BARE_FIGURE_HTML)
    rep = checker.check_source("02_baseline.html", page)
    assert rep.problems() == ["figure without a numbered caption: fae0.png under 'Training': "
                              "not in a figure"]
    assert checker.check_source("02_baseline.html",
                                chapter_page(CAPTIONED_FIGURE_HTML)).problems() == []
    assert checker.check_source("intro.html", page).problems() == []  # not a chapter


def test_per_chapter_figure_numbers_follow_the_page_name():
    from reidnb.book.fignumbers import chapter_of, per_chapter

    numbers = {"04_jeong2020": {"figure": {"fig-b": (6,), "fig-a": (5,)}, "table": {"t": (2,)}},
               "intro": {"figure": {"fig-i": (1,)}},
               "05_li2019": {"figure": {"fig-c": (7,)}},
               "06_numbered": {"figure": {"fig-d": (3, 1)}}}
    assert per_chapter(numbers) == {
        "04_jeong2020": {"figure": {"fig-a": (4, 1), "fig-b": (4, 2)}, "table": {"t": (4, 1)}},
        "intro": {"figure": {"fig-i": (1,)}},             # not a chapter: as Sphinx made it
        "05_li2019": {"figure": {"fig-c": (5, 1)}},
        "06_numbered": {"figure": {"fig-d": (3, 1)}}}      # a numbered toctree's: kept
    assert numbers["04_jeong2020"]["figure"]["fig-a"] == (5,)  # the input is not changed
    assert chapter_of("sub/12_x") == 12 and chapter_of("claims") is None


PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5"
           "ErkJggg==")


def figure_cell(cell_id: str, figure: dict | None = None) -> dict:
    cell = code_cell("viz.loss_curves(history)", cell_id=cell_id, outputs=[{
        "output_type": "execute_result", "execution_count": 1, "metadata": {},
        "data": {"image/png": PNG_1PX, "text/plain": "<Figure size 640x480 with 1 Axes>"}}])
    if figure is not None:
        cell["metadata"]["mystnb"] = {"figure": figure}
    return cell


@pytest.fixture(scope="module")
def figure_book(tmp_path_factory) -> Path:
    """The real book config building two hand-made chapters (no kernel, no vendored
    JavaScript): chapter 4 with a captioned figure, a figure without caption metadata and a
    {numref} to the first; chapter 5 with a captioned figure that refers to chapter 4's."""
    root = tmp_path_factory.mktemp("figurebook")
    (root / "executed").mkdir()
    ch4 = executed_nb(
        md_cell("## Training\n{numref}`fig-04-loss` shows the loss.", "prose"),
        figure_cell("f1", {"caption": "The loss per epoch; look at the last epoch.",
                           "name": "fig-04-loss"}),
        figure_cell("f2"))
    ch5 = executed_nb(md_cell("## Sweep\nAs in {numref}`fig-04-loss`, {numref}`fig-05-sweep` "
                              "shows a sweep.", "prose"),
                      figure_cell("f1", {"caption": "A sweep.", "name": "fig-05-sweep"}))
    for name, nb in (("04_ch", ch4), ("05_ch", ch5)):
        (root / "executed" / f"{name}.ipynb").write_text(json.dumps(nb))
    book.assemble(root / "executed", root / "book", REPO / "book", root / "nb")
    return book.run_jupyter_book(root / "book").parent


@pytest.mark.slow
def test_built_figures_are_numbered_per_chapter_and_referred_to(figure_book):
    ch4 = (figure_book / "04_ch.html").read_text()
    ch5 = (figure_book / "05_ch.html").read_text()
    assert '<figure class="align-default" id="fig-04-loss">' in ch4
    assert ('<span class="caption-number">Fig. 4.1 </span><span class="caption-text">The loss '
            'per epoch; look at the last epoch.</span>') in ch4
    assert ('<a class="reference internal" href="#fig-04-loss"><span class="std std-numref">'
            'Fig. 4.1</span></a> shows the loss.') in ch4
    assert '<span class="caption-number">Fig. 5.1 </span>' in ch5
    assert ('<a class="reference internal" href="04_ch.html#fig-04-loss"><span class="std '
            'std-numref">Fig. 4.1</span></a>') in ch5
    checker = load_checker()
    (missing,) = checker.check_source("04_ch.html", ch4).uncaptioned
    assert missing.endswith("under 'Training': not in a figure")   # the cell without metadata
    assert checker.check_source("05_ch.html", ch5).problems() == []


def test_a_badge_kept_on_one_line_is_one_word_of_the_estimate():
    checker = load_checker()
    parser = checker._TableParser()
    parser.feed('<table><tr><td><span class="reidnb-mv">rank-1 <span class="reidnb-v">not '
                'tested</span></span> <span class="reidnb-mv">mAP</span></td></tr></table>')
    (rows,) = parser.tables
    # "rank-1 not tested" cannot wrap inside its item; the space between items can
    assert checker.estimate_table_px(rows, 13) == pytest.approx(
        checker.text_px("rank-1\u00a0not\u00a0tested", 13) + 13)
    assert checker.estimate_table_px(rows, 13) > checker.text_px("tested", 13) + 13


def test_measured_outputs_and_code_sources_scrolling_sideways_are_problems():
    checker = load_checker()
    layout = {"column": 688, "viewport": 1280, "tables": [], "code": [
        {"input": True, "width": 850, "box": 684, "chars": 97, "text": "for size, prof in"},
        {"input": False, "width": 934, "box": 688, "chars": 107, "text": "sigmoid(3.0) = 0.953"}]}
    assert checker.measured_wide_outputs(layout) == [
        "934 px in a 688 px box: sigmoid(3.0) = 0.953..."]
    assert checker.measured_wide_code(layout) == [
        "850 px in a 684 px box, 97 characters: for size, prof in..."]
    rep = checker.PageReport(page="p", wide_outputs=checker.measured_wide_outputs(layout),
                             wide_code=checker.measured_wide_code(layout))
    assert rep.problems() == ["printed output wider than the text column at 1280 px: "
                              "934 px in a 688 px box: sigmoid(3.0) = 0.953...",
                              "code wider than the text column at 1280 px: 850 px in a 684 px "
                              "box, 97 characters: for size, prof in..."]
    assert "white-space: pre-wrap" in (REPO / "book" / "_static" / "reidnb.css").read_text()


def test_scoreboard_with_every_metric_fits_the_text_column():
    """However many metrics the chapters judge, the scoreboard keeps three columns."""
    from reidnb import verdicts
    from reidnb.book import scoreboard

    checker = load_checker()
    metrics = ["rank-1", "mAP", "score ratio", "loss_ver", "loss_ver, mean over epochs",
               "rank-10", "rank-20", "person covered (%)"]
    rows = [{"kind": "pair", "claim": "ResNet-50 +AM+UL, Eq. 8 as printed > +AM (no uniformity "
             "loss)", "metric": m, "verdict": "within noise", "seeds": [0, 1, 2], "mean": -12.25,
             "low": -30.5, "high": 6.25, "percent": True} for m in metrics]
    rec = {**verdicts.not_tested_record("jeong2020", "Table 5: a long claim", "x"),
           "rows": rows}
    html = scoreboard.render([scoreboard.Entry("04_a", "Chapter 4", "anchor", rec)],
                             {"profile": "synthetic"}, papers=("jeong2020",))
    page = f'<link href="_static/reidnb.css"><article>{html}</article>'
    assert "<th>verdicts</th>" in html and checker.wide_tables(page) == []


#: The code-cell width that fits the book's text column at 1280 px with the code font of
#: book/_static/reidnb.css (12 px: the offline check measured 90 characters in a shown cell's
#: 684-px box and 87 in a folded (hide-input) cell's 666-px box).
CODE_LINE_CHARS = {"shown": 88, "folded": 87}


def test_chapter_code_lines_fit_the_text_column():
    """Every line of a shown code cell fits the rendered text column, so no code scrolls
    sideways; cells whose input the book removes are exempt."""
    import jupytext

    long_lines = []
    for src in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py")):
        for i, cell in enumerate(jupytext.read(src).cells):
            tags = cell.metadata.get("tags", [])
            if cell.cell_type != "code" or "remove-input" in tags:
                continue
            limit = CODE_LINE_CHARS["folded" if "hide-input" in tags else "shown"]
            long_lines += [f"{src.name} cell {i}: {len(line)} chars (limit {limit}): "
                           f"{line.strip()[:50]}"
                           for line in cell.source.splitlines() if len(line) > limit]
    assert not long_lines, f"{len(long_lines)} code lines too long:\n" + "\n".join(long_lines[:20])


def test_code_font_is_the_one_the_line_width_assumes():
    css = (Path(__file__).resolve().parents[1] / "book" / "_static" / "reidnb.css").read_text()
    assert ".bd-article div.cell_input pre { font-size: 0.75rem; }" in css
