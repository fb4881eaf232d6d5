"""Assemble and build the reidnb Jupyter Book so that it builds and reads without a network.

The book source folder (`build/book/`) is put together from four things:

- `book/`: `_config.yml`, markdown pages (`intro.md`, `claims.md`, ...) and `_toc.yml`, a
  template whose `root` and listed pages are kept while the chapters are generated;
- the executed chapters `build/executed/NN_topic.ipynb` (papermill, `synthetic` profile), or,
  for a chapter missing there, the committed `notebooks/NN_topic.ipynb` (smoke outputs) with a
  warning admonition saying so. In the book's copy, the `parameters` cell and papermill's
  `injected-parameters` cell become one line of prose ("This build: profile ..."); code cells
  tagged `hide-input` (the set-up after the parameters) show their outputs with the code folded,
  which myst-nb does from the tag; the verdict records a chapter published
  (`reidnb.verdicts.publish`) leave the page for the scoreboard, an anchor in their place;
- the scoreboard (`reidnb.book.scoreboard`): every chapter's verdicts and the build's profile,
  device, CPU, commit and date, written into the root page (`intro.md`) at its placeholder;
- the JavaScript a page loads, served from `_static/vendor/` instead of a CDN: MathJax 3
  (`tex-mml-chtml`, the bundle Sphinx uses, with its fonts and lazily loaded parts), RequireJS
  and the Jupyter widget manager `embed-amd.js` (which defines `@jupyter-widgets/base` and
  `@jupyter-widgets/controls` itself). Versions are pinned in `book/package.json` and
  `book/package-lock.json`; `npm ci` installs them once into `build/vendor/`.

`jupyter-book build` then runs with notebook execution off. `find_remote_references` lists any
resource a built page would fetch from another host; `build` refuses a book that has one.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
CHAPTER_RE = re.compile(r"^(\d{2})_[A-Za-z0-9][A-Za-z0-9_-]*$")
# Vendored files go to <book>/_vendor/_static/vendor/; `html_extra_path: [_vendor]` puts them in
# the site's _static/vendor/ (under the source's _static/ Jupyter Book would add every .js file
# to every page).
VENDOR_STATIC = Path("_vendor") / "_static" / "vendor"
# Files copied from node_modules into _static/vendor/, as (source, destination) pairs of folders
# or files; each source must exist after `npm ci`. package.json files record version and licence.
VENDOR_COPIES: tuple[tuple[str, str], ...] = (
    ("requirejs/require.js", "requirejs/require.js"),
    ("requirejs/package.json", "requirejs/package.json"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("@jupyter-widgets/html-manager/package.json", "html-manager/package.json"),
    ("mathjax/es5/tex-mml-chtml.js", "mathjax/es5/tex-mml-chtml.js"),
    ("mathjax/es5/input", "mathjax/es5/input"),
    ("mathjax/es5/output/chtml", "mathjax/es5/output/chtml"),
    ("mathjax/es5/a11y", "mathjax/es5/a11y"),
    ("mathjax/es5/ui", "mathjax/es5/ui"),
    ("mathjax/es5/sre", "mathjax/es5/sre"),
    ("mathjax/LICENSE", "mathjax/LICENSE"),
    ("mathjax/package.json", "mathjax/package.json"),
)
# Within html-manager/dist only the AMD bundle and the fonts its CSS points at are served.
HTML_MANAGER_SKIP = ("embed.js", "libembed-amd.js", "*.map", "*.LICENSE.txt")
# Our own small script, loaded before require.js on pages with widgets (see _config.yml):
# 1. RequireJS config, so that the widget manager's module URL, from which webpack derives where
#    its icon fonts live, is the vendored copy (otherwise the fonts are looked up at
#    <page dir>/@jupyter-widgets/html-manager/dist/ and 404);
# 2. ipywidgets 8 typesets a widget label with the MathJax 2 call MathJax.Hub.Queue, which
#    MathJax 3 lacks, and writes math in it as $...$, which Sphinx's MathJax 3 does not treat as
#    math. A stand-in Hub.Queue rewrites such a label's $...$ to \(...\) and typesets just that
#    label with MathJax 3, queueing labels that arrive before MathJax has started.
WIDGETS_SETUP_JS = r"""// Written by reidnb.book.vendor_assets: widget manager setup, read offline.
(function () {
  var here = document.currentScript.src.replace(/[^/]*$/, "");
  window.require = {paths: {"@jupyter-widgets/html-manager/dist": here + "html-manager"}};
  var pending = [];
  function typesetLabels(elements) {
    elements = elements.filter(function (el) { return el && el.children.length === 0; });
    elements.forEach(function (el) {
      el.textContent = el.textContent.replace(/\$\$([^$]+)\$\$/g, "\\[$1\\]")
        .replace(/\$([^$]+)\$/g, "\\($1\\)");
    });
    return MathJax.typesetPromise(elements);
  }
  var mj = window.MathJax = window.MathJax || {};
  mj.Hub = {Queue: function (job) { pending.push(job[2]); }};
  mj.startup = mj.startup || {};
  var ready = mj.startup.ready;
  mj.startup.ready = function () {
    if (ready) { ready(); } else { MathJax.startup.defaultReady(); }
    MathJax.Hub = {Queue: function (job) {
      MathJax.startup.promise.then(function () { return typesetLabels([job[2]]); });
    }};
    MathJax.startup.promise.then(function () { return typesetLabels(pending); });
  };
})();
"""
WIDGETS_SETUP_NAME = "reidnb-widgets-setup.js"
BOOK_SRC_SKIP = {"package.json", "package-lock.json", "node_modules", "_build", "_toc.yml",
                 "_vendor"}
FALLBACK_NOTE = (
    ":::{{admonition}} Smoke outputs, not this build's\n"
    ":class: warning\n"
    "This chapter was not executed by this build (no `{executed}`). The outputs below are the\n"
    "committed ones in `{committed}`, made with the small `smoke` profile.\n"
    ":::"
)


# How the parameters line names a notebook parameter; other names show with "_" as a space.
PARAMETER_LABELS = {"dataset": "data set", "data_root": "data root", "runs_dir": "runs folder"}


class BookError(RuntimeError):
    """The book could not be assembled, vendored, built or checked."""


class BookWarning(UserWarning):
    """The book was built, but not entirely from this build's outputs or declared pages."""


