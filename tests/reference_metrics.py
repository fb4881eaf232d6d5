"""Plain, slow reference implementations of the metrics, written from their definitions.

They loop over queries (and over hits, and over items for re-ranking) so that each step can be
read against its definition; `reidnb.metrics` must reproduce them. Used by tests/test_metrics.py
and benchmarks/bench_eval.py. Ties in a ranking are broken by gallery order (stable sort), the
same rule `reidnb.metrics` documents.
"""

from __future__ import annotations

import numpy as np

from reidnb.metrics.rank import single_shot_keys


def _query_hits(
    dist_row: np.ndarray, q_pid: int, q_cam: int, g_pids: np.ndarray, g_camids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ranking of one query: (hit flags, junk flags) in rank order, junk not removed."""
    order = np.argsort(dist_row, kind="stable")
    pids, cams = g_pids[order], g_camids[order]
    junk = ((pids == q_pid) & (cams == q_cam)) | (pids == -1)
    hits = (pids == q_pid) & ~junk
    return hits, junk


def reference_ap(hit_ranks: np.ndarray, variant: str) -> float:
    """AP of one query from the 1-based ranks (junk removed) of its true matches."""
    n_good = len(hit_ranks)
    total = 0.0
    for i, r in enumerate(hit_ranks, start=1):
        precision = i / r
        if variant == "standard":
            total += precision
        else:  # trapezoid: mean of the precision just before this hit and at it
            before = 1.0 if r == 1 else (i - 1) / (r - 1)
            total += (before + precision) / 2
    return total / n_good


def reference_ap_matlab_loop(hits: np.ndarray, junk: np.ndarray) -> float:
    """Interpolated AP by walking the ranking as the Market-1501 MATLAB `compute_AP` does.

    A junk position is skipped without moving the rank; at every other position the recall step
    times the mean of the previous and current precision is added.
    """
    n_good = int(hits.sum())
    ap, old_recall, old_precision = 0.0, 0.0, 1.0
    n_hit, n_seen, found = 0, 0, 0
    for is_hit, is_junk in zip(hits, junk):
        if is_hit:
            found += 1
        if is_junk:
            continue
        if is_hit:
            n_hit += 1
        recall = n_hit / n_good
        precision = n_hit / (n_seen + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision = recall, precision
        n_seen += 1
        if found == n_good:
            break
    return ap


def reference_evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    ap: str = "standard",
) -> tuple[np.ndarray, float]:
    """Market-1501 CMC and mAP, one query at a time."""
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        hits, junk = _query_hits(distmat[q], q_pids[q], q_camids[q], g_pids, g_camids)
        kept = hits[~junk]
        if not kept.any():
            continue
        hit_ranks = np.flatnonzero(kept) + 1
        cmc = np.zeros(max_rank)
        if hit_ranks[0] <= max_rank:
            cmc[hit_ranks[0] - 1 :] = 1.0
        all_cmc.append(cmc)
        all_ap.append(reference_ap(hit_ranks, ap))
    if not all_cmc:
        raise ValueError("no query has a valid match")
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap))


def reference_evaluate_cuhk03(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    num_repeats: int = 10,
    seed: int = 0,
    ap: str = "standard",
) -> tuple[np.ndarray, float]:
    """Classic CUHK03 single-shot CMC (one sampled gallery image per identity) and full-list mAP."""
    num_g = distmat.shape[1]
    all_cmc, all_ap = [], []
    for q in range(distmat.shape[0]):
        q_pid, q_cam = q_pids[q], q_camids[q]
        junk = ((g_pids == q_pid) & (g_camids == q_cam)) | (g_pids == -1)
        if not ((g_pids == q_pid) & ~junk).any():
            continue
        keys = single_shot_keys(seed, q, num_repeats, num_g)
        cmc = np.zeros(max_rank)
        for r in range(num_repeats):
            chosen = []
            for pid in np.unique(g_pids[~junk]):
                members = np.flatnonzero((g_pids == pid) & ~junk)
                chosen.append(members[np.argmin(keys[r, members])])
            chosen = np.sort(np.asarray(chosen))
            order = chosen[np.argsort(distmat[q, chosen], kind="stable")]
            rank = int(np.flatnonzero(g_pids[order] == q_pid)[0]) + 1
            if rank <= max_rank:
                cmc[rank - 1 :] += 1.0
        all_cmc.append(cmc / num_repeats)
        hits, junk_sorted = _query_hits(distmat[q], q_pid, q_cam, g_pids, g_camids)
        all_ap.append(reference_ap(np.flatnonzero(hits[~junk_sorted]) + 1, ap))
    if not all_cmc:
        raise ValueError("no query has a valid match")
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap))


def reference_re_ranking(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    expansion: str = "strict",
) -> np.ndarray:
    """k-reciprocal re-ranking (Zhong et al., CVPR 2017) with the loop structure of the authors'
    public numpy code: full dense matrices, one item at a time. Only the argsort is made stable."""
    num_q = q_g_dist.shape[0]
    full = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1),
         np.concatenate([q_g_dist.T, g_g_dist], axis=1)],
        axis=0,
    )
    full = np.power(full, 2).astype(np.float32)
    full = np.transpose(1.0 * full / np.max(full, axis=0))
    num_all = full.shape[0]
    ranking = np.argsort(full, axis=1, kind="stable").astype(np.int32)
    half = int(np.around(k1 / 2.0))

    def reciprocal(item: int, k: int) -> np.ndarray:
        forward = ranking[item, : k + 1]
        backward = ranking[forward, : k + 1]
        return forward[np.where(backward == item)[0]]

    weights = np.zeros_like(full, dtype=np.float32)
    for i in range(num_all):
        near = reciprocal(i, k1)
        expanded = near
        for cand in near:
            cand_near = reciprocal(cand, half)
            shared = len(np.intersect1d(cand_near, near))
            bound = 2.0 / 3 * len(cand_near)
            if (shared > bound) if expansion == "strict" else (shared >= bound):
                expanded = np.append(expanded, cand_near)
        expanded = np.unique(expanded)
        w = np.exp(-full[i, expanded])
        weights[i, expanded] = w / np.sum(w)
    full = full[:num_q]
    if k2 != 1:
        smoothed = np.zeros_like(weights, dtype=np.float32)
        for i in range(num_all):
            smoothed[i, :] = np.mean(weights[ranking[i, :k2], :], axis=0)
        weights = smoothed
    inverted = [np.where(weights[:, k] != 0)[0] for k in range(num_all)]
    jaccard = np.zeros_like(full, dtype=np.float32)
    for i in range(num_q):
        overlap = np.zeros((1, num_all), dtype=np.float32)
        for k in np.where(weights[i, :] != 0)[0]:
            rows = inverted[k]
            overlap[0, rows] = overlap[0, rows] + np.minimum(weights[i, k], weights[rows, k])
        jaccard[i] = 1 - overlap / (2.0 - overlap)
    final = jaccard * (1 - lambda_value) + full * lambda_value
    return final[:num_q, num_q:]
