"""Verdicts on a paper's claims, from per-seed run results: the one rule the whole book uses.

A claim such as "+AM+UL beats +AM" (jeong2020 Table 5) is checked on runs that differ only in
the compared setting and share their seeds. For each seed s both rows were trained with, the
paired difference is d_s = value(better, s) - value(base, s). With n >= `MIN_SEEDS` such seeds,
the verdict reads the two-sided 95 % Student-t interval of the mean difference,
mean(d) +- t(0.975, n - 1) * sd(d) / sqrt(n), sd with n - 1 in the denominator:

- "holds": the whole interval is above zero (better wins beyond seed noise);
- "reversed": the whole interval is below zero (the runs say the opposite);
- "within noise": the interval holds zero;
- "not tested": fewer than `MIN_SEEDS` paired seeds (one or two runs test nothing);
- "not run": a row has no complete run at all.

A trend over a sweep (a knob with one run per level, e.g. SynthReID's bag visibility) is read
the same way on the least-squares slope of the gain against the knob: the 95 % interval of
the slope from the residuals (n - 2 degrees of freedom), at least `MIN_LEVELS` levels.

A chapter publishes the verdicts it shows for the landing page's scoreboard with `publish`
(comparisons), `publish_trend` (a sweep) or `publish_not_tested` (a claim shown, not judged):
a cell output the book's assembler reads (`reidnb.book.scoreboard`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_SEEDS = 3
MIN_LEVELS = 4
OUTCOMES = ("holds", "within noise", "reversed", "not tested", "not run")

RULE = (f"A claimed ordering *holds* when the 95 % Student-t interval of the seed-paired "
        f"difference (the same seeds for both rows) lies above zero, is *reversed* when it lies "
        f"below zero, and is *within noise* when it contains zero; with fewer than {MIN_SEEDS} "
        f"paired seeds it is *not tested*. A trend over a sweep is judged the same way on the "
        f"least-squares slope, with at least {MIN_LEVELS} levels.")

# Two-sided 95 % quantiles t(0.975, df) of Student's t, df = 1..30 (standard tables).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """t(0.975, df): the table up to 30 degrees of freedom, then the Cornish-Fisher expansion
    z + (z^3 + z) / (4 df) around z = 1.96 (error < 0.003 there, shrinking with df)."""
    if df < 1:
        raise ValueError(f"t975: df must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df)


def _is_percent(metric: str) -> bool:
    """Rank-k and mAP are percentages, their differences "points"; anything else is not."""
    return metric == "mAP" or (metric.startswith("rank") and metric[4:].isdigit())


def _shown(metric: str) -> str:
    return f"rank-{metric[4:]}" if metric.startswith("rank") and metric[4:].isdigit() else metric


@dataclass
class Comparison:
    """The verdict on "`better` > `base`" for one metric, and the numbers behind it."""

    better: str
    base: str
    metric: str
    outcome: str
    diffs: dict[int, float] = field(default_factory=dict)   # seed -> better - base
    mean: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def seeds(self) -> int:
        return len(self.diffs)

    def sentence(self) -> str:
        """One line for the book: the claim, the outcome, the mean difference, its interval and
        the per-seed differences."""
        claim = f"{self.better} > {self.base} ({_shown(self.metric)})"
        if self.outcome == "not run":
            return f"{claim}: not run in this profile"
        fmt = "{:+.1f}" if _is_percent(self.metric) else "{:+.3g}"
        per_seed = ", ".join(f"seed {s}: {fmt.format(d)}" for s, d in sorted(self.diffs.items()))
        if self.outcome == "not tested":
            n = self.seeds
            return (f"{claim}: not tested ({n} paired seed{'s' if n != 1 else ''}, "
                    f"{MIN_SEEDS} needed; {per_seed or 'no seed in common'})")
        if _is_percent(self.metric):
            mean = f"mean {self.mean:+.1f} points"
            interval = f"[{self.low:+.1f}, {self.high:+.1f}]"
        else:   # a ratio or a distance: no unit, three significant digits
            mean = f"mean {self.mean:+.3g}"
            interval = f"[{self.low:+.3g}, {self.high:+.3g}]"
        return (f"{claim}: {self.outcome} ({mean}, 95 % interval {interval}, {self.seeds} "
                f"seeds: {per_seed})")


def compare(values: pd.DataFrame, better: str, base: str, metric: str = "rank1") -> Comparison:
    """Judge "`better` > `base`" on `metric` from `values`, a long table with columns "label",
    "seed" and the metric (one row per complete run, as `results.seed_values` returns): pairs
    the two labels' runs by seed and applies the rule of this module."""
    rows = {label: values[values.label == label].set_index("seed")[metric]
            for label in (better, base)}
    if any(r.empty for r in rows.values()):
        return Comparison(better, base, metric, "not run")
    for label, r in rows.items():
        if r.index.duplicated().any():
            raise ValueError(f"compare: {label!r} has two runs for seed(s) "
                             f"{sorted(set(r.index[r.index.duplicated()]))}")
    paired = (rows[better] - rows[base]).dropna()
    diffs = {int(s): float(d) for s, d in paired.items()}
    if len(diffs) < MIN_SEEDS:
        return Comparison(better, base, metric, "not tested", diffs)
    d = np.fromiter(diffs.values(), float)
    mean, half = float(d.mean()), t975(len(d) - 1) * float(d.std(ddof=1)) / math.sqrt(len(d))
    low, high = mean - half, mean + half
    outcome = "holds" if low > 0 else "reversed" if high < 0 else "within noise"
    return Comparison(better, base, metric, outcome, diffs, mean, low, high)


