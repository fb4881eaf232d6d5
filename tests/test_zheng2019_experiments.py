"""zheng2019's experiments (reidnb/papers/zheng2019.py): each variant's loss weights are Eq. 6's
with Sec. 4's values, the paper profile holds Sec. 4's recipe, PCB's stripes divide conv5, the
readings name their runs, the plan's runs and seeds per profile, the claim links, the fused test
distance of Sec. 4 (`casn_distances`) and its cached evaluation, and one tiny epoch of the smoke
configuration through the engine."""

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_model import random_cache

from reidnb import papers
from reidnb.claims import METHODS, load_claims
from reidnb.data.transforms import BatchAugment, normalize
from reidnb.experiments import OBJECTIVES, PROFILES, build_for, run_dir_for
from reidnb.io import atomic_write_json, read_json
from reidnb.experiments import LEVELS, misalignment_knobs
from reidnb.models.heads import ReIDOutput
from reidnb.models.zheng2019 import (CASN, aligned_profile, pair_indicator, siamese_maps,
                                     vertical_profile)
from reidnb.papers import zheng2019 as z
from reidnb.papers.ide import ide_experiment
from reidnb.papers.zheng2019 import (ZHENG2019_VARIANTS, casn_distances, zheng2019_experiment,
                                     zheng2019_plan)
from reidnb.train.engine import fit

#: what each variant trains with: (L_ia weight, L_bce weight, consistency weight, crop)
WEIGHTS = {
    "ide": (None, 0.0, None, None),
    "ia": (0.5, 0.0, None, None),
    "bce": (None, 0.05, None, None),
    "sa": (None, 0.05, 0.01, True),
    "sa_nocrop": (None, 0.05, 0.01, False),
    "casn": (0.5, 0.05, 0.01, True),
}


def _terms(exp):
    return {t["name"]: t for t in exp.objective_kwargs["extra_terms"]}


def test_every_variant_is_expected():
    assert set(ZHENG2019_VARIANTS) == set(WEIGHTS)
    assert z.CONSISTENCY_WEIGHT == 0.01 == pytest.approx(z.LAMBDA2 * z.ALPHA)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("head", ("ide", "pcb"))
