"""jamal2020: the deep mutual-attention Siamese network (Jamal, Zhengang and Ming 2020): its
experiments per profile (Tables 1-3 and the ablations the paper did not run), the chapter's plan
of runs, and its claim links. Chapter 6; the model is reidnb/models/jamal2020.py.
"""

from __future__ import annotations

from ..experiments import SYNTH_SIZE, Experiment, check_profile
from ..models.jamal2020 import ATT_ACTS, FDS, SA_CHANNELS, check_choice
from ..train.engine import TrainConfig
from .ide import ide_experiment, trunk_source, with_trunk

PAPER = "jamal2020"
CHAPTER = "06_jamal2020_mutual_attention"

#: Each variant: the model options (`models.jamal2020.Jamal2020`) it changes in the full model.
JAMAL2020_VARIANTS: dict[str, dict] = {
    # the Siamese network without mutual attention: same trunk, heads and losses (the paper's
    # own "ResNet-50 Baseline"/"ResNet-50 Base", Tables 2-3, whose recipe it does not give)
    "baseline": {"stages": ()},
    # "Ours with MA": the block at layer3 and layer4, spatial and channel parts (Tables 1-3)
    "full": {},
    # control, not in the paper: each image paired with itself (same parameters, no
    # information from the other image of the pair)
    "self_paired": {"partner": "self"},
    # cumulative ablations the paper did not run: where the block sits ...
    "layer3": {"stages": ("layer3",)},
    "layer4": {"stages": ("layer4",)},
    # ... and which part of the self-attention map it keeps (Eqs. 1 and 2-3)
    "spatial": {"parts": "spatial"},
    "channel": {"parts": "channel"},
}
#: The full model's options, the paper's readings (each documented in the model's docstring).
FULL_MODEL = {"stages": ("layer3", "layer4"), "parts": "both", "partner": "mutual",
              "sa_channels": "C", "att_act": "sigmoid", "fd": "square", "dropout": 0.0}
COMPARED_VARIANTS = ("baseline", "full", "self_paired")
ABLATION_VARIANTS = ("layer3", "layer4", "spatial", "channel")

#: Image sizes by name: the paper's 256 x 188 (Secs. 3.1, 5.1, as printed), the usual 256 x 128
#: of Market-1501's 2:1 boxes, and the CPU profiles' 128 x 64.
INPUT_SIZES = {"paper": (256, 188), "usual": (256, 128), "cpu": (128, 64)}
DEFAULT_INPUT = {"paper": "paper", "gpu": "usual", "synthetic": "cpu", "smoke": "cpu"}

#: The paper's optimisation (Sec. 5.1): SGD from lr 1e-2, x0.1 "between the 40th and 60th
#: epoch" read as one step at 40, 60 epochs; momentum and weight decay not given (the usual
#: 0.9 and 5e-4); L = ID + alpha V with alpha = 0.5 (Eq. 13).
PAPER_LR, PAPER_EPOCHS, PAPER_LR_STEPS = 1e-2, 60, (40,)
MOMENTUM, WEIGHT_DECAY, ALPHA = 0.9, 5e-4, 0.5
#: A batch: P anchors of P identities, each with a positive and a negative (3P images), i.e.
#: 2P pairs, half of them positive: P = 16 gives the paper's 32 pairs, 1:1 (Sec. 5.1).
P = 16
#: Random erasing with Zhong et al.'s probability (their area and aspect ranges are the
#: library's); flip; no pad-and-crop (the paper lists none).
AUGMENT = {"flip_p": 0.5, "pad": 0, "erasing_p": 0.5}
#: CPU profiles: epochs of `JAMAL_CPU_ANCHORS` anchors (24 batches of 48 images); one lr for
#: the trunk and the new layers (see `jamal2020_experiment`).
JAMAL_CPU_EPOCHS, JAMAL_CPU_ANCHORS = 3, 384
JAMAL_SMOKE_EPOCHS, JAMAL_SMOKE_ANCHORS, SMOKE_P = 2, 32, 4
#: gpu profile: epochs of `GPU_ANCHORS` anchors on the large SynthReID, with a warm-up and a step.
GPU_EPOCHS, GPU_ANCHORS, GPU_LR_STEPS, GPU_WARMUP = 20, 5000, (14,), 2