@dataclass
class Assembly:
    """What `assemble` put into the book folder."""

    out_dir: Path
    chapters: list[str] = field(default_factory=list)   # docnames in toc order, NN order
    fallbacks: list[str] = field(default_factory=list)  # chapters taken from notebooks/
    pages: list[str] = field(default_factory=list)      # hand-written pages after the chapters
    missing_pages: list[str] = field(default_factory=list)  # declared in _toc.yml, no file
    root: str = ""                                       # the landing page's docname
    parameters: dict[str, dict] = field(default_factory=dict)  # chapter -> effective values
    verdicts: list = field(default_factory=list)         # scoreboard.Entry, in chapter order
    scoreboard: bool = False                             # written into the root page


def _default(path: str | Path | None, name: str) -> Path:
    return REPO / name if path is None else Path(path)


def chapter_key(stem: str) -> tuple[int, str]:
    """Sort key of a chapter name `NN_topic`: its number, then its name."""
    m = CHAPTER_RE.match(stem)
    if m is None:
        raise BookError(f"chapter name {stem!r} does not match NN_topic (two digits, '_', name)")
    return int(m.group(1)), stem


def find_chapters(executed_dir: Path, notebooks_dir: Path) -> list[str]:
    """Chapter names `NN_topic` seen in either folder (.ipynb, or .py sources), in NN order."""
    stems: set[str] = set()
    for folder, patterns in ((executed_dir, ("*.ipynb",)), (notebooks_dir, ("*.ipynb", "*.py"))):
        if not folder.is_dir():
            continue
        for pattern in patterns:
            stems.update(p.stem for p in folder.glob(pattern) if CHAPTER_RE.match(p.stem))
    return sorted(stems, key=chapter_key)