@pytest.mark.parametrize("variant", sorted(WEIGHTS))
def test_each_variant_weights_eq6_as_sec4_says(profile, head, variant):
    exp = zheng2019_experiment(profile, variant, head=head)
    ia, ver, consist, crop = WEIGHTS[variant]
    kw = exp.objective_kwargs
    assert exp.objective == "siamese" and exp.model == "zheng2019" and exp.paper == "zheng2019"
    assert kw["uniformity"] is False and kw["id_weight"] == 1.0 and kw["label_smoothing"] == 0
    assert kw["ver_weight"] == ver
    terms = _terms(exp)
    assert set(terms) == {n for n, w in (("ia", ia), ("consist", consist)) if w is not None}
    if ia is not None:
        assert terms["ia"]["term"] == "casn_ia" and terms["ia"]["weight"] == ia
        assert (terms["ia"]["alpha"], terms["ia"]["beta"]) == (10.0, 0.5)
        assert (terms["ia"]["score"], terms["ia"]["cam_grad"]) == ("prob", "full")
    if consist is not None:
        assert terms["consist"]["term"] == "casn_sa" and terms["consist"]["weight"] == consist
        assert terms["consist"]["crop"] is crop and terms["consist"]["t"] == 0.3
        assert (terms["consist"]["norm"], terms["consist"]["sign"]) == ("plain", "shared")
    assert kw["num_identities"] == (4 if profile == "smoke" else 8)    # 16 pairs, 1:1
    m = exp.model_kwargs
    assert m["head"] == head and m["diff"] == "signed"
    # conv5 keeps 8 rows to cut at 128 x 64 on the CPU profiles; the paper's IDE is stride 2
    assert m["last_stride"] == (2 if head == "ide" and profile in ("paper", "gpu") else 1)
    if head == "pcb":       # the stripes divide conv5's rows (height / 16 at last stride 1)
        assert (exp.height // 16) % m["parts"] == 0 and m["parts"] == z.PCB_PARTS[profile]
    else:
        assert "parts" not in m
    t = exp.train
    assert (t.optimizer, t.momentum, t.nesterov, t.weight_decay) == ("sgd", 0.9, False, 5e-4)
    assert t.lr == 0.03 and exp.augment == {"flip_p": 0.5, "pad": 0, "erasing_p": 0.0}
    assert exp.eval == {"flip": False, "metric": "euclidean", "which": "feat"}
    name = f"zheng2019_{'pcb_' if head == 'pcb' else ''}{variant}"
    assert exp.name == name and papers.experiment(name, profile).run_name == exp.run_name


def test_paper_profile_is_sec4():
    ide = zheng2019_experiment("paper", "casn")
    pcb = zheng2019_experiment("paper", "casn", head="pcb")
    assert (ide.height, ide.width) == (288, 144) and (pcb.height, pcb.width) == (384, 128)
    assert pcb.model_kwargs["parts"] == 6            # 24 rows, 6 stripes of 4 (PCB)
    ide_net, pcb_net = (build_for(e, 751).eval() for e in (ide, pcb))
    with torch.no_grad():
        assert ide_net(torch.zeros(1, 3, 288, 144)).extras["fmap"].shape[1:] == (2048, 9, 5)
        assert pcb_net(torch.zeros(1, 3, 384, 128)).extras["fmap"].shape[1:] == (2048, 24, 8)
    for exp in (ide, pcb):
        assert exp.dataset == "market1501" and exp.trunk_from == ""
        assert exp.model_kwargs["backbone"] == "resnet50"
        assert exp.model_kwargs["pretrained"] == "auto"
        assert (exp.train.epochs, exp.train.lr_steps, exp.train.warmup_epochs) == (40, (30,), 0)
        assert exp.objective_kwargs["anchors_per_epoch"] is None
    gpu = zheng2019_experiment("gpu", "casn")
    assert (gpu.height, gpu.width, gpu.synth_size) == (256, 128, "large")
    assert gpu.model_kwargs["backbone"] == "resnet50" and gpu.trunk_from == ""
    assert (gpu.train.epochs, gpu.train.lr_steps, gpu.train.warmup_epochs) == (20, (14,), 2)


@pytest.mark.parametrize("profile", ("smoke", "synthetic"))
def test_cpu_profiles_start_from_the_ide_trunk(profile):
    for head in ("ide", "pcb"):
        exp = zheng2019_experiment(profile, "casn", head=head)
        assert exp.trunk_from == ide_experiment(profile).run_name
        assert exp.model_kwargs["backbone"] == "resnet18"
        assert exp.model_kwargs["pretrained"] is False
        assert (exp.height, exp.width) == (128, 64)        # conv5 8 x 4
    syn = zheng2019_experiment("synthetic", "ide")
    assert (syn.train.epochs, syn.objective_kwargs["anchors_per_epoch"]) == (3, z.CPU_ANCHORS)
    assert syn.train.lr_steps == () and syn.train.new_lr_mult == 1.0
    smoke = zheng2019_experiment("smoke", "ide")
    assert smoke.objective_kwargs["anchors_per_epoch"] <= 16 and smoke.train.epochs == 2
    imagenet = zheng2019_experiment("synthetic", "casn", trunk="imagenet")
    assert imagenet.trunk_from == "" and imagenet.model_kwargs["pretrained"] == "auto"


def test_readings_name_their_runs_and_unused_ones_are_refused():
    base = zheng2019_experiment("synthetic", "casn")
    readings = {"ia_score": "logit", "cam_grad": "detached", "sa_norm": "squared",
                "sa_sign": "own", "diff": "abs", "t": 0.5, "alpha_mask": 5.0, "beta": 0.3}
    suffixes = {"ia_score": "_ia-logit", "cam_grad": "_cam-detached", "sa_norm": "_norm-squared",
                "sa_sign": "_sign-own", "diff": "_diff-abs", "t": "_t0.5",
                "alpha_mask": "_amask5", "beta": "_beta0.3"}
    names = {base.name}
    for option, value in readings.items():
        exp = zheng2019_experiment("synthetic", "casn", **{option: value})
        assert exp.name == "zheng2019_casn" + suffixes[option]
        names.add(exp.name)
    assert len(names) == len(readings) + 1
    both = zheng2019_experiment("synthetic", "casn", ia_score="logit", sa_sign="own")
    assert both.name == "zheng2019_casn_ia-logit_sign-own"
    assert _terms(both)["ia"]["score"] == "logit" and _terms(both)["consist"]["sign"] == "own"
    assert zheng2019_experiment("synthetic", "bce", diff="square").model_kwargs["diff"] == "square"
    with pytest.raises(ValueError, match="ia_score changes nothing in variant 'sa'"):
        zheng2019_experiment("synthetic", "sa", ia_score="logit")
    with pytest.raises(ValueError, match="t changes nothing in variant 'sa_nocrop'"):
        zheng2019_experiment("synthetic", "sa_nocrop", t=0.5)
    with pytest.raises(ValueError, match="diff changes nothing in variant 'ide'"):
        zheng2019_experiment("synthetic", "ide", diff="abs")
    with pytest.raises(ValueError, match=r"variant='full'; choose from"):
        zheng2019_experiment("synthetic", "full")
    with pytest.raises(ValueError, match=r"sa_sign='mine'; choose from \('shared', 'own'\)"):
        zheng2019_experiment("synthetic", "casn", sa_sign="mine")
    pcb = zheng2019_experiment("synthetic", "casn", head="pcb", parts=2)
    assert pcb.name == "zheng2019_pcb_casn_parts2" and pcb.model_kwargs["parts"] == 2
    with pytest.raises(ValueError, match="parts=6 does not divide the 8 conv5 rows"):
        zheng2019_experiment("synthetic", "casn", head="pcb", parts=6)
    with pytest.raises(ValueError, match="parts is PCB's option"):
        zheng2019_experiment("synthetic", "casn", parts=4)


@pytest.mark.parametrize("profile", PROFILES)
def test_registered_names_are_unique_and_stable(profile):
    exps = {name: f(profile, None, 0) for name, f in z.EXPERIMENTS.items()}
    assert len(exps) == 12 and all(e.name == n for n, e in exps.items())
    assert len({e.run_name for e in exps.values()}) == 12
    assert {n for n in exps} == {f"zheng2019_{h}{v}" for h in ("", "pcb_")
                                 for v in ZHENG2019_VARIANTS}
    # the same call twice gives the same run; another seed another run of the same name
    again = zheng2019_experiment(profile, "casn")
    assert again.run_name == exps["zheng2019_casn"].run_name
    other = zheng2019_experiment(profile, "casn", seed=1)
    assert other.name == again.name and other.run_name != again.run_name


@pytest.mark.parametrize("profile", PROFILES)
def test_plan_runs_and_seeds(profile):
    plan = zheng2019_plan(profile, scope="full")
    assert list(plan) == ["trunk", "ide", "table3", "controls", "pcb", "misalignment"]
    seeds = (0,) if profile == "smoke" else (0, 1, 2)
    table3 = ("ide", "casn") if profile == "smoke" else ("ide", "ia", "sa", "casn")
    for v in table3:
        got = sorted(e.train.seed for e in plan["table3"] if e.name == f"zheng2019_{v}")
        assert got == list(seeds), v
    assert len(plan["table3"]) == len(table3) * len(seeds)
    assert [e.run_name for e in plan["ide"]] == [ide_experiment(profile).run_name]
    if profile == "smoke":      # the smoke chapter: IDE and CASN, one seed, nothing else
        assert plan["controls"] == plan["pcb"] == plan["misalignment"] == []
    else:
        assert sorted((e.name, e.train.seed) for e in plan["controls"]) == sorted(
            [("zheng2019_bce", s) for s in seeds] + [("zheng2019_sa_nocrop", 0)])
        pcb_seeds = (0,) if profile == "synthetic" else seeds
        assert sorted((e.name, e.train.seed) for e in plan["pcb"]) == sorted(
            (f"zheng2019_pcb_{v}", s) for v in ("ide", "ia", "sa", "casn") for s in pcb_seeds)
        assert all(e.model_kwargs["head"] == "pcb" for e in plan["pcb"])
    if profile in ("smoke", "paper"):
        assert plan["misalignment"] == []
    else:
        mis = plan["misalignment"]
        assert len(mis) == 5 * len(LEVELS) and all(e.train.seed == 0 for e in mis)
        for v in ("ide", "bce", "sa", "sa_nocrop", "casn"):
            for level in LEVELS:
                (e,) = [e for e in mis if e.name == f"zheng2019_{v}_mis{level:g}"]
                assert e.synth_knobs == misalignment_knobs(level, e.height, e.width)
                plain = zheng2019_experiment(profile, v)
                assert {**e.to_dict(), "name": plain.name, "synth_knobs": {}} == plain.to_dict()
    own = [e for g in ("table3", "controls", "pcb", "misalignment") for e in plan[g]]
    names = [e.run_name for e in own]
    assert len(names) == len(set(names)), "a run appears twice in the plan"
    trunks = {e.trunk_from for e in own if e.trunk_from}
    assert trunks == {e.run_name for e in plan["trunk"]}
    if profile in ("smoke", "synthetic"):
        assert plan["trunk"] == plan["ide"]
    else:
        assert plan["trunk"] == []
    assert zheng2019_plan(profile, "market1501")["misalignment"] == []


def test_synthetic_plan_size():
    plan = zheng2019_plan("synthetic", scope="full")
    sizes = {g: len(v) for g, v in plan.items()}
    assert sizes == {"trunk": 1, "ide": 1, "table3": 12, "controls": 4, "pcb": 4,
                     "misalignment": 20}
    assert {e.objective_kwargs["anchors_per_epoch"] for g in ("table3", "controls", "pcb")
            for e in plan[g]} == {z.CPU_ANCHORS}


def test_claim_links_name_ledger_rows():
    claims = load_claims()
    rows = set(zip(claims.paper, claims.table.astype(str), claims.method))
    for run, targets in z.CLAIM_LINKS.items():
        assert run in z.EXPERIMENTS, run
        for target in targets:
            assert target[0] == "zheng2019" and target in rows, (run, target)
    linked = {t for targets in z.CLAIM_LINKS.values() for t in targets}
    own = {r for r in rows if r[0] == "zheng2019" and r[2] in METHODS["zheng2019"]}
    # every row of the paper's own configurations has its run, but Sec. 4.1's DenseNet
    assert own - linked == {("zheng2019", "sec4.1", "DenseNet IDE +IA+SA")}
    assert z.CLAIM_LINKS["zheng2019_casn"] == [("zheng2019", "1", "IDE +IA+SA"),
                                               ("zheng2019", "2", "IDE +IA+SA"),
                                               ("zheng2019", "3", "IDE +IA+SA")]
    assert z.CLAIM_LINKS["zheng2019_pcb_ide"] == [("zheng2019", "3", "PCB baseline")]


def test_registry_holds_the_module_and_its_plan():
    assert papers.PAPERS["zheng2019"] is z and z in papers.MODULES
    assert z.CHAPTER == "07_zheng2019_casn"
    for name in z.EXPERIMENTS:
        assert papers.EXPERIMENTS[name] is z.EXPERIMENTS[name]
        assert papers.experiment(name, "smoke", seed=2).train.seed == 2
    plan = zheng2019_plan("smoke")
    assert papers.plan("zheng2019", "smoke").keys() == plan.keys()
    assert papers.prerequisites(plan["table3"][0]) == plan["trunk"]


def test_table3_grid_sets_the_ledger_beside_the_mean():
    groups = z.table3_groups(zheng2019_plan("synthetic", scope="full"))
    assert list(groups) == list(z.TABLE3_ROWS)
    assert len(groups["IDE"]) == 3 and len(groups["PCB +IA"]) == 1
    rows = [{"label": "IDE", "seed": s, "rank1": 50.0 + s, "mAP": 40.0} for s in (0, 1, 2)]
    rows += [{"label": "IDE +BCE (control)", "seed": 0, "rank1": 60.0, "mAP": 45.0}]
    grid = z.table3_grid(pd.DataFrame(rows))
    assert list(grid.index) == ["IDE", "IDE +BCE (control)"]
    assert grid.loc["IDE", "SynthReID rank1"] == 51.0 and grid.loc["IDE", "± rank1"] == 1.0
    assert grid.loc["IDE", "seeds"] == 3
    assert grid.loc["IDE", "market1501 rank1 (paper)"] == 85.3
    assert grid.loc["IDE", "cuhk03_detected mAP (paper)"] == 38.9
    assert pd.isna(grid.loc["IDE +BCE (control)", "± rank1"])
    assert pd.isna(grid.loc["IDE +BCE (control)", "dukemtmcreid rank1 (paper)"])
    build, paper = z.table3_split(grid)
    assert list(build.columns) == ["seeds", "SynthReID rank1", "± rank1", "SynthReID mAP",
                                   "± mAP"]
    assert list(paper.columns) == [(d, m) for d in z.TABLE3_DATASETS for m in ("rank1", "mAP")]
    assert paper.loc["IDE", ("market1501", "rank1")] == 85.3
    assert list(paper.index) == list(build.index) == list(grid.index)


# --- the fused test distance (Sec. 4) ----------------------------------------------------------

def _model(head="ide", seed=0, num_classes=5):
    torch.manual_seed(seed)
    kw = {"parts": 2} if head == "pcb" else {}
    model = CASN(num_classes, backbone="resnet18", pretrained=False, head=head, **kw).eval()
    with torch.no_grad():       # a pair head that is not all-negative at random init
        for p in model.bce.parameters():
            p.normal_(0, 0.05)
    return model


def _images(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 64, 32), generator=g, dtype=torch.uint8)


