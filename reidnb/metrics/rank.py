"""CMC and mAP for re-ID retrieval: Market-1501 protocol, classic CUHK03 single shot, multi-query.

Conventions shared by every function here:

* A *true match* of a query is a gallery item with the same pid taken by a different camera.
  Gallery items with the query's pid and camera, and gallery items with pid -1 (junk), are
  removed from that query's ranking before anything is counted. Distractors (pid 0) stay in and
  count as wrong matches. A query with no true match is skipped; if every query is skipped a
  `ValueError` is raised.
* Items are ranked by increasing distance; equal distances keep gallery order (a stable sort).
  Codebases that use an unstable `argsort` can break ties differently, which matters only for
  exactly equal distances.
* CMC is a fraction: ``cmc[k]`` is the share of (kept) queries whose first true match is within
  the top ``k + 1``. mAP is the mean over kept queries of the average precision (AP).

Two AP variants (`ap=`):

``"standard"``
    Non-interpolated AP: with true matches at ranks r_1 < ... < r_n (1-based, junk removed),
    AP = (1/n) * sum_i i / r_i, i.e. the mean of the precision at each hit. This is what the
    PyTorch re-ID codebases of 2019-2020 compute (open-reid, torchreid's `eval_market1501`,
    reid-strong-baseline).
``"trapezoid"``
    The interpolated AP of the official Market-1501 MATLAB evaluation (`compute_AP.m`), also
    kept by the `Person_reID_baseline_pytorch` code (`compute_mAP`). That code walks the ranking
    (skipping junk), and at each position adds (recall step) * (previous precision + current
    precision) / 2; only hits have a recall step of 1/n. At hit i found at rank r_i the previous
    position r_i - 1 held i - 1 hits, so
    AP = (1/n) * sum_i [ p_before(i) + i / r_i ] / 2,  p_before(i) = (i - 1) / (r_i - 1)
    and p_before = 1 when r_i = 1 (the code starts with precision 1). Note the numerator is
    i - 1, not i: the precision just before the hit does not count the hit itself. It is never
    larger than the standard AP and differs most when hits come late and far apart.

Which variant the book's papers likely used (none of them says so; these are guesses):

* jamal2020 (Deep mutual attention): PyTorch; 512-d bottleneck, dropout, SGD with lr 1e-2
  decayed at epoch 40 of 60, and "multi-shoot"/re-ranking rows on Market-1501 follow the
  layout of `Person_reID_baseline_pytorch`, whose evaluation is the trapezoid one: *likely
  "trapezoid"*.
* jeong2020 (Uniformity attentive Siamese): PyTorch, SQ/MQ Market-1501 table and CUHK03-NP
  (767/700 split): *likely "standard"* (torchreid-style evaluation).
* li2019 (Self-attention guided): CUHK03 767/700 split, 256x128 inputs: *likely "standard"*.
* zheng2019 (CASN): PyTorch with a PCB backbone, CUHK03-NP: *likely "standard"*; the PCB code
  they build on exists in both flavours, so "trapezoid" is possible.

On a strong model the two variants differ by a few tenths of a point of mAP.

CUHK03: the papers above use CUHK03-NP (767/700), evaluated exactly like Market-1501 with
`evaluate_rank`. The older single-shot protocol is `evaluate_cuhk03`.

Multi-query (Market-1501 "MQ"): pool the features of several images of a query person taken by
one camera, then rank with the pooled feature::

    qf_mq, q_pids_mq, q_camids_mq = pool_multi_query(qf, q_pids, q_camids, how="mean")
    distmat = pairwise_distances(qf_mq, gf)   # reidnb.losses; correctly rounded roots
    cmc, mAP = evaluate_rank(distmat, q_pids_mq, g_pids, q_camids_mq, g_camids)

In the Market-1501 release the query folder holds one image per identity and camera, so the
extra images come from its `gt_bbox` folder (pass their features, pids and camids).

Speed (issue #3): no Python loop over queries and no sorting of whole rows. Rows are processed
in chunks. Only the ranks of the true matches matter, and only items no farther than a query's
farthest true match can precede one: those are gathered with one comparison pass, counted in
per-row buckets of distance, and compared exactly where they share a bucket with a true match.
Junk items before a hit are subtracted from its rank. Rows with infinite distances take an exact
sort-based path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence

AP_VARIANTS = ("standard", "trapezoid")
_NUM_BUCKETS = 4096  # at most, per row, between its nearest and farthest true match
_CHUNK_ELEMENTS = 1 << 22
_COMPARE_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------- input handling


def as_tensor(x: ArrayLike, name: str, device: torch.device | None = None) -> torch.Tensor:
    """A torch view of `x` (numpy arrays are shared, not copied); `name` is used in errors."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        arr = np.asarray(x)
        if arr.dtype == object:
            raise ValueError(f"{name}: expected a numeric array, got objects")
        if not arr.flags.writeable or any(s < 0 for s in arr.strides):
            arr = np.array(arr)
        t = torch.from_numpy(arr)
    return t if device is None else t.to(device)


