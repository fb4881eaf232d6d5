"""Run records -> tables: what the book shows next to the papers' claims.

A run record is the JSON that `experiments.run_experiment` writes (`runs/<run>/record.json`);
reference runs worth keeping (e.g. a GPU run) are committed under `results/`. Every number in a
notebook table comes from here, never typed by hand; so do the settings table of an experiment
and the sentences that read a seed table (orderings, the best row, the trend over a sweep).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .io import read_json


def load_records(*folders: str | Path, profile: str | None = None,
                 complete_only: bool = True) -> list[dict]:
    """Every `record.json` under the given folders (default `runs/` and `results/`)."""
    folders = folders or ("runs", "results")
    records = []
    for folder in folders:
        for path in sorted(Path(folder).glob("**/*.json")):
            rec = read_json(path)
            if not isinstance(rec, dict) or "run_name" not in rec:
                continue
            if complete_only and rec.get("status") != "complete":
                continue
            if profile and rec.get("profile") != profile:
                continue
            rec["_path"] = str(path)
            records.append(rec)
    return records


def metrics_frame(records: list[dict]) -> pd.DataFrame:
    """Long table: one row per (run, protocol, metric)."""
    rows = []
    for rec in records:
        for protocol, metrics in rec.get("metrics", {}).items():
            for metric, value in metrics.items():
                rows.append({"name": rec["name"], "paper": rec.get("paper"),
                             "profile": rec.get("profile"), "dataset": rec["dataset"]["name"],
                             "seed": rec["config"]["train"]["seed"], "protocol": protocol,
                             "metric": metric, "value": value, "run_name": rec["run_name"],
                             "device": rec.get("device", {}).get("device")})
    cols = ["name", "paper", "profile", "dataset", "seed", "protocol", "metric", "value",
            "run_name", "device"]
    return pd.DataFrame(rows, columns=cols)


def summary_table(records: list[dict], metrics=("rank1", "rank5", "rank10", "mAP"),
                  protocol: str = "single_query") -> pd.DataFrame:
    """Mean and spread over seeds per (name, dataset): columns like 'rank1' and 'rank1 ±'."""
    df = metrics_frame(records)
    df = df[(df.protocol == protocol) & df.metric.isin(metrics)]
    if df.empty:
        return pd.DataFrame()
    g = df.groupby(["name", "dataset", "metric"])["value"]
    out = g.mean().unstack("metric")[list(m for m in metrics if m in df.metric.unique())]
    spread = g.std(ddof=0).unstack("metric")
    seeds = df.groupby(["name", "dataset"])["seed"].nunique().rename("seeds")
    for m in out.columns.tolist():
        out[f"{m} ±"] = spread[m]
    return out.join(seeds).round(2)


def claims_vs_runs(claims: pd.DataFrame, records: list[dict],
                   links: dict[str, list[tuple[str, str, str]]] | None = None) -> pd.DataFrame:
    """Every claim row with the reproduced value beside it ('not run' where there is none).

    A claim is matched by (paper, table, method) through `links` and by metric and protocol; the
    run's data set is shown next to it, since SynthReID numbers are not Market-1501 numbers.
    """
    if links is None:
        from .papers import CLAIM_LINKS as links
    mf = metrics_frame(records)
    out = claims.copy()
    out["reproduced"] = "not run"
    out["run dataset"] = ""
    for name, targets in links.items():
        runs = mf[mf.name == name]
        if runs.empty:
            continue
        for paper, table, method in targets:
            sel = (out.paper == paper) & (out.table == table) & (out.method == method)
            for idx in out.index[sel]:
                hit = runs[(runs.metric == out.at[idx, "metric"]) &
                           (runs.protocol == out.at[idx, "protocol"])]
                if not hit.empty:
                    vals = hit.groupby("dataset")["value"]
                    ds = vals.mean().index[0]
                    mean, std, n = vals.mean().iloc[0], vals.std(ddof=0).iloc[0], vals.size().iloc[0]
                    out.at[idx, "reproduced"] = f"{mean:.1f}" + (f" ± {std:.1f} (n={n})" if n > 1
                                                                 else "")
                    out.at[idx, "run dataset"] = ds
    return out


def eval_speed_table(path: str | Path = "benchmarks/results/bench_eval_cpu.json") -> pd.DataFrame:
    """The evaluation speed table of a `benchmarks/bench_eval.py --json` record."""
    bench = read_json(path)
    er, rs, rf = bench["evaluate_rank"], bench["re_ranking_subsample"], bench["re_ranking_full"]
    rows = [
        {"task": "evaluate_rank, 3,368 x 15,913", "reference (s)": er["reference_s"],
         "reidnb (s)": er["reidnb_s"], "speed-up": er["ratio"]},
        {"task": f"re_ranking, {rs['items']} items", "reference (s)": rs["reference_s"],
         "reidnb (s)": rs["reidnb_s"], "speed-up": rs["ratio"]},
        {"task": f"re_ranking, {rf['items']} items", "reference (s)": None,
         "reidnb (s)": rf["reidnb_s"], "speed-up": None},
    ]
    machine = f"{bench['cores']} CPU cores, {bench['device']['device']}, {bench['date']}"
    return pd.DataFrame(rows).set_index("task").round(3).assign(machine=machine)


def compare_runs(runs: dict[str, "object"], runs_dir: str | Path = "runs",
                 metrics=("rank1", "rank5", "mAP"), protocol: str = "single_query"
                 ) -> pd.DataFrame:
    """One row per labelled experiment, read from its run record: metrics, the epoch evaluated,
    training images seen (a triplet counts three) and training time. A run without a complete
    record is listed as "not run" rather than left out."""
    from .experiments import run_dir_for

    rows = []
    for label, exp in runs.items():
        path = run_dir_for(exp, runs_dir) / "record.json"
        rec = read_json(path) if path.exists() else {}
        row = {"method": label, "run": exp.run_name}
        if rec.get("status") != "complete":
            rows.append({**row, "status": "not run"})
            continue
        hist = rec["history"]
        seen = sum(h["images"] for h in hist) if all("images" in h for h in hist) else None
        row.update({m: rec["metrics"][protocol].get(m) for m in metrics})
        row.update({"epochs": len(hist), "evaluated epoch": rec.get("evaluated_epoch", len(hist)),
                    "train images seen": seen, "train time (min)": rec["train_time_s"] / 60,
                    "status": "complete"})
        rows.append(row)
    return pd.DataFrame(rows).set_index("method").round(2)


def seed_table(groups: dict[str, list], runs_dir: str | Path = "runs",
               metrics=("rank1", "mAP"), protocol: str = "single_query") -> pd.DataFrame:
    """One row per label: mean and spread (population std) over the seeds of its experiments,
    read from their run records, and how many seeds had a complete record. A label with none
    reads "not run"."""
    from .experiments import run_dir_for

    rows = []
    for label, exps in groups.items():
        vals: dict[str, list[float]] = {m: [] for m in metrics}
        for exp in exps:
            path = run_dir_for(exp, runs_dir) / "record.json"
            rec = read_json(path) if path.exists() else {}
            if rec.get("status") == "complete":
                for m in metrics:
                    vals[m].append(rec["metrics"][protocol][m])
        n = len(vals[metrics[0]])
        row = {"label": label, "seeds": n}
        for m in metrics:
            row[m] = float(pd.Series(vals[m]).mean()) if n else None
            row[f"{m} ±"] = float(pd.Series(vals[m]).std(ddof=0)) if n else None
        row["status"] = "complete" if n else "not run"
        rows.append(row)
    return pd.DataFrame(rows).set_index("label").round(2)


def seed_values(groups: dict[str, list], runs_dir: str | Path = "runs",
                metrics=("rank1", "mAP"), protocol: str = "single_query") -> pd.DataFrame:
    """The runs behind `seed_table`, one row each: label, seed and the metrics, from the complete
    run records only (the long form `viz.seed_spread` plots)."""
    from .experiments import run_dir_for

    rows = []
    for label, exps in groups.items():
        for exp in exps:
            path = run_dir_for(exp, runs_dir) / "record.json"
            rec = read_json(path) if path.exists() else {}
            if rec.get("status") == "complete":
                rows.append({"label": label, "seed": exp.train.seed,
                             **{m: rec["metrics"][protocol][m] for m in metrics}})
    return pd.DataFrame(rows, columns=["label", "seed", *metrics])


def with_claims(table: pd.DataFrame, methods: dict[str, tuple[str, str, str]],
                dataset: str = "market1501", protocol: str = "single_query") -> pd.DataFrame:
    """`table` (e.g. from `seed_table`) with the paper's number beside each metric column, as
    "paper <metric>"; `methods` maps a row label to the ledger's (paper, table, method)."""
    from .claims import claim

    out = table.copy()
    metrics = [c for c in table.columns if c in ("rank1", "rank5", "rank10", "mAP")]
    for m in metrics:
        out[f"paper {m}"] = [claim(*methods[label][:2], dataset, protocol, methods[label][2], m)
                             if label in methods else None for label in table.index]
    return out