def _reference(model, q, g, t=0.3, crop=True):
    """The aligned-profile distance of each (query, gallery) pair, by autograd on a forward of
    the pair (`siamese_maps`), one pair at a time."""
    out = np.zeros((len(q), len(g)))
    for i in range(len(q)):
        for j in range(len(g)):
            x = normalize(torch.stack([q[i], g[j]]))
            o = model(x)
            grad = model.same_gradient(o.feat[:1].detach(), o.feat[1:].detach())
            m1, m2 = siamese_maps(o, torch.tensor([0]), torch.tensor([1]),
                                  pair_indicator(grad), create_graph=False)
            p1 = aligned_profile(vertical_profile(m1), t, crop)[0]
            p2 = aligned_profile(vertical_profile(m2), t, crop)[0]
            out[i, j] = float((p1 - p2).norm().detach())
    return out


@pytest.mark.parametrize("head", ("ide", "pcb"))
def test_attention_distance_is_the_pair_grad_cam(head):
    model = _model(head)
    q, g = _images(3, 1), _images(4, 2)
    d = casn_distances(model, q, g)
    np.testing.assert_allclose(d.attention, _reference(model, q, g), rtol=1e-4, atol=1e-5)
    assert d.rescored.all() and np.isfinite(d.fused).all()
    assert set(d.seconds) == {"embed", "rescore"}


