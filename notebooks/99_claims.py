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
# # Claims and reproductions
#
# > Every number the papers print, next to what this book's runs measured.
#
# The claims ledger `reidnb/claims.csv` holds each number from the result tables of the papers
# (one row per printed number: paper, table, data set, protocol, method, metric, value). Beside
# each, `reidnb.results.claims_vs_runs` puts what this build's runs measured, from the run
# records of this build's profile (one configuration per run: the current code's):
#
# - "reproduced": runs on the claim's own data set (Market-1501, DukeMTMC-reID or a CUHK03-NP
#   box type), the mean ± sample standard deviation over seeds with their count n, or the value
#   of a single seed; "not run" where there is none;
# - "SynthReID (this build)": runs of the same method on the synthetic SynthReID. They are never
#   counted as reproductions: a SynthReID number is not a Market-1501 number, only the setting
#   is the paper's.
#
# Only the `paper` profile trains on a real data set by default (Market-1501); in the others
# every run is on SynthReID and "reproduced" reads "not run" throughout.

# %% tags=["parameters"]
profile = "synthetic"
dataset = "synthreid"
data_root = "data"
device = "cpu"
runs_dir = "runs"

# %% tags=["hide-input"]
from pathlib import Path

from IPython.display import HTML, Markdown, display

import reidnb.book.notebook
from reidnb.claims import load_claims
from reidnb.results import claims_coverage, claims_vs_runs, load_records, paper_claims_tables

reidnb.book.notebook.setup(profile)
claims = load_claims()
records = load_records(runs_dir, "results", profile=profile)
table = claims_vs_runs(claims, records)
claims_coverage(table)

# %% [markdown]
# ## Per paper
# For each paper: its own methods first, one table per printed table, data set and protocol
# (rows in the order of `reidnb.claims.METHODS`), with "paper" and "this build" side by side
# wherever a run on that data set exists; then this build's SynthReID values of the linked
# methods; then, folded, the rows the paper quotes from other work ("(quoted [N])", N being the
# paper's own reference number). An empty cell is one the paper leaves blank.

# %%
for paper in table.paper.unique():
    display(Markdown(f"### {paper}"))
    parts = paper_claims_tables(table, paper)
    for part in (p for p in parts if not p.quoted):
        display(Markdown(f"**{part.caption}**"), part.frame)
    quoted = [f"<p><b>{p.caption}</b></p>{p.frame.to_html()}" for p in parts if p.quoted]
    if quoted:
        display(HTML(f"<details><summary>Quoted from other work ({len(quoted)} tables)</summary>"
                     + "".join(quoted) + "</details>"))

# %% [markdown]
# ## Inconsistencies found while transcribing

# %%
notes = Path("book/claims_inconsistencies.md")
display(Markdown(notes.read_text().split("\n", 1)[1] if notes.exists() else "(missing)"))