def _distances(distmat: ArrayLike) -> torch.Tensor:
    d = as_tensor(distmat, "distmat")
    if d.ndim != 2:
        raise ValueError(f"distmat: expected a 2-D (num_query, num_gallery) matrix, got {d.ndim}-D")
    if not torch.is_floating_point(d) or d.dtype in (torch.float16, torch.bfloat16):
        d = d.to(torch.float32 if torch.is_floating_point(d) else torch.float64)
    if not bool(torch.isfinite(d.sum())) and bool(torch.isnan(d).any()):
        raise ValueError("distmat: contains NaN")
    return d.contiguous()


def _labels(x: ArrayLike, name: str, length: int, device: torch.device) -> torch.Tensor:
    t = as_tensor(x, name, device)
    if t.ndim != 1 or t.shape[0] != length:
        raise ValueError(f"{name}: expected a 1-D array of length {length}, got {tuple(t.shape)}")
    if torch.is_floating_point(t) and not bool((t == t.round()).all()):
        raise ValueError(f"{name}: expected integer labels")
    return t.to(torch.int64)


def _check_ap(ap: str) -> None:
    if ap not in AP_VARIANTS:
        raise ValueError(f"ap: expected one of {AP_VARIANTS}, got {ap!r}")


def _check_max_rank(max_rank: int) -> None:
    if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank!r}")


def _prepare(distmat, q_pids, g_pids, q_camids, g_camids):
    d = _distances(distmat)
    num_q, num_g = d.shape
    if num_g == 0:
        raise ValueError("distmat: the gallery is empty")
    return (
        d,
        _labels(q_pids, "q_pids", num_q, d.device),
        _labels(g_pids, "g_pids", num_g, d.device),
        _labels(q_camids, "q_camids", num_q, d.device),
        _labels(g_camids, "g_camids", num_g, d.device),
    )


# --------------------------------------------------------------------------- special items


def _special_items(q_pids: torch.Tensor, g_pids: torch.Tensor) -> torch.Tensor:
    """(num_q, M) gallery indices sharing the query's pid, then all pid -1 items; pad = num_g."""
    num_g = g_pids.shape[0]
    dev = g_pids.device
    order = torch.sort(g_pids, stable=True).indices
    uniq, counts = torch.unique_consecutive(g_pids[order], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.searchsorted(uniq, q_pids).clamp(max=uniq.numel() - 1)
    found = (uniq[pos] == q_pids) & (q_pids != -1)
    cnt = torch.where(found, counts[pos], 0)
    width = int(cnt.max()) if cnt.numel() else 0
    k = torch.arange(width, device=dev)
    take = (starts[pos][:, None] + k).clamp(max=num_g - 1)
    same_pid = torch.where(k < cnt[:, None], order[take], num_g)
    junk_pos = torch.searchsorted(uniq, torch.tensor([-1], device=dev))
    junk_pos = junk_pos.clamp(max=uniq.numel() - 1)
    if bool(uniq[junk_pos] == -1):
        s, c = int(starts[junk_pos]), int(counts[junk_pos])
        junk = order[s : s + c].expand(q_pids.shape[0], c)
        return torch.cat([same_pid, junk], dim=1)
    return same_pid


def _positions_by_sort(d: torch.Tensor, sp_idx: torch.Tensor) -> torch.Tensor:
    """0-based position of each special item in the stable ranking of its row (any values)."""
    c, num_g = d.shape
    order = torch.sort(d, dim=1, stable=True).indices
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(num_g, device=d.device).expand(c, num_g))
    return pos.gather(1, sp_idx.clamp(max=num_g - 1))


