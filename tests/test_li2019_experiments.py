"""li2019's experiments (reidnb/papers/li2019.py): each variant differs from the full model only
in its block or its loss weights, the paper profile holds Sec. 3.3 / 4.2's recipe, the CPU
profile's last map has the paper's 8 x 4 positions, the plan's runs are unique and registered,
and every claim link names a row of the ledger."""

import pytest

from reidnb import papers
from reidnb.claims import load_claims
from reidnb.experiments import PROFILES
from reidnb.papers import li2019
from reidnb.papers.ide import ide_experiment
from reidnb.papers.li2019 import LI2019_VARIANTS, li2019_experiment

FULL_BLOCK = {"attention": "self", "score": "softmax"}
#: what each variant changes in the full model: its block options (None: no block) and its
#: (id_weight, triplet_weight)
EXPECTED = {
    "full": (FULL_BLOCK, (1.0, 1.0)),
    "baseline": (None, (1.0, 1.0)),
    "baseline_ce": (None, (1.0, 0.0)),
    "spatial": ({"attention": "spatial", "over": "positions"}, (1.0, 1.0)),
    "spatial_channels": ({"attention": "spatial", "over": "channels"}, (1.0, 1.0)),
    "uniform": ({**FULL_BLOCK, "uniform_scores": True}, (1.0, 1.0)),
    "sigmoid": ({"attention": "self", "score": "sigmoid"}, (1.0, 1.0)),
    "ce_only": (FULL_BLOCK, (1.0, 0.0)),
    "triplet_only": (FULL_BLOCK, (0.0, 1.0)),
}
BLOCK_KEYS = {"attention", "score", "over", "uniform_scores"}


