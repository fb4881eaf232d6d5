"""zheng2019: the consistent attentive Siamese network, CASN (Zheng, Karanam, Wu and Radke, CVPR
2019): its experiments per profile (Table 3's ablation on the IDE and PCB heads, the controls the
paper did not run, the detector-misalignment sweep), the chapter's plan of runs, its claim links,
and the paper's fused test distance (Sec. 4). Chapter 7; the model is reidnb/models/zheng2019.py.

Every row is trained with the variants' recipe (Sec. 4), the baselines too: the paper's IDE and
PCB rows look quoted from other work (the issue's "Baselines"), so here a baseline is the same
model, batches and schedule with the attention losses switched off. A run records the feature
ranking (Euclidean distance between the f vectors, `Experiment.eval`); the fused distance of
Sec. 4 (feature and aligned-profile distances, each min-max normalised per query, summed) is
computed afterwards on the trained run (`evaluate_fused`, kept in the run's folder).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from ..claims import claim
from ..data.transforms import normalize
from ..experiments import (LEVELS, SYNTH_SIZE, Experiment, check_profile, keep_in_scope,
                           misaligned, resolve_scope)
from ..models.zheng2019 import (CAM_GRADS, DIFFS, HEADS, IA_SCORES, SA_NORMS, SA_SIGNS,
                                check_choice)
from ..train.engine import TrainConfig
from .ide import ide_experiment, trunk_source, with_trunk

PAPER = "zheng2019"
CHAPTER = "07_zheng2019_casn"

#: Each variant: which losses of Eq. 6 it trains with. "ia": L_ia (weight lambda1); "bce": the
#: pair head's L_bce (weight lambda2); "sa": the consistency term (weight lambda2 x alpha);
#: "crop": the aligned profile's cut (Sec. 3.2.2). Every variant has L_ide (weight 1).
ZHENG2019_VARIANTS: dict[str, dict] = {
    # Table 3 "IDE"/"PCB": the same model and batches, identity loss only
    "ide": {"ia": False, "bce": False, "sa": False, "crop": True},
    # Table 3 "+IA": identification attention (Sec. 3.1.2, Eq. 2)
    "ia": {"ia": True, "bce": False, "sa": False, "crop": True},
    # control, not in the paper (Fig. 7(a)'s BCE-only model, which has no row): the pair head's
    # verification loss without the consistency term
    "bce": {"ia": False, "bce": True, "sa": False, "crop": True},
    # Table 3 "+SA": L_sa = L_bce + alpha ||M*_1 - M*_2|| (Sec. 3.2, Eq. 5)
    "sa": {"ia": False, "bce": True, "sa": True, "crop": True},
    # control, not in the paper: +SA with the profiles compared uncut (crop=False)
    "sa_nocrop": {"ia": False, "bce": True, "sa": True, "crop": False},
    # Table 3 "+IA+SA" = CASN (Tables 1-2): Eq. 6 whole
    "casn": {"ia": True, "bce": True, "sa": True, "crop": True},
}
TABLE3_VARIANTS = ("ide", "ia", "sa", "casn")
CONTROL_VARIANTS = ("bce", "sa_nocrop")
MISALIGNMENT_VARIANTS = ("ide", "bce", "sa", "sa_nocrop", "casn")

#: Sec. 4's weights: L = L_ide + lambda1 L_ia + lambda2 (L_bce + alpha ||M*_1 - M*_2||) (Eq. 6),
#: so the consistency term weighs lambda2 x alpha = 0.01 against L_ide.
LAMBDA1, LAMBDA2, ALPHA = 0.5, 0.05, 0.2
CONSISTENCY_WEIGHT = round(LAMBDA2 * ALPHA, 12)
#: Sec. 4's optimisation: SGD, momentum 0.9, lr 0.03, 40 epochs, x0.1 at 30; weight decay not
#: given (the usual 5e-4); flip the only augmentation (none is given).
PAPER_LR, PAPER_EPOCHS, PAPER_LR_STEPS = 0.03, 40, (30,)
MOMENTUM, WEIGHT_DECAY = 0.9, 5e-4
AUGMENT = {"flip_p": 0.5, "pad": 0, "erasing_p": 0.0}
#: "Batch size 16" read as 16 pairs, half positive: P anchors each with a positive (another
#: camera when there is one) and a negative, 3P images.
P, SMOKE_P = 8, 4
#: Image sizes (height, width) per head and profile: the paper's 288 x 144 (IDE) and 384 x 128
#: (PCB); 256 x 128 on the gpu profile; 128 x 64 on the CPU profiles, the PCB rows too (see
#: `PCB_PARTS`).
INPUT_SIZES = {
    "ide": {"paper": (288, 144), "gpu": (256, 128), "synthetic": (128, 64), "smoke": (128, 64)},
    "pcb": {"paper": (384, 128), "gpu": (256, 128), "synthetic": (128, 64), "smoke": (128, 64)},
}
#: PCB's stripes per profile. With last stride 1 conv5 has height/16 rows: 24 at 384 (PCB's 6
#: stripes of 4 rows), 16 at 256 (4 stripes of 4 rows, PCB's stripe height) and 8 at 128 (4
#: stripes of 2 rows). The CPU profiles keep 128 x 64 rather than 192 x 64 (12 rows, 6 stripes):
#: SynthReID is rendered at 128 x 64, a taller image would be another rendering (another data
#: set) and cost 1.5x, so PCB and IDE rows would differ in more than their head.
PCB_PARTS = {"paper": 6, "gpu": 4, "synthetic": 4, "smoke": 4}
#: conv5's stride per head and profile. Sec. 4 does not say. The IDE baseline is ResNet-50 as
#: it comes (last stride 2: 288 x 144 gives conv5 9 x 5), PCB removes the last down-sampling
#: ([34]: 384 x 128 gives 24 x 8); the CPU profiles use 1 on both heads, since 128 x 64 at
#: stride 2 leaves 4 rows, too few for the profile cut.
LAST_STRIDE = {"ide": {"paper": 2, "gpu": 2, "synthetic": 1, "smoke": 1},
               "pcb": {"paper": 1, "gpu": 1, "synthetic": 1, "smoke": 1}}
#: CPU profiles: epochs of `CPU_ANCHORS` anchors (P = 8: 24 steps of 24 images an epoch, 72 in
#: all, as many as a jamal2020 synthetic run's steps of 48 images at last stride 2, and about
#: as costly), one lr for every layer, no step; smoke: `SMOKE_ANCHORS` anchors (P = 4).
CPU_EPOCHS, CPU_ANCHORS, CPU_LR = 3, 192, 0.03
SMOKE_EPOCHS, SMOKE_ANCHORS = 2, 16
#: gpu profile (jamal2020's sizing): epochs of `GPU_ANCHORS` anchors on the large SynthReID, a
#: 2-epoch warm-up, x0.1 at 14.
GPU_EPOCHS, GPU_ANCHORS, GPU_LR_STEPS, GPU_WARMUP = 20, 5000, (14,), 2
#: Defaults of the readings (`models.zheng2019`): the profile threshold t, the IA mask's alpha
#: and beta (GAIN's).
T, ALPHA_MASK, BETA = 0.3, 10.0, 0.5


def _readings(variant: str, ia_score, cam_grad, sa_norm, sa_sign, diff, t, alpha_mask, beta
              ) -> list[tuple[str, str]]:
    """(option, name suffix) of each non-default reading; ValueError for one the variant does
    not train with (it would change the name and nothing else)."""
    v = ZHENG2019_VARIANTS[variant]
    checks = [
        ("ia_score", ia_score != "prob", v["ia"], f"_ia-{ia_score}"),
        ("cam_grad", cam_grad != "full", v["ia"], f"_cam-{cam_grad}"),
        ("alpha_mask", alpha_mask != ALPHA_MASK, v["ia"], f"_amask{alpha_mask:g}"),
        ("beta", beta != BETA, v["ia"], f"_beta{beta:g}"),
        ("diff", diff != "signed", v["bce"], f"_diff-{diff}"),
        ("sa_norm", sa_norm != "plain", v["sa"], f"_norm-{sa_norm}"),
        ("sa_sign", sa_sign != "shared", v["sa"], f"_sign-{sa_sign}"),
        ("t", t != T, v["sa"] and v["crop"], f"_t{t:g}"),
    ]
    out = []
    for option, changed, used, suffix in checks:
        if changed and not used:
            raise ValueError(f"zheng2019_experiment: {option} changes nothing in variant "
                             f"{variant!r} (it does not train with the term that reads it); "
                             "leave it at its default")
        if changed:
            out.append((option, suffix))
    return out


def zheng2019_experiment(profile: str = "synthetic", variant: str = "casn", seed: int = 0,
                         dataset: str | None = None, head: str = "ide", trunk: str | None = None,
                         ia_score: str = "prob", cam_grad: str = "full", sa_norm: str = "plain",
                         sa_sign: str = "shared", diff: str = "signed", t: float = T,
                         alpha_mask: float = ALPHA_MASK, beta: float = BETA,
                         parts: int | None = None, **overrides) -> Experiment:
    """One run of the zheng2019 chapter (`ZHENG2019_VARIANTS`): "ide" (the baseline: identity
    loss only), "ia" (+IA), "sa" (+SA), "casn" (+IA+SA), and the controls "bce" (the pair head's
    verification loss without the consistency term) and "sa_nocrop" (+SA without the cut).
    `head` "ide" (name "zheng2019_<variant>") or "pcb" (PCB's stripes, "zheng2019_pcb_<variant>";
    `parts` stripes, default `PCB_PARTS[profile]`, another appends "_parts<n>").

    The readings of `models.zheng2019` that change what is trained, each appending to the name
    when not at its default: `ia_score` ("prob" | "logit", "_ia-logit"), `cam_grad` ("full" |
    "detached", "_cam-detached"), `alpha_mask`/`beta` of the IA mask ("_amask<a>", "_beta<b>"),
    `diff` of the pair head ("signed" | "abs" | "square", "_diff-abs"), `sa_norm` of Eq. 5
    ("plain" | "squared", "_norm-squared"), `sa_sign` ("shared" | "own", "_sign-own") and the
    profile threshold `t` ("_t<t>"). A reading the variant does not train with is refused.
    `trunk`: "imagenet" (the paper) or "ide" (the profile's IDE run, chapter 1: the CPU profiles'
    stand-in for ImageNet, their default). `overrides` go to `Experiment.replace`.

    Every profile: `SiameseObjective` without the uniformity term, L = L_ide + lambda1 L_ia +
    lambda2 (L_bce + alpha ||M*_1 - M*_2||) (Eq. 6) with lambda1 = 0.5, lambda2 = 0.05, alpha =
    0.2, a term the variant drops weighted 0 (L_bce, logged) or left out (L_ia and the
    consistency term: neither computed nor logged); batches of P = 8 anchors, each with a
    positive (another camera when there is one) and a negative: 16 pairs 1:1 ("batch size 16");
    no label smoothing; SGD (plain momentum 0.9, weight decay 5e-4), flip; last stride 1; the
    IDE classifier 512 wide, the pair head 512 wide; evaluation by Euclidean distance between
    the f vectors, without flip averaging (the fused distance: `evaluate_fused`).

    paper: ResNet-50 from ImageNet, 288 x 144 (IDE, last stride 2: conv5 2048 x 9 x 5) or
      384 x 128 (PCB, last stride 1: 24 x 8, 6 stripes; `LAST_STRIDE`), Market-1501, an epoch one anchor per training image, 40 epochs, lr 0.03
      x0.1 at 30 (Sec. 4; PCB trained with the same recipe, not PCB's own).
    gpu: ResNet-50 at 256 x 128 (IDE 8 x 4; PCB 16 x 8, 4 stripes of 4 rows) on the large SynthReID, 20
      epochs of 5,000 anchors (about 300k images, as the IDE and jamal2020 gpu runs), lr 0.03
      after a 2-epoch warm-up, x0.1 at 14.
    synthetic: ResNet-18 at 128 x 64 with last stride 1 (conv5 512 x 8 x 4; stride 2 leaves 4
      rows, too few to crop; PCB 4 stripes of 2 rows, see `PCB_PARTS`), the trunk from chapter
      1's IDE run, the default SynthReID, `CPU_EPOCHS` epochs of `CPU_ANCHORS` anchors (24
      steps of 24 images an epoch), lr 0.03 for every layer (the paper's), no step. With the
      new layers at 10x (0.3) the identity loss of the IDE row rose from 5.3 to 8.5 within 10
      steps and was near 4 after 48; with one rate it fell to about 2.7 (acc 0.5) in 48 steps.
      A step of +IA or CASN costs about 2x the IDE row's (a second forward of the masked
      images and the double backward through Grad-CAM); +SA and IDE+BCE about 1.05-1.1x; a
      PCB row about as much as its IDE row. At these lengths the identity classifier is still
      learning, so L_ia (the masked image's own-class probability) is small for much of the
      run: +IA has less to act on than in the paper's 40 epochs.
    smoke: the tiny SynthReID, P = 4, `SMOKE_EPOCHS` epochs of `SMOKE_ANCHORS` anchors.
    """
    check_profile(profile)
    check_choice("zheng2019_experiment", "variant", variant, tuple(ZHENG2019_VARIANTS))
    check_choice("zheng2019_experiment", "head", head, HEADS)
    check_choice("zheng2019_experiment", "ia_score", ia_score, IA_SCORES)
    check_choice("zheng2019_experiment", "cam_grad", cam_grad, CAM_GRADS)
    check_choice("zheng2019_experiment", "sa_norm", sa_norm, SA_NORMS)
    check_choice("zheng2019_experiment", "sa_sign", sa_sign, SA_SIGNS)
    check_choice("zheng2019_experiment", "diff", diff, DIFFS)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"zheng2019_experiment: t={t}; the threshold is a fraction of the "
                         "profile's maximum, in [0, 1)")
    paper, gpu, smoke = profile == "paper", profile == "gpu", profile == "smoke"
    arch = "resnet50" if paper or gpu else "resnet18"
    trunk = trunk or ("ide" if profile in ("smoke", "synthetic") else "imagenet")
    trunk_from = trunk_source(profile, dataset, trunk, arch)
    v = ZHENG2019_VARIANTS[variant]
    height, width = INPUT_SIZES[head][profile]
    name = f"zheng2019_{'pcb_' if head == 'pcb' else ''}{variant}"
    name += "".join(s for _, s in _readings(variant, ia_score, cam_grad, sa_norm, sa_sign, diff,
                                             t, alpha_mask, beta))
    model = {"backbone": arch, "pretrained": False if trunk_from else "auto",
             "last_stride": LAST_STRIDE[head][profile], "head": head, "hidden": 512, "bce_hidden": 512, "diff": diff, "dropout": 0.0}
    if head == "pcb":
        parts = PCB_PARTS[profile] if parts is None else parts
        rows = height // 16
        if not isinstance(parts, int) or parts < 1 or rows % parts:
            raise ValueError(f"zheng2019_experiment: parts={parts!r} does not divide the "
                             f"{rows} conv5 rows of a {height}-pixel image (last stride 1)")
        model.update(parts=parts, part_dim=256)
        name += f"_parts{parts}" if parts != PCB_PARTS[profile] else ""
    elif parts is not None:
        raise ValueError("zheng2019_experiment: parts is PCB's option; give head='pcb'")
    terms = []
    if v["ia"]:
        terms.append({"term": "casn_ia", "weight": LAMBDA1, "name": "ia", "alpha": alpha_mask,
                      "beta": beta, "score": ia_score, "cam_grad": cam_grad})
    if v["sa"]:
        terms.append({"term": "casn_sa", "weight": CONSISTENCY_WEIGHT, "name": "consist",
                      "t": t, "norm": sa_norm, "crop": v["crop"], "sign": sa_sign})
    exp = Experiment(
        name=name, paper=PAPER, profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"), height=height, width=width,
        model="zheng2019", trunk_from=trunk_from, model_kwargs=model,
        objective="siamese",
        objective_kwargs={"num_identities": SMOKE_P if smoke else P,
                          "anchors_per_epoch": (None if paper else GPU_ANCHORS if gpu
                                                else SMOKE_ANCHORS if smoke else CPU_ANCHORS),
                          "uniformity": False, "id_weight": 1.0,
                          "ver_weight": LAMBDA2 if v["bce"] else 0.0,
                          "label_smoothing": 0.0, "extra_terms": terms},
        augment=dict(AUGMENT),
        train=TrainConfig(
            epochs=(PAPER_EPOCHS if paper else GPU_EPOCHS if gpu
                    else SMOKE_EPOCHS if smoke else CPU_EPOCHS),
            optimizer="sgd", lr=PAPER_LR if paper or gpu else CPU_LR, momentum=MOMENTUM,
            nesterov=False, weight_decay=WEIGHT_DECAY,
            lr_steps=PAPER_LR_STEPS if paper else GPU_LR_STEPS if gpu else (),
            warmup_epochs=GPU_WARMUP if gpu else 0, channels_last=gpu, seed=seed),
        eval={"flip": False, "metric": "euclidean", "which": "feat"})
    return exp.replace(**overrides) if overrides else exp


def misaligned_run(exp: Experiment, level: float) -> Experiment:
    """`exp` trained and tested at misalignment `level` (`misalignment.misaligned`: the data set
    changes, nothing else), named "<name>_mis<level>" so it never stands in for the run on the
    standard SynthReID (the claims page keeps one configuration per name)."""
    return misaligned(exp, level).replace(name=f"{exp.name}_mis{level:g}")


#: Seeds per profile. Table 3's IDE rows and the BCE control run every seed (the verdict rule,
#: `reidnb.verdicts`, needs 3: IA, SA > IDE; CASN > both; SA > BCE); the no-crop control, the
#: PCB rows on the CPU profiles and the misalignment sweep the first seed only: hints, said so.
ZHENG2019_PLAN = {
    "smoke": {"seeds": (0,)},
    "synthetic": {"seeds": (0, 1, 2)},
    "gpu": {"seeds": (0, 1, 2)},
    "paper": {"seeds": (0, 1, 2)},
}


#: The core scope's runs (`experiments.keep_in_scope`): IDE and CASN on the IDE head on every
#: seed, Table 3's headline comparison (+IA and +SA alone, the controls, the PCB head and the
#: misalignment sweep are in the full scope).
CORE = {"ide": None, "table3": ("zheng2019_ide", "zheng2019_casn")}


def zheng2019_plan(profile: str = "synthetic", dataset: str | None = None,
                   scope: str | None = None) -> dict[str, list[Experiment]]:
    """Every run the zheng2019 chapter makes, grouped by what it feeds:

    - "trunk": the IDE run whose trunk initialises the others on the CPU profiles (empty when
      they start from ImageNet); "ide": chapter 2's IDE run, first seed (on the CPU profiles the
      same run, read from the cache).
    - "table3": IDE, +IA, +SA and CASN on the IDE head, every seed (smoke: IDE and CASN only).
    - "controls": IDE+BCE every seed (SA > BCE is judged), +SA without the crop on the first
      seed (a hint); none on smoke.
    - "pcb": the same four rows on the PCB head, first seed on the CPU profiles (hints), every
      seed on gpu and paper; none on smoke.
    - "misalignment": IDE, IDE+BCE, +SA with and without the crop and CASN trained and tested at
      each level of `misalignment.LEVELS` (`misaligned_run`), first seed; none on smoke, on the
      paper profile, or off SynthReID.

    The misalignment runs start from the IDE trunk of the standard SynthReID (the stand-in for
    ImageNet), as the other runs do.

    Cost (synthetic, fresh, 2 idle cores, from measured step times: IDE row 0.8 s a step,
    IDE+BCE and +SA 0.9-1.0 s, +IA and CASN 2.0 s, PCB rows alike, 72 steps; plus about 45 s
    to evaluate each run): table3 about 30 min, controls 8, pcb 10, misalignment 42; about
    90 min in all, far over the chapter's 8-minute share of the book: the synthetic profile's
    default scope is therefore the core (`scope`; None: the profile's default), in which only
    "trunk", "ide" and Table 3's IDE and CASN rows hold runs (`CORE`); `scope="full"` runs the
    rest.
    """
    scope = resolve_scope(profile, scope)
    seeds = ZHENG2019_PLAN[profile]["seeds"]
    first, smoke = seeds[0], profile == "smoke"
    cpu = profile in ("smoke", "synthetic")

    def run(variant: str, seed: int, head: str = "ide") -> Experiment:
        return zheng2019_experiment(profile, variant, seed=seed, dataset=dataset, head=head)

    table3 = ("ide", "casn") if smoke else TABLE3_VARIANTS
    sweep = (not smoke and profile != "paper" and (dataset or "synthreid") == "synthreid")
    groups = {
        "ide": [ide_experiment(profile, dataset)],
        "table3": [run(v, s) for v in table3 for s in seeds],
        "controls": ([] if smoke else
                     [run("bce", s) for s in seeds] + [run("sa_nocrop", first)]),
        "pcb": ([] if smoke else
                [run(v, s, "pcb") for v in TABLE3_VARIANTS for s in ((first,) if cpu
                                                                      else seeds)]),
        "misalignment": ([misaligned_run(run(v, first), level)
                          for v in MISALIGNMENT_VARIANTS for level in LEVELS] if sweep else []),
    }
    return with_trunk(keep_in_scope(groups, scope, CORE), profile, dataset, "zheng2019_plan")


def _variant(variant: str, head: str = "ide"):
    def make(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
             ) -> Experiment:
        return zheng2019_experiment(profile, variant, seed=seed, dataset=dataset, head=head)
    make.__name__ = f"zheng2019_{'pcb_' if head == 'pcb' else ''}{variant}"
    make.__doc__ = f"zheng2019_experiment(variant={variant!r}, head={head!r})"
    return make


EXPERIMENTS = {f.__name__: f for f in (_variant(v, h) for h in HEADS
                                       for v in ZHENG2019_VARIANTS)}
#: The ledger's method of each Table 3 row by (head, variant); the controls have none.
LEDGER_METHODS = {
    ("ide", "ide"): "IDE baseline", ("ide", "ia"): "IDE +IA", ("ide", "sa"): "IDE +SA",
    ("ide", "casn"): "IDE +IA+SA",
    ("pcb", "ide"): "PCB baseline", ("pcb", "ia"): "PCB +IA", ("pcb", "sa"): "PCB +SA",
    ("pcb", "casn"): "PCB +IA+SA",
}
#: Table 3's rows, and CASN's rows of Tables 1-2 (Sec. 4.1's DenseNet row is not run; the
#: quoted rows are other work's; the controls have no row).
CLAIM_LINKS = {
    f"zheng2019_{'pcb_' if head == 'pcb' else ''}{variant}":
        ([(PAPER, "1", method), (PAPER, "2", method)] if variant == "casn" else [])
        + [(PAPER, "3", method)]
    for (head, variant), method in LEDGER_METHODS.items()
}
plan = zheng2019_plan


# --- the chapter's Table 3 grid -----------------------------------------------------------------

#: Table 3's rows as the chapter labels them: label -> (head, variant); the ledger's method is
#: `LEDGER_METHODS[(head, variant)]` (None for a control).
TABLE3_ROWS = {
    "IDE": ("ide", "ide"), "IDE +IA": ("ide", "ia"), "IDE +SA": ("ide", "sa"),
    "IDE +IA+SA (CASN)": ("ide", "casn"),
    "IDE +BCE (control)": ("ide", "bce"), "IDE +SA, no crop (control)": ("ide", "sa_nocrop"),
    "PCB": ("pcb", "ide"), "PCB +IA": ("pcb", "ia"), "PCB +SA": ("pcb", "sa"),
    "PCB +IA+SA (CASN)": ("pcb", "casn"),
}
#: Table 3's data sets, in its column order.
TABLE3_DATASETS = ("cuhk03_detected", "dukemtmcreid", "market1501")


def table3_groups(groups: dict[str, list[Experiment]]) -> dict[str, list[Experiment]]:
    """The runs of a plan (`zheng2019_plan`'s "table3", "controls" and "pcb") by Table 3 label
    (`TABLE3_ROWS`), every seed; a label without runs in the plan is left out. Feed it to
    `results.seed_values`."""
    runs = [e for g in ("table3", "controls", "pcb") for e in groups.get(g, [])]
    out = {}
    for label, (head, variant) in TABLE3_ROWS.items():
        name = f"zheng2019_{'pcb_' if head == 'pcb' else ''}{variant}"
        mine = [e for e in runs if e.name == name]
        if mine:
            out[label] = mine
    return out


def _claim_or_none(*key) -> float | None:
    try:
        return claim(*key)
    except KeyError:
        return None


def table3_grid(values: pd.DataFrame, metrics=("rank1", "mAP")) -> pd.DataFrame:
    """Table 3 as a grid: one row per label of `values` (`results.seed_values` of
    `table3_groups`, one row per run), in `TABLE3_ROWS` order, with this build's mean, spread
    (sample sd; None with one seed) and seed count per metric on SynthReID, beside the ledger's
    value of each Table 3 data set (None for a control)."""
    rows = []
    for label, key in TABLE3_ROWS.items():
        mine = values[values["label"] == label]
        if mine.empty:
            continue
        row = {"label": label, "seeds": int(mine["seed"].nunique())}
        for m in metrics:
            v = mine[m].dropna()
            row[f"SynthReID {m}"] = float(v.mean()) if len(v) else None
            row[f"± {m}"] = float(v.std(ddof=1)) if len(v) > 1 else None
        method = LEDGER_METHODS.get(key)
        for data in TABLE3_DATASETS:
            for m in metrics:
                row[f"{data} {m} (paper)"] = (None if method is None else
                                              _claim_or_none(PAPER, "3", data, "single_query",
                                                             method, m))
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def table3_split(grid: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`table3_grid` as two tables that each fit a page: this build's columns (seeds, mean and
    spread per metric), and the paper's with (data set, metric) columns, same rows."""
    printed = [c for c in grid.columns if c.endswith(" (paper)")]
    paper = grid[printed].copy()
    paper.columns = pd.MultiIndex.from_tuples(
        [tuple(c.removesuffix(" (paper)").rsplit(" ", 1)) for c in printed],
        names=["data set", "metric"])
    return grid.drop(columns=printed), paper


# --- the fused test distance (Sec. 4) ----------------------------------------------------------

#: How many of each query's nearest gallery images (by feature distance) `evaluate_fused`
#: re-scores on each profile. Every pair needs its own alpha and Siamese maps (Sec. 4: all of
#: Market-1501's 3,368 x 15,913 pairs). The default SynthReID's test set is 800 queries x 2,893
#: gallery images, about 12 per identity, so a trained model's true matches sit in the first 50.
#: Measured on 2 cores (IDE head, ResNet-18): embedding the test set about 40 s; re-scoring the
#: top 50 about 0.004 s a query (3.5 s in all), every pair about 0.34 s a query (4.5 min, 7x the
#: embedding). None: all pairs, as the paper (the paper profile, on a GPU).
FUSED_TOP_K = {"smoke": 20, "synthetic": 50, "gpu": 100, "paper": None}
FUSED_FILE = "fused.json"
#: The queries' conv5 maps are kept in memory, the gallery's too while both fit in this many
#: bytes; beyond it a gallery chunk's maps are recomputed when its pairs are scored (one more
#: forward of those images).
MAX_FMAP_BYTES = 2 * 1024 ** 3


class FusedDistances(NamedTuple):
    """`casn_distances`' result, each (Q, G) numpy float64 except `rescored` (bool):
    fused: the ranking distance; feature: Euclidean distance between the f vectors;
    attention: the aligned-profile L2 distance (NaN where not re-scored); rescored: which pairs
    were; seconds: {"embed", "rescore"} wall time."""

    fused: np.ndarray
    feature: np.ndarray
    attention: np.ndarray
    rescored: np.ndarray
    seconds: dict


def minmax_rows(d: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`d` (Q, G) scaled per row so the entries under `mask` span [0, 1] (a row whose masked
    entries are all equal: 0 there); entries outside the mask follow the same affine map."""
    lo = np.where(mask, d, np.inf).min(axis=1, keepdims=True)
    hi = np.where(mask, d, -np.inf).max(axis=1, keepdims=True)
    span = hi - lo
    span = np.where(np.isfinite(span) & (span > 0), span, 1.0)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    return (d - lo) / span


def _images(data) -> torch.Tensor:
    return data.images if hasattr(data, "images") else data


def _embed(model, images: torch.Tensor, device, batch_size: int, keep_maps: bool):
    """(f (N, D), conv5 maps (N, K, h, w) or None) of uint8 (normalised here) or float images."""
    feats, maps = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device)
            x = normalize(x) if x.dtype == torch.uint8 else x
            out = model(x)
            feats.append(out.feat.float())
            if keep_maps:
                maps.append(out.extras["fmap"].float())
    return torch.cat(feats), (torch.cat(maps) if keep_maps else None)


def _pair_maps(model, fm1: torch.Tensor, fm2: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor):
    """The Siamese Grad-CAM maps (M1, M2) of pairs whose conv5 maps are fm1, fm2 (P, K, h, w):
    closed form for the IDE head, autograd through `forward_head` otherwise (eval mode, so each
    row is its own)."""
    from ..models.zheng2019 import grad_cam_from, pooled_siamese_maps

    if model.head == "ide":
        return pooled_siamese_maps(fm1, fm2, a1, a2)
    out = []
    for fm, a in ((fm1, a1), (fm2, a2)):
        leaf = fm.detach().requires_grad_(True)
        with torch.enable_grad():
            f = model.forward_head(leaf)[0]
            out.append(grad_cam_from((a * f).sum(dim=1), leaf, create_graph=False).detach())
    return out[0], out[1]


def casn_distances(model, query_images, gallery_images, w_att: float = 1.0,
                   top_k: int | None = None, t: float = T, crop: bool = True,
                   sign: str = "shared", batch_size: int = 64, pair_batch: int = 4096,
                   device: str | torch.device = "cpu", max_fmap_bytes: int = MAX_FMAP_BYTES
                   ) -> FusedDistances:
    """The paper's test distance (Sec. 4) of a trained `CASN` between query and gallery images
    (`ImageCache`s or (N, 3, H, W) tensors: uint8 normalised here, float as given), eval mode:

    - feature: the Euclidean distance between the f vectors (the run's own ranking);
    - attention: for each pair (query first), alpha = 1[dz_same/df^- > 0] from
      `model.same_gradient` (Eq. 4; `sign="own"` gives the gallery image 1[-dz/df^- > 0]), the
      two Siamese Grad-CAM maps (closed form `pooled_siamese_maps` for the IDE head, autograd
      for PCB), their vertical profiles aligned (`aligned_profile`, threshold `t`, `crop`) and
      the L2 distance between them;
    - fused: both min-max normalised per query over the re-scored gallery items, summed with
      weight `w_att` on the attention term.

    `top_k`: only each query's top_k gallery items by feature distance are re-scored; the rest
    keep their normalised feature distance + w_att + 1, so they stay behind in feature order.
    None (or >= G): every pair, as the paper. With w_att = 0 the ranking is the feature
    ranking. Pairs go through in batches of `pair_batch`."""
    from ..models.zheng2019 import CASN, aligned_profile, pair_indicator, vertical_profile
    from ..train.engine import compute_distmat

    if not isinstance(model, CASN):
        raise ValueError(f"casn_distances needs a CASN model (models.zheng2019), not "
                         f"{type(model).__name__}")
    check_choice("casn_distances", "sign", sign, SA_SIGNS)
    if w_att < 0:
        raise ValueError(f"casn_distances: w_att={w_att}; the attention weight must be >= 0")
    if top_k is not None and top_k < 1:
        raise ValueError(f"casn_distances: top_k={top_k}; give a positive number or None")
    device = torch.device(device)
    model.eval().to(device)
    qi, gi = _images(query_images), _images(gallery_images)
    t0 = time.perf_counter()
    fq, mq = _embed(model, qi, device, batch_size, True)
    keep = (len(qi) + len(gi)) * mq[0].numel() * mq.element_size() <= max_fmap_bytes
    fg, mg = _embed(model, gi, device, batch_size, keep)
    feature = compute_distmat(fq, fg, "euclidean").double().cpu().numpy()
    t_embed = time.perf_counter() - t0

    nq, ng = feature.shape
    k = ng if top_k is None else min(top_k, ng)
    order = np.argsort(feature, axis=1, kind="stable")[:, :k]
    rescored = np.zeros_like(feature, dtype=bool)
    np.put_along_axis(rescored, order, True, axis=1)
    attention = np.full_like(feature, np.nan)
    chunk = max(1, batch_size)
    with torch.no_grad():
        for g0 in range(0, ng, chunk):
            cols = np.flatnonzero(rescored[:, g0:g0 + chunk].any(axis=0)) + g0
            if not len(cols):
                continue
            if mg is not None:
                gmaps = mg[cols]
            else:
                gmaps = _embed(model, gi[torch.as_tensor(cols)], device, batch_size, True)[1]
            q_idx, local = np.nonzero(rescored[:, cols])
            g_idx = cols[local]
            for p0 in range(0, len(q_idx), pair_batch):
                qs = torch.as_tensor(q_idx[p0:p0 + pair_batch], device=device)
                gs = g_idx[p0:p0 + pair_batch]
                gl = torch.as_tensor(local[p0:p0 + pair_batch], device=device)
                grad = model.same_gradient(fq[qs], fg[torch.as_tensor(gs, device=device)])
                a1 = pair_indicator(grad)
                a2 = pair_indicator(-grad) if sign == "own" else a1
                m1, m2 = _pair_maps(model, mq[qs], gmaps[gl], a1, a2)
                p1 = aligned_profile(vertical_profile(m1), t, crop)[0]
                p2 = aligned_profile(vertical_profile(m2), t, crop)[0]
                attention[q_idx[p0:p0 + pair_batch], gs] = (
                    (p1 - p2).double().norm(dim=1).cpu().numpy())
    nf = minmax_rows(feature, rescored)
    na = minmax_rows(np.nan_to_num(attention, nan=0.0), rescored)
    fused = np.where(rescored, nf + w_att * na, nf + w_att + 1.0)
    seconds = {"embed": t_embed, "rescore": time.perf_counter() - t0 - t_embed}
    return FusedDistances(fused, feature, attention, rescored, seconds)


def _sa_reading(exp: Experiment) -> dict:
    """The consistency term's t, crop and sign of `exp` (the defaults when it has none): what
    the fused distance of that run reads."""
    for term in exp.objective_kwargs.get("extra_terms", ()):
        if term.get("term") == "casn_sa":
            return {"t": term.get("t", T), "crop": term.get("crop", True),
                    "sign": term.get("sign", "shared")}
    return {"t": T, "crop": True, "sign": "shared"}


def _fused_key(top_k: int | None, w_att: float, reading: dict) -> str:
    return (f"top_k={'all' if top_k is None else top_k},w_att={w_att:g},t={reading['t']:g},"
            f"crop={reading['crop']},sign={reading['sign']}")


def _ranks(distmat: np.ndarray, query, gallery) -> dict[str, float]:
    from ..metrics import evaluate_rank

    cmc, m_ap = evaluate_rank(distmat, query.pids, gallery.pids, query.camids, gallery.camids,
                              max_rank=min(20, len(gallery)))
    out = {f"rank{r}": 100.0 * float(cmc[r - 1]) for r in (1, 5) if r <= len(cmc)}
    out["mAP"] = 100.0 * m_ap
    return out


def evaluate_fused(exp: Experiment, data_root: str | Path = "data",
                   runs_dir: str | Path = "runs", top_k: int | None | str = "profile",
                   w_att: float = 1.0, device: str = "cpu") -> dict:
    """A trained run's test set ranked by the feature distance and by the fused distance
    (`casn_distances` with the run's own t, crop and sign; `top_k` "profile" =
    `FUSED_TOP_K[exp.profile]`): {"feature": {rank1, rank5, mAP}, "fused": {...},
    "seconds_per_query" (embedding and re-scoring, this machine), "rescore_seconds_per_query",
    "queries", "gallery", "top_k", "w_att"}. Kept in the run's folder (`FUSED_FILE`) under the
    settings and read back; a run not trained yet is an error naming it. "feature" equals the
    run record's metrics. For the "ide" and "ia" variants the pair head was never trained (its
    weight is 0 or it is absent from the loss), so their alpha is a random head's."""
    from ..experiments import load_data, load_trained, trained_run_results
    from ..io import atomic_write_json

    if top_k == "profile":
        top_k = FUSED_TOP_K[exp.profile]
    reading = _sa_reading(exp)
    store, saved = trained_run_results(exp, runs_dir, FUSED_FILE, "evaluate_fused reads")
    key = _fused_key(top_k, w_att, reading)
    if key not in saved:
        ds, caches = load_data(exp, data_root)
        model = load_trained(exp, runs_dir, ds.num_train_pids).eval()
        q, g = caches["query"], caches["gallery"]
        d = casn_distances(model, q, g, w_att=w_att, top_k=top_k, device=device, **reading)
        total = d.seconds["embed"] + d.seconds["rescore"]
        saved[key] = {"feature": _ranks(d.feature, q, g), "fused": _ranks(d.fused, q, g),
                      "seconds_per_query": total / len(q),
                      "rescore_seconds_per_query": d.seconds["rescore"] / len(q),
                      "queries": len(q), "gallery": len(g), "top_k": top_k, "w_att": w_att}
        atomic_write_json(store, saved)
    return saved[key]


def fused_values(groups: dict[str, list[Experiment]], data_root: str | Path = "data",
                 runs_dir: str | Path = "runs", top_k: int | None | str = "profile",
                 w_att: float = 1.0, device: str = "cpu") -> pd.DataFrame:
    """`evaluate_fused` of every run of `groups` (label -> runs), one row per (label, seed,
    ranking) with ranking "feature" or "fused": rank1, rank5, mAP, and seconds per query (the
    fused rows), the long form `reidnb.verdicts` judges (fused > features)."""
    rows = []
    for label, exps in groups.items():
        for exp in exps:
            r = evaluate_fused(exp, data_root, runs_dir, top_k, w_att, device)
            for ranking in ("feature", "fused"):
                rows.append({"label": label, "seed": exp.train.seed, "ranking": ranking,
                             **r[ranking], "seconds_per_query": (r["seconds_per_query"]
                                                                 if ranking == "fused" else None)})
    return pd.DataFrame(rows, columns=["label", "seed", "ranking", "rank1", "rank5", "mAP",
                                       "seconds_per_query"])


# --- what chapter 7 shows on top of the runs ----------------------------------------------------

class _TinyNet(torch.nn.Module):
    """A float64 stand-in small enough for finite differences: conv 3->3 (3x3, stride 2) + tanh
    = A, f = GAP(A), logits = tanh(f W1^T) W2^T; the Grad-CAM weights depend on A, so L_ia's
    double backward is not trivial."""

    def __init__(self, conv, fc1, fc2):
        super().__init__()
        self.conv, self.fc1, self.fc2 = conv, fc1, fc2

    def forward(self, x, pairs=None):
        from ..models.heads import ReIDOutput

        fmap = torch.tanh(torch.nn.functional.conv2d(x, self.conv, stride=2, padding=1))
        f = fmap.mean(dim=(2, 3))
        return ReIDOutput(torch.tanh(f @ self.fc1.T) @ self.fc2.T, f, f, {"fmap": fmap})


def _gradient_error(fn, inputs: list[torch.Tensor], eps: float = 1e-6) -> float:
    """Largest |analytic - central finite difference| over every entry of `inputs` of the
    scalar fn(*inputs) (float64)."""
    (value,) = [fn(*inputs)]
    analytic = torch.autograd.grad(value, inputs)
    worst = 0.0
    with torch.no_grad():
        for x, grad in zip(inputs, analytic):
            flat, gflat = x.view(-1), grad.reshape(-1)
            for i in range(flat.numel()):
                keep = flat[i].item()
                flat[i] = keep + eps
                with torch.enable_grad():
                    up = fn(*inputs).item()
                flat[i] = keep - eps
                with torch.enable_grad():
                    down = fn(*inputs).item()
                flat[i] = keep
                worst = max(worst, abs((up - down) / (2 * eps) - gflat[i].item()))
    return worst


def gradient_checks(seed: int = 0, tolerance: float = 1e-5) -> pd.DataFrame:
    """Chapter 7's check that the attention inside the losses is Grad-CAM and that the losses'
    gradients are right, one row per check: the largest absolute difference, the tolerance,
    whether the two sides should agree and whether they do.

    On a random ResNet-18 CASN at 128 x 64 (eval mode, so BatchNorm does not mix images;
    float32, so these differences are relative to the reference's largest value): the
    in-loss Grad-CAM of the true class (`grad_cam_from` on the forward's own conv5) against
    `reidnb.cam.grad_cam` (a hook on the trunk and its own forward); the Siamese maps
    (`siamese_maps`) against the same reference with the score <alpha, f> and against the
    closed form `pooled_siamese_maps`; the pair head's gradient `same_gradient` against autograd.
    On a float64 tiny network (`_TinyNet`), analytic against finite-difference gradients of
    L_ia (Eq. 2) with the gradient through the Grad-CAM weights (must agree) and without it
    (must not: detaching them is that option's point), and of Eq. 5 through the Siamese maps."""
    from ..cam import feature_score_fn, grad_cam
    from ..models.heads import ReIDOutput
    from ..models.zheng2019 import (CASN, aligned_profile, consistency, grad_cam_from,
                                    identification_attention, pair_indicator,
                                    pooled_siamese_maps, siamese_maps, vertical_profile)

    rows = []

    def row(check: str, diff, should: bool = True):
        diff = float(torch.as_tensor(diff).detach())
        rows.append({"check": check, "largest difference": diff, "tolerance": tolerance,
                     "should agree": should, "agrees": diff <= tolerance})

    def relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """max |a - b| over max |b|: float32 maps are compared on their own scale."""
        return (a - b).abs().max() / b.abs().max().clamp_min(1e-12)

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = CASN(5, backbone="resnet18", pretrained=False, last_stride=1).eval()
    x = torch.randn(4, 3, 128, 64, generator=gen)
    pids = torch.tensor([0, 1, 2, 3])
    i1, i2 = torch.tensor([0, 1]), torch.tensor([2, 3])
    with torch.enable_grad():
        out = net(x, pairs=(i1, i2))
        true = out.logits.gather(1, pids[:, None]).squeeze(1)
        in_loss = grad_cam_from(true, out.extras["fmap"], create_graph=False).detach()
        reference = grad_cam(net, x, "backbone", target=pids)
        row("IA map: in the loss vs hooked Grad-CAM (true class), relative",
            relative(in_loss, reference))
        d = out.extras["pair_diff"]
        (auto,) = torch.autograd.grad(out.extras["pair_logits"][:, 1].sum(), d,
                                      retain_graph=True)
        closed = net.same_gradient(out.feat[i1], out.feat[i2])
        row("Eq. 4: dz_same/df^- closed form vs autograd, relative", relative(closed, auto))
        alpha = pair_indicator(closed)
        m1, m2 = siamese_maps(out, i1, i2, alpha, create_graph=False)
        r1 = grad_cam(net, x[i1], "backbone", use_logits=False, score_fn=feature_score_fn(alpha))
        r2 = grad_cam(net, x[i2], "backbone", use_logits=False, score_fn=feature_score_fn(alpha))
        row("SA maps: in the loss vs hooked Grad-CAM of <alpha, f>, relative",
            max(relative(m1.detach(), r1), relative(m2.detach(), r2)))
        p1, p2 = pooled_siamese_maps(out.extras["fmap"][i1], out.extras["fmap"][i2], alpha)
        row("SA maps: in the loss vs closed form ReLU(sum alpha_k A^k)/hw, relative",
            max(relative(m1.detach(), p1.detach()), relative(m2.detach(), p2.detach())))

    g64 = torch.Generator().manual_seed(seed)
    tiny = [torch.randn(*s, generator=g64, dtype=torch.float64).requires_grad_()
            for s in ((2, 3, 8, 4), (3, 3, 3, 3), (5, 3), (4, 5))]
    tiny_pids = torch.tensor([1, 3])

    def l_ia(cam_grad):
        def fn(images, conv, fc1, fc2):
            model = _TinyNet(conv, fc1, fc2)
            return identification_attention(model, model(images), images, tiny_pids,
                                            cam_grad=cam_grad)[0]
        return fn

    with torch.enable_grad():
        row("L_ia (Eq. 2), gradient through the Grad-CAM weights: analytic vs finite "
            "differences", _gradient_error(l_ia("full"), tiny))
        row("L_ia, Grad-CAM weights detached: analytic vs finite differences",
            _gradient_error(l_ia("detached"), tiny), should=False)
        fmap = torch.rand(4, 3, 6, 2, generator=g64, dtype=torch.float64).requires_grad_()
        proj = torch.randn(5, 3, generator=g64, dtype=torch.float64).requires_grad_()
        a = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.float64)

        def eq5(fmap, proj):
            f = torch.tanh(fmap.mean(dim=(2, 3)) @ proj.T)
            s1, s2 = siamese_maps(ReIDOutput(None, f, f, {"fmap": fmap}), i1, i2, a)
            return consistency(aligned_profile(vertical_profile(s1))[0],
                               aligned_profile(vertical_profile(s2))[0]).mean()

        row("Eq. 5 through the Siamese maps and the cut: analytic vs finite differences",
            _gradient_error(eq5, [fmap, proj]))
    return pd.DataFrame(rows).set_index("check")


def pair_view(model, image1: torch.Tensor, image2: torch.Tensor, t: float = T,
              crop: bool = True) -> dict:
    """Everything Sec. 3.2.2 computes for one pair of uint8 images (3, H, W) with a `CASN` in eval
    mode: the two Siamese maps (h, w), their vertical profiles over their maxima, the kept rows
    and the aligned profiles, alpha's share of ones, p(same), and the feature and profile
    distances (uncut and cut: the attention distance of the fused test ranking)."""
    from ..models.zheng2019 import aligned_profile, pair_indicator, vertical_profile

    model.eval()
    x = normalize(torch.stack([image1, image2]))
    with torch.no_grad():
        out = model(x)
        f1, f2 = out.feat[:1], out.feat[1:]
        grad = model.same_gradient(f1, f2)
        alpha = pair_indicator(grad)
        p_same = torch.softmax(model.pair_logits(f1, f2), 1)[0, 1]
    m1, m2 = _pair_maps(model, out.extras["fmap"][:1], out.extras["fmap"][1:], alpha, alpha)
    prof = [vertical_profile(m) for m in (m1, m2)]
    plain = [aligned_profile(p, t, crop=False)[0][0] for p in prof]
    cut = [aligned_profile(p, t, crop=crop) for p in prof]
    return {"maps": (m1[0].detach(), m2[0].detach()), "profiles": tuple(plain),
            "kept": tuple((int(c[1][0]), int(c[2][0])) for c in cut),
            "aligned": tuple(c[0][0] for c in cut),
            "alpha_share": float(alpha.mean()), "p_same": float(p_same),
            "feature_distance": float((f1 - f2).norm()),
            "profile_distance_uncut": float((plain[0] - plain[1]).norm()),
            "profile_distance": float((cut[0][0][0] - cut[1][0][0]).norm())}


CONSISTENCY_FILE = "profile_consistency.json"


def positive_pair_distances(groups: dict[str, list[Experiment]], data_root: str | Path = "data",
                            runs_dir: str | Path = "runs", device: str = "cpu") -> pd.DataFrame:
    """Figs. 5 and 7, measured: for every run of `groups` (label -> runs of a variant with a
    trained pair head), the aligned-profile L2 distance between each query and its nearest true
    match from another camera, and between each query and its nearest image of another person
    (by the run's own feature distance), averaged over the queries that have both. One row per
    run (label, seed, the two means, queries); kept in the run's folder (`CONSISTENCY_FILE`)."""
    from ..experiments import load_data, load_trained, trained_run_results
    from ..io import atomic_write_json
    from ..metrics import nearest_partners
    from ..models.zheng2019 import aligned_profile, pair_indicator, vertical_profile
    from ..train.engine import compute_distmat

    rows = []
    for label, exps in groups.items():
        for exp in exps:
            store, saved = trained_run_results(exp, runs_dir, CONSISTENCY_FILE,
                                               "positive_pair_distances reads")
            reading = _sa_reading(exp)
            key = f"t={reading['t']:g},crop={reading['crop']},sign={reading['sign']}"
            if key not in saved:
                ds, caches = load_data(exp, data_root)
                model = load_trained(exp, runs_dir, ds.num_train_pids).eval().to(device)
                q, g = caches["query"], caches["gallery"]
                fq, mq = _embed(model, q.images, torch.device(device), 64, True)
                fg, mg = _embed(model, g.images, torch.device(device), 64, True)
                pos, neg = nearest_partners(compute_distmat(fq, fg).cpu().numpy(), q.pids,
                                            q.camids, g.pids, g.camids)
                both = np.flatnonzero((pos >= 0) & (neg >= 0))
                means = {}
                for kind, partner in (("positive pairs", pos), ("hard negatives", neg)):
                    qi = torch.as_tensor(both)
                    gi = torch.as_tensor(partner[both])
                    with torch.no_grad():
                        grad = model.same_gradient(fq[qi], fg[gi])
                    a1 = pair_indicator(grad)
                    a2 = pair_indicator(-grad) if reading["sign"] == "own" else a1
                    m1, m2 = _pair_maps(model, mq[qi], mg[gi], a1, a2)
                    p1 = aligned_profile(vertical_profile(m1), reading["t"], reading["crop"])[0]
                    p2 = aligned_profile(vertical_profile(m2), reading["t"], reading["crop"])[0]
                    means[f"profile L2, {kind}"] = float((p1 - p2).double().norm(dim=1).mean())
                saved[key] = {**means, "queries": int(len(both))}
                atomic_write_json(store, saved)
            rows.append({"label": label, "seed": exp.train.seed, **saved[key]})
    return pd.DataFrame(rows, columns=["label", "seed", "profile L2, positive pairs",
                                       "profile L2, hard negatives", "queries"])


def first_true_rank(distmat: np.ndarray, q_pids, q_camids, g_pids, g_camids) -> np.ndarray:
    """Per query, the 1-based rank of its first true match in the Market-1501 protocol (gallery
    images of the same person and camera, and junk, pid -1, left out); 0 where it has none."""
    qp, qc = np.asarray(q_pids).reshape(-1, 1), np.asarray(q_camids).reshape(-1, 1)
    gp, gc = np.asarray(g_pids).reshape(1, -1), np.asarray(g_camids).reshape(1, -1)
    order = np.argsort(distmat, axis=1, kind="stable")
    valid = np.take_along_axis(~(((gp == qp) & (gc == qc)) | (gp == -1)), order, axis=1)
    match = np.take_along_axis(gp == qp, order, axis=1) & valid
    ranks = np.cumsum(valid, axis=1)
    hit = match.any(axis=1)
    first = np.where(hit, ranks[np.arange(len(order)), match.argmax(axis=1)], 0)
    return first.astype(int)


def true_match_ranks(exp: Experiment, data_root: str | Path = "data",
                     runs_dir: str | Path = "runs", device: str = "cpu",
                     top_k: int | None | str = "profile") -> pd.DataFrame:
    """Fig. 8(b), measured: per query of a trained run's test set (queries with a true match),
    the rank of its first true match by the feature distance and by the fused distance
    (`casn_distances` with the run's reading and `FUSED_TOP_K`)."""
    from ..experiments import load_data, load_trained

    if top_k == "profile":
        top_k = FUSED_TOP_K[exp.profile]
    ds, caches = load_data(exp, data_root)
    model = load_trained(exp, runs_dir, ds.num_train_pids).eval()
    q, g = caches["query"], caches["gallery"]
    d = casn_distances(model, q, g, top_k=top_k, device=device, **_sa_reading(exp))
    ranks = {name: first_true_rank(m, q.pids.numpy(), q.camids.numpy(), g.pids.numpy(),
                                   g.camids.numpy())
             for name, m in (("feature", d.feature), ("fused", d.fused))}
    frame = pd.DataFrame(ranks).rename_axis("query")
    return frame[frame["feature"] > 0]


def step_costs(exps: dict[str, Experiment], data_root: str | Path = "data",
               device: str = "cpu", steps: int = 3) -> pd.DataFrame:
    """Seconds per training step of each experiment (label -> experiment), on one of its own
    batches, random weights: one untimed step, then the median of `steps`; and each as a
    multiple of the first row's. The loss terms, the double backward of L_ia and the optimizer
    step included; the data set's images decoded beforehand."""
    from ..data.transforms import BatchAugment
    from ..experiments import OBJECTIVES, build_for, load_data
    from ..train.engine import build_optimizer

    dev = torch.device(device)
    rows = {}
    for label, exp in exps.items():
        ds, caches = load_data(exp, data_root)
        torch.manual_seed(exp.train.seed)
        model = build_for(exp, ds.num_train_pids).to(dev).train()
        objective = OBJECTIVES[exp.objective](caches["train"], augment=BatchAugment(**exp.augment),
                                              **exp.objective_kwargs)
        batch = objective.epoch_batches(np.random.default_rng(exp.train.seed))[0]
        opt = build_optimizer(model, exp.train)
        gen = torch.Generator().manual_seed(exp.train.seed)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            result = objective.step(model, batch, gen, dev)
            opt.zero_grad(set_to_none=True)
            result["loss"].backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        rows[label] = {"images a step": int(np.asarray(batch).size),
                       "seconds a step": float(np.median(times))}
    frame = pd.DataFrame(rows).T.astype({"images a step": int, "seconds a step": float})
    frame["x the first row"] = frame["seconds a step"] / frame["seconds a step"].iloc[0]
    return frame.round(3)


def casn_margins(metrics=("rank1", "mAP")) -> pd.DataFrame:
    """Table 3 as printed (the claims ledger): CASN's margin over the better of its two single
    modules, per head, data set and metric (Sec. 4.2 reads each as "both modules help more")."""
    rows = []
    for head in HEADS:
        for data in TABLE3_DATASETS:
            for m in metrics:
                value = {v: claim(PAPER, "3", data, "single_query", LEDGER_METHODS[(head, v)], m)
                         for v in ("ia", "sa", "casn")}
                rows.append({"head": head.upper(), "data set": data, "metric": m,
                             "+IA": value["ia"], "+SA": value["sa"], "CASN": value["casn"],
                             "CASN - better single": round(value["casn"]
                                                           - max(value["ia"], value["sa"]), 2)})
    return pd.DataFrame(rows).set_index(["head", "data set", "metric"])


# --- detector misalignment (issue 17, item 6): the sweep's runs, and the crop's recovery ------

#: The sweep's rows, by variant, with the labels of Table 3's grid.
MISALIGNMENT_LABELS = {variant: label for label, (head, variant) in TABLE3_ROWS.items()
                       if head == "ide" and variant in MISALIGNMENT_VARIANTS}
#: Vertical shifts of the crop check, as fractions of the image height (the sweep's levels,
#: both ways).
CROP_SHIFTS = (-0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2)
#: How many positive pairs the crop check (`moved_partners`, `crop_recovery`) draws again and
#: measures, per profile: each pair is rendered once per shift and scored once per shift and
#: model (the smoke profile's check took 113 s of its 193 s with all its pairs).
CROP_PAIRS = {"smoke": 24, "synthetic": 200, "gpu": 200, "paper": 200}
#: Timed training steps per row of `step_costs` (after one untimed step), per profile.
STEP_COST_STEPS = {"smoke": 1, "synthetic": 3, "gpu": 3, "paper": 3}


def misalignment_values(runs: list[Experiment], runs_dir: str | Path = "runs",
                        metrics=("rank1", "mAP")) -> pd.DataFrame:
    """One row per complete run of the plan's "misalignment" group (`misaligned_run`): label
    (`MISALIGNMENT_LABELS`), level, seed and the metrics, from the run records. A run not made
    is left out; an empty frame (with the columns) when none is."""
    from ..experiments import run_dir_for
    from ..io import read_json

    rows = []
    for exp in runs:
        base, sep, level = exp.name.rpartition("_mis")
        variant = base.removeprefix("zheng2019_")
        if not sep or variant not in MISALIGNMENT_LABELS:
            raise ValueError(f"misalignment_values: {exp.name!r} is not a run of the sweep "
                             "(expected zheng2019_<variant>_mis<level>)")
        path = run_dir_for(exp, runs_dir) / "record.json"
        rec = read_json(path) if path.exists() else {}
        if rec.get("status") == "complete":
            rows.append({"label": MISALIGNMENT_LABELS[variant], "level": float(level),
                         "seed": exp.train.seed,
                         **{m: rec["metrics"]["single_query"][m] for m in metrics}})
    return pd.DataFrame(rows, columns=["label", "level", "seed", *metrics])


def shift_down(images: torch.Tensor, dy: int) -> torch.Tensor:
    """(B, C, H, W) images moved `dy` pixels down (up if negative), the uncovered rows filled
    with the edge row: the box slid up or down over the person."""
    h = images.shape[-2]
    if abs(dy) >= h:
        raise ValueError(f"shift_down: a shift of {dy} pixels leaves nothing of a {h}-pixel "
                         "high image")
    return images[..., torch.clamp(torch.arange(h) - dy, 0, h - 1), :]


def moved_partners(exp: Experiment, images: torch.Tensor, paths: list[str],
                   shifts: tuple[float, ...] = CROP_SHIFTS, data_root: str | Path = "data"
                   ) -> dict[float, torch.Tensor]:
    """Shift -> the images (uint8 (N, 3, H, W), files `paths` of `exp`'s data) with the person
    moved down by shift x H pixels: on SynthReID drawn again with the detector box slid
    (`data.synth_truth.moved_boxes`: nothing else changes); on another data set the pixels
    moved, the uncovered rows repeating the edge (`shift_down`), which a real box error does not
    do. Shift 0 is the images as loaded."""
    if exp.dataset == "synthreid":
        from ..data.synth_truth import moved_boxes
        from ..experiments import dataset_root

        root = dataset_root(exp, data_root)
        h, w = images.shape[-2:]
        return {s: images.clone() if s == 0 else moved_boxes(root, paths, s, h, w)
                for s in shifts}
    return {s: shift_down(images, int(round(s * images.shape[-2]))) for s in shifts}


def crop_recovery(model, images1: torch.Tensor, moved: dict[float, torch.Tensor], t: float = T,
                  sign: str = "shared", batch_size: int = 64) -> pd.DataFrame:
    """Fig. 5(c)'s argument, measured: cutting each profile from its first to its last row above
    `t` undoes a vertical misalignment. For positive pairs of a trained `CASN` (eval mode):
    uint8 images1[i] and its partner with the person moved down by s x H pixels, `moved[s][i]`
    (`moved_partners`; s = 0 is the partner as it is). For each s the pair's maps are recomputed
    (alpha too) and the kept span of the partner's profile is read. One row per shift: the true
    shift and the mean change against s = 0 of the span's start and of its centre, in input
    pixels, over all pairs. Slope 1 of these against the true shift: the cut follows the person;
    0: it stays put (`crop_slopes`). "cut (%)": the share of pairs whose cut dropped any row
    (0: every profile is above `t` everywhere, so the crop keeps the whole height and cannot
    move)."""
    from ..models.zheng2019 import aligned_profile, pair_indicator, vertical_profile

    if 0.0 not in moved or len(moved) < 2:
        raise ValueError(f"crop_recovery needs the shift 0 and another, got {sorted(moved)}")
    if len(images1) == 0 or any(len(m) != len(images1) for m in moved.values()):
        raise ValueError(f"crop_recovery: give as many moved partners as first images (at least "
                         f"one), got {len(images1)} and {[len(m) for m in moved.values()]}")
    model.eval()
    dev = next(model.parameters()).device
    h = images1.shape[-2]
    f1, m1 = _embed(model, images1, dev, batch_size, True)
    spans = {}
    for s in sorted(moved):
        f2, m2 = _embed(model, moved[s], dev, batch_size, True)
        with torch.no_grad():
            grad = model.same_gradient(f1, f2)
        a1 = pair_indicator(grad)
        a2 = pair_indicator(-grad) if sign == "own" else a1
        _, maps2 = _pair_maps(model, m1, m2, a1, a2)
        _, start, end = aligned_profile(vertical_profile(maps2), t, crop=True)
        cell = h / maps2.shape[1]
        cut = (start > 0) | (end < maps2.shape[1] - 1)
        spans[int(round(s * h))] = (start.double() * cell, (start + end + 1).double() / 2 * cell,
                                    cut)
    s0, c0, _ = spans[0]
    return pd.DataFrame([{"true shift (px)": px,
                          "start moved (px)": float((st - s0).mean()),
                          "centre moved (px)": float((ce - c0).mean()),
                          "cut (%)": 100.0 * float(cut.double().mean()),
                          "pairs": len(images1)} for px, (st, ce, cut) in spans.items()]
                        ).set_index("true shift (px)")


def crop_slopes(recovery: pd.DataFrame) -> dict[str, float]:
    """Least-squares slopes of `crop_recovery`'s moved start and centre against the true shift
    (1: the cut recovers the shift one for one)."""
    x = recovery.index.to_numpy(dtype=float)
    return {col: float(np.polyfit(x, recovery[col].to_numpy(dtype=float), 1)[0])
            for col in ("start moved (px)", "centre moved (px)")}


# --- Fig. 4, measured: how much of the identification attention falls on the person ----------

def _maps_at_mask_size(maps: torch.Tensor, masks: torch.Tensor, caller: str) -> torch.Tensor:
    """Maps (B, h, w) upsampled bilinearly to the size of the masks (B, H, W), negatives cut."""
    if maps.dim() != 3 or masks.dim() != 3 or len(maps) != len(masks):
        raise ValueError(f"{caller}: maps (B, h, w) and masks (B, H, W), got "
                         f"{tuple(maps.shape)} and {tuple(masks.shape)}")
    return torch.nn.functional.interpolate(maps[:, None].detach().float(), size=masks.shape[-2:],
                                           mode="bilinear", align_corners=False)[:, 0].clamp_min(0)


def attention_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image, the share of a non-negative map (B, h, w), upsampled bilinearly to the masks'
    size, that falls inside the boolean mask (B, H, W); NaN for an all-zero map."""
    up = _maps_at_mask_size(maps, masks, "attention_in_mask")
    total = up.sum(dim=(1, 2))
    inside = (up * masks.float()).sum(dim=(1, 2))
    return torch.where(total > 0, inside / total.clamp_min(1e-12),
                       torch.full_like(total, float("nan")))


def person_covered(maps: torch.Tensor, masks: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """Per image, the share of the person's pixels (boolean masks (B, H, W)) where the map
    (B, h, w), upsampled bilinearly and divided by its maximum, exceeds `beta` (Eq. 2's soft
    mask is centred there: what IA would erase); NaN for an all-zero map or an empty mask."""
    up = _maps_at_mask_size(maps, masks, "person_covered")
    top = up.amax(dim=(1, 2))
    hot = up > beta * top[:, None, None]
    area = masks.sum(dim=(1, 2)).float()
    covered = (hot & masks).sum(dim=(1, 2)).float()
    return torch.where((top > 0) & (area > 0), covered / area.clamp_min(1),
                       torch.full_like(area, float("nan")))


def person_attention_shares(groups: dict[str, list[Experiment]], data_root: str | Path = "data",
                            runs_dir: str | Path = "runs", device: str = "cpu",
                            n_images: int = 200) -> pd.DataFrame:
    """Fig. 4, measured: for every run of `groups` (label -> runs), the share of its
    identification attention (Eq. 2's Grad-CAM M of the true class) that falls on the person,
    by SynthReID's person masks (`data.synth_truth`), averaged over the first training image of
    each of the first `n_images` identities (classes the network knows). One row per run:
    label, seed, the share (%), the person's share of the image area (%, what a map spread
    evenly would score), the share of the person's pixels the map covers above Eq. 2's beta
    (`person_covered`: Fig. 4's "the whole body" rather than one part) and the images counted
    (those with a non-empty map)."""
    from ..data.synth_truth import person_masks
    from ..experiments import dataset_root, load_data, load_trained
    from ..models.zheng2019 import identification_attention

    rows = []
    for label, exps in groups.items():
        for exp in exps:
            if exp.dataset != "synthreid":
                raise ValueError(f"person_attention_shares: {exp.name} is on {exp.dataset}; "
                                 "person masks exist for SynthReID only")
            ds, caches = load_data(exp, data_root)
            train = caches["train"]
            pick = np.unique(train.pids.numpy(), return_index=True)[1][:n_images]
            masks = person_masks(dataset_root(exp, data_root),
                                 [train.paths[int(i)] for i in pick],
                                 height=exp.height, width=exp.width)
            model = load_trained(exp, runs_dir, ds.num_train_pids).eval().to(device)
            shares, covered = [], []
            for s in range(0, len(pick), 50):
                idx = torch.as_tensor(pick[s:s + 50])
                x = normalize(train.images[idx]).to(device)
                with torch.enable_grad():
                    _, parts = identification_attention(model, model(x), x,
                                                        train.pids[idx].to(device))
                shares.append(attention_in_mask(parts["maps"].cpu(), masks[s:s + 50]))
                covered.append(person_covered(parts["maps"].cpu(), masks[s:s + 50]))
            share, cover = torch.cat(shares), torch.cat(covered)
            ok = share.isfinite() & cover.isfinite()
            rows.append({"label": label, "seed": exp.train.seed,
                         "attention on the person (%)": 100.0 * float(share[ok].mean()),
                         "person's share of the image (%)": 100.0 * float(masks.float().mean()),
                         "person covered (%)": 100.0 * float(cover[ok].mean()),
                         "images": int(ok.sum())})
    return pd.DataFrame(rows, columns=["label", "seed", "attention on the person (%)",
                                       "person's share of the image (%)", "person covered (%)",
                                       "images"])
