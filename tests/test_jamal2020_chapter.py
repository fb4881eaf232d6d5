"""What chapter 6 computes on trained jamal2020 runs (reidnb/papers/jamal2020.py): Table 1's
protocols (single query, multi-query with the same-camera gallery images, re-ranking) and the
test modes, the grid beside the ledger, the pairs the maps are drawn for, the block's effect on a
pair, and what each test mode costs."""

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_model import random_cache

from reidnb.data.cache import ImageCache
from reidnb.data.transforms import normalize
from reidnb.experiments import run_dir_for
from reidnb.io import atomic_write_json, read_json
from reidnb.models import build_model
from reidnb.papers import jamal2020 as j
from reidnb.train.engine import evaluate


def _small(**kw):
    torch.manual_seed(0)
    return build_model("jamal2020", 6, backbone="resnet18", pretrained=False, **kw).eval()


def _split(cache: ImageCache):
    """Query: the first image of each (pid, camera); gallery: the rest."""
    seen, q = set(), []
    for i, (p, c) in enumerate(zip(cache.pids.tolist(), cache.camids.tolist())):
        q.append((p, c) not in seen)
        seen.add((p, c))
    q = torch.tensor(q)
    return cache.subset(q), cache.subset(~q)


EVAL = {"flip": False, "metric": "euclidean", "which": "feat"}


def test_single_query_is_the_engines_evaluation_and_multi_query_pools_the_same_camera():
    model = _small()
    query, gallery = _split(random_cache(5, 6, 64, 32, seed=1))
    dists = j.protocol_distances(model, query, gallery, EVAL)
    assert set(dists) == set(j.PROTOCOLS)
    sq = j._scores(*dists["single_query"], gallery)
    ev = evaluate(model, query, gallery, "cpu", **EVAL).metrics()
    assert sq == pytest.approx(ev)
    # one query per (pid, camera) here, so pooling keeps their number
    d_mq, pids, cams = dists["multi_query_mean"]
    assert d_mq.shape == (len(query), len(gallery)) and len(pids) == len(query)
    assert model.test_mode == "plain"


def test_self_and_pairwise_test_modes_and_a_model_without_them():
    model = _small()
    query, gallery = _split(random_cache(4, 6, 64, 32, seed=2))
    plain = j.protocol_distances(model, query, gallery, EVAL)["single_query"][0]
    self_d = j.protocol_distances(model, query, gallery, EVAL, test_mode="self")
    assert not torch.allclose(self_d["single_query"][0], plain)
    pairwise = j.protocol_distances(model, query, gallery, EVAL, test_mode="pairwise")
    assert set(pairwise) == {"single_query"}
    assert pairwise["single_query"][0].shape == tuple(plain.shape)
    assert model.test_mode == "plain"
    with pytest.raises(ValueError, match="needs a Jamal2020 model"):
        j.protocol_distances(build_model("test_tiny", 4), query, gallery, EVAL, test_mode="self")


def test_evaluate_protocols_keeps_its_results_in_the_run_folder(tmp_path, monkeypatch):
    import reidnb.experiments as experiments

    exp = j.jamal2020_experiment("smoke")
    cache = random_cache(4, 6, 64, 32, seed=3)
    query, gallery = _split(cache)

    class _Data:
        num_train_pids = 6

    loads = []
    monkeypatch.setattr(experiments, "load_data",
                        lambda e, root: (_Data(), {"query": query, "gallery": gallery}))
    monkeypatch.setattr(experiments, "load_trained",
                        lambda e, runs, n: loads.append(1) or _small())
    with pytest.raises(FileNotFoundError, match="train"):
        j.evaluate_protocols({"ours": [exp]}, "data", tmp_path)
    atomic_write_json(run_dir_for(exp, tmp_path) / "record.json", {"status": "complete"})
    first = j.evaluate_protocols({"ours": [exp]}, "data", tmp_path)
    assert list(first["protocol"]) == list(j.PROTOCOLS) and set(first["label"]) == {"ours"}
    assert j.cmc_is_monotone(first)
    again = j.evaluate_protocols({"ours": [exp]}, "data", tmp_path)
    pd.testing.assert_frame_equal(first, again)
    assert len(loads) == 1          # the second call read protocols.json
    saved = read_json(run_dir_for(exp, tmp_path) / j.PROTOCOLS_FILE)
    assert "rerank,test_mode=plain,k1=20,k2=6,lambda=0.3" in saved


def test_protocol_grid_sets_the_ledger_beside_the_mean():
    rows = [{"label": "ours", "seed": s, "protocol": p, "rank1": 10.0 + s, "rank5": 20.0,
             "rank10": 30.0, "rank20": 40.0, "mAP": 5.0} for s in (0, 1) for p in j.PROTOCOLS]
    grid = j.protocol_grid(pd.DataFrame(rows), "ours")
    assert grid.loc[("SQ", "rank1"), "SynthReID"] == 10.5 and grid.loc[("SQ", "rank1"), "seeds"] == 2
    assert grid.loc[("SQ", "rank5"), "Market-1501 (paper)"] == 90.36
    assert grid.loc[("MQ (max)", "mAP"), "Market-1501 (paper)"] == 83.55
    assert pd.isna(grid.loc[("MQ (mean)", "rank1"), "DukeMTMC-reID (paper)"])
    assert grid.loc[("RR", "mAP"), "DukeMTMC-reID (paper)"] == 80.65
    assert not j.cmc_is_monotone(pd.DataFrame([{"rank1": 90.74, "rank5": 90.36, "rank10": 97.86,
                                                "rank20": 98.57}]))