def ordering(values: pd.DataFrame, order: list[str], metric: str = "rank1") -> list[Comparison]:
    """The verdict on each neighbouring pair of a claimed ordering, worst row first
    (["baseline", "+AM", "+AM+UL"] claims baseline < +AM < +AM+UL)."""
    return [compare(values, hi, lo, metric) for lo, hi in zip(order[:-1], order[1:])]


@dataclass
class Trend:
    """How a gain (better minus base) moves along a knob, one run per level."""

    gains: dict[float, float]
    outcome: str          # "grows" / "shrinks" (as the knob decreases), "no change within
    slope: float | None = None        # noise", "not tested"
    low: float | None = None
    high: float | None = None


def trend(table: pd.DataFrame, better: str, base: str) -> Trend:
    """The gain of column `better` over column `base` along the knob in `table`'s index (one row
    per knob value, one column per variant, e.g. a metric unstacked by variant), and its
    least-squares slope with a 95 % interval from the residuals. The gain "grows" (as the knob
    decreases) when the interval lies below zero, "shrinks" when above, "no change within
    noise" when it holds zero; "not tested" with fewer than `MIN_LEVELS` levels."""
    gain = (table[better] - table[base]).dropna()
    gains = {float(k): float(v) for k, v in gain.items()}
    if len(gains) < MIN_LEVELS:
        return Trend(gains, "not tested")
    x = np.fromiter(gains.keys(), float)
    y = np.fromiter(gains.values(), float)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    sxx = float(((x - x.mean()) ** 2).sum())
    if sxx == 0:
        raise ValueError("trend: every level has the same knob value")
    se = math.sqrt(float((resid ** 2).sum()) / (len(x) - 2) / sxx)
    half = t975(len(x) - 2) * se
    low, high = float(slope) - half, float(slope) + half
    outcome = ("grows" if high < 0 else "shrinks" if low > 0 else "no change within noise")
    return Trend(gains, outcome, float(slope), low, high)


def trend_sentences(table: pd.DataFrame, better: str, base: str, metric: str = "rank-1",
                    knob: str = "p", decreasing: str | None = None) -> list[str]:
    """Two lines for the book: the gain at each level, then the verdict of `trend` in words
    (`decreasing` says what a smaller knob means, e.g. "the bag is seen less often")."""
    t = trend(table, better, base)
    if not t.gains:
        return []
    first = (f"{metric} of {better} minus {base}: "
             + ", ".join(f"{knob}={k:g}: {g:+.1f}" for k, g in t.gains.items()))
    if t.outcome == "not tested":
        return [first, f"trend not tested ({len(t.gains)} levels, {MIN_LEVELS} needed)"]
    what = decreasing or f"{knob} decreases"
    verdict = (f"no change within noise as {what}" if t.outcome == "no change within noise"
               else f"the gain {t.outcome} as {what}")
    return [first, f"{verdict} (slope {t.slope:+.1f} points per unit of {knob}, 95 % interval "
                   f"[{t.low:+.1f}, {t.high:+.1f}], {len(t.gains)} levels)"]


def verdict_table(comparisons: list[Comparison]) -> pd.DataFrame:
    """The comparisons as a table: claim, metric, outcome, seeds, mean difference, interval."""
    return pd.DataFrame([{"claim": f"{c.better} > {c.base}", "metric": _shown(c.metric),
                          "verdict": c.outcome, "paired seeds": c.seeds,
                          "mean difference": c.mean, "95 % low": c.low, "95 % high": c.high,
                          "per seed": ", ".join(f"{d:+.1f}" for _, d in sorted(c.diffs.items()))}
                         for c in comparisons]).round(2)


# --- the scoreboard: verdicts a chapter publishes for the book's landing page ----------------

#: The MIME type of a published verdict record. A chapter's cell outputs it (`publish`,
#: `publish_trend`, `publish_not_tested`); the book's assembler (`reidnb.book.scoreboard`) reads
#: it from the executed notebook, drops it from the page and builds the landing page's
#: scoreboard from every chapter's records. The record holds only what the run records decide
#: (no time, no machine), so nbval compares it exactly like any other output.
MIME = "application/vnd.reidnb.verdicts+json"
SCHEMA = 1
#: What a trend claim can expect of the gain as its knob grows (`trend_verdict`).
TREND_DIRECTIONS = ("rises", "falls")


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _pair_row(c: Comparison) -> dict:
    return {"kind": "pair", "claim": f"{c.better} > {c.base}", "metric": _shown(c.metric),
            "percent": _is_percent(c.metric), "verdict": c.outcome,
            "seeds": sorted(int(s) for s in c.diffs), "mean": _num(c.mean),
            "low": _num(c.low), "high": _num(c.high)}


