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
# > Train the identity-classification baseline that the later chapters compare with or start
# > from, and see exactly how re-ID is scored.
#
# The *IDE* ("ID-discriminative embedding") of Zheng et al. (2016) is a CNN trained as an
# identity classifier: an ImageNet trunk, global average pooling and a classifier over the
# training identities. At test time the classifier is dropped and the pooled feature is the
# descriptor; query and gallery images are compared by Euclidean distance. In this book's
# implementation the classifier is one linear layer, the descriptor is taken after the BN neck
# when the model has one (see below), and it is averaged with the descriptor of the mirrored
# image.
#
# Not every paper in this book starts from this plain IDE. Only CASN (`zheng2019`) builds on it
# (its Section 3.1.1 and the "IDE" row of Table 3; its IDE classifier has two fully connected
# layers). The others start from a ResNet-50 trained with more than the identity loss, or with
# losses they do not spell out; the table below prints how the claims ledger describes each
# paper's baseline row. This chapter trains the IDE on SynthReID, plots what it learned, explains
# the Market-1501 protocol, and looks at where it attends with Grad-CAM.

# %% tags=["parameters"]
profile = "synthetic"   # "smoke" (CI), "synthetic" (default), "gpu" (GPU, 256x128),
                        # "paper" (real data, GPU)
dataset = "synthreid"   # or market1501, dukemtmcreid, cuhk03_labeled, cuhk03_detected
data_root = "data"      # SynthReID is generated here; for real data the folder
                        # holding it
device = "cpu"          # "cuda" on a GPU machine
seed = 0
runs_dir = "runs"

# %% tags=["hide-input"]
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown

import reidnb.book.notebook
from reidnb import cam, viz
from reidnb.claims import METHODS, claim, load_claims
from reidnb.data.manifests import load_manifest
from reidnb.experiments import PROFILES, load_run, run_experiment
from reidnb.io import read_json
from reidnb.metrics import evaluate_rank
from reidnb.papers.ide import ide_experiment
from reidnb.results import (claims_vs_runs, eval_speed_table, load_records,
                            metrics_table, settings_table)

reidnb.book.notebook.setup(profile)
exp = ide_experiment(profile, dataset, seed=seed)
settings_table(exp, ["backbone", "image size", "epochs", "lr",
                     ("batch", "objective_kwargs.batch_size"),
                     ("BN neck", "model_kwargs.bnneck"),
                     ("last stride", "model_kwargs.last_stride"),
                     ("random erasing p", lambda e: e.augment.get("erasing_p", 0))])

# %% [markdown]
# The IDE as each profile of this book configures it (`reidnb.papers.ide.ide_experiment`; each
# profile with its default data set):

# %%
by_profile = {p: ide_experiment(p, seed=seed) for p in PROFILES}
pd.DataFrame({p: {"data set": e.dataset, "backbone": e.model_kwargs["backbone"],
                  "image size": f"{e.height}x{e.width}", "epochs": e.train.epochs,
                  "last stride": e.model_kwargs["last_stride"],
                  "BN neck": e.model_kwargs["bnneck"]}
              for p, e in by_profile.items()}).T.rename_axis("profile")

# %%
def _profiles(test):
    names = [f"`{p}`" for p, e in by_profile.items() if test(e)]
    if not names:
        return "no profile"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]

stride = exp.model_kwargs["last_stride"]
Markdown(
    "The 2016 IDE fine-tunes the ImageNet network with its strides unchanged, so "
    "ResNet's last stage (layer4) halves the feature map: a last stride of 2. Setting "
    "that stride to 1, which doubles the height and width of the final feature map, is "
    "a later change, made by PCB (Sun et al. 2018) and kept by the strong baseline of "
    "Luo et al. (2019). Here "
    f"{_profiles(lambda e: e.model_kwargs['last_stride'] == 2)} keep the 2016 last "
    "stride of 2 (also cheaper on a CPU), and "
    f"{_profiles(lambda e: e.model_kwargs['last_stride'] == 1)} use the later last "
    f"stride of 1; this run (`{profile}`) uses {stride}. The BN neck of Luo et al. "
    "(2019), a BatchNorm before a bias-free classifier, is not part of the 2016 recipe "
    f"either: it is on in {_profiles(lambda e: e.model_kwargs['bnneck'])}, where a "
    "small trunk that may start from random weights has few epochs to train, and off "
    f"in {_profiles(lambda e: not e.model_kwargs['bnneck'])}. Each is one argument of "
    "the experiment.")

# %% [markdown]
# The papers' baseline rows, as the claims ledger describes them (`reidnb.claims.METHODS`):

