import json
import os
import warnings

import pandas as pd
import pytest

from reidnb.io import atomic_write_json
from reidnb.results import (SYNTH_COLUMN, claims_coverage, claims_vs_runs, config_key,
                            current_records, load_records, metrics_frame, paper_claims_tables,
                            summary_table)


def _record(name, seed, rank1, mAP, status="complete", profile="smoke"):
    return {"name": name, "paper": "baseline", "profile": profile, "run_name": f"{name}-{seed}",
            "status": status, "dataset": {"name": "synthreid"},
            "config": {"train": {"seed": seed}}, "device": {"device": "cpu"},
            "metrics": {"single_query": {"rank1": rank1, "mAP": mAP}}}


def test_load_records_keeps_complete_runs_of_the_profile(tmp_path):
    atomic_write_json(tmp_path / "a" / "record.json", _record("ide", 0, 50.0, 30.0))
    atomic_write_json(tmp_path / "b" / "record.json", _record("ide", 1, 60.0, 40.0, "running"))
    atomic_write_json(tmp_path / "c" / "record.json", _record("ide", 2, 70.0, 50.0,
                                                              profile="synthetic"))
    atomic_write_json(tmp_path / "timings.json", {"total": 3})  # not a run record
    recs = load_records(tmp_path, profile="smoke")
    assert [r["run_name"] for r in recs] == ["ide-0"]


def test_summary_table_mean_and_spread_over_seeds():
    recs = [_record("ide", 0, 50.0, 30.0), _record("ide", 1, 60.0, 40.0)]
    table = summary_table(recs, metrics=("rank1", "mAP"))
    row = table.loc[("ide", "smoke", "synthreid")]
    # 50 and 60: sample std sqrt(50) = 7.07 (the population std would be 5.0)
    assert row["rank1"] == 55.0 and row["rank1 ±"] == 7.07 and row["seeds"] == 2
    assert row["mAP"] == 35.0


def _on(rec, dataset, **config):
    """`rec` run on `dataset`, its configuration changed by `config` (e.g. lr=0.1)."""
    rec["dataset"] = {"name": dataset}
    rec["run_name"] = f"{rec['name']}-{dataset}-{rec['config']['train']['seed']}"
    rec["config"] = {**rec["config"], "dataset": dataset, **config}
    return rec


def _claim_rows(*rows):
    return pd.DataFrame([{"paper": "p", "table": "3", "dataset": ds, "protocol": proto,
                          "method": method, "metric": "rank1", "value": value}
                         for ds, proto, method, value in rows])


def test_claims_vs_runs_fills_only_the_claims_own_dataset_and_synthreid_beside():
    claims = _claim_rows(("market1501", "single_query", "IDE baseline", 80.0),
                         ("dukemtmcreid", "single_query", "IDE baseline", 70.0),
                         ("cuhk03_detected", "single_query", "IDE baseline", 40.0),
                         ("market1501", "multi_query", "IDE baseline", 85.0),
                         ("market1501", "single_query", "other", 90.0))
    recs = [_on(_record("ide", 0, 50.0, 30.0), "synthreid"),
            _on(_record("ide", 1, 60.0, 40.0), "synthreid"),
            _on(_record("ide", 0, 75.0, 55.0), "market1501"),
            _on(_record("ide", 0, 65.0, 45.0), "dukemtmcreid"),
            _on(_record("ide", 1, 67.0, 47.0), "dukemtmcreid")]
    out = claims_vs_runs(claims, recs, links={"ide": [("p", "3", "IDE baseline")]})
    assert list(out.columns[-3:]) == ["reproduced", "run dataset", SYNTH_COLUMN]
    # each real data set gets its own runs (not the alphabetically first), one seed: the value
    assert out.loc[0, ["reproduced", "run dataset"]].tolist() == ["75.0", "market1501"]
    assert out.loc[1, ["reproduced", "run dataset"]].tolist() == ["66.0 ± 1.4 (n=2)",
                                                                  "dukemtmcreid"]
    # no CUHK03 run: SynthReID never stands in for it, it only sits in its own column
    assert out.loc[2, ["reproduced", "run dataset"]].tolist() == ["not run", ""]
    # sample standard deviation (ddof=1) of 50 and 60
    assert set(out.loc[:2, SYNTH_COLUMN]) == {"55.0 ± 7.1 (n=2)"}
    # another protocol or an unlinked method: nothing
    assert out.loc[3, ["reproduced", SYNTH_COLUMN]].tolist() == ["not run", "not run"]
    assert out.loc[4, ["reproduced", SYNTH_COLUMN]].tolist() == ["not run", "not run"]