def ordering_verdicts(table: pd.DataFrame, order: list[str], metric: str = "rank1"
                      ) -> list[str]:
    """For each neighbouring pair of a claimed ordering (worst first), a sentence saying whether
    the runs agree, and whether the gap is larger than the seeds' spread."""
    out = []
    for lo, hi in zip(order[:-1], order[1:]):
        a, b = table.loc[lo], table.loc[hi]
        if a["status"] != "complete" or b["status"] != "complete":
            out.append(f"{hi} > {lo} ({metric}): not run in this profile")
            continue
        gap = b[metric] - a[metric]
        spread = max(a.get(f"{metric} ±") or 0.0, b.get(f"{metric} ±") or 0.0)
        seeds = int(min(a["seeds"], b["seeds"]))
        verdict = "holds" if gap > 0 else "does not hold"
        if seeds > 1:
            size = "larger" if abs(gap) > spread else "not larger"
            note = f"{size} than the seeds' spread of {spread:.1f}"
        else:
            note = "one seed, no spread"
        out.append(f"{hi} > {lo} ({metric}): {verdict} here ({gap:+.1f} points; {note})")
    return out


# The settings most chapters show, by the label they show them under: a dotted path into the
# Experiment (attributes, then dict keys) or a function of it. `settings_table` takes these labels.
SETTINGS: dict[str, str | Callable] = {
    "backbone": "model_kwargs.backbone",
    "image size": lambda exp: f"{exp.height}x{exp.width}",
    "epochs": "train.epochs",
    "optimizer": "train.optimizer",
    "lr": "train.lr",
    "seed": "train.seed",
}


