# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 2 — The IDE baseline and the evaluation protocol
#
# > Train the identity-classification baseline that every paper in this book starts from, and see
# > exactly how re-ID is scored.
#
# All four papers report a plain CNN trained as an identity classifier as their first row: the
# *IDE* of Zheng et al. (2016), "ID-discriminative embedding". A trunk (ResNet-50 in the papers,
# ResNet-18 in the CPU profiles here) is followed by global average pooling and a linear classifier
# over the training identities. At test time the classifier is dropped and the pooled feature
# is the descriptor: query and gallery images are compared by Euclidean distance.
#
# CASN (`zheng2019`, Table 3) lists it as "IDE"; `jeong2020` (Table 5) and `li2019` (Table 3) start
# from a ResNet-50 baseline with extra losses. This chapter trains it on SynthReID, plots what
# it learned, explains the Market-1501 protocol, and looks at where it attends with Grad-CAM.

# %% tags=["parameters"]
profile = "synthetic"   # "smoke" (CI), "synthetic" (default), "gpu" (GPU, 256x128), "paper" (real data, GPU)
dataset = "synthreid"   # or market1501, dukemtmcreid, cuhk03_labeled, cuhk03_detected
data_root = "data"      # SynthReID is generated here; for real data the folder holding it
device = "cpu"          # "cuda" on a GPU machine
seed = 0
runs_dir = "runs"

# %%
import numpy as np
import pandas as pd
import torch

import reidnb.book.notebook
from reidnb import cam, viz
from reidnb.claims import load_claims
from reidnb.experiments import load_run, run_experiment
from reidnb.metrics import evaluate_rank
from reidnb.papers.ide import ide_experiment
from reidnb.results import (claims_vs_runs, eval_speed_table, load_records, metrics_table,
                            settings_table)

reidnb.book.notebook.setup(profile)
exp = ide_experiment(profile, dataset, seed=seed)
settings_table(exp, ["backbone", "image size", "epochs", "lr",
                     ("batch", "objective_kwargs.batch_size"), ("BN neck", "model_kwargs.bnneck"),
                     ("last stride", "model_kwargs.last_stride"),
                     ("random erasing p", lambda e: e.augment.get("erasing_p", 0))])

# %% [markdown]
# Two choices differ from the 2016 recipe in the CPU profiles, and both are one argument of
# `reidnb.papers.ide.ide_experiment`: a BatchNorm "neck" before a bias-free classifier (Luo et
# al. 2019), which lets a randomly initialised ResNet-18 train stably in a few epochs, and a last
# stride of 2, which keeps layer4 cheap on a CPU. The `paper` profile uses ResNet-50, last stride
# 1, no neck, 256x128 inputs and 60 epochs.
#
# ## Training
# `run_experiment` trains with the shared engine (checkpoint after every epoch, resumable) and
# writes a JSON run record. A second call with the same configuration returns the stored record.

# %% tags=["nbval-ignore-output"]
record = run_experiment(exp, data_root=data_root, runs_dir=runs_dir, device=device, progress=False)
print(record["run_name"], "-", record["status"])

# %%
pd.DataFrame(record["history"]).set_index("epoch")[["lr", "loss_id", "acc"]].round(3)

# %%
viz.loss_curves(record["history"], keys=["loss_id"])

# %% [markdown]
# The record also says how the trunk was initialised. Without an ImageNet checkpoint in the local
# torch cache, the CPU profiles start from random weights, far from the papers' setting:

# %%
print("weights:", record["weights_init"]["source"], "|", record["dataset"]["stats"]["train"])

# %% [markdown]
# ## The evaluation protocol (Market-1501)
#
# Each query image is compared with every gallery image and the gallery is sorted by distance.
# Before scoring, gallery images of the **same identity seen by the same camera** as the query are
# removed (finding them is too easy: same view, same light), and so are *junk* images (file names
# starting with `-1`, dropped by the loader). *Distractors* (identity `0000`) stay in the gallery
# as wrong answers.
#
# - **CMC rank-k** is the fraction of queries with a correct match among the first k.
# - **AP** of a query averages the precision at the position of each correct match; **mAP** is
#   its mean over queries. With $N_{gt}$ valid matches, $P(k)$ the precision of the first $k$
#   results and $\mathrm{rel}(k)=1$ when result $k$ is a match,
#   $$\mathrm{AP} = \frac{1}{N_{gt}} \sum_{k} P(k)\,\mathrm{rel}(k).$$
#
#   `ap="standard"` is that non-interpolated AP; `ap="trapezoid"` is the
#   interpolated AP of the official Market-1501 evaluation code, which averages the precision
#   before and at each hit.
#
# A tiny hand-checkable case: one query (identity 1, camera 0) and five gallery images.

# %%
toy = evaluate_rank(np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]), q_pids=np.array([1]),
                    g_pids=np.array([1, 2, 1, 0, 1]), q_camids=np.array([0]),
                    g_camids=np.array([0, 1, 1, 1, 2]), max_rank=4)
