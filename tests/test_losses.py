"""Tests of reidnb.losses on small batches worked out by hand (each value written out below)."""

from __future__ import annotations

import math

import pytest
import torch

from reidnb.losses import (batch_hard_triplet, cross_entropy, pairwise_distances, uniformity,
                           verification)

# Six 1-D embeddings of two identities. Per anchor, in order:
#   farthest positive  3, 2, 3, 6, 4, 6   (mean 4)
#   nearest negative   4, 3, 1, 1, 3, 7   (mean 19/6)
# With margin 10 no term is clipped, so the loss is 4 - 19/6 + 10 = 65/6.
X = [0.0, 1.0, 3.0, 4.0, 6.0, 10.0]
PIDS = [0, 0, 0, 1, 1, 1]


def _brute_force(pos: str, neg: str, margin: float) -> float:
    """Mean hinge loss with the positive and negative picked per anchor by plain loops."""
    total = 0.0
    for a, (xa, pa) in enumerate(zip(X, PIDS)):
        d_pos = [abs(xa - x) for i, (x, p) in enumerate(zip(X, PIDS))
                 if p == pa and (i != a or pos == "nearest (anchor included)")]
        d_neg = [abs(xa - x) for x, p in zip(X, PIDS) if p != pa]
        d_ap = max(d_pos) if pos == "farthest" else min(d_pos)
        d_an = min(d_neg) if neg == "nearest" else max(d_neg)
        total += max(d_ap - d_an + margin, 0.0)
    return total / len(X)


def test_batch_hard_triplet_takes_farthest_positive_and_nearest_negative():
    got = batch_hard_triplet(torch.tensor(X)[:, None], torch.tensor(PIDS), margin=10.0).item()
    expected = _brute_force("farthest", "nearest", 10.0)
    assert expected == pytest.approx(65 / 6)
    wrong = {
        "the NEAREST positive (the anchor itself)": ("nearest (anchor included)", "nearest"),
        "the NEAREST positive other than the anchor": ("nearest", "nearest"),
        "the FARTHEST negative": ("farthest", "farthest"),
    }
    matches = [name for name, (p, n) in wrong.items()
               if got == pytest.approx(_brute_force(p, n, 10.0), abs=1e-4)]
    assert got == pytest.approx(expected, rel=1e-5), (
        f"batch_hard_triplet = {got:.4f}, expected {expected:.4f}: batch-hard mining takes the "
        "farthest positive and the nearest negative of each anchor (Hermans et al. 2017)"
        + (f"; the value is that of {matches[0]}" if matches else "")
    )


# --- pairwise_distances ------------------------------------------------------------------------

def test_pairwise_distances_of_three_points_by_hand():
    # x0 = (0,0), x1 = (3,4), x2 = (1,0): squared distances 25, 1 and (3-1)^2 + 4^2 = 20
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    sq = [[0.0, 25.0, 1.0], [25.0, 0.0, 20.0], [1.0, 20.0, 0.0]]
    got_sq = pairwise_distances(x, squared=True)
    assert torch.allclose(got_sq, torch.tensor(sq), atol=1e-5), (
        f"squared distances {got_sq.tolist()}, expected {sq}")
    # not squared: 5, 1, sqrt(20) = 4.4721360, and 0 on the diagonal up to 1e-6 (the code clamps
    # the squared distance at 1e-12 before the root, so its gradient stays finite)
    eu = [[0.0, 5.0, 1.0], [5.0, 0.0, math.sqrt(20)], [1.0, math.sqrt(20), 0.0]]
    got = pairwise_distances(x)
    assert torch.allclose(got, torch.tensor(eu), rtol=1e-6, atol=1.5e-6), (
        f"Euclidean distances {got.tolist()}, expected {eu}")
    # against a second set y = (x1, (0,-2)): rows x0..x2, columns y0, y1
    y = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    xy = [[5.0, 2.0], [0.0, math.sqrt(9 + 36)], [math.sqrt(4 + 16), math.sqrt(1 + 4)]]
    got_xy = pairwise_distances(x, y)
    assert got_xy.shape == (3, 2)
    assert torch.allclose(got_xy, torch.tensor(xy), rtol=1e-6, atol=1.5e-6), (
        f"distances x to y {got_xy.tolist()}, expected {xy}")


# --- verification (jeong2020 Eqs. 6-7) ---------------------------------------------------------

