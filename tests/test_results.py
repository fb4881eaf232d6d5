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


def test_ordering_verdicts_each_wording():
    from reidnb.results import ordering_verdicts

    table = _seed_rows([("a", 3, 50.0, 1.0, None), ("b", 3, 52.0, 1.5, None),
                        ("c", 3, 53.0, 2.0, None), ("d", 1, 55.0, 0.0, None),
                        ("e", 1, 54.0, 0.0, None), ("f", 0, None, None, None)])
    assert ordering_verdicts(table, ["a", "b", "c", "d", "e", "f"]) == [
        "b > a (rank1): holds here (+2.0 points; larger than the seeds' spread of 1.5)",
        "c > b (rank1): holds here (+1.0 points; not larger than the seeds' spread of 2.0)",
        "d > c (rank1): holds here (+2.0 points; one seed, no spread)",
        "e > d (rank1): does not hold here (-1.0 points; one seed, no spread)",
        "f > e (rank1): not run in this profile"]
    # a gap of exactly zero does not hold, and a reversal larger than the spread says so
    tied = _seed_rows([("a", 2, 50.0, 0.5, None), ("b", 2, 50.0, 0.5, None),
                       ("c", 2, 48.0, 0.5, None)])
    assert ordering_verdicts(tied, ["a", "b", "c"]) == [
        "b > a (rank1): does not hold here (+0.0 points; not larger than the seeds' spread "
        "of 0.5)",
        "c > b (rank1): does not hold here (-2.0 points; larger than the seeds' spread of 0.5)"]


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


def test_gain_trend_over_a_sweep():
    from reidnb.results import gain_trend

    sweep = pd.DataFrame({"baseline": [1.59, 4.76, None], "+AM+UL": [6.35, 11.11, 9.0]},
                         index=pd.Index([0.2, 0.8, 1.0], name="bag visible p"))
    # p = 1.0 has no baseline: dropped; gains +4.76 at 0.2 and +6.35 at 0.8, slope +2.65
    assert gain_trend(sweep, "+AM+UL", "baseline", by="bag visibility",
                      decreasing="the bag is seen less often",
                      note="one seed, so read it as a hint") == [
        "rank-1 of +AM+UL minus baseline, by bag visibility: p=0.2: +4.8, p=0.8: +6.3",
        "the gain shrinks as the bag is seen less often (slope +2.6 points per unit of p; one "
        "seed, so read it as a hint)"]
    falling = pd.DataFrame({"a": [0.0, 0.0, 0.0], "b": [6.0, 4.0, 2.0]}, index=[0.0, 0.5, 1.0])
    assert gain_trend(falling, "b", "a", metric="mAP")[1] == (
        "the gain grows as p decreases (slope -4.0 points per unit of p)")
    rising = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 3.0]}, index=[0.0, 1.0])
    assert gain_trend(rising, "b", "a")[1].startswith("the gain shrinks as p decreases")
    assert gain_trend(sweep.iloc[:1], "+AM+UL", "baseline") == []
