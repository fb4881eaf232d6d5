"""li2019: the self-attention guided ResNet-50 (Li, Jiang and Hwang 2019, Knowledge-Based Systems,
doi:10.1016/j.knosys.2019.07.003): its experiments per profile (Tables 3, 6 and 7), the chapter's
plan of runs, and its claim links. Chapter 5; the model is reidnb/models/li2019.py.
"""

from __future__ import annotations

from ..experiments import SYNTH_SIZE, Experiment, check_profile, keep_in_scope, resolve_scope
from ..losses import LABEL_SMOOTHING_FORMS
from ..train.engine import TrainConfig
from .ide import trunk_source, with_trunk

PAPER = "li2019"
CHAPTER = "05_li2019_self_attention"

#: Each variant: the model's attention options (`models.li2019.Li2019`) and the identity
#: objective's two loss weights (cross entropy, batch-hard triplet).
LI2019_VARIANTS: dict[str, dict] = {
    # Table 3 row 1, "resnet-50": no block; CE + triplet (Eq. 10 without the block: the
    # default reading, `claims.METHODS["li2019"]["baseline"]`)
    "baseline": {"block": {"attention": None}, "id_weight": 1.0, "triplet_weight": 1.0},
    # no block, CE only: the plain identity baseline beside Table 7's "CE only" row
    "baseline_ce": {"block": {"attention": None}, "id_weight": 1.0, "triplet_weight": 0.0},
    # Table 3 row 2, "spatial-attention", read as a softmax over the L positions ...
    "spatial": {"block": {"attention": "spatial", "over": "positions"},
                "id_weight": 1.0, "triplet_weight": 1.0},
    # ... or, closer to Sec. 4.3's wording, one weight per feature map (channel)
    "spatial_channels": {"block": {"attention": "spatial", "over": "channels"},
                         "id_weight": 1.0, "triplet_weight": 1.0},
    # Table 3 row 3 ("Ours"): self-attention, softmax scores, CE + triplet
    "full": {"block": {"attention": "self", "score": "softmax"},
             "id_weight": 1.0, "triplet_weight": 1.0},
    # control, not in the paper: the same block and parameters with every score 1/L
    "uniform": {"block": {"attention": "self", "score": "softmax", "uniform_scores": True},
                "id_weight": 1.0, "triplet_weight": 1.0},
    # Table 6 row 2: sigmoid instead of softmax scores
    "sigmoid": {"block": {"attention": "self", "score": "sigmoid"},
                "id_weight": 1.0, "triplet_weight": 1.0},
    # Table 7: the full model with one of the two losses
    "ce_only": {"block": {"attention": "self", "score": "softmax"},
                "id_weight": 1.0, "triplet_weight": 0.0},
    "triplet_only": {"block": {"attention": "self", "score": "softmax"},
                     "id_weight": 0.0, "triplet_weight": 1.0},
}

#: The paper's optimisation (Sec. 4.2): Adam from lr 3e-4, x0.1 every 100 of 800 epochs,
#: "decay rate" 5e-4 read as weight decay; batches of 32 = P 8 identities x K 4 images.
PAPER_LR, PAPER_WEIGHT_DECAY, PAPER_EPOCHS = 3e-4, 5e-4, 800
PAPER_LR_STEPS = tuple(range(100, PAPER_EPOCHS, 100))
P, K = 8, 4
#: Eq. 9's epsilon (Sec. 3.3) and the batch-hard triplet margin (not given: Hermans et al.'s
#: usual 0.3 on Euclidean distances).
SMOOTHING_EPS, TRIPLET_MARGIN = 0.1, 0.3
#: CPU profiles: epochs of P x K batches (an epoch shows every training identity once).
SYNTHETIC_EPOCHS, SMOKE_EPOCHS = 4, 2
#: CPU profiles: the block and the classifier learn at 10x the trunk's lr (see the docstring).
CPU_NEW_LR_MULT = 10.0
#: gpu profile: epochs of P x K batches on the large SynthReID and the lr steps.
GPU_EPOCHS, GPU_LR_STEPS = 100, (50, 75)
#: Figs. 6-7 (rank-1 and mAP against training time): the first seed of the full model is also
#: evaluated on the test set every this many epochs (`Experiment.eval_every`; no other number
#: of the run changes).
CURVE_EVERY = {"smoke": 1, "synthetic": 1, "gpu": 10, "paper": 50}