def _shown(path: Path) -> str:
    """A path as a reader should see it: relative to the repository when inside it."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def add_fallback_note(nb: dict, executed: Path, committed: Path) -> dict:
    """Insert a warning admonition after the notebook's first cell (its title) and return it."""
    text = FALLBACK_NOTE.format(executed=_shown(executed), committed=_shown(committed))
    cell = {"cell_type": "markdown", "metadata": {"tags": ["reidnb-fallback"]},
            "source": text}
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = "reidnb-fallback-note"
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise BookError(f"{committed}: not a notebook (no list of cells)")
    at = 1 if cells and cells[0].get("cell_type") == "markdown" else 0
    cells.insert(at, cell)
    return nb


def _read_toc_template(book_src: Path) -> dict:
    import yaml

    path = book_src / "_toc.yml"
    if not path.is_file():
        return {"format": "jb-book", "root": "intro", "chapters": []}
    toc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if toc.get("format", "jb-book") != "jb-book" or "root" not in toc:
        raise BookError(f"{path}: expected 'format: jb-book' and a 'root' page")
    if "parts" in toc:
        raise BookError(f"{path}: 'parts' are not supported; list pages under 'chapters'")
    return toc


def _page_exists(folder: Path, docname: str) -> bool:
    return any((folder / f"{docname}{ext}").is_file() for ext in (".md", ".ipynb", ".rst"))


def _clear_assembled(out_dir: Path) -> None:
    """Remove what an earlier assembly left, keeping Sphinx's `_build` cache."""
    for entry in out_dir.iterdir():
        if entry.name == "_build":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _check_out_dir(out_dir: Path, sources: dict[str, Path]) -> None:
    """Refuse an `out_dir` that holds one of the sources: assembling clears it."""
    target = out_dir.resolve()
    for name, src in sources.items():
        if target == REPO or src.resolve() == target or src.resolve().is_relative_to(target):
            raise BookError(f"out_dir {out_dir} would hold {name} {src}; assembling clears "
                            "out_dir, so give it a folder of its own (e.g. build/book)")


def _copy_book_src(book_src: Path, out_dir: Path) -> None:
    for entry in book_src.iterdir():
        if entry.name in BOOK_SRC_SKIP:
            continue
        if entry.is_dir():
            shutil.copytree(entry, out_dir / entry.name,
                            ignore=shutil.ignore_patterns("vendor", ".ipynb_checkpoints"))
        else:
            shutil.copy2(entry, out_dir / entry.name)


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _cell_tags(cell: dict) -> list[str]:
    return list((cell.get("metadata") or {}).get("tags") or [])


def _code(text: str) -> str:
    """`text` as a Markdown code span (its repr when a plain span would not show it)."""
    if text and text.strip() == text and "`" not in text:
        return f"`{text}`"
    return f"`` {text!r} ``"


def parameter_values(source: str) -> dict[str, str]:
    """The names a parameters cell assigns, in order, each with its value as prose shows it.

    A string shows as code (`smoke`), a number or other literal as itself, anything else as its
    source text in code. Lines that are not plain assignments are skipped; a cell that is not
    valid Python gives nothing.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    values: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            literal = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            shown = _code(" ".join(ast.get_source_segment(source, value).split()))
        else:
            shown = _code(literal) if isinstance(literal, str) else repr(literal)
        for target in targets:
            if isinstance(target, ast.Name):
                values[target.id] = shown
    return values


def parameter_literals(source: str) -> dict[str, object]:
    """The names a parameters cell assigns a literal to, with the literal's value (an
    expression that is not a literal is left out; invalid Python gives nothing)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    values: dict[str, object] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        if not targets:
            continue
        try:
            literal = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                values[target.id] = literal
    return values


