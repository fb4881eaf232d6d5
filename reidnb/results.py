"""Run records -> tables: what the book shows next to the papers' claims.

A run record is the JSON that `experiments.run_experiment` writes (`runs/<run>/record.json`);
reference runs worth keeping (e.g. a GPU run) are committed under `results/`. Every number in a
notebook table comes from here, never typed by hand; so do the settings table of an experiment
and the sentences that read a seed table (orderings, the best row, the trend over a sweep).
Tables over many records (`summary_table`, `claims_vs_runs`) first keep one configuration per
run name and data set (`current_records`), so records of older code do not enter a mean.
"""

from __future__ import annotations

import os
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

import numpy as np
import pandas as pd

from .io import read_json


#: The real data sets a claim can name and a run can fill; SynthReID runs never fill them.
REAL_DATASETS: tuple[str, ...] = ("market1501", "dukemtmcreid", "cuhk03_labeled",
                                  "cuhk03_detected")
SYNTHETIC_DATASET = "synthreid"
#: The `claims_vs_runs` column for this build's SynthReID runs of a claimed method.
SYNTH_COLUMN = "SynthReID (this build)"
NOT_RUN = "not run"


def load_records(*folders: str | Path, profile: str | None = None,
                 complete_only: bool = True) -> list[dict]:
    """Every `record.json` under the given folders (default `runs/` and `results/`), each with
    its path as "_path". All configurations are returned; `current_records` picks one per run."""
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


def config_key(config: dict) -> str:
    """Hash of a run's configuration (`Experiment.to_dict()`, or a record's "config") without
    its seed: the runs of one configuration over several seeds share it
    (`experiments.config_hash`, the hash behind run names, so records older than an option
    match)."""
    from .experiments import config_hash

    return config_hash(config, without_seed=True)


def _record_time(rec: dict) -> float:
    """When a record was written: its "finished" (else "started") time, else its file's mtime."""
    for field in ("finished", "started"):
        try:
            return datetime.fromisoformat(rec[field]).timestamp()
        except (KeyError, TypeError, ValueError):
            pass
    try:
        return os.path.getmtime(rec["_path"])
    except (KeyError, TypeError, OSError):
        return float("-inf")


def _current_config_keys(name: str, profile: str | None, dataset: str) -> set[str]:
    """Seedless keys of the configurations this code builds for run `name` (its registered
    factory and every paper's plan); empty when the registry does not know the name."""
    from . import papers

    exps = []
    if name in papers.EXPERIMENTS:
        try:
            exps.append(papers.experiment(name, profile, dataset))
        except (ValueError, KeyError, TypeError):
            pass
    for module in papers.MODULES:
        try:
            groups = module.plan(profile, dataset)
        except (ValueError, KeyError, TypeError):
            continue
        exps += [e for group in groups.values() for e in group if e.name == name]
    return {config_key(e.to_dict()) for e in exps if e.dataset == dataset}


def _measured(rec: dict) -> tuple:
    """What a record measures: run name, profile, data set, and for SynthReID which set (size,
    generator seed): e.g. li2019's Table 3 runs on the default set and on the two-camera set are
    both current configurations of one name, and neither replaces the other."""
    config = rec.get("config") or {}
    return (rec["name"], rec.get("profile"), rec["dataset"]["name"],
            config.get("synth_size"), config.get("synth_seed", 0))


def standard_set(records: list[dict]) -> list[dict]:
    """The records on a real data set or on their profile's standard SynthReID (its size,
    generator seed 0): the runs a claims table shows beside the papers' numbers."""
    from .experiments import SYNTH_SIZE

    def standard(rec: dict) -> bool:
        config = rec.get("config") or {}
        if rec["dataset"]["name"] != SYNTHETIC_DATASET:
            return True
        own = SYNTH_SIZE.get(rec.get("profile"), "default")
        return config.get("synth_size", own) == own and config.get("synth_seed", 0) == 0

    return [r for r in records if standard(r)]


