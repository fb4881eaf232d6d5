"""Tests for the stripe HSV histogram baseline (reidnb.handcrafted)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidnb.data.records import ReIDDataset, Sample
from reidnb.handcrafted import (
    histogram_baseline,
    histogram_distances,
    hsv_histogram_features,
    stripe_histogram,
)

NAME = re.compile(r"(?P<pid>-1|\d{4})_c(?P<cam>\d)s\d_\d{6}_\d{2}\.jpg")


def _solid(rgb, h=12, w=6) -> np.ndarray:
    return np.tile(np.asarray(rgb, dtype=np.uint8), (h, w, 1))


def _local_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Market protocol by hand: drop same-id same-camera gallery items, then CMC and AP."""
    cmc, aps = np.zeros(max_rank), []
    for i in range(len(q_pids)):
        keep = ~((g_pids == q_pids[i]) & (g_camids == q_camids[i]))
        match = g_pids[keep][np.argsort(distmat[i][keep], kind="stable")] == q_pids[i]
        hits = np.flatnonzero(match)
        cmc[hits[0]:] += 1
        aps.append(np.mean((np.arange(len(hits)) + 1) / (hits + 1)))
    return cmc / len(q_pids), float(np.mean(aps))


def test_stripe_histogram_solid_colour_fills_one_bin_per_stripe():
    hsv = np.asarray(Image.fromarray(_solid((255, 0, 0))).convert("HSV"))  # H 0, S 255, V 255
    hist = stripe_histogram(hsv, bins=(8, 4, 4), stripes=6)
    assert hist.shape == (6 * 128,)
    expected = np.zeros((6, 128), dtype=np.float32)
    expected[:, 0 * 16 + 3 * 4 + 3] = 1 / 6  # hue bin 0, saturation bin 3, value bin 3
    np.testing.assert_allclose(hist, expected.ravel(), atol=1e-7)


def test_stripe_histogram_separates_top_and_bottom():
    img = np.concatenate([_solid((255, 0, 0), h=6), _solid((0, 0, 255), h=6)])
    hist = hsv_histogram_features([img], bins=(8, 4, 4), stripes=2)[0].reshape(2, 128)
    blue_hue = (170 * 8) >> 8  # PIL puts blue at hue 170 of 255 -> bin 5
    assert hist[0, 0 * 16 + 15] == pytest.approx(0.5)
    assert hist[1, blue_hue * 16 + 15] == pytest.approx(0.5)
    assert hist.sum() == pytest.approx(1.0)


def test_stripe_histogram_greys_ignore_hue_unless_asked():
    warm, cool = _solid((132, 128, 124)), _solid((124, 128, 132))  # two almost equal greys
    f = hsv_histogram_features([warm, cool])
    np.testing.assert_array_equal(f[0], f[1])
    raw = hsv_histogram_features([warm, cool], grey_sat=0)
    assert not np.array_equal(raw[0], raw[1])


def test_hsv_histogram_features_rows_sum_to_one_and_paths_match_arrays(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 24, 12, 3), dtype=np.uint8)
    paths = []
    for i, img in enumerate(imgs):
        paths.append(tmp_path / f"{i}.png")  # lossless, so pixels survive the round trip
        Image.fromarray(img).save(paths[-1])
    f = hsv_histogram_features(imgs, bins=(4, 2, 2), stripes=3)
    assert f.shape == (3, 3 * 16) and f.dtype == np.float32
    np.testing.assert_allclose(f.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(f, hsv_histogram_features(paths, bins=(4, 2, 2), stripes=3))


def test_hsv_histogram_features_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        hsv_histogram_features([np.zeros((4, 4, 3), dtype=np.float32)])
    with pytest.raises(ValueError, match="stripes"):
        hsv_histogram_features([_solid((1, 2, 3))], stripes=20)


def test_histogram_distances_hand_worked():
    x = np.array([[1.0, 0.0], [0.5, 0.5]])
    y = np.array([[0.0, 1.0], [1.0, 0.0]])
    hell = histogram_distances(x, y, "hellinger")
    np.testing.assert_allclose(hell, [[np.sqrt(2), 0.0],
                                      [np.sqrt(2 - np.sqrt(2)), np.sqrt(2 - np.sqrt(2))]],
                               atol=1e-6)
    chi2 = histogram_distances(x, y, "chi2")
    # 0.5 * sum (x - y)^2 / (x + y): [1,0] vs [0,1] -> 1; [.5,.5] vs [0,1] -> 1/3
    np.testing.assert_allclose(chi2, [[1.0, 0.0], [1 / 3, 1 / 3]], atol=1e-6)
    with pytest.raises(ValueError, match="unknown distance"):
        histogram_distances(x, y, "cosine")


def _tiny_dataset(root: Path) -> ReIDDataset:
    """Query: a red and a blue person in camera 1; gallery: the same two in camera 2 + a decoy."""
    files = {
        "query/0001_c1s1_000001_01.jpg": (200, 30, 30),
        "query/0002_c1s1_000002_01.jpg": (30, 30, 200),
        "bounding_box_test/0001_c2s1_000003_01.jpg": (205, 35, 28),
        "bounding_box_test/0002_c2s1_000004_01.jpg": (28, 35, 205),
        "bounding_box_test/0000_c2s1_000005_01.jpg": (30, 200, 30),
    }
    splits = {"query": [], "bounding_box_test": []}
    for rel, rgb in files.items():
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(_solid(rgb, 32, 16)).save(path, quality=95)
        m = NAME.fullmatch(path.name)
        splits[path.parent.name].append(
            Sample(str(path), int(m.group("pid")), int(m.group("cam")) - 1))
    return ReIDDataset("tiny", root, [], splits["query"], splits["bounding_box_test"])


def test_histogram_baseline_ranks_same_colours_first(tmp_path):
    ds = _tiny_dataset(tmp_path)
    res = histogram_baseline(ds, evaluate=_local_evaluate, max_rank=3)
    assert res["rank1"] == 1.0 and res["mAP"] == pytest.approx(1.0)
    assert (res["num_query"], res["num_gallery"]) == (2, 3)


def test_histogram_baseline_default_metric_agrees_with_local(tmp_path):
    from reidnb.data.synthetic import generate

    generate(tmp_path, "smoke", seed=0)
    samples = {}
    for split in ("query", "bounding_box_test"):
        samples[split] = []
        for path in sorted((tmp_path / split).iterdir()):
            m = NAME.fullmatch(path.name)
            if int(m.group("pid")) != -1:  # junk is ignored, as the Market loader does
                samples[split].append(Sample(str(path), int(m.group("pid")),
                                             int(m.group("cam")) - 1))
    ds = ReIDDataset("smoke", tmp_path, [], samples["query"], samples["bounding_box_test"])
    ours = histogram_baseline(ds, max_rank=10)  # reidnb.metrics.evaluate_rank
    local = histogram_baseline(ds, max_rank=10, evaluate=_local_evaluate)
    np.testing.assert_allclose(ours["cmc"], local["cmc"], atol=1e-9)
    assert ours["mAP"] == pytest.approx(local["mAP"])
    assert 0.0 < ours["rank1"] < 1.0