def _setting(exp, getter: str | Callable):
    if callable(getter):
        return getter(exp)
    value = exp
    for part in getter.split("."):
        if isinstance(value, dict):
            if part not in value:
                raise KeyError(f"settings_table: {getter!r}: no key {part!r} (keys: "
                               f"{sorted(value)})")
            value = value[part]
        elif hasattr(value, part):
            value = getattr(value, part)
        else:
            raise KeyError(f"settings_table: {getter!r}: {type(value).__name__} has no {part!r}")
    return value


def settings_table(exp, fields: Iterable[str | tuple[str, str | Callable]] | None = None,
                   extra: dict | None = None) -> pd.DataFrame:
    """The settings of an experiment as a one-column table ("value", indexed by "setting"), in
    the order given. Each field is a label of `SETTINGS` ("backbone", "image size", ...) or a
    (label, getter) pair, the getter a dotted path into the experiment ("train.lr",
    "objective_kwargs.batch_size") or a function of it. `extra` rows (label -> value), facts
    about the chapter rather than the experiment, come last. Default fields: all of `SETTINGS`."""
    labels, values = [], []
    for item in (SETTINGS if fields is None else fields):
        if isinstance(item, str):
            if item not in SETTINGS:
                raise KeyError(f"settings_table: no standard setting {item!r}; give "
                               f"(label, getter) or one of {list(SETTINGS)}")
            label, getter = item, SETTINGS[item]
        else:
            label, getter = item
        labels.append(label)
        values.append(_setting(exp, getter))
    for label, value in (extra or {}).items():
        labels.append(label)
        values.append(value)
    return pd.DataFrame({"setting": labels, "value": values}).set_index("setting")


_RANK = re.compile(r"rank-?(\d+)$")


