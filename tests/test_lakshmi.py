"""Chapter 3's runs (reidnb/papers/lakshmi.py): the tutorial row uses the tutorial's optimizer
and schedule, costs what the earlier Adam row cost, the plan holds every run the chapter uses, and
the active-triplet statistic counts what it says."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from reidnb import losses, papers
from reidnb.experiments import PROFILES
from reidnb.papers.lakshmi import active_triplets, lakshmi_experiments, plan

CHAPTER = Path(__file__).parents[1] / "notebooks" / "03_lakshmi_siamese_tutorial.py"


@pytest.mark.parametrize("profile", PROFILES)
def test_tutorial_rows_use_the_tutorials_sgd_and_a_halfway_step(profile):
    exps = lakshmi_experiments(profile)
    for key in ("tutorial", "tutorial_batch_hard"):
        t = exps[key].train
        assert (t.optimizer, t.lr, t.momentum, t.nesterov, t.lr_gamma) == ("sgd", 0.04, 0.9,
                                                                           False, 0.1), key
        assert t.lr_steps == (max(1, t.epochs // 2),), key
    if profile in ("paper", "gpu"):
        assert (exps["tutorial"].height, exps["tutorial"].width) == (256, 128)
    if profile == "paper":   # "declined by 0.1 ... across 30 epochs": one step in 60 epochs
        assert exps["tutorial"].train.lr_steps == (30,) and exps["tutorial"].train.epochs == 60


@pytest.mark.parametrize("profile", PROFILES)
def test_tutorial_rows_cost_what_the_adam_rows_cost(profile):
    exps = lakshmi_experiments(profile)
    for new, old in (("tutorial", "random_triplet"), ("tutorial_batch_hard", "batch_hard")):
        a, b = exps[new], exps[old]
        kw = dict(a.objective_kwargs)
        if new == "tutorial":   # P anchors of P identities: as many triplets a batch as before
            p = kw.pop("num_identities")
            assert p == (8 if profile == "smoke" else b.objective_kwargs["batch_size"])
        assert kw == b.objective_kwargs and a.train.epochs == b.train.epochs
        assert (a.model_kwargs, a.height, a.width) == (b.model_kwargs, b.height, b.width)
        assert b.train.optimizer == "adam" and a.run_name != b.run_name


@pytest.mark.parametrize("pair", [("tutorial", "tutorial_batch_hard"),
                                  ("random_triplet", "batch_hard")])
def test_each_triplet_pair_sees_the_same_number_of_training_images(pair):
    exps = lakshmi_experiments("synthetic")
    rt, bh = exps[pair[0]], exps[pair[1]]
    train_ids = 200 - round(rt.val_fraction * 200)
    seen_rt = rt.train.epochs * rt.objective_kwargs["triplets_per_epoch"] * 3
    p, k = bh.objective_kwargs["num_identities"], bh.objective_kwargs["num_instances"]
    seen_bh = bh.train.epochs * (train_ids // p) * p * k
    assert abs(seen_rt - seen_bh) / seen_rt < 0.1
    assert rt.objective_kwargs["margin"] == bh.objective_kwargs["triplet_margin"]


def test_plan_holds_every_run_the_chapter_uses_and_each_is_registered():
    code = "\n".join(line for line in CHAPTER.read_text().splitlines()
                     if not line.startswith("#"))   # markdown cells are comment lines
    used = set(re.findall(r'exps\["(\w+)"\]', code))
    assert "tutorial" in used and "tutorial_batch_hard" in used
    exps = lakshmi_experiments("synthetic")
    planned = {e.run_name for group in plan("synthetic").values() for e in group}
    assert {exps[k].run_name for k in used} <= planned
    for key in ("tutorial", "tutorial_batch_hard", "random_triplet", "batch_hard"):
        assert papers.experiment(f"lakshmi_{key}", "smoke").key() == \
            lakshmi_experiments("smoke")[key].key()


def test_chapter_source_parses():
    ast.parse(CHAPTER.read_text())


def _clusters():
    """Four identities of two 2-D points each, 10 apart; one image of identity 1 sits beside
    identity 0."""
    emb = torch.tensor([[0, 0], [0, 1], [10, 0], [0.5, 0.5], [20, 0], [20, 1], [30, 0], [30, 1]])
    return emb, np.array([0, 0, 1, 1, 2, 2, 3, 3])


def test_active_triplets_counts_triplets_with_a_loss():
    emb, pids = _clusters()
    trip = [[0, 1, 6], [4, 5, 0], [6, 7, 2], [3, 2, 0]]   # only the last breaks the margin
    out = active_triplets(emb, pids, trip, margin=0.3, num_instances=2, rounds=2)
    assert out["random"] == pytest.approx({"triplets": 4, "active": 0.25, "loss": float(
        losses.triplet_margin(emb[[0, 4, 6, 3]], emb[[1, 5, 7, 2]], emb[[6, 0, 2, 0]], 0.3))})
    # P = 4 identities x K = 2 images: every batch is all 8 images; the hardest negative of
    # both identity-0 images and of the stray image is within the margin, the rest are not
    hard = out["batch-hard"]
    assert hard["triplets"] == 16 and hard["active"] == pytest.approx(3 / 8)
    assert hard["loss"] == pytest.approx(float(losses.batch_hard_triplet(emb, torch.as_tensor(
        pids), 0.3)))


def test_active_triplets_is_zero_when_identities_are_apart():
    emb, pids = _clusters()
    emb[3] = torch.tensor([10.0, 1.0])
    out = active_triplets(emb, pids, [[0, 1, 2], [3, 2, 7]], margin=0.3)
    assert out["random"]["active"] == 0 and out["batch-hard"]["active"] == 0
    assert out["batch-hard"]["loss"] == 0
