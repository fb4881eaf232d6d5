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
# # Chapter 6 — Deep mutual attention in a Siamese network (`jamal2020`)
#
# > Rebuild the mutual-attention block of Jamal, Zhengang and Ming (2020), train the Siamese
# > network with and without it on SynthReID, and check its Tables 1–3 and Fig. 6, the
# > ablations the paper did not run, and a test it could not run: loose detector boxes.
#
# Most attention blocks in this book look at one image at a time. This paper lets the two
# images of a pair look at each other. Both go through a ResNet-50 with shared weights; after
# `layer3` and after `layer4` each branch builds a *self-attention* map from two summaries of
# its feature map $f$ ($C \times H \times W$): a spatial one, the mean over the channels at each
# position (Eq. 1), and a channel one, the global average of each channel passed through a
# convolution (Eqs. 2–3). Their product goes through a $1 \times 1$ convolution (Eq. 4):
#
# $$\mathrm{SPA}(i,j) = \frac{1}{C} \sum_{c=1}^{C} f_c(i,j), \qquad
# \mathrm{CA} = \sigma\big(W_{ca} \, \mathrm{GAP}(f)\big), \qquad
# \mathrm{SA} = \sigma\big(W_{sa} * (\mathrm{SPA} \cdot \mathrm{CA})\big).$$
#
# The *mutual* step multiplies the two branches' maps position by position, so a place stays
# lit only where both images attend to it (Eq. 5). A $1 \times 1$ convolution of that product
# (Eq. 6) rescales both feature maps, which keep their original values as a residual
# (Eqs. 7–8):
#
# $$\mathrm{MA} = \mathrm{SA}_1 \odot \mathrm{SA}_2, \qquad
# \mathrm{MU} = \sigma\big(W_{mu} * \mathrm{MA}\big), \qquad
# F_k = f_k \odot \mathrm{MU} + f_k \quad (k = 1, 2).$$
#
# The rescaled map of `layer3` is what `layer4` reads. Two heads train the network (Sec. 4): an
# identity classifier on each image's *un-attended* features (Sec. 6.3 says the classifier sees
# the original input), and a verification head that reads the two attended 512-d embeddings of
# a pair and says "same" or "different". The loss is their weighted sum (Eq. 13):
#
# $$L = \mathrm{ID} + \alpha \, V.$$
#
# The $\sigma$ above are one of our readings: the paper names no activation (see the list of
# readings in section 1).

# %% tags=["parameters"]
profile = "synthetic"   # "smoke" (CI), "synthetic" (the book's default), "gpu",
                        # "paper" (real data)
dataset = "synthreid"   # or market1501, dukemtmcreid
data_root = "data"      # SynthReID is generated here; for real data the folder
                        # holding it
device = "cpu"          # "cuda" on a GPU machine
runs_dir = "runs"
scope = None            # "core" (each paper's headline rows, 3 seeds) or "full"
                        # (every ablation and sweep); None: the profile's default

# %% tags=["hide-input"]
import copy
import math

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

import reidnb.book.notebook
from reidnb import cam, verdicts, viz
from reidnb.book import widgets
from reidnb.book.claims_page import cell_flags, load_flags
from reidnb.book.notebook import show_source
from reidnb.claims import claim, claims_table, is_quoted
from reidnb.complexity import count_params, output_shapes
from reidnb.data.synth_render import SynthKnobs
from reidnb.data.transforms import normalize
from reidnb.experiments import (load_data, load_trained, resolve_scope, run_all,
                                run_experiment)
from reidnb.metrics import nearest_partners
from reidnb.misalignment import LEVELS, evaluate_misalignment, positive_pair_sweep
from reidnb.models.jamal2020 import (PAPER_STAGES, PARTS, SA_CHANNELS, Jamal2020,
                                     MutualAttention)
from reidnb.papers.jamal2020 import (ALPHA, INPUT_SIZES, JAMAL2020_PLAN,
                                     MISALIGNMENT_IDS, PAIRWISE_TOP_K, PROTOCOL_LABELS,
                                     RERANK, attended_activation, cmc_is_monotone,
                                     evaluate_protocols, jamal2020_plan, pair_maps,
                                     pair_statistics, protocol_distances,
                                     protocol_grid, repeated_cells, tables23,
                                     test_mode_costs,
                                     time_test_modes)
from reidnb.results import (history_values, seed_table, seed_values, settings_table,
                            with_claims)

reidnb.book.notebook.setup(profile)
scope = resolve_scope(profile, scope)
plan = jamal2020_plan(profile, dataset, scope)
seeds = JAMAL2020_PLAN[profile]["seeds"]
first = seeds[0]


def runs_of(variant, group="compared"):
    return [e for e in plan[group] if e.name == f"jamal2020_{variant}"]


#: the chapter's labels for the compared variants this build's plan runs (the core
#: scope leaves out the self-paired control)
COMPARED = {label: variant for label, variant in (
    ("Siamese without MA", "baseline"), ("ours with MA", "full"),
    ("self-paired control", "self_paired")) if runs_of(variant)}