def _without(d: dict, keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def test_every_variant_is_expected():
    assert set(LI2019_VARIANTS) == set(EXPECTED)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_each_variant_differs_from_full_only_where_it_should(profile, variant):
    full = li2019_experiment(profile, "full")
    exp = li2019_experiment(profile, variant)
    assert exp.name == f"li2019_{variant}" and exp.paper == "li2019" and exp.model == "li2019"
    block, (w_id, w_tri) = EXPECTED[variant]
    mk = exp.model_kwargs
    if block is None:
        assert mk["attention"] is None and not (set(mk) & (BLOCK_KEYS - {"attention"}))
    else:
        assert {k: mk[k] for k in mk if k in BLOCK_KEYS} == block
    # the trunk, pooling and neck are the full model's
    assert _without(mk, BLOCK_KEYS) == _without(full.model_kwargs, BLOCK_KEYS)
    ok = exp.objective_kwargs
    assert (ok["id_weight"], ok["triplet_weight"]) == (w_id, w_tri)
    weights = {"id_weight", "triplet_weight"}
    assert _without(ok, weights) == _without(full.objective_kwargs, weights)
    # everything else is the same configuration
    for field in ("profile", "dataset", "synth_size", "height", "width", "objective",
                  "augment", "train", "eval", "trunk_from"):
        assert getattr(exp, field) == getattr(full, field), field
    assert (variant == "full") == (exp.key() == full.key())


def test_the_models_build_with_each_variants_options():
    from reidnb.experiments import build_for
    from reidnb.models.li2019 import SelfAttention, SpatialAttention

    for variant in EXPECTED:
        exp = li2019_experiment("smoke", variant)
        model = build_for(exp, 5)
        block = model.attention
        if EXPECTED[variant][0] is None:
            assert block is None
        elif exp.model_kwargs["attention"] == "self":
            assert isinstance(block, SelfAttention)
            assert block.score == exp.model_kwargs["score"]
            assert block.uniform_scores == (variant == "uniform")
        else:
            assert isinstance(block, SpatialAttention)
            assert block.over == exp.model_kwargs["over"]
    # the uniform control has exactly the full model's parameters
    count = [sum(p.numel() for p in build_for(li2019_experiment("smoke", v), 5).parameters())
             for v in ("full", "uniform")]
    assert count[0] == count[1]


def test_paper_profile_holds_the_papers_recipe():
    exp = li2019_experiment("paper")
    assert exp.dataset == "market1501" and (exp.height, exp.width) == (256, 128)
    mk = exp.model_kwargs
    assert mk["backbone"] == "resnet50" and mk["last_stride"] == 2
    assert mk["pretrained"] == "auto" and exp.trunk_from == ""       # ImageNet weights
    assert mk["bnneck"] is False and mk["pool"] == "avg"
    t = exp.train
    assert t.optimizer == "adam" and t.lr == 3e-4 and t.weight_decay == 5e-4
    assert t.epochs == 800 and t.lr_gamma == 0.1 and t.warmup_epochs == 0
    assert t.lr_steps == (100, 200, 300, 400, 500, 600, 700)
    ok = exp.objective_kwargs
    assert exp.objective == "identity" and ok["sampler"] == "pk"
    assert ok["num_identities"] * ok["num_instances"] == 32
    assert (ok["num_identities"], ok["num_instances"]) == (8, 4)
    assert ok["label_smoothing"] == 0.1 and ok["label_smoothing_form"] == "target"
    assert ok["triplet_margin"] == 0.3 and ok["id_weight"] == ok["triplet_weight"] == 1.0
    assert exp.eval == {"flip": False, "metric": "euclidean", "which": "feat"}
    assert exp.augment["flip_p"] == 0.5 and exp.augment["erasing_p"] == 0.0


def _last_map(exp) -> tuple[int, int]:
    stride = 32 if exp.model_kwargs["last_stride"] == 2 else 16
    return exp.height // stride, exp.width // stride


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_has_the_papers_8x4_last_map(profile):
    assert _last_map(li2019_experiment(profile)) == (8, 4)


def test_synthetic_profile_is_resnet18_from_the_ide_trunk_with_8x4_positions():
    import torch

    from reidnb.experiments import build_for

    exp = li2019_experiment("synthetic")
    ide = ide_experiment("synthetic")
    assert exp.model_kwargs["backbone"] == ide.model_kwargs["backbone"] == "resnet18"
    assert exp.model_kwargs["last_stride"] == 1 and ide.model_kwargs["last_stride"] == 2
    assert exp.trunk_from == ide.run_name and exp.model_kwargs["pretrained"] is False
    assert (exp.height, exp.width) == (128, 64)
    assert exp.train.optimizer == "adam" and exp.train.lr == 3e-4
    assert 2 <= exp.train.epochs <= 4
    # the IDE trunk (last stride 2) loads into this one (last stride 1): a stride is no weight
    model = build_for(exp, 7).eval()
    trunk = build_for(ide, 7).backbone.state_dict()
    model.backbone.load_state_dict(trunk)
    with torch.no_grad():
        out = model(torch.randn(1, 3, exp.height, exp.width))
    assert out.extras["fmap"].shape[-2:] == (8, 4)
    assert out.extras["scores"].shape == (1, 32, 32)                 # L = 32 positions


def test_smoothing_form_option():
    printed = li2019_experiment("synthetic", smoothing_form="printed")
    full = li2019_experiment("synthetic")
    assert printed.objective_kwargs["label_smoothing_form"] == "printed"
    assert printed.name == "li2019_full_printed_eq9" and printed.key() != full.key()
    with pytest.raises(ValueError, match="smoothing_form='eq9'"):
        li2019_experiment("synthetic", smoothing_form="eq9")
    with pytest.raises(ValueError, match="variant='self'"):
        li2019_experiment("synthetic", variant="self")
    with pytest.raises(ValueError, match="trunk='random'"):
        li2019_experiment("paper", trunk="random")


def test_trunk_option():
    # the IDE run's trunk in any profile whose IDE has the same architecture (its stride may
    # differ); ImageNet (no trunk_from) elsewhere by default
    paper_ide = li2019_experiment("paper", trunk="ide")
    assert paper_ide.trunk_from == ide_experiment("paper").run_name
    assert paper_ide.model_kwargs["pretrained"] is False
    synth_imagenet = li2019_experiment("synthetic", trunk="imagenet")
    assert synth_imagenet.trunk_from == "" and synth_imagenet.model_kwargs["pretrained"] == "auto"
    assert li2019_experiment("gpu").trunk_from == ""


def test_claim_links_name_ledger_rows():
    claims = load_claims()
    rows = set(zip(claims.paper, claims.table.astype(str), claims.method))
    assert li2019.CLAIM_LINKS
    for run, targets in li2019.CLAIM_LINKS.items():
        assert run in li2019.EXPERIMENTS, run
        for target in targets:
            assert target[0] == "li2019" and target in rows, (run, target)
    linked = {t for targets in li2019.CLAIM_LINKS.values() for t in targets}
    own = {r for r in rows if r[0] == "li2019" and r[1] in ("3", "6", "7")}
    assert linked == own     # every ablation row of Tables 3, 6 and 7 has its run


def test_every_variant_has_a_factory():
    assert set(li2019.EXPERIMENTS) == ({f"li2019_{v}" for v in LI2019_VARIANTS}
                                       | {"li2019_full_printed_eq9"})
    for name, factory in li2019.EXPERIMENTS.items():
        assert factory("smoke", None, 1).name == name and factory("smoke", None, 1).train.seed == 1


# li2019 is in the registry (reidnb/papers/__init__.py MODULES) with its chapter,
# notebooks/05_li2019_self_attention.py.
def test_registry_holds_every_variant():
    assert papers.PAPERS["li2019"] is li2019
    for name in li2019.EXPERIMENTS:
        assert papers.EXPERIMENTS[name] is li2019.EXPERIMENTS[name]


@pytest.mark.parametrize("profile", ["smoke", "synthetic"])
def test_plan_is_the_registrys(profile):
    plan = li2019.li2019_plan(profile, scope="full")
    assert papers.plan("li2019", profile, scope="full").keys() == plan.keys()
    assert papers.prerequisites(plan["table3"][0]) == plan["trunk"]


@pytest.mark.parametrize("profile", PROFILES)
def test_plan_runs_are_unique(profile):
    plan = li2019.li2019_plan(profile, scope="full")
    assert set(plan) == {"trunk", "table3", "table6", "table7", "eq9", "two_camera"}
    runs = [e for group in plan.values() for e in group]
    names = [e.run_name for e in runs]
    assert len(names) == len(set(names)), "a run appears twice in the plan"
    seeds = li2019.LI2019_PLAN[profile]["seeds"]
    every = li2019.LI2019_PLAN[profile]["every_seed"]
    assert {"baseline", "full"} <= set(every), "Table 3's main claim needs every seed"
    assert len(plan["table3"]) == len(every) * len(seeds) + (4 - len(every))
    for variant in ("baseline", "spatial", "full", "uniform"):
        got = sorted(e.train.seed for e in plan["table3"] if e.name == f"li2019_{variant}")
        assert got == (list(seeds) if variant in every else [seeds[0]])
    assert [e.name for e in plan["eq9"]] == ["li2019_full_printed_eq9"]
    assert {e.name for e in plan["table3"]} == {f"li2019_{v}" for v in
                                                 ("baseline", "spatial", "full", "uniform")}
    assert {e.name for e in plan["table6"]} == {"li2019_sigmoid"}
    assert {e.name for e in plan["table7"]} == {"li2019_ce_only", "li2019_triplet_only",
                                                "li2019_baseline_ce"}
    for e in plan["table6"] + plan["table7"]:
        assert e.train.seed == seeds[0]
    for e in runs:
        if e.name == "ide":
            assert e.run_name == ide_experiment(profile).run_name
            continue
        factory = li2019.EXPERIMENTS[e.name]
        if e in plan["two_camera"]:  # another data set: test_two_camera_runs_...
            continue
        curve = e.name == "li2019_full" and e.train.seed == seeds[0]  # Figs. 6-7
        assert e.eval_every == (li2019.CURVE_EVERY[profile] if curve else 0)
        assert factory(profile, None, e.train.seed).replace(
            eval_every=e.eval_every).run_name == e.run_name
    # the CPU profiles' trunk source is in the plan, and only there
    trunks = {e.trunk_from for e in runs if e.trunk_from}
    assert trunks == {e.run_name for e in plan["trunk"]}
    if profile in ("smoke", "synthetic"):
        assert [e.name for e in plan["trunk"]] == ["ide"]
    else:
        assert plan["trunk"] == []


def test_plan_seeds():
    assert li2019.LI2019_PLAN["smoke"]["seeds"] == (0,)
    for profile in ("synthetic", "gpu", "paper"):
        assert li2019.LI2019_PLAN[profile]["seeds"] == (0, 1, 2)


@pytest.mark.parametrize("profile", PROFILES)
def test_two_camera_runs_are_cuhk03_like_and_unseen_by_the_trunk(profile):
    from reidnb.data.synthetic import SIZES
    runs = li2019.li2019_plan(profile, scope="full")["two_camera"]
    if li2019.TWO_CAMERA[profile] is None:
        assert runs == []
        return
    size, seeds = li2019.TWO_CAMERA[profile]
    assert SIZES[size].cams_per_id == (2, 2) and SIZES[size].distractors == 0
    assert sorted((e.name, e.train.seed) for e in runs) == sorted(
        (f"li2019_{v}", s) for v in ("baseline", "full") for s in seeds)
    trunk = {e.trunk_from for e in runs}
    for e in runs:
        assert e.synth_size == size and e.synth_seed != ide_experiment(profile).synth_seed
        base = li2019.li2019_experiment(profile, e.name.removeprefix("li2019_"), seed=e.train.seed)
        assert e.replace(synth_size=base.synth_size, synth_seed=base.synth_seed).run_name \
            == base.run_name  # only the data set differs from the Table 3 run
    assert trunk == ({ide_experiment(profile).run_name} if profile in ("smoke", "synthetic")
                     else {""})
    assert li2019.li2019_plan(profile, "market1501")["two_camera"] == []