def jamal2020_experiment(profile: str = "synthetic", variant: str = "full", seed: int = 0,
                         dataset: str | None = None, trunk: str | None = None,
                         sa_channels="C", att_act: str = "sigmoid", fd: str = "square",
                         input_size: str | None = None, dropout: float = 0.0,
                         **overrides) -> Experiment:
    """One run of the jamal2020 chapter (`JAMAL2020_VARIANTS`):

    - "baseline": the Siamese network without mutual attention (`stages=()`); "full": the
      block at layer3 and layer4 ("Ours with MA"); "self_paired": the control pairing each
      image with itself.
    - "layer3", "layer4": the block at one stage; "spatial", "channel": one part of the
      self-attention map (the full model is the "both" row of each ablation).

    The readings of `models.jamal2020` that change what is trained: `sa_channels` ("C" | 1),
    `att_act` ("sigmoid" | "none"), `fd` ("square" | "abs"); a non-default reading appends
    "_sa1", "_act-none", "_fd-abs" to the name; `dropout` before the identity FC (Sec. 5.1's
    0.75 kept; default 0, dropped) appends "_drop<p>". `input_size`: "paper" (256 x 188), "usual"
    (256 x 128) or "cpu" (128 x 64); the profile's default ("paper" in the paper profile,
    "usual" on the gpu, "cpu" on a CPU) leaves the name as it is, another appends
    "_<input_size>". `trunk`: "imagenet" (the paper; random with a warning when no cached
    file) or "ide" (the profile's IDE run, chapter 1: the CPU profiles' stand-in for ImageNet,
    their default). The test mode is not part of a run: a trained model's `test_mode` is set
    when it is evaluated. `overrides` go to `Experiment.replace`.

    Every profile: `SiameseObjective` without the uniformity term, L = ID + 0.5 V (Eq. 13) on
    batches of P anchors with a positive (another camera when there is one) and a negative each,
    the pairs (anchor, positive) "same" and (anchor, negative) "different"; no label smoothing;
    SGD (plain momentum 0.9, weight decay 5e-4); flip and random erasing (`AUGMENT`); the FC
    dropout of 0.75 dropped (`dropout=0`); evaluation by Euclidean distance between the 512-d
    un-attended embeddings, without flip averaging (Sec. 5.1: one vector per image). Images are
    normalised with ImageNet's mean and std: the library has no per-data-set mean image.

    paper: ResNet-50 from ImageNet at 256 x 188, last stride 2 (layer3 16 x 12, layer4 8 x 6),
      Market-1501, P = 16 (32 pairs a batch), an epoch one anchor per training image, 60
      epochs, lr 1e-2 x0.1 at 40.
    gpu: ResNet-50 at 256 x 128 on the large SynthReID, P = 16, 20 epochs of 5,000 anchors
      (about 300k images, as the IDE gpu run), lr 1e-2 after a 2-epoch warm-up, x0.1 at 14.
    synthetic: ResNet-18 at 128 x 64 (layer3 8 x 4, layer4 4 x 2), the trunk from chapter 1's
      IDE run, the default SynthReID, `JAMAL_CPU_EPOCHS` epochs of `JAMAL_CPU_ANCHORS` anchors
      (72 steps of 48 images at 3 x 384), lr 1e-2 for every layer, no step. With the new
      layers at 10x (li2019's CPU choice) the verification loss spiked (0.3 to 8.6 within 16
      smoke steps, baseline model); with one rate both losses fell smoothly. A step of the
      full model costs about 1.34x the baseline's in FLOPs (its pair path runs layer4 again
      on 2P pairs; 1.02x with the block at layer4 only, whose pair path is the block alone).
    smoke: the tiny SynthReID, P = 4, 2 epochs of 32 anchors, the smoke IDE run's trunk.
    """
    check_profile(profile)
    check_choice("jamal2020_experiment", "variant", variant, tuple(JAMAL2020_VARIANTS))
    check_choice("jamal2020_experiment", "sa_channels", sa_channels, SA_CHANNELS)
    check_choice("jamal2020_experiment", "att_act", att_act, ATT_ACTS)
    check_choice("jamal2020_experiment", "fd", fd, FDS)
    input_size = input_size or DEFAULT_INPUT[profile]
    check_choice("jamal2020_experiment", "input_size", input_size, tuple(INPUT_SIZES))
    paper, gpu, smoke = profile == "paper", profile == "gpu", profile == "smoke"
    big = paper or gpu
    arch = "resnet50" if big else "resnet18"
    trunk = trunk or ("ide" if profile in ("smoke", "synthetic") else "imagenet")
    trunk_from = trunk_source(profile, dataset, trunk, arch)
    name = f"jamal2020_{variant}"
    name += "_sa1" if sa_channels == 1 else ""
    name += "_act-none" if att_act == "none" else ""
    name += "_fd-abs" if fd == "abs" else ""
    name += f"_drop{dropout:g}" if dropout else ""
    name += f"_{input_size}" if input_size != DEFAULT_INPUT[profile] else ""
    height, width = INPUT_SIZES[input_size]
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"jamal2020_experiment: dropout={dropout}; must be in [0, 1)")
    model = {**FULL_MODEL, "sa_channels": sa_channels, "att_act": att_act, "fd": fd,
             "dropout": float(dropout), **JAMAL2020_VARIANTS[variant]}
    exp = Experiment(
        name=name, paper="jamal2020", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"), height=height, width=width,
        model="jamal2020", trunk_from=trunk_from,
        model_kwargs={"backbone": arch, "last_stride": 2,
                      "pretrained": False if trunk_from else "auto", **model},
        objective="siamese",
        objective_kwargs={"num_identities": SMOKE_P if smoke else P,
                          "anchors_per_epoch": (None if paper else GPU_ANCHORS if gpu
                                                else JAMAL_SMOKE_ANCHORS if smoke
                                                else JAMAL_CPU_ANCHORS),
                          "uniformity": False, "id_weight": 1.0, "ver_weight": ALPHA,
                          "label_smoothing": 0.0},
        augment=dict(AUGMENT),
        train=TrainConfig(
            epochs=(PAPER_EPOCHS if paper else GPU_EPOCHS if gpu
                    else JAMAL_SMOKE_EPOCHS if smoke else JAMAL_CPU_EPOCHS),
            optimizer="sgd", lr=PAPER_LR, momentum=MOMENTUM, nesterov=False,
            weight_decay=WEIGHT_DECAY,
            lr_steps=PAPER_LR_STEPS if paper else GPU_LR_STEPS if gpu else (),
            warmup_epochs=GPU_WARMUP if gpu else 0, channels_last=gpu, seed=seed),
        eval={"flip": False, "metric": "euclidean", "which": "feat"})
    return exp.replace(**overrides) if overrides else exp


