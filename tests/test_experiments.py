import numpy as np
import pytest
import torch

from tiny_model import TinyNet  # noqa: F401  (registers the model "test_tiny")

from reidnb.experiments import Experiment, load_run, run_dir_for, run_experiment
from reidnb.papers.ide import ide_experiment
from reidnb.train.engine import TrainConfig


def _tiny_exp(**kw):
    return Experiment(name="tiny", profile="smoke", synth_size="smoke", height=32, width=16,
                      model="test_tiny", objective_kwargs={"batch_size": 32},
                      train=TrainConfig(epochs=2, lr=0.05), **kw)


def test_key_changes_with_any_setting_and_is_stable():
    a, b = _tiny_exp(), _tiny_exp()
    assert a.key() == b.key()
    assert a.replace(train={"lr": 0.1}).key() != a.key()
    assert a.replace(augment={"pad": 2}).key() != a.key()
    assert a.key() == _tiny_exp().key()  # replace() did not mutate the original


def test_replace_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown TrainConfig field 'lrr'"):
        _tiny_exp().replace(train={"lrr": 1})
    with pytest.raises(ValueError, match="unknown Experiment field 'epochs'"):
        _tiny_exp().replace(epochs=3)


def test_profiles_differ_as_documented():
    smoke, synth, paper = (ide_experiment(p) for p in ("smoke", "synthetic", "paper"))
    assert smoke.synth_size == "smoke" and synth.synth_size == "default"
    assert paper.dataset == "market1501" and (paper.height, paper.width) == (256, 128)
    assert paper.model_kwargs["backbone"] == "resnet50"
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        ide_experiment("fast")


def test_run_experiment_writes_record_and_reuses_it(tmp_path):
    exp = _tiny_exp()
    rec = run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                         device="cpu", progress=False)
    assert rec["status"] == "complete" and len(rec["history"]) == 2
    assert set(rec["metrics"]["single_query"]) == {"rank1", "rank5", "rank10", "rank20", "mAP"}
    assert rec["dataset"]["stats"]["train"]["ids"] == 24
    assert rec["weights_init"]["source"] == "random"
    ckpt = run_dir_for(exp, tmp_path / "runs") / "checkpoint.pt"
    mtime = ckpt.stat().st_mtime_ns
    again = run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                           progress=False)
    assert again["metrics"] == rec["metrics"] and ckpt.stat().st_mtime_ns == mtime  # no retrain
    art = load_run(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs")
    assert art.distmat.shape == (len(art.caches["query"]), len(art.caches["gallery"]))


def test_new_neutral_options_do_not_rename_existing_runs():
    exp = _tiny_exp()
    d = exp.to_dict()
    for k in ("synth_knobs", "val_fraction", "select", "trunk_from", "numerics", "eval_every"):
        d.pop(k)
    for k in ("channels_last", "compile", "new_lr_mult"):  # TrainConfig fields added later
        d["train"].pop(k)
    import hashlib
    import json
    legacy = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]
    assert exp.key() == legacy
    assert exp.replace(val_fraction=0.1).key() != legacy
    assert exp.replace(synth_knobs={"bag_visible_prob": 0.3}).key() != legacy
    assert exp.replace(train={"channels_last": True}).key() != legacy
    assert exp.replace(trunk_from="ide-synthreid-0123456789").key() != legacy
    assert exp.replace(eval_every=1).key() != legacy  # a run with a learning curve
    assert exp.numerics == "native"  # the test process runs natively
    assert exp.replace(numerics="portable-v1").key() != legacy  # portable runs are other runs


def test_synth_knobs_get_their_own_data_folder(tmp_path):
    from reidnb.experiments import dataset_root
    from reidnb.io import read_json

    exp = _tiny_exp()
    plain = dataset_root(exp, tmp_path)
    knobbed = dataset_root(exp.replace(synth_knobs={"bag_visible_prob": 0.1}), tmp_path)
    assert plain != knobbed
    assert read_json(knobbed / "synthreid.json")["knobs"]["bag_visible_prob"] == 0.1
    assert read_json(plain / "synthreid.json")["knobs"]["bag_visible_prob"] != 0.1


def test_select_best_evaluates_the_best_epoch_on_held_out_identities(tmp_path):
    from reidnb.papers.lakshmi import lakshmi_experiments

    exp = lakshmi_experiments("smoke")["random_triplet"].replace(
        height=32, width=16, model="test_tiny", model_kwargs=None, train={"epochs": 3})
    exp.model_kwargs = {}
    rec = run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                         progress=False)
    vals = [h["val_loss"] for h in rec["history"]]
    assert rec["evaluated_epoch"] == 1 + int(np.argmin(vals))
    assert rec["split"]["train_ids"] + rec["split"]["val_ids"] == 24 and rec["split"]["val_ids"] == 5
    best = torch.load(run_dir_for(exp, tmp_path / "runs") / "best.pt", weights_only=False)
    assert best["epoch"] == rec["evaluated_epoch"]
    with pytest.raises(ValueError, match="needs val_fraction > 0"):
        run_experiment(exp.replace(val_fraction=0.0), data_root=tmp_path / "data",
                       runs_dir=tmp_path / "runs", progress=False)