def _near_items(d: torch.Tensor, limit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flat indices (row-major, ascending) of the entries with ``d[i, j] <= limit[i]``.

    `mask` is a reusable bool buffer shaped like `d`. On CPU numpy's vectorised comparison and
    `flatnonzero` are several times faster than torch's.
    """
    if d.device.type == "cpu":
        m = mask.numpy()
        np.less_equal(d.numpy(), limit.numpy()[:, None], out=m)
        return torch.from_numpy(np.flatnonzero(m))
    torch.le(d, limit[:, None], out=mask)
    return torch.nonzero(mask.view(-1)).squeeze(1)


def _positions_by_buckets(
    d: torch.Tensor,
    sp_idx: torch.Tensor,
    sp_d: torch.Tensor,
    good: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """Same as `_positions_by_sort` at true matches (`good`) of finite rows, without sorting.

    Only items no farther than a row's farthest true match can precede one, so those are
    gathered first (one comparison pass). They are then put into buckets by a monotone map of
    the distance (float rounding keeps it monotone): an item in a lower bucket than a true
    match surely ranks before it, and items sharing its bucket are compared exactly (distance,
    then gallery index). `mask` is a reusable bool buffer at least as large as `d`.
    """
    c, num_g = d.shape
    dev = d.device
    t_max = torch.where(good, sp_d, -torch.inf).amax(dim=1)
    t_min = torch.where(good, sp_d, torch.inf).amin(dim=1)
    f = _near_items(d, t_max, mask[:c])
    r = torch.div(f, num_g, rounding_mode="floor")
    v = d.view(-1).index_select(0, f)
    # enough buckets for a few items each
    nb = int(min(_NUM_BUCKETS, max(64, 2 * f.numel() // max(c, 1))))
    # bucket map: [t_min, t_max] -> [1, nb - 1]; below t_min -> 0
    spread = (t_max - t_min).to(torch.float64)
    spread = torch.maximum(spread, 1e-6 * t_min.abs().to(torch.float64))
    scale = torch.where(spread > 0, (nb - 2) / spread, 1.0)
    scale = torch.where(torch.isfinite(scale), scale, 1.0)
    offset = torch.where(torch.isfinite(t_min), t_min.to(torch.float64) - 1.0 / scale, 0.0)
    work = v if v.dtype == torch.float32 else v.to(torch.float32)
    buckets = work - offset.to(torch.float32).index_select(0, r)
    buckets.mul_(scale.to(torch.float32).index_select(0, r))
    key = buckets.clamp_(0, nb - 1).long() + r * nb  # row * nb + bucket
    counts = torch.bincount(key, minlength=c * nb).view(c, nb)
    below = (torch.cumsum(counts, 1) - counts).view(-1)  # items in lower buckets, same row
    # bucket of each true match: find it among the gathered items
    sp_flat = torch.arange(c, device=dev)[:, None] * num_g + sp_idx.clamp(max=num_g - 1)
    where = torch.searchsorted(f, sp_flat.view(-1)).clamp(max=max(f.numel() - 1, 0))
    sp_key = torch.where(good, key[where].view(c, -1) if f.numel() else 0, -1)
    pos = torch.where(good, below[sp_key.clamp(min=0)], 0)
    flag = torch.zeros(c * nb, dtype=torch.bool, device=dev)
    flag[sp_key[good]] = True
    shared = torch.nonzero(flag[key]).squeeze(1)
    width = sp_idx.shape[1]
    step = max(1, _COMPARE_ELEMENTS // max(1, width))
    for s in range(0, shared.numel(), step):
        e = shared[s : s + step]
        row, col = r[e], f[e] - r[e] * num_g
        x_d, x_key = v[e][:, None], key[e][:, None]
        t_d, t_idx = sp_d[row], sp_idx[row]
        before = (x_d < t_d) | ((x_d == t_d) & (col[:, None] < t_idx))
        pos.index_add_(0, row, (before & (x_key == sp_key[row])).long())
    return pos


def _hit_ranks(
    d: torch.Tensor,
    q_pids: torch.Tensor,
    g_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_camids: torch.Tensor,
    method: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of every true match, junk removed: ((num_q, M) int64 padded with 0, (num_q,) n_good).

    Columns run over true matches in rank order (the i-th column is the i-th hit).
    """
    num_q, num_g = d.shape
    specials = _special_items(q_pids, g_pids)
    width = specials.shape[1]
    ranks = torch.zeros(num_q, width, dtype=torch.int64, device=d.device)
    n_good = torch.zeros(num_q, dtype=torch.int64, device=d.device)
    if width == 0:
        return ranks, n_good
    step = max(1, _CHUNK_ELEMENTS // num_g)
    if method == "auto":
        finite = bool(torch.isfinite(d.sum())) or bool(torch.isfinite(d).all())
        method = "buckets" if finite else "sort"
    if method == "buckets":
        mask = torch.empty(min(step, num_q), num_g, dtype=torch.bool, device=d.device)
    for a in range(0, num_q, step):
        b = min(num_q, a + step)
        rows = d[a:b]
        sp_idx = specials[a:b]
        sp_ok = sp_idx < num_g
        safe = sp_idx.clamp(max=num_g - 1)
        sp_d = torch.where(sp_ok, rows.gather(1, safe), torch.inf)
        # put special items in ranking order: by distance, then gallery index
        for key in (sp_idx, None):  # by gallery index, then (stable) by distance
            order = torch.sort(sp_d if key is None else key, dim=1, stable=True).indices
            sp_idx, sp_d, sp_ok = (t.gather(1, order) for t in (sp_idx, sp_d, sp_ok))
        safe = sp_idx.clamp(max=num_g - 1)
        good = sp_ok & (g_pids[safe] == q_pids[a:b, None]) & (g_camids[safe] != q_camids[a:b, None])
        junk = sp_ok & ~good
        if method == "sort":
            pos = _positions_by_sort(rows, sp_idx)
        else:
            pos = _positions_by_buckets(rows, sp_idx, sp_d, good, mask)
        junk_before = torch.cumsum(junk.long(), dim=1) - junk.long()
        rank = pos + 1 - junk_before
        # move hits to the front, keeping their order
        front = torch.sort((~good).to(torch.int8), dim=1, stable=True).indices
        good_sorted = good.gather(1, front)
        ranks[a:b] = torch.where(good_sorted, rank.gather(1, front), 0)
        n_good[a:b] = good.sum(dim=1)
    return ranks, n_good


def _average_precision(ranks: torch.Tensor, n_good: torch.Tensor, ap: str) -> torch.Tensor:
    """AP per query from padded hit ranks (see the module docstring for both variants)."""
    r = ranks.to(torch.float64)
    i = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64, device=ranks.device)
    hit = ranks > 0
    precision = torch.where(hit, i / r.clamp(min=1), 0.0)
    if ap == "trapezoid":
        before = torch.where(r > 1, (i - 1) / (r - 1).clamp(min=1), 1.0)
        precision = torch.where(hit, (before + precision) / 2, 0.0)
    return precision.sum(dim=1) / n_good.clamp(min=1).to(torch.float64)


def _cmc_from_first(first: torch.Tensor, max_rank: int) -> np.ndarray:
    counts = torch.bincount(first.clamp(max=max_rank + 1), minlength=max_rank + 2)
    cmc = torch.cumsum(counts[1 : max_rank + 1], 0).to(torch.float64) / first.numel()
    return cmc.cpu().numpy()


def _no_valid_query(num_q: int) -> ValueError:
    return ValueError(
        f"evaluation: none of the {num_q} queries has a true match in the gallery (same pid, "
        "other camera); check that query and gallery labels come from the same data set"
    )


# --------------------------------------------------------------------------- public API


def evaluate_rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    ap: str = "standard",
) -> tuple[np.ndarray, float]:
    """CMC curve and mAP under the Market-1501 protocol (also DukeMTMC-reID and CUHK03-NP).

    Args:
        distmat: (num_query, num_gallery) distances, numpy or torch (a CUDA tensor stays on the
            GPU); smaller means more similar. NaN is rejected.
        q_pids, g_pids, q_camids, g_camids: integer labels. Gallery pid -1 is junk (ignored),
            pid 0 a distractor (always a wrong match).
        max_rank: length of the returned CMC curve.
        ap: "standard" (non-interpolated) or "trapezoid" (Market-1501 MATLAB code); see the
            module docstring for both formulas and which paper likely used which.

    Returns:
        (cmc, mAP): cmc a float64 numpy array of length `max_rank`, mAP a float, both fractions,
        averaged over queries that have at least one true match.
    """
    _check_ap(ap)
    _check_max_rank(max_rank)
    d, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    ranks, n_good = _hit_ranks(d, qp, gp, qc, gc)
    kept = n_good > 0
    if not bool(kept.any()):
        raise _no_valid_query(d.shape[0])
    cmc = _cmc_from_first(ranks[kept, 0], int(max_rank))
    m_ap = _average_precision(ranks[kept], n_good[kept], ap).mean()
    return cmc, float(m_ap)