def test_fused_distance_normalises_per_query_and_sums():
    model = _model()
    q, g = _images(4, 3), _images(9, 4)
    d = casn_distances(model, q, g, w_att=1.0)
    nf = z.minmax_rows(d.feature, d.rescored)
    na = z.minmax_rows(d.attention, d.rescored)
    for part in (nf, na):       # each term spans [0, 1] in every query's row
        assert np.allclose(part.min(axis=1), 0) and np.allclose(part.max(axis=1), 1)
    np.testing.assert_allclose(d.fused, nf + na)
    half = casn_distances(model, q, g, w_att=0.5)
    np.testing.assert_allclose(half.fused, nf + 0.5 * na)
    # w_att = 0: exactly the feature ranking
    zero = casn_distances(model, q, g, w_att=0.0)
    assert (np.argsort(zero.fused, axis=1, kind="stable")
            == np.argsort(zero.feature, axis=1, kind="stable")).all()
    # all pairs: top_k=None and top_k=G agree
    every = casn_distances(model, q, g, top_k=len(g))
    np.testing.assert_array_equal(every.fused, d.fused)
    # the recompute path (no gallery maps kept; chunks of 2 images, 5 pairs) gives the same
    # numbers, up to float32 convolutions run on batches of another size
    lean = casn_distances(model, q, g, max_fmap_bytes=0, batch_size=2, pair_batch=5)
    np.testing.assert_allclose(lean.fused, d.fused, rtol=1e-3, atol=1e-4)