def effective_parameters(nb: dict) -> dict[str, object]:
    """A notebook's parameters as it ran: the `parameters` cell's literals, overridden by
    papermill's `injected-parameters` cell."""
    values: dict[str, object] = {}
    for tag in ("parameters", "injected-parameters"):
        cell = next((c for c in nb.get("cells") or [] if c.get("cell_type") == "code"
                     and tag in _cell_tags(c)), None)
        if cell is not None:
            values.update(parameter_literals(_cell_source(cell)))
    return values


def parameters_line(values: dict[str, str]) -> str:
    """One line of prose: "*This build:* profile `smoke`, data set `synthreid`, ..."."""
    parts = [f"{PARAMETER_LABELS.get(name, name.replace('_', ' '))} {shown}"
             for name, shown in values.items()]
    return "*This build:* " + (", ".join(parts) if parts else "the notebook's defaults") + "."


def present_parameters(nb: dict) -> dict:
    """Show a notebook's parameters as one line of prose instead of two code cells.

    The values are the effective ones: the `parameters` cell's defaults, overridden by
    papermill's `injected-parameters` cell when there is one. The parameters cell becomes a
    markdown cell with that line (tag and id `reidnb-parameters`) and the injected cell is
    dropped. A notebook with neither cell is returned unchanged.
    """
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise BookError("not a notebook (no list of cells)")
    code = [c for c in cells if c.get("cell_type") == "code"]
    params = next((c for c in code if "parameters" in _cell_tags(c)), None)
    injected = next((c for c in code if "injected-parameters" in _cell_tags(c)), None)
    if params is None and injected is None:
        return nb
    values = parameter_values(_cell_source(params)) if params is not None else {}
    if injected is not None:
        values.update(parameter_values(_cell_source(injected)))
    if values.get("scope") == "None":   # the profile's default: say which it is
        from ..experiments import DEFAULT_SCOPE

        profile = effective_parameters(nb).get("profile")
        if profile in DEFAULT_SCOPE:
            values["scope"] = f"{_code(DEFAULT_SCOPE[profile])} (the profile's default)"
    line = {"cell_type": "markdown", "metadata": {"tags": ["reidnb-parameters"]},
            "source": parameters_line(values)}
    if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
        line["id"] = "reidnb-parameters"
    at = cells.index(params if params is not None else injected)
    nb["cells"] = [c for c in cells if c is not params and c is not injected]
    nb["cells"].insert(at, line)
    return nb


def _place_chapter(stem: str, executed_dir: Path, notebooks_dir: Path, out_dir: Path,
                   asm: Assembly) -> bool:
    """Write chapter `stem` into `out_dir` (parameters as one line, see `present_parameters`;
    published verdicts taken out, see `scoreboard.take_verdicts`, and added to `asm`); True
    when it fell back to the committed notebook."""
    from . import scoreboard

    executed = executed_dir / f"{stem}.ipynb"
    committed = notebooks_dir / f"{stem}.ipynb"
    source = executed if executed.is_file() else committed
    if source.is_file():
        fallback = source == committed
        try:
            nb = json.loads(source.read_text(encoding="utf-8"))
            if isinstance(nb, dict) and isinstance(nb.get("cells"), list):
                asm.parameters[stem] = effective_parameters(nb)
            nb = present_parameters(nb)
            asm.verdicts += scoreboard.take_verdicts(nb, stem, fallback)
        except (BookError, scoreboard.ScoreboardError) as exc:
            raise BookError(f"{source}: {exc}") from None
        if fallback:
            nb = add_fallback_note(nb, executed, committed)
        (out_dir / source.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False),
                                           encoding="utf-8")
        return fallback
    raise BookError(f"chapter {stem}: neither {executed} nor {committed} exists; "
                    "execute it (reidnb book) or commit its paired .ipynb")


def _write_scoreboard(asm: Assembly, executed_dir: Path) -> None:
    """Render the scoreboard into the root page, when it is a markdown page."""
    from . import scoreboard

    page = asm.out_dir / f"{asm.root}.md"
    if not page.is_file():
        return
    facts = scoreboard.build_facts(asm.parameters, scoreboard.read_build_info(executed_dir))
    scoreboard.write_into_page(page, scoreboard.render(asm.verdicts, facts,
                                                       committed=asm.fallbacks))
    asm.scoreboard = True