def single_shot_keys(seed: int, query_index: int, num_repeats: int, num_gallery: int) -> np.ndarray:
    """Random keys deciding which gallery image represents each identity for one query.

    In repeat r the image of an identity with the smallest key is kept. Each query has its own
    generator, seeded by (seed, query_index), so results do not depend on chunking.
    """
    rng = np.random.default_rng([seed, query_index])
    return rng.random((num_repeats, num_gallery))


def evaluate_cuhk03(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    num_repeats: int = 10,
    seed: int = 0,
    ap: str = "standard",
) -> tuple[np.ndarray, float]:
    """Classic CUHK03 single-shot evaluation (Li et al., CVPR 2014; torchreid's `eval_cuhk03`).

    For each query, after the same removals as `evaluate_rank`, one gallery image per identity
    is drawn at random (see `single_shot_keys`; distractors, pid 0, form one group); the query's
    true match is ranked among the drawn images. The CMC is averaged over `num_repeats` draws.
    With a single true match left, AP would just be 1/rank, so mAP is computed on the full
    ranking, as torchreid does. The CUHK03-NP (767/700) protocol used by the book's papers is
    `evaluate_rank`, not this.

    Returns:
        (cmc, mAP) as in `evaluate_rank`.
    """
    _check_ap(ap)
    _check_max_rank(max_rank)
    if not isinstance(num_repeats, (int, np.integer)) or num_repeats < 1:
        raise ValueError(f"num_repeats: expected a positive integer, got {num_repeats!r}")
    d, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = d.shape
    ranks, n_good = _hit_ranks(d, qp, gp, qc, gc)
    kept = n_good > 0
    if not bool(kept.any()):
        raise _no_valid_query(num_q)
    _, group = torch.unique(gp, return_inverse=True)
    num_groups = int(group.max()) + 1
    gallery_index = torch.arange(num_g, device=d.device)
    cmc_sum = torch.zeros(max_rank, dtype=torch.float64, device=d.device)
    kept_idx = torch.nonzero(kept).flatten().cpu().numpy()
    step = max(1, _CHUNK_ELEMENTS // (num_g * num_repeats))
    for s in range(0, kept_idx.size, step):
        qs = kept_idx[s : s + step]
        keys = np.stack([single_shot_keys(seed, int(q), num_repeats, num_g) for q in qs], axis=1)
        keys = torch.from_numpy(keys).to(d.device)  # (repeats, c, num_g)
        qsel = torch.from_numpy(qs).to(d.device)
        rows = d[qsel]
        usable = ~(((gp == qp[qsel, None]) & (gc == qc[qsel, None])) | (gp == -1))
        keys = torch.where(usable, keys, torch.inf)
        best = torch.full((num_repeats, qs.size, num_groups), torch.inf, dtype=keys.dtype,
                          device=d.device)
        idx = group.expand_as(keys)
        best.scatter_reduce_(2, idx, keys, reduce="amin")
        chosen = usable & (keys == best.gather(2, idx))
        is_pos = chosen & (gp == qp[qsel, None])
        pos_col = torch.argmax(is_pos.to(torch.int8), dim=2)  # (repeats, c)
        pos_d = rows.gather(1, pos_col.T).T[:, :, None]
        before = (rows < pos_d) | ((rows == pos_d) & (gallery_index < pos_col[:, :, None]))
        rank = (chosen & before).sum(dim=2) + 1
        counts = torch.bincount(rank.flatten().clamp(max=max_rank + 1), minlength=max_rank + 2)
        cmc_sum += torch.cumsum(counts[1 : max_rank + 1], 0).to(torch.float64)
    cmc = (cmc_sum / (kept_idx.size * num_repeats)).cpu().numpy()
    m_ap = _average_precision(ranks[kept], n_good[kept], ap).mean()
    return cmc, float(m_ap)


def pool_multi_query(
    qf: ArrayLike, q_pids: ArrayLike, q_camids: ArrayLike, how: str = "mean"
) -> tuple:
    """Pool query features per (pid, camera) for Market-1501 multi-query evaluation.

    Args:
        qf: (num_images, dim) features, numpy or torch.
        q_pids, q_camids: labels of those images.
        how: "mean" (average pooling) or "max" (element-wise max), the two poolings of the
            Market-1501 paper (Zheng et al., ICCV 2015).

    Returns:
        (pooled, pids, camids): one row per distinct (pid, camera), sorted by pid then camera,
        of the same kind (numpy or torch, same device) as `qf`. See the module docstring for
        the whole multi-query recipe.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"how: expected 'mean' or 'max', got {how!r}")
    f = as_tensor(qf, "qf")
    if f.ndim != 2:
        raise ValueError(f"qf: expected a 2-D (num_images, dim) matrix, got {f.ndim}-D")
    pids = _labels(q_pids, "q_pids", f.shape[0], f.device)
    cams = _labels(q_camids, "q_camids", f.shape[0], f.device)
    if f.shape[0] == 0:
        raise ValueError("qf: no query features to pool")
    pairs, group = torch.unique(torch.stack([pids, cams], dim=1), dim=0, return_inverse=True)
    work = f if torch.is_floating_point(f) else f.to(torch.float32)
    idx = group[:, None].expand_as(work)
    out = torch.zeros(pairs.shape[0], work.shape[1], dtype=work.dtype, device=work.device)
    if how == "mean":
        out.index_add_(0, group, work)
        out /= torch.bincount(group, minlength=pairs.shape[0]).to(work.dtype)[:, None]
    else:
        out.scatter_reduce_(0, idx, work, reduce="amax", include_self=False)
    if isinstance(qf, torch.Tensor):
        return out, pairs[:, 0], pairs[:, 1]
    return out.numpy(), pairs[:, 0].numpy(), pairs[:, 1].numpy()


def same_camera_gallery(
    q_pids: ArrayLike, q_camids: ArrayLike, g_pids: ArrayLike, g_camids: ArrayLike
) -> np.ndarray:
    """Boolean mask over the gallery: the images of a query's person taken by the query's own
    camera (pid > 0), the stand-in for Market-1501's `gt_bbox` images in a multi-query
    evaluation of a set whose query folder holds one image per (pid, camera), as SynthReID's::

        extra = same_camera_gallery(q_pids, q_camids, g_pids, g_camids)
        qf_mq, q_pids_mq, q_camids_mq = pool_multi_query(
            cat([qf, gf[extra]]), cat([q_pids, g_pids[extra]]), cat([q_camids, g_camids[extra]]))

    The protocol removes those images from each pooled query's ranking (same pid, same
    camera), so pooling them shows the query more views of its person without handing it a
    true match."""
    qp = np.asarray(q_pids, dtype=np.int64).reshape(-1)
    qc = np.asarray(q_camids, dtype=np.int64).reshape(-1)
    gp = np.asarray(g_pids, dtype=np.int64).reshape(-1)
    gc = np.asarray(g_camids, dtype=np.int64).reshape(-1)
    if len(qp) != len(qc) or len(gp) != len(gc):
        raise ValueError(f"same_camera_gallery: {len(qp)} q_pids for {len(qc)} q_camids, "
                         f"{len(gp)} g_pids for {len(gc)} g_camids")
    wanted = {(int(p), int(c)) for p, c in zip(qp, qc) if p > 0}
    return np.fromiter(((int(p), int(c)) in wanted and p > 0 for p, c in zip(gp, gc)),
                       dtype=bool, count=len(gp))


def nearest_partners(
    distmat: ArrayLike, q_pids: ArrayLike, q_camids: ArrayLike, g_pids: ArrayLike,
    g_camids: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the gallery index of its nearest true match (same pid, another camera)
    and of its nearest image of another person (a hard negative; distractors, pid 0, and junk,
    pid -1, left out); -1 where there is none. Ties keep gallery order."""
    d = torch.as_tensor(np.asarray(distmat, dtype=np.float64))
    qp = np.asarray(q_pids).reshape(-1)
    qc = np.asarray(q_camids).reshape(-1)
    gp = np.asarray(g_pids).reshape(-1)
    gc = np.asarray(g_camids).reshape(-1)
    if d.shape != (len(qp), len(gp)) or len(qc) != len(qp) or len(gc) != len(gp):
        raise ValueError(f"nearest_partners: distmat {tuple(d.shape)} for {len(qp)} queries "
                         f"and {len(gp)} gallery items")
    pos, neg = np.full(len(qp), -1), np.full(len(qp), -1)
    for i in range(len(qp)):
        order = np.argsort(d[i].numpy(), kind="stable")
        hit = order[(gp[order] == qp[i]) & (gc[order] != qc[i])]
        miss = order[(gp[order] != qp[i]) & (gp[order] > 0)]
        pos[i] = hit[0] if len(hit) else -1
        neg[i] = miss[0] if len(miss) else -1
    return pos, neg


