#!/usr/bin/env python3
"""Look at a built book in headless Chromium, offline: screenshots, typeset math, live widgets.

Serves the HTML folder on 127.0.0.1 with `python -m http.server`, opens each page in headless
Chromium with every other host made unresolvable, and for each page writes to --out:

- NAME.png           a 1280x1600 screenshot (view it to see the equations and widgets);
- NAME.dom.html      the DOM after scripts ran (MathJax output, rendered widgets);
- NAME.netlog.json   Chromium's network log, from which the page's own requests are read.

It fails (exit 1) when a page asked any host other than 127.0.0.1 for anything, when a local
file the page asked for is missing (404), when a page has math that MathJax did not typeset, or
when a page has widget views and none rendered. Needs Debian's `chromium` package.

More checks read the built HTML itself and need no browser (`--static` runs only these):
a page must not show papermill's injected-parameters cell (the book shows the parameters as one
line), no math element may hold prose (a sentence caught between the wrong dollar signs
renders as one italic formula without spaces; see `prose_in_math`), no literal "$" may
stand beside a math element, the landing page must hold the scoreboard (the build's facts and
verdicts whose links reach their chapter's anchors; see `scoreboard_problems`), every image of a
chapter page (`NN_topic.html`) must sit in a figure with a numbered caption ("Fig. 4.2 ...",
what a code cell's `mystnb.figure` metadata makes; see `uncaptioned_images`), and no table may
be wider than the text column. Without a browser a table's width is estimated from its columns'
longest words (`estimate_table_px`); with one, each page is opened at 1280 px with every
<details> block open and every table measured (`LAYOUT_JS`), and so is every code cell: neither
what a cell prints (reidnb.css wraps it) nor a cell's own source (12 px code: about 90
characters fit, 87 in a folded cell; tests/test_book.py holds the chapters to that) may
scroll sideways; the "out>" and "code>" columns count them.

    python tools/check_book_offline.py build/book/_build/html --out build/book_check
    python tools/check_book_offline.py build/book/_build/html --static
"""

from __future__ import annotations