def test_top_k_rescores_the_nearest_and_keeps_the_rest_behind_in_feature_order():
    model = _model()
    q, g = _images(3, 5), _images(10, 6)
    full = casn_distances(model, q, g)
    d = casn_distances(model, q, g, top_k=4)
    assert (d.rescored.sum(axis=1) == 4).all()
    np.testing.assert_array_equal(np.isnan(d.attention), ~d.rescored)
    np.testing.assert_allclose(d.attention[d.rescored], full.attention[d.rescored], rtol=1e-6)
    for i in range(len(q)):
        near = np.argsort(d.feature[i], kind="stable")[:4]
        assert set(near) == set(np.flatnonzero(d.rescored[i]))
        assert d.fused[i, d.rescored[i]].max() < d.fused[i, ~d.rescored[i]].min()
        rest = np.flatnonzero(~d.rescored[i])
        assert (np.argsort(d.fused[i, rest], kind="stable")
                == np.argsort(d.feature[i, rest], kind="stable")).all()
    with pytest.raises(ValueError, match="top_k=0"):
        casn_distances(model, q, g, top_k=0)
    with pytest.raises(ValueError, match="needs a CASN model"):
        casn_distances(torch.nn.Identity(), q, g)


def test_evaluate_fused_keeps_its_results_in_the_run_folder(tmp_path, monkeypatch):
    import reidnb.experiments as experiments

    exp = zheng2019_experiment("smoke", "casn")
    cache = random_cache(4, 6, 32, 16, seed=3)
    query, gallery = cache.subset(torch.arange(0, 24, 6)), cache.subset(
        torch.tensor([i for i in range(24) if i % 6]))

    class _Data:
        num_train_pids = 5

    loads = []
    monkeypatch.setattr(experiments, "load_data",
                        lambda e, root: (_Data(), {"query": query, "gallery": gallery}))
    monkeypatch.setattr(experiments, "load_trained",
                        lambda e, runs, n: loads.append(1) or _model())
    with pytest.raises(FileNotFoundError, match="train"):
        z.evaluate_fused(exp, "data", tmp_path)
    atomic_write_json(run_dir_for(exp, tmp_path) / "record.json", {"status": "complete"})
    first = z.evaluate_fused(exp, "data", tmp_path)
    assert set(first) >= {"feature", "fused", "seconds_per_query", "queries", "gallery"}
    assert set(first["fused"]) == {"rank1", "rank5", "mAP"}
    assert first["top_k"] == z.FUSED_TOP_K["smoke"] and first["queries"] == 4
    assert z.evaluate_fused(exp, "data", tmp_path) == first and len(loads) == 1
    zero = z.evaluate_fused(exp, "data", tmp_path, w_att=0.0)
    assert zero["fused"] == zero["feature"] == first["feature"] and len(loads) == 2
    saved = read_json(run_dir_for(exp, tmp_path) / z.FUSED_FILE)
    assert "top_k=20,w_att=1,t=0.3,crop=True,sign=shared" in saved
    values = z.fused_values({"ours": [exp]}, "data", tmp_path)
    assert list(values["ranking"]) == ["feature", "fused"] and len(loads) == 2
    assert values.loc[1, "rank1"] == first["fused"]["rank1"]