print("gallery 0 is same id + same camera -> ignored; ranking = [2(wrong), 1(hit), 0(wrong), 1(hit)]")
print("CMC:", toy[0], " AP:", round(toy[1], 4), "= (1/2 + 2/4) / 2")

# %% [markdown]
# ## Results on this run

# %%
run = load_run(exp, data_root=data_root, runs_dir=runs_dir, device=device)
q, g = run.caches["query"], run.caches["gallery"]
args = (run.distmat, q.pids.numpy(), g.pids.numpy(), q.camids.numpy(), g.camids.numpy())
rows = {f"ap={ap}": evaluate_rank(*args, max_rank=min(50, len(g)), ap=ap)
        for ap in ("standard", "trapezoid")}
ap_table = metrics_table(rows, ("rank1", "rank5", "rank10", "mAP")).round(2)
ap_table

# %%
diff = ap_table.loc["ap=standard", "mAP"] - ap_table.loc["ap=trapezoid", "mAP"]
print(f"standard - trapezoid mAP on this run: {diff:.2f} points")

# %% [markdown]
# The trapezoid rule averages the precision just before and at each hit, so a correct match
# found late (low precision) counts about half as much as in the standard AP: the gap is large
# for a weak model and shrinks as matches move to the top of the ranking. Papers rarely say which
# one they used (see `reidnb.metrics.evaluate_rank`'s docstring for our reading of each paper).

# %%
cmc, _ = evaluate_rank(*args, max_rank=min(20, len(g)))
viz.cmc_curve({f"IDE ({run.record['dataset']['name']}, {profile})": cmc},
              max_rank=min(20, len(g)))

# %% [markdown]
# ### How fast is evaluation?
# Re-ID code evaluates after every epoch and re-ranks for every "+RR" row, so speed matters.
# `benchmarks/bench_eval.py` builds a Market-1501-sized problem (3,368 queries x 15,913 gallery,
# 750 identities, 6 cameras) and times `reidnb.metrics` against plain per-query references
# written from the definitions (re-ranking: a port of the authors' algorithm, on a 2,000-item
# subsample because it needs several dense N x N arrays). The table reads the committed record
# `benchmarks/results/bench_eval_cpu.json`; rerun the script with `--json` to refresh it.

# %%
eval_speed_table("benchmarks/results/bench_eval_cpu.json")

# %% [markdown]
# ### Retrieval examples
# Each row: a query (dark frame), then its ten nearest gallery images after the protocol's
# exclusions; green frames are correct identities, red ones wrong.

# %%
viz.retrieval_grid(q.paths, g.paths, run.distmat, q.pids.numpy(), g.pids.numpy(),
                   q.camids.numpy(), g.camids.numpy(), topk=10, num_queries=4,
                   query_indices=np.linspace(0, len(q) - 1, 4).astype(int).tolist(),
                   images_as="paths")

# %% [markdown]
# ## Where does the baseline look? Grad-CAM
# Grad-CAM (Selvaraju et al. 2017) weights each channel of a stage's output by the mean gradient
# of the identity logit and keeps the positive part. Here: layer4 of the trained trunk, target =
# the predicted identity (query identities are not training classes, so there is no true class).

# %%
from reidnb.data.transforms import normalize

idx = np.linspace(0, len(q) - 1, 6).astype(int)
images = normalize(q.images[idx])
maps = cam.grad_cam(run.model.eval(), images, "backbone.layer4", normalize=True)
viz.attention_overlay(q.images[idx].permute(0, 2, 3, 1).numpy(), maps,
                      titles=[f"pid {int(p)}" for p in q.pids[idx]])

# %% [markdown]
# ## Against the papers
# The claims ledger holds the papers' IDE rows; the reproduced column is this book's run of the
# same method, **on a different data set** (SynthReID unless you ran the `paper` profile), so only
# the setting, not the number, is comparable.

# %%
claims = load_claims()
ide_claims = claims[(claims.paper == "zheng2019") & (claims.method == "IDE baseline")
                    & (claims.dataset == "market1501")]
claims_vs_runs(ide_claims, load_records(runs_dir, profile=profile))[
    ["paper", "table", "dataset", "metric", "value", "reproduced", "run dataset"]]

# %% [markdown]
# ## Summary
# - The IDE baseline is a classifier whose pooled feature serves retrieval; every later chapter
#   adds attention or pairwise losses on top of it.
# - Market-1501 scoring ignores same-identity-same-camera gallery images and junk, and keeps
#   distractors; CMC and the two AP variants come from `reidnb.metrics.evaluate_rank`.
#
# ## Exercises
# 1. Re-run with `bnneck=False` in the experiment (`exp.replace(model_kwargs={"bnneck": False})`):
#    how do loss curves and rank-1 change?
# 2. Compute the same metrics with `metric="cosine"`; why is the ranking almost unchanged after
#    the BN neck?
# 3. Pick a query whose top-1 is wrong and look at its Grad-CAM map: what did the model attend to?