import argparse
import functools
import html as html_lib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars",
    # nothing but the local server resolves: an outside request fails, and is still logged
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--enable-logging=stderr", "--v=0",
)
CONSOLE_RE = re.compile(r'CONSOLE(?:\(\d+\))?\]?:?\s*"(?P<msg>.*)", source: (?P<src>\S*)')
# A notebook cell tagged "injected-parameters", as myst-nb renders it (a class per tag), and the
# "# Parameters" comment papermill starts that cell with, as Pygments highlights it.
INJECTED_TAG_RE = re.compile(r'class="[^"]*\btag_injected-parameters\b')
INJECTED_COMMENT_RE = re.compile(r'<pre><span></span><span class="c1"># Parameters</span>')
# Prose in math: text commands (whose spaces TeX keeps) are removed first, then every other
# command; what is left must not hold 4 or more words of 2+ letters in a row, nor 12 or more
# letters in a row (words whose spaces were lost).
TEXT_COMMAND_RE = re.compile(r"\\(?:text|textrm|textit|textbf|textsf|texttt|mbox)\s*\{[^{}]*\}")
TEX_COMMAND_RE = re.compile(r"\\(?:[A-Za-z]+|.)")
WORD_RUN_RE = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,}(?:[,;:.]?\s+[A-Za-z]{2,}){3,}(?![A-Za-z])")
LETTER_RUN_RE = re.compile(r"[A-Za-z]{12,}")
# A literal "$" right before or after a math element: what MyST leaves of a `$$...$$` written
# inside a paragraph (display math must stand between blank lines).
STRAY_DOLLAR_RE = re.compile(r'\$<(?:span|div) class="math\b|\\[)\]]</(?:span|div)>\$')
# The text column of sphinx-book-theme 1.3 in a 1280-px window with both sidebars shown
# (measured: <article class="bd-article"> less its padding), and the table font size that
# book/_static/reidnb.css sets; a static estimate above the column counts as too wide.
WINDOW_PX = 1280
TEXT_COLUMN_PX = 688
TABLE_FONT_PX = 13
DEFAULT_TABLE_FONT_PX = 16   # a page without reidnb.css: the theme's size
# Widths of characters in em, for the static estimate (calibrated against Chromium's min-content
# widths of this book's tables: within about 15 %).
NARROW_CHARS = set("iljtfr.,:;!|'`()[] \u00a0")
WIDE_CHARS = set("mwMW@%")
BOLD_FACTOR = 1.06
CELL_PADDING_EM = 1.0
# Where a cell's text may wrap: spaces, and after a hyphen that a letter follows.
BREAK_RE = re.compile(r"[ \t\n\r\f\v]+|(?<=-)(?=[A-Za-z])")
# Elements that reidnb.css keeps on one line (a verdict badge, a scoreboard item): their spaces
# are read as non-breaking ones.
NOWRAP_CLASSES = {"reidnb-v", "reidnb-mv"}
SCOREBOARD_ID = "reidnb-scoreboard"
# A chapter page (the book's NN_topic notebooks), whose images must be numbered figures.
CHAPTER_PAGE_RE = re.compile(r"^\d{2}_[^/]*\.html$")
SCOREBOARD_FACTS = ("profile", "device", "CPU", "commit", "date")
NOT_BUILT = "not built yet"
# Run in the page (served with ?reidnb-layout): open every <details>, then record the text
# column's width and each table's width on the <html> element, which --dump-dom returns.
LAYOUT_JS = r"""<script>(function () {
  function measure() {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
    var art = document.querySelector('article.bd-article') || document.body;
    var cs = getComputedStyle(art);
    var column = art.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    var tables = [];
    art.querySelectorAll('table').forEach(function (t, i) {
      var r = t.getBoundingClientRect();
      tables.push({index: i, width: Math.round(Math.max(r.width, t.scrollWidth)),
                   text: t.textContent.replace(/\s+/g, ' ').trim().slice(0, 60)});
    });
    var code = [];
    art.querySelectorAll('div.cell_input pre, div.cell_output pre').forEach(function (p) {
      if (p.scrollWidth > p.clientWidth + 1) {
        var input = !!p.closest('div.cell_input');
        var lines = p.textContent.split('\n');
        var longest = lines.reduce(function (a, b) { return b.length > a.length ? b : a; }, '');
        code.push({input: input, width: p.scrollWidth, box: p.clientWidth,
                   chars: longest.length, text: longest.trim().slice(0, 60)});
      }
    });
    document.documentElement.setAttribute('data-reidnb-layout', JSON.stringify(
      {column: Math.round(column), viewport: window.innerWidth, tables: tables, code: code}));
  }
  window.addEventListener('load', function () { setTimeout(measure, 300); });
})();</script>"""


@dataclass
class PageReport:
    """What one page did in the browser."""

    page: str
    screenshot: Path | None = None  # None when the page was only read, not opened
    math_in_html: int = 0
    math_typeset: int = 0
    widget_views: int = 0
    widgets_rendered: int = 0
    outside_requests: list[str] = field(default_factory=list)
    local_404: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    injected_cells: int = 0
    prose_math: list[str] = field(default_factory=list)
    stray_dollars: int = 0
    wide_tables: list[str] = field(default_factory=list)
    widths_measured: bool = False  # True: measured in the browser; False: estimated
    wide_outputs: list[str] = field(default_factory=list)  # printed output scrolling sideways
    wide_code: list[str] = field(default_factory=list)  # code sources scrolling sideways
    uncaptioned: list[str] = field(default_factory=list)  # chapter images not in a numbered fig.
    scoreboard: list[str] | None = None  # the landing page's scoreboard problems; None elsewhere

    def problems(self) -> list[str]:
        out = [f"asked another host for {u}" for u in self.outside_requests]
        out += [f"local file missing (404): {u}" for u in self.local_404]
        if self.screenshot is not None and self.math_in_html and not self.math_typeset:
            out.append(f"{self.math_in_html} math element(s), none typeset by MathJax")
        if self.screenshot is not None and self.widget_views and not self.widgets_rendered:
            out.append(f"{self.widget_views} widget view(s), none rendered")
        if self.injected_cells:
            out.append(f"shows {self.injected_cells} injected-parameters cell(s) (papermill's; "
                       "the book should show the parameters as one line)")
        out += [f"prose typeset as math: {p!r}" for p in self.prose_math]
        if self.stray_dollars:
            out.append(f"{self.stray_dollars} literal '$' beside math (a $$...$$ inside a "
                       "paragraph? put display math between blank lines)")
        how = "measured" if self.widths_measured else "estimated"
        out += [f"table wider than the text column at {WINDOW_PX} px ({how}): {t}"
                for t in self.wide_tables]
        out += [f"printed output wider than the text column at {WINDOW_PX} px: {t}"
                for t in self.wide_outputs]
        out += [f"code wider than the text column at {WINDOW_PX} px: {t}"
                for t in self.wide_code]
        out += [f"scoreboard: {p}" for p in self.scoreboard or []]
        out += [f"figure without a numbered caption: {u}" for u in self.uncaptioned]
        return out


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("no Chromium found (tried " + ", ".join(CHROMIUM_NAMES) + "); on Debian: "
                     "apt-get update && apt-get install -y chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(html_dir: Path, log_path: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                             "127.0.0.1", "--directory", str(html_dir)],
                            stdout=log, stderr=subprocess.STDOUT)
    for _ in range(50):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"http.server on 127.0.0.1:{port} for {html_dir} did not start")