full = next(e for e in runs_of("full") if e.train.seed == first)
settings_table(full, [
    "backbone",
    ("trunk initialised from",
     lambda e: f"run {e.trunk_from}" if e.trunk_from else "ImageNet (if cached)"),
    "image size", ("last stride", "model_kwargs.last_stride"),
    ("blocks after", lambda e: ", ".join(e.model_kwargs["stages"])),
    ("readings: sa_channels, att_act, fd",
     lambda e: ", ".join(str(e.model_kwargs[k])
                         for k in ("sa_channels", "att_act", "fd"))),
    "epochs", "optimizer", "lr", ("momentum", "train.momentum"),
    ("weight decay", "train.weight_decay"),
    ("lr steps (x0.1 at epoch)", "train.lr_steps"),
    ("pairs per batch",
     lambda e: f"{2 * e.objective_kwargs['num_identities']} "
               f"({e.objective_kwargs['num_identities']} anchors, each with "
               "a positive and a negative)"),
    ("anchors per epoch",
     lambda e: e.objective_kwargs["anchors_per_epoch"] or "every image"),
    ("loss (Eq. 13)", lambda e: f"{e.objective_kwargs['id_weight']:g} ID + "
                                f"{e.objective_kwargs['ver_weight']:g} V"),
    ("dropout before the identity FC", "model_kwargs.dropout"),
    ("augmentation", lambda e: ", ".join(f"{k} {v}" for k, v in e.augment.items())),
    ("test", lambda e: f"{e.eval['metric']} distance of the 512-d un-attended "
                       f"embedding, flip averaging {e.eval['flip']}"),
], extra={"seeds (the compared rows)": len(seeds),
          "runs in this chapter": len({e.run_name for group in plan.values()
                                       for e in group})})

# %% [markdown]
# ## 1. The model, one module at a time
# The paper's configuration: ResNet-50 with ImageNet weights, images resized to 256x188 (Secs.
# 3.1 and 5.1), the blocks after `layer3` and `layer4`. Here the weights are random; only shapes
# and costs matter. The feature maps each block sees, at the paper's size, at the 256x128 most
# re-ID code uses (Market-1501's boxes are 2:1), and for the network this profile trains:

# %%
torch.manual_seed(0)   # the random weights below, the same in every kernel
paper_net = Jamal2020(751, backbone="resnet50", pretrained=False).eval()
profile_net = Jamal2020(10, backbone=full.model_kwargs["backbone"],
                        pretrained=False).eval()
stage_modules = [f"backbone.{s}" for s in PAPER_STAGES]
shape_rows = {}
for label, net, (h, w) in (("paper size, ResNet-50", paper_net, INPUT_SIZES["paper"]),
                           ("usual size, ResNet-50", paper_net, INPUT_SIZES["usual"]),
                           (f"this profile, {full.model_kwargs['backbone']}",
                            profile_net, (full.height, full.width))):
    shapes = output_shapes(net, stage_modules, (h, w))
    shape_rows[f"{label}, {h}x{w}"] = {f"{s} (C, H, W)": shapes[m]
                                       for s, m in zip(PAPER_STAGES, stage_modules)}
pd.DataFrame(shape_rows).T

# %% [markdown]
# ### The block, step by step (Eqs. 1–8)
# Two random images at 256x188 go through the shared trunk to `layer3`; then every tensor the
# first block makes for the pair:

# %%
show_source(MutualAttention.self_attention, start="out = {}")

# %%
show_source(MutualAttention.pair, start="a, b = self.self_attention")

# %%
torch.manual_seed(1)
x_pair = torch.randn(2, 3, *INPUT_SIZES["paper"])
with torch.no_grad():
    f = paper_net.shared_features(x_pair)          # layer3 of both images
    block = paper_net.attention["layer3"]
    a, b = block.self_attention(f[:1]), block.self_attention(f[1:])
    ma, mu = block.mutual(a["sa"], b["sa"])
    F1, F2 = block.pair(f[:1], f[1:])
steps = {"f1, layer3 map of image 1": f[:1], "SPA, channel mean (Eq. 1)": a["spa"],
         "Q, global average (Eq. 2)": f[:1].mean(dim=(2, 3), keepdim=True),
         "CA, convolution of Q (Eq. 3)": a["ca"], "SPA x CA": a["spa"] * a["ca"],
         "SA1, 1x1 convolution (Eq. 4)": a["sa"], "MA = SA1 SA2 (Eq. 5)": ma,
         "MU, 1x1 convolution of MA (Eq. 6)": mu, "F1 = f1 MU + f1 (Eq. 7)": F1}
pd.DataFrame(
    {"shape (without the batch)": {k: tuple(v.shape[1:]) for k, v in steps.items()}})

# %%
lit = f[:1] > 0
ratio = F1[lit] / f[:1][lit]
print(f"F1 / f1 where f1 > 0: from {float(ratio.min()):.3f} to "
      f"{float(ratio.max()):.3f}; the sigmoid keeps MU in (0, 1), so F lies between f "
      f"and 2f. Where f1 = 0 (after the ReLU, {1 - float(lit.float().mean()):.0%} of "
      f"the entries) F1 is 0 as well.")

# %% [markdown]
# **Two checks on the whole pair path** (both are also unit tests in `tests/test_jamal2020.py`),
# on this profile's network and two random images of its size. Swapping the two images must
# swap the two embeddings and leave the verdict alone, since MA is symmetric and the
# verification head reads a symmetric distance feature. And with MU = 0
# (`Jamal2020.zero_mutual_`, the sigmoid's bias at minus infinity) every block hands on its
# input unchanged, so the pair path must give the plain trunk's embeddings.

# %%
torch.manual_seed(2)
x_small = torch.randn(2, 3, full.height, full.width)
with torch.no_grad():
    one = profile_net.forward_pair(x_small[:1], x_small[1:])
    swapped = profile_net.forward_pair(x_small[1:], x_small[:1])
    zeroed = copy.deepcopy(profile_net).zero_mutual_()
    z_pair = zeroed.forward_pair(x_small[:1], x_small[1:])
    plain = zeroed(x_small).feat
