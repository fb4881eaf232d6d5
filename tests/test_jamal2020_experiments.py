"""jamal2020's experiments (reidnb/papers/jamal2020.py): each variant differs from the full model
only in its model options, the paper profile holds Sec. 5.1's recipe, the CPU profiles start from
the IDE trunk, the readings name their runs, the plan's runs and seeds, the claim links, and one
tiny epoch of the smoke configuration through the engine."""

import numpy as np
import pytest
import torch
from tiny_model import random_cache

from reidnb import papers
from reidnb.claims import METHODS, load_claims
from reidnb.data.transforms import BatchAugment
from reidnb.experiments import OBJECTIVES, PROFILES, build_for
from reidnb.papers import jamal2020
from reidnb.papers.ide import ide_experiment
from reidnb.papers.jamal2020 import (JAMAL2020_PLAN, JAMAL2020_VARIANTS, jamal2020_experiment,
                                     jamal2020_plan)
from reidnb.train.engine import fit

#: what each variant changes in the full model's options
EXPECTED = {
    "full": {},
    "baseline": {"stages": ()},
    "self_paired": {"partner": "self"},
    "layer3": {"stages": ("layer3",)},
    "layer4": {"stages": ("layer4",)},
    "spatial": {"parts": "spatial"},
    "channel": {"parts": "channel"},
}
FULL = {"stages": ("layer3", "layer4"), "parts": "both", "partner": "mutual",
        "sa_channels": "C", "att_act": "sigmoid", "fd": "square", "dropout": 0.0}


def test_every_variant_is_expected():
    assert set(JAMAL2020_VARIANTS) == set(EXPECTED)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_each_variant_differs_from_full_only_in_its_model_options(profile, variant):
    full = jamal2020_experiment(profile, "full")
    exp = jamal2020_experiment(profile, variant)
    assert exp.name == f"jamal2020_{variant}" and exp.paper == "jamal2020"
    assert exp.model == "jamal2020"
    mk = exp.model_kwargs
    assert {k: mk[k] for k in FULL} == {**FULL, **EXPECTED[variant]}
    assert ({k: v for k, v in mk.items() if k not in FULL}
            == {k: v for k, v in full.model_kwargs.items() if k not in FULL})
    for field in ("profile", "dataset", "synth_size", "height", "width", "objective",
                  "objective_kwargs", "augment", "train", "eval", "trunk_from"):
        assert getattr(exp, field) == getattr(full, field), field
    assert (variant == "full") == (exp.key() == full.key())


def test_the_models_build_with_each_variants_options():
    from reidnb.complexity import count_params

    models = {v: build_for(jamal2020_experiment("smoke", v), 5) for v in EXPECTED}
    assert models["baseline"].stages == () and len(models["baseline"].attention) == 0
    assert models["layer3"].stages == ("layer3",) and models["layer4"].stages == ("layer4",)
    assert models["full"].stages == ("layer3", "layer4")
    assert models["self_paired"].partner == "self" and models["full"].partner == "mutual"
    assert models["spatial"].attention["layer3"].ca is None
    assert models["channel"].attention["layer3"].parts == "channel"
    # the control has exactly the full model's parameters
    assert count_params(models["self_paired"]) == count_params(models["full"])


def test_paper_profile_holds_the_papers_recipe():
    exp = jamal2020_experiment("paper")
    assert exp.dataset == "market1501" and (exp.height, exp.width) == (256, 188)
    mk = exp.model_kwargs
    assert mk["backbone"] == "resnet50" and mk["last_stride"] == 2
    assert mk["pretrained"] == "auto" and exp.trunk_from == ""        # ImageNet weights
    t = exp.train
    assert t.optimizer == "sgd" and t.lr == 1e-2 and t.momentum == 0.9 and not t.nesterov
    assert t.epochs == 60 and t.lr_steps == (40,) and t.lr_gamma == 0.1
    assert t.warmup_epochs == 0 and t.weight_decay == 5e-4 and t.new_lr_mult == 1.0
    ok = exp.objective_kwargs
    assert exp.objective == "siamese" and ok["uniformity"] is False
    assert ok["ver_weight"] == 0.5 and ok["id_weight"] == 1.0 and ok["label_smoothing"] == 0.0
    assert 2 * ok["num_identities"] == 32                             # 32 pairs, 1:1
    assert ok["anchors_per_epoch"] is None                           # one per training image
    assert exp.augment == {"flip_p": 0.5, "pad": 0, "erasing_p": 0.5}
    assert exp.eval == {"flip": False, "metric": "euclidean", "which": "feat"}
    assert mk["dropout"] == 0.0


