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
# records of this build's profile (one configuration per run: the current code's). A run on
# the claim's own data set (Market-1501, DukeMTMC-reID or a CUHK03-NP box type) is a
# reproduction; a run of the same method on SynthReID is shown too, in grey italics, and never
# counted as one: a SynthReID number is not a Market-1501 number, only the setting is the
# paper's. Only the `paper` profile trains on a real data set by default.

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
from reidnb.book.claims_page import paper_claims_html
from reidnb.results import claims_coverage, claims_vs_runs, load_records

reidnb.book.notebook.setup(profile)
claims = load_claims()
records = load_records(runs_dir, "results", profile=profile)
table = claims_vs_runs(claims, records)
claims_coverage(table)

# %% [markdown]
# ## Per paper
# For each paper, one table of its own methods (rows, in the order of `reidnb.claims.METHODS`)
# and metrics (columns), with a row group per printed table, data set and protocol. Under each
# metric the paper's number and this build's mean stand side by side, with the number of seeds
# n. A build value in grey italics comes from SynthReID: the paper's setting on synthetic data,
# never a reproduction. The rows the paper quotes from other work ("(quoted [N])", N being the
# paper's own reference number) are folded below. ⚠ marks a cell flagged while transcribing;
# the notes follow each paper, and the last section gives the details. An empty cell is one the
# paper leaves blank.

# %%
for paper in table.paper.unique():
    display(Markdown(f"### {paper}"), HTML(paper_claims_html(table, paper)))

# %% [markdown]
# ## Inconsistencies found while transcribing

# %%
notes = Path("book/claims_inconsistencies.md")
display(Markdown(notes.read_text().split("\n", 1)[1] if notes.exists()
                 else "(missing)"))