def record(paper: str, claim: str, comparisons: list[Comparison]) -> dict:
    """The published form of a claim judged by `compare`/`ordering`: one row per comparison
    (the pair, the metric, the outcome, the paired seeds, the mean difference and its 95 %
    interval), JSON-ready."""
    if not isinstance(paper, str) or not paper or not isinstance(claim, str) or not claim:
        raise ValueError("record: give the paper's key and the claim in words")
    rows = []
    for c in comparisons:
        if not isinstance(c, Comparison):
            raise TypeError(f"record: expected Comparison objects (compare, ordering), got "
                            f"{type(c).__name__}")
        rows.append(_pair_row(c))
    return {"schema": SCHEMA, "paper": paper, "claim": claim, "rows": rows}


def trend_verdict(t: Trend, expect: str) -> str:
    """A trend's outcome as a verdict on the claim that the gain `expect`s ("rises" or "falls")
    as the knob grows: "holds", "reversed", "within noise" or "not tested"."""
    if expect not in TREND_DIRECTIONS:
        raise ValueError(f"expect must be one of {TREND_DIRECTIONS}, got {expect!r}")
    if t.outcome == "not tested":
        return "not tested"
    if t.outcome == "no change within noise":
        return "within noise"
    rises = t.outcome == "shrinks"   # `trend` speaks of the knob decreasing
    return "holds" if rises == (expect == "rises") else "reversed"


def trend_record(paper: str, claim: str, tables, better: str, base: str, expect: str,
                 metrics=("rank1", "mAP"), seeds=None, knob: str = "p") -> dict:
    """The published form of a trend claim: for each metric, `trend(tables[metric], better,
    base)` read against `expect` ("rises": the gain of `better` over `base` grows with the
    knob; "falls": it shrinks). `tables[metric]` is the chapter's table of that metric, one
    row per knob level, one column per variant (a dict of frames, or a frame with the metric
    as its first column level). `seeds` are the seeds behind each level."""
    rec = record(paper, claim, [])
    seeds = sorted(int(s) for s in (seeds if seeds is not None else []))
    for metric in metrics:
        t = trend(tables[metric], better, base)
        rec["rows"].append({
            "kind": "trend", "claim": f"{better} − {base} {expect} with {knob}",
            "metric": _shown(metric), "percent": _is_percent(metric),
            "verdict": trend_verdict(t, expect), "seeds": seeds, "levels": len(t.gains),
            "mean": _num(t.slope), "low": _num(t.low), "high": _num(t.high)})
    return rec


def not_tested_record(paper: str, claim: str, why: str, seeds=None) -> dict:
    """The published form of a claim a chapter shows but does not judge (`why`, e.g. "one seed
    per stage")."""
    rec = record(paper, claim, [])
    rec["rows"].append({"kind": "note", "claim": why, "metric": "", "percent": False,
                        "verdict": "not tested",
                        "seeds": sorted(int(s) for s in (seeds if seeds is not None else [])),
                        "mean": None, "low": None, "high": None})
    return rec


def summary_line(rec: dict) -> str:
    """One line naming a published record: its paper, claim and the count of each verdict."""
    counts: dict[str, int] = {}
    for row in rec["rows"]:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(),
                                                      key=lambda kv: OUTCOMES.index(kv[0])))
    return f"scoreboard: {rec['paper']}, {rec['claim']}: {tally or 'no verdict'}"


def _display(rec: dict) -> None:
    from IPython.display import display

    display({MIME: rec, "text/plain": summary_line(rec)}, raw=True)


def publish(paper: str, claim: str, comparisons: list[Comparison]) -> None:
    """Record the verdicts on a claim for the book's scoreboard: outputs `record(...)` under
    `MIME` (shown in Jupyter as one line, `summary_line`). Call it in the cell that shows the
    verdicts; the scoreboard links to that cell."""
    _display(record(paper, claim, comparisons))


def publish_trend(paper: str, claim: str, tables, better: str, base: str, expect: str,
                  metrics=("rank1", "mAP"), seeds=None, knob: str = "p") -> None:
    """`publish` for a trend over a sweep (see `trend_record`)."""
    _display(trend_record(paper, claim, tables, better, base, expect, metrics, seeds, knob))


def publish_not_tested(paper: str, claim: str, why: str, seeds=None) -> None:
    """`publish` for a claim the chapter shows without judging it (see `not_tested_record`)."""
    _display(not_tested_record(paper, claim, why, seeds))


def publish_judged(paper: str, claim: str, comparisons: list[Comparison], why_not: str) -> None:
    """`publish` the comparisons and show their `verdict_table`; with none (the profile has no
    runs to form them), `publish_not_tested` with `why_not` instead."""
    if not comparisons:
        publish_not_tested(paper, claim, why_not)
        return
    from IPython.display import display

    publish(paper, claim, comparisons)
    display(verdict_table(comparisons))