swap_gap = torch.cat([one.feat1 - swapped.feat2, one.feat2 - swapped.feat1]).abs().max()
print(f"pair swapped: embeddings swap to within {float(swap_gap):.1e}, logits agree to "
      f"within {float((one.logits - swapped.logits).abs().max()):.1e}")
print(f"MU = 0: pair-path embeddings minus the plain trunk's, at most "
      f"{float((torch.cat([z_pair.feat1, z_pair.feat2]) - plain).abs().max()):.1e}")

# %% [markdown]
# ### What the block costs
# Parameters of the two blocks (at `layer3` and `layer4` of ResNet-50) under each reading of
# Eq. 4's output width (`sa_channels`) and for the two one-part ablations (`parts`). The
# $C \times C$ convolutions dominate: a block holds three of them with C-wide maps (CA, SA and
# MU), only CA's with one-channel maps.

# %%
trunk_params = count_params(paper_net.backbone)
heads = sum(count_params(m) for m in (paper_net.embed, paper_net.classifier,
                                      paper_net.verify_embed, paper_net.verifier))
size_rows = {"trunk (ResNet-50 without FC)": trunk_params,
             "heads (512-d block, 751-way FC, verification)": heads}
for sa_channels in SA_CHANNELS:
    for parts in PARTS:
        size_rows[f"blocks, sa_channels={sa_channels!r}, parts={parts!r}"] = sum(
            count_params(MutualAttention(paper_net.backbone.stage_channels(s),
                                         sa_channels=sa_channels, parts=parts))
            for s in PAPER_STAGES)
pd.DataFrame({"parameters (M)": {k: v / 1e6 for k, v in size_rows.items()},
              "% of the trunk": {k: 100 * v / trunk_params
                                 for k, v in size_rows.items()}}
             ).round(2)

# %% [markdown]
# What each test mode runs for one image of 256x188 (GFLOPs, two per multiply-add; the
# default model): "plain" embeds the un-attended trunk, "self" pairs each image with itself, the
# pair path runs both branches, both blocks and the verification head, and "pairwise" adds
# `PAIRWISE_TOP_K` pairs to every query (`test_mode`, below). Then the same for this profile's
# network:

# %%
print(f"PAIRWISE_TOP_K = {PAIRWISE_TOP_K}")
pd.concat({"paper, ResNet-50, 256x188":
               test_mode_costs(paper_net, INPUT_SIZES["paper"]),
           f"this profile, {full.height}x{full.width}":
               test_mode_costs(profile_net, (full.height, full.width))}).round(2)

# %% tags=["nbval-ignore-output"]
print(f"this profile's network on this machine's CPU ({torch.get_num_threads()} "
      "threads, batch 8):")
time_test_modes(profile_net, (full.height, full.width), batch=8).assign(
    per_second=lambda t: 1 / t["seconds"]).round(4)

# %% [markdown]
# ### The readings we chose
# The paper leaves much open. Each choice below is an argument; the first value is the default,
# and the list of values sits in `reidnb/models/jamal2020.py` or `reidnb/papers/jamal2020.py`.
# - **Eq. 4's width** (`sa_channels`: `"C"` | `1`): the $1 \times 1$ convolution may give one
#   map per channel (as $F = f \odot \mathrm{MU}$ suggests) or a single map (Eq. 5 indexes SA by
#   position only). Default `"C"`.
# - **Activations** (`att_act`: `"sigmoid"` | `"none"`): Eqs. 3, 4 and 6 name none. Without
#   one, MU is unbounded and $f(1 + \mathrm{MU})$ can blow up or flip sign; the sigmoid keeps
#   $F$ between $f$ and $2f$.
# - **Eqs. 1–3 as printed**: Eq. 1's sum runs to "$c$" and is read as a channel mean; Eq. 2
#   gives pooling a weight, read as plain averaging; Eq. 3's "one convolution" is a $1 \times 1$
#   convolution $C \to C$ with a bias.
# - **The distance feature** (`fd`: `"square"` | `"abs"`): Sec. 4 calls $f_d$ the Euclidean
#   distance but gives it 512 values: $(f_1 - f_2)^2$ or $|f_1 - f_2|$, elementwise.
# - **The heads**: the "512-d sequential block" is a linear layer and a batch norm, without an
#   activation; the verification head is that block on $f_d$ followed by a two-way linear
#   layer. Eq. 12 sums over $N$ classes and logs the label; we read it as a two-way cross
#   entropy on the prediction (index 1 = "same"), and Eq. 10 likewise.
# - **Test time** (`test_mode`: `"plain"` | `"self"` | `"pairwise"`): Eqs. 5–8 need a
#   partner, yet Sec. 5.1 ranks one vector per image by Euclidean distance. Default `"plain"`,
#   the un-attended embedding; `"self"` pairs each image with itself; `"pairwise"` re-scores
#   each query's nearest gallery images (`PAIRWISE_TOP_K` of them) with the verification head.
# - **Input size** (`input_size` of `jamal2020_experiment`: `"paper"` 256x188 | `"usual"`
#   256x128 | `"cpu"` 128x64): the `paper` profile keeps the printed size, the others their own.
# - **Recipe gaps** (the `paper` profile; the CPU profiles shorten the schedule): the drop
#   "between the 40th and 60th epoch" is one step at 40; 32 pairs a batch, half positive; momentum and weight decay (not given) the usual values; the FC
#   dropout is dropped (`dropout=0`; the printed value is an option); ImageNet's mean and std
#   stand in for the training set's mean image; random erasing with Zhong et al.'s settings.
# - **Protocols**: "multi-shoot" is read as Market-1501's multi-query (several images of a
#   query person from one camera, pooled: mean by default, max as well); re-ranking as
#   k-reciprocal re-ranking of the single-query distances with Zhong et al.'s values (see
#   section 3).
# - **Where and what** (`stages`, `parts`, `partner`): the paper's blocks sit at `layer3` and
#   `layer4` with both parts and the real partner; the other values are this chapter's
#   ablations and its control (section 4).
#
# ## 2. Training, and Fig. 6: the losses beside the network without mutual attention
# Every CPU run starts its trunk from chapter 1's IDE run (the stand-in for ImageNet weights).
# The compared rows: the Siamese network without the blocks (the paper's own baseline, whose
# recipe it does not give: same heads, same losses), the full model, and a control the paper
# lacks, described in section 4 (trained in the full scope only; the core scope, this build's
# `scope`, leaves it out of every table and figure below).