# --- one tiny epoch through the engine --------------------------------------------------------

@pytest.mark.parametrize("variant,head", [("ide", "ide"), ("casn", "ide"), ("casn", "pcb")])
def test_smoke_configuration_trains_one_tiny_epoch(tmp_path, variant, head):
    exp = zheng2019_experiment("smoke", variant, head=head)
    cache = random_cache(6, 3, 64, 32, seed=0)      # conv5 4 x 2: PCB's 4 stripes of 1 row
    objective = OBJECTIVES[exp.objective](
        cache, augment=BatchAugment(**exp.augment),
        **{**exp.objective_kwargs, "num_identities": 3, "anchors_per_epoch": 6})
    torch.manual_seed(0)
    model = build_for(exp, 6)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = fit(model, objective, exp.replace(train={"epochs": 1}).train, tmp_path / "run",
                 progress=False)
    row = result.history[0]
    assert np.isfinite(row["loss"]) and "loss_unif" not in row
    if variant == "ide":
        assert {"loss_ia", "loss_consist"}.isdisjoint(row)
        assert row["loss"] == pytest.approx(row["loss_id"], rel=1e-5)
    else:
        assert row["loss"] == pytest.approx(row["loss_id"] + 0.05 * row["loss_ver"]
                                            + 0.5 * row["loss_ia"]
                                            + 0.01 * row["loss_consist"], rel=1e-5)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "backbone.layer4.0.conv1.weight" in moved
    if variant == "casn":
        assert "bce.0.weight" in moved
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