def run_chromium(chromium: str, url: str, mode_args: list[str], netlog: Path,
                 timeout_s: float) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="reidnb-chromium-")
    try:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
               f"--log-net-log={netlog}", *mode_args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def page_requests(netlog: Path, site: str) -> list[str]:
    """URLs the page itself requested: jobs keyed by the page's site (not browser chores)."""
    if not netlog.is_file():
        raise SystemExit(f"Chromium wrote no network log at {netlog}")
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip().rstrip(",")
    if not text.endswith("}"):
        text += "]}"  # a log cut short by the browser's exit
    data = json.loads(text)
    kinds = {v: k for k, v in data["constants"]["logEventTypes"].items()}
    urls = []
    for ev in data.get("events", []):
        params = ev.get("params") or {}
        if kinds.get(ev.get("type")) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if str(params.get("network_isolation_key", "")).startswith(site):
            urls.append(params["url"])
    return urls


def count_math(html: str) -> int:
    return len(re.findall(r'class="[^"]*\bmath\b[^"]*"', html))


def shown_injected_parameters(html: str) -> int:
    """How many of papermill's injected-parameters cells a built page shows."""
    return max(len(INJECTED_TAG_RE.findall(html)), len(INJECTED_COMMENT_RE.findall(html)))


class _MathParser(HTMLParser):
    """Collects the text of every element whose class has the word `math`."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []
        self._depth = 0  # > 0 inside a math element: how many of its tags are open

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth:
            self._depth += 1
        elif "math" in (dict(attrs).get("class") or "").split():
            self._depth = 1
            self.sources.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.sources[-1] += data


def math_sources(html: str) -> list[str]:
    """The TeX of each math element in a built page, without its \\( \\) or \\[ \\] delimiters."""
    parser = _MathParser()
    parser.feed(html)
    parser.close()
    out = []
    for tex in parser.sources:
        tex = tex.strip()
        if tex[:2] in ("\\(", "\\[") and tex[-2:] in ("\\)", "\\]"):
            tex = tex[2:-2]
        out.append(tex.strip())
    return out


def prose_in_math(tex: str) -> str | None:
    """The English words a formula's TeX holds, or None when it reads as a formula.

    Prose caught between the wrong dollar signs (e.g. a `$$...$$` inside a paragraph pairing
    its second `$` with a later `$m$`) renders as one italic formula without spaces. After
    removing `\\text{...}` and the like (prose there is meant) and every other command (`\\max`,
    `\\mathrm`), what is left must not hold 4 or more words of 2+ letters in a row, nor a run
    of 12 or more letters.
    """
    rest = TEX_COMMAND_RE.sub(" ", TEXT_COMMAND_RE.sub(" ", tex))
    found = WORD_RUN_RE.search(rest) or LETTER_RUN_RE.search(rest)
    return " ".join(found.group(0).split()) if found else None


class _TableParser(HTMLParser):
    """Every <table> of a page as rows of cells (is_header, colspan, text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[list]]] = []
        self._open: list[list] = []   # tables being read, innermost last
        self._cell: list | None = None
        self._spans: list[bool] = []  # open <span>s, innermost last: True when kept on one line

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._open.append([])
            self._cell = None
        elif tag == "tr" and self._open:
            self._open[-1].append([])
        elif tag in ("td", "th") and self._open and self._open[-1]:
            try:
                span = max(1, int(dict(attrs).get("colspan") or 1))
            except ValueError:
                span = 1
            self._cell = [tag == "th", span, ""]
            self._open[-1][-1].append(self._cell)
        elif tag == "br" and self._cell is not None:
            self._cell[2] += " "
        elif tag == "span":
            classes = set((dict(attrs).get("class") or "").split())
            self._spans.append(bool(classes & NOWRAP_CLASSES) or any(self._spans))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._open:
            self.tables.append(self._open.pop())
            self._cell = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "span" and self._spans:
            self._spans.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[2] += re.sub(r"\s", "\u00a0", data) if any(self._spans) else data