def best_ap(first_rank: int, matches: int) -> float:
    """The largest standard AP a query can have when its first true match is at `first_rank`
    (1-based) and it has `matches` true matches: every other match right after the first,
    AP = (1/n) sum_{i=1..n} i / (first_rank + i - 1)."""
    if first_rank < 1 or matches < 1:
        raise ValueError(f"best_ap: first_rank and matches must be >= 1, got {first_rank}, "
                         f"{matches}")
    return sum(i / (first_rank + i - 1) for i in range(1, matches + 1)) / matches


def map_cap_from_cmc(cmc: dict[int, float], matches: int) -> float:
    """The largest mAP (%) consistent with a printed CMC at a few ranks (`cmc`: rank -> %, e.g.
    {1: 46.9, 5: 72.0, 10: 80.5, 20: 86.4}) when no query has more than `matches` true matches.

    The queries whose first match falls between two printed ranks k < k' are given their first
    match at k + 1, the best case, and those beyond the last printed rank that rank + 1; each
    share of queries then counts with `best_ap`. A query's best AP grows with its number of
    matches, so `matches` must bound every query's. Used to check li2019 Table 3's CUHK03 rows,
    whose mAP exceeds rank-1 (chapter 5)."""
    ranks = sorted(cmc)
    if not ranks or ranks[0] != 1:
        raise ValueError(f"map_cap_from_cmc: the CMC must start at rank 1, got ranks {ranks}")
    values = [cmc[r] for r in ranks]
    if any(b < a for a, b in zip(values, values[1:])) or not 0 <= values[-1] <= 100:
        raise ValueError(f"map_cap_from_cmc: a CMC is a non-decreasing share in [0, 100], got "
                         f"{dict(zip(ranks, values))}")
    total, below = 0.0, 0.0
    starts = [1] + [r + 1 for r in ranks[:-1]]
    for start, rank in zip(starts, ranks):
        share = cmc[rank] - below
        total += share * best_ap(start, matches)
        below = cmc[rank]
    total += (100.0 - below) * best_ap(ranks[-1] + 1, matches)
    return total