def rank_metrics(result, metrics=("rank1", "rank5", "mAP"), protocol: str = "single_query"
                 ) -> dict[str, float]:
    """Rank-k and mAP in percent, keyed by the names in `metrics` ("mAP", "rank<k>" or
    "rank-<k>", kept as written). `result` is a run record (its stored percentages for
    `protocol`), or what `metrics.evaluate_rank` returns (a (cmc, mAP) pair, fractions) or a dict
    with "cmc" and "mAP" fractions (`handcrafted.histogram_baseline`): rank-k is 100 * cmc[k - 1]
    and mAP 100 * mAP. A metric the result lacks raises KeyError."""
    if isinstance(result, dict) and "metrics" in result:
        stored = result["metrics"][protocol]
        out = {}
        for name in metrics:
            m = _RANK.match(name)
            key = f"rank{m.group(1)}" if m else name
            if key not in stored:
                raise KeyError(f"rank_metrics: the record of {result.get('run_name', '?')} has "
                               f"no {key!r} for {protocol} (it has {sorted(stored)})")
            out[name] = stored[key]
        return out
    cmc, mean_ap = (result["cmc"], result["mAP"]) if isinstance(result, dict) else result
    out = {}
    for name in metrics:
        m = _RANK.match(name)
        if name == "mAP":
            out[name] = 100 * mean_ap
        elif m and int(m.group(1)) <= len(cmc):
            out[name] = 100 * cmc[int(m.group(1)) - 1]
        else:
            raise KeyError(f"rank_metrics: cannot read {name!r} from a CMC of {len(cmc)} ranks")
    return out


def metrics_table(results: dict, metrics=("rank1", "rank5", "mAP"),
                  protocol: str = "single_query") -> pd.DataFrame:
    """One row per label of `results` (label -> run record or CMC and mAP, see `rank_metrics`),
    one column per metric, in percent, unrounded."""
    return pd.DataFrame.from_dict({label: rank_metrics(res, metrics, protocol)
                                   for label, res in results.items()}, orient="index")


def best_row(table: pd.DataFrame, metric: str = "rank1", what: str = "row") -> str | None:
    """A sentence naming the complete row of a seed table (`seed_table`, `with_claims`) with the
    highest `metric` and its value, the row the paper ranks highest (its "paper <metric>" column,
    when there is one with a value) and how many seeds each row has. None when no row is
    complete. Rule: the largest value wins, the first row on a tie (`idxmax`); no test of
    whether the gap is larger than the seeds' spread."""
    done = table[table.status == "complete"]
    if not len(done):
        return None
    best = done[metric].idxmax()
    shown = f"rank-{metric[4:]}" if _RANK.match(metric) else metric
    parts = [f"best {what} here: {best} ({shown} {done.loc[best, metric]:.1f})"]
    paper = f"paper {metric}"
    if paper in table.columns and table[paper].notna().any():
        parts.append(f"the paper's best: {table[paper].idxmax()}")
    seeds = sorted({int(n) for n in done["seeds"]})
    count = "one seed" if seeds == [1] else (f"{seeds[0]} seeds" if len(seeds) == 1
                                             else f"{seeds[0]} to {seeds[-1]} seeds")
    parts.append(f"{count} per {what}")
    return "; ".join(parts)


def gain_trend(table: pd.DataFrame, better: str, base: str, metric: str = "rank-1",
               knob: str = "p", by: str | None = None, decreasing: str | None = None,
               note: str | None = None) -> list[str]:
    """How the gain of column `better` over column `base` moves along a sweep: `table` has one
    row per value of a knob (its index) and one column per variant, as a seed table's metric
    unstacked by variant. Two sentences: the gain at each knob value where both ran, then its
    trend; none (an empty list) with fewer than two such values.

    Rule: the trend is the least-squares slope of the gain against the knob value
    (`np.polyfit`, degree 1); a negative slope reads "grows" as the knob decreases
    (`decreasing` says what that means, e.g. "the bag is seen less often"), any other
    "shrinks". No test against the seeds' spread; `note` (e.g. how many seeds) ends the
    second sentence."""
    gain = (table[better] - table[base]).dropna()
    if len(gain) <= 1:
        return []
    trend = np.polyfit(gain.index.to_numpy(float), gain.to_numpy(float), 1)[0]
    tail = f"slope {trend:+.1f} points per unit of {knob}" + (f"; {note}" if note else "")
    return [f"{metric} of {better} minus {base}, by {by or knob}: "
            + ", ".join(f"{knob}={p:g}: {g:+.1f}" for p, g in gain.items()),
            f"the gain {'grows' if trend < 0 else 'shrinks'} as "
            f"{decreasing or f'{knob} decreases'} ({tail})"]
