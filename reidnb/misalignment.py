"""Detector misalignment: trained models evaluated, without more training, on SynthReID test sets
whose person boxes are shifted and rescaled more and more, every identity and every other draw
fixed. li2019 (Fig. 1(a), Sec. 3.2) argues that per-position attention copes with loose boxes;
jamal2020 and zheng2019 make related claims, so their chapters share this sweep and its runs.

A level is the largest box error as a fraction of the box height: at level m the box moves by up
to m x height horizontally and vertically (for the 2:1 boxes of SynthReID) and the person's size
changes by up to a factor 1 + m (`misalignment_knobs`). The default SynthReID has offsets of up to
0.04 x height and size changes of up to 13 %.

`evaluate_misalignment` evaluates each trained run on each level's query and gallery, restricted
to the first `n_ids` test identities (the same ones at every level) to keep a CPU sweep short,
and keeps each result in the run's folder (`misalignment.json`), so a rebuild reads it back.
`centroid_shift` measures whether a model's attention follows the body when the image moves: the
slope of the attention centroid's shift against the image's shift (1: it follows the body, 0: it
stays where it was).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data.cache import ImageCache
from .experiments import (LEVELS, Experiment, load_data, load_trained, misaligned,  # noqa: F401
                          misalignment_knobs, trained_run_results)
from .io import atomic_write_json

RESULTS_FILE = "misalignment.json"


def first_identities(cache: ImageCache, pids: Sequence[int]) -> ImageCache:
    """The images of `cache` whose pid is in `pids` (distractors and junk dropped)."""
    keep = torch.isin(cache.pids, torch.as_tensor(list(pids), dtype=cache.pids.dtype))
    return cache.subset(keep)


def sweep_identities(query: ImageCache, n_ids: int) -> list[int]:
    """The first `n_ids` test identities (sorted pids) that have a query image."""
    pids = sorted(int(p) for p in query.pids.unique() if p > 0)
    if n_ids > len(pids):
        raise ValueError(f"the sweep asks for {n_ids} identities; the test set has {len(pids)}")
    return pids[:n_ids]


def _key(level: float, n_ids: int) -> str:
    return f"level={level:g},ids={n_ids}"


def evaluate_misalignment(groups: Mapping[str, Sequence[Experiment]],
                          levels: Sequence[float] = LEVELS, n_ids: int = 50,
                          data_root: str | Path = "data", runs_dir: str | Path = "runs",
                          device: str = "cpu") -> pd.DataFrame:
    """One row per (label, seed, level): rank-1 and mAP (%) of the trained run on that level's
    query and gallery (the first `n_ids` test identities), with the run's own evaluation
    settings. Results are kept in each run's folder and read back; a run that has not been
    trained is an error naming it."""
    from .train.engine import evaluate

    rows = []
    data_cache: dict[tuple, tuple] = {}
    for label, exps in groups.items():
        for exp in exps:
            store, saved = trained_run_results(exp, runs_dir, RESULTS_FILE,
                                               "the misalignment sweep evaluates")
            model = None
            for level in levels:
                key = _key(level, n_ids)
                if key not in saved:
                    mexp = misaligned(exp, level)
                    data_key = (mexp.dataset, tuple(sorted(mexp.synth_knobs.items())),
                                mexp.synth_size, mexp.height, mexp.width)
                    if data_key not in data_cache:
                        ds, caches = load_data(mexp, data_root)
                        ids = sweep_identities(caches["query"], n_ids)
                        data_cache[data_key] = (ds.num_train_pids,
                                                first_identities(caches["query"], ids),
                                                first_identities(caches["gallery"], ids))
                    num_classes, q, g = data_cache[data_key]
                    if model is None:
                        model = load_trained(exp, runs_dir, num_classes).eval()
                    ev = evaluate(model, q, g, device, **exp.eval)
                    m = ev.metrics()
                    saved[key] = {"rank1": m["rank1"], "mAP": m["mAP"], "queries": len(q),
                                  "gallery": len(g)}
                    atomic_write_json(store, saved)
                rows.append({"label": label, "seed": exp.train.seed, "level": level,
                             "rank1": saved[key]["rank1"], "mAP": saved[key]["mAP"]})
    return pd.DataFrame(rows, columns=["label", "seed", "level", "rank1", "mAP"])


def positive_pair_sweep(exp: Experiment, levels: Sequence[float], n_ids: int,
                        pair_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor],
                                          pd.DataFrame],
                        data_root: str | Path = "data", runs_dir: str | Path = "runs",
                        device: str = "cpu") -> pd.DataFrame:
    """What a trained pair model does to positive pairs as the boxes loosen: at each level,
    every query of the sweep's identities is paired with its nearest true match (by the run's
    own distances on that level's test set), `pair_fn(model, x1, x2)` (normalised images; one
    row per pair, e.g. `papers.jamal2020.pair_statistics`) is averaged over the pairs. One row
    per level, with "pairs", how many there were. Nothing is kept on disk."""
    from .data.transforms import normalize
    from .metrics import nearest_partners
    from .train.engine import compute_distmat, extract_features

    rows, model = [], None
    for level in levels:
        ds, caches = load_data(misaligned(exp, level), data_root)
        ids = sweep_identities(caches["query"], n_ids)
        q, g = first_identities(caches["query"], ids), first_identities(caches["gallery"], ids)
        if model is None:
            model = load_trained(exp, runs_dir, ds.num_train_pids).eval()
        kw = {"flip": exp.eval.get("flip", True), "which": exp.eval.get("which", "feat_bn")}
        dist = compute_distmat(extract_features(model, q, device, **kw),
                               extract_features(model, g, device, **kw),
                               exp.eval.get("metric", "euclidean"))
        pos, _ = nearest_partners(dist.cpu().numpy(), q.pids, q.camids, g.pids, g.camids)
        keep = np.flatnonzero(pos >= 0)
        stats = pair_fn(model, normalize(q.images[keep]), normalize(g.images[pos[keep]]))
        rows.append({"level": level, **stats.mean().to_dict(), "pairs": len(keep)})
    return pd.DataFrame(rows).set_index("level")


def shift_images(images: torch.Tensor, dx: int) -> torch.Tensor:
    """(B,C,H,W) images moved `dx` pixels to the right (left if negative), the uncovered
    columns filled with each row's edge pixel."""
    if dx == 0:
        return images.clone()
    w = images.shape[-1]
    if abs(dx) >= w:
        raise ValueError(f"shift_images: a shift of {dx} pixels leaves nothing of a {w}-pixel "
                         "wide image")
    idx = torch.clamp(torch.arange(w) - dx, 0, w - 1)
    return images[..., idx]