def _write_toc(toc: dict, asm: Assembly, toc_path: Path) -> None:
    """Root, then the chapters, then the template's pages that exist (the rest noted missing)."""
    import yaml

    root = asm.root = str(toc["root"])
    if not _page_exists(asm.out_dir, root):
        raise BookError(f"{toc_path}: root page {root!r} has no file")
    for entry in toc.get("chapters") or []:
        name = str(entry.get("file", "")) if isinstance(entry, dict) else ""
        if not name:
            raise BookError(f"{toc_path}: chapter entry {entry!r} has no 'file'")
        name = re.sub(r"\.(md|ipynb|rst)$", "", name)
        if name not in asm.chapters:
            (asm.pages if _page_exists(asm.out_dir, name) else asm.missing_pages).append(name)
    out_toc = {"format": "jb-book", "root": root,
               "chapters": [{"file": n} for n in asm.chapters + asm.pages]}
    header = "# Generated by reidnb.book.assemble from book/_toc.yml; edits here are lost.\n"
    (asm.out_dir / "_toc.yml").write_text(header + yaml.safe_dump(out_toc, sort_keys=False),
                                          encoding="utf-8")


def assemble(executed_dir: str | Path, out_dir: str | Path, book_src: str | Path | None = None,
             notebooks_dir: str | Path | None = None) -> Assembly:
    """Fill `out_dir` with the book's pages, the chapters and a generated `_toc.yml`.

    `book_src` and `notebooks_dir` default to the repository's `book/` and `notebooks/`.
    """
    executed_dir, out_dir = Path(executed_dir), Path(out_dir)
    book_src = _default(book_src, "book")
    notebooks_dir = _default(notebooks_dir, "notebooks")
    if not (book_src / "_config.yml").is_file():
        raise BookError(f"{book_src}: expected a Jupyter Book folder with _config.yml")
    toc = _read_toc_template(book_src)
    _check_out_dir(out_dir, {"book_src": book_src, "executed_dir": executed_dir,
                             "notebooks_dir": notebooks_dir})
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_assembled(out_dir)
    _copy_book_src(book_src, out_dir)
    asm = Assembly(out_dir=out_dir)
    for stem in find_chapters(executed_dir, notebooks_dir):
        if _place_chapter(stem, executed_dir, notebooks_dir, out_dir, asm):
            asm.fallbacks.append(stem)
        asm.chapters.append(stem)
    _write_toc(toc, asm, book_src / "_toc.yml")
    _write_scoreboard(asm, executed_dir)
    return asm


def _lock_digest(book_src: Path) -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = book_src / name
        if not path.is_file():
            raise BookError(f"{path} is missing: it pins the JavaScript the book serves")
        h.update(path.read_bytes())
    return h.hexdigest()


def install_vendor(book_src: str | Path | None = None,
                   vendor_dir: str | Path | None = None) -> Path:
    """`npm ci` the pinned packages into `vendor_dir` (default build/vendor); cached by lock hash.

    Returns the `node_modules` folder.
    """
    book_src = _default(book_src, "book")
    vendor_dir = _default(vendor_dir, "build/vendor")
    digest = _lock_digest(book_src)
    stamp = vendor_dir / ".lock-sha256"
    modules = vendor_dir / "node_modules"
    if modules.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise BookError("npm not found on PATH: it is needed once to fetch the book's pinned "
                        "JavaScript (MathJax, RequireJS, widget manager) into "
                        f"{vendor_dir}; install Node.js/npm (Debian: apt-get install npm)")
    vendor_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(book_src / name, vendor_dir / name)
    cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    proc = subprocess.run(cmd, cwd=vendor_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise BookError(f"`npm ci` failed in {vendor_dir} (exit {proc.returncode}):\n{tail}")
    stamp.write_text(digest + "\n")
    return modules


def vendor_assets(out_dir: str | Path, book_src: str | Path | None = None,
                  vendor_dir: str | Path | None = None) -> Path:
    """Copy MathJax, RequireJS and the widget manager into `out_dir/_vendor/_static/vendor/`.

    `npm ci` runs into `vendor_dir`, by default the folder `vendor` beside `out_dir`.
    """
    modules = install_vendor(book_src, vendor_dir or Path(out_dir).parent / "vendor")
    dest_root = Path(out_dir) / VENDOR_STATIC
    if dest_root.exists():
        shutil.rmtree(dest_root)
    for src_rel, dst_rel in VENDOR_COPIES:
        src, dst = modules / src_rel, dest_root / dst_rel
        if not src.exists():
            raise BookError(f"{src} is missing after npm ci: expected it in the pinned package "
                            "(was book/package.json changed?)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            skip = HTML_MANAGER_SKIP if src_rel.startswith("@jupyter-widgets") else ()
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip))
        else:
            shutil.copy2(src, dst)
    (dest_root / WIDGETS_SETUP_NAME).write_text(WIDGETS_SETUP_JS, encoding="utf-8")
    return dest_root