# %% tags=["nbval-ignore-output"]
# chapter 1's run: cached, not retrained
run_all(plan["trunk"], data_root, runs_dir, device);
run_all(plan["compared"], data_root, runs_dir, device);

# %% [markdown]
# Per epoch, for the full model's first seed: the identification and verification losses,
# their weighted sum, and the two accuracies (identities on all images, same/different on the
# pairs).

# %%
records = {
    label: run_experiment(next(e for e in runs_of(variant) if e.train.seed == first),
                          data_root, runs_dir, device, progress=False)
    for label, variant in COMPARED.items()}
hist = pd.DataFrame(records["ours with MA"]["history"]).set_index("epoch")
hist[["lr", "loss_id", "loss_ver", "loss", "acc", "acc_ver"]].round(4)

# %% [markdown]
# Fig. 6 plots the training losses of the model and of the network without mutual attention on
# DukeMTMC-reID. Ours, on SynthReID (first seed), are in {numref}`fig-06-losses`:

# %% mystnb={"figure": {"caption": "Identification, verification and total loss per epoch of the Siamese network with and without mutual attention (first seed), the counterpart of the paper's Fig. 6. Look at whether the verification loss with MA ends lower or comes down sooner.", "name": "fig-06-losses"}}
viz.loss_comparison({label: records[label]["history"]
                     for label in ("Siamese without MA", "ours with MA")},
                    ["loss_id", "loss_ver", "loss"],
                    titles={"loss_id": "identification (ID)",
                            "loss_ver": "verification (V)",
                            "loss": f"total, ID + {ALPHA:g} V"},
                    title=f"seed {first}, {dataset}, {profile} profile")

# %% [markdown]
# The paper reads its Fig. 6 as two claims: with mutual attention the verification loss ends
# lower, and the model converges faster. We judge both on every seed of the compared rows with
# the book's rule:

# %%
display(Markdown(verdicts.RULE))

# %% [markdown]
# "Lower" is read on the last epoch's mean verification loss, "faster" on its mean over the
# epochs (the area under the curve per epoch: a curve that comes down sooner has the smaller
# one). A loss that should be *lower* with mutual attention is written as "Siamese without MA >
# ours with MA" on that loss.

# %%
groups_c = {label: runs_of(variant) for label, variant in COMPARED.items()}
last = history_values(groups_c, runs_dir, keys=("loss_ver", "loss_id"), reduce="last")
mean = history_values(groups_c, runs_dir, keys=("loss_ver",), reduce="mean")
mean = mean.rename(columns={"loss_ver": "loss_ver, mean over epochs"})
fig6 = [verdicts.compare(last, "Siamese without MA", "ours with MA", "loss_ver"),
        verdicts.compare(mean, "Siamese without MA", "ours with MA",
                         "loss_ver, mean over epochs")]
verdicts.publish("jamal2020", "Fig. 6: mutual attention lowers the verification loss "
                 "and brings it down sooner", fig6)
verdicts.verdict_table(fig6)

# %%
for c in fig6:
    print(c.sentence())

# %% [markdown]
# The identification loss is not part of the claim: the identity head reads the un-attended
# trunk in both models, and the block reaches it only through the trunk's shared weights.

# %% [markdown]
# ## 3. Table 1 as a grid, and the rows of Tables 2–3 one can run
# Table 1 reports the full model under three protocols: single query (SQ), "multi-shoot" and
# re-ranking (RR), each at ranks 1, 5, 10, 20 and mAP. The paper says how it ran none of the
# last two. Our readings (`reidnb.papers.jamal2020`):
#
# - **multi-query** (MQ): Market-1501's protocol pools several images of a query person from one
#   camera. SynthReID's query folder holds one image per person and camera, so each query is
#   pooled with its person's gallery images from the same camera
#   (`reidnb.metrics.same_camera_gallery`), which the protocol removes from that query's ranking
#   anyway; pooling by the mean (default) and by the max;
# - **re-ranking**: k-reciprocal re-ranking (Zhong et al. 2017) of the SQ distances with their
#   k1, k2 and lambda, below.
#
# Every row below is evaluated from the trained runs (no training here); the SQ row must equal
# the run record.

# %%
print("re-ranking:", ", ".join(f"{k} = {v:g}" for k, v in RERANK.items()))
groups_t = {"IDE": plan["ide"], "Siamese without MA": runs_of("baseline"),
            "ours with MA": runs_of("full")}