def li2019_experiment(profile: str = "synthetic", variant: str = "full", seed: int = 0,
                      dataset: str | None = None, trunk: str | None = None,
                      smoothing_form: str = "target", **overrides) -> Experiment:
    """One row of li2019's Tables 3, 6 and 7 (`LI2019_VARIANTS`):

    - "baseline": no attention block, cross entropy + batch-hard triplet (Table 3 row 1, read
      as Eq. 10 without the block); "baseline_ce": the same with cross entropy only (what Table
      7's "CE only" row is compared with).
    - "spatial": `SpatialAttention` with a softmax over the L positions (Table 3 row 2);
      "spatial_channels": the same block with one weight per channel (Sec. 4.3's wording).
    - "full": `SelfAttention` with softmax scores (Eq. 4), CE + triplet (Eq. 10): "Ours".
    - "uniform": a control, not in the paper: the full model with every score 1/L
      (`uniform_scores=True`, same parameters), which shows what the learnt scores add.
    - "sigmoid": sigmoid scores instead of softmax (Table 6).
    - "ce_only", "triplet_only": the full model trained with one of the two losses (Table 7).

    `trunk`: where the trunk's first weights come from, "imagenet" (the paper; random with a
    warning when no cached file) or "ide" (the trained trunk of the profile's IDE run, chapter 1,
    the CPU profiles' stand-in for ImageNet); default "ide" in smoke/synthetic, "imagenet"
    otherwise. `smoothing_form`: "target" (default: the label smoothing of Szegedy et al. 2016,
    the paper's ref. [32]) or "printed" (Eq. 9 as typeset, the mixture inside the log;
    `losses.label_smoothing_ce`); "printed" appends "_printed_eq9" to the name. `overrides` go
    to `Experiment.replace`.

    Every profile: batches of P = 8 identities x K = 4 images (the paper's batch of 32 is P x K
    images, Sec. 3.3, without the values of P and K; 8 x 4 is our choice), an epoch showing
    every training identity once (K images each); label smoothing eps 0.1 (Eq. 9); batch-hard
    triplet (Eq. 7), margin 0.3 on Euclidean distances (not given in the paper), weight 1 beside
    the identity loss (Eq. 10); Adam, lr 3e-4, weight decay 5e-4 (Sec. 4.2's "decay rate of
    0.0005", read as Adam's L2 weight decay); no BN neck; evaluation by Euclidean distance
    between the pooled 2048-d (512 on ResNet-18) features ("feat", Sec. 4.2), without flip
    averaging (the paper describes none). Augmentation: the library's horizontal flip (p 0.5)
    and pad-and-crop translation (`BatchAugment`), no random erasing. Deviation: Sec. 4.2 also
    rotates the images and flips them vertically; `BatchAugment` supports neither, so neither
    is done.

    paper: ResNet-50 from ImageNet at 256 x 128, last stride 2 (Table 1: res5c is 2048 x 8 x 4,
      L = 32 positions), Market-1501, 800 epochs, lr x0.1 every 100 epochs (Sec. 4.2: "reduced
      ... for every 100 epochs", steps at 100, ..., 700), pad 10. With an epoch of one pass
      over the 751 identities that is 93 batches an epoch, about 74k steps.
    synthetic: ResNet-18 at 128 x 64 with last stride 1, so its last map is 8 x 4 = 32
      positions like the paper's; the trunk from chapter 1's IDE run (ResNet-18, last stride 2:
      the stride is no weight, the trunk loads unchanged), the blocks and the classifier new;
      the default SynthReID (200 training identities: 25 batches, 800 images an epoch), 4 epochs
      (100 steps) at lr 3e-4 without a step (the paper's first comes after 100 epochs), pad 4.
      The block and the classifier learn at 10x that rate (`CPU_NEW_LR_MULT`, the ratio of the
      IDE recipe's new layers to its trunk): Adam moves a weight by about its lr a step, so at
      3e-4 alpha (Eq. 6, from 0) could not pass about 100 x 3e-4 = 0.03 in such a run. Even so
      every identity is in only 4 batches of a run, so the 200-way classifier stays near chance
      (training accuracy under 1 % at 3 epochs with one rate): on this profile the feature is
      shaped by the triplet loss and the IDE trunk, the CE term is mostly noise. Time, measured
      at 3 epochs and one rate: 149 s a run (92 s training, the rest evaluating the 3,843 test
      images) on two otherwise idle cores; at 4 epochs about 200 s, about 50 min for the
      chapter's 15 runs: far over the chapter's 8-minute share of the main job (issue 18).
    smoke: the tiny SynthReID (24 training identities: 3 batches an epoch), 2 epochs, the smoke
      IDE run's trunk, otherwise as synthetic (the chapter's 9 smoke runs and its figures: about
      2 min on two cores).
    gpu: ResNet-50 at 256 x 128, last stride 2, on the large SynthReID (750 training
      identities: 93 batches, 2,976 images an epoch), a shortened schedule: 100 epochs (about
      300k images, as the IDE gpu run) with lr x0.1 after 50 and 75; ImageNet weights when
      cached, else random (a warning says so).
    """
    check_profile(profile)
    if variant not in LI2019_VARIANTS:
        raise ValueError(f"variant={variant!r}; choose from {tuple(LI2019_VARIANTS)}")
    if smoothing_form not in LABEL_SMOOTHING_FORMS:
        raise ValueError(f"smoothing_form={smoothing_form!r}; choose from "
                         f"{LABEL_SMOOTHING_FORMS}")
    paper, gpu, smoke = profile == "paper", profile == "gpu", profile == "smoke"
    big = paper or gpu
    arch = "resnet50" if big else "resnet18"
    trunk = trunk or ("ide" if profile in ("smoke", "synthetic") else "imagenet")
    trunk_from = trunk_source(profile, dataset, trunk, arch)
    spec = LI2019_VARIANTS[variant]
    name = f"li2019_{variant}" + ("_printed_eq9" if smoothing_form == "printed" else "")
    exp = Experiment(
        name=name, paper="li2019", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"),
        height=256 if big else 128, width=128 if big else 64, model="li2019",
        trunk_from=trunk_from,
        model_kwargs={"backbone": arch, "last_stride": 2 if big else 1,
                      "pretrained": False if trunk_from else "auto",
                      "pool": "avg", "bnneck": False, **spec["block"]},
        objective="identity",
        objective_kwargs={"sampler": "pk", "num_identities": P, "num_instances": K,
                          "label_smoothing": SMOOTHING_EPS,
                          "label_smoothing_form": smoothing_form,
                          "id_weight": spec["id_weight"],
                          "triplet_weight": spec["triplet_weight"],
                          "triplet_margin": TRIPLET_MARGIN},
        augment={"flip_p": 0.5, "pad": 10 if big else 4, "erasing_p": 0.0},
        train=TrainConfig(
            epochs=(PAPER_EPOCHS if paper else GPU_EPOCHS if gpu
                    else SMOKE_EPOCHS if smoke else SYNTHETIC_EPOCHS),
            optimizer="adam", lr=PAPER_LR, weight_decay=PAPER_WEIGHT_DECAY,
            lr_steps=PAPER_LR_STEPS if paper else GPU_LR_STEPS if gpu else (),
            warmup_epochs=0, channels_last=gpu, seed=seed,
            new_lr_mult=1.0 if big else CPU_NEW_LR_MULT),
        eval={"flip": False, "metric": "euclidean", "which": "feat"})
    return exp.replace(**overrides) if overrides else exp


