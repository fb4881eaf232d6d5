"""What chapter 7 computes on top of the zheng2019 runs (reidnb/papers/zheng2019.py): the gradient
checks, the first true match's rank, one pair's Siamese attention, and its figure."""

import numpy as np
import pytest
import torch

from reidnb import viz
from reidnb.models.zheng2019 import CASN
from reidnb.papers.zheng2019 import first_true_rank, gradient_checks, pair_view


def test_gradient_checks_agree_where_they_should_and_only_there():
    checks = gradient_checks()
    assert len(checks) == 7
    assert checks.loc[checks["should agree"], "agrees"].all()
    # detaching the Grad-CAM weights changes L_ia's gradient: the check must see it
    detached = checks.loc[~checks["should agree"]]
    assert len(detached) == 1 and not detached["agrees"].any()
    assert (detached["largest difference"] > 1e-3).all()


def test_first_true_rank_skips_junk_and_same_camera_matches():
    # query pid 5, camera 1; gallery: same pid same camera (ignored), junk (ignored),
    # another person, the true match from camera 2, another true match
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([5, -1, 7, 5, 5])
    g_cams = np.array([1, 2, 2, 2, 3])
    assert first_true_rank(d, [5], [1], g_pids, g_cams).tolist() == [2]
    # no valid true match at all: 0
    assert first_true_rank(d, [9], [1], g_pids, g_cams).tolist() == [0]
    # the order follows the distances, ties by gallery order
    d2 = np.array([[0.5, 0.4, 0.3, 0.2, 0.1]])
    assert first_true_rank(d2, [5], [1], g_pids, g_cams).tolist() == [1]


def test_pair_view_distances_match_its_profiles():
    torch.manual_seed(0)
    net = CASN(5, backbone="resnet18", pretrained=False, last_stride=1).eval()
    gen = torch.Generator().manual_seed(1)
    a, b = (torch.randint(0, 256, (3, 128, 64), generator=gen, dtype=torch.uint8)
            for _ in range(2))
    v = pair_view(net, a, b)
    assert v["maps"][0].shape == (8, 4) and v["profiles"][0].shape == (8,)
    assert 0.0 <= v["alpha_share"] <= 1.0 and 0.0 < v["p_same"] < 1.0
    for start, end in v["kept"]:
        assert 0 <= start <= end <= 7
    aligned = [torch.as_tensor(x) for x in v["aligned"]]
    assert v["profile_distance"] == pytest.approx(float((aligned[0] - aligned[1]).norm()),
                                                  rel=1e-5)
    plain = [torch.as_tensor(x) for x in v["profiles"]]
    assert v["profile_distance_uncut"] == pytest.approx(float((plain[0] - plain[1]).norm()),
                                                        rel=1e-5)
    assert max(float(p.max()) for p in plain) == pytest.approx(1.0, abs=1e-5)
    # the same image twice: identical maps, distance 0
    same = pair_view(net, a, a)
    assert same["profile_distance"] == pytest.approx(0.0, abs=1e-6)
    fig = viz.pair_profiles({"random": v, "same image": same}, a, b, title="t")
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="no views"):
        viz.pair_profiles({}, a, b)


def test_casn_margins_read_the_ledger():
    from reidnb.papers.zheng2019 import casn_margins

    m = casn_margins()
    assert len(m) == 12
    # IDE on CUHK03-NP: CASN 57.4 against +SA 55.2 (the better of +IA 54.8 and +SA)
    assert m.loc[("IDE", "cuhk03_detected", "rank1"), "CASN - better single"] == 2.2
    assert int((m["CASN - better single"] <= 0.4).sum()) == 7   # the count
