"""The claims page, one paper at a time: tables a reader can scan, no wider than the text column.

`paper_claims_html(table, paper)` takes `results.claims_vs_runs`'s table and returns one HTML
block for the paper:

1. its own methods (`claims.METHODS` order) as rows and the metrics as columns, one row group
   per printed (table, data set, protocol); under each metric the paper's number and this
   build's side by side ("paper" | "build") when the build ran any of them. The build's number
   is the mean over seeds (the spread in its tooltip, the seed count in column "n"); on the
   row's own data set it is written plainly, from SynthReID in grey italics (the paper's
   setting on synthetic data, never a reproduction), "–" when not run. Cost figures (size,
   speed) get a table of their own;
2. the rows the paper quotes from other work, in a collapsed `<details>` block;
3. the notes flagged while transcribing (`reidnb/claims_flags.csv`, beside the ledger), each
   marked in the cell it concerns ("⚠1"), numbered per paper.

Numbers, notes and labels are escaped; the HTML relies on `book/_static/reidnb.css` for its
compact look (13 px tables, grey SynthReID values) and reads plainly without it.
"""

from __future__ import annotations

import csv
import html
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from ..claims import ACCURACY_METRICS, COST_METRICS, ClaimsError, is_quoted
from ..results import NOT_RUN, SYNTH_COLUMN, _ordered_methods, _where

FLAG_COLUMNS: tuple[str, ...] = ("paper", "table", "dataset", "protocol", "method", "metric",
                                 "note")
ANY = "*"
METRIC_LABELS = {"rank1": "rank-1", "rank5": "rank-5", "rank10": "rank-10", "rank20": "rank-20",
                 "mAP": "mAP", "params_M": "params (M)", "gflops": "GFLOPs",
                 "time_s": "s / image", "fps": "fps", "train_time_h": "training (h)"}
FLAG_MARK = "⚠"
_BUILT_RE = re.compile(r"^\s*(-?[\d.]+)(?:\s*±\s*([\d.]+)\s*\(n=(\d+)\))?\s*$")


def flags_path() -> Path:
    """Path of the `claims_flags.csv` shipped next to the ledger `claims.csv`."""
    return Path(str(resources.files("reidnb").joinpath("claims_flags.csv")))