values = evaluate_protocols(groups_t, data_root, runs_dir, device)
sq_rows = values[values["protocol"] == "single_query"]
for row, exp in zip(sq_rows.itertuples(), [e for g in groups_t.values() for e in g]):
    recorded = run_experiment(exp, data_root, runs_dir, device,
                              progress=False)["metrics"]
    assert math.isclose(row.rank1, recorded["single_query"]["rank1"],
                        abs_tol=1e-9), exp.run_name
assert cmc_is_monotone(values), "a CMC that decreases"
print(f"{len(values)} rows; every single-query row equals its run record; every CMC is "
      "non-decreasing")

# %% [markdown]
# Table 1 on SynthReID beside the paper's Market-1501 and DukeMTMC-reID columns. The ⚠ marks
# cells flagged while transcribing the paper (`reidnb/claims_flags.csv`; the notes follow the
# table); "=" names another cell of the same column that prints the very same value. Both
# poolings stand beside the paper's one multi-shot column.

# %%
grid = protocol_grid(values, "ours with MA")
flags = load_flags()
notes = []


def marks(protocol, metric, dataset_key):
    out = []
    ledger = {"SQ": "single_query", "RR": "rerank"}.get(protocol, "multi_query")
    for note in cell_flags(flags, "jamal2020", "1", dataset_key, ledger, "+MA", metric):
        if note not in notes:
            notes.append(note)
        out.append(f"⚠{notes.index(note) + 1}")
    return " ".join(out)


def same_as(protocol, metric, dataset_key):
    ledger = {"SQ": "single_query", "RR": "rerank"}.get(protocol, "multi_query")
    shown = {"single_query": "SQ", "multi_query": "MQ", "rerank": "RR"}
    return " ".join(f"= {shown[p]} {m}" for p, m in
                    repeated_cells(dataset_key).get((ledger, metric), []))


for key, column, short in (("market1501", "Market-1501 (paper)", "Market"),
                           ("dukemtmcreid", "DukeMTMC-reID (paper)", "Duke")):
    grid[f"flags, {short}"] = [
        " ".join(filter(None, [marks(p, m, key), same_as(p, m, key)]))
        if not pd.isna(v) else ""
        for (p, m), v in zip(grid.index, grid[column])]
grid.round(2)

# %%
for k, note in enumerate(notes, 1):
    print(f"⚠{k} {note}")

# %% [markdown]
# Other slips sit in the text rather than in a cell. Sec. 6.2 gives the full model's margins
# over its own baseline on Market-1501 at rank-1 and rank-5, and over DCC at ranks 1, 5 and 10;
# Table 3 prints rank-1 and mAP only for both. The differences the tables allow, from the
# ledger:

# %%
def market(method, metric, table="3"):
    return claim("jamal2020", table, "market1501", "single_query", method, metric)


gaps = {m: market("+MA", m) - market("baseline", m) for m in ("rank1", "mAP")}
print(f"Table 3, +MA minus its baseline: rank-1 {gaps['rank1']:+.2f}, "
      f"mAP {gaps['mAP']:+.2f}")
print(f"read as a rank-5 margin, the mAP gap would put the baseline's rank-5 at "
      f"{market('+MA', 'rank5', '1') - gaps['mAP']:.2f}, under its own rank-1 of "
      f"{market('baseline', 'rank1'):.2f}")
print(f"Table 3, +MA minus DCC: rank-1 "
      f"{market('+MA', 'rank1') - market('DCC (quoted [14])', 'rank1'):+.2f}")

# %% [markdown]
# The text's rank-1 margins over the baseline and over DCC are the tables' differences; the
# margin it gives over the baseline "on Rank 5" equals the mAP gap to the last digit, so it is
# most likely the mAP margin under the wrong name. Its rank-5 and rank-10 margins over DCC
# imply DCC numbers that no table prints.

# %% [markdown]
# ### Tables 2–3: the rows one can run
# Table 2 (DukeMTMC-reID) and Table 3 (Market-1501) compare the full model with other work.
# Three rows can be run here: an IDE network (Table 2's "IDE" row quotes Zheng et al.'s IDE;
# Table 3's "ResNet-50-Basel" row cites the ResNet paper, which has no re-ID result, so its
# figures are read as IDE figures too), the paper's own "ResNet-50 Base(line)", read as the
# same Siamese network without the blocks, and the full model. Our numbers are SynthReID with the CPU network: compare orderings, not values.

# %%
tables23(values).T.round(2)

# %%
for number in ("2", "3"):
    printed = claims_table("jamal2020", number)
    quoted = [m for m in printed.index if is_quoted(m)]
    print(f"Table {number}: {len(quoted)} rows quoted from other work, not run here")

# %% [markdown]
# The mean and spread over seeds of the compared rows, single query:

# %%
table_sq = with_claims(seed_table(groups_t, runs_dir),
                       {"Siamese without MA": ("jamal2020", "3", "baseline"),
                        "ours with MA": ("jamal2020", "3", "+MA")})
table_sq

# %% [markdown]
# **Verdicts.** The paper's orderings, each on the seeds both rows share:
# - the full model beats its own baseline (Tables 2–3) at rank-1 and mAP;
# - MQ beats SQ, and RR beats SQ, at rank-1 and mAP (Table 1);
# - Table 1's Market-1501 column has RR *below* SQ at rank-10 and rank-20, which is legal (a
#   re-ranking moves true matches up for some queries and down for others); we check whether
#   it recurs, as "SQ > RR" at those ranks.

# %%
ours = values[values["label"] == "ours with MA"].assign(
    label=lambda v: v["protocol"].map(PROTOCOL_LABELS))
