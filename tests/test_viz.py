"""Tests for reidnb.viz: ranking for display, frame colours, denormalisation, figure layouts."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from PIL import Image

from reidnb.data.transforms import normalize
from reidnb.viz import (
    CORRECT_COLOR,
    QUERY_COLOR,
    WRONG_COLOR,
    attention_grid,
    attention_overlay,
    cmc_curve,
    denormalize,
    image_grid,
    loss_curves,
    overlay_heatmap,
    ranked_gallery,
    retrieval_grid,
)

# Hand case: query pid 1 seen by camera 0.
DIST = np.array([[0.5, 0.1, 0.3, 0.2, 0.9]])
G_PIDS = np.array([1, 1, 2, 1, 3])
G_CAMS = np.array([0, 1, 0, 0, 2])


def _imgs(n: int, h: int = 16, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _frame(ax) -> tuple:
    return tuple(ax.spines["left"].get_edgecolor())


def test_ranked_gallery_excludes_same_id_same_cam_and_sorts():
    # sorted: g1 (0.1, keep), g3 (0.2, same id+cam), g2 (0.3), g0 (0.5, same id+cam), g4 (0.9)
    assert ranked_gallery(DIST[0], 1, 0, G_PIDS, G_CAMS, k=10).tolist() == [1, 2, 4]
    assert ranked_gallery(DIST[0], 1, 0, G_PIDS, G_CAMS, k=2).tolist() == [1, 2]
    # from camera 1 the same-camera match g1 is dropped instead, g3 and g0 stay
    assert ranked_gallery(DIST[0], 1, 1, G_PIDS, G_CAMS, k=10).tolist() == [3, 2, 0, 4]


def test_ranked_gallery_rejects_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        ranked_gallery(DIST[0], 1, 0, G_PIDS[:4], G_CAMS, k=3)


def test_retrieval_grid_frame_colours_hand_case():
    fig = retrieval_grid(_imgs(1), _imgs(5, seed=1), DIST, [1], G_PIDS, [0], G_CAMS, topk=3)
    axes = fig.axes
    assert len(axes) == 4
    assert _frame(axes[0]) == to_rgba(QUERY_COLOR)
    assert [_frame(ax) for ax in axes[1:]] == [
        to_rgba(CORRECT_COLOR), to_rgba(WRONG_COLOR), to_rgba(WRONG_COLOR)
    ]
    assert [ax.get_xlabel() for ax in axes[1:]] == ["0.10", "0.30", "0.90"]
    assert all(ax.spines["top"].get_visible() for ax in axes)


def test_retrieval_grid_blank_cells_when_fewer_matches_and_rows():
    dist = np.vstack([DIST, DIST])
    fig = retrieval_grid(_imgs(2), _imgs(5), dist, [1, 3], G_PIDS, [0, 0], G_CAMS, topk=5)
    assert len(fig.axes) == 2 * 6
    # query 0 keeps only 3 gallery items: its 4th and 5th match cells are switched off
    assert fig.axes[3].axison and not fig.axes[4].axison and not fig.axes[5].axison
    # query 1 (pid 3, cam 0) keeps all five; its one match g4 is ranked last
    assert [_frame(ax) == to_rgba(CORRECT_COLOR) for ax in fig.axes[7:]] == [False] * 4 + [True]


def test_retrieval_grid_loads_paths(tmp_path):
    imgs = _imgs(6)
    paths = []
    for i, arr in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    fig = retrieval_grid(paths[:1], paths[1:], DIST, [1], G_PIDS, [0], G_CAMS, topk=2,
                         images_as="paths")
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), imgs[1 + 1])
    with pytest.raises(TypeError, match="images_as='paths'"):
        retrieval_grid(paths[:1], paths[1:], DIST, [1], G_PIDS, [0], G_CAMS, topk=2)


def test_retrieval_grid_rejects_bad_query_index():
    with pytest.raises(IndexError, match=r"query indices \[3\] outside \[0, 1\)"):
        retrieval_grid(_imgs(1), _imgs(5), DIST, [1], G_PIDS, [0], G_CAMS, query_indices=[3])


def test_denormalize_inverts_normalize():
    raw = torch.from_numpy(_imgs(2).transpose(0, 3, 1, 2).copy())
    back = denormalize(normalize(raw))
    assert back.dtype == np.uint8 and back.shape == (2, 16, 8, 3)
    np.testing.assert_array_equal(back, raw.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(denormalize(normalize(raw)[0]), back[0])


def test_denormalize_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"expected \(3,H,W\)"):
        denormalize(torch.zeros(2, 4, 8, 8))


def test_image_grid_axes_count_and_titles():
    fig = image_grid(_imgs(10), titles=[f"cam {i}" for i in range(10)], ncols=4)
    assert len(fig.axes) == 10
    assert fig.axes[9].get_title() == "cam 9"
    with pytest.raises(ValueError, match="3 titles for 10 images"):
        image_grid(_imgs(10), titles=["a", "b", "c"])


def test_image_grid_accepts_normalised_tensor():
    raw = torch.from_numpy(_imgs(3).transpose(0, 3, 1, 2).copy())
    fig = image_grid(normalize(raw))
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), raw[2].permute(1, 2, 0))


def test_cmc_curve_plots_percent_per_curve():
    a, b = np.linspace(0.5, 1.0, 30), np.linspace(0.2, 0.9, 30)
    fig = cmc_curve({"baseline": a, "+AM": b}, max_rank=20)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), np.arange(1, 21))
    np.testing.assert_allclose(lines[1].get_ydata(), 100 * b[:20])
    with pytest.raises(ValueError, match="fractions in"):
        cmc_curve({"pct": 100 * a})
    with pytest.raises(ValueError, match="has 30 ranks, need 50"):
        cmc_curve({"a": a}, max_rank=50)


def test_loss_curves_from_records_picks_loss_terms():
    history = [{"epoch": e, "loss_ce": 2.0 / e, "loss_tri": 1.0 / e, "lr": 0.1} for e in (1, 2, 3)]
    (ax,) = loss_curves(history).axes
    assert [ln.get_label() for ln in ax.get_lines()] == ["loss_ce", "loss_tri"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])
    assert ax.get_xlabel() == "epoch"


def test_loss_curves_from_dict_of_lists_and_missing_key():
    (ax,) = loss_curves({"ce": [3.0, 2.0], "tri": [1.0, 0.5]}).axes
    assert len(ax.get_lines()) == 2
    np.testing.assert_allclose(ax.get_lines()[1].get_xdata(), [1, 2])
    with pytest.raises(KeyError, match="no numeric column"):
        loss_curves({"ce": [1.0]}, keys=["uniformity"])


def test_overlay_heatmap_alpha_extremes():
    img = _imgs(1)[0]
    np.testing.assert_array_equal(overlay_heatmap(img, np.ones((2, 1)), alpha=0.0), img)
    amap = np.array([[0.0], [1.0]])  # top half cold, bottom half hot after upsampling
    full = overlay_heatmap(img, amap, alpha=1.0)
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_array_equal(full[0, 0], (np.array(jet(0.0)[:3]) * 255).round())
    np.testing.assert_array_equal(full[-1, 0], (np.array(jet(1.0)[:3]) * 255).round())


def test_attention_overlay_and_grid_axes():
    imgs = _imgs(3)
    maps = torch.rand(3, 4, 2)
    assert len(attention_overlay(imgs, maps, titles=["a", "b", "c"]).axes) == 3
    fig = attention_grid({"baseline": maps, "+AM": maps, "+AM+UL": maps}, imgs)
    assert len(fig.axes) == 4 * 3
    assert [fig.axes[j * 3].get_ylabel() for j in range(4)] == [
        "input", "baseline", "+AM", "+AM+UL"
    ]
    cols = attention_grid({"baseline": maps}, imgs, orientation="columns")
    assert [ax.get_title() for ax in cols.axes[:2]] == ["input", "baseline"]
    with pytest.raises(ValueError, match="entry 'bad' has 2 maps for 3 images"):
        attention_grid({"bad": maps[:2]}, imgs)