def load_flags(path: str | Path | None = None) -> pd.DataFrame:
    """The flagged inconsistencies: one row per (paper, table, dataset, protocol, method, metric)
    pattern and its note. "*" matches anything; metric "*" flags the method's row (its name
    cell), method and metric both "*" the row group (its caption)."""
    path = Path(path) if path is not None else flags_path()
    if not path.is_file():
        raise ClaimsError(f"{path}: flags file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != FLAG_COLUMNS:
            raise ClaimsError(f"{path}: header is {reader.fieldnames}, expected "
                              f"{list(FLAG_COLUMNS)}")
        rows = []
        for row in reader:
            if any(not (row.get(c) or "").strip() for c in FLAG_COLUMNS):
                raise ClaimsError(f"{path}:{reader.line_num}: every column needs a value "
                                  "('*' for any)")
            rows.append(row)
    return pd.DataFrame(rows, columns=list(FLAG_COLUMNS))


def _matches(pattern: str, value: str) -> bool:
    return pattern == ANY or pattern == value


def unmatched_flags(flags: pd.DataFrame, claims: pd.DataFrame) -> list[dict]:
    """The flags that match no row of the ledger `claims` (a typo in a key, or a row removed)."""
    keys = list(claims[["paper", "table", "dataset", "protocol", "method", "metric"]]
                .itertuples(index=False, name=None))
    out = []
    for flag in flags.to_dict("records"):
        pattern = [flag[c] for c in FLAG_COLUMNS[:-1]]
        if not any(all(_matches(p, v) for p, v in zip(pattern, key)) for key in keys):
            out.append(flag)
    return out


def cell_flags(flags: pd.DataFrame, paper: str, table: str, dataset: str, protocol: str,
               method: str, metric: str) -> list[str]:
    """The notes of `flags` (`load_flags`) that concern one printed number: every flag whose
    key matches the number's, "*" matching anything (so a flag on the method's row or on the
    whole row group counts too), each note once, in file order."""
    key = {"paper": paper, "table": str(table), "dataset": dataset, "protocol": protocol,
           "method": method, "metric": metric}
    notes: list[str] = []
    for flag in flags.to_dict("records"):
        if all(_matches(flag[c], v) for c, v in key.items()) and flag["note"] not in notes:
            notes.append(flag["note"])
    return notes


class _Notes:
    """Numbers the notes of one paper in order of first use and writes the markers."""

    def __init__(self, paper: str, flags: pd.DataFrame):
        self.paper = paper
        self.flags = flags[flags.paper.isin([paper, ANY])].to_dict("records")
        self.numbers: dict[str, int] = {}

    def _find(self, table, dataset, protocol, method, metric) -> list[str]:
        found = []
        for f in self.flags:
            if not (_matches(f["table"], table) and _matches(f["dataset"], dataset)
                    and _matches(f["protocol"], protocol)):
                continue
            if metric is None and method is None:          # the row group
                hit = f["method"] == ANY and f["metric"] == ANY
            elif metric is None:                             # the method's row
                hit = f["method"] == method and f["metric"] == ANY
            else:                                            # one value cell
                hit = _matches(f["method"], method) and f["metric"] == metric
            if hit and f["note"] not in found:
                found.append(f["note"])
        return found

    def marks(self, table, dataset, protocol, method=None, metric=None) -> str:
        out = []
        for note in self._find(table, dataset, protocol, method, metric):
            k = self.numbers.setdefault(note, len(self.numbers) + 1)
            out.append(f'<a class="reidnb-flag" href="#{self.anchor(k)}" title="{_e(note)}">'
                       f"{FLAG_MARK}{k}</a>")
        return "".join(out)

    def anchor(self, k: int) -> str:
        return f"reidnb-note-{re.sub(r'[^a-z0-9]+', '-', self.paper.lower())}-{k}"

    def html(self) -> str:
        if not self.numbers:
            return ""
        items = "".join(f'<li id="{self.anchor(k)}" value="{k}">{_e(note)}</li>'
                        for note, k in self.numbers.items())
        return ('<p class="reidnb-notes-title">Flagged while transcribing (details under '
                '<a href="#inconsistencies-found-while-transcribing">Inconsistencies</a>):</p>'
                f'<ol class="reidnb-notes">{items}</ol>')


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _printed(value) -> str:
    """A ledger number as the paper prints it, less trailing zeros."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    return repr(float(value))


def parse_built(text: str) -> tuple[str, str | None, int] | None:
    """A `claims_vs_runs` value ("50.0" or "50.0 ± 1.2 (n=3)") as (mean, spread, seeds);
    None for "not run" or anything else."""
    m = _BUILT_RE.match(str(text))
    if m is None:
        return None
    return m.group(1), m.group(2), int(m.group(3) or 1)


def _built_cell(row: pd.Series | None) -> tuple[str, int]:
    """The "build" cell of a claim row and the seeds behind it (0 when not run)."""
    if row is None:
        return '<td class="reidnb-none"></td>', 0
    for column, cls, where in (("reproduced", "reidnb-real", "on this data set"),
                               (SYNTH_COLUMN, "reidnb-synth", "on SynthReID")):
        parsed = parse_built(row[column]) if row[column] != NOT_RUN else None
        if parsed is not None:
            mean, spread, n = parsed
            tip = f"this build {where}: {row[column]}"
            return f'<td class="{cls}" title="{_e(tip)}">{_e(mean)}</td>', n
    return '<td class="reidnb-none" title="not run in this build">–</td>', 0


def _group_key_order(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(rows[["table", "dataset", "protocol"]]
                              .itertuples(index=False, name=None)))


def _table_html(rows: pd.DataFrame, paper: str, notes: _Notes, metrics: list[str],
                own: bool, css: str) -> str:
    """One table: row groups per (table, data set, protocol), methods as rows."""
    build = own and bool(((rows.reproduced != NOT_RUN) | (rows[SYNTH_COLUMN] != NOT_RUN)).any())
    labels = [METRIC_LABELS.get(m, m) for m in metrics]
    if build:
        head = ('<tr><th rowspan="2">method</th>'
                + "".join(f'<th colspan="2">{_e(label)}</th>' for label in labels)
                + '<th rowspan="2" title="seeds behind this build\'s values">n</th></tr><tr>'
                + "".join('<th>paper</th><th>build</th>' for _ in metrics) + "</tr>")
        ncol = 2 + 2 * len(metrics)
    else:
        head = ("<tr><th>method</th>" + "".join(f"<th>{_e(label)}</th>" for label in labels)
                + "</tr>")
        ncol = 1 + len(metrics)
    body = []
    for tbl, ds, proto in _group_key_order(rows):
        sel = rows[(rows.table == tbl) & (rows.dataset == ds) & (rows.protocol == proto)]
        caption = _where(tbl, ds, proto)
        out = [f'<tr class="reidnb-group"><th colspan="{ncol}">{_e(caption)}'
               f"{notes.marks(tbl, ds, proto)}</th></tr>"]
        methods = (_ordered_methods(sel.method, paper) if own
                   else list(dict.fromkeys(sel.method)))
        for method in methods:
            mine = sel[sel.method == method].set_index("metric")
            cells = [f'<th class="reidnb-method">{_e(method)}'
                     f"{notes.marks(tbl, ds, proto, method)}</th>"]
            seeds = 0
            for metric in metrics:
                row = mine.loc[metric] if metric in mine.index else None
                value = _printed(row["value"]) if row is not None else ""
                mark = notes.marks(tbl, ds, proto, method, metric) if row is not None else ""
                cells.append(f"<td>{_e(value)}{mark}</td>")
                if build:
                    cell, n = _built_cell(row)
                    cells.append(cell)
                    seeds = max(seeds, n)
            if build:
                cells.append(f'<td class="reidnb-n">{seeds or ""}</td>')
            out.append("<tr>" + "".join(cells) + "</tr>")
        body.append("<tbody>" + "".join(out) + "</tbody>")
    return (f'<table class="reidnb-claims {css}"><thead>{head}</thead>{"".join(body)}'
            "</table>")


def _metric_order(rows: pd.DataFrame, known: tuple[str, ...]) -> list[str]:
    present = set(rows.metric)
    return [m for m in known if m in present]


LEGEND = ('<p class="reidnb-legend">paper: the printed number; build: this build\'s mean over '
          'its n seeds (hover for the spread), on the row\'s data set when it ran there, '
          '<span class="reidnb-synth">in grey italics from SynthReID</span> (the paper\'s '
          "setting on synthetic data: compare orderings, not values); – not run; "
          f"{FLAG_MARK} a note below.</p>")


def paper_claims_html(table: pd.DataFrame, paper: str,
                      flags: pd.DataFrame | None = None) -> str:
    """The claims page's block for `paper` (see the module docstring); `table` is
    `results.claims_vs_runs`'s, `flags` default to `load_flags()`."""
    flags = load_flags() if flags is None else flags
    rows = table[table.paper == paper]
    if rows.empty:
        return f'<p class="reidnb-claims-empty">{_e(paper)} prints no numbers to compare.</p>'
    quoted = rows.method.map(is_quoted)
    own, others = rows[~quoted], rows[quoted]
    notes = _Notes(paper, flags)
    parts = []
    for known, css in ((ACCURACY_METRICS, "reidnb-accuracy"), (COST_METRICS, "reidnb-cost")):
        sub = own[own.metric.isin(known)]
        if not sub.empty:
            parts.append(_table_html(sub, paper, notes, _metric_order(sub, known), True, css))
    if ((own.reproduced != NOT_RUN) | (own[SYNTH_COLUMN] != NOT_RUN)).any():
        parts.append(LEGEND)
    if not others.empty:
        n_methods = others.method.nunique()
        n_tables = others.table.nunique()
        inner = []
        for known, css in ((ACCURACY_METRICS, "reidnb-accuracy"),
                           (COST_METRICS, "reidnb-cost")):
            sub = others[others.metric.isin(known)]
            if not sub.empty:
                inner.append(_table_html(sub, paper, notes, _metric_order(sub, known), False,
                                         f"{css} reidnb-quoted"))
        parts.append(f'<details class="reidnb-quoted"><summary>Rows quoted from other work: '
                     f"{n_methods} methods in {n_tables} table{'s' if n_tables != 1 else ''}"
                     f"</summary>{''.join(inner)}</details>")
    parts.append(notes.html())
    return f'<div class="reidnb-claims-paper">{"".join(parts)}</div>'
