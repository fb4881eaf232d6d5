"""jeong2020: the uniformity attentive Siamese network (Jeong et al. 2020, Sensors 20(18):5264):
its experiments per profile (Tables 5-6), the chapter's plan of runs, and its claim links.
Chapter 4; the model is reidnb/models/jeong2020.py.
"""

from __future__ import annotations

import functools

from ..experiments import SYNTH_SIZE, Experiment, check_profile, keep_in_scope, resolve_scope
from ..train.engine import TrainConfig
from .ide import trunk_source, with_trunk

PAPER = "jeong2020"
CHAPTER = "04_jeong2020_uniformity"

JEONG2020_VARIANTS = ("full", "am", "baseline")
#: The uniformity margin per map cell (the paper gives none). Scores are sigmoids, so a per-cell
#: L1 distance is in [0, 1]; 0.1 is close to the margin the chapter used before the loss was
#: averaged over cells (1 summed over the 8 cells of a 128 x 64 input: 0.125 a cell).
UNIF_MARGIN = 0.1


def _encoder_convs(arch: str, stage: str, height: int, width: int) -> int:
    """The paper's encoder convolutions that fit the module's map at this input size."""
    from ..models.jeong2020 import fitting_encoder_convs

    stride = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}[stage]
    return fitting_encoder_convs(height // stride, width // stride)


def jeong2020_experiment(profile: str = "synthetic", variant: str = "full",
                         backbone: str = "resnet", stage: str = "layer3", seed: int = 0,
                         dataset: str | None = None, synth_knobs: dict | None = None,
                         trunk: str | None = None, module_init: str | None = None,
                         unif_weight: float = 1.0, unif_margin: float = UNIF_MARGIN,
                         **overrides) -> Experiment:
    """One row of jeong2020's Tables 5-6: `variant` "baseline" (no attention module), "am"
    (attention module, no uniformity loss) or "full" (+ uniformity loss); `stage` places the
    module (Table 6); `backbone` "resnet" (ResNet-50 in the paper profile, ResNet-18 otherwise)
    or "vgg" (VGG16, costly on a CPU). `trunk`: where the trunk's initial weights come from,
    "imagenet" (the paper; random with a warning when no cached file) or "ide" (the trained trunk
    of the profile's IDE run, chapter 1: the CPU profiles' stand-in for ImageNet, ResNet only);
    default "ide" in smoke/synthetic, "imagenet" otherwise. `module_init`: how the attention
    module starts, "identity" (close to it, `models.jeong2020.IDENTITY_BIAS`: the default on a
    trained IDE trunk, so that inserting the module does not first break a trunk the baseline
    keeps intact) or "default" (PyTorch's random initialisation, the paper's setting on an
    ImageNet trunk, and the default there). `unif_weight` (the full variant's weight of Eq. 8;
    the others have 0) and `unif_margin` (per map cell: the loss averages the L1 distance over
    the cells, `losses.uniformity(reduce="mean")`, so its scale does not depend on the map
    size). `overrides` go to `Experiment.replace`.

    Every profile runs the paper's unpadded encoder-decoder, with as many of its three encoder
    convolutions as the module's map allows (`fitting_encoder_convs`, the paper's own rule after
    layer4): at 256 x 128 that is 3 after layer1-3 and 2 after layer4, as in the paper; at the
    CPU profiles' 128 x 64 the maps are half as large, so 3 after layer1-2, 2 after layer3 (its
    8 x 4 map is the paper's layer4 map) and 1 after layer4.

    paper: ResNet-50 from ImageNet, 256 x 128, last stride 2 (Table 1: layer4 is 8 x 4),
      unpadded encoder, SGD lr 0.04 momentum 0.9 (plain, not Nesterov), x0.1 every 30 epochs
      (Sec. 4.2). The paper gives neither the number of epochs nor P; we take 90 epochs (three
      30-epoch steps; about the 4 hours Sec. 4.2 reports on two GPUs at an epoch of one anchor
      per training image) and P = 16 anchors (48 images) a batch. Augmentation is not described;
      we use the common flip and pad-crop, no random erasing.
    synthetic: ResNet-18 at 128 x 64 on the default SynthReID, its trunk initialised from
      chapter 1's IDE run (trained on SynthReID's training identities) as the paper's is from
      ImageNet, the module from near the identity; 4 epochs
      of 384 anchors (4,608 training images), the paper's lr 0.04 after one warm-up epoch, x0.1
      for the last epoch. From random weights (the setting until the chapter had to fit the main
      job's 60 minutes) 5 epochs of 384-512 anchors left every variant far from converged
      (training accuracy 8-40 %, rank-1 spread of 10-17 points between two seeds), so the
      ablation measured early learning speed, not the module. About 1.5 min per run on two
      CPU cores (the module after layer1 costs 2.3x that).
    smoke: the tiny SynthReID, two short epochs, the smoke IDE run's trunk, lr 0.04 (seconds).
    gpu: the paper's model and image size (unpadded encoder) on the large SynthReID, P = 32,
      20 epochs of 5,000 anchors (about 300k images, as the IDE gpu run), lr 0.01 with a
      2-epoch warm-up and a step at 14. The trunk may start from random weights there (no
      ImageNet file), and on a CPU lr 0.04 from random weights stayed near chance (rank-1 11 %
      after 4 epochs), hence 0.01; not yet tried on a GPU.
    """
    check_profile(profile)
    if variant not in JEONG2020_VARIANTS:
        raise ValueError(f"variant={variant!r}; choose from {JEONG2020_VARIANTS}")
    if backbone not in ("resnet", "vgg"):
        raise ValueError(f"backbone={backbone!r}; choose 'resnet' or 'vgg'")
    paper, smoke = profile == "paper", profile == "smoke"
    if unif_margin < 0 or unif_weight < 0:
        raise ValueError(f"unif_weight={unif_weight}, unif_margin={unif_margin}: both must be >= 0")
    arch = "vgg16" if backbone == "vgg" else ("resnet50" if paper else "resnet18")
    name = "jeong2020" + ("_vgg" if backbone == "vgg" else "") + f"_{variant}"
    if stage != "layer3":
        name += f"_{stage}"
    gpu = profile == "gpu"
    big = paper or gpu   # ResNet-50 at 256 x 128 with the unpadded (paper) encoder
    if gpu and backbone != "vgg":
        arch = "resnet50"
    trunk = trunk or ("ide" if profile in ("smoke", "synthetic") and backbone == "resnet"
                      else "imagenet")
    trunk_from = trunk_source(profile, dataset, trunk, arch)
    cpu_lr = 0.04 if trunk == "ide" else 0.01
    module_init = module_init or ("identity" if trunk == "ide" else "default")
    height, width = (256, 128) if big else (128, 64)
    exp = Experiment(
        name=name, paper="jeong2020", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"), synth_knobs=dict(synth_knobs or {}),
        height=height, width=width, model="jeong2020",
        trunk_from=trunk_from,
        model_kwargs={"backbone": arch, "last_stride": 2,
                      "pretrained": False if trunk_from else "auto",
                      "attention": variant != "baseline", "stage": stage,
                      "encoder_padding": False,
                      "encoder_convs": _encoder_convs(arch, stage, height, width),
                      "module_init": module_init},
        objective="siamese",
        objective_kwargs={"num_identities": 4 if smoke else (32 if gpu else 16),
                          "anchors_per_epoch": (32 if smoke else None if paper
                                                else 5000 if gpu else 384),
                          "unif_weight": unif_weight if variant == "full" else 0.0,
                          "unif_margin": unif_margin, "unif_form": "text",
                          "unif_reduce": "mean"},
        augment={"flip_p": 0.5, "pad": 10 if big else 4, "erasing_p": 0.0},
        train=TrainConfig(epochs=2 if smoke else 90 if paper else 20 if gpu else 4,
                          lr=0.04 if paper else 0.01 if gpu else cpu_lr, momentum=0.9,
                          nesterov=False,
                          lr_steps=(30, 60) if paper else (14,) if gpu else () if smoke else (3,),
                          warmup_epochs=0 if paper or smoke else 2 if gpu else 1,
                          channels_last=gpu, seed=seed))
    if profile == "synthetic":
        # one forward per test image, not two (no flip averaging): saves about 20 s of each of
        # the chapter's 15 CPU runs; the same for every row, so the comparisons are unaffected
        exp.eval["flip"] = False
    return exp.replace(**overrides) if overrides else exp


#: Seeds, attention stages, bag-visibility values and uniformity settings of the jeong2020
#: chapter, per profile. Table 5 and the Eq. 8 check run every seed (the book's verdict rule,
#: `reidnb.verdicts`, needs 3); the sweeps (stage, bag, uniformity weight and margin, random
#: module start) run the first seed only, so they give hints, and say so.
JEONG2020_PLAN = {
    "smoke": {"seeds": (0,), "stages": ("layer2", "layer3"), "bag_visible": (0.2,),
              "unif_weights": (), "unif_margins": (), "random_init": False, "vgg": False},
    "synthetic": {"seeds": (0, 1, 2), "stages": ("layer1", "layer2", "layer3", "layer4"),
                  "bag_visible": (0.2, 0.5, 1.0), "unif_weights": (0.3, 3.0),
                  "unif_margins": (0.03, 0.3), "random_init": True, "vgg": False},
    "gpu": {"seeds": (0, 1, 2), "stages": ("layer1", "layer2", "layer3", "layer4"),
            "bag_visible": (0.0, 0.2, 0.5, 1.0), "unif_weights": (0.3, 3.0),
            "unif_margins": (0.03, 0.3), "random_init": True, "vgg": True},
    "paper": {"seeds": (0, 1, 2), "stages": ("layer1", "layer2", "layer3", "layer4"),
              "bag_visible": (), "unif_weights": (0.3, 3.0), "unif_margins": (0.03, 0.3),
              "random_init": False, "vgg": True},
}
#: The variants trained at each level of the bag sweep: the gain it measures is full - baseline.
BAG_SWEEP_VARIANTS = ("baseline", "full")


def _default_bag_visible() -> float:
    from ..data.synth_render import SynthKnobs
    return SynthKnobs().bag_visible_prob


def jeong2020_bag_runs(profile: str = "synthetic", dataset: str | None = None
                       ) -> dict[tuple[str, float], Experiment]:
    """The bag-visibility sweep, (variant, p) -> run, first seed, the default set's p included
    (that point is Table 5's run). Empty for a real data set: the knob is SynthReID's."""
    plan = JEONG2020_PLAN[profile]
    if (dataset or "synthreid") != "synthreid":
        return {}
    default_p, seed = _default_bag_visible(), plan["seeds"][0]
    runs = {}
    for p in sorted({default_p, *plan["bag_visible"]}):
        for v in BAG_SWEEP_VARIANTS:
            runs[(v, p)] = (jeong2020_experiment(profile, v, seed=seed, dataset=dataset)
                            if p == default_p else
                            jeong2020_experiment(profile, v, seed=seed, dataset=dataset,
                                                 synth_knobs={"bag_visible_prob": p},
                                                 name=f"jeong2020_{v}_bag{p:g}"))
    return runs


def jeong2020_uniformity_runs(profile: str = "synthetic", dataset: str | None = None
                              ) -> dict[tuple[float, float], Experiment]:
    """The full model at other uniformity weights and margins, (weight, margin) -> run, first
    seed; (1.0, `UNIF_MARGIN`) is Table 5's run and included."""
    plan = JEONG2020_PLAN[profile]
    seed = plan["seeds"][0]
    runs = {(1.0, UNIF_MARGIN): jeong2020_experiment(profile, "full", seed=seed, dataset=dataset)}
    for w in plan["unif_weights"]:
        runs[(w, UNIF_MARGIN)] = jeong2020_experiment(profile, "full", seed=seed,
                                                      dataset=dataset, unif_weight=w,
                                                      name=f"jeong2020_full_w{w:g}")
    for m in plan["unif_margins"]:
        runs[(1.0, m)] = jeong2020_experiment(profile, "full", seed=seed, dataset=dataset,
                                              unif_margin=m, name=f"jeong2020_full_m{m:g}")
    return runs


#: The core scope's runs (`experiments.keep_in_scope`): Table 5's three rows on every seed, the
#: paper's headline ordering +AM+UL > +AM > baseline.
CORE = {"table5": None}


def jeong2020_plan(profile: str = "synthetic", dataset: str | None = None,
                   scope: str | None = None) -> dict[str, list[Experiment]]:
    """Every run the jeong2020 chapter needs, grouped by what it feeds: "trunk" (the IDE run
    whose trunk initialises the others in the CPU profiles; empty when they start from
    ImageNet), "table5" (baseline / +AM / +AM+UL per backbone and seed), "table6" (the full
    model with the module after each stage, first seed; layer3 is Table 5's run), "bag_sweep"
    (baseline and full model on SynthReID sets whose carried bag is visible with another
    probability; SynthReID only; the default set's own value, 0.8, is Table 5's first-seed
    run), "eq8_printed" (the full model trained with Eq. 8 exactly as printed, every seed),
    "uniformity" (other weights and margins of Eq. 8, first seed) and "random_init" (the full
    model with the module from PyTorch's random initialisation, first seed; empty where that
    is already the default). In the core scope (`scope`; None: the profile's default) only
    "trunk" and "table5" hold runs (`CORE`)."""
    scope = resolve_scope(profile, scope)
    plan = JEONG2020_PLAN[profile]
    first = plan["seeds"][0]
    backbones = ("resnet", "vgg") if plan["vgg"] else ("resnet",)
    table5 = [jeong2020_experiment(profile, v, b, seed=s, dataset=dataset)
              for b in backbones for v in JEONG2020_VARIANTS for s in plan["seeds"]]
    table6 = [jeong2020_experiment(profile, "full", stage=st, seed=first,
                                   dataset=dataset) for st in plan["stages"]]
    default_p = _default_bag_visible()
    sweep = [e for (v, p), e in jeong2020_bag_runs(profile, dataset).items() if p != default_p]
    # Eq. 8 as printed (distances swapped), to test the sign against the text's form
    printed = [eq8_printed_experiment(profile, s, dataset) for s in plan["seeds"]]
    unif = [e for key, e in jeong2020_uniformity_runs(profile, dataset).items()
            if key != (1.0, UNIF_MARGIN)]
    full = jeong2020_experiment(profile, "full", seed=first, dataset=dataset)
    random_init = ([full.replace(name="jeong2020_full_randinit",
                                 model_kwargs={"module_init": "default"})]
                   if plan["random_init"] and full.model_kwargs["module_init"] != "default"
                   else [])
    groups = {"table5": table5, "table6": table6, "bag_sweep": sweep, "eq8_printed": printed,
              "uniformity": unif, "random_init": random_init}
    return with_trunk(keep_in_scope(groups, scope, CORE), profile, dataset, "jeong2020_plan")


def eq8_printed_experiment(profile: str = "synthetic", seed: int = 0,
                           dataset: str | None = None) -> Experiment:
    """The full model trained with Eq. 8 exactly as printed (the two distances swapped)."""
    return jeong2020_experiment(profile, "full", seed=seed, dataset=dataset,
                                objective_kwargs={"unif_form": "printed"},
                                name="jeong2020_full_printed_eq8")


#: Table 1 of the paper, row by row as printed ("Size" as height x width, or the layer), keyed by
#: the reidnb module that implements the row (`complexity.output_shapes` reads these names).
#: Where the printed table is odd, the entry says so: the input is printed "128 x 256" (width
#: first, unlike every other row and Sec. 4.2's 256 x 128), and the spatial attention row
#: lists "1 x 1, 2048" though a score map has one channel.
TABLE1 = {
    "backbone.stem": "64 x 32", "backbone.layer1": "64 x 32", "backbone.layer2": "32 x 16",
    "backbone.layer3": "16 x 8", "attention.channel": "1 x 1 (fc 1024-64-1024)",
    "attention.encoder_decoder.encoder.0": "encoder 3x3, 256",
    "attention.encoder_decoder.encoder.2": "encoder 3x3, 256",
    "attention.encoder_decoder.encoder.4": "encoder 2x2, 256",
    "attention.encoder_decoder.decoder.0": "decoder 2x2, 256",
    "attention.encoder_decoder.decoder.2": "decoder 3x3, 256",
    "attention.encoder_decoder.decoder.4": "decoder 3x3, 1",
    "attention.encoder_decoder": "16 x 8 (mask)", "attention": "16 x 8 (Multiple2)",
    "backbone.layer4": "8 x 4", "score": "1 x 1, printed '1 x 1, 2048' (one channel here)",
    "embed": "linear block, 512", "classifier": "fc, identities (751 on Market-1501)",
}


def score_ratio_values(runs: dict[str, list[Experiment]], runs_dir, num_classes: int,
                       images, pids, camids) -> "pd.DataFrame":
    """Per run, the mean L1 distance between the attention scores of one person in two cameras,
    of two people, and their ratio (`models.jeong2020.score_distances` on the given normalised
    query images): one row per (label, seed) with a complete run, the long form
    `verdicts.compare` reads."""
    import pandas as pd

    from ..experiments import load_trained, run_dir_for
    from ..io import read_json
    from ..models.jeong2020 import score_distances

    rows = []
    for label, exps in runs.items():
        for exp in exps:
            path = run_dir_for(exp, runs_dir) / "record.json"
            if not path.exists() or read_json(path).get("status") != "complete":
                continue
            d = score_distances(load_trained(exp, runs_dir, num_classes), images, pids, camids)
            rows.append({"label": label, "seed": exp.train.seed, "same person": d["same person"],
                         "different people": d["different people"], "score ratio": d["ratio"]})
    return pd.DataFrame(rows, columns=["label", "seed", "same person", "different people",
                                       "score ratio"])


def _variant(variant: str, backbone: str = "resnet"):
    factory = functools.partial(jeong2020_experiment, variant=variant, backbone=backbone)

    def make(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
             ) -> Experiment:
        return factory(profile, seed=seed, dataset=dataset)
    make.__name__ = "jeong2020" + ("_vgg" if backbone == "vgg" else "") + f"_{variant}"
    make.__doc__ = f"jeong2020_experiment(variant={variant!r}, backbone={backbone!r})"
    return make


EXPERIMENTS = {f.__name__: f for f in (_variant(v, b) for b in ("resnet", "vgg")
                                       for v in JEONG2020_VARIANTS)}
CLAIM_LINKS = {
    "jeong2020_baseline": [("jeong2020", "5", "ResNet-50 baseline")],
    "jeong2020_am": [("jeong2020", "5", "ResNet-50 +AM")],
    "jeong2020_full": [("jeong2020", "5", "ResNet-50 +AM+UL"),
                       ("jeong2020", "6", "ResNet-50 +AM@layer3+UL")],
    "jeong2020_vgg_baseline": [("jeong2020", "5", "VGG16 baseline")],
    "jeong2020_vgg_am": [("jeong2020", "5", "VGG16 +AM")],
    "jeong2020_vgg_full": [("jeong2020", "5", "VGG16 +AM+UL")],
    **{f"jeong2020_full_layer{i}": [("jeong2020", "6", f"ResNet-50 +AM@layer{i}+UL")]
       for i in (1, 2, 4)},
}
plan = jeong2020_plan