def text_px(text: str, font_px: float = TABLE_FONT_PX, bold: bool = False) -> float:
    """Roughly how wide `text` is in the book's sans-serif font at `font_px`."""
    em = sum(0.28 if c in NARROW_CHARS else 0.83 if c in WIDE_CHARS
             else 0.68 if c.isupper() else 0.56 for c in text)
    return em * font_px * (BOLD_FACTOR if bold else 1.0)


def estimate_table_px(rows: list[list[list]], font_px: float = TABLE_FONT_PX) -> float:
    """A table's narrowest width: per column, the longest unbreakable run of text of any
    cell that spans only that column, plus the cell's padding; summed over the columns."""
    ncol = max((sum(cell[1] for cell in row) for row in rows), default=0)
    widest = [0.0] * ncol
    for row in rows:
        col = 0
        for header, span, text in row:
            if span == 1 and col < ncol:
                words = [w for w in BREAK_RE.split(text.strip()) if w]
                need = max((text_px(w, font_px, header) for w in words), default=0.0)
                widest[col] = max(widest[col], need + CELL_PADDING_EM * font_px)
            col += span
    return sum(widest)


def table_font_px(html: str) -> float:
    """The font size of a page's tables: reidnb.css's when the page loads it."""
    return TABLE_FONT_PX if re.search(r'href="[^"]*reidnb\.css', html) else DEFAULT_TABLE_FONT_PX


def _article(html: str) -> str:
    """The page's text column (<article>...</article>), or the whole page without one."""
    start = html.find("<article")
    end = html.rfind("</article>")
    return html[start:end] if 0 <= start < end else html


def wide_tables(html: str, limit_px: float = TEXT_COLUMN_PX,
                font_px: float = TABLE_FONT_PX) -> list[str]:
    """The tables of a page whose estimated narrowest width exceeds `limit_px`, each named by
    its first words and the estimate."""
    parser = _TableParser()
    parser.feed(_article(html))
    parser.close()
    out = []
    for i, rows in enumerate(parser.tables):
        width = estimate_table_px(rows, font_px)
        if width > limit_px:
            words = " ".join(" ".join(c[2] for c in row) for row in rows[:2]).split()
            out.append(f"table {i + 1} ({' '.join(words)[:60]}...): about {width:.0f} px, "
                       f"{max(len(r) for r in rows)} columns")
    return out


class _FigureParser(HTMLParser):
    """Every <img> of a page, and whether it sits in a <figure> whose <figcaption> holds the
    number Sphinx gives a figure with numfig (`<span class="caption-number">Fig. 4.2 </span>`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[str, str, str]] = []  # (src, heading above it, what is missing)
        self._figures: list[dict] = []   # open <figure>s, innermost last
        self._heading: str | None = None  # text of the heading being read
        self._last_heading = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = ""
        elif tag == "figure":
            self._figures.append({"images": [], "caption": False, "numbered": False,
                                  "in_caption": False})
        elif tag == "figcaption" and self._figures:
            self._figures[-1]["caption"] = self._figures[-1]["in_caption"] = True
        elif tag == "span" and self._figures and self._figures[-1]["in_caption"] \
                and "caption-number" in values.get("class", "").split():
            self._figures[-1]["numbered"] = True
        elif tag == "img":
            src = values.get("src", "")
            if self._figures:
                self._figures[-1]["images"].append((src, self._last_heading))
            else:
                self.images.append((src, self._last_heading, "not in a figure"))

    def handle_endtag(self, tag: str) -> None:
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self._last_heading = " ".join(self._heading.split()).rstrip("#").strip()
            self._heading = None
        elif tag == "figcaption" and self._figures:
            self._figures[-1]["in_caption"] = False
        elif tag == "figure" and self._figures:
            fig = self._figures.pop()
            missing = ("" if fig["numbered"] else "caption without a number" if fig["caption"]
                       else "figure without a caption")
            self.images += [(src, heading, missing) for src, heading in fig["images"]]

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading += data


def uncaptioned_images(html: str) -> list[str]:
    """The images of a page's text column that are not in a figure with a numbered caption,
    each named by its file and the heading above it. On a chapter page every such image is a
    cell's figure whose cell lacks `mystnb.figure` metadata (or a build without numfig)."""
    parser = _FigureParser()
    parser.feed(_article(html))
    parser.close()
    return [f"{src.rsplit('/', 1)[-1] or '(no src)'} under '{heading or '(no heading)'}': "
            f"{missing}" for src, heading, missing in parser.images if missing]