# %%
baselines = {"zheng2019": "IDE baseline", "jeong2020": "ResNet-50 baseline",
             "li2019": "baseline", "jamal2020": "baseline"}
with pd.option_context("display.max_colwidth", None):
    display(pd.DataFrame([(paper, method, METHODS[paper][method])
                          for paper, method in baselines.items()],
                         columns=["paper", "method", "ledger description"])
            .set_index("paper"))

# %% [markdown]
# So the baselines differ: `jeong2020` trains its baseline with identification *and*
# verification losses (its Section 4.4: "baseline schemes with IDE and Verification losses"),
# `li2019`'s full model uses cross-entropy plus a triplet loss, and the ledger reads its Table 3
# baseline (a ResNet-50 "without using the attention mechanism") as trained the same way, and
# `jamal2020` trained its ResNet-50 baseline itself without saying which losses it used (its full
# model uses classification and verification losses). The IDE trained here matches `zheng2019`'s
# baseline in kind, not the others.
#
# ## Training
# `run_experiment` trains with the shared engine (checkpoint after every epoch, resumable) and
# writes a JSON run record. A second call with the same configuration returns the stored record.
# The record's history follows, per epoch, as a table and as {numref}`fig-02-loss`.

# %% tags=["nbval-ignore-output"]
record = run_experiment(exp, data_root=data_root, runs_dir=runs_dir, device=device,
                        progress=False)
print(record["run_name"], "-", record["status"])

# %%
pd.DataFrame(record["history"]).set_index("epoch")[["lr", "loss_id", "acc"]].round(3)

# %% mystnb={"figure": {"caption": "The IDE's identity loss (cross entropy over the training identities) per epoch of this run. Look at whether it is still falling at the last epoch, that is, whether a longer schedule would still help.", "name": "fig-02-loss"}}
viz.loss_curves(record["history"], keys=["loss_id"])

# %% [markdown]
# The record also says how the trunk was initialised. Without an ImageNet checkpoint in the local
# torch cache, the CPU profiles start from random weights, far from the papers' setting:

# %%
print("weights:", record["weights_init"]["source"], "|",
      record["dataset"]["stats"]["train"])

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
#
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
print("gallery 0 is same id + same camera -> ignored; "
      "ranking = [2(wrong), 1(hit), 0(wrong), 1(hit)]")
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
# {numref}`fig-02-cmc` draws the CMC of this run.

# %% mystnb={"figure": {"caption": "CMC of the IDE on this run: for each k, the share of queries with a correct match among the first k gallery images. Look at how far the curve climbs after rank 1: matches the model finds, but not first.", "name": "fig-02-cmc"}}
cmc, _ = evaluate_rank(*args, max_rank=min(20, len(g)))
viz.cmc_curve({f"IDE ({run.record['dataset']['name']}, {profile})": cmc},
              max_rank=min(20, len(g)))

# %% [markdown]
# ### How fast is evaluation?
# Re-ID code evaluates after every epoch and re-ranks for every "+RR" row, so speed matters.
# `benchmarks/bench_eval.py` builds a random problem the size of Market-1501's evaluation, with
# its numbers of query identities and cameras, and times `reidnb.metrics` against plain per-query
# references written from the definitions (re-ranking: a port of the authors' algorithm, compared
# on a subsample because it needs several dense N x N arrays). The numbers below read the
# committed record `benchmarks/results/bench_eval_cpu.json`; rerun the script with `--json` to
# refresh it.

# %%
bench = read_json("benchmarks/results/bench_eval_cpu.json")
market = load_manifest("market1501")["splits"]
n_q, n_g = bench["re_ranking_full"]["output_shape"]
same = (n_q, n_g) == (market["query"]["images"], market["gallery"]["images"])
Markdown(f"The benchmark ranks {n_q:,} queries against {n_g:,} gallery images, "
         f"{'the same as' if same else 'not the same as'} Market-1501's "
         f"{market['query']['images']:,} queries and {market['gallery']['images']:,} "
         f"gallery images once junk is dropped (`data_manifests/market1501.json`); the "
         f"re-ranking comparison with the reference uses a subsample of "
         f"{bench['re_ranking_subsample']['items']:,} items.")

# %%
eval_speed_table("benchmarks/results/bench_eval_cpu.json")

# %% [markdown]
# ### Retrieval examples
# Each row of {numref}`fig-02-retrieval`: a query (dark frame), then its ten nearest gallery
# images after the protocol's exclusions; green frames are correct identities, red ones wrong.

