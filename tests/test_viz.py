"""Tests for reidnb.viz: ranking for display, frame colours, denormalisation, figure layouts."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
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
    metric_sweep,
    overlay_heatmap,
    ranked_gallery,
    retrieval_grid,
    score_histogram,
    seed_spread,
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


def test_loss_comparison_one_panel_per_term_one_line_per_model():
    from reidnb.viz import loss_comparison

    a = [{"epoch": e, "loss_id": 3.0 / e, "loss_ver": 0.7 / e} for e in (1, 2)]
    b = [{"epoch": e, "loss_id": 2.0 / e, "loss_ver": 0.6 / e} for e in (1, 2)]
    fig = loss_comparison({"A": a, "B": b}, ["loss_id", "loss_ver"],
                          titles={"loss_ver": "verification"})
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss_id", "verification"]
    assert [ln.get_label() for ln in axes[1].get_lines()] == ["A", "B"]
    np.testing.assert_allclose(axes[1].get_lines()[1].get_ydata(), [0.6, 0.3])
    with pytest.raises(KeyError, match="'B' has no numeric column"):
        loss_comparison({"A": a, "B": [{"epoch": 1, "loss_id": 1.0}]}, ["loss_ver"])


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


def _data_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if len(ln.get_xdata())]


def test_metric_sweep_one_line_per_column_and_skips_missing_points():
    frame = pd.DataFrame({"baseline": [50.0, np.nan, 60.0], "+AM+UL": [52.0, 57.0, 61.0]},
                         index=pd.Index([1.0, 0.0, 0.5], name="p"))
    frame.columns.name = "variant"
    fig = metric_sweep(frame, "bag visible p", "rank-1 (%)", "sweep")
    (ax,) = fig.axes
    lines = _data_lines(ax)
    assert len(lines) == 2
    np.testing.assert_allclose(lines[0].get_xdata(), [0.5, 1.0])  # sorted, NaN point left out
    np.testing.assert_allclose(lines[0].get_ydata(), [60.0, 50.0])
    np.testing.assert_allclose(lines[1].get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(lines[1].get_ydata(), [57.0, 61.0, 52.0])
    assert all(ln.get_marker() not in (None, "None", "") for ln in lines)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["baseline", "+AM+UL"]
    assert ax.get_legend().get_title().get_text() == "variant"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("bag visible p", "rank-1 (%)",
                                                                  "sweep")


SEED_RUNS = pd.DataFrame({"label": ["base", "base", "better", "better", "one"],
                          "seed": [0, 1, 0, 1, 0],
                          "rank1": [50.0, 54.0, 53.0, 57.0, 40.0],
                          "mAP": [25.0, 27.0, 26.0, 28.0, 20.0]})


def _dots(ax) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])


def test_seed_spread_one_dot_per_run_and_mean_with_population_sd():
    fig = seed_spread(SEED_RUNS, title="Table 5")
    assert len(fig.axes) == 2
    for ax, metric in zip(fig.axes, ("rank1", "mAP")):
        dots = _dots(ax)
        assert len(dots) == len(SEED_RUNS)  # one entry per seed and label, nothing aggregated
        assert sorted(dots[:, 0]) == sorted(SEED_RUNS[metric])
        (means,) = [ln for ln in ax.get_lines() if ln.get_label() == "mean ± sd"]
        np.testing.assert_allclose(means.get_xdata(),
                                   SEED_RUNS.groupby("label", sort=False)[metric].mean())
        # error bar of "base": mean ± population sd = the two seeds' values (50, 54)
        bars = [ln for ln in ax.get_lines() if ln.get_marker() in (None, "None", "")
                and len(ln.get_xdata()) and np.isfinite(ln.get_xdata()).any()]
        lo, hi = np.nanmin(bars[0].get_xdata()), np.nanmax(bars[0].get_xdata())
        first = SEED_RUNS[SEED_RUNS.label == "base"][metric]
        np.testing.assert_allclose([lo, hi], [first.min(), first.max()])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["base", "better", "one"]
    assert [ax.get_xlabel() for ax in fig.axes] == ["rank-1 (%)", "mAP (%)"]
    assert fig.axes[0].get_legend() is None
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
        "seed 0", "seed 1", "mean ± sd"]
    assert fig._suptitle.get_text() == "Table 5"


def test_seed_spread_keeps_a_seeds_colour_and_places_dots_without_jitter():
    fig = seed_spread(SEED_RUNS, metrics=("rank1",), labels=["better", "base"])
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["better", "base"]
    colour_of = {}
    for c in ax.collections:
        for (x, y), rgba in zip(c.get_offsets(), c.get_facecolors()):
            row = SEED_RUNS[(SEED_RUNS.rank1 == x)].iloc[0]
            colour_of.setdefault(row.seed, set()).add(tuple(np.round(rgba, 3)))
            # dodged by seed around the label's row, at the same place every time
            assert y == pytest.approx(["better", "base"].index(row.label)
                                      + (-0.2 if row.seed == 0 else 0.2))
    assert len(_dots(ax)) == 4  # "one" was not asked for
    assert all(len(c) == 1 for c in colour_of.values()) and len(
        set().union(*colour_of.values())) == 2


def test_seed_spread_rejects_missing_columns_and_no_runs():
    with pytest.raises(KeyError, match="no column"):
        seed_spread(SEED_RUNS.drop(columns="seed"))
    with pytest.raises(ValueError, match="no runs"):
        seed_spread(SEED_RUNS.iloc[:0])


def test_score_histogram_percent_per_entry_and_share_above_threshold():
    a = np.array([0.0, 0.1, 0.2, 0.5, 0.6, 0.9, 1.0, 1.0])
    b = torch.tensor([0.4, 0.5, 0.6, np.nan])  # tensors welcome; NaN dropped
    fig = score_histogram({"trained": a, "at start": b}, "d(a,n) - d(a,p)", threshold=0.3,
                          threshold_label="margin 0.3", bins=5)
    (ax,) = fig.axes
    lines = _data_lines(ax)
    assert len(lines) == 3  # two step histograms and the threshold
    edges = np.linspace(0.0, 1.0, 6)  # shared bins over both entries
    handles = ax.get_legend().legend_handles
    for handle, values in zip(handles[:2], (a, b.numpy()[:3])):
        # seaborn draws the hue levels last to first: find each entry's line by its colour
        (line,) = [ln for ln in lines[:2] if to_rgba(ln.get_color()) == to_rgba(handle.get_color())]
        np.testing.assert_allclose(line.get_xdata(), edges)
        counts, _ = np.histogram(values, edges)
        np.testing.assert_allclose(line.get_ydata()[:-1], 100 * counts / len(values))
    np.testing.assert_allclose(lines[2].get_xdata(), [0.3, 0.3])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "trained (62% above)", "at start (100% above)", "margin 0.3"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("d(a,n) - d(a,p)", "share of items (%)")
    with pytest.raises(ValueError, match="no finite values"):
        score_histogram({"empty": [np.nan]}, "x")


def test_seaborn_figures_stay_out_of_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    frame = pd.DataFrame({"a": [1.0, 2.0]}, index=[0.0, 1.0])
    figs = [metric_sweep(frame, "x"), seed_spread(SEED_RUNS),
            score_histogram({"a": [0.0, 1.0, 2.0]}, "x", threshold=1.0)]
    assert plt.get_fignums() == before  # nothing registered, nothing shown twice in a notebook
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)


def test_score_matrix_draws_the_received_map_and_checks_its_shape():
    from reidnb import viz
    s = torch.softmax(torch.randn(32, 32), dim=-1)
    fig = viz.score_matrix(s, map_shape=(8, 4))
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 2
    received = images[1].images[0].get_array()
    assert received.shape == (8, 4)
    assert np.allclose(np.asarray(received).reshape(-1), s.sum(0).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="L x L"):
        viz.score_matrix(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="positions"):
        viz.score_matrix(s, map_shape=(4, 4))


def test_pca_2d_finds_the_direction_of_largest_spread():
    from reidnb import viz
    rng = np.random.default_rng(0)
    x = np.zeros((200, 5))
    x[:, 3] = rng.normal(0, 10, 200)      # the widest direction
    x[:, 1] = rng.normal(0, 1, 200)
    xy = viz.pca_2d(x)
    assert xy.shape == (200, 2)
    assert abs(np.corrcoef(xy[:, 0], x[:, 3])[0, 1]) > 0.999
    assert abs(np.corrcoef(xy[:, 1], x[:, 1])[0, 1]) > 0.99
    with pytest.raises(ValueError):
        viz.pca_2d(np.zeros(5))


def test_embedding_scatter_one_panel_per_model_one_colour_per_person():
    from reidnb import viz
    feats = {"a": torch.randn(12, 6), "b": torch.randn(12, 6)}
    labels = np.repeat(np.arange(3), 4)
    fig = viz.embedding_scatter(feats, labels)
    assert len(fig.axes) == 2
    assert all(len(ax.collections) == 3 for ax in fig.axes)
    with pytest.raises(ValueError, match="rows"):
        viz.embedding_scatter({"a": torch.randn(5, 6)}, labels)


def test_shift_recovery_and_sweep_draws_identity_line_models_and_sweep_or_note():
    from reidnb.viz import shift_recovery_and_sweep

    rec = pd.DataFrame({"start moved (px)": [-16.0, 0.0, 16.0]},
                       index=pd.Index([-16, 0, 16], name="true shift (px)"))
    still = rec.assign(**{"start moved (px)": [0.0, 0.0, 0.0]})
    sweep = pd.DataFrame({"IDE": [80.0, 70.0], "CASN": [81.0, 75.0]}, index=[0.0, 0.2])
    fig = shift_recovery_and_sweep({"CASN": rec, "IDE +BCE": still}, sweep)
    left, right = fig.axes
    lines = left.get_lines()
    assert [ln.get_label() for ln in lines] == ["follows the person", "CASN", "IDE +BCE"]
    np.testing.assert_allclose(lines[0].get_ydata(), [-16.0, 16.0])
    np.testing.assert_allclose(lines[2].get_ydata(), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(right.get_lines()[1].get_ydata(), [81.0, 75.0])
    empty = shift_recovery_and_sweep({"CASN": rec}, None, note="not run here")
    assert [t.get_text() for t in empty.axes[1].texts] == ["not run here"]
    assert empty.axes[1].get_lines() == []
    with pytest.raises(ValueError, match="no recovery"):
        shift_recovery_and_sweep({}, sweep)