# --- the misalignment sweep's records and the crop check (item 6) ---------------------------

def test_misalignment_values_read_each_level_and_refuse_other_runs(tmp_path):
    runs = zheng2019_plan("synthetic", scope="full")["misalignment"]
    made = {("zheng2019_casn", 0.1): 81.0, ("zheng2019_bce", 0.2): 70.5}
    for exp in runs:
        base, level = exp.name.rsplit("_mis", 1)
        if (base, float(level)) in made:
            v = made[(base, float(level))]
            atomic_write_json(run_dir_for(exp, tmp_path) / "record.json",
                              {"status": "complete",
                               "metrics": {"single_query": {"rank1": v, "mAP": v - 10}}})
    got = z.misalignment_values(runs, tmp_path).sort_values("level").reset_index(drop=True)
    assert list(got["label"]) == ["IDE +IA+SA (CASN)", "IDE +BCE (control)"]
    assert list(got["level"]) == [0.1, 0.2] and list(got["seed"]) == [0, 0]
    assert list(got["rank1"]) == [81.0, 70.5] and list(got["mAP"]) == [71.0, 60.5]
    assert z.misalignment_values([], tmp_path).columns.tolist() == [
        "label", "level", "seed", "rank1", "mAP"]
    with pytest.raises(ValueError, match="zheng2019_casn"):
        z.misalignment_values([zheng2019_experiment("synthetic", "casn")], tmp_path)


def test_shift_down_moves_rows_and_repeats_the_edge():
    x = torch.arange(6.0).reshape(1, 1, 6, 1).expand(1, 1, 6, 2)
    assert z.shift_down(x, 2)[0, 0, :, 0].tolist() == [0, 0, 0, 1, 2, 3]
    assert z.shift_down(x, -1)[0, 0, :, 0].tolist() == [1, 2, 3, 4, 5, 5]
    assert torch.equal(z.shift_down(x, 0), x)
    with pytest.raises(ValueError, match="6-pixel"):
        z.shift_down(x, 6)


class _BlockModel(torch.nn.Module):
    """A stand-in CASN (IDE head) whose one-channel conv5 map is the image's brightness pooled
    over 16 x 16 cells: its Siamese maps sit where the bright block is, or, with
    `follows=False`, are the same everywhere whatever the image."""

    head = "ide"

    def __init__(self, follows: bool = True):
        super().__init__()
        self.follows = follows
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        fmap = torch.nn.functional.avg_pool2d(x[:, :1].relu(), 16)
        if not self.follows:
            fmap = torch.ones_like(fmap)
        return ReIDOutput(None, fmap.mean(dim=(2, 3)), fmap.mean(dim=(2, 3)), {"fmap": fmap})

    def same_gradient(self, f1, f2):
        return torch.ones_like(f1)


def _block_images(n: int = 3, top: int = 48, bottom: int = 96) -> torch.Tensor:
    x = torch.zeros(n, 3, 128, 64, dtype=torch.uint8)
    x[:, :, top:bottom] = 255
    return x


def test_crop_recovery_follows_a_shifted_person_one_for_one():
    x = _block_images()
    moved = {s: z.shift_down(x, int(s * 128)) for s in (-0.25, -0.125, 0.0, 0.125, 0.25)}
    rec = z.crop_recovery(_BlockModel(), x, moved)
    assert rec.index.tolist() == [-32, -16, 0, 16, 32]
    assert rec["start moved (px)"].tolist() == [-32.0, -16.0, 0.0, 16.0, 32.0]
    assert (rec["cut (%)"] == 100.0).all() and (rec["pairs"] == 3).all()
    slopes = z.crop_slopes(rec)
    assert slopes["start moved (px)"] == pytest.approx(1.0)
    assert slopes["centre moved (px)"] == pytest.approx(1.0)


