"""Run records -> tables: what the book shows next to the papers' claims.

A run record is the JSON that `experiments.run_experiment` writes (`runs/<run>/record.json`);
reference runs worth keeping (e.g. a GPU run) are committed under `results/`. Every number in a
notebook table comes from here, never typed by hand.
"""

from __future__ import annotations

from pathlib import Path

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
