import numpy as np
import pytest

from reidnb.book import widgets


def _problem():
    # 3 queries, 4 gallery images; query 1's nearest valid match is a wrong identity
    dist = np.array([[0.1, 0.5, 0.9, 0.8],
                     [0.9, 0.2, 0.1, 0.7],
                     [0.6, 0.6, 0.9, 0.05]])
    q_pids, g_pids = np.array([1, 2, 3]), np.array([1, 2, 4, 3])
    q_cams, g_cams = np.array([0, 0, 0]), np.array([1, 1, 1, 0])
    imgs = [np.full((16, 8, 3), 40 * i, np.uint8) for i in range(4)]
    return imgs, dist, q_pids, g_pids, q_cams, g_cams


def test_wrong_top1_applies_the_protocol_exclusions():
    _, dist, qp, gp, qc, gc = _problem()
    # query 2 (pid 3) has its only match in its own camera -> excluded; its top-1 is pid 1: wrong
    assert widgets.wrong_top1(dist, qp, gp, qc, gc).tolist() == [1, 2]


def test_query_browser_walks_all_or_only_failed_queries_and_redraws():
    imgs, dist, qp, gp, qc, gc = _problem()
    b = widgets.query_browser(imgs[:3], imgs, dist, qp, gp, qc, gc, topk=2, images_as="arrays")
    assert b.query() == 0 and b.slider.max == 2
    first = b.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    b.slider.value = 1
    assert b.query() == 1 and b.image.value != first
    b.only_wrong.value = True
    assert b.slider.max == 1 and b.query() == 2  # second failure
    b.slider.value = 0
    assert b.query() == 1


def test_figure_browser_redraws_the_chosen_item():
    from matplotlib.figure import Figure

    calls = []

    def make(i):
        calls.append(i)
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().bar([0], [i + 1])
        return fig

    b = widgets.FigureBrowser(3, make, description="query")
    first = b.image.value
    b.slider.value = 2
    assert calls == [0, 2] and b.image.value != first and b.slider.max == 2


def test_slider_browser_redraws_with_every_sliders_value():
    from matplotlib.figure import Figure

    from reidnb.book import widgets
    calls = []

    def make(query, position):
        calls.append((query, position))
        fig = Figure(figsize=(1, 1))
        fig.add_subplot().plot([query, position])
        return fig

    b = widgets.SliderBrowser({"query": 4, "position": 32}, make)
    assert calls == [(0, 0)] and b.image.value[:4] == b"\x89PNG"
    b.sliders["position"].value = 17
    b.sliders["query"].value = 3
    assert calls[-2:] == [(0, 17), (3, 17)]
    assert b.sliders["position"].max == 31
    with pytest.raises(ValueError, match="at least one"):
        widgets.SliderBrowser({"query": 0}, make)
