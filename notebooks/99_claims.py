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
# (one row per printed number: paper, table, data set, protocol, method, metric, value). The
# "reproduced" column is filled from the run records of this build's profile; a run on SynthReID
# is labelled as such in "run dataset", because a SynthReID number is not a Market-1501 number.
# Cells say "not run" where no chapter has run that configuration yet.

# %% tags=["parameters"]
profile = "synthetic"
dataset = "synthreid"
data_root = "data"
device = "cpu"
runs_dir = "runs"

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

import reidnb.book.notebook
from reidnb.claims import load_claims
from reidnb.results import claims_vs_runs, load_records

reidnb.book.notebook.setup(profile)
pd.set_option("display.max_rows", 400)
claims = load_claims()
records = load_records(runs_dir, "results", profile=profile)
table = claims_vs_runs(claims, records)
summary = table.groupby("paper").agg(numbers=("value", "size"),
                                     reproduced=("reproduced", lambda s: int((s != "not run").sum())))
summary

# %% [markdown]
# ## Per paper
# Own methods first; rows the papers quote from other work carry "(quoted [N])" with the paper's
# own reference number.

# %%
for paper, part in table.groupby("paper", sort=False):
    display(Markdown(f"### {paper}"))
    display(part.drop(columns=["paper"]).set_index(["table", "dataset", "protocol", "method",
                                                    "metric"]))

# %% [markdown]
# ## Inconsistencies found while transcribing

# %%
notes = Path("book/claims_inconsistencies.md")
display(Markdown(notes.read_text().split("\n", 1)[1] if notes.exists() else "(missing)"))
