"""The landing page's scoreboard: what this build found, read from the chapters it executed.

A chapter publishes the verdicts it computes from its run records with `reidnb.verdicts.publish`
(or `publish_trend`, `publish_not_tested`): a cell output of MIME type `reidnb.verdicts.MIME`
holding the claim, each compared pair, the metric, the verdict and the paired seeds. When the
book is assembled, `take_verdicts` takes these outputs out of the chapter's page and puts an
anchor where they were; `render` turns every chapter's records into one table (per paper, per
claim, one row per compared pair with its verdict on each metric) with a link to each claim's cell, and
a line naming the build: profile, device, CPU, commit and date. `write_into_page` puts it on
the book's root page, at the line `PLACEHOLDER` (else after the page's title).

The profile and device are the chapters' own parameters; CPU, commit and date come from the
`build.json` that `reidnb book` (`mainjob.main_job`) writes beside the executed chapters
(`write_build_info`). A book assembled without one (e.g. from the committed notebooks) says
where each of the three comes from instead. A build whose chapters published nothing shows
"not built yet" and still builds.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..verdicts import MIME, OUTCOMES, RULE, SCHEMA

SCOREBOARD_ID = "reidnb-scoreboard"
#: The line of the root page that the scoreboard replaces (a MyST comment, so a page built
#: without the assembler shows nothing there).
PLACEHOLDER = "% reidnb:scoreboard"
HEADING = "## What this build found"
#: Written by `reidnb book` into the folder of executed chapters: the machine and the commit.
BUILD_INFO = "build.json"
#: The facts the build line names, in order (`data-fact` attributes the offline check reads).
FACTS = ("profile", "device", "CPU", "commit", "date")
ANCHOR_TAG = "reidnb-anchor"
NOT_BUILT = "not built yet"
# Metric columns that come first when present; others follow in the order first met.
FIRST_METRICS = ("rank-1", "mAP")


class ScoreboardError(ValueError):
    """A published verdict record that does not follow `reidnb.verdicts.record`'s form."""


@dataclass
class Entry:
    """One published record, where it came from and where its cell is on the chapter page."""

    chapter: str          # docname, e.g. "04_jeong2020_uniformity"
    title: str            # the chapter's title, as plain text
    anchor: str           # id of the anchor before the publishing cell
    record: dict
    fallback: bool = False   # True when the chapter is the committed notebook, not this build's


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source or "")


