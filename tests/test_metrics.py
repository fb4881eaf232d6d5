"""Tests of reidnb.metrics: hand-worked rankings, agreement with tests/reference_metrics.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference_metrics import (
    reference_ap_matlab_loop,
    reference_evaluate_cuhk03,
    reference_evaluate_rank,
    reference_re_ranking,
)
from reidnb.metrics import (
    evaluate_cuhk03,
    evaluate_rank,
    pool_multi_query,
    re_ranking,
)
from reidnb.metrics.rank import _hit_ranks, _prepare

# --------------------------------------------------------------------------- hand-worked case
# Two queries, five gallery images (distances give the ranking directly).
#
# query 0: pid 1, cam 0.  Gallery by distance: g0 (pid 1, cam 0 -> junk, removed),
#   g1 (pid 2, wrong), g2 (pid 1, cam 1, HIT), g3 (pid 0 distractor, wrong), g4 (pid 1, cam 2, HIT)
#   After removing g0 the ranking is: wrong, HIT, wrong, HIT -> hits at ranks 2 and 4.
#   CMC: first hit at rank 2 -> [0, 1, 1, 1, 1].
#   standard AP  = (1/2) * (1/2 + 2/4) = 0.5
#   trapezoid AP = (1/2) * [ (0/1 + 1/2)/2 + (1/3 + 2/4)/2 ] = (1/2) * (0.25 + 0.41666..) = 1/3
# query 1: pid 2, cam 1.  Gallery by distance: g1 (pid 2, cam 1 -> junk), g3, g2, g0, g4:
#   pid 2 has no image in another camera -> no true match -> query skipped.
HAND_DIST = np.array(
    [[0.1, 0.2, 0.3, 0.4, 0.5],
     [0.4, 0.1, 0.3, 0.2, 0.5]], dtype=np.float32
)
HAND_Q_PIDS, HAND_Q_CAMS = np.array([1, 2]), np.array([0, 1])
HAND_G_PIDS, HAND_G_CAMS = np.array([1, 2, 1, 0, 1]), np.array([0, 1, 1, 2, 2])


def test_evaluate_rank_hand_worked_standard():
    cmc, m_ap = evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0, 1.0, 1.0])
    assert m_ap == pytest.approx(0.5, abs=1e-12)


def test_evaluate_rank_hand_worked_trapezoid():
    _, m_ap = evaluate_rank(
        HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, 5, ap="trapezoid"
    )
    assert m_ap == pytest.approx(1.0 / 3.0, abs=1e-12)


def test_evaluate_rank_discards_same_camera():
    # if g0 were in another camera it would be a hit at rank 1
    g_cams = HAND_G_CAMS.copy()
    g_cams[0] = 3
    cmc, m_ap = evaluate_rank(
        HAND_DIST[:1], HAND_Q_PIDS[:1], HAND_G_PIDS, HAND_Q_CAMS[:1], g_cams, 3
    )
    np.testing.assert_array_equal(cmc, [1.0, 1.0, 1.0])
    # hits at ranks 1, 3, 5: (1/1 + 2/3 + 3/5) / 3
    assert m_ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 3, abs=1e-12)


def test_evaluate_rank_same_pid_same_camera_is_junk():
    # query: pid 1, camera 0. Gallery by distance: g0 (pid 1, camera 0: junk), g1 (pid 2: a wrong
    # match), g2 (pid 1, camera 1: the only true match). With g0 removed from the ranking the
    # true match is at rank 2: CMC [0, 1, 1], AP 1/2.
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    cmc, m_ap = evaluate_rank(dist, [1], [1, 2, 1], [0], [0, 1, 1], max_rank=3)
    assert cmc[0] == 0.0, (
        "junk filter: a gallery image with the query's pid AND camera was counted as a true "
        f"match (CMC {cmc.tolist()}); a true match must come from another camera"
    )
    assert cmc.tolist() == [0.0, 1.0, 1.0] and m_ap == pytest.approx(0.5, abs=1e-12), (
        "junk filter: the gallery image with the query's pid and camera must be removed from "
        "the ranking, not kept as a wrong match ahead of the true match (expected CMC "
        f"[0, 1, 1] and AP 0.5, the true match at rank 2; got CMC {cmc.tolist()}, AP {m_ap})"
    )


def test_evaluate_rank_cmc_counts_top_k_plus_one():
    # no junk, the only true match nearest: rank-1 accuracy is 1, cmc[0] included
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    cmc, _ = evaluate_rank(dist, [1], [1, 2, 3], [0], [1, 1, 1], max_rank=3)
    assert cmc.tolist() == [1.0, 1.0, 1.0], (
        f"CMC off by one: cmc[k] is the share of queries whose first true match is in the top "
        f"k + 1, so a true match at rank 1 gives cmc[0] = 1; got {cmc.tolist()}"
    )


def test_evaluate_rank_skips_query_without_match():
    # query 1 alone has no true match: nothing left to evaluate
    with pytest.raises(ValueError, match="none of the 1 queries has a true match"):
        evaluate_rank(HAND_DIST[1:], HAND_Q_PIDS[1:], HAND_G_PIDS, HAND_Q_CAMS[1:], HAND_G_CAMS)


def test_evaluate_rank_gallery_junk_pid_is_ignored():
    # relabel the wrong match at rank 1 (g1) as junk: hits move to ranks 1 and 3
    g_pids = HAND_G_PIDS.copy()
    g_pids[1] = -1
    cmc, m_ap = evaluate_rank(
        HAND_DIST[:1], HAND_Q_PIDS[:1], g_pids, HAND_Q_CAMS[:1], HAND_G_CAMS, 2
    )
    assert cmc.tolist() == [1.0, 1.0] and m_ap == pytest.approx((1 + 2 / 3) / 2, abs=1e-12), (
        "junk filter: gallery pid -1 (junk) and the image with the query's pid and camera must "
        "be removed from the ranking, not kept as wrong matches ahead of the hits (expected "
        f"hits at ranks 1 and 3: CMC [1, 1], AP 0.8333; got CMC {cmc.tolist()}, AP {m_ap:.4f})"
    )


def test_evaluate_rank_ties_follow_gallery_order():
    # equal distances: the earlier gallery index ranks first
    dist = np.zeros((1, 3), dtype=np.float32)
    cmc, m_ap = evaluate_rank(dist, [5], [7, 5, 5], [0], [1, 1, 1], 3)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0])
    assert m_ap == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)


def test_evaluate_rank_rejects_bad_input():
    with pytest.raises(ValueError, match="ap: expected one of"):
        evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS, ap="11pt")
    with pytest.raises(ValueError, match="g_pids: expected a 1-D array of length 5"):
        evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS[:4], HAND_Q_CAMS, HAND_G_CAMS)
    bad = HAND_DIST.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="distmat: contains NaN"):
        evaluate_rank(bad, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)


# --------------------------------------------------------------------------- random problems


def _random_problem(rng: np.random.Generator, ties: bool):
    nq, ng = int(rng.integers(2, 40)), int(rng.integers(5, 120))
    nid, ncam = int(rng.integers(2, 10)), int(rng.integers(2, 5))
    q_pids = rng.integers(1, nid + 1, nq)
    g_pids = rng.integers(-1, nid + 1, ng)  # -1 junk and 0 distractors included
    q_cams, g_cams = rng.integers(0, ncam, nq), rng.integers(0, ncam, ng)
    if ties:
        dist = rng.integers(0, 6, (nq, ng)).astype(np.float32)
    else:
        dist = rng.random((nq, ng)).astype(np.float32)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
@pytest.mark.parametrize("ties", [False, True])
def test_evaluate_rank_matches_reference(ap, ties):
    rng = np.random.default_rng(7 + ties)
    for _ in range(40):
        problem = _random_problem(rng, ties)
        try:
            want = reference_evaluate_rank(*problem, max_rank=20, ap=ap)
        except ValueError:
            with pytest.raises(ValueError, match="true match"):
                evaluate_rank(*problem, max_rank=20, ap=ap)
            continue
        cmc, m_ap = evaluate_rank(*problem, max_rank=20, ap=ap)
        np.testing.assert_array_equal(cmc, want[0])
        assert m_ap == pytest.approx(want[1], rel=1e-12)


def test_evaluate_rank_bucket_path_equals_sort_path():
    rng = np.random.default_rng(3)
    for ties in (False, True):
        problem = _prepare(*_random_problem(rng, ties))
        by_sort = _hit_ranks(*problem, method="sort")
        by_buckets = _hit_ranks(*problem, method="buckets")
        assert torch.equal(by_sort[0], by_buckets[0]) and torch.equal(by_sort[1], by_buckets[1])


def test_evaluate_rank_infinite_distances_match_reference():
    rng = np.random.default_rng(11)
    dist, *labels = _random_problem(rng, ties=False)
    dist[:, ::3] = np.inf
    want = reference_evaluate_rank(dist, *labels, max_rank=10)
    cmc, m_ap = evaluate_rank(dist, *labels, max_rank=10)
    np.testing.assert_array_equal(cmc, want[0])
    assert m_ap == pytest.approx(want[1], rel=1e-12)


def test_evaluate_rank_trapezoid_equals_matlab_walk():
    # the closed form used by evaluate_rank against a literal walk of the ranking
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(3, 40))
        hits = rng.random(n) < 0.3
        junk = ~hits & (rng.random(n) < 0.2)
        if not hits.any():
            continue
        dist = np.arange(n, dtype=np.float32)[None, :]
        g_pids = np.where(hits, 1, 2)
        g_cams = np.where(junk, 0, 1)
        g_pids[junk] = 1  # junk = same pid, same camera as the query
        _, m_ap = evaluate_rank(dist, [1], g_pids, [0], g_cams, ap="trapezoid")
        assert m_ap == pytest.approx(reference_ap_matlab_loop(hits, junk), rel=1e-12)


def test_evaluate_rank_torch_input_equals_numpy_input():
    rng = np.random.default_rng(2)
    dist, *labels = _random_problem(rng, ties=False)
    while True:  # make sure at least one query is valid
        try:
            want = evaluate_rank(dist, *labels)
            break
        except ValueError:
            dist, *labels = _random_problem(rng, ties=False)
    got = evaluate_rank(torch.from_numpy(dist), *[torch.from_numpy(x) for x in labels])
    np.testing.assert_array_equal(got[0], want[0])
    assert got[1] == want[1]


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
def test_evaluate_cuhk03_matches_reference(ap):
    rng = np.random.default_rng(13)
    checked = 0
    for _ in range(25):
        problem = _random_problem(rng, ties=bool(rng.integers(0, 2)))
        try:
            want = reference_evaluate_cuhk03(*problem, max_rank=10, num_repeats=4, seed=3, ap=ap)
        except ValueError:
            continue
        cmc, m_ap = evaluate_cuhk03(*problem, max_rank=10, num_repeats=4, seed=3, ap=ap)
        np.testing.assert_allclose(cmc, want[0], rtol=0, atol=1e-12)
        assert m_ap == pytest.approx(want[1], rel=1e-12)
        checked += 1
    assert checked > 10


def test_evaluate_cuhk03_single_image_per_identity_is_deterministic():
    # gallery: one image of the query's pid (cam 1) ranked 2nd behind one other identity, so
    # every draw is the same: rank 2
    dist = np.array([[0.2, 0.1, 0.3]], dtype=np.float32)
    cmc, m_ap = evaluate_cuhk03(dist, [1], [1, 2, 3], [0], [1, 1, 1], max_rank=3, num_repeats=5)
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0])
    assert m_ap == pytest.approx(0.5)


def test_evaluate_cuhk03_samples_one_image_per_identity():
    # pid 2 has two images, one nearer and one farther than the true match: in each draw the
    # true match is 1st or 2nd, so cmc[0] is strictly between 0 and 1 and cmc[1] is 1
    dist = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    cmc, _ = evaluate_cuhk03(dist, [1], [2, 1, 2], [0], [1, 1, 1], max_rank=2, num_repeats=50)
    assert 0.0 < cmc[0] < 1.0 and cmc[1] == 1.0


# --------------------------------------------------------------------------- multi-query


def test_pool_multi_query_mean_and_max():
    qf = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0], [0.0, 1.0]], dtype=np.float32)
    pids, cams = np.array([4, 4, 4, 2]), np.array([1, 1, 0, 1])
    pooled, p, c = pool_multi_query(qf, pids, cams, how="mean")
    np.testing.assert_array_equal(p, [2, 4, 4])
    np.testing.assert_array_equal(c, [1, 0, 1])
    np.testing.assert_allclose(pooled, [[0.0, 1.0], [5.0, 5.0], [2.0, 1.0]])
    pooled_max, _, _ = pool_multi_query(torch.from_numpy(qf), pids, cams, how="max")
    assert isinstance(pooled_max, torch.Tensor)
    np.testing.assert_allclose(pooled_max.numpy(), [[0.0, 1.0], [5.0, 5.0], [3.0, 2.0]])
    with pytest.raises(ValueError, match="how: expected 'mean' or 'max'"):
        pool_multi_query(qf, pids, cams, how="median")


def test_same_camera_gallery_marks_the_query_person_in_the_query_camera():
    from reidnb.metrics import same_camera_gallery

    # queries: pid 4 in cam 1, pid 2 in cam 3; gallery: pid 4 cam 1 (yes), pid 4 cam 2 (a true
    # match: no), pid 2 cam 3 (yes), pid 0 cam 1 (distractor: no), pid -1 cam 3 (junk: no)
    mask = same_camera_gallery([4, 2], [1, 3], [4, 4, 2, 0, -1], [1, 2, 3, 1, 3])
    np.testing.assert_array_equal(mask, [True, False, True, False, False])
    qf = np.array([[0.0, 0.0], [4.0, 4.0]], dtype=np.float32)
    gf = np.array([[2.0, 2.0], [9.0, 9.0], [6.0, 6.0], [1.0, 1.0], [1.0, 1.0]],
                  dtype=np.float32)
    pooled, p, c = pool_multi_query(np.concatenate([qf, gf[mask]]),
                                    np.array([4, 2, 4, 2]), np.array([1, 3, 1, 3]))
    np.testing.assert_allclose(pooled, [[5.0, 5.0], [1.0, 1.0]])   # pid 2 then pid 4
    with pytest.raises(ValueError, match="q_camids"):
        same_camera_gallery([1, 2], [1], [1], [1])


# --------------------------------------------------------------------------- re-ranking


def _rerank_problem(rng: np.random.Generator, float32: bool):
    nq, ng, dim = int(rng.integers(2, 15)), int(rng.integers(5, 60)), int(rng.integers(2, 8))
    nid = int(rng.integers(2, 8))
    ids = rng.integers(0, nid, nq + ng)
    feats = rng.normal(size=(nid, dim))[ids] + 0.5 * rng.normal(size=(nq + ng, dim))
    d = np.sqrt(((feats[:, None] - feats[None]) ** 2).sum(-1))
    d = d.astype(np.float32) if float32 else d
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


@pytest.mark.parametrize("expansion", ["strict", "loose"])
def test_re_ranking_matches_reference(expansion):
    rng = np.random.default_rng(21)
    for trial in range(12):
        q_g, q_q, g_g = _rerank_problem(rng, float32=bool(trial % 2))
        k1 = int(rng.integers(1, min(10, q_g.shape[0] + q_g.shape[1] - 1)))
        k2 = int(rng.integers(1, 6))
        want = reference_re_ranking(q_g, q_q, g_g, k1, k2, 0.3, expansion)
        got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=0.3, expansion=expansion)
        assert got.dtype == np.float32 and got.shape == q_g.shape
        # the reference works in float32 on values of order 1: its own rounding is ~1e-7
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_re_ranking_lambda_value_is_used():
    # lambda weighs the original distance against the Jaccard distance: 0 keeps only the
    # Jaccard distance, 1 only the original (squared, column-scaled) distance
    rng = np.random.default_rng(17)
    q_g, q_q, g_g = _rerank_problem(rng, float32=True)
    for lambda_value in (0.0, 0.5, 1.0):
        want = reference_re_ranking(q_g, q_q, g_g, 4, 2, lambda_value)
        got = re_ranking(q_g, q_q, g_g, k1=4, k2=2, lambda_value=lambda_value)
        np.testing.assert_allclose(
            got, want, rtol=1e-6, atol=1e-6,
            err_msg=f"re_ranking(lambda_value={lambda_value}) is not (1 - lambda) * jaccard + "
            "lambda * original distance: lambda_value is ignored or mis-weighted",
        )


def test_re_ranking_strict_and_loose_differ_on_constructed_case():
    # Points on a line, k1 = 4 (half = 2). Query 0 (at 0.0) has R(0, 4) = {0, 1}; its
    # candidate 1 has R(1, 2) = {0, 1, 2}, which shares exactly 2 = 2/3 * 3 items with R(0, 4),
    # so only the loose (">=") rule adds item 2, which changes the weights and the distances.
    x = np.array([0.0, 0.1, 0.2, 0.3, 0.32, 0.34, 1.0, 1.1, 1.2])
    d = np.abs(x[:, None] - x[None, :])
    q_g, q_q, g_g = d[:1, 1:], d[:1, :1], d[1:, 1:]
    strict = re_ranking(q_g, q_q, g_g, k1=4, k2=1, expansion="strict")
    loose = re_ranking(q_g, q_q, g_g, k1=4, k2=1, expansion="loose")
    assert np.abs(strict - loose).max() > 1e-3
    for mode, got in (("strict", strict), ("loose", loose)):
        want = reference_re_ranking(q_g, q_q, g_g, 4, 1, 0.3, mode)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_re_ranking_torch_input_equals_numpy_input():
    rng = np.random.default_rng(4)
    q_g, q_q, g_g = _rerank_problem(rng, float32=True)
    want = re_ranking(q_g, q_q, g_g, k1=3, k2=2)
    got = re_ranking(*(torch.from_numpy(x) for x in (q_g, q_q, g_g)), k1=3, k2=2)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), want)


def test_re_ranking_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    q_g, q_q, g_g = _rerank_problem(rng, float32=True)
    with pytest.raises(ValueError, match="expansion: expected one of"):
        re_ranking(q_g, q_q, g_g, expansion="greedy")
    with pytest.raises(ValueError, match="g_g_dist"):
        re_ranking(q_g, q_q, g_g[:-1, :-1])
    with pytest.raises(ValueError, match="must not exceed"):
        re_ranking(q_g, q_q, g_g, k1=q_g.shape[0] + q_g.shape[1])


def _tied_problem(rng: np.random.Generator, nq: int, ng: int, levels: int = 12):
    """Integer asymmetric distances below `levels`: with few levels, equal distances abound
    and every tie rule gets exercised."""
    d = rng.integers(1, levels, size=(nq + ng, nq + ng)).astype(np.float32)
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


@pytest.mark.parametrize("levels", [12, 100000])
def test_re_ranking_nearest_lists_equal_stable_argsort_with_ties(levels):
    from reidnb.metrics import rerank

    rng = np.random.default_rng(7)
    q_g, q_q, g_g = _tied_problem(rng, 30, 170, levels)
    k = 12
    blocks = rerank._Blocks(*(torch.from_numpy(x) for x in (q_g, q_q, g_g)))
    col_max = rerank._column_max(blocks)
    # both searches run: rows of M for the queries, grouped columns of D for the gallery
    assert rerank._group_size(blocks.num, k + 1) > 1
    got = rerank._nearest(blocks, col_max, k).numpy()
    full = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    m = (full / full.max(axis=0)).T
    want = np.argsort(m, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("expansion", ["strict", "loose"])
def test_re_ranking_matches_reference_with_ties_and_small_blocks(expansion, monkeypatch):
    from reidnb.metrics import rerank

    rng = np.random.default_rng(8)
    q_g, q_q, g_g = _tied_problem(rng, 25, 135)
    want = reference_re_ranking(q_g, q_q, g_g, 8, 4, 0.3, expansion)
    whole = re_ranking(q_g, q_q, g_g, k1=8, k2=4, expansion=expansion)
    np.testing.assert_allclose(whole, want, rtol=1e-6, atol=1e-6)
    # tiny working blocks: many row blocks, transpose bands and overlap blocks
    monkeypatch.setattr(rerank, "_ROW_ELEMENTS", 200)
    monkeypatch.setattr(rerank, "_OVERLAP_CELLS", 100)
    monkeypatch.setattr(rerank, "_TRANSPOSE_BAND", 3)
    monkeypatch.setattr(rerank, "_BAND_CELLS", 1)
    pieces = re_ranking(q_g, q_q, g_g, k1=8, k2=4, expansion=expansion)
    np.testing.assert_allclose(pieces, want, rtol=1e-6, atol=1e-6)


def test_re_ranking_uses_only_squares_of_distances():
    rng = np.random.default_rng(9)
    q_g, q_q, g_g = _rerank_problem(rng, float32=False)
    flip = np.where(rng.random(g_g.shape) < 0.5, -1.0, 1.0)
    want = reference_re_ranking(q_g, q_q, g_g * flip, 4, 2, 0.3)
    got = re_ranking(q_g, q_q, g_g * flip, k1=4, k2=2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got, re_ranking(q_g, q_q, g_g, k1=4, k2=2))


def test_re_ranking_rejects_non_finite_and_empty_input():
    rng = np.random.default_rng(1)
    q_g, q_q, g_g = _rerank_problem(rng, float32=True)
    bad = g_g.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="g_g_dist: contains NaN"):
        re_ranking(q_g, q_q, bad)
    with pytest.raises(ValueError, match="at least one query"):
        re_ranking(q_g[:0], q_q[:0, :0], g_g)


def test_best_ap_bounds_every_ranking_and_is_reached_by_consecutive_matches():
    from itertools import combinations

    from reidnb.metrics.rank import best_ap
    n = 3
    for hits in combinations(range(1, 9), n):
        ap = sum(i / r for i, r in enumerate(hits, start=1)) / n
        bound = best_ap(hits[0], n)
        assert ap <= bound + 1e-12
        if hits == tuple(range(hits[0], hits[0] + n)):
            assert ap == pytest.approx(bound)
    assert best_ap(1, 5) == 1.0
    with pytest.raises(ValueError):
        best_ap(0, 2)


def test_map_cap_from_cmc_of_li2019_cuhk03_labeled_baseline():
    from reidnb.metrics.rank import map_cap_from_cmc
    # Table 3, CUHK03 labeled, no-attention row; at most 4 cross-camera matches a query
    assert map_cap_from_cmc({1: 46.9, 5: 72.0, 10: 80.5, 20: 86.4}, 4) == pytest.approx(69.27, abs=0.01)
    # more matches per query allow a higher mAP; rank-1 alone caps nothing below it
    assert map_cap_from_cmc({1: 46.9, 5: 72.0}, 8) > map_cap_from_cmc({1: 46.9, 5: 72.0}, 4)
    assert map_cap_from_cmc({1: 50.0}, 1) == pytest.approx(50.0 + 50.0 / 2)


def test_map_cap_from_cmc_refuses_a_decreasing_cmc():
    from reidnb.metrics.rank import map_cap_from_cmc
    # li2019 Table 3, DukeMTMC-reID spatial attention: rank-10 92.4 > rank-20 92.3
    with pytest.raises(ValueError, match="non-decreasing"):
        map_cap_from_cmc({1: 78.2, 5: 89.6, 10: 92.4, 20: 92.3}, 4)
    with pytest.raises(ValueError, match="rank 1"):
        map_cap_from_cmc({5: 80.0}, 4)