def test_repeated_cells_of_table_1():
    market = j.repeated_cells("market1501")
    assert market == {("single_query", "rank10"): [("multi_query", "rank5")],
                      ("multi_query", "rank5"): [("single_query", "rank10")]}
    assert j.repeated_cells("dukemtmcreid") == {("single_query", "rank10"): [("rerank", "rank10")],
                                                ("rerank", "rank10"): [("single_query", "rank10")]}


def test_nearest_partners_are_the_nearest_true_match_and_the_nearest_other_person():
    from reidnb.metrics import nearest_partners

    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    # g0: same pid, same camera (not a match); g1: distractor; g2: other person; g3: match
    pos, neg = nearest_partners(dist, [7], [0], [7, 0, 3, 7, 3], [0, 1, 1, 2, 2])
    assert pos.tolist() == [3] and neg.tolist() == [2]
    pos, neg = nearest_partners(dist[:, :2], [7], [0], [7, 0], [0, 1])
    assert pos.tolist() == [-1] and neg.tolist() == [-1]
    with pytest.raises(ValueError, match="distmat"):
        nearest_partners(dist, [7, 8], [0, 0], [7], [0])


def test_pair_statistics_and_the_attended_activation():
    model = _small()
    x = normalize(random_cache(2, 2, 64, 32, seed=4).images)
    stats = j.pair_statistics(model, x[:2], x[2:])
    assert list(stats.columns) == ["sa corr layer3", "ma mean layer3", "sa corr layer4",
                                   "ma mean layer4", "embedding change"]
    assert len(stats) == 2 and (stats["embedding change"] > 0).all()
    same = j.pair_statistics(model, x[:2], x[:2])
    assert np.allclose(same["sa corr layer4"], 1.0)     # an image paired with itself
    a1, a2 = j.attended_activation(model, x[:2], x[2:], "layer4")
    assert a1.shape == a2.shape == (2, 2, 1)
    with torch.no_grad():
        plain = (model.backbone(x[:2]) ** 2).mean(dim=1)
    assert not torch.allclose(a1, plain)
    with pytest.raises(ValueError, match="no block at 'layer2'"):
        j.attended_activation(model, x[:2], x[2:], "layer2")


def test_pair_maps_interleave_the_two_images_of_each_pair():
    model = _small()
    x = normalize(random_cache(2, 2, 64, 32, seed=5).images)
    maps = j.pair_maps(model, x[:2], x[2:])
    assert list(maps) == [f"{s} {n}" for s in ("layer3", "layer4") for n in ("SA", "MA", "MU")]
    assert maps["layer4 SA"].shape == (4, 2, 1) and maps["layer3 MA"].shape == (4, 4, 2)
    with torch.no_grad():
        out = model.forward_pair(x[:2], x[2:])
    assert torch.allclose(maps["layer3 SA"][1], out.maps["layer3_sa2"][0].mean(dim=0))
    assert torch.equal(maps["layer4 MU"][0], maps["layer4 MU"][1])    # one MU for the pair


def test_tables23_rows_and_ledger_columns():
    rows = [{"label": label, "seed": 0, "protocol": p, "rank1": 10.0, "rank5": 20.0,
             "rank10": 30.0, "rank20": 40.0, "mAP": 5.0}
            for label in ("IDE", "ours with MA") for p in j.PROTOCOLS]
    t = j.tables23(pd.DataFrame(rows))
    assert list(t.index) == ["IDE", "Siamese without MA", "ours with MA"]
    assert t.loc["ours with MA", "Market MQ rank1 (Table 3)"] == 93.82
    assert t.loc["Siamese without MA", "Duke SQ mAP (Table 2)"] == 57.13
    assert t.loc["IDE", "Market MQ mAP (Table 3)"] == 63.95
    assert pd.isna(t.loc["Siamese without MA", "Market MQ rank1 (Table 3)"])
    assert t.loc["Siamese without MA", "seeds"] == 0 and t.loc["IDE", "SynthReID SQ rank1"] == 10.0


def test_test_mode_costs_count_the_pair_path_and_k_pairs():
    model = _small()
    costs = j.test_mode_costs(model, (64, 32), top_k=3)
    g = costs["GFLOPs"]
    assert g.iloc[1] > g.iloc[0]                       # self runs the blocks too
    assert g.iloc[3] == pytest.approx(g.iloc[0] + 3 * g.iloc[2])
    assert costs["x plain"].iloc[0] == 1.0 and model.test_mode == "plain"
    seconds = j.time_test_modes(model, (64, 32), batch=2)
    assert (seconds["seconds"] > 0).all()
