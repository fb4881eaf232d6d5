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

Two more checks read the built HTML itself and need no browser (`--static` runs only these):
a page must not show papermill's injected-parameters cell (the book shows the parameters as one
line), no math element may hold prose (a sentence caught between the wrong dollar signs
renders as one italic formula without spaces; see `prose_in_math`), and no literal "$" may
stand beside a math element.

    python tools/check_book_offline.py build/book/_build/html --out build/book_check
    python tools/check_book_offline.py build/book/_build/html --static
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
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


def check_source(page: str, html: str) -> PageReport:
    """What the built HTML of one page shows, read without a browser."""
    rep = PageReport(page=page)
    rep.math_in_html = count_math(html)
    rep.widget_views = html.count("application/vnd.jupyter.widget-view+json")
    rep.injected_cells = shown_injected_parameters(html)
    rep.prose_math = [p for p in map(prose_in_math, math_sources(html)) if p]
    rep.stray_dollars = len(STRAY_DOLLAR_RE.findall(html))
    return rep


def check_page(chromium: str, html_dir: Path, page: str, port: int, out: Path,
               budget_ms: int, timeout_s: float) -> PageReport:
    url = f"http://127.0.0.1:{port}/{page}"
    name = Path(page).with_suffix("").as_posix().replace("/", "__")
    rep = check_source(page, (html_dir / page).read_text(encoding="utf-8", errors="replace"))
    rep.screenshot = out / f"{name}.png"
    common = [f"--virtual-time-budget={budget_ms}", "--window-size=1280,1600"]
    shot = run_chromium(chromium, url, [*common, f"--screenshot={rep.screenshot}"],
                        out / f"{name}.netlog.json", timeout_s)
    dom = run_chromium(chromium, url, [*common, "--dump-dom"], out / f"{name}.dom.netlog.json",
                       timeout_s)
    if not rep.screenshot.is_file():
        raise SystemExit(f"Chromium made no screenshot of {url}:\n{shot.stderr[-2000:]}")
    (out / f"{name}.dom.html").write_text(dom.stdout, encoding="utf-8")
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
    if static:
        return [check_source(page, (html_dir / page).read_text(encoding="utf-8",
                                                                errors="replace"))
                for page in pages]
    out.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium()
    server, port = start_server(html_dir, out / "http_server.log")
    reports = []
    try:
        for page in pages:
            before = len(local_404s(out / "http_server.log"))
            rep = check_page(chromium, html_dir, page, port, out, budget_ms, timeout_s)
            time.sleep(0.2)  # let the server flush its log lines
            rep.local_404 = sorted(set(local_404s(out / "http_server.log")[before:]))
            reports.append(rep)
    finally:
        server.terminate()
        server.wait(timeout=10)
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
          f"{'injected':>8s} {'prose':>5s} {'stray $':>7s}")
    for r in reports:
        print(f"{r.page:32s} {r.math_typeset:4d}/{r.math_in_html:<4d} "
              f"{r.widgets_rendered:4d}/{r.widget_views:<4d} {len(r.outside_requests):7d} "
              f"{len(r.local_404):4d} {len(r.console_errors):6d} {r.injected_cells:8d} "
              f"{len(r.prose_math):5d} {r.stray_dollars:7d}")
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