sq_values = values[values["protocol"] == "single_query"]
table_verdicts = (
    [verdicts.compare(sq_values, "ours with MA", "Siamese without MA", m)
     for m in ("rank1", "mAP")]
    + [verdicts.compare(ours, better, "SQ", m)
       for better in ("MQ (mean)", "MQ (max)", "RR") for m in ("rank1", "mAP")]
    + [verdicts.compare(ours, "SQ", "RR", m) for m in ("rank10", "rank20")])
verdicts.publish("jamal2020", "Tables 1-3: MA beats its own baseline; multi-query and "
                 "re-ranking beat single query; re-ranking falls below single query at "
                 "rank-10 and rank-20", table_verdicts)
verdicts.verdict_table(table_verdicts)

# %%
for c in table_verdicts:
    print(c.sentence())

# %% [markdown]
# ### The test modes
# The paper ranks by one 512-d vector per image, which here is the un-attended embedding, the
# vector the identity head learnt on: the block does not run at test time at all. The other two
# modes put it back: "self" pairs every image with itself (MA = SA², no second image), and
# "pairwise" lets the verification head re-score each query's nearest gallery images, the
# pair path the block was trained in, at the cost of that many pair forwards per query. Single
# query, the full model's first seed (one seed: a hint, not a verdict); the smoke profile
# re-scores fewer images per query to stay short:

# %%
top_k = 3 if profile == "smoke" else PAIRWISE_TOP_K
groups_first = {"ours with MA": [full]}
modes = pd.concat({mode: evaluate_protocols(groups_first, data_root, runs_dir, device,
                                            test_mode=mode, top_k=top_k)
                   .query("protocol == 'single_query'").set_index("seed")
                   for mode in ("plain", "self", "pairwise")}, names=["test_mode"])
print(f"pairwise: the {top_k} nearest gallery images of each query re-scored")
modes[["rank1", "rank5", "rank10", "mAP"]].round(2)

# %% [markdown]
# ## 4. The ablations the paper did not run
# The paper's only ablation is Fig. 4's picture. Three questions it leaves open, each a change
# of one option of the full model:
#
# - **where** (`stages`): the block at `layer3` only, at `layer4` only, or at both (the paper);
# - **which part** (`parts`): the spatial summary only (SA from SPA), the channel summary only
#   (SA from CA, the same at every position), or both (the paper);
# - **a control** (`partner="self"`): each image is paired with *itself*, so the blocks keep
#   every parameter but see nothing of the other image. If mutual attention helps because it
#   looks across the pair, the full model must beat this control; if it helps only as extra
#   capacity or as a gate, the two tie.
#
# In the full scope the control ran with every seed (section 2) and the other ablations with
# the first seed only; they give hints, not verdicts. The core scope runs none of them: the
# cells below then say so, and the scoreboard lists their claims as not tested.

# %% tags=["nbval-ignore-output"]
run_all(plan["ablation"], data_root, runs_dir, device);

# %%
ABLATION_CLAIM = ("Ablations (not in the paper): both stages and both parts beat one "
                  "of each")
CONTROL_CLAIM = ("Control (not in the paper): mutual attention beats pairing each "
                 "image with itself")
ablations_run = not reidnb.book.notebook.left_out(
    scope, "The ablations and the self-paired control", "jamal2020",
    (ABLATION_CLAIM, CONTROL_CLAIM))
if ablations_run:
    groups_a = {"both stages, both parts (full)": [full]}
    groups_a.update({label: runs_of(variant, "ablation") for label, variant in (
        ("layer3 only", "layer3"), ("layer4 only", "layer4"),
        ("spatial part only", "spatial"), ("channel part only", "channel"))})
    groups_a["self-paired control"] = [e for e in runs_of("self_paired")
                                       if e.train.seed == first]
    groups_a["Siamese without MA"] = [e for e in runs_of("baseline")
                                      if e.train.seed == first]
    display(seed_table(groups_a, runs_dir, metrics=("rank1", "rank5", "mAP")))

# %%
if ablations_run:
    print(f"not tested: one seed per ablation (the rule needs {verdicts.MIN_SEEDS}); "
          "the rows above are hints only")
    verdicts.publish_not_tested("jamal2020", ABLATION_CLAIM, "one seed per ablation",
                                seeds=[first])

# %% [markdown]
# The control against the full model, every seed:

# %%
if ablations_run:
    values_c = seed_values(groups_c, runs_dir)
    control = [verdicts.compare(values_c, "ours with MA", "self-paired control", m)
               for m in ("rank1", "mAP")]
    verdicts.publish("jamal2020", CONTROL_CLAIM, control)
    display(verdicts.verdict_table(control))

# %% [markdown]
# ## 5. What the blocks see (Figs. 4–5)
# For one query of the test set we take its nearest true match (a positive pair) and its
# nearest image of another person (a hard negative), both by the full model's own distances,
# and draw every map of the two blocks: each image's own SA, and the pair's MA and MU, each
# averaged over its channels and laid over the image. Columns of {numref}`fig-06-pair-maps`: the
# query, its match, the query again, the negative.

# %% mystnb={"figure": {"caption": "Every map of the two blocks for one query paired with its nearest true match and with its nearest other person: each image's SA, and the pair's MA and MU, averaged over channels. Look at whether MA stays lit for the true pair and fades for the negative.", "name": "fig-06-pair-maps"}}
ds, caches = load_data(full, data_root)
q, g = caches["query"], caches["gallery"]
trained = load_trained(full, runs_dir, ds.num_train_pids).eval()
baseline = load_trained(next(e for e in runs_of("baseline") if e.train.seed == first),
                        runs_dir, ds.num_train_pids).eval()