#: Seeds of the li2019 chapter per profile, and which Table 3 rows run every seed (the book's
#: verdict rule, `reidnb.verdicts`, needs 3); the other rows, Tables 6 and 7 and the printed
#: Eq. 9 run the first seed only, so they give hints, and say so. On the CPU profiles the
#: uniform-score control runs one seed to keep the chapter's cost down.
LI2019_PLAN = {
    "smoke": {"seeds": (0,), "every_seed": ("baseline", "spatial", "full", "uniform")},
    "synthetic": {"seeds": (0, 1, 2), "every_seed": ("baseline", "spatial", "full")},
    "gpu": {"seeds": (0, 1, 2), "every_seed": ("baseline", "spatial", "full", "uniform")},
    "paper": {"seeds": (0, 1, 2), "every_seed": ("baseline", "spatial", "full", "uniform")},
}
TABLE3_VARIANTS = ("baseline", "spatial", "full", "uniform")
#: Table 3's CUHK03 claim (the block gains more than 10 points there, 3-5 on Market-1501 and
#: DukeMTMC-reID), asked of SynthReID: the baseline and the full model on a CUHK03-like set
#: (`data.synthetic.SIZES["two_camera"]`: every identity in two cameras, 1-6 true matches a
#: query) drawn with another generator seed, so that none of its people trained the IDE trunk
#: the runs start from. Per profile: (SynthReID size, seeds); None: not in the plan (the paper
#: profile runs Table 3 on the real CUHK03 through `dataset`).
TWO_CAMERA_VARIANTS = ("baseline", "full")
TWO_CAMERA = {"smoke": ("two_camera_smoke", (0,)), "synthetic": ("two_camera", (0, 1, 2)),
              "gpu": ("two_camera", (0, 1, 2)), "paper": None}