def current_records(records: list[dict], warn: bool = True) -> list[dict]:
    """The records of one configuration per (name, profile, dataset), in input order.

    Records of a run are grouped by `config_key`. When there are several configurations, the
    one the current code builds (`reidnb.papers`) is kept; when none of them is, the newest
    (by `_record_time`) is kept and a warning names the run names left out. A run name found
    twice (e.g. in `runs/` and `results/`) counts once, its newest record.
    """
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for rec in records:
        where = _measured(rec)
        groups.setdefault(where, {}).setdefault(config_key(rec["config"]), []).append(rec)
    keep: set[int] = set()
    for (name, profile, dataset, *_), configs in groups.items():
        chosen = next(iter(configs))
        if len(configs) > 1:
            newest = {k: max(_record_time(r) for r in recs) for k, recs in configs.items()}
            current = _current_config_keys(name, profile, dataset) & set(configs)
            chosen = max(current or configs, key=newest.__getitem__)
            if not current and warn:
                left = sorted({r["run_name"] for k, recs in configs.items() if k != chosen
                               for r in recs})
                warnings.warn(f"{name} on {dataset} ({profile} profile): {len(configs)} "
                              "configurations in the records, none of them the current code's; "
                              f"using the newest, leaving out {', '.join(left)}", stacklevel=2)
        newest_of_run: dict[str, dict] = {}
        for rec in configs[chosen]:
            seen = newest_of_run.get(rec["run_name"])
            if seen is None or _record_time(rec) > _record_time(seen):
                newest_of_run[rec["run_name"]] = rec
        keep.update(id(r) for r in newest_of_run.values())
    return [r for r in records if id(r) in keep]


def metrics_frame(records: list[dict]) -> pd.DataFrame:
    """Long table: one row per (run, protocol, metric); "config" is the run's `config_key`."""
    rows = []
    for rec in records:
        for protocol, metrics in rec.get("metrics", {}).items():
            for metric, value in metrics.items():
                rows.append({"name": rec["name"], "paper": rec.get("paper"),
                             "profile": rec.get("profile"), "dataset": rec["dataset"]["name"],
                             "seed": rec["config"]["train"]["seed"], "protocol": protocol,
                             "metric": metric, "value": value, "run_name": rec["run_name"],
                             "device": rec.get("device", {}).get("device"),
                             "config": config_key(rec["config"])})
    cols = ["name", "paper", "profile", "dataset", "seed", "protocol", "metric", "value",
            "run_name", "device", "config"]
    return pd.DataFrame(rows, columns=cols)


def summary_table(records: list[dict], metrics=("rank1", "rank5", "rank10", "mAP"),
                  protocol: str = "single_query") -> pd.DataFrame:
    """Mean and spread (sample std, n - 1) over seeds per (name, profile, dataset), from the
    `current_records` only: columns like 'rank1' and 'rank1 ±', and 'seeds'."""
    df = metrics_frame(current_records(records))
    df = df[(df.protocol == protocol) & df.metric.isin(metrics)]
    if df.empty:
        return pd.DataFrame()
    keys = ["name", "profile", "dataset"]
    g = df.groupby([*keys, "metric"], dropna=False)["value"]
    out = g.mean().unstack("metric")[list(m for m in metrics if m in df.metric.unique())]
    spread = g.std(ddof=1).unstack("metric")
    seeds = df.groupby(keys, dropna=False)["seed"].nunique().rename("seeds")
    for m in out.columns.tolist():
        out[f"{m} ±"] = spread[m]
    return out.join(seeds).round(2)


def _over_seeds(values: pd.Series) -> str:
    """One value as "50.0"; several as "mean ± sample std (n=k)"."""
    if len(values) == 1:
        return f"{values.iloc[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} (n={len(values)})"


def claims_vs_runs(claims: pd.DataFrame, records: list[dict],
                   links: dict[str, list[tuple[str, str, str]]] | None = None) -> pd.DataFrame:
    """Every claim row with this build's values beside it.

    Columns added to the claims' own (paper, table, dataset, protocol, method, metric, value):

    - "reproduced": the linked runs on the claim's own data set (one of `REAL_DATASETS`), as
      "v" for one seed or "mean ± sample std (n=k)"; "not run" when there is none.
    - "run dataset": the data set behind "reproduced" (the claim's own), "" when not run.
    - `SYNTH_COLUMN` ("SynthReID (this build)"): the linked runs on SynthReID, same format,
      shown on every row of the same (paper, table, method, metric, protocol) whatever its
      data set; synthetic data, so never a reproduction of the printed number.

    A run is linked to (paper, table, method) rows through `links` (default
    `reidnb.papers.CLAIM_LINKS`) and must match the row's metric and protocol. Only the
    `current_records` on a real data set or the profile's standard SynthReID count
    (`standard_set`: a run on the two-camera set is another experiment); records of one
    profile are expected (ValueError otherwise).
    """
    if links is None:
        from .papers import CLAIM_LINKS as links
    mf = metrics_frame(current_records(standard_set(records)))
    out = claims.copy()
    out["reproduced"] = NOT_RUN
    out["run dataset"] = ""
    out[SYNTH_COLUMN] = NOT_RUN
    for name, targets in links.items():
        runs = mf[mf.name == name]
        if runs.empty:
            continue
        profiles = runs.groupby("dataset")["profile"].nunique(dropna=False)
        if (profiles > 1).any():
            raise ValueError(f"claims_vs_runs: {name} has records of several profiles "
                             f"({sorted(runs.profile.astype(str).unique())}); pass one profile's "
                             "records (load_records(profile=...))")
        for paper, table, method in targets:
            sel = (out.paper == paper) & (out.table == table) & (out.method == method)
            for idx in out.index[sel]:
                hit = runs[(runs.metric == out.at[idx, "metric"]) &
                           (runs.protocol == out.at[idx, "protocol"])]
                dataset = out.at[idx, "dataset"]
                real = hit[hit.dataset == dataset] if dataset in REAL_DATASETS else hit.iloc[:0]
                if not real.empty:
                    out.at[idx, "reproduced"] = _over_seeds(real["value"])
                    out.at[idx, "run dataset"] = dataset
                synth = hit[hit.dataset == SYNTHETIC_DATASET]
                if not synth.empty:
                    out.at[idx, SYNTH_COLUMN] = _over_seeds(synth["value"])
    return out