def test_claims_vs_runs_synthreid_only_says_not_run_for_real_data():
    claims = _claim_rows(("market1501", "single_query", "IDE baseline", 80.0))
    out = claims_vs_runs(claims, [_on(_record("ide", 0, 50.0, 30.0), "synthreid")],
                         links={"ide": [("p", "3", "IDE baseline")]})
    assert out.loc[0, "reproduced"] == "not run" and out.loc[0, SYNTH_COLUMN] == "50.0"


def test_claims_vs_runs_refuses_records_of_several_profiles():
    claims = _claim_rows(("market1501", "single_query", "IDE baseline", 80.0))
    recs = [_record("ide", 0, 50.0, 30.0), _record("ide", 1, 60.0, 40.0, profile="synthetic")]
    with pytest.raises(ValueError, match="several profiles"):
        claims_vs_runs(claims, recs, links={"ide": [("p", "3", "IDE baseline")]})


def test_config_key_ignores_the_seed_and_neutral_defaults():
    from reidnb.experiments import Experiment

    exp = Experiment(name="x")
    config = json.loads(json.dumps(exp.to_dict(), default=str))   # as a record stores it
    assert config_key(config) == config_key(exp.to_dict())
    assert config_key(exp.replace(train={"seed": 3}).to_dict()) == config_key(config)
    assert config_key(exp.replace(train={"lr": 0.5}).to_dict()) != config_key(config)
    # a record older than an option (no "trunk_from" field) matches the option at its default
    old = {k: v for k, v in config.items() if k != "trunk_from"}
    assert config_key(old) == config_key(config)
    assert config_key({**config, "trunk_from": "ide-synthreid-0"}) != config_key(config)


def test_metrics_frame_has_one_row_per_metric():
    df = metrics_frame([_record("ide", 0, 50.0, 30.0)])
    assert sorted(df.metric) == ["mAP", "rank1"] and set(df.value) == {50.0, 30.0}
    seeds = metrics_frame([_record("ide", 0, 50.0, 30.0), _record("ide", 1, 60.0, 40.0)])
    assert seeds.config.nunique() == 1


def _stamped(rec, finished, **config):
    rec["finished"] = finished
    rec["config"] = {**rec["config"], **config}
    rec["run_name"] += "-" + "-".join(f"{k}{v}" for k, v in config.items())
    return rec


def test_current_records_keeps_the_newest_configuration_and_names_the_rest():
    old = [_stamped(_record("x", s, 10.0, 5.0), "2026-01-01T00:00:00+00:00", lr=0.1)
           for s in (0, 1)]
    new = [_stamped(_record("x", s, 60.0, 40.0), "2026-02-01T00:00:00+00:00", lr=0.2)
           for s in (0, 1)]
    other = [_record("y", 0, 1.0, 1.0)]   # a single configuration: kept as it is
    with pytest.warns(UserWarning, match=r"x on synthreid \(smoke profile\): 2 configurations"
                                         r".*leaving out x-0-lr0.1, x-1-lr0.1$"):
        kept = current_records(old + other + new)
    assert [r["run_name"] for r in kept] == ["y-0", "x-0-lr0.2", "x-1-lr0.2"]
    # summary_table and claims_vs_runs average the kept configuration only
    with pytest.warns(UserWarning):
        table = summary_table(old + new, metrics=("rank1",))
    assert table.loc[("x", "smoke", "synthreid"), "rank1"] == 60.0
    with pytest.warns(UserWarning):
        out = claims_vs_runs(_claim_rows(("market1501", "single_query", "m", 1.0)), old + new,
                             links={"x": [("p", "3", "m")]})
    assert out.loc[0, SYNTH_COLUMN] == "60.0 ± 0.0 (n=2)"