def test_gpu_profile_is_resnet50_at_256x128_from_imagenet():
    exp = jamal2020_experiment("gpu")
    assert (exp.height, exp.width) == (256, 128) and exp.model_kwargs["backbone"] == "resnet50"
    assert exp.trunk_from == "" and exp.dataset == "synthreid" and exp.synth_size == "large"
    assert exp.train.epochs == jamal2020.GPU_EPOCHS and exp.train.channels_last


@pytest.mark.parametrize("profile", ["smoke", "synthetic"])
def test_cpu_profiles_are_resnet18_at_128x64_from_the_ide_trunk(profile):
    exp = jamal2020_experiment(profile)
    ide = ide_experiment(profile)
    assert exp.model_kwargs["backbone"] == ide.model_kwargs["backbone"] == "resnet18"
    assert exp.trunk_from == ide.run_name and exp.model_kwargs["pretrained"] is False
    assert (exp.height, exp.width) == (128, 64)
    epochs = jamal2020.JAMAL_CPU_EPOCHS if profile == "synthetic" else jamal2020.JAMAL_SMOKE_EPOCHS
    assert exp.train.epochs == epochs and exp.train.new_lr_mult == 1.0
    assert exp.train.lr == 1e-2 and exp.train.lr_steps == ()
    # the IDE trunk loads unchanged; the blocks see layer3 at 8 x 4, layer4 at 4 x 2
    model = build_for(exp, 7).eval()
    ide_model = build_for(ide.replace(model_kwargs={"pretrained": False}), 7)
    model.backbone.load_state_dict(ide_model.backbone.state_dict())
    with torch.no_grad():
        pair = model.forward_pair(torch.randn(1, 3, 128, 64), torch.randn(1, 3, 128, 64))
    assert pair.maps["layer3_mu1"].shape == (1, 256, 8, 4)
    assert pair.maps["layer4_mu1"].shape == (1, 512, 4, 2)


def test_readings_name_their_runs():
    full = jamal2020_experiment("synthetic")
    cases = {"_sa1": dict(sa_channels=1), "_act-none": dict(att_act="none"),
             "_fd-abs": dict(fd="abs"), "_usual": dict(input_size="usual"),
             "_drop0.75": dict(dropout=0.75)}
    for suffix, kw in cases.items():
        exp = jamal2020_experiment("synthetic", **kw)
        assert exp.name == "jamal2020_full" + suffix and exp.key() != full.key()
    assert jamal2020_experiment("synthetic", sa_channels=1).model_kwargs["sa_channels"] == 1
    assert jamal2020_experiment("synthetic", dropout=0.75).model_kwargs["dropout"] == 0.75
    usual = jamal2020_experiment("paper", input_size="usual")
    assert usual.name == "jamal2020_full_usual" and (usual.height, usual.width) == (256, 128)
    # the profile's own size leaves the name alone
    assert jamal2020_experiment("paper", input_size="paper").key() == \
        jamal2020_experiment("paper").key()
    both = jamal2020_experiment("gpu", "baseline", sa_channels=1, fd="abs")
    assert both.name == "jamal2020_baseline_sa1_fd-abs"


@pytest.mark.parametrize("kw,match", [
    ({"variant": "ours"}, r"variant='ours'; choose from \('baseline', 'full'"),
    ({"sa_channels": "1"}, r"sa_channels='1'; choose from \('C', 1\)"),
    ({"input_size": "256x188"}, r"input_size='256x188'; choose from \('paper', 'usual', 'cpu'\)"),
    ({"att_act": "tanh"}, r"att_act='tanh'"), ({"fd": "l2"}, r"fd='l2'"),
    ({"trunk": "random"}, r"trunk='random'"), ({"dropout": 1.0}, r"dropout=1.0"),
])
def test_wrong_arguments_name_the_choices(kw, match):
    with pytest.raises(ValueError, match=match):
        jamal2020_experiment("synthetic", **kw)


def test_trunk_option():
    assert jamal2020_experiment("paper", trunk="ide").trunk_from == \
        ide_experiment("paper").run_name
    synth = jamal2020_experiment("synthetic", trunk="imagenet")
    assert synth.trunk_from == "" and synth.model_kwargs["pretrained"] == "auto"