dists = protocol_distances(trained, q, g, full.eval, device)
dist_sq = dists["single_query"][0].cpu().numpy()
pos, neg = nearest_partners(dist_sq, q.pids, q.camids, g.pids, g.camids)
both = np.flatnonzero((pos >= 0) & (neg >= 0))
i = int(both[0])
pair_imgs = torch.stack([q.images[i], g.images[pos[i]], q.images[i], g.images[neg[i]]])
maps = pair_maps(trained, normalize(pair_imgs[[0, 2]]), normalize(pair_imgs[[1, 3]]))
print(f"query {i} (person {int(q.pids[i])}), its match: gallery {pos[i]}, its hard "
      f"negative: gallery {neg[i]} (person {int(g.pids[neg[i]])})")
viz.attention_grid(maps, pair_imgs.permute(0, 2, 3, 1).numpy())

# %% [markdown]
# Over every query of the test set, the same two kinds of pair: how alike the two images'
# self-attention maps are (the correlation of SA1 with SA2 over the positions, each averaged
# over its channels), how much of MA is lit, and how far the partner moves the query's attended
# embedding from its plain one (relative to the plain one's length).
# If the block "keeps what both images show", a positive pair should agree more than a hard
# negative.

# %%
xq = normalize(q.images[both])
stats = pd.concat(
    {"positive (nearest match)":
         pair_statistics(trained, xq, normalize(g.images[pos[both]])),
     "hard negative": pair_statistics(trained, xq, normalize(g.images[neg[both]]))},
    names=["pair"])
stats.groupby("pair", sort=False).mean().round(3).T.assign(pairs=len(both))

# %% [markdown]
# ### Fig. 4: activation at `layer4`
# The paper's caption puts its model in the top row, its text the baseline; we follow the text:
# the baseline first. Each map is the channel mean of the squared activation at `layer4`
# (`reidnb.cam.activation_map`). For the full model there are two such maps: the un-attended
# one, which is what gets ranked, and the attended one the pair path hands on,
# $F = f(1 + \mathrm{MU})$, here with the query paired with its match
# (`attended_activation`; {numref}`fig-06-activation`).

# %% mystnb={"figure": {"caption": "The layer4 activation over query images: the Siamese network without MA, the model with MA un-attended (what is ranked), and attended while paired with its match. Look at how much pairing changes the map, and whether the two models attend alike.", "name": "fig-06-activation"}}
pick = both[np.linspace(0, len(both) - 1, min(6, len(both))).astype(int)]
xs, partners = normalize(q.images[pick]), normalize(g.images[pos[pick]])
fig4 = {"Siamese without MA": cam.activation_map(baseline, xs, "backbone.layer4"),
        "with MA, un-attended (ranked)":
            cam.activation_map(trained, xs, "backbone.layer4"),
        "with MA, attended (paired with its match)":
            attended_activation(trained, xs, partners, "layer4")[0]}
viz.attention_grid(fig4, q.images[pick].permute(0, 2, 3, 1).numpy())

# %% [markdown]
# ### Fig. 5: retrievals, single query and re-ranked
# Each row: a query, then its ten nearest gallery images, green when the same person, red
# otherwise (the full model, first seed): single query in {numref}`fig-06-retrieval-sq`,
# re-ranked in {numref}`fig-06-retrieval-rr`.

# %% mystnb={"figure": {"caption": "Single-query retrieval of the full model: each row a query, then its nearest gallery images (green: same person, red: someone else). Look at the wrong matches, then at the same rows re-ranked in the next figure.", "name": "fig-06-retrieval-sq"}}
viz.retrieval_grid(q.images, g.images, dist_sq, q.pids, g.pids, q.camids, g.camids,
                   topk=10, num_queries=4)

# %% mystnb={"figure": {"caption": "The same queries after k-reciprocal re-ranking of the single-query distances. Look at which wrong matches re-ranking pushes down and which true ones it brings up.", "name": "fig-06-retrieval-rr"}}
viz.retrieval_grid(q.images, g.images, np.asarray(dists["rerank"][0]), q.pids, g.pids,
                   q.camids, g.camids, topk=10, num_queries=4)

# %% [markdown]
# ### Browse pairs
# In JupyterLab the sliders pick a query and its partner (0: its nearest match, 1: its hard
# negative); the figure shows the two images with every map of the blocks. In the static book
# the viewer stays on the first choice.

# %% tags=["nbval-ignore-output"]
def browse(query: int, partner: int):
    k = int(both[query])
    other = g.images[pos[k] if partner == 0 else neg[k]]
    imgs = torch.stack([q.images[k], other])
    rows = pair_maps(trained, normalize(imgs[:1]), normalize(imgs[1:]))
    return viz.attention_grid(rows, imgs.permute(0, 2, 3, 1).numpy())


widgets.SliderBrowser({"query": len(both), "partner": 2}, browse)

# %% [markdown]
# ## 6. A new experiment: detector misalignment
# Eq. 5 multiplies the two maps *at the same position*. If mutual attention helps by keeping
# what both images show, it needs the same body part at the same place in both boxes, which a
# loose detector does not give. SynthReID can draw the same test people with looser and looser
# boxes (chapter 5's sweep, `reidnb.misalignment`: at level $m$ a box moves by up to $m$ times
# its height and the person's size changes by up to a factor $1 + m$).
#
# **Prediction, stated before the results.** (1) Positive pairs' SA1–SA2 correlation falls as
# the boxes loosen. (2) In the default test mode the block does not run at test time, so an
# evaluation of the trained runs on looser boxes cannot show the alignment effect of Eq. 5
# directly: we expect the gap between the full model and the self-paired control to stay
# within noise across the levels rather than to shrink, the hypothesis for a model
# trained and tested at each level.
#
# What is run: the compared runs (trained on the default SynthReID), evaluated without more
# training on the first test identities at every level ({numref}`fig-06-misalignment`). **Not run
# yet:** training at each level, which the hypothesis needs to be tested as stated; it costs the
# compared rows four times over. The core scope leaves the sweep out (its claim reads "not
# tested" there). For scale, the default SynthReID has these box errors:

