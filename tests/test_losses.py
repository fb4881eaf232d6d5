"""Tests of reidnb.losses.batch_hard_triplet on a hand-worked batch."""

from __future__ import annotations

import pytest
import torch

from reidnb.losses import batch_hard_triplet

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