DATASET_LABELS = {"market1501": "Market-1501", "dukemtmcreid": "DukeMTMC-reID",
                  "cuhk03_labeled": "CUHK03-NP labeled", "cuhk03_detected": "CUHK03-NP detected",
                  "cuhk03": "CUHK03", "none": ""}
PROTOCOL_LABELS = {"single_query": "single query", "multi_query": "multi query",
                   "rerank": "single query + re-ranking", "none": ""}


class ClaimsPart(NamedTuple):
    """One table of a paper's claims page: a caption, the frame, and whether it holds the rows
    the paper quotes from other work (the page folds those away)."""

    caption: str
    frame: pd.DataFrame
    quoted: bool


def _where(table: str, dataset: str = "none", protocol: str = "none") -> str:
    """"Table 5, Market-1501, single query"; "Section 4.2" for a number printed in prose."""
    parts = [f"Section {table[3:]}" if table.startswith("sec") else f"Table {table}",
             DATASET_LABELS.get(dataset, dataset), PROTOCOL_LABELS.get(protocol, protocol)]
    return ", ".join(p for p in parts if p)


def _ordered_methods(methods: Iterable[str], paper: str) -> list[str]:
    """`methods` in the order of `claims.METHODS[paper]`, any others after in the given order."""
    from .claims import METHODS

    present = list(dict.fromkeys(methods))
    own = [m for m in METHODS.get(paper, {}) if m in present]
    return own + [m for m in present if m not in own]


def paper_claims_tables(table: pd.DataFrame, paper: str) -> list[ClaimsPart]:
    """One paper's part of `claims_vs_runs`, as small tables: methods as rows.

    In order: one table per printed (table, data set, protocol) of the paper's own methods
    (`claims.METHODS` order), columns (metric, "paper" | "this build") when any of its cells was
    run on that data set, else the paper's values alone; then one table of this build's
    SynthReID values for the linked own methods (if any); then the quoted rows, one table per
    printed (table, data set, protocol), the paper's values only. A cell the paper leaves empty
    is "".
    """
    from .claims import is_quoted

    rows = table[table.paper == paper]
    quoted = rows.method.map(is_quoted)
    parts: list[ClaimsPart] = []
    keys = ["table", "dataset", "protocol"]
    order = list(dict.fromkeys(rows[keys].itertuples(index=False, name=None)))
    for want_quoted in (False, True):
        part = rows[quoted == want_quoted]
        if want_quoted:
            synth = _synth_table(rows[~quoted], paper)
            if synth is not None:
                parts.append(ClaimsPart("This build on SynthReID (synthetic data: the paper's "
                                        "setting, not its numbers)", synth, False))
        for tbl, ds, proto in order:
            sel = part[(part.table == tbl) & (part.dataset == ds) & (part.protocol == proto)]
            if sel.empty:
                continue
            methods = (_ordered_methods(sel.method, paper) if not want_quoted
                       else list(dict.fromkeys(sel.method)))
            metrics = list(dict.fromkeys(sel.metric))
            paper_vals = sel.pivot(index="method", columns="metric", values="value")
            run = (not want_quoted) and (sel.reproduced != NOT_RUN).any()
            if run:
                built = sel.pivot(index="method", columns="metric", values="reproduced")
                cols = pd.MultiIndex.from_tuples([(m, s) for m in metrics
                                                  for s in ("paper", "this build")],
                                                 names=["metric", None])
                frame = pd.concat({"paper": paper_vals, "this build": built}, axis=1)
                frame = frame.swaplevel(axis=1).reindex(index=methods, columns=cols)
            else:
                frame = paper_vals.reindex(index=methods, columns=metrics)
            frame = frame.astype(object).where(frame.notna(), "")
            frame.index.name, frame.columns.name = "method", None if run else "metric"
            caption = _where(tbl, ds, proto)
            if not want_quoted and not run and proto != "none":
                caption += " (this build: not run on this data set)"
            parts.append(ClaimsPart(caption, frame, want_quoted))
    return parts