# %% mystnb={"figure": {"caption": "Queries spread over the query set (dark frames), each followed by its nearest gallery images in rank order: green frames the same person, red frames someone else. Look at what the wrong matches share with their query: colours, view, a bag.", "name": "fig-02-retrieval"}}
viz.retrieval_grid(q.paths, g.paths, run.distmat, q.pids.numpy(), g.pids.numpy(),
                   q.camids.numpy(), g.camids.numpy(), topk=10, num_queries=4,
                   query_indices=np.linspace(0, len(q) - 1, 4).astype(int).tolist(),
                   images_as="paths")

# %% [markdown]
# ## Where does the baseline look? Grad-CAM
# Grad-CAM (Selvaraju et al. 2017) weights each channel of a stage's output by the mean gradient
# of the identity logit and keeps the positive part. Here ({numref}`fig-02-gradcam`): layer4 of
# the trained trunk, target = the predicted identity (query identities are not training classes,
# so there is no true class).

# %% mystnb={"figure": {"caption": "Grad-CAM of the trained IDE at layer4 over query images, for the identity it predicts (titles: the true identity). Look at whether the warm regions sit on the person or on the background.", "name": "fig-02-gradcam"}}
from reidnb.data.transforms import normalize

idx = np.linspace(0, len(q) - 1, 6).astype(int)
images = normalize(q.images[idx])
maps = cam.grad_cam(run.model.eval(), images, "backbone.layer4", normalize=True)
viz.attention_overlay(q.images[idx].permute(0, 2, 3, 1).numpy(), maps,
                      titles=[f"pid {int(p)}" for p in q.pids[idx]])

# %% [markdown]
# ## Against the papers
# The claims ledger holds `zheng2019`'s IDE rows; `reidnb.results.claims_vs_runs` puts this
# chapter's run beside them, with the data set it used (the claims page, at the end of the book,
# puts every run of the book there, chapter 7's IDE rows included). Only a run on the paper's own
# data set (the `paper` profile) can reproduce a printed number; a run on SynthReID shares the
# setting, not the number.

# %%
claims = load_claims()
ide_claims = claims[(claims.paper == "zheng2019") & (claims.method == "IDE baseline")
                    & (claims.dataset == "market1501")]
this_run = [r for r in load_records(runs_dir, profile=profile)
            if r["run_name"] == exp.run_name]
claims_vs_runs(ide_claims, this_run).drop(columns=["protocol", "method"])

# %% [markdown]
# `zheng2019` prints two IDE results for CUHK03-NP (detected boxes): Table 1 quotes
# the IDE of its reference [45] among other methods, and Table 3 gives the IDE baseline of its
# ablation (labelled "[34]", the PCB paper; the ledger keys Table 3's "CUHK03-NP" column as
# detected, as the text says). Both, from the ledger:

# %%
ide_rows = {"Table 1, 'IDE [45]' (quoted)": ("1", "IDE (quoted [45])"),
            "Table 3, 'IDE [34]' (ablation baseline)": ("3", "IDE baseline")}
ide_cuhk = pd.DataFrame({label: {m: claim("zheng2019", table, "cuhk03_detected",
                                          "single_query", method, m)
                                  for m in ("rank1", "mAP")}
                         for label, (table, method) in ide_rows.items()}).T
ide_cuhk

# %%
t1, t3 = ide_cuhk.iloc[0], ide_cuhk.iloc[1]


def _gap(metric, name):
    d = t3[metric] - t1[metric]
    return f"{abs(d):.1f} {name} points {'above' if d > 0 else 'below'}"


if t1.equals(t3):
    verdict = "The two rows agree."
else:
    verdict = ("The two rows disagree: Table 3's baseline is "
               f"{_gap('rank1', 'rank-1')} and {_gap('mAP', 'mAP')} Table 1's quoted "
               "IDE. The paper does not comment on the difference.")
Markdown(verdict)

# %% [markdown]
# ## Summary
# - The IDE baseline is a classifier whose pooled feature serves retrieval. It is `zheng2019`'s
#   baseline; the other papers' baselines add losses (or do not say which they use). Chapter 3
#   compares a triplet network with it; chapter 4, in the CPU profiles, starts its variants
#   from its trunk.
# - The 2016 IDE has a last stride of 2; a last stride of 1 is the later PCB / strong-baseline
#   change. Which one a profile uses is printed above from its configuration.
# - Market-1501 scoring ignores same-identity-same-camera gallery images and junk, and keeps
#   distractors; CMC and the two AP variants come from `reidnb.metrics.evaluate_rank`.
#
# ## Exercises
# 1. Re-run with `bnneck=False` in the experiment (`exp.replace(model_kwargs={"bnneck": False})`):
#    how do loss curves and rank-1 change?
# 2. Compute the same metrics with `metric="cosine"`; why is the ranking almost unchanged after
#    the BN neck?
# 3. Pick a query whose top-1 is wrong and look at its Grad-CAM map: what did the model attend to?