# %%
default_knobs = SynthKnobs()
print(f"default SynthReID: shifts up to "
      f"{default_knobs.misalign_offset * full.width / full.height:.2f} of the box "
      f"height, size changes up to {math.expm1(default_knobs.misalign_scale):.2f}; "
      f"the sweep's levels: {', '.join(f'{m:g}' for m in LEVELS)}")

# %%
TREND_CLAIM = ("Sec. 3.4 read with Eq. 5: the gain of mutual attention over its "
               "self-paired control falls as the box error grows")
n_sweep_ids = MISALIGNMENT_IDS[profile]
on_synth = n_sweep_ids is not None and dataset == "synthreid"
sweep_run = on_synth and not reidnb.book.notebook.left_out(
    scope, "The detector-misalignment sweep", "jamal2020", (TREND_CLAIM,))
if not on_synth:
    print(f"not run in the {profile} profile on {dataset}: the sweep needs SynthReID")
elif sweep_run:
    sweep = evaluate_misalignment(groups_c, LEVELS, n_sweep_ids, data_root, runs_dir,
                                  device)
    sweep_means = (sweep.groupby(["level", "label"])[["rank1", "mAP"]].mean()
                   .unstack("label"))
    print(f"the first {n_sweep_ids} test identities at every level; mean over "
          f"{sweep['seed'].nunique()} seed(s)")
    display(sweep_means.round(2))

# %% mystnb={"figure": {"caption": "Rank-1 of the model with MA, its self-paired control and the Siamese network without MA against the box error, runs trained on the default set and evaluated without retraining, mean over seeds. Look at whether the gap between the model with MA and the control shrinks as the boxes loosen.", "name": "fig-06-misalignment"}}
if sweep_run:
    order = list(COMPARED)
    display(viz.metric_sweep(sweep_means["rank1"][order],
                             "box error (fraction of box height)", "rank-1 (%)",
                             f"SynthReID, mean over {sweep['seed'].nunique()} seed(s)"))
elif on_synth:
    display(viz.not_run())

# %%
if sweep_run:
    for base in ("self-paired control", "Siamese without MA"):
        for metric, shown in (("rank1", "rank-1"), ("mAP", "mAP")):
            for line in verdicts.trend_sentences(sweep_means[metric], "ours with MA",
                                                 base, shown, knob="m",
                                                 decreasing="the boxes get tighter"):
                print(line)
    verdicts.publish_trend("jamal2020", TREND_CLAIM, sweep_means, "ours with MA",
                           "self-paired control", expect="falls",
                           seeds=sweep["seed"].unique(), knob="m")

# %% [markdown]
# "Grows as the boxes get tighter" is the hypothesis (the gain falls as the error grows); "no
# change within noise" means the sweep shows no such fall. Each level's mean is over the seeds;
# the trend's interval comes from the scatter of the four level means about their line.
#
# Prediction (1), the two images' self-attention maps over positive pairs, at each level (the
# full model, first seed; each query paired with its nearest true match at that level):

# %%
if on_synth:
    agreement = positive_pair_sweep(full, LEVELS, n_sweep_ids, pair_statistics,
                                    data_root, runs_dir, device)
    display(agreement.round(3))

# %% [markdown]
# ## Summary
# - The block and the model are in `reidnb.models.jamal2020`, the runs and what the chapter
#   evaluates on them in `reidnb.papers.jamal2020`. The feature-map sizes at 256x188 and the
#   two checks (a swapped pair swaps its outputs; MU = 0 leaves the plain trunk) hold.
# - Under the paper's own test protocol the block does not run at test time: it can only help
#   through what it teaches the shared trunk. The "pairwise" test mode is the one that uses the
#   pair path at test time, at the cost of its pair forwards per query.
# - Every verdict above comes from this build's run records with the book's rule; a row with
#   fewer than three seeds reads "not tested". The `gpu` profile (ResNet-50, 256x128, three
#   seeds) and the `paper` profile (Market-1501 or DukeMTMC-reID, the Sec. 5.1 recipe) are the
#   ones that can confirm or refute the paper's margins.
#
# ## Running it on Market-1501
# ```bash
# papermill notebooks/06_jamal2020_mutual_attention.ipynb out.ipynb -p profile paper \
#     -p dataset market1501 -p data_root /data/reid -p device cuda
# ```
# On Market-1501 the multi-query rows pool the same-camera gallery images, not the `gt_bbox`
# images of Market-1501's own protocol, and the misalignment sweep is skipped (it needs
# SynthReID).
#
# ## Exercises
# 1. Train the full model with `att_act="none"` (the equations as printed): does MU stay
#    bounded, and does the verification loss still come down?
# 2. With `sa_channels=1` the blocks shrink to a third of their size (section 1): train it and
#    compare the verification loss and rank-1 with the default.
# 3. Run the misalignment sweep with `test_mode="pairwise"`, where the block does run at test
#    time: does the gap to the control now fall with the box error?
# 4. Train the compared rows at each misalignment level (`reidnb.misalignment.misaligned` gives
#    each level's experiment) and test the hypothesis of section 6 as stated.