def landing_page(html_dir: Path) -> str:
    """The page a reader lands on: where index.html redirects to, else index.html."""
    text = (html_dir / "index.html").read_text(encoding="utf-8", errors="replace")
    m = re.search(r'http-equiv="Refresh"[^>]*url=([^"\s>]+)', text, re.I)
    return m.group(1) if m and (html_dir / m.group(1)).is_file() else "index.html"


class _ScoreboardParser(HTMLParser):
    """The scoreboard's element: its text, links, build facts and verdict badges."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False
        self.text = ""
        self.links: list[str] = []
        self.facts: list[str] = []
        self.badges = 0
        self.tables = 0
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if not self._depth:
            if values.get("id") == SCOREBOARD_ID:
                self.found, self._depth = True, 1
            return
        if tag not in ("br", "img", "hr", "input", "meta", "link", "wbr", "col"):
            self._depth += 1
        if tag == "a" and values.get("href"):
            self.links.append(values["href"])
        if "data-fact" in values:
            self.facts.append(values["data-fact"])
        classes = values.get("class", "").split()
        self.badges += "reidnb-v" in classes
        self.tables += tag == "table"

    def handle_endtag(self, tag: str) -> None:
        if self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.text += data


def scoreboard_problems(html_dir: Path, page: str, html: str) -> list[str]:
    """What is wrong with the landing page's scoreboard: missing, a build fact missing, "not
    built yet", no verdict, or a link to a page or an anchor the book does not have."""
    parser = _ScoreboardParser()
    parser.feed(html)
    parser.close()
    if not parser.found:
        return [f'{page} has no scoreboard (no element id="{SCOREBOARD_ID}")']
    out = [f"the build's {fact} is not named" for fact in SCOREBOARD_FACTS
           if fact not in parser.facts]
    if NOT_BUILT in parser.text:
        return out + [f"says '{NOT_BUILT}': no chapter of this build recorded its verdicts "
                      "(re-execute the chapters)"]
    if not parser.tables or not parser.badges:
        out.append("holds no table of verdicts")
    ids: dict[str, set[str]] = {}
    for href in parser.links:
        target, _, anchor = href.partition("#")
        target = target or page
        path = html_dir / target
        if _is_outside(href) or not path.is_file():
            out.append(f"links to {href}, not a page of this book")
            continue
        if anchor:
            if target not in ids:
                ids[target] = set(re.findall(r'\bid="([^"]+)"',
                                             path.read_text(encoding="utf-8", errors="replace")))
            if anchor not in ids[target]:
                out.append(f"links to {href}, an anchor {target} does not have")
    return out


def _is_outside(href: str) -> bool:
    return bool(urlsplit(href).scheme or urlsplit(href).netloc)


def check_source(page: str, html: str) -> PageReport:
    """What the built HTML of one page shows, read without a browser (table widths estimated;
    the scoreboard is checked by `check_book`, which knows the landing page)."""
    rep = PageReport(page=page)
    rep.math_in_html = count_math(html)
    rep.widget_views = html.count("application/vnd.jupyter.widget-view+json")
    rep.injected_cells = shown_injected_parameters(html)
    rep.prose_math = [p for p in map(prose_in_math, math_sources(html)) if p]
    rep.stray_dollars = len(STRAY_DOLLAR_RE.findall(html))
    rep.wide_tables = wide_tables(html, font_px=table_font_px(html))
    if CHAPTER_PAGE_RE.match(Path(page).name):
        rep.uncaptioned = uncaptioned_images(html)
    return rep