def chapter_title(nb: dict, default: str) -> str:
    """The notebook's first level-1 heading as plain text (backticks dropped), else `default`."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for line in _text(cell.get("source")).splitlines():
            if line.startswith("# "):
                return re.sub(r"`([^`]*)`", r"\1", line[2:]).strip()
    return default


def check_record(rec, where: str) -> dict:
    """`rec` if it is a verdict record of the current schema; ScoreboardError naming `where`."""
    if isinstance(rec, str):
        try:
            rec = json.loads(rec)
        except ValueError:
            raise ScoreboardError(f"{where}: a verdict output that is not JSON") from None
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        raise ScoreboardError(f"{where}: a verdict output of another schema than {SCHEMA} "
                              "(re-execute the chapter)")
    for key in ("paper", "claim"):
        if not isinstance(rec.get(key), str) or not rec[key]:
            raise ScoreboardError(f"{where}: a verdict record without a {key!r}")
    rows = rec.get("rows")
    if not isinstance(rows, list):
        raise ScoreboardError(f"{where}: a verdict record without a list of rows")
    for row in rows:
        if not isinstance(row, dict) or row.get("verdict") not in OUTCOMES:
            raise ScoreboardError(f"{where}: a verdict row {row!r} whose verdict is not one "
                                  f"of {list(OUTCOMES)}")
    return rec


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].rstrip("-") or "verdicts"


def take_verdicts(nb: dict, chapter: str, fallback: bool = False) -> list[Entry]:
    """Take the published verdict records out of a notebook (changed in place) and return them.

    Each code cell with such an output loses it (the rest of its outputs stay) and gets a
    markdown cell before it holding an empty `<div id=...>`, the anchor the scoreboard links to.
    """
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise ScoreboardError(f"{chapter}: not a notebook (no list of cells)")
    title = chapter_title(nb, chapter)
    entries: list[Entry] = []
    used: set[str] = set()
    out: list[dict] = []
    for cell in cells:
        outputs = cell.get("outputs") if cell.get("cell_type") == "code" else None
        records = [o for o in outputs or [] if MIME in (o.get("data") or {})]
        if not records:
            out.append(cell)
            continue
        cell["outputs"] = [o for o in outputs if MIME not in (o.get("data") or {})]
        recs = [check_record(o["data"][MIME], f"{chapter}: a cell output") for o in records]
        anchor = base = _slug(f"verdicts {recs[0]['paper']} {recs[0]['claim']}")
        n = 2
        while anchor in used:
            anchor, n = f"{base}-{n}", n + 1
        used.add(anchor)
        mark = {"cell_type": "markdown", "metadata": {"tags": [ANCHOR_TAG]},
                "source": f'<div id="{anchor}" class="{ANCHOR_TAG}"></div>'}
        if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
            mark["id"] = f"{ANCHOR_TAG}-{len(used)}"
        out += [mark, cell]
        entries += [Entry(chapter, title, anchor, rec, fallback) for rec in recs]
    nb["cells"] = out
    return entries


# --- the build's facts -----------------------------------------------------------------------

def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip()


def git_commit() -> str | None:
    """The short commit of the working tree, "+changes" appended when tracked files differ."""
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}+changes" if dirty else sha


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_info(profile: str, device: str) -> dict:
    """What `write_build_info` records: the profile and device asked for, the machine (CPU
    model and cores, the GPU's name on a CUDA device), the commit and the time (UTC)."""
    from ..numerics import cpu_model

    gpu = None
    if str(device).startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.get_device_name(torch.device(device))
        except (ImportError, RuntimeError):
            gpu = None
    return {"profile": profile, "device": str(device), "cpu": cpu_model(),
            "cores": os.cpu_count(), "gpu": gpu, "commit": git_commit(), "date": _now()}


def write_build_info(folder: str | Path, profile: str, device: str) -> Path:
    """Write `build.json` (see `build_info`) into the folder of executed chapters."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / BUILD_INFO
    path.write_text(json.dumps(build_info(profile, device), indent=2) + "\n", encoding="utf-8")
    return path


def read_build_info(folder: str | Path) -> dict | None:
    path = Path(folder) / BUILD_INFO
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _one(values: list) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v is not None))
    if not seen:
        return "not recorded"
    return seen[0] if len(seen) == 1 else "mixed: " + ", ".join(seen)


def _date(text: str | None) -> str | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def build_facts(parameters: dict[str, dict], info: dict | None) -> dict[str, str]:
    """The five facts of the build line, as text.

    `parameters` are each chapter's effective parameters (its parameters cell with papermill's
    values); `info` is `build.json` (None when there is none). Without `info`, CPU, commit and
    date say where they come from.
    """
    from ..experiments import DEFAULT_SCOPE

    params = list(parameters.values())
    facts = {"profile": _one([p.get("profile") for p in params]),
             "device": _one([p.get("device") for p in params])}
    # the scope the chapters with a plan ran in (their `scope` None: the profile's default)
    scopes = [p.get("scope") or DEFAULT_SCOPE.get(str(p.get("profile"))) for p in params
              if "scope" in p]
    if scopes:
        facts["profile"] += f", scope {_one(scopes)}"
    if info:
        cpu = str(info.get("cpu") or "not recorded")
        if info.get("cores"):
            cpu += f" ({info['cores']} cores)"
        if info.get("gpu"):
            cpu += f"; GPU {info['gpu']}"
        facts["CPU"] = cpu
        facts["commit"] = str(info.get("commit") or "not recorded")
        facts["date"] = _date(info.get("date")) or "not recorded"
    else:
        facts["CPU"] = "not recorded (no build.json: the chapters were not run by `reidnb book`)"
        commit = git_commit()
        facts["commit"] = f"{commit} (at assembly)" if commit else "not recorded"
        facts["date"] = f"{_date(_now())} (at assembly)"
    return facts


# --- rendering -------------------------------------------------------------------------------

def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _code_spans(text: str) -> str:
    """Escaped text with `...` spans as <code>."""
    parts = str(text).split("`")
    return "".join(f"<code>{_e(p)}</code>" if i % 2 else _e(p) for i, p in enumerate(parts))


def _metrics(entries: list[Entry]) -> list[str]:
    seen = list(dict.fromkeys(row["metric"] for e in entries for row in e.record["rows"]
                              if row.get("metric")))
    ordered = [m for m in FIRST_METRICS if m in seen] + [m for m in seen
                                                          if m not in FIRST_METRICS]
    return ordered


def _badge(verdict: str) -> str:
    return f'<span class="reidnb-v reidnb-v-{_slug(verdict)}">{_e(verdict)}</span>'


def _number(row: dict) -> tuple[str, str]:
    """The number shown after a verdict and the sentence in its tooltip."""
    mean = row.get("mean")
    if mean is None:
        return "", ""
    fmt = "{:+.1f}" if row.get("percent") else "{:+.3g}"
    low, high = row.get("low"), row.get("high")
    interval = (f", 95 % interval [{fmt.format(low)}, {fmt.format(high)}]"
                if low is not None and high is not None else "")
    if row.get("kind") == "trend":
        return f"slope {fmt.format(mean)}", f"least-squares slope {fmt.format(mean)}{interval}"
    unit = " points" if row.get("percent") else ""
    return fmt.format(mean), f"mean paired difference {fmt.format(mean)}{unit}{interval}"


def _seeds(rows: list[dict]) -> str:
    seeds = sorted({int(s) for row in rows for s in row.get("seeds") or []})
    text = ", ".join(map(str, seeds)) if seeds else "none"
    levels = sorted({row["levels"] for row in rows if row.get("kind") == "trend"})
    if levels:
        text += f"; {levels[0]} levels" if len(levels) == 1 else f"; {levels} levels"
    return text


def _claim_rows(rec: dict, metrics: list[str]) -> list[str]:
    """One <tr> per compared pair of a record: the pair, its verdicts (one item per metric, in
    `metrics` order, each naming its metric, so the table keeps three columns however many
    metrics the book's claims use) and the seeds."""
    groups: dict[str, list[dict]] = {}
    for row in rec["rows"]:
        groups.setdefault(str(row.get("claim", "")), []).append(row)
    out = []
    for claim, rows in groups.items():
        if all(not row.get("metric") for row in rows):     # a claim not judged at all
            items = [_badge(", ".join(dict.fromkeys(row["verdict"] for row in rows)))]
        else:
            by_metric = {row.get("metric"): row for row in rows}
            items = []
            for metric in metrics:
                row = by_metric.get(metric)
                if row is None:
                    continue
                shown, tip = _number(row)
                title = f' title="{_e(tip)}"' if tip else ""
                extra = f' <span class="reidnb-num">{_e(shown)}</span>' if shown else ""
                items.append(f'<span class="reidnb-mv"{title}><span class="reidnb-metric">'
                             f"{_e(metric)}</span> {_badge(row['verdict'])}{extra}</span>")
        out.append(f'<tr><td class="reidnb-pair">{_e(claim)}</td>'
                   f'<td class="reidnb-verdicts">{" ".join(items)}</td>'
                   f'<td class="reidnb-seeds">{_e(_seeds(rows))}</td></tr>')
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def tally(entries: list[Entry]) -> dict[str, int]:
    """How many verdicts (a pair on one metric, or a claim not judged) have each outcome."""
    counts = {o: 0 for o in OUTCOMES}
    for e in entries:
        for row in e.record["rows"]:
            counts[row["verdict"]] += 1
    return counts


def _facts_line(facts: dict[str, str]) -> str:
    parts = []
    for key in FACTS:
        value = facts.get(key, "not recorded")
        shown = f"<code>{_e(value)}</code>" if key in ("profile", "device", "commit") \
            and " " not in value else _code_spans(value)
        parts.append(f'<span class="reidnb-fact" data-fact="{_e(key)}">{_e(key)} {shown}</span>')
    return '<p class="reidnb-build"><strong>This build:</strong> ' + " · ".join(parts) + "</p>"


def render(entries: list[Entry], facts: dict[str, str], papers: tuple[str, ...] = (),
           no_results: frozenset[str] = frozenset(), committed: list[str] = ()) -> str:
    """The scoreboard as MyST markdown: a heading, one raw HTML block, the verdict rule.

    `papers` (default `reidnb.claims.PAPERS`) are listed even when no chapter judged them, those
    in `no_results` as printing no result to judge. `committed` names the chapters shown from
    the committed notebooks rather than this build.
    """
    if not papers:
        from ..claims import PAPERS, PAPERS_WITHOUT_RESULTS

        papers, no_results = PAPERS, no_results or PAPERS_WITHOUT_RESULTS
    lines = [HEADING, ""]
    block = [f'<div id="{SCOREBOARD_ID}" class="reidnb-scoreboard">', _facts_line(facts)]
    if committed:
        block.append('<p class="reidnb-committed">Not executed by this build, shown with the '
                     "committed smoke outputs: " + ", ".join(f"<code>{_e(c)}</code>"
                                                            for c in committed) + ".</p>")
    if not entries:
        block.append(f'<p class="reidnb-not-built"><strong>Scoreboard: {NOT_BUILT}.</strong> '
                     "No chapter of this build recorded its verdicts (they are recorded when a "
                     "chapter is executed: <code>make book</code>, or <code>make notebooks</code> "
                     "for the committed ones). Each chapter still shows its own.</p>")
        block.append("</div>")
        return "\n".join(lines + block) + "\n"
    metrics = _metrics(entries)
    ncol = 3
    counts = tally(entries)
    shown_counts = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    chapters = list(dict.fromkeys(e.chapter for e in entries))
    n_verdicts = sum(counts.values())
    n_claims = len({(e.chapter, e.record["claim"]) for e in entries})
    block.append(f'<p class="reidnb-tally">{_plural(n_verdicts, "verdict")} on '
                 f'{_plural(n_claims, "claim")} from {_plural(len(chapters), "chapter")}: '
                 f"{_e(shown_counts)}.</p>")
    block.append('<table class="reidnb-scoreboard-table"><thead><tr><th>claim</th>'
                 "<th>verdicts</th><th>seeds</th></tr></thead>")
    by_paper: dict[str, list[Entry]] = {}
    for e in entries:
        by_paper.setdefault(e.record["paper"], []).append(e)
    for paper, items in by_paper.items():
        first = items[0]
        note = (' <span class="reidnb-committed">(committed smoke outputs, not this '
                "build's)</span>" if any(e.fallback for e in items) else "")
        rows = [f'<tr class="reidnb-paper"><th colspan="{ncol}">{_e(paper)} · '
                f'<a href="{_e(first.chapter)}.html">{_e(first.title)}</a>{note}</th></tr>']
        for e in items:
            rows.append(f'<tr class="reidnb-claim"><td colspan="{ncol}">'
                        f'<a href="{_e(e.chapter)}.html#{_e(e.anchor)}">'
                        f"{_e(e.record['claim'])}</a></td></tr>")
            rows += _claim_rows(e.record, metrics)
        block.append("<tbody>" + "".join(rows) + "</tbody>")
    rest = [p for p in papers if p not in by_paper]
    if rest:
        rows = []
        for paper in rest:
            rows.append(f'<tr class="reidnb-paper"><th colspan="{ncol}">{_e(paper)}</th></tr>')
            if paper in no_results:
                rows.append(f'<tr><td colspan="{ncol}">prints no quantitative result: nothing '
                            "to judge</td></tr>")
            else:
                rows.append(f'<tr><td class="reidnb-pair">its claims</td><td>'
                            f'{_badge("not tested")} no chapter of this build runs it</td>'
                            "<td></td></tr>")
        block.append("<tbody>" + "".join(rows) + "</tbody>")
    block += ["</table>", "</div>"]
    # A raw HTML block ends at a blank line: the block has none.
    return "\n".join(lines + block + ["", RULE + " Each claim links to the cell that judges "
                                      "it; the seeds are those paired in its verdicts.", ""])


def write_into_page(page: Path, text: str) -> None:
    """Put `text` into the root page: at the `PLACEHOLDER` line, else after its first title."""
    source = page.read_text(encoding="utf-8")
    lines = source.splitlines()
    at = next((i for i, line in enumerate(lines) if line.strip() == PLACEHOLDER), None)
    if at is not None:
        lines[at:at + 1] = [text.rstrip("\n")]
    else:
        title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
        lines[title + 1:title + 1] = ["", text.rstrip("\n"), ""]
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
