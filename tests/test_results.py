import pandas as pd
import pytest

from reidnb.io import atomic_write_json
from reidnb.results import claims_vs_runs, load_records, metrics_frame, summary_table


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
    row = table.loc[("ide", "synthreid")]
    assert row["rank1"] == 55.0 and row["rank1 ±"] == 5.0 and row["seeds"] == 2
    assert row["mAP"] == 35.0


def test_claims_vs_runs_fills_linked_rows_and_says_not_run():
    claims = pd.DataFrame([
        {"paper": "p", "table": "3", "dataset": "market1501", "protocol": "single_query",
         "method": "IDE baseline", "metric": "rank1", "value": 80.0},
        {"paper": "p", "table": "3", "dataset": "market1501", "protocol": "single_query",
         "method": "other", "metric": "rank1", "value": 90.0},
    ])
    recs = [_record("ide", 0, 50.0, 30.0), _record("ide", 1, 60.0, 40.0)]
    out = claims_vs_runs(claims, recs, links={"ide": [("p", "3", "IDE baseline")]})
    assert out.loc[0, "reproduced"] == "55.0 ± 5.0 (n=2)"
    assert out.loc[0, "run dataset"] == "synthreid"
    assert out.loc[1, "reproduced"] == "not run"


def test_metrics_frame_has_one_row_per_metric():
    df = metrics_frame([_record("ide", 0, 50.0, 30.0)])
    assert sorted(df.metric) == ["mAP", "rank1"] and set(df.value) == {50.0, 30.0}


def test_eval_speed_table_reads_the_benchmark_record(tmp_path):
    from reidnb.results import eval_speed_table

    atomic_write_json(tmp_path / "b.json", {
        "date": "2026-11-23", "cores": 2, "device": {"device": "cpu"},
        "evaluate_rank": {"reference_s": 4.0, "reidnb_s": 0.2, "ratio": 20.0},
        "re_ranking_subsample": {"items": 2000, "reference_s": 1.0, "reidnb_s": 0.1, "ratio": 10.0},
        "re_ranking_full": {"items": 19281, "reidnb_s": 1.9}})
    table = eval_speed_table(tmp_path / "b.json")
    assert table.loc["re_ranking, 2000 items", "speed-up"] == 10.0
    assert table.loc["re_ranking, 19281 items", "reidnb (s)"] == 1.9
    assert set(table.machine) == {"2 CPU cores, cpu, 2026-11-23"}


def test_seed_table_ordering_verdicts_and_claims(tmp_path):
    from reidnb.train.engine import TrainConfig
    from reidnb.experiments import Experiment, run_dir_for
    from reidnb.results import ordering_verdicts, seed_table, with_claims

    def exp(name, seed):
        return Experiment(name=name, train=TrainConfig(seed=seed))

    for name, seed, r1 in (("a", 0, 50.0), ("a", 1, 54.0), ("b", 0, 53.0), ("b", 1, 57.0)):
        rec = _record(name, seed, r1, r1 / 2)
        atomic_write_json(run_dir_for(exp(name, seed), tmp_path) / "record.json", rec)
    table = seed_table({"base": [exp("a", 0), exp("a", 1)], "better": [exp("b", 0), exp("b", 1)],
                        "missing": [exp("c", 0)]}, tmp_path)
    assert table.loc["base", "rank1"] == 52.0 and table.loc["base", "rank1 ±"] == 2.0
    assert table.loc["missing", "status"] == "not run" and table.loc["missing", "seeds"] == 0
    verdicts = ordering_verdicts(table, ["base", "better", "missing"])
    assert verdicts[0] == ("better > base (rank1): holds here (+3.0 points; larger than the "
                           "seeds' spread of 2.0)")
    assert "not run" in verdicts[1]
    flipped = ordering_verdicts(table, ["better", "base"])
    assert "does not hold" in flipped[0]
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