def _jupyter_book_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found is None:
        raise BookError("jupyter-book not found next to this Python or on PATH: "
                        "install the 'book' extra (pip install -e .[book])")
    return [found]


def run_jupyter_book(book_dir: str | Path, strict: bool = False,
                     timeout_s: float = 1800) -> Path:
    """`jupyter-book build` the assembled folder; returns `_build/html/index.html`."""
    book_dir = Path(book_dir)
    cmd = _jupyter_book_cmd() + ["build", str(book_dir), "--builder", "html"]
    if strict:
        cmd += ["-W", "--keep-going"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise BookError(f"jupyter-book build {book_dir} took longer than {timeout_s:.0f} s") \
            from exc
    log = proc.stdout + proc.stderr
    (book_dir / "_build").mkdir(exist_ok=True)
    (book_dir / "_build" / "build.log").write_text(log, encoding="utf-8")
    index = book_dir / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not index.is_file():
        tail = "\n".join(log.splitlines()[-40:])
        why = f"exit {proc.returncode}" if proc.returncode else f"no {index}"
        raise BookError(f"jupyter-book build {book_dir} failed ({why}); last lines of "
                        f"{book_dir / '_build' / 'build.log'}:\n{tail}")
    return index


def build(executed_dir: str | Path, out_dir: str | Path, book_src: str | Path | None = None,
          notebooks_dir: str | Path | None = None, vendor_dir: str | Path | None = None,
          strict: bool = False, check_offline: bool = True) -> Path:
    """Assemble, vendor and build the book; returns the path of its `index.html`.

    With `check_offline`, raises `BookError` listing every page resource on another host.
    """
    out_dir = Path(out_dir)
    asm = assemble(executed_dir, out_dir, book_src, notebooks_dir)
    if asm.fallbacks:
        warnings.warn(f"chapters not in {executed_dir}, shown with their committed smoke "
                      f"outputs: {', '.join(asm.fallbacks)}", BookWarning, stacklevel=2)
    if asm.missing_pages:
        warnings.warn(f"pages declared in _toc.yml but not written yet, left out: "
                      f"{', '.join(asm.missing_pages)}", BookWarning, stacklevel=2)
    if asm.scoreboard and not asm.verdicts:
        warnings.warn("no chapter recorded its verdicts (reidnb.verdicts.publish): the landing "
                      "page's scoreboard says 'not built yet'", BookWarning, stacklevel=2)
    vendor_assets(out_dir, book_src, vendor_dir)
    index = run_jupyter_book(out_dir, strict=strict)
    if check_offline:
        remote = find_remote_references(index.parent)
        if remote:
            listing = "\n".join(f"  {f}: {u}" for f, u in remote[:30])
            raise BookError(f"the built book at {index.parent} would fetch {len(remote)} "
                            f"resource(s) from other hosts:\n{listing}")
    return index


# --- offline check -------------------------------------------------------------------------

# <link rel=...> values that make the browser fetch the target.
FETCHING_RELS = {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "prefetch",
                 "modulepreload", "preconnect", "dns-prefetch", "manifest", "prerender",
                 "mask-icon"}
# Attributes that hold a URL the browser loads, for tags other than <a>/<area>/<link>/<meta>.
FETCH_ATTRS = {"src", "srcset", "href", "data", "poster", "background", "imagesrcset"}
# Hosts whose URLs, met as string literals in a page's own JavaScript, mean a CDN load.
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "fonts.googleapis.com",
             "fonts.gstatic.com", "code.jquery.com", "ajax.googleapis.com", "cdn.plot.ly",
             "cdn.bokeh.org", "mybinder.org", "hypothes.is", "utteranc.es",
             "www.googletagmanager.com", "plausible.io", "polyfill.io")