def test_lakshmi_reuses_chapter_2s_ide_run():
    from reidnb.papers.lakshmi import lakshmi_experiments

    exps = lakshmi_experiments("synthetic")
    assert exps["ide"].key() == ide_experiment("synthetic").key()  # chapter 2's cached run


def test_jeong2020_plan_reuses_runs_across_tables_and_names_sweeps_apart():
    from reidnb.papers.jeong2020 import JEONG2020_PLAN, jeong2020_plan

    plan = jeong2020_plan("synthetic", scope="full")
    seeds = JEONG2020_PLAN["synthetic"]["seeds"]
    assert len(plan["table5"]) == 3 * len(seeds)  # ResNet rows only on a CPU
    layer3 = [e for e in plan["table6"] if e.model_kwargs["stage"] == "layer3"][0]
    assert layer3.key() == plan["table5"][0].key()  # Table 6's layer3 row is Table 5's run
    names = [e.name for e in plan["bag_sweep"]]
    assert len(set(names)) == len(names) and all("_bag" in n for n in names)
    assert all(e.synth_knobs["bag_visible_prob"] != 0.8 for e in plan["bag_sweep"])
    assert {e.model_kwargs["backbone"] for e in jeong2020_plan("gpu")["table5"]} == {"resnet50",
                                                                                    "vgg16"}
    assert jeong2020_plan("paper", "market1501")["bag_sweep"] == []  # a SynthReID knob


def test_jeong2020_bag_runs_reuse_table5_at_the_default_visibility():
    from reidnb.papers.jeong2020 import jeong2020_bag_runs, jeong2020_experiment, jeong2020_plan

    runs = jeong2020_bag_runs("synthetic")
    # four levels (the trend rule's minimum), baseline and full model at each
    assert sorted({p for _, p in runs}) == [0.2, 0.5, 0.8, 1.0]
    assert sorted({v for v, _ in runs}) == ["baseline", "full"]
    assert runs[("full", 0.8)].key() == jeong2020_experiment("synthetic", "full").key()
    plan_keys = {e.key() for e in jeong2020_plan("synthetic", scope="full")["bag_sweep"]}
    assert plan_keys == {e.key() for (v, p), e in runs.items() if p != 0.8}
    assert jeong2020_bag_runs("paper", "market1501") == {}


def _saved_run(tmp_path, name, model):
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict()}, run / "checkpoint.pt")
    return tmp_path / "runs"


def test_trunk_from_copies_the_whole_trunk_and_nothing_else(tmp_path):
    from reidnb.experiments import load_trunk_from_run
    from reidnb.models import build_model
    from reidnb.models.jeong2020 import Jeong2020

    torch.manual_seed(0)
    ide = build_model("ide", 7, backbone="resnet18", last_stride=2, pretrained=False)
    runs = _saved_run(tmp_path, "ide-x", ide)
    torch.manual_seed(1)
    net = Jeong2020(5, backbone="resnet18", pretrained=False, stage="layer3",
                    encoder_padding=True)
    module_before = {k: v.clone() for k, v in net.attention.state_dict().items()}
    assert not torch.equal(net.backbone.layer2[0].conv1.weight, ide.backbone.layer2[0].conv1.weight)
    info = load_trunk_from_run(net, "ide-x", runs)
    for k, v in ide.backbone.state_dict().items():   # BN running statistics included
        assert torch.equal(net.backbone.state_dict()[k], v), k
    for k, v in net.attention.state_dict().items():
        assert torch.equal(v, module_before[k]), k
    assert info["source"] == "run" and "ide-x" in info["detail"]