def _synth_table(own: pd.DataFrame, paper: str) -> pd.DataFrame | None:
    """This build's SynthReID values of a paper's own methods: rows (where, method), columns
    metrics; None when no linked method has one."""
    hit = own[own[SYNTH_COLUMN] != NOT_RUN]
    if hit.empty:
        return None
    hit = hit.assign(where=[f"Table {t}" if p == "single_query" else _where(t, "none", p)
                            for t, p in zip(hit.table, hit.protocol)])
    # the same run fills every data set of a (table, method, metric): keep one
    hit = hit.drop_duplicates(["where", "method", "metric"])
    wheres = list(dict.fromkeys(hit["where"]))
    methods = _ordered_methods(hit.method, paper)
    index = [(w, m) for w in wheres for m in methods
             if ((hit["where"] == w) & (hit.method == m)).any()]
    frame = hit.pivot(index=["where", "method"], columns="metric", values=SYNTH_COLUMN)
    frame = frame.reindex(index=pd.MultiIndex.from_tuples(index, names=["where", "method"]),
                          columns=list(dict.fromkeys(hit.metric)))
    frame.columns.name = "metric"
    return frame.astype(object).where(frame.notna(), "")


def claims_coverage(table: pd.DataFrame) -> pd.DataFrame:
    """Per paper of `claims_vs_runs`: how many numbers it prints, how many this build
    reproduced on the claim's own data set, and how many have a SynthReID value beside them."""
    return table.groupby("paper", sort=False).agg(
        numbers=("value", "size"),
        reproduced=("reproduced", lambda s: int((s != NOT_RUN).sum())),
        **{"on SynthReID": (SYNTH_COLUMN, lambda s: int((s != NOT_RUN).sum()))})


def eval_speed_table(path: str | Path = "benchmarks/results/bench_eval_cpu.json") -> pd.DataFrame:
    """The evaluation speed table of a `benchmarks/bench_eval.py --json` record."""
    bench = read_json(path)
    er, rs, rf = bench["evaluate_rank"], bench["re_ranking_subsample"], bench["re_ranking_full"]
    rows = [
        {"task": "evaluate_rank, {:,} x {:,}".format(*rf["output_shape"]),
         "reference (s)": er["reference_s"],
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
    """One row per label: mean and spread (sample standard deviation, n - 1 in the
    denominator; empty with one seed) over the seeds of its experiments, read from their run
    records, and how many seeds had a complete record. A label with none reads "not run".
    Verdicts on these rows come from `reidnb.verdicts`, which pairs the runs by seed."""
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
            row[f"{m} ±"] = float(pd.Series(vals[m]).std(ddof=1)) if n > 1 else None
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


HISTORY_REDUCTIONS = ("last", "mean")


def history_values(groups: dict[str, list], runs_dir: str | Path = "runs",
                   keys: Iterable[str] = ("loss_ver",), reduce: str = "last") -> pd.DataFrame:
    """Per-epoch training numbers as `seed_values` gives test metrics: one row per complete
    run (label, seed, one column per key), so `reidnb.verdicts` can judge a claim about a loss
    curve seed by seed. `reduce`: "last" (the last epoch's value) or "mean" (the mean over the
    epochs, i.e. the area under the curve per epoch: lower means the loss came down sooner).
    A key missing from a run's history raises KeyError naming the run and the keys it has."""
    from .experiments import run_dir_for

    if reduce not in HISTORY_REDUCTIONS:
        raise ValueError(f"history_values: reduce={reduce!r}; choose from {HISTORY_REDUCTIONS}")
    keys = list(keys)
    rows = []
    for label, exps in groups.items():
        for exp in exps:
            path = run_dir_for(exp, runs_dir) / "record.json"
            rec = read_json(path) if path.exists() else {}
            if rec.get("status") != "complete" or not rec.get("history"):
                continue
            hist = rec["history"]
            row = {"label": label, "seed": exp.train.seed}
            for key in keys:
                if any(key not in h for h in hist):
                    have = sorted({k for h in hist for k in h})
                    raise KeyError(f"history_values: {rec.get('run_name', path)} has no {key!r} "
                                   f"in every epoch; its history has {have}")
                series = [float(h[key]) for h in hist]
                row[key] = series[-1] if reduce == "last" else float(np.mean(series))
            rows.append(row)
    return pd.DataFrame(rows, columns=["label", "seed", *keys])


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