def centroid_x(maps: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal centroid, in input pixels, of (B,h,w) non-negative maps laid over an image
    `width` pixels wide (cell k covers pixels k w'..(k+1) w', its centre at (k + 0.5) w');
    NaN for an empty (all-zero) map, which has no centroid."""
    m = maps.detach().float().clamp_min(0)
    cols = m.sum(dim=1)                                  # (B, w)
    cell = width / m.shape[-1]
    centres = (torch.arange(m.shape[-1], dtype=torch.float32) + 0.5) * cell
    mass = cols.sum(dim=1)
    return torch.where(mass > 0, (cols * centres).sum(dim=1) / mass.clamp_min(1e-12),
                       torch.full_like(mass, float("nan")))


def centroid_shift(map_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                   shifts: Sequence[int] = (-8, -4, 0, 4, 8)) -> dict[str, float]:
    """How far a model's attention moves when the image moves: `map_fn(images)` gives (B,h,w)
    maps of (normalised) images; each image is moved by every shift in `shifts` (pixels) and the
    maps' mean horizontal centroid change is fitted against the shift by least squares.
    Returns the slope (1: the attention follows the body; 0: it stays put), the per-shift mean
    centroid changes and "images": how many images had a map at every shift (an empty map,
    e.g. a Grad-CAM with no positive evidence, has no centroid; with none left the slope is
    NaN)."""
    if len(shifts) < 2 or 0 not in shifts:
        raise ValueError(f"centroid_shift needs 0 and at least one other shift, got {shifts}")
    width = images.shape[-1]
    with torch.no_grad():
        base = centroid_x(map_fn(images), width)
        change = {s: centroid_x(map_fn(shift_images(images, s)), width) - base for s in shifts}
    ok = torch.stack(list(change.values())).isfinite().all(dim=0)
    if not ok.any():
        return {"slope": float("nan"), **{f"shift {s:+d} px": float("nan") for s in shifts},
                "images": 0}
    moved = {s: float(d[ok].mean()) for s, d in change.items()}
    x = np.asarray(list(moved), dtype=float)
    y = np.asarray(list(moved.values()), dtype=float)
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return {"slope": slope, **{f"shift {s:+d} px": v for s, v in moved.items()},
            "images": int(ok.sum())}