def test_trunk_from_names_the_missing_or_unfit_checkpoint(tmp_path):
    from reidnb.experiments import load_trunk_from_run
    from reidnb.models import build_model

    net = build_model("ide", 5, backbone="resnet18", pretrained=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nope.*checkpoint.pt"):
        load_trunk_from_run(net, "nope", tmp_path / "runs")
    other = build_model("ide", 5, backbone="resnet50", pretrained=False)
    runs = _saved_run(tmp_path, "r50", other)
    with pytest.raises(ValueError, match="r50.*checkpoint.pt: its trunk does not fit"):
        load_trunk_from_run(net, "r50", runs)


def test_jeong2020_cpu_runs_start_from_chapter_1s_ide_trunk():
    from reidnb.papers.jeong2020 import jeong2020_experiment, jeong2020_plan

    plan = jeong2020_plan("synthetic", scope="full")
    ide = ide_experiment("synthetic")
    assert plan["trunk"] == [ide]
    runs = [e for group in ("table5", "table6", "bag_sweep", "eq8_printed") for e in plan[group]]
    assert {e.trunk_from for e in runs} == {ide.run_name}
    assert all(e.model_kwargs["pretrained"] is False for e in runs)  # no ImageNet lookup
    paper = jeong2020_experiment("paper", "full")
    assert paper.trunk_from == "" and paper.model_kwargs["pretrained"] == "auto"
    assert jeong2020_plan("paper")["trunk"] == []
    assert jeong2020_experiment("synthetic", "full", trunk="imagenet").trunk_from == ""
    with pytest.raises(ValueError, match="trunk='ide'.*resnet18.*vgg16"):
        jeong2020_experiment("synthetic", "full", "vgg", trunk="ide")


def test_run_all_prints_a_line_a_run_and_returns_records_in_order(tmp_path, capsys):
    from reidnb.experiments import run_all

    exps = [_tiny_exp(), _tiny_exp().replace(name="tiny_b", train={"epochs": 1})]
    recs = run_all(exps, tmp_path / "data", tmp_path / "runs", "cpu")
    lines = capsys.readouterr().out.strip().splitlines()
    assert [r["run_name"] for r in recs] == [e.run_name for e in exps]
    assert [len(r["history"]) for r in recs] == [2, 1]
    for line, rec in zip(lines, recs, strict=True):
        assert line.startswith(rec["run_name"])
        assert f"rank-1 {rec['metrics']['single_query']['rank1']:5.1f}" in line


def test_record_keeps_its_numeric_path_and_reuse_under_another_path_warns(tmp_path):
    from reidnb import numerics
    from reidnb.io import atomic_write_json, read_json

    exp = _tiny_exp()
    kw = dict(data_root=tmp_path / "data", runs_dir=tmp_path / "runs", device="cpu",
              progress=False)
    rec = run_experiment(exp, **kw)
    assert rec["numerics"] == numerics.describe("cpu")
    assert rec["numerics"]["threads"] == torch.get_num_threads()
    path = run_dir_for(exp, tmp_path / "runs") / "record.json"
    other = read_json(path)
    other["numerics"] = dict(other["numerics"], threads=other["numerics"]["threads"] + 3)
    atomic_write_json(path, other)
    with pytest.warns(UserWarning, match=r"numeric path native: .*, \d+ threads; this process"):
        again = run_experiment(exp, **kw)
    assert again["metrics"] == rec["metrics"]  # reused, with the warning, not retrained
    del other["numerics"]  # a record from before paths were recorded
    atomic_write_json(path, other)
    with pytest.warns(UserWarning, match="before numeric paths were recorded"):
        run_experiment(exp, **kw)


def test_a_run_configured_for_another_numeric_path_is_refused(tmp_path):
    exp = _tiny_exp().replace(numerics="portable-v1")
    with pytest.raises(ValueError, match="numeric path 'portable-v1'.*reidnb numerics portable"):
        run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                       device="cpu", progress=False)
    assert not (tmp_path / "data").exists()  # refused before any data is generated


def test_initial_model_depends_on_the_seed_alone_and_copies_the_trunk_source(tmp_path):
    from reidnb.experiments import initial_model

    exp = _tiny_exp()
    a, init = initial_model(exp, 5, tmp_path)
    torch.randn(100)  # other draws in between change nothing
    b, _ = initial_model(exp, 5, tmp_path)
    c, _ = initial_model(exp.replace(train={"seed": 1}), 5, tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.conv.weight, c.conv.weight)
    assert init == {"source": "random", "detail": "test"}
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nosuch-run"):
        initial_model(exp.replace(trunk_from="nosuch-run"), 5, tmp_path)


def _make_smoke_set(data_root: str) -> str:
    from reidnb.data.synthetic import load_meta
    from reidnb.experiments import dataset_root
    folder = dataset_root(Experiment(name="x", profile="smoke", synth_size="smoke"), data_root)
    return load_meta(folder)["content_sha256"]


def test_two_processes_that_need_the_same_synthreid_set_at_once_both_get_it_whole(tmp_path):
    """The main job's workers start runs on one data set together: the second waits for the
    first's folder instead of clearing it half-written (it used to, and both runs failed)."""
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2) as pool:
        digests = pool.map(_make_smoke_set, [str(tmp_path)] * 2)
    assert digests[0] == digests[1] == _make_smoke_set(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [
        next(p.name for p in tmp_path.iterdir() if p.name.startswith("synthreid-"))]
