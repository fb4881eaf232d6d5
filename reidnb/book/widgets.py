"""Interactive views for JupyterLab (ipywidgets), each with a static fallback for the book.

`query_browser` pairs a query slider with the retrieval row of that query. In a live kernel,
moving the slider redraws the row; in the rendered book the widget shows the state it was saved
with (its first query) and cannot change, so the chapter also shows a fixed example.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import viz


def wrong_top1(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids) -> np.ndarray:
    """Query indices whose first ranked gallery item (after the protocol's exclusions) is wrong."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    out = []
    for i in range(len(q_pids)):
        top = viz.ranked_gallery(distmat[i], q_pids[i], np.asarray(q_camids)[i], g_pids,
                                 np.asarray(g_camids), 1)
        if len(top) and g_pids[top[0]] != q_pids[i]:
            out.append(i)
    return np.asarray(out, dtype=int)


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (what the browser's Image widget shows)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


class QueryBrowser:
    """A slider over the queries, optionally only those with a wrong top-1, and the ranked gallery
    of the chosen query as an image (framed green/red as in `viz.retrieval_grid`).

    The view is an `ipywidgets.Image` whose PNG bytes are replaced on each change. It avoids the
    Output widget on purpose: capturing a figure into an Output widget made headless execution
    (papermill, nbval) hang now and then on this machine.
    """

    def __init__(self, query_imgs: Any, gallery_imgs: Any, distmat: np.ndarray, q_pids, g_pids,
                 q_camids, g_camids, topk: int = 10, images_as: str = "paths", start: int = 0):
        import ipywidgets as w

        self.args = (query_imgs, gallery_imgs, np.asarray(distmat), np.asarray(q_pids),
                     np.asarray(g_pids), np.asarray(q_camids), np.asarray(g_camids))
        self.topk, self.images_as = topk, images_as
        self.everyone = np.arange(self.args[2].shape[0])
        self.failures = wrong_top1(*self.args[2:])
        self.only_wrong = w.Checkbox(value=False,
                                     description=f"only wrong top-1 ({len(self.failures)})")
        self.slider = w.IntSlider(value=start, min=0, max=len(self.everyone) - 1,
                                  description="query", continuous_update=False)
        self.image = w.Image(format="png")
        self.slider.observe(self.draw, names="value")
        self.only_wrong.observe(self.draw, names="value")
        self.widget = w.VBox([w.HBox([self.slider, self.only_wrong]), self.image])
        self.draw()

    def pool(self) -> np.ndarray:
        """The queries the slider walks through."""
        return self.failures if self.only_wrong.value and len(self.failures) else self.everyone

    def query(self) -> int:
        """The query index shown now."""
        pool = self.pool()
        return int(pool[min(self.slider.value, len(pool) - 1)])

    def draw(self, *_) -> None:
        self.slider.max = len(self.pool()) - 1
        q, g, d, qp, gp, qc, gc = self.args
        fig = viz.retrieval_grid(q, g, d, qp, gp, qc, gc, topk=self.topk,
                                 query_indices=[self.query()], images_as=self.images_as)
        self.image.value = figure_png(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class FigureBrowser:
    """A slider over `n` items and the figure `make_figure(i)` of the chosen one, as an image."""

    def __init__(self, n: int, make_figure, description: str = "item", start: int = 0):
        import ipywidgets as w

        self.make_figure = make_figure
        self.slider = w.IntSlider(value=start, min=0, max=n - 1, description=description,
                                  continuous_update=False)
        self.image = w.Image(format="png")
        self.slider.observe(self.draw, names="value")
        self.widget = w.VBox([self.slider, self.image])
        self.draw()

    def draw(self, *_) -> None:
        self.image.value = figure_png(self.make_figure(self.slider.value))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class SliderBrowser:
    """One slider per named range (`sizes`: name -> number of values) and the figure
    `make_figure(**chosen)` of the chosen values, as an image; e.g. a query and a position of
    its feature map (chapter 5's attention viewer)."""

    def __init__(self, sizes: dict[str, int], make_figure):
        import ipywidgets as w

        if not sizes or any(n < 1 for n in sizes.values()):
            raise ValueError(f"SliderBrowser: every range needs at least one value, got {sizes}")
        self.make_figure = make_figure
        self.sliders = {name: w.IntSlider(value=0, min=0, max=n - 1, description=name,
                                          continuous_update=False)
                        for name, n in sizes.items()}
        self.image = w.Image(format="png")
        for slider in self.sliders.values():
            slider.observe(self.draw, names="value")
        self.widget = w.VBox([*self.sliders.values(), self.image])
        self.draw()

    def values(self) -> dict[str, int]:
        return {name: s.value for name, s in self.sliders.items()}

    def draw(self, *_) -> None:
        self.image.value = figure_png(self.make_figure(**self.values()))

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def query_browser(*args, **kwargs) -> QueryBrowser:
    """`QueryBrowser(...)`; displaying it shows the slider, the checkbox and the ranking."""
    return QueryBrowser(*args, **kwargs)