def test_crop_recovery_of_maps_that_ignore_the_image_stays_put():
    x = _block_images()
    rec = z.crop_recovery(_BlockModel(follows=False), x, {0.0: x, 0.25: z.shift_down(x, 32)})
    assert rec["start moved (px)"].tolist() == [0.0, 0.0]
    assert (rec["cut (%)"] == 0.0).all()   # a flat profile keeps every row: nothing to move
    assert z.crop_slopes(rec)["start moved (px)"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="shift 0"):
        z.crop_recovery(_BlockModel(), x, {0.1: x, 0.2: x})
    with pytest.raises(ValueError, match="as many"):
        z.crop_recovery(_BlockModel(), x, {0.0: x, 0.1: x[:2]})


def test_moved_partners_redraw_synthreid_boxes_and_shift_other_data(tmp_path, monkeypatch):
    from reidnb.data.synthetic import generate

    exp = zheng2019_experiment("smoke", "casn")
    x = _block_images(2)
    other = z.moved_partners(exp.replace(dataset="market1501"), x, ["a.jpg", "b.jpg"],
                             shifts=(0.0, 0.125))
    assert torch.equal(other[0.0], x) and torch.equal(other[0.125], z.shift_down(x, 16))
    root = tmp_path / "synth"
    generate(root, size="smoke", seed=0)
    names = [str(p) for p in sorted((root / "query").glob("*.jpg"))[:2]]
    import reidnb.experiments as experiments
    monkeypatch.setattr(experiments, "dataset_root", lambda e, d="data": root)
    moved = z.moved_partners(exp, x, names, shifts=(0.0, 0.125))
    assert torch.equal(moved[0.0], x)                        # shift 0: the images as given
    assert moved[0.125].shape == x.shape and not torch.equal(moved[0.125], x)


def test_attention_in_mask_is_the_share_of_the_upsampled_map_on_the_person():
    masks = torch.zeros(3, 8, 4, dtype=torch.bool)
    masks[:, 2:6] = True                                   # the middle half of the rows
    maps = torch.zeros(3, 4, 2)
    maps[0, 1:3] = 1.0                                     # on the person's rows
    maps[1] = 1.0                                          # spread evenly
    share = z.attention_in_mask(maps, masks)
    assert share[0].item() == pytest.approx(1.0, abs=0.15)   # bilinear spill at the edges only
    assert share[1].item() == pytest.approx(0.5)            # the person's share of the area
    assert torch.isnan(share[2])                            # an empty map has no share
    flipped = z.attention_in_mask(maps, ~masks)
    assert (share[:2] + flipped[:2]).tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="maps"):
        z.attention_in_mask(maps[0], masks)


def test_person_covered_counts_the_person_pixels_above_beta():
    masks = torch.zeros(3, 8, 4, dtype=torch.bool)
    masks[:, 0:4] = True                                   # the top half is the person
    maps = torch.zeros(3, 8, 4)
    maps[0, 0:2] = 1.0                                     # hot on the top quarter only
    maps[1] = 1.0                                          # hot everywhere
    got = z.person_covered(maps, masks, beta=0.5)
    assert got[0].item() == pytest.approx(0.5) and got[1].item() == pytest.approx(1.0)
    assert torch.isnan(got[2])
    assert torch.isnan(z.person_covered(maps[:1], torch.zeros(1, 8, 4, dtype=torch.bool))[0])


def test_crop_check_and_step_cost_sizes_cover_every_profile_and_smoke_is_the_smallest():
    from reidnb.experiments import PROFILES

    for table in (z.CROP_PAIRS, z.STEP_COST_STEPS):
        assert set(table) == set(PROFILES)
        assert table["smoke"] == min(table.values()) >= 1
    assert z.CROP_PAIRS["synthetic"] == 200   # the synthetic findings were measured on 200