class _LayoutHandler(SimpleHTTPRequestHandler):
    """Serves the book; a page asked for with ?reidnb-layout gets `LAYOUT_JS` before </body>."""

    def log_message(self, format: str, *args) -> None:  # quiet: the other server logs
        pass

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if "reidnb-layout" not in query or not path.endswith(".html"):
            return super().do_GET()
        file = Path(self.translate_path(path))
        if not file.is_file():
            return super().do_GET()
        body = file.read_text(encoding="utf-8", errors="replace")
        at = body.rfind("</body>")
        body = (body[:at] + LAYOUT_JS + body[at:] if at >= 0 else body + LAYOUT_JS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_layout_server(html_dir: Path) -> tuple[ThreadingHTTPServer, int]:
    """An in-process server of `html_dir` that injects `LAYOUT_JS` on request."""
    handler = functools.partial(_LayoutHandler, directory=str(html_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def measure_layout(chromium: str, url: str, budget_ms: int, timeout_s: float,
                   netlog: Path) -> dict | None:
    """The text column's and every table's width (px) of the page at `url` in a
    WINDOW_PX-wide window, every <details> open; None when the page did not report them."""
    proc = run_chromium(chromium, url, [f"--virtual-time-budget={budget_ms}",
                                        f"--window-size={WINDOW_PX},1600", "--dump-dom"],
                        netlog, timeout_s)
    m = re.search(r'data-reidnb-layout="([^"]*)"', proc.stdout)
    return json.loads(html_lib.unescape(m.group(1))) if m else None


def measured_wide_outputs(layout: dict) -> list[str]:
    """The measured output blocks (what a cell printed) that scroll sideways."""
    return [f"{c['width']} px in a {c['box']} px box: {c['text']}..."
            for c in layout.get("code", []) if not c["input"]]


def measured_wide_code(layout: dict) -> list[str]:
    """The measured code cells whose own source scrolls sideways (its longest line)."""
    return [f"{c['width']} px in a {c['box']} px box, {c['chars']} characters: {c['text']}..."
            for c in layout.get("code", []) if c["input"]]


def measured_wide_tables(layout: dict) -> list[str]:
    """The measured tables wider than the measured text column (1 px of rounding allowed)."""
    column = layout["column"]
    return [f"table {t['index'] + 1} ({t['text']}...): {t['width']} px, the column "
            f"{column} px" for t in layout["tables"] if t["width"] > column + 1]


def check_page(chromium: str, html_dir: Path, page: str, port: int, out: Path,
               budget_ms: int, timeout_s: float, layout_port: int | None = None) -> PageReport:
    url = f"http://127.0.0.1:{port}/{page}"
    name = Path(page).with_suffix("").as_posix().replace("/", "__")
    html = (html_dir / page).read_text(encoding="utf-8", errors="replace")
    rep = check_source(page, html)
    rep.screenshot = out / f"{name}.png"
    common = [f"--virtual-time-budget={budget_ms}", "--window-size=1280,1600"]
    shot = run_chromium(chromium, url, [*common, f"--screenshot={rep.screenshot}"],
                        out / f"{name}.netlog.json", timeout_s)
    dom = run_chromium(chromium, url, [*common, "--dump-dom"], out / f"{name}.dom.netlog.json",
                       timeout_s)
    if not rep.screenshot.is_file():
        raise SystemExit(f"Chromium made no screenshot of {url}:\n{shot.stderr[-2000:]}")
    (out / f"{name}.dom.html").write_text(dom.stdout, encoding="utf-8")
    article = _article(html)
    if layout_port is not None and ("<table" in article or "<pre" in article):
        layout = measure_layout(chromium, f"http://127.0.0.1:{layout_port}/{page}?reidnb-layout",
                                budget_ms, timeout_s, out / f"{name}.layout.netlog.json")
        if layout is None:
            rep.wide_tables = ["the page did not report its layout (did its scripts run?)"]
        else:
            rep.wide_tables = measured_wide_tables(layout)
            rep.wide_outputs = measured_wide_outputs(layout)
            rep.wide_code = measured_wide_code(layout)
            (out / f"{name}.layout.json").write_text(json.dumps(layout, indent=1),
                                                     encoding="utf-8")
        rep.widths_measured = True
    rep.math_typeset = dom.stdout.count("<mjx-container")
    rep.widgets_rendered = len(re.findall(r'class="[^"]*\bjupyter-widgets\b', dom.stdout))
    site = "http://127.0.0.1"
    for log in (out / f"{name}.netlog.json", out / f"{name}.dom.netlog.json"):
        for req in page_requests(log, site):
            if urlsplit(req).hostname not in LOCAL_HOSTS and req not in rep.outside_requests:
                rep.outside_requests.append(req)
    for proc in (shot, dom):
        for m in CONSOLE_RE.finditer(proc.stderr):
            msg = m.group("msg")
            if ("error" in msg.lower() or "uncaught" in msg.lower()) \
                    and msg not in rep.console_errors:
                rep.console_errors.append(f"{msg[:200]} ({m.group('src')})")
    return rep


def local_404s(server_log: Path) -> list[str]:
    found = []
    for line in server_log.read_text(errors="replace").splitlines():
        m = re.search(r'"GET (\S+) HTTP/[\d.]+" 404', line)
        if m and not m.group(1).startswith("/favicon.ico"):
            found.append(m.group(1))
    return found


def check_book(html_dir: Path, out: Path, pages: list[str] | None = None,
               budget_ms: int = 5000, timeout_s: float = 90,
               static: bool = False) -> list[PageReport]:
    """Open each page (default: every top-level .html) and report what it did.

    With `static`, only read each page's HTML (no browser, nothing written to `out`).
    """
    html_dir = html_dir.resolve()
    if not (html_dir / "index.html").is_file():
        raise SystemExit(f"{html_dir}: expected a built book (no index.html)")
    pages = pages or sorted(p.name for p in html_dir.glob("*.html"))
    landing = landing_page(html_dir)
    if static:
        reports = [check_source(page, (html_dir / page).read_text(encoding="utf-8",
                                                                   errors="replace"))
                   for page in pages]
    else:
        out.mkdir(parents=True, exist_ok=True)
        chromium = find_chromium()
        server, port = start_server(html_dir, out / "http_server.log")
        layout_server, layout_port = start_layout_server(html_dir)
        reports = []
        try:
            for page in pages:
                before = len(local_404s(out / "http_server.log"))
                rep = check_page(chromium, html_dir, page, port, out, budget_ms, timeout_s,
                                 layout_port)
                time.sleep(0.2)  # let the server flush its log lines
                rep.local_404 = sorted(set(local_404s(out / "http_server.log")[before:]))
                reports.append(rep)
        finally:
            server.terminate()
            server.wait(timeout=10)
            layout_server.shutdown()
            layout_server.server_close()
    for rep in reports:
        if rep.page == landing:
            rep.scoreboard = scoreboard_problems(
                html_dir, landing, (html_dir / landing).read_text(encoding="utf-8",
                                                                  errors="replace"))
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html_dir", nargs="?", default="build/book/_build/html", type=Path)
    ap.add_argument("--out", default=Path("build/book_check"), type=Path,
                    help="where screenshots, DOM dumps and network logs go")
    ap.add_argument("--pages", nargs="*", default=None, help="pages to open (default: all)")
    ap.add_argument("--budget-ms", type=int, default=5000, help="virtual time per page")
    ap.add_argument("--static", action="store_true",
                    help="only the checks that read the HTML (no browser, no screenshots)")
    args = ap.parse_args(argv)
    reports = check_book(args.html_dir, args.out, args.pages, args.budget_ms,
                         static=args.static)
    failed = 0
    print(f"{'page':32s} {'math':>9s} {'widgets':>9s} {'outside':>7s} {'404':>4s} {'js err':>6s} "
          f"{'injected':>8s} {'prose':>5s} {'stray $':>7s} {'wide':>4s} {'score':>5s} "
          f"{'no cap':>6s} {'out>':>4s} {'code>':>5s}")
    for r in reports:
        score = "-" if r.scoreboard is None else ("ok" if not r.scoreboard else "BAD")
        print(f"{r.page:32s} {r.math_typeset:4d}/{r.math_in_html:<4d} "
              f"{r.widgets_rendered:4d}/{r.widget_views:<4d} {len(r.outside_requests):7d} "
              f"{len(r.local_404):4d} {len(r.console_errors):6d} {r.injected_cells:8d} "
              f"{len(r.prose_math):5d} {r.stray_dollars:7d} {len(r.wide_tables):4d} "
              f"{score:>5s} {len(r.uncaptioned):6d} {len(r.wide_outputs):4d} "
              f"{len(r.wide_code) if r.widths_measured else '-':>5}")
        for p in r.problems():
            print(f"  PROBLEM {p}")
        for e in r.console_errors:
            print(f"  console: {e}")
        failed += bool(r.problems())
    where = "" if args.static else f"screenshots in {args.out}/ ; "
    print(f"{where}{failed} page(s) with problems out of {len(reports)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