TWO_CAMERA_SYNTH_SEED = 1
TABLE6_VARIANTS = ("sigmoid",)
TABLE7_VARIANTS = ("ce_only", "triplet_only", "baseline_ce")


#: The core scope's runs (`experiments.keep_in_scope`): Table 3's baseline, spatial attention
#: and self-attention rows on every seed, the paper's headline ordering.
CORE = {"table3": ("li2019_baseline", "li2019_spatial", "li2019_full")}


def li2019_plan(profile: str = "synthetic", dataset: str | None = None,
                scope: str | None = None) -> dict[str, list[Experiment]]:
    """Every run the li2019 chapter makes, grouped by what it feeds, each run once: "trunk" (the
    IDE run whose trunk initialises the others in the CPU profiles; empty when they start from
    ImageNet), "table3" (baseline, spatial attention, self-attention and the uniform-score
    control; the profile's `every_seed` rows on every seed, the others on the first),
    "table6" (sigmoid scores, first seed; the softmax row is Table 3's full run), "table7"
    (the full model with CE only and with triplet only, and the baseline with CE only, first
    seed; the CE + triplet rows are Table 3's) and "eq9" (the full model with Eq. 9 as
    printed, first seed). The full model's first-seed run also records the test curve of
    Figs. 6-7 (`CURVE_EVERY`). "spatial_channels" is registered but not in the plan. In the
    core scope (`scope`; None: the profile's default) only "trunk" and Table 3's three rows
    hold runs (`CORE`)."""
    scope = resolve_scope(profile, scope)
    seeds = LI2019_PLAN[profile]["seeds"]
    every = LI2019_PLAN[profile]["every_seed"]
    first = seeds[0]
    def table3_run(variant: str, seed: int) -> Experiment:
        exp = li2019_experiment(profile, variant, seed=seed, dataset=dataset)
        if variant == "full" and seed == first:  # Figs. 6-7's curve
            exp = exp.replace(eval_every=CURVE_EVERY[profile])
        return exp

    groups = {
        "table3": [table3_run(v, s)
                   for v in TABLE3_VARIANTS for s in (seeds if v in every else (first,))],
        "table6": [li2019_experiment(profile, v, seed=first, dataset=dataset)
                   for v in TABLE6_VARIANTS],
        "table7": [li2019_experiment(profile, v, seed=first, dataset=dataset)
                   for v in TABLE7_VARIANTS],
        "eq9": [li2019_experiment(profile, "full", seed=first, dataset=dataset,
                                  smoothing_form="printed")],
        "two_camera": two_camera_runs(profile, dataset),
    }
    return with_trunk(keep_in_scope(groups, scope, CORE), profile, dataset, "li2019_plan")


def two_camera_runs(profile: str, dataset: str | None = None) -> list[Experiment]:
    """Table 3's baseline and full model on the CUHK03-like SynthReID (`TWO_CAMERA`); empty
    for the paper profile or another data set than SynthReID."""
    spec = TWO_CAMERA[profile]
    if spec is None or (dataset or "synthreid") != "synthreid":
        return []
    size, seeds = spec
    return [li2019_experiment(profile, v, seed=s, synth_size=size,
                              synth_seed=TWO_CAMERA_SYNTH_SEED)
            for v in TWO_CAMERA_VARIANTS for s in seeds]