# --- the plan ---------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_plan_runs_and_seeds(profile):
    plan = jamal2020_plan(profile, scope="full")
    assert list(plan) == ["trunk", "ide", "compared", "ablation"]
    seeds = JAMAL2020_PLAN[profile]["seeds"]
    assert seeds == ((0,) if profile == "smoke" else (0, 1, 2))
    for variant in ("baseline", "full", "self_paired"):
        got = sorted(e.train.seed for e in plan["compared"] if e.name == f"jamal2020_{variant}")
        assert got == list(seeds), variant
    assert len(plan["compared"]) == 3 * len(seeds)
    assert [e.name for e in plan["ablation"]] == [f"jamal2020_{v}" for v in
                                                   ("layer3", "layer4", "spatial", "channel")]
    assert all(e.train.seed == seeds[0] for e in plan["ablation"])
    assert [e.run_name for e in plan["ide"]] == [ide_experiment(profile).run_name]
    own = [e for g in ("compared", "ablation") for e in plan[g]]
    names = [e.run_name for e in own]
    assert len(names) == len(set(names)), "a run appears twice in the plan"
    for e in own:
        assert jamal2020.EXPERIMENTS[e.name](profile, None, e.train.seed).run_name == e.run_name
    trunks = {e.trunk_from for e in own if e.trunk_from}
    assert trunks == {e.run_name for e in plan["trunk"]}
    if profile in ("smoke", "synthetic"):
        assert plan["trunk"] == plan["ide"]        # the IDE row is the trunk's run
    else:
        assert plan["trunk"] == []


def test_synthetic_plan_stays_small():
    plan = jamal2020_plan("synthetic", scope="full")
    assert len(plan["compared"]) + len(plan["ablation"]) == 13     # 3 x 3 seeds + 4 ablations
    assert {e.objective_kwargs["anchors_per_epoch"] for g in ("compared", "ablation")
            for e in plan[g]} == {jamal2020.JAMAL_CPU_ANCHORS}


def test_claim_links_name_ledger_rows():
    claims = load_claims()
    rows = set(zip(claims.paper, claims.table.astype(str), claims.method))
    for run, targets in jamal2020.CLAIM_LINKS.items():
        assert run in jamal2020.EXPERIMENTS, run
        for target in targets:
            assert target[0] == "jamal2020" and target in rows, (run, target)
    linked = {t for targets in jamal2020.CLAIM_LINKS.values() for t in targets}
    own = {r for r in rows if r[0] == "jamal2020" and r[2] in METHODS["jamal2020"]}
    assert linked == own        # every row of the paper's own configurations has its run
    assert len(claims[claims.paper == "jamal2020"]) == 88


def test_registry_holds_the_module_and_its_plan():
    assert papers.PAPERS["jamal2020"] is jamal2020
    assert jamal2020.CHAPTER == "06_jamal2020_mutual_attention"
    for name in jamal2020.EXPERIMENTS:
        assert papers.EXPERIMENTS[name] is jamal2020.EXPERIMENTS[name]
        assert papers.experiment(name, "smoke", seed=2).train.seed == 2
    plan = jamal2020_plan("smoke")
    assert papers.plan("jamal2020", "smoke").keys() == plan.keys()
    assert papers.prerequisites(plan["compared"][0]) == plan["trunk"]


# --- one tiny epoch through the engine --------------------------------------------------------

def test_smoke_configuration_trains_one_tiny_epoch(tmp_path):
    exp = jamal2020_experiment("smoke")
    cache = random_cache(6, 3, 64, 32, seed=0)
    objective = OBJECTIVES[exp.objective](
        cache, augment=BatchAugment(**exp.augment),
        **{**exp.objective_kwargs, "num_identities": 3, "anchors_per_epoch": 6})
    torch.manual_seed(0)
    model = build_for(exp, 6)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = exp.replace(train={"epochs": 1}).train
    result = fit(model, objective, cfg, tmp_path / "run", progress=False)
    row = result.history[0]
    assert {"loss", "loss_id", "loss_ver", "acc_ver"} <= set(row) and "loss_unif" not in row
    assert np.isfinite(row["loss"])
    assert row["loss"] == pytest.approx(row["loss_id"] + 0.5 * row["loss_ver"], rel=1e-5)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {n for n in before if n.startswith("attention.")} <= moved
    assert {"verifier.weight", "classifier.weight", "backbone.layer4.0.conv1.weight"} <= moved
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
