"""The detector-misalignment sweep: the data changes only in its boxes, trained runs are
evaluated (never retrained) and their results kept; the attention-centroid slope."""

import math

import pytest
import torch

from tiny_model import TinyNet  # noqa: F401  (registers the model "test_tiny")

from reidnb import misalignment as mis
from reidnb.experiments import Experiment, load_data, run_dir_for, run_experiment
from reidnb.io import read_json
from reidnb.train.engine import TrainConfig


def _tiny_exp(**kw):
    return Experiment(name="tiny_mis", profile="smoke", synth_size="smoke", height=32, width=16,
                      model="test_tiny", objective_kwargs={"batch_size": 32},
                      train=TrainConfig(epochs=1, lr=0.05), **kw)


def test_knobs_give_errors_as_a_fraction_of_box_height():
    k = mis.misalignment_knobs(0.1, 128, 64)
    # horizontal shift up to offset x width = 0.1 x height; vertical up to offset/2 x height
    assert k["misalign_offset"] * 64 == pytest.approx(0.1 * 128)
    assert k["misalign_offset"] / 2 == pytest.approx(0.1)
    assert math.exp(k["misalign_scale"]) == pytest.approx(1.1)
    assert mis.misalignment_knobs(0.0) == {"misalign_offset": 0.0, "misalign_scale": 0.0}
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        mis.misalignment_knobs(1.5)


def test_levels_change_the_boxes_and_nothing_else(tmp_path):
    exp = _tiny_exp()
    _, a = load_data(mis.misaligned(exp, 0.0), tmp_path)
    _, b = load_data(mis.misaligned(exp, 0.2), tmp_path)
    for split in ("query", "gallery"):
        assert torch.equal(a[split].pids, b[split].pids)
        assert torch.equal(a[split].camids, b[split].camids)
        assert [p.split("/")[-1] for p in a[split].paths] == [p.split("/")[-1]
                                                             for p in b[split].paths]
    assert not torch.equal(a["query"].images, b["query"].images)
    with pytest.raises(ValueError, match="SynthReID"):
        mis.misaligned(exp.replace(dataset="market1501"), 0.1)


def test_sweep_evaluates_trained_runs_once_and_keeps_the_results(tmp_path):
    exp = _tiny_exp()
    data, runs = tmp_path / "data", tmp_path / "runs"
    groups = {"tiny": [exp]}
    with pytest.raises(FileNotFoundError, match="train"):
        mis.evaluate_misalignment(groups, (0.0,), n_ids=5, data_root=data, runs_dir=runs)
    run_experiment(exp, data_root=data, runs_dir=runs, device="cpu", progress=False)
    table = mis.evaluate_misalignment(groups, (0.0, 0.2), n_ids=5, data_root=data,
                                      runs_dir=runs)
    assert list(table["level"]) == [0.0, 0.2] and set(table["label"]) == {"tiny"}
    assert table["rank1"].between(0, 100).all() and table["mAP"].between(0, 100).all()
    saved = read_json(run_dir_for(exp, runs) / mis.RESULTS_FILE)
    assert set(saved) == {"level=0,ids=5", "level=0.2,ids=5"}
    assert all(v["queries"] > 0 for v in saved.values())
    # read back, not recomputed: a planted value comes out
    saved["level=0,ids=5"]["rank1"] = 12.5
    (run_dir_for(exp, runs) / mis.RESULTS_FILE).write_text(__import__("json").dumps(saved))
    again = mis.evaluate_misalignment(groups, (0.0,), n_ids=5, data_root=data, runs_dir=runs)
    assert float(again["rank1"].iloc[0]) == 12.5


def test_sweep_identities_are_the_first_test_pids():
    from reidnb.data.cache import ImageCache
    pids = torch.tensor([7, 3, 3, 0, 9, -1])
    cache = ImageCache(torch.zeros(6, 3, 4, 2, dtype=torch.uint8), pids, torch.zeros(6).long(),
                       [str(i) for i in range(6)])
    assert mis.sweep_identities(cache, 2) == [3, 7]
    assert mis.first_identities(cache, [3, 7]).pids.tolist() == [7, 3, 3]
    with pytest.raises(ValueError, match="has 3"):
        mis.sweep_identities(cache, 4)


def test_shift_images_moves_content_and_refuses_too_large_shifts():
    img = torch.arange(8.0).view(1, 1, 1, 8)
    assert mis.shift_images(img, 2).flatten().tolist() == [0, 0, 0, 1, 2, 3, 4, 5]
    assert mis.shift_images(img, -2).flatten().tolist() == [2, 3, 4, 5, 6, 7, 7, 7]
    with pytest.raises(ValueError):
        mis.shift_images(img, 8)


def test_centroid_slope_is_one_for_a_map_that_follows_the_image_and_zero_for_a_fixed_one():
    torch.manual_seed(0)
    images = torch.zeros(3, 3, 16, 32)
    images[..., 12:20] = 1.0          # a bright "body" in the middle

    def follows(x):                   # the map is the image's brightness, at full resolution
        return x.mean(dim=1)

    def fixed(x):                     # always the same map
        return torch.ones(x.shape[0], 16, 32)

    assert mis.centroid_shift(follows, images)["slope"] == pytest.approx(1.0, abs=1e-5)
    assert mis.centroid_shift(fixed, images)["slope"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        mis.centroid_shift(fixed, images, shifts=(4,))


def test_an_empty_map_has_no_centroid_and_no_slope():
    images = torch.zeros(2, 3, 16, 32)
    assert torch.isnan(mis.centroid_x(torch.zeros(2, 4, 8), 32)).all()
    got = mis.centroid_shift(lambda x: torch.zeros(x.shape[0], 4, 8), images)
    assert math.isnan(got["slope"]) and got["images"] == 0

    def half_empty(x):                # image 0 has a map, image 1 none
        m = torch.zeros(x.shape[0], 16, 32)
        m[0] = x[0].mean(dim=0) + 1e-3
        return m
    images[..., 12:20] = 1.0
    got = mis.centroid_shift(half_empty, images)
    assert got["images"] == 1 and got["slope"] == pytest.approx(1.0, abs=0.05)


def test_positive_pair_sweep_pairs_each_query_with_its_nearest_match(monkeypatch):
    import pandas as pd
    from tiny_model import random_cache

    cache = random_cache(4, 4, 32, 16, seed=0)      # cameras alternate 0/1
    first = torch.tensor([i % 4 == 0 for i in range(len(cache))])
    query, gallery = cache.subset(first), cache.subset(~first)

    class _Data:
        num_train_pids = 4

    seen_levels = []

    def fake_load(exp, root):
        seen_levels.append(exp.synth_knobs["misalign_scale"])
        return _Data(), {"query": query, "gallery": gallery}

    monkeypatch.setattr(mis, "load_data", fake_load)
    monkeypatch.setattr(mis, "load_trained", lambda exp, runs, n: TinyNet(n))

    def pair_fn(model, x1, x2):
        return pd.DataFrame({"gap": (x1 - x2).abs().flatten(1).mean(1).numpy()})

    table = mis.positive_pair_sweep(_tiny_exp(), (0.0, 0.1), 3, pair_fn)
    assert list(table.index) == [0.0, 0.1] and list(table.columns) == ["gap", "pairs"]
    assert (table["pairs"] == 3).all() and (table["gap"] > 0).all()
    assert seen_levels == [0.0, pytest.approx(math.log1p(0.1))]