def test_current_records_prefers_the_current_codes_configuration_over_a_newer_one():
    from reidnb.papers import experiment

    def run(seed, finished, **train):
        exp = experiment("ide", "smoke", "synthreid", seed).replace(train=train)
        rec = _record("ide", seed, 50.0 + seed, 30.0)
        rec.update(run_name=exp.run_name, finished=finished,
                   config=json.loads(json.dumps(exp.to_dict(), default=str)))
        return rec

    current = [run(0, "2026-01-01T00:00:00+00:00"), run(1, "2026-01-02T00:00:00+00:00")]
    stale = [run(0, "2026-03-01T00:00:00+00:00", lr=0.9)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the current code's configuration: no warning
        kept = current_records(stale + current)
    assert kept == current


def test_current_records_counts_a_run_found_twice_once(tmp_path):
    rec = _record("ide", 0, 50.0, 30.0)
    atomic_write_json(tmp_path / "runs" / "a" / "record.json", {**rec, "metrics": {
        "single_query": {"rank1": 40.0, "mAP": 20.0}}})
    atomic_write_json(tmp_path / "results" / "gpu" / "a" / "record.json", rec)
    os.utime(tmp_path / "runs" / "a" / "record.json", (1_000_000, 1_000_000))  # the older copy
    recs = load_records(tmp_path / "results", tmp_path / "runs")   # the newer copy first
    assert len(recs) == 2
    kept = current_records(recs)
    assert len(kept) == 1 and kept[0]["metrics"]["single_query"]["rank1"] == 50.0
    assert summary_table(recs, metrics=("rank1",))["seeds"].tolist() == [1]


def test_paper_claims_tables_own_methods_first_then_synthreid_then_quoted():
    claims = pd.DataFrame([
        {"paper": "zheng2019", "table": "3", "dataset": ds, "protocol": "single_query",
         "method": method, "metric": metric, "value": value}
        for ds, method, metric, value in [
            ("market1501", "HA-CNN (quoted [21])", "rank1", 91.2),
            ("market1501", "IDE +IA", "rank1", 91.0), ("market1501", "IDE +IA", "mAP", 76.9),
            ("market1501", "IDE baseline", "rank1", 85.3),
            ("market1501", "IDE baseline", "mAP", 68.5),
            ("dukemtmcreid", "IDE baseline", "rank1", 73.2)]])
    recs = [_on(_record("ide", 0, 80.0, 60.0), "market1501"),
            _on(_record("ide", 0, 10.0, 5.0), "synthreid")]
    table = claims_vs_runs(claims, recs, links={"ide": [("zheng2019", "3", "IDE baseline")]})
    parts = paper_claims_tables(table, "zheng2019")
    assert [(p.caption, p.quoted) for p in parts] == [
        ("Table 3, Market-1501, single query", False),
        ("Table 3, DukeMTMC-reID, single query (this build: not run on this data set)", False),
        ("This build on SynthReID (synthetic data: the paper's setting, not its numbers)",
         False),
        ("Table 3, Market-1501, single query", True)]
    market = parts[0].frame
    assert list(market.index) == ["IDE baseline", "IDE +IA"]   # METHODS order, not file order
    assert list(market.columns) == [("rank1", "paper"), ("rank1", "this build"),
                                    ("mAP", "paper"), ("mAP", "this build")]
    assert market.loc["IDE baseline"].tolist() == [85.3, "80.0", 68.5, "60.0"]
    assert market.loc["IDE +IA", ("rank1", "this build")] == "not run"
    duke = parts[1].frame
    assert list(duke.columns) == ["rank1"] and duke.loc["IDE baseline", "rank1"] == 73.2
    synth = parts[2].frame
    assert synth.loc[("Table 3", "IDE baseline")].tolist() == ["10.0", "5.0"]
    assert list(parts[3].frame.index) == ["HA-CNN (quoted [21])"]


def test_paper_claims_tables_on_the_ledger_keeps_every_number_once():
    from reidnb.claims import is_quoted, load_claims

    table = claims_vs_runs(load_claims(), [])
    parts = paper_claims_tables(table, "jeong2020")
    flags = [p.quoted for p in parts]
    assert flags == sorted(flags) and any(flags)          # every own table before any quoted
    assert list(parts[0].frame.index) == ["ResNet-50 +AM+UL", "VGG16 +AM+UL"]   # Table 2
    for part in parts:
        assert all(is_quoted(m) == part.quoted for m in part.frame.index)
        assert part.frame.shape[1] <= 5                  # narrow: the paper's values only
    cells = sum(int((p.frame != "").to_numpy().sum()) for p in parts)
    assert cells == int((table.paper == "jeong2020").sum())
    blank = paper_claims_tables(table, "zheng2019")[-1].frame
    assert blank.loc["HPN (quoted [24])", "mAP"] == ""     # printed as a dash


def test_claims_coverage_counts_real_and_synthetic_values():
    claims = _claim_rows(("market1501", "single_query", "IDE baseline", 80.0),
                         ("dukemtmcreid", "single_query", "IDE baseline", 70.0),
                         ("market1501", "single_query", "other", 90.0))
    recs = [_on(_record("ide", 0, 75.0, 55.0), "market1501"),
            _on(_record("ide", 0, 50.0, 30.0), "synthreid")]
    out = claims_vs_runs(claims, recs, links={"ide": [("p", "3", "IDE baseline")]})
    assert claims_coverage(out).loc["p"].tolist() == [3, 1, 2]


def test_eval_speed_table_reads_the_benchmark_record(tmp_path):
    from reidnb.results import eval_speed_table

    atomic_write_json(tmp_path / "b.json", {
        "date": "2026-11-23", "cores": 2, "device": {"device": "cpu"},
        "evaluate_rank": {"reference_s": 4.0, "reidnb_s": 0.2, "ratio": 20.0},
        "re_ranking_subsample": {"items": 2000, "reference_s": 1.0, "reidnb_s": 0.1, "ratio": 10.0},
        "re_ranking_full": {"items": 19281, "reidnb_s": 1.9, "output_shape": [3368, 15913]}})
    table = eval_speed_table(tmp_path / "b.json")
    assert table.loc["evaluate_rank, 3,368 x 15,913", "speed-up"] == 20.0  # sizes from the record
    assert table.loc["re_ranking, 2000 items", "speed-up"] == 10.0
    assert table.loc["re_ranking, 19281 items", "reidnb (s)"] == 1.9
    assert set(table.machine) == {"2 CPU cores, cpu, 2026-11-23"}


def test_seed_table_and_claims(tmp_path):
    from reidnb.train.engine import TrainConfig
    from reidnb.experiments import Experiment, run_dir_for
    from reidnb.results import seed_table, with_claims

    def exp(name, seed):
        return Experiment(name=name, train=TrainConfig(seed=seed))

    for name, seed, r1 in (("a", 0, 50.0), ("a", 1, 54.0), ("b", 0, 53.0), ("b", 1, 57.0)):
        rec = _record(name, seed, r1, r1 / 2)
        atomic_write_json(run_dir_for(exp(name, seed), tmp_path) / "record.json", rec)
    table = seed_table({"base": [exp("a", 0), exp("a", 1)], "better": [exp("b", 0), exp("b", 1)],
                        "missing": [exp("c", 0)]}, tmp_path)
    # 50 and 54: mean 52, sample std sqrt(8) = 2.83 (the population std would be 2.0)
    assert table.loc["base", "rank1"] == 52.0 and table.loc["base", "rank1 ±"] == 2.83
    assert table.loc["missing", "status"] == "not run" and table.loc["missing", "seeds"] == 0
    one = seed_table({"one seed": [exp("a", 0)]}, tmp_path)
    assert one.loc["one seed", "seeds"] == 1 and pd.isna(one.loc["one seed", "rank1 ±"])
    claimed = with_claims(table, {"base": ("jeong2020", "5", "ResNet-50 baseline")})
    assert claimed.loc["base", "paper rank1"] == 88.1 and pd.isna(claimed.loc["better",
                                                                              "paper rank1"])


def test_seed_values_one_row_per_complete_run(tmp_path):
    from reidnb.train.engine import TrainConfig
    from reidnb.experiments import Experiment, run_dir_for
    from reidnb.results import seed_values

    def exp(name, seed):
        return Experiment(name=name, train=TrainConfig(seed=seed))

    for name, seed, r1, status in (("a", 0, 50.0, "complete"), ("a", 1, 54.0, "complete"),
                                   ("b", 0, 53.0, "failed")):
        rec = _record(name, seed, r1, r1 / 2, status=status)
        atomic_write_json(run_dir_for(exp(name, seed), tmp_path) / "record.json", rec)
    vals = seed_values({"base": [exp("a", 0), exp("a", 1)], "broken": [exp("b", 0)],
                        "missing": [exp("c", 0)]}, tmp_path)
    assert list(vals.columns) == ["label", "seed", "rank1", "mAP"]
    assert vals.to_dict("records") == [
        {"label": "base", "seed": 0, "rank1": 50.0, "mAP": 25.0},
        {"label": "base", "seed": 1, "rank1": 54.0, "mAP": 27.0}]
    assert seed_values({"missing": [exp("c", 0)]}, tmp_path).empty


def test_settings_table_standard_labels_paths_functions_and_extra_rows():
    from reidnb.experiments import Experiment
    from reidnb.results import settings_table
    from reidnb.train.engine import TrainConfig

    exp = Experiment(name="x", height=128, width=64, train=TrainConfig(epochs=3, lr=0.05),
                     model_kwargs={"backbone": "resnet18", "bnneck": True},
                     objective_kwargs={"batch_size": 32, "triplets_per_epoch": None},
                     val_fraction=0.2)
    table = settings_table(exp, ["backbone", "image size", "epochs", "lr",
                                 ("batch", "objective_kwargs.batch_size"),
                                 ("BN neck", "model_kwargs.bnneck"),
                                 ("triplets", lambda e: e.objective_kwargs["triplets_per_epoch"]
                                  or "all images"),
                                 ("validation", lambda e: f"{e.val_fraction:.0%}")],
                           extra={"runs": 9})
    assert table.index.name == "setting" and list(table.columns) == ["value"]
    assert table["value"].to_dict() == {"backbone": "resnet18", "image size": "128x64",
                                        "epochs": 3, "lr": 0.05, "batch": 32, "BN neck": True,
                                        "triplets": "all images", "validation": "20%",
                                        "runs": 9}
    assert list(table.index)[-1] == "runs"
    assert list(settings_table(exp).index) == ["backbone", "image size", "epochs", "optimizer",
                                               "lr", "seed"]
    with pytest.raises(KeyError, match="no key 'margin'"):
        settings_table(exp, [("margin", "objective_kwargs.margin")])
    with pytest.raises(KeyError, match="no standard setting"):
        settings_table(exp, ["margin"])


def test_rank_metrics_from_a_record_a_cmc_pair_and_a_histogram_result():
    import numpy as np

    from reidnb.results import metrics_table, rank_metrics

    cmc = np.array([0.25, 0.5, 0.5, 0.75, 0.8, 0.9, 0.9, 0.9, 0.9, 1.0])
    assert rank_metrics((cmc, 0.4), ("rank1", "rank5", "rank10", "mAP")) == {
        "rank1": 25.0, "rank5": 80.0, "rank10": 100.0, "mAP": 40.0}
    # "rank-k" reads the same rank and keeps its name as the key
    assert rank_metrics({"cmc": cmc, "mAP": 0.4}, ("rank-5", "mAP")) == {"rank-5": 80.0,
                                                                         "mAP": 40.0}
    rec = _record("ide", 0, 50.0, 30.0)
    rec["metrics"]["single_query"]["rank5"] = 70.0
    rec["metrics"]["multi_query"] = {"rank1": 60.0, "rank5": 80.0, "mAP": 45.0}
    assert rank_metrics(rec) == {"rank1": 50.0, "rank5": 70.0, "mAP": 30.0}   # as stored
    assert rank_metrics(rec, ("rank-1",), protocol="multi_query") == {"rank-1": 60.0}
    with pytest.raises(KeyError, match="no 'rank10'"):
        rank_metrics(rec, ("rank10",))
    with pytest.raises(KeyError, match="rank20"):
        rank_metrics((cmc, 0.4), ("rank20",))
    table = metrics_table({"hist": (cmc, 0.4), "cnn": rec})
    assert list(table.index) == ["hist", "cnn"] and list(table.columns) == ["rank1", "rank5",
                                                                            "mAP"]
    assert table.loc["hist", "rank5"] == 80.0 and table.loc["cnn", "mAP"] == 30.0


def _seed_rows(rows):
    """A hand-made seed table: (label, seeds, rank1, rank1 ±, paper rank1)."""
    return pd.DataFrame([{"label": label, "seeds": n, "rank1": r1 if n else None,
                          "rank1 ±": sd if n else None,
                          "status": "complete" if n else "not run", "paper rank1": paper}
                         for label, n, r1, sd, paper in rows]).set_index("label")


def test_best_row_names_the_best_complete_row_and_the_papers():
    from reidnb.results import best_row

    table = _seed_rows([("@layer2", 1, 4.76, 0.0, 90.7), ("@layer3", 1, 11.11, 0.0, 91.3),
                        ("@layer4", 0, None, None, 92.0)])
    assert best_row(table, what="stage") == ("best stage here: @layer3 (rank-1 11.1); the "
                                             "paper's best: @layer4; one seed per stage")
    # a tie goes to the first row; several seeds are counted; no paper column, no clause
    tie = _seed_rows([("x", 3, 20.0, 1.0, None), ("y", 3, 20.0, 1.0, None)])
    assert best_row(tie) == "best row here: x (rank-1 20.0); 3 seeds per row"
    mixed = _seed_rows([("x", 2, 20.0, 1.0, None), ("y", 3, 21.0, 1.0, None)])
    assert best_row(mixed.drop(columns="paper rank1")).endswith("; 2 to 3 seeds per row")
    assert best_row(_seed_rows([("x", 0, None, None, 90.0)])) is None


def test_history_values_last_and_mean_epoch_per_complete_run(tmp_path):
    from reidnb.experiments import Experiment, run_dir_for
    from reidnb.results import history_values
    from reidnb.train.engine import TrainConfig

    def exp(name, seed):
        return Experiment(name=name, train=TrainConfig(seed=seed))

    for name, seed, losses, status in (("a", 0, [3.0, 1.0], "complete"),
                                       ("a", 1, [4.0, 2.0], "complete"),
                                       ("b", 0, [9.0, 9.0], "failed")):
        rec = _record(name, seed, 50.0, 25.0, status=status)
        rec["history"] = [{"epoch": e + 1, "loss_ver": v} for e, v in enumerate(losses)]
        atomic_write_json(run_dir_for(exp(name, seed), tmp_path) / "record.json", rec)
    groups = {"base": [exp("a", 0), exp("a", 1)], "broken": [exp("b", 0)],
              "missing": [exp("c", 0)]}
    last = history_values(groups, tmp_path)
    assert last.to_dict("records") == [{"label": "base", "seed": 0, "loss_ver": 1.0},
                                       {"label": "base", "seed": 1, "loss_ver": 2.0}]
    mean = history_values(groups, tmp_path, reduce="mean")
    assert list(mean["loss_ver"]) == [2.0, 3.0]
    with pytest.raises(KeyError, match="loss_id"):
        history_values(groups, tmp_path, keys=("loss_id",))
    with pytest.raises(ValueError, match="reduce"):
        history_values(groups, tmp_path, reduce="max")


def test_runs_on_another_synthreid_set_are_kept_apart_and_off_the_claims_page():
    """li2019's Table 3 runs on the default set and on the two-camera set: both current, neither
    replaces the other, and the claims page shows the profile's standard set only."""
    import pandas as pd

    from reidnb.results import claims_vs_runs, current_records, standard_set

    default = [_record("ide", s, 50.0 + s, 30.0) for s in (0, 1)]
    two_cam = [_record("ide", s, 90.0, 80.0) for s in (0, 1)]
    for r in default:
        r["config"].update(synth_size="smoke", synth_seed=0)
    for r in two_cam:
        r["config"].update(synth_size="two_camera_smoke", synth_seed=1)
        r["run_name"] += "-2cam"
    kept = current_records(default + two_cam, warn=False)
    assert len(kept) == 4
    assert standard_set(default + two_cam) == default
    claims = pd.DataFrame([{"paper": "p", "table": "1", "dataset": "market1501",
                            "protocol": "single_query", "method": "m", "metric": "rank1",
                            "value": 60.0}])
    out = claims_vs_runs(claims, default + two_cam, links={"ide": [("p", "1", "m")]})
    assert out.iloc[0]["reproduced"] == "not run"
    assert out.iloc[0][[c for c in out.columns if "SynthReID" in c][0]].startswith("50.5")
