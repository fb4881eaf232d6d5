"""A hand-crafted re-ID baseline: horizontal-stripe HSV colour histograms.

Before deep features, re-ID descriptors were mostly colour statistics pooled over horizontal
bands of the box, because a pedestrian's clothing changes colour mainly from head to feet while
the left-right position of a pixel varies with pose and view (the ensemble of localised features,
ELF, of Gray & Tao, ECCV 2008; the stripe-wise HSV/colour-name histograms of LOMO, Liao et al.,
CVPR 2015, and of the Market-1501 BoW baseline). This module keeps only that core: per stripe, a
joint H x S x V histogram, each stripe L1-normalised, stripes concatenated. It needs no training,
so it says how far colour alone goes on a data set (chapter 1 prints how it compares with a CNN).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Optional, Union

import numpy as np
from PIL import Image

ImageInput = Union[str, os.PathLike, np.ndarray, Image.Image]
DISTANCES = ("hellinger", "chi2")


def _as_hsv(item: ImageInput) -> np.ndarray:
    """One image (path, PIL image or uint8 HxWx3 RGB array) as a uint8 HxWx3 HSV array."""
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) RGB array, got {item.dtype} "
                             f"{item.shape}")
        im = Image.fromarray(item)
    elif isinstance(item, Image.Image):
        im = item
    else:
        with Image.open(item) as f:
            im = f.convert("RGB")
    return np.asarray(im.convert("RGB").convert("HSV"))


def stripe_histogram(hsv: np.ndarray, bins: tuple[int, int, int] = (8, 4, 4),
                     stripes: int = 6, grey_sat: Optional[int] = None) -> np.ndarray:
    """The descriptor of one HSV image: `stripes` joint HSV histograms, each summing to 1/stripes.

    Row r belongs to stripe floor(r * stripes / H); channel values 0..255 are split into equal
    bins. Hue is meaningless for near-grey pixels (a slight colour cast flips it at random), so
    pixels with saturation below `grey_sat` (0..255; default: the lowest saturation bin,
    256 // bs) all count in hue bin 0, as colour quantisers with separate grey bins do;
    `grey_sat=0` gives the plain joint histogram.
    Returns float32 of length stripes * bh * bs * bv.
    """
    bh, bs, bv = bins
    h, w = hsv.shape[:2]
    if stripes < 1 or stripes > h:
        raise ValueError(f"stripes must be in 1..{h} (the image height), got {stripes}")
    if grey_sat is None:
        grey_sat = 256 // bs
    q = hsv.astype(np.int32)
    hue = (q[..., 0] * bh) >> 8
    if grey_sat > 0:
        hue[q[..., 1] < grey_sat] = 0
    joint = hue * (bs * bv) + ((q[..., 1] * bs) >> 8) * bv + ((q[..., 2] * bv) >> 8)
    nb = bh * bs * bv
    stripe = (np.arange(h) * stripes) // h
    idx = joint + (stripe * nb)[:, None]
    hist = np.bincount(idx.ravel(), minlength=stripes * nb).astype(np.float32)
    per_stripe = np.bincount(stripe, minlength=stripes).astype(np.float32) * w
    hist = hist.reshape(stripes, nb) / per_stripe[:, None] / stripes
    return hist.ravel()


def hsv_histogram_features(
    images: Union[Sequence[ImageInput], np.ndarray],
    bins: tuple[int, int, int] = (8, 4, 4),
    stripes: int = 6,
    grey_sat: Optional[int] = None,
) -> np.ndarray:
    """Stripe HSV histograms of many images: an (N, stripes * prod(bins)) float32 array.

    `images` is a sequence of paths, PIL images or uint8 RGB arrays, or one (N, H, W, 3)
    uint8 array. Every row sums to 1 (each stripe to 1/stripes). See `stripe_histogram`.
    """
    if len(bins) != 3 or min(bins) < 1 or max(bins) > 256:
        raise ValueError(f"bins must be three counts in 1..256 (H, S, V), got {bins!r}")
    bins = tuple(int(b) for b in bins)
    n = len(images)
    out = np.zeros((n, stripes * bins[0] * bins[1] * bins[2]), dtype=np.float32)
    for i in range(n):
        out[i] = stripe_histogram(_as_hsv(images[i]), bins, stripes, grey_sat)
    return out


def histogram_distances(qf: np.ndarray, gf: np.ndarray, distance: str = "hellinger",
                        chunk: int = 64) -> np.ndarray:
    """(num_query, num_gallery) distances between histogram rows.

    `hellinger`: Euclidean distance between the square roots of the histograms (one matrix
    product). `chi2`: 0.5 * sum (x - y)^2 / (x + y), computed in query chunks.
    """
    qf = np.asarray(qf, dtype=np.float32)
    gf = np.asarray(gf, dtype=np.float32)
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise ValueError(f"features must be (n, d) with equal d, got {qf.shape} and {gf.shape}")
    if distance == "hellinger":
        sq, sg = np.sqrt(qf), np.sqrt(gf)
        d2 = (sq * sq).sum(1)[:, None] + (sg * sg).sum(1)[None, :] - 2.0 * sq @ sg.T
        return np.sqrt(np.maximum(d2, 0.0))
    if distance == "chi2":
        out = np.empty((len(qf), len(gf)), dtype=np.float32)
        for s in range(0, len(qf), chunk):
            x = qf[s:s + chunk, None, :]
            num = (x - gf[None]) ** 2
            den = x + gf[None]
            out[s:s + chunk] = 0.5 * np.divide(num, den, out=np.zeros_like(num),
                                               where=den > 0).sum(-1)
        return out
    raise ValueError(f"unknown distance {distance!r}; choose one of {DISTANCES}")


def histogram_baseline(
    dataset,
    bins: tuple[int, int, int] = (8, 4, 4),
    stripes: int = 6,
    grey_sat: Optional[int] = None,
    distance: str = "hellinger",
    max_rank: int = 50,
    evaluate: Callable | None = None,
) -> dict:
    """Rank the gallery for every query by stripe-HSV-histogram distance; return CMC and mAP.

    `dataset` is a `ReIDDataset` (its `query` and `gallery` Samples are read from disk).
    `evaluate` defaults to `reidnb.metrics.evaluate_rank` (Market-1501 protocol).
    Returns dict(cmc, mAP, rank1, rank5, rank10, rank20, distance, num_query, num_gallery).
    """
    if evaluate is None:
        from reidnb.metrics import evaluate_rank as evaluate
    if not dataset.query or not dataset.gallery:
        raise ValueError(f"{getattr(dataset, 'name', 'dataset')}: query and gallery must both "
                         "be non-empty")
    qf = hsv_histogram_features([s.path for s in dataset.query], bins, stripes, grey_sat)
    gf = hsv_histogram_features([s.path for s in dataset.gallery], bins, stripes, grey_sat)
    distmat = histogram_distances(qf, gf, distance)
    q_pids = np.asarray([s.pid for s in dataset.query])
    g_pids = np.asarray([s.pid for s in dataset.gallery])
    q_cams = np.asarray([s.camid for s in dataset.query])
    g_cams = np.asarray([s.camid for s in dataset.gallery])
    cmc, mean_ap = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    cmc = np.asarray(cmc, dtype=np.float64)

    def at(k: int) -> float:
        return float(cmc[min(k, len(cmc)) - 1])

    return {
        "cmc": cmc,
        "mAP": float(mean_ap),
        "rank1": at(1),
        "rank5": at(5),
        "rank10": at(10),
        "rank20": at(20),
        "distance": distance,
        "num_query": len(qf),
        "num_gallery": len(gf),
    }