def test_verification_is_two_way_cross_entropy_with_index_1_same():
    # pair 0: logits (0, ln 3), label "same" (1): p(same) = 3/(1+3) = 3/4, loss -ln(3/4) = ln(4/3)
    # pair 1: logits (ln 4, 0), label "different" (0): p(diff) = 4/5, loss ln(5/4)
    # mean: (ln(4/3) + ln(5/4)) / 2 = ln(5/3) / 2 = 0.2554128
    logits = torch.tensor([[0.0, math.log(3)], [math.log(4), 0.0]])
    got = verification(logits, torch.tensor([1, 0])).item()
    expected = math.log(5 / 3) / 2
    swapped = (math.log(4) + math.log(5)) / 2   # labels read the other way round
    assert got == pytest.approx(expected, rel=1e-6), (
        f"verification loss {got:.7f}, expected ln(5/3)/2 = {expected:.7f}"
        + (" (the value with 'same' and 'different' swapped)"
           if got == pytest.approx(swapped, rel=1e-6) else ""))


# --- cross_entropy with label smoothing (li2019 Eq. 6) -----------------------------------------

def test_cross_entropy_label_smoothing_spreads_eps_over_all_classes():
    # torch's convention (Szegedy et al. 2016): q = (1 - eps) onehot + eps / K over ALL K classes,
    # the true one included. K = 3, eps = 0.1.
    # row 0: logits ln(1, 2, 5) -> p = (1/8, 2/8, 5/8), target 2, q = (1/30, 1/30, 0.9 + 1/30)
    #   loss = -(1/30)(ln 1/8 + ln 2/8 + ln 5/8) - 0.9 ln 5/8
    #        = (1/30)(2.0794415 + 1.3862944 + 0.4700036) + 0.9 * 0.4700036 = 0.5541946
    # row 1: logits (0, 0, 0) -> p = 1/3 everywhere, so the loss is ln 3 = 1.0986123 for any q
    # mean: (0.5541946 + 1.0986123) / 2 = 0.8264034
    logits = torch.tensor([[0.0, math.log(2), math.log(5)], [0.0, 0.0, 0.0]])
    targets = torch.tensor([2, 0])
    row0 = -(0.1 / 3) * (math.log(1 / 8) + math.log(2 / 8) + math.log(5 / 8)) \
        - 0.9 * math.log(5 / 8)
    expected = (row0 + math.log(3)) / 2
    assert expected == pytest.approx(0.8264034, abs=1e-7)
    # eps spread over the K - 1 other classes only (q = (0.05, 0.05, 0.9)) would give this:
    other = (-0.05 * (math.log(1 / 8) + math.log(2 / 8)) - 0.9 * math.log(5 / 8)
             + math.log(3)) / 2
    got = cross_entropy(logits, targets, label_smoothing=0.1).item()
    assert got == pytest.approx(expected, rel=1e-6), (
        f"cross_entropy(eps=0.1) = {got:.7f}, expected {expected:.7f} (eps/K on every class)"
        + (" -- the value of eps/(K-1) on the other classes"
           if got == pytest.approx(other, rel=1e-6) else ""))
    plain = (-math.log(5 / 8) + math.log(3)) / 2   # eps = 0: (0.4700036 + 1.0986123) / 2
    got0 = cross_entropy(logits, targets).item()
    assert got0 == pytest.approx(plain, rel=1e-6), (
        f"cross_entropy(eps=0) = {got0:.7f}, expected {plain:.7f}")


# --- uniformity (jeong2020 Eq. 8) --------------------------------------------------------------

def test_uniformity_by_hand_sums_l1_over_cells_and_averages_over_triplets():
    # triplet 0: s_q = 0, s_p = [[.5, 0], [0, .5]], s_n = .2 everywhere
    #   L1 (summed over the 4 cells): d(q,p) = 1.0, d(q,n) = 0.8
    # triplet 1: s_q = s_p = 0, s_n = 1 everywhere: d(q,p) = 0, d(q,n) = 4
    # margin 0.5
    #   text    max(d_qp - d_qn + m, 0): (0.7, max(-3.5, 0) = 0)  -> mean 0.35
    #   printed max(d_qn - d_qp + m, 0): (0.3, 4.5)               -> mean 2.4
    s_q = torch.zeros(2, 1, 2, 2)
    s_p = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    s_n = torch.cat([torch.full((1, 1, 2, 2), 0.2), torch.ones(1, 1, 2, 2)])
    wrong = {  # readings the code must not follow, with their text-form values
        "L2 instead of L1 distance": ((2 ** -0.5) - 0.4 + 0.5 + 0.0) / 2,
        "L1 averaged over the cells instead of summed": (0.25 - 0.2 + 0.5 + 0.0) / 2,
        "a sum over the triplets instead of the mean": 0.7,
    }
    for form, expected in (("text", 0.35), ("printed", 2.4)):
        got = uniformity(s_q, s_p, s_n, margin=0.5, form=form).item()
        hint = [k for k, v in wrong.items() if got == pytest.approx(v, rel=1e-5)]
        assert got == pytest.approx(expected, rel=1e-6), (
            f"uniformity(form={form!r}) = {got:.6f}, expected {expected}"
            + (f" (the value of {hint[0]})" if hint else ""))
