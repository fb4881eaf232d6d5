"""Figures for the book: retrieval grids, CMC and loss curves, attention overlays, image grids,
and the statistical plots (sweeps, seed spreads, score distributions), which seaborn draws.

Every function builds a `matplotlib.figure.Figure` directly (no pyplot), so nothing is shown or
kept in a global registry: a notebook displays the returned figure once, and any backend (Agg
included) can save it. seaborn draws into the axes of that figure (`ax=`) and is never asked to
set a global theme; nothing it draws here is random (no jitter, no bootstrap). Images may be
uint8 HxWx3 arrays, uint8 (3,H,W) tensors, float (3,H,W) tensors normalised with the ImageNet
mean/std, or file paths (loaded with PIL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from PIL import Image

from reidnb.cam import normalize_maps, upsample_maps
from reidnb.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CORRECT_COLOR = "#1a9850"  # green frame: same identity as the query
WRONG_COLOR = "#d73027"  # red frame: another identity (or a distractor)
QUERY_COLOR = "#2c3e50"  # dark frame around the query image
FRAME_WIDTH = 3.0

# --------------------------------------------------------------------------------------------
# images


def not_run(message: str = "not run in this build's scope (core)") -> Figure:
    """A small figure holding only `message`: a numbered figure whose runs the build did not
    make keeps its number and caption, and says why it is empty."""
    fig = Figure(figsize=(6, 0.9))
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="0.35",
            transform=ax.transAxes)
    return fig


def denormalize(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """ImageNet-normalised float (3,H,W) or (B,3,H,W) -> uint8 (H,W,3) or (B,H,W,3)."""
    x = torch.as_tensor(images).detach().float().cpu()
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(
            f"reidnb.viz.denormalize: expected (3,H,W) or (B,3,H,W), got {tuple(x.shape)}"
        )
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (x * std + mean).mul(255.0).round().clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def _load_path(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"reidnb.viz: image file not found: {p}")
    with Image.open(p) as img:
        return np.asarray(img.convert("RGB"))


def _as_uint8_image(item: Any, images_as: str = "arrays") -> np.ndarray:
    """One image as uint8 (H,W,3); `images_as` is 'arrays' or 'paths'."""
    if images_as == "paths":
        if not isinstance(item, (str, Path)):
            raise TypeError(
                f"reidnb.viz: images_as='paths' expects str/Path items, got {type(item)}"
            )
        return _load_path(item)
    if images_as != "arrays":
        raise ValueError(f"reidnb.viz: images_as must be 'arrays' or 'paths', got {images_as!r}")
    if isinstance(item, (str, Path)):
        raise TypeError(
            "reidnb.viz: got a file path with images_as='arrays'; pass images_as='paths'"
        )
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8:
            return denormalize(item)
        item = item.detach().cpu().numpy()
        if item.ndim == 3 and item.shape[0] == 3 and item.shape[-1] != 3:
            item = item.transpose(1, 2, 0)
    arr = np.asarray(item)
    if arr.dtype != np.uint8:
        raise TypeError(
            f"reidnb.viz: expected a uint8 HxWx3 array, got dtype {arr.dtype}; "
            "use denormalize() for normalised float images"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"reidnb.viz: expected an HxWx3 image, got shape {arr.shape}")
    return arr


def _as_image_list(images: Any, images_as: str = "arrays") -> list[np.ndarray]:
    """A batch ((B,...) array/tensor or a sequence) as a list of uint8 (H,W,3) arrays."""
    if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
        items: Sequence[Any] = list(images)
    elif isinstance(images, (str, Path)) or (
        isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 3
    ):
        items = [images]
    else:
        items = list(images)
    return [_as_uint8_image(it, images_as) for it in items]


def _show(ax: Any, img: np.ndarray, frame: str | None = None) -> None:
    """Image without ticks; `frame` colours the four spines (None hides them)."""
    ax.imshow(img, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        if frame is None:
            spine.set_visible(False)
        else:
            spine.set_visible(True)
            spine.set_edgecolor(frame)
            spine.set_linewidth(FRAME_WIDTH)


def image_grid(images: Any, titles: Sequence[str] | None = None, ncols: int = 8,
               images_as: str = "arrays") -> Figure:
    """Images in a grid of `ncols` columns (e.g. SynthReID samples per camera)."""
    imgs = _as_image_list(images, images_as)
    if not imgs:
        raise ValueError("reidnb.viz.image_grid: no images given")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"reidnb.viz.image_grid: {len(titles)} titles for {len(imgs)} images")
    ncols = max(1, min(ncols, len(imgs)))
    nrows = -(-len(imgs) // ncols)
    fig = Figure(figsize=(1.1 * ncols, 2.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i >= len(imgs):
            fig.delaxes(ax)
            continue
        _show(ax, imgs[i])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


# --------------------------------------------------------------------------------------------
# retrieval


def ranked_gallery(distmat_row: np.ndarray, q_pid: int, q_camid: int, g_pids: np.ndarray,
                   g_camids: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest gallery items after the Market-1501 exclusion.

    Gallery items with the query's identity *and* camera are dropped (Zheng et al. 2015, the
    protocol `evaluate_rank` uses); ties keep gallery order (stable sort).
    """
    row = np.asarray(distmat_row).reshape(-1)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    if not (row.shape == g_pids.shape == g_camids.shape):
        raise ValueError(
            f"reidnb.viz.ranked_gallery: distmat row {row.shape}, g_pids {g_pids.shape} and "
            f"g_camids {g_camids.shape} must have the same length"
        )
    order = np.argsort(row, kind="stable")
    keep = ~((g_pids[order] == q_pid) & (g_camids[order] == q_camid))
    return order[keep][:k]