#: Seeds of the jamal2020 chapter per profile. The compared rows (baseline, full model,
#: self-paired control) run every seed (the book's verdict rule, `reidnb.verdicts`, needs 3);
#: the ablations the first seed only, so they give hints, and say so.
JAMAL2020_PLAN = {
    "smoke": {"seeds": (0,)},
    "synthetic": {"seeds": (0, 1, 2)},
    "gpu": {"seeds": (0, 1, 2)},
    "paper": {"seeds": (0, 1, 2)},
}


def jamal2020_plan(profile: str = "synthetic", dataset: str | None = None
                   ) -> dict[str, list[Experiment]]:
    """Every run the jamal2020 chapter makes, grouped by what it feeds: "trunk" (the IDE run
    whose trunk initialises the others in the CPU profiles; empty when they start from
    ImageNet), "ide" (the IDE row of Tables 2-3, first seed: in the CPU profiles the same run
    as "trunk", read from the cache), "compared" (Siamese without mutual attention, the full
    model and the self-paired control, every seed) and "ablation" (the block at layer3 only, at
    layer4 only, its spatial part only, its channel part only; first seed)."""
    check_profile(profile)
    seeds = JAMAL2020_PLAN[profile]["seeds"]
    groups = {
        "ide": [ide_experiment(profile, dataset)],
        "compared": [jamal2020_experiment(profile, v, seed=s, dataset=dataset)
                     for v in COMPARED_VARIANTS for s in seeds],
        "ablation": [jamal2020_experiment(profile, v, seed=seeds[0], dataset=dataset)
                     for v in ABLATION_VARIANTS],
    }
    return with_trunk(groups, profile, dataset, "jamal2020_plan")


def _variant(variant: str):
    def make(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
             ) -> Experiment:
        return jamal2020_experiment(profile, variant, seed=seed, dataset=dataset)
    make.__name__ = f"jamal2020_{variant}"
    make.__doc__ = f"jamal2020_experiment(variant={variant!r})"
    return make


EXPERIMENTS = {f.__name__: f for f in (_variant(v) for v in JAMAL2020_VARIANTS)}
#: The paper's own rows: the full model (Tables 1-3) and its own baseline (Tables 2-3). The
#: quoted rows of Tables 2-3 are other work's; the control and the ablations have no row.
CLAIM_LINKS = {
    "jamal2020_full": [("jamal2020", "1", "+MA"), ("jamal2020", "2", "+MA"),
                       ("jamal2020", "3", "+MA")],
    "jamal2020_baseline": [("jamal2020", "2", "baseline"), ("jamal2020", "3", "baseline")],
}
plan = jamal2020_plan