#: The detector-misalignment sweep (`reidnb.misalignment`) per profile: how many test identities
#: it evaluates at each level (None: not run; it needs SynthReID). Table 3's every-seed rows
#: (baseline, spatial, self-attention) are swept, evaluation only, on every seed.
MISALIGNMENT_IDS = {"smoke": 8, "synthetic": 50, "gpu": 200, "paper": None}

#: Table 1's output sizes (C x H x W at 256 x 128), by the submodule of `models.li2019.Li2019`
#: (ResNet-50, last stride 2) that produces them; the block keeps its input's size.
TABLE1 = {
    "backbone.stem.0": "conv1: 64 x 128 x 64", "backbone.stem.3": "pool1: 64 x 64 x 32",
    "backbone.layer1": "res2c: 256 x 64 x 32", "backbone.layer2": "res3c: 512 x 32 x 16",
    "backbone.layer3": "res4c: 1024 x 16 x 8", "backbone.layer4": "res5c: 2048 x 8 x 4",
    "attention": "self-attention: 2048 x 8 x 4 (L = 32)",
}
#: Table 3's rows by the chapter's label: (variant, the claims ledger's method or None).
TABLE3_ROWS = {"baseline": ("baseline", "baseline"),
               "+spatial-attn": ("spatial", "+spatial-attn"),
               "+self-attn": ("full", "+self-attn"),
               "+self-attn, uniform scores (control)": ("uniform", None)}


def score_matrix_sizes(height: int = 256, width: int = 128, batch: int = 32,
                       stages: dict[str, int] | None = None) -> list[dict]:
    """For a self-attention block after each ResNet stage (stride 4, 8, 16, 32 at last stride
    2): its L positions, the L x L score matrix's entries and the float32 memory of one batch's
    scores (forward only; the softmax's backward keeps a second copy). The Conclusion's remark
    that the block is costly on large maps, in numbers."""
    stages = stages or {"res2c": 4, "res3c": 8, "res4c": 16, "res5c": 32}
    rows = []
    for stage, stride in stages.items():
        n = (height // stride) * (width // stride)
        rows.append({"after": stage, "map (H x W)": f"{height // stride} x {width // stride}",
                     "L": n, "scores per image": n * n,
                     f"MiB per batch of {batch}": n * n * 4 * batch / 2**20})
    return rows


def _variant(variant: str):
    def make(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
             ) -> Experiment:
        return li2019_experiment(profile, variant, seed=seed, dataset=dataset)
    make.__name__ = f"li2019_{variant}"
    make.__doc__ = f"li2019_experiment(variant={variant!r})"
    return make


def li2019_full_printed_eq9(profile: str = "synthetic", dataset: str | None = None,
                            seed: int = 0) -> Experiment:
    """li2019_experiment(variant="full", smoothing_form="printed"): Eq. 9 as typeset."""
    return li2019_experiment(profile, "full", seed=seed, dataset=dataset,
                             smoothing_form="printed")


EXPERIMENTS = {f.__name__: f for f in (*(_variant(v) for v in LI2019_VARIANTS),
                                       li2019_full_printed_eq9)}
#: Links to the ablation tables (3, 6, 7); Tables 4-5 repeat the full model's Table 3 numbers
#: among other work's and are not linked. "spatial_channels", "uniform" and "baseline_ce" have
#: no printed row.
CLAIM_LINKS = {
    "li2019_baseline": [("li2019", "3", "baseline")],
    "li2019_spatial": [("li2019", "3", "+spatial-attn")],
    "li2019_full": [("li2019", "3", "+self-attn"), ("li2019", "6", "+self-attn"),
                    ("li2019", "7", "+self-attn")],
    "li2019_sigmoid": [("li2019", "6", "+self-attn (sigmoid)")],
    "li2019_ce_only": [("li2019", "7", "+self-attn (CE only)")],
    "li2019_triplet_only": [("li2019", "7", "+self-attn (triplet only)")],
}
plan = li2019_plan