def retrieval_grid(query_imgs: Any, gallery_imgs: Any, distmat: np.ndarray, q_pids: np.ndarray,
                   g_pids: np.ndarray, q_camids: np.ndarray, g_camids: np.ndarray,
                   topk: int = 10, num_queries: int = 4,
                   query_indices: Sequence[int] | None = None,
                   images_as: str = "arrays") -> Figure:
    """One row per query: the query, then its top-k gallery matches framed green/red.

    Under each match: its rank (title) and distance. `query_indices` defaults to `num_queries`
    queries spread evenly over the query set. Images are indexed lazily, so a list of paths for
    the whole gallery is fine.
    """
    if isinstance(distmat, torch.Tensor):
        distmat = distmat.detach().cpu().numpy()
    distmat = np.asarray(distmat)
    nq, ng = distmat.shape
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    if len(q_pids) != nq or len(q_camids) != nq or len(g_pids) != ng or len(g_camids) != ng:
        raise ValueError(
            f"reidnb.viz.retrieval_grid: distmat is {nq}x{ng} but got {len(q_pids)} q_pids, "
            f"{len(q_camids)} q_camids, {len(g_pids)} g_pids, {len(g_camids)} g_camids"
        )
    if query_indices is None:
        query_indices = np.unique(np.linspace(0, nq - 1, min(num_queries, nq)).round().astype(int))
    query_indices = [int(i) for i in query_indices]
    bad = [i for i in query_indices if not 0 <= i < nq]
    if bad:
        raise IndexError(f"reidnb.viz.retrieval_grid: query indices {bad} outside [0, {nq})")
    nrows, ncols = len(query_indices), topk + 1
    fig = Figure(figsize=(1.05 * ncols, 2.45 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r, qi in enumerate(query_indices):
        ranked = ranked_gallery(distmat[qi], q_pids[qi], q_camids[qi], g_pids, g_camids, topk)
        qax = axes[r, 0]
        _show(qax, _as_uint8_image(query_imgs[qi], images_as), QUERY_COLOR)
        qax.set_title("query", fontsize=8, fontweight="bold")
        qax.set_xlabel(f"id {q_pids[qi]} cam {q_camids[qi]}", fontsize=7)
        for c in range(1, ncols):
            ax = axes[r, c]
            if c - 1 >= len(ranked):
                ax.set_axis_off()
                continue
            gi = int(ranked[c - 1])
            hit = g_pids[gi] == q_pids[qi]
            _show(ax, _as_uint8_image(gallery_imgs[gi], images_as),
                  CORRECT_COLOR if hit else WRONG_COLOR)
            ax.set_title(f"#{c}", fontsize=8)
            ax.set_xlabel(f"{distmat[qi, gi]:.2f}", fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------
# curves


def cmc_curve(curves: Mapping[str, Any], max_rank: int = 20) -> Figure:
    """CMC curves (fractions in [0, 1], as `evaluate_rank` returns) plotted in percent."""
    if not curves:
        raise ValueError("reidnb.viz.cmc_curve: no curves given")
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ranks = np.arange(1, max_rank + 1)
    for name, cmc in curves.items():
        cmc = np.asarray(cmc, dtype=float).reshape(-1)
        if len(cmc) < max_rank:
            raise ValueError(
                f"reidnb.viz.cmc_curve: curve {name!r} has {len(cmc)} ranks, need {max_rank}"
            )
        if cmc.min() < 0 or cmc.max() > 1:
            raise ValueError(
                f"reidnb.viz.cmc_curve: curve {name!r} must hold fractions in [0, 1]"
            )
        ax.plot(ranks, 100 * cmc[:max_rank], marker="o", markersize=3,
                label=f"{name} (R1 {100 * cmc[0]:.1f}%)")
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xlim(1, max_rank)
    ax.set_xticks(ranks if max_rank <= 20 else np.linspace(1, max_rank, 10).round())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("CMC")
    return fig


_X_KEYS = ("epoch", "step", "iter", "iteration")


def _history_columns(history: Any) -> tuple[np.ndarray, str, dict[str, np.ndarray]]:
    """(x, x label, numeric columns) from a list of records or a dict of lists."""
    if isinstance(history, Mapping):
        cols = {k: np.asarray(v, dtype=float) for k, v in history.items()}
        x_key = next((k for k in _X_KEYS if k in cols), None)
    else:
        records = list(history)
        if not all(isinstance(r, Mapping) for r in records):
            raise TypeError("reidnb.viz.loss_curves: history must be a dict of lists or dicts")
        keys = list(dict.fromkeys(k for r in records for k in r))
        cols = {}
        for k in keys:
            vals = [r.get(k, np.nan) for r in records]
            if all(isinstance(v, (int, float, np.number)) for v in vals):
                cols[k] = np.asarray(vals, dtype=float)
        x_key = next((k for k in _X_KEYS if k in cols), None)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"reidnb.viz.loss_curves: columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    x = cols.pop(x_key) if x_key else np.arange(1, n + 1, dtype=float)
    return x, x_key or "record", cols


def loss_curves(history: Any, keys: Sequence[str] | None = None) -> Figure:
    """One line per loss term.

    history: list of per-epoch/step records (dicts) or a dict name -> list of values. An
    "epoch"/"step" entry is the x axis. Plotted terms are `keys`, else every column whose name
    contains "loss", else every numeric column.
    """
    x, x_label, cols = _history_columns(history)
    if keys is None:
        keys = [k for k in cols if "loss" in k.lower()] or list(cols)
    missing = [k for k in keys if k not in cols]
    if missing:
        raise KeyError(f"reidnb.viz.loss_curves: no numeric column {missing}; have {list(cols)}")
    if not keys:
        raise ValueError("reidnb.viz.loss_curves: history has no numeric columns to plot")
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for k in keys:
        ax.plot(x, cols[k], marker="." if len(x) <= 50 else None, label=k)
    ax.set_xlabel(x_label)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("training losses")
    return fig


def loss_comparison(histories: Mapping[str, Any], keys: Sequence[str],
                    titles: Mapping[str, str] | None = None, title: str = "") -> Figure:
    """One panel per loss term in `keys`, one line per model: `histories` maps a label to a
    run's history (as `loss_curves` takes it), e.g. a model and its ablation side by side
    (jamal2020 Fig. 6: identification, verification and total loss). `titles` names the
    panels (default: the keys)."""
    if not histories:
        raise ValueError("reidnb.viz.loss_comparison: no histories given")
    if not keys:
        raise ValueError("reidnb.viz.loss_comparison: no loss terms given")
    columns = {}
    for label, history in histories.items():
        x, x_label, cols = _history_columns(history)
        missing = [k for k in keys if k not in cols]
        if missing:
            raise KeyError(f"reidnb.viz.loss_comparison: {label!r} has no numeric column "
                           f"{missing}; have {list(cols)}")
        columns[label] = (x, x_label, cols)
    fig = Figure(figsize=(3.2 * len(keys) + 0.4, 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for label, (x, x_label, cols) in columns.items():
            ax.plot(x, cols[key], marker="." if len(x) <= 50 else None, label=label)
        ax.set_xlabel(x_label)
        ax.set_title((titles or {}).get(key, key), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def test_curve(history: Any, steps_per_epoch: int, title: str = "") -> Figure:
    """li2019 Figs. 6-7 from a run's history rows with "test_rank1"/"test_mAP" (a run with
    `eval_every`): rank-1 as a line (Fig. 6) and mAP as bars (Fig. 7) against training
    iterations (epoch x `steps_per_epoch`). Rows without a test point are skipped."""
    rows = [r for r in history if "test_rank1" in r and "test_mAP" in r]
    if not rows:
        raise ValueError("reidnb.viz.test_curve: no history row has test_rank1 and test_mAP "
                         "(train with Experiment.eval_every > 0)")
    iters = np.array([r["epoch"] * steps_per_epoch for r in rows], dtype=float)
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(iters, [r["test_rank1"] for r in rows], marker="o")
    ax1.set_ylabel("rank-1 (%)")
    ax1.set_title("rank-1 against iterations (Fig. 6)")
    width = 0.6 * (np.diff(iters).min() if len(iters) > 1 else steps_per_epoch)
    ax2.bar(iters, [r["test_mAP"] for r in rows], width=width)
    ax2.set_ylabel("mAP (%)")
    ax2.set_title("mAP against iterations (Fig. 7)")
    for ax in (ax1, ax2):
        ax.set_xlabel("training iterations")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------------------------
# attention


def overlay_heatmap(image: np.ndarray, amap: Any, alpha: float = 0.5,
                    cmap: str = "jet") -> np.ndarray:
    """Blend a map (h,w), resized to the image and min-max scaled, over a uint8 (H,W,3) image."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"reidnb.viz.overlay_heatmap: alpha must be in [0, 1], got {alpha}")
    m = torch.as_tensor(np.asarray(amap, dtype=np.float32) if not isinstance(amap, torch.Tensor)
                        else amap.detach().float().cpu())
    if m.dim() != 2:
        raise ValueError(f"reidnb.viz.overlay_heatmap: map must be (h, w), got {tuple(m.shape)}")
    h, w = image.shape[:2]
    m = normalize_maps(upsample_maps(m[None], (h, w)))[0].numpy()
    heat = matplotlib.colormaps[cmap](m)[..., :3]
    out = (1.0 - alpha) * image.astype(np.float32) / 255.0 + alpha * heat
    return (out * 255.0).round().clip(0, 255).astype(np.uint8)


def _as_map_list(maps: Any, n: int, what: str) -> list[Any]:
    items = list(maps)
    if len(items) != n:
        raise ValueError(f"reidnb.viz: {what} has {len(items)} maps for {n} images")
    return items


def attention_overlay(images: Any, maps: Any, alpha: float = 0.5,
                      titles: Sequence[str] | None = None, images_as: str = "arrays") -> Figure:
    """One overlay per image: each map (h,w) upsampled to its image, jet colour map, one row."""
    imgs = _as_image_list(images, images_as)
    overlays = [overlay_heatmap(img, m, alpha)
                for img, m in zip(imgs, _as_map_list(maps, len(imgs), "maps"))]
    return image_grid(overlays, titles=titles, ncols=len(overlays))


def attention_grid(rows: Mapping[str, Any], images: Any, alpha: float = 0.5,
                   orientation: str = "rows", images_as: str = "arrays") -> Figure:
    """Input images beside the maps of several models ("input / baseline / +AM / +AM+UL").

    rows: model name -> (B, h, w) maps. With orientation="rows" the inputs form the first row
    and each entry one more row; with "columns" each image is a row and the models are columns,
    the layout of jeong2020 Fig. 5.
    """
    if orientation not in ("rows", "columns"):
        raise ValueError(
            "reidnb.viz.attention_grid: orientation must be 'rows' or 'columns', "
            f"got {orientation!r}"
        )
    imgs = _as_image_list(images, images_as)
    panels = {"input": imgs}
    for name, maps in rows.items():
        per_model = _as_map_list(maps, len(imgs), f"entry {name!r}")
        panels[name] = [overlay_heatmap(img, m, alpha) for img, m in zip(imgs, per_model)]
    names = list(panels)
    n_img = len(imgs)
    shape = (len(names), n_img) if orientation == "rows" else (n_img, len(names))
    fig = Figure(figsize=(1.1 * shape[1] + 0.6, 2.3 * shape[0]), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False)
    for j, name in enumerate(names):
        for i in range(n_img):
            ax = axes[j, i] if orientation == "rows" else axes[i, j]
            _show(ax, panels[name][i])
            if orientation == "rows" and i == 0:
                ax.set_ylabel(name, fontsize=9)
            if orientation == "columns" and i == 0:
                ax.set_title(name, fontsize=9)
    return fig


# --------------------------------------------------------------------------------------------
# statistics (seaborn)


def metric_sweep(frame: Any, x_label: str, y_label: str = "rank-1 (%)",
                 title: str | None = None) -> Figure:
    """One line per column of `frame` (a pandas DataFrame indexed by the swept value), a marker
    per measured point; missing points (NaN, a run not made) are left out."""
    if frame.empty or frame.shape[1] == 0:
        raise ValueError("reidnb.viz.metric_sweep: no values to plot")
    names = [str(c) for c in frame.columns]
    long = pd.DataFrame({
        "x": np.tile(frame.index.to_numpy(), len(names)),
        "y": np.concatenate([np.asarray(frame[c], dtype=float) for c in frame.columns]),
        "series": np.repeat(names, len(frame)),
    }).dropna()
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    # estimator=None: each measured point as it is (no averaging, so no bootstrap either)
    sns.lineplot(data=long, x="x", y="y", hue="series", style="series", hue_order=names,
                 style_order=names, markers=True, dashes=False, estimator=None, sort=True, ax=ax)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=frame.columns.name, title_fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def _population_sd(values: pd.Series) -> tuple[float, float]:
    """mean ± the population standard deviation, the spread `results.seed_table` prints."""
    mean, sd = float(values.mean()), float(values.std(ddof=0))
    return mean - sd, mean + sd


def seed_spread(values: Any, metrics: Sequence[str] = ("rank1", "mAP"),
                metric_labels: Mapping[str, str] | None = None,
                labels: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Each run as a dot (colour = its seed), and per label the mean over seeds as a black bar
    with ± the population standard deviation: one panel per metric.

    values: a DataFrame with one row per run and columns "label", "seed" and the `metrics`
    (`results.seed_values`). `labels` orders the rows (default: first appearance). A seed keeps
    its colour across labels, so one can see whether a variant wins for every seed.
    """
    if not isinstance(values, pd.DataFrame):
        raise TypeError("reidnb.viz.seed_spread: values must be a pandas DataFrame")
    missing = [c for c in ("label", "seed", *metrics) if c not in values.columns]
    if missing:
        raise KeyError(f"reidnb.viz.seed_spread: no column {missing}; have {list(values.columns)}")
    if values.empty:
        raise ValueError("reidnb.viz.seed_spread: no runs to plot (no complete run record?)")
    labels = list(labels) if labels is not None else list(dict.fromkeys(values["label"]))
    data = values[values["label"].isin(labels)].copy()
    seeds = sorted(data["seed"].unique())
    data["seed"] = data["seed"].map(lambda s: f"seed {s}")  # categories, not a colour scale
    seed_order = [f"seed {s}" for s in seeds]
    names = {"rank1": "rank-1 (%)", "mAP": "mAP (%)", **(metric_labels or {})}
    fig = Figure(figsize=(3.2 * len(metrics) + 1.6, 0.55 * len(labels) + 1.3),
                 layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    palette = dict(zip(seed_order, sns.color_palette("colorblind", len(seed_order))))
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        sns.stripplot(data=data, x=metric, y="label", hue="seed", order=labels,
                      hue_order=seed_order, palette=palette, jitter=False,
                      dodge=len(seeds) > 1, size=6, orient="h", legend=i == len(metrics) - 1,
                      ax=ax)
        sns.pointplot(data=data, x=metric, y="label", order=labels, estimator="mean",
                      errorbar=_population_sd, color="black", marker="D", markersize=4,
                      linestyle="none", capsize=0.15, err_kws={"linewidth": 1.2}, orient="h",
                      label="mean ± sd", ax=ax)
        ax.set_xlabel(names.get(metric, metric))
        ax.set_ylabel("")
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[:-1]:  # one legend, beside the last panel
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
                        fontsize=8, title=None)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def score_histogram(values: Mapping[str, Any], x_label: str, threshold: float | None = None,
                    threshold_label: str = "threshold", bins: int = 30,
                    title: str | None = None) -> Figure:
    """The distribution of a per-item score (a distance, a margin), one step histogram per entry
    of `values` (name -> 1-d values) on shared bins, in percent of that entry's items.

    `threshold` adds a dashed vertical line, and each legend entry then says what share of its
    items lies above it (e.g. triplets already past the margin).
    """
    if not values:
        raise ValueError("reidnb.viz.score_histogram: no values given")
    arrays = {}
    for name, v in values.items():
        arr = (v.detach().float().cpu().numpy() if isinstance(v, torch.Tensor)
               else np.asarray(v, dtype=float)).reshape(-1)
        arr = arr[np.isfinite(arr)]
        if arr.size == 0:
            raise ValueError(f"reidnb.viz.score_histogram: {name!r} has no finite values")
        arrays[name] = arr
    shown = {}
    for name, arr in arrays.items():
        label = str(name)
        if threshold is not None:
            label += f" ({np.mean(arr > threshold):.0%} above)"
        shown[label] = arr
    long = pd.DataFrame({"value": np.concatenate(list(shown.values())),
                         "name": np.repeat(list(shown), [len(a) for a in shown.values()])})
    edges = np.histogram_bin_edges(long["value"], bins=bins)
    fig = Figure(figsize=(5, 3.4), layout="constrained")
    ax = fig.add_subplot()
    sns.histplot(data=long, x="value", hue="name", hue_order=list(shown), bins=edges,
                 stat="percent", common_norm=False, element="step", fill=False, ax=ax)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=threshold_label)
    ax.set_xlabel(x_label)
    ax.set_ylabel("share of items (%)")
    ax.grid(alpha=0.3)
    if ax.get_legend() is not None:
        handles = list(ax.get_legend().legend_handles)
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        if threshold is not None:
            handles.append(ax.get_lines()[-1])
            texts.append(threshold_label)
        ax.legend(handles, texts, fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def score_matrix(matrix: Any, title: str = "", x_label: str = "position i (looked at)",
                 y_label: str = "position j (looking)", map_shape: tuple[int, int] | None = None
                 ) -> Figure:
    """An L x L attention score matrix as a heatmap with a colour bar (li2019 Fig. 10): row j is
    where position j looks. `map_shape` (H, W) of the feature map adds, under the heatmap, the
    column sums (the attention each position receives) drawn as that map."""
    m = (matrix.detach().float().cpu().numpy() if isinstance(matrix, torch.Tensor)
         else np.asarray(matrix, dtype=float))
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"reidnb.viz.score_matrix: expected an L x L matrix, got shape {m.shape}")
    if map_shape is not None and map_shape[0] * map_shape[1] != m.shape[0]:
        raise ValueError(f"reidnb.viz.score_matrix: map_shape {map_shape} has "
                         f"{map_shape[0] * map_shape[1]} positions, the matrix {m.shape[0]}")
    fig = Figure(figsize=(7.5 if map_shape else 4.5, 4), layout="constrained")
    axes = fig.subplots(1, 2 if map_shape else 1, squeeze=False,
                        gridspec_kw={"width_ratios": [3, 1]} if map_shape else None)[0]
    im = axes[0].imshow(m, cmap="viridis", interpolation="nearest")
    axes[0].set_xlabel(x_label)
    axes[0].set_ylabel(y_label)
    axes[0].set_title(title)
    fig.colorbar(im, ax=axes[0], shrink=0.8)
    if map_shape:
        im2 = axes[1].imshow(m.sum(axis=0).reshape(map_shape), cmap="magma",
                             interpolation="nearest")
        axes[1].set_title("received, c_i = sum_j s_ji")
        axes[1].set_xticks([])
        axes[1].set_yticks([])
        fig.colorbar(im2, ax=axes[1], shrink=0.8)
    return fig


def pca_2d(features: Any) -> np.ndarray:
    """(N, D) features -> (N, 2): centred, projected on the two leading principal directions
    (SVD), each direction's sign fixed so its largest-magnitude loading is positive."""
    x = (features.detach().float().cpu().numpy() if isinstance(features, torch.Tensor)
         else np.asarray(features, dtype=float))
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"reidnb.viz.pca_2d: expected (N >= 2, D) features, got {x.shape}")
    x = x - x.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(min(2, len(vt))), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    return x @ vt.T


def embedding_scatter(features: Mapping[str, Any], labels: Any, title: str = "") -> Figure:
    """One panel per entry (name -> (N, D) features of the same N images): the images' 2-D PCA
    projection (`pca_2d`), coloured by identity (`labels`, N values), as li2019 Fig. 4."""
    if not features:
        raise ValueError("reidnb.viz.embedding_scatter: no features given")
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    fig = Figure(figsize=(3.4 * len(features), 3.4), layout="constrained")
    axes = fig.subplots(1, len(features), squeeze=False)[0]
    palette = sns.color_palette("tab10", n_colors=max(10, len(np.unique(labels))))
    for ax, (name, feats) in zip(axes, features.items()):
        xy = pca_2d(feats)
        if len(xy) != len(labels):
            raise ValueError(f"reidnb.viz.embedding_scatter: {name!r} has {len(xy)} rows, "
                             f"labels {len(labels)}")
        for k, pid in enumerate(np.unique(labels)):
            sel = labels == pid
            ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=palette[k % len(palette)])
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


def pair_profiles(views: Mapping[str, Mapping[str, Any]], image1: Any, image2: Any,
                  title: str = "") -> Figure:
    """zheng2019's Siamese attention for one pair, one row per network (label -> the dict of
    `papers.zheng2019.pair_view`): each image with its map, both vertical profiles (rows top to
    bottom, the kept segment of each shaded), and the two profiles after the cut and resize
    (Sec. 3.2.2, Eq. 5), titled with the profile distance."""
    if not views:
        raise ValueError("reidnb.viz.pair_profiles: no views given")
    imgs = [_as_uint8_image(torch.as_tensor(im).permute(1, 2, 0).numpy()
                            if torch.as_tensor(im).shape[0] == 3 else im)
            for im in (image1, image2)]
    fig = Figure(figsize=(7.6, 2.5 * len(views)), layout="constrained")
    axes = fig.subplots(len(views), 4, squeeze=False,
                        gridspec_kw={"width_ratios": [1, 1, 1.6, 1.6]})
    colours = ("tab:blue", "tab:orange")
    for r, (label, v) in enumerate(views.items()):
        for c in range(2):
            _show(axes[r, c], overlay_heatmap(imgs[c], v["maps"][c]))
        axes[r, 0].set_ylabel(label, fontsize=9)
        raw, cut = axes[r, 2], axes[r, 3]
        for c in range(2):
            prof = torch.as_tensor(v["profiles"][c]).detach().float().numpy()
            start, end = v["kept"][c]
            raw.plot(np.arange(len(prof)), prof, color=colours[c], marker=".",
                     label=f"image {c + 1}")
            raw.axvspan(start - 0.5, end + 0.5, color=colours[c], alpha=0.12)
            cut.plot(torch.as_tensor(v["aligned"][c]).detach().float().numpy(),
                     color=colours[c], marker=".")
        raw.set_title("profiles (row max), kept rows shaded", fontsize=8)
        raw.set_xlabel("row (top to bottom)", fontsize=8)
        cut.set_title(f"cut and resized: L2 {v['profile_distance']:.3f}", fontsize=8)
        cut.set_xlabel("resized row", fontsize=8)
        for ax in (raw, cut):
            ax.set_ylim(-0.05, 1.05)
            ax.tick_params(labelsize=7)
        raw.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def shift_recovery_and_sweep(recovery: Mapping[str, pd.DataFrame], sweep: pd.DataFrame | None,
                             column: str = "start moved (px)", y_label: str = "rank-1 (%)",
                             note: str = "") -> Figure:
    """zheng2019's misalignment experiment in two panels. Left: for each model (label -> a
    `papers.zheng2019.crop_recovery` table, indexed by the true shift in pixels) how far the kept
    segment moved (`column`) against how far the image moved, beside the identity line (a cut
    that follows the person exactly). Right: a metric against the box error, one line per row
    (`sweep`: indexed by level, one column per row), or `note` written in the panel where no
    sweep ran."""
    if not recovery:
        raise ValueError("reidnb.viz.shift_recovery_and_sweep: no recovery tables given")
    fig = Figure(figsize=(8.4, 3.3), layout="constrained")
    left, right = fig.subplots(1, 2)
    lo = min(float(r.index.min()) for r in recovery.values())
    hi = max(float(r.index.max()) for r in recovery.values())
    left.plot([lo, hi], [lo, hi], color="0.5", linestyle="--", label="follows the person")
    for label, r in recovery.items():
        left.plot(r.index.to_numpy(dtype=float), r[column].to_numpy(dtype=float), marker="o",
                  label=label)
    left.set_xlabel("image moved down (px)")
    left.set_ylabel(f"kept segment: {column}")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    if sweep is None or sweep.empty:
        right.text(0.5, 0.5, note or "no sweep", ha="center", va="center", wrap=True, fontsize=9,
                   transform=right.transAxes)
        right.set_xticks([])
        right.set_yticks([])
    else:
        for name in sweep.columns:
            right.plot(sweep.index.to_numpy(dtype=float), sweep[name].to_numpy(dtype=float),
                       marker="o", label=str(name))
        right.set_xlabel("box error (fraction of box height)")
        right.set_ylabel(y_label)
        right.grid(alpha=0.3)
        right.legend(fontsize=7)
    return fig
