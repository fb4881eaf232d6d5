"""jamal2020: the deep mutual-attention Siamese network (Jamal, Zhengang and Ming 2020): its
experiments per profile (Tables 1-3 and the ablations the paper did not run), the chapter's plan
of runs, and its claim links. Chapter 6; the model is reidnb/models/jamal2020.py.

Below the plan, what chapter 6 computes on the trained runs: Table 1's protocols (single query,
multi-query pooled with the same-camera gallery images, k-reciprocal re-ranking) under each test
mode (`evaluate_protocols`, kept in each run's folder), Table 1 as a grid and Tables 2-3's
runnable rows beside the ledger, the block's maps and statistics for a pair, and the cost of each
test mode.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from ..claims import claim
from ..data.transforms import normalize
from ..experiments import SYNTH_SIZE, Experiment, check_profile, keep_in_scope, resolve_scope
from ..models.jamal2020 import ATT_ACTS, FDS, SA_CHANNELS, TEST_MODES, check_choice
from ..train.engine import TrainConfig
from .ide import ide_experiment, trunk_source, with_trunk
from .li2019 import MISALIGNMENT_IDS as LI2019_MISALIGNMENT_IDS

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


#: The core scope's runs (`experiments.keep_in_scope`): the IDE row and the Siamese network
#: without and with mutual attention on every seed, the paper's headline comparison.
CORE = {"ide": None, "compared": ("jamal2020_baseline", "jamal2020_full")}


def jamal2020_plan(profile: str = "synthetic", dataset: str | None = None,
                   scope: str | None = None) -> dict[str, list[Experiment]]:
    """Every run the jamal2020 chapter makes, grouped by what it feeds: "trunk" (the IDE run
    whose trunk initialises the others in the CPU profiles; empty when they start from
    ImageNet), "ide" (the IDE row of Tables 2-3, first seed: in the CPU profiles the same run
    as "trunk", read from the cache), "compared" (Siamese without mutual attention, the full
    model and the self-paired control, every seed) and "ablation" (the block at layer3 only, at
    layer4 only, its spatial part only, its channel part only; first seed). In the core scope
    (`scope`; None: the profile's default) the self-paired control and the ablations are left
    out (`CORE`)."""
    scope = resolve_scope(profile, scope)
    seeds = JAMAL2020_PLAN[profile]["seeds"]
    groups = {
        "ide": [ide_experiment(profile, dataset)],
        "compared": [jamal2020_experiment(profile, v, seed=s, dataset=dataset)
                     for v in COMPARED_VARIANTS for s in seeds],
        "ablation": [jamal2020_experiment(profile, v, seed=seeds[0], dataset=dataset)
                     for v in ABLATION_VARIANTS],
    }
    return with_trunk(keep_in_scope(groups, scope, CORE), profile, dataset, "jamal2020_plan")


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


# --- what the chapter evaluates on trained runs ------------------------------------------------

#: The misalignment sweep's test identities per profile: chapter 5's, so the book has one sweep.
MISALIGNMENT_IDS = LI2019_MISALIGNMENT_IDS
#: Table 1's protocols as run here. "multi_query_mean"/"multi_query_max": Market-1501's
#: multi-query (the paper's "multi-shoot", method unsaid) on SynthReID, whose query folder holds
#: one image per (person, camera): each query pooled with its person's gallery images from the
#: same camera (`metrics.same_camera_gallery`), mean (default) or max. "rerank": k-reciprocal
#: re-ranking of the single-query distances with Zhong et al.'s k1, k2, lambda (`RERANK`; the
#: paper names no method or values).
PROTOCOLS = ("single_query", "multi_query_mean", "multi_query_max", "rerank")
PROTOCOL_LABELS = {"single_query": "SQ", "multi_query_mean": "MQ (mean)",
                   "multi_query_max": "MQ (max)", "rerank": "RR"}
#: The ledger's protocol for each of ours (both multi-query poolings stand for "multi_query").
LEDGER_PROTOCOL = {"single_query": "single_query", "multi_query_mean": "multi_query",
                   "multi_query_max": "multi_query", "rerank": "rerank"}
RERANK = {"k1": 20, "k2": 6, "lambda_value": 0.3}
#: test_mode "pairwise": how many of each query's nearest gallery images the verification head
#: re-scores.
PAIRWISE_TOP_K = 10
RANKS = ("rank1", "rank5", "rank10", "rank20", "mAP")
PROTOCOLS_FILE = "protocols.json"


class _Normalized:
    """Cached uint8 images, normalised when indexed (what `pairwise_rerank` reads), so a whole
    gallery is never held as floats."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __getitem__(self, index) -> torch.Tensor:
        return normalize(self.images[index])

    def __len__(self) -> int:
        return len(self.images)


def _scores(distmat, q_pids, q_camids, gallery) -> dict[str, float]:
    from ..metrics import evaluate_rank

    cmc, m_ap = evaluate_rank(distmat, q_pids, gallery.pids, q_camids, gallery.camids,
                              max_rank=min(20, len(gallery)))
    out = {f"rank{k}": 100.0 * float(cmc[k - 1]) for k in (1, 5, 10, 20) if k <= len(cmc)}
    out["mAP"] = 100.0 * m_ap
    return out


def protocol_distances(model, query, gallery, eval_kw: dict, device: str = "cpu",
                       test_mode: str = "plain", top_k: int = PAIRWISE_TOP_K) -> dict:
    """Each protocol's (distmat, q_pids, q_camids) for a trained model on a query and gallery
    `ImageCache`, with the run's evaluation settings `eval_kw` (flip, which, metric). A
    `Jamal2020` model embeds as `test_mode` says ("plain" or "self": every protocol of
    `PROTOCOLS`; "pairwise": the plain single-query distances with each query's `top_k` re-scored
    by the verification head, under "single_query" only); any other model embeds as it is."""
    from ..metrics import pool_multi_query, re_ranking, same_camera_gallery
    from ..models.jamal2020 import Jamal2020, pairwise_rerank
    from ..train.engine import compute_distmat, extract_features

    check_choice("protocol_distances", "test_mode", test_mode, TEST_MODES)
    is_jamal = isinstance(model, Jamal2020)
    if test_mode != "plain" and not is_jamal:
        raise ValueError(f"protocol_distances: test_mode={test_mode!r} needs a Jamal2020 model, "
                         f"not {type(model).__name__}")
    flip, which = eval_kw.get("flip", True), eval_kw.get("which", "feat_bn")
    metric = eval_kw.get("metric", "euclidean")
    previous = model.test_mode if is_jamal else None
    if is_jamal:
        model.test_mode = "self" if test_mode == "self" else "plain"
    try:
        qf = extract_features(model, query, device, flip=flip, which=which)
        gf = extract_features(model, gallery, device, flip=flip, which=which)
        dist = compute_distmat(qf, gf, metric)
        qp, qc = query.pids, query.camids
        if test_mode == "pairwise":
            rescored = pairwise_rerank(model, _Normalized(query.images),
                                       _Normalized(gallery.images), dist.cpu().numpy(), top_k)
            return {"single_query": (rescored, qp, qc)}
        out = {"single_query": (dist, qp, qc)}
        extra = torch.as_tensor(same_camera_gallery(qp, qc, gallery.pids, gallery.camids))
        for how in ("mean", "max"):
            pooled, pp, pc = pool_multi_query(torch.cat([qf, gf[extra]]),
                                              torch.cat([qp, gallery.pids[extra]]),
                                              torch.cat([qc, gallery.camids[extra]]), how=how)
            out[f"multi_query_{how}"] = (compute_distmat(pooled, gf, metric),
                                         pp.contiguous(), pc.contiguous())
        out["rerank"] = (re_ranking(dist, compute_distmat(qf, qf, metric),
                                    compute_distmat(gf, gf, metric), **RERANK), qp, qc)
        return out
    finally:
        if is_jamal:
            model.test_mode = previous


def _protocol_key(protocol: str, test_mode: str, top_k: int = PAIRWISE_TOP_K) -> str:
    key = f"{protocol},test_mode={test_mode}"
    if protocol == "rerank":
        key += ",k1={k1},k2={k2},lambda={lambda_value:g}".format(**RERANK)
    if test_mode == "pairwise":
        key += f",top_k={top_k}"
    return key


def evaluate_protocols(groups, data_root="data", runs_dir="runs", device: str = "cpu",
                       test_mode: str = "plain", top_k: int = PAIRWISE_TOP_K) -> pd.DataFrame:
    """One row per (label, seed, protocol): rank-1/5/10/20 and mAP (%) of each trained run of
    `groups` (label -> experiments) under every protocol `protocol_distances` gives for
    `test_mode` (`top_k` re-scored pairs per query with "pairwise"), on the run's own test set
    and evaluation settings. Results are kept in each run's folder (`PROTOCOLS_FILE`) and read
    back; a run not trained yet is an error naming it. With test_mode "plain" the single-query
    row equals the run record's metrics."""
    from ..experiments import load_data, load_trained, trained_run_results
    from ..io import atomic_write_json

    wanted = ("single_query",) if test_mode == "pairwise" else PROTOCOLS
    rows = []
    for label, exps in groups.items():
        for exp in exps:
            store, saved = trained_run_results(exp, runs_dir, PROTOCOLS_FILE,
                                               "evaluate_protocols reads")
            if any(_protocol_key(p, test_mode, top_k) not in saved for p in wanted):
                ds, caches = load_data(exp, data_root)
                model = load_trained(exp, runs_dir, ds.num_train_pids).eval()
                dists = protocol_distances(model, caches["query"], caches["gallery"], exp.eval,
                                           device, test_mode, top_k)
                for p in wanted:
                    saved[_protocol_key(p, test_mode, top_k)] = _scores(*dists[p],
                                                                        caches["gallery"])
                atomic_write_json(store, saved)
            for p in wanted:
                rows.append({"label": label, "seed": exp.train.seed, "protocol": p,
                             **saved[_protocol_key(p, test_mode, top_k)]})
    return pd.DataFrame(rows, columns=["label", "seed", "protocol", *RANKS])


def protocol_grid(values: pd.DataFrame, label: str) -> pd.DataFrame:
    """Table 1 as a grid for the runs of `label` in `values` (`evaluate_protocols`' rows): one
    row per (protocol, metric), this build's mean, spread (sample sd; empty with one seed) and
    seed count, beside the ledger's Market-1501 and DukeMTMC-reID numbers for "+MA" (None where
    the paper prints a dash; both poolings face the paper's one multi-shot column)."""
    mine = values[values["label"] == label]
    rows = []
    for protocol in PROTOCOLS:
        part = mine[mine["protocol"] == protocol]
        for metric in RANKS:
            v = part[metric].dropna()
            ledger = {column: _claim_or_none(PAPER, "1", data, LEDGER_PROTOCOL[protocol],
                                             "+MA", metric)
                      for data, column in (("market1501", "Market-1501 (paper)"),
                                           ("dukemtmcreid", "DukeMTMC-reID (paper)"))}
            rows.append({"protocol": PROTOCOL_LABELS[protocol], "metric": metric,
                         "SynthReID": float(v.mean()) if len(v) else None,
                         "±": float(v.std(ddof=1)) if len(v) > 1 else None,
                         "seeds": len(v), **ledger})
    return pd.DataFrame(rows).set_index(["protocol", "metric"])


#: Tables 2-3's rows one can run: ours -> the ledger's method in Table 3 (Market-1501) and in
#: Table 2 (DukeMTMC-reID). Table 2's "IDE" quotes Zheng et al.'s IDE; Table 3's
#: "ResNet-50-Basel" cites the ResNet paper, which has no re-ID result, and is read as IDE
#: figures too; the paper's own "ResNet-50 Base(line)" has no recipe and is read as the same
#: network without mutual attention.
TABLE23_ROWS = {"IDE": ("ResNet-50-Basel (quoted [27])", "IDE (quoted [31])"),
                "Siamese without MA": ("baseline", "baseline"),
                "ours with MA": ("+MA", "+MA")}


def _claim_or_none(*key) -> float | None:
    try:
        return claim(*key)
    except KeyError:
        return None


def tables23(values: pd.DataFrame) -> pd.DataFrame:
    """Tables 2-3 as the rows one can run (`TABLE23_ROWS`, in that order): this build's mean
    single-query and multi-query (mean pooling) rank-1 and mAP over the seeds of each label in
    `values` (`evaluate_protocols`' rows), beside the ledger's Market-1501 single-query and
    multi-shot columns (Table 3) and DukeMTMC-reID's (Table 2); None where the paper prints a
    dash or the label has no run."""
    rows = []
    for label, (market, duke) in TABLE23_ROWS.items():
        mine = values[values["label"] == label]
        row = {"label": label, "seeds": int(mine["seed"].nunique())}
        for protocol, shown in (("single_query", "SQ"), ("multi_query_mean", "MQ")):
            part = mine[mine["protocol"] == protocol]
            for metric in ("rank1", "mAP"):
                row[f"SynthReID {shown} {metric}"] = (float(part[metric].mean()) if len(part)
                                                      else None)
        for protocol, shown in (("single_query", "SQ"), ("multi_query", "MQ")):
            for metric in ("rank1", "mAP"):
                row[f"Market {shown} {metric} (Table 3)"] = _claim_or_none(
                    PAPER, "3", "market1501", protocol, market, metric)
        for metric in ("rank1", "mAP"):
            row[f"Duke SQ {metric} (Table 2)"] = _claim_or_none(
                PAPER, "2", "dukemtmcreid", "single_query", duke, metric)
        rows.append(row)
    return pd.DataFrame(rows).set_index("label")


def repeated_cells(dataset: str, table: str = "1", method: str = "+MA") -> dict:
    """Cells of one printed column (the ledger's `table`, `dataset`, `method`) whose value is
    printed in another cell of the same column too: (protocol, metric) -> the other cells, e.g.
    Table 1's Market-1501 single-query rank-10 and multi-shot rank-5. A copy slip is one way
    to get there."""
    from ..claims import load_claims

    rows = load_claims()
    rows = rows[(rows.paper == PAPER) & (rows.table.astype(str) == str(table))
                & (rows.dataset == dataset) & (rows.method == method)]
    cells = list(zip(rows.protocol, rows.metric, rows.value))
    return {(p, m): [(p2, m2) for p2, m2, v2 in cells if v2 == v and (p2, m2) != (p, m)]
            for p, m, v in cells if any(v2 == v and (p2, m2) != (p, m) for p2, m2, v2 in cells)}


def cmc_is_monotone(values: pd.DataFrame) -> bool:
    """True when every row of `values` has rank-1 <= rank-5 <= rank-10 <= rank-20 (what any CMC
    must satisfy; Table 1's Market-1501 single-query column does not); a missing rank is
    skipped."""
    for row in values[["rank1", "rank5", "rank10", "rank20"]].to_numpy(dtype=float):
        present = row[~np.isnan(row)]   # a gallery shorter than 20 has no rank-20
        if (np.diff(present) < -1e-9).any():
            return False
    return True


# --- pairs: what the block does to a pair (partners: `metrics.nearest_partners`) ----------------

def _stage_inputs(model, x1: torch.Tensor, x2: torch.Tensor, stage: str):
    """forward_pair(x1, x2) and the map f each branch brings to `stage`'s block (hooked)."""
    seen = {}
    hook = getattr(model.backbone, stage).register_forward_hook(
        lambda _m, _i, out: seen.setdefault("f", out))
    try:
        with torch.no_grad():
            out = model.forward_pair(x1, x2)
    finally:
        hook.remove()
    n = len(x1)   # the shared stage runs once on [x1; x2], a later one on [branch 1; branch 2]
    return out, seen["f"][:n], seen["f"][n:]


def attended_activation(model, x1: torch.Tensor, x2: torch.Tensor, stage: str = "layer4"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The activation map (channel mean of F^2, `cam.activation_map`'s reading, (B, h, w)) of
    the map F = f * MU + f that `stage`'s block hands on in the pair path, for each image of
    x1 paired with the same row of x2: (x1's, x2's). Normalised images; eval mode."""
    if stage not in model.stages:
        raise ValueError(f"attended_activation: no block at {stage!r}; the model has "
                         f"{model.stages}")
    model.eval()
    out, f1, f2 = _stage_inputs(model, x1, x2, stage)
    mu1, mu2 = out.maps[f"{stage}_mu1"], out.maps[f"{stage}_mu2"]
    return (f1 * mu1 + f1).pow(2).mean(dim=1), (f2 * mu2 + f2).pow(2).mean(dim=1)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b (NaN for a constant row)."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    den = (a.norm(dim=1) * b.norm(dim=1))
    return torch.where(den > 0, (a * b).sum(dim=1) / den.clamp_min(1e-300),
                       torch.full_like(den, float("nan")))


def pair_statistics(model, x1: torch.Tensor, x2: torch.Tensor, batch_size: int = 64
                    ) -> pd.DataFrame:
    """What the block does to each pair (x1[i], x2[i]) (normalised images, eval mode), one row
    per pair: "sa corr <stage>", the correlation over the positions of the two
    self-attention maps SA1 and SA2, each averaged over its channels (do the two images attend
    to the same places? NaN when a map is flat, as with parts="channel"); "ma mean <stage>", the
    mean of MA = SA1 SA2; "embedding change", |f1 - z1| / |z1|, how far the partner moves x1's
    attended 512-d embedding f1 from its plain one z1. Pairs go through in batches."""
    model.eval()
    cols: dict[str, list] = {}
    for s in range(0, len(x1), batch_size):
        a, b = x1[s:s + batch_size], x2[s:s + batch_size]
        with torch.no_grad():
            out = model.forward_pair(a, b)
            z1 = model(a).feat
        row = {}
        for stage in model.stages:
            row[f"sa corr {stage}"] = _corr(out.maps[f"{stage}_sa1"].mean(dim=1),
                                            out.maps[f"{stage}_sa2"].mean(dim=1))
            row[f"ma mean {stage}"] = out.maps[f"{stage}_ma1"].flatten(1).double().mean(dim=1)
        row["embedding change"] = (out.feat1 - z1).norm(dim=1) / z1.norm(dim=1).clamp_min(1e-12)
        for k, v in row.items():
            cols.setdefault(k, []).append(v.cpu().numpy())
    return pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})


def pair_maps(model, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The block's maps for the pairs (x1[i], x2[i]), ready for `viz.attention_grid` over the
    images [x1[0], x2[0], x1[1], x2[1], ...]: "<stage> SA", "<stage> MA" and "<stage> MU" of
    branch 1 under x1's and of branch 2 under x2's (MA and MU are one map shared by the pair
    unless partner="self"), each (2B, h, w), a C-wide map
    averaged over its channels (with parts="channel" every map is 1 x 1: flat)."""
    model.eval()
    with torch.no_grad():
        maps = model.forward_pair(x1, x2).maps

    def interleave(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack([a.mean(dim=1), b.mean(dim=1)], dim=1).flatten(0, 1)

    out = {}
    for stage in model.stages:
        for name in ("SA", "MA", "MU"):
            key = name.lower()
            out[f"{stage} {name}"] = interleave(maps[f"{stage}_{key}1"], maps[f"{stage}_{key}2"])
    return out


# --- what each test mode costs ----------------------------------------------------------------

def test_mode_costs(model, input_size: tuple[int, int], top_k: int = PAIRWISE_TOP_K
                    ) -> pd.DataFrame:
    """GFLOPs (2 per multiply-add) of what each test mode runs, for one image of `input_size`:
    "plain" and "self" embed an image; "pair" is the pair path on two images (both branches,
    the blocks and the verification head); "pairwise" adds `top_k` pairs to each query's plain
    embedding. Eval mode; the model's test mode is restored."""
    from ..complexity import count_call_flops

    model.eval()
    x = torch.zeros(1, 3, *input_size, device=next(model.parameters()).device)
    previous = model.test_mode
    try:
        flops = {}
        for mode in ("plain", "self"):
            model.test_mode = mode
            flops[mode] = count_call_flops(lambda: model(x))
        flops["pair"] = count_call_flops(lambda: model.forward_pair(x, x))
    finally:
        model.test_mode = previous
    rows = {"plain: one image": flops["plain"], "self: one image": flops["self"],
            "pair path: two images + verification": flops["pair"],
            f"pairwise: one query (plain + {top_k} pairs)": flops["plain"] + top_k * flops["pair"]}
    return pd.DataFrame({"GFLOPs": {k: v / 1e9 for k, v in rows.items()},
                         "x plain": {k: v / flops["plain"] for k, v in rows.items()}})


def time_test_modes(model, input_size: tuple[int, int], batch: int = 4, repeats: int = 1
                    ) -> pd.DataFrame:
    """Seconds per image (plain, self) and per pair (pair path) on this machine's CPU, a random
    batch of `batch` images, after one untimed pass; for a timing cell (it varies)."""
    model.eval()
    x = torch.randn(batch, 3, *input_size)
    previous = model.test_mode
    out = {}
    try:
        with torch.no_grad():
            for mode in ("plain", "self", "pair"):
                model.test_mode = mode if mode != "pair" else "plain"

                def call():
                    return model.forward_pair(x, x.flip(0)) if mode == "pair" else model(x)
                call()
                t0 = time.perf_counter()
                for _ in range(repeats):
                    call()
                out[mode] = (time.perf_counter() - t0) / (repeats * batch)
    finally:
        model.test_mode = previous
    return pd.DataFrame({"seconds": {"plain: per image": out["plain"],
                                     "self: per image": out["self"],
                                     "pair path: per pair": out["pair"]}})