CSS_URL_RE = re.compile(r"""url\(\s*['"]?\s*([^'")\s]+)|@import\s+['"]([^'"]+)['"]""", re.I)
CSS_COMMENT_RE = re.compile(r"/\*.*?\*/", re.S)
JS_URL_RE = re.compile(r"""["'`]((?:https?:)?//([A-Za-z0-9.-]+)[^"'`\s]*)""")


def _is_remote(url: str) -> bool:
    url = url.strip()
    return url.lower().startswith(("http://", "https://", "//")) and bool(urlsplit(url).netloc)


def _css_urls(text: str) -> list[str]:
    text = CSS_COMMENT_RE.sub("", text)
    return [m.group(1) or m.group(2) for m in CSS_URL_RE.finditer(text)]


def _js_cdn_urls(text: str) -> list[str]:
    return [m.group(1) for m in JS_URL_RE.finditer(text) if m.group(2).lower() in CDN_HOSTS]


class _ResourceParser(HTMLParser):
    """Collects URLs a browser would fetch while showing the page (not plain links)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if "style" in values:
            self.urls += _css_urls(values["style"])
        self._in = tag if tag in ("style", "script") and "src" not in values else None
        if tag in ("a", "area", "meta", "form", "base"):
            return
        if tag == "link":
            rels = set(values.get("rel", "").lower().split())
            if rels & FETCHING_RELS:
                self.urls += [values[k] for k in ("href", "imagesrcset") if k in values]
            return
        for key, value in values.items():
            # a <script> tag's data-* attributes configure loaders (e.g. a widget CDN)
            if key in FETCH_ATTRS or (tag == "script" and key.startswith("data-")):
                parts = [p.split()[0] for p in value.split(",") if p.split()] \
                    if key.endswith("srcset") else [value]
                self.urls += parts

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.urls += _css_urls(data)
        elif self._in == "script":
            self.urls += _js_cdn_urls(data)


def find_remote_references(html_dir: str | Path,
                           skip_js_under: tuple[str, ...] = ("_static/vendor",)
                           ) -> list[tuple[Path, str]]:
    """Every (file, url) in a built site that makes a browser fetch from another host.

    Scans .html files (resource tags and attributes, inline CSS, inline scripts), .css files
    (`url()`, `@import`) and .js files (string literals naming a known CDN host). Plain `<a>`
    links are fine and not reported. JS under `skip_js_under` is not scanned: the vendored
    libraries keep CDN URLs as fallbacks that this book's configuration never reaches (the
    browser check in tools/check_book_offline.py covers what actually loads).
    """
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise BookError(f"{html_dir}: expected a folder of built HTML")
    found: list[tuple[Path, str]] = []
    for path in sorted(html_dir.rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in (".html", ".htm", ".css", ".js"):
            continue
        rel = path.relative_to(html_dir).as_posix()
        if rel.startswith("_sources/"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if suffix in (".html", ".htm"):
            parser = _ResourceParser()
            parser.feed(text)
            urls = parser.urls
        elif suffix == ".css":
            urls = _css_urls(text)
        elif any(rel.startswith(p.rstrip("/") + "/") for p in skip_js_under):
            continue
        else:
            urls = _js_cdn_urls(text)
        found += [(path, u) for u in urls if _is_remote(u)]
    return found
