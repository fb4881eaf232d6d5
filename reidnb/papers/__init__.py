"""The papers: one module each, holding its experiments per profile, its chapter's plan of runs
and its claim links. A new paper is a model file in `reidnb/models/`, a module here and a chapter.

Each module defines, as plain module-level values (nothing is registered from elsewhere):
- `PAPER` (its key in the claims ledger) and `CHAPTER` (its notebook's stem);
- `EXPERIMENTS`: run name -> factory(profile, dataset=None, seed=0) -> Experiment;
- `CLAIM_LINKS`: run name -> [(paper, table, method)] rows of reidnb/claims.csv it reproduces;
- `plan(profile, dataset=None, scope=None)`: group -> the runs its chapter makes in that scope
  (`experiments.resolve_scope`: "core", the headline rows, or "full"; None: the profile's
  default). A group outside the core is kept, empty.

This module merges them, refusing a name that two modules claim, and answers every lookup by name
or profile with the valid choices (`experiment`, `check_name`), before any data is generated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..experiments import PROFILES, Experiment, check_profile, resolve_scope
from . import ide, jamal2020, jeong2020, lakshmi, li2019, zheng2019

MODULES = (ide, lakshmi, jeong2020, li2019, jamal2020, zheng2019)


def merge(dicts: Iterable[tuple[str, dict]]) -> dict:
    """One dict from (owner, dict) pairs; a key that two owners define is an error."""
    merged: dict = {}
    owner_of: dict = {}
    for owner, d in dicts:
        for key, value in d.items():
            if key in merged:
                raise ValueError(f"{key!r} is defined by both {owner_of[key]} and {owner}")
            merged[key], owner_of[key] = value, owner
    return merged


PAPERS = merge((m.__name__, {m.PAPER: m}) for m in MODULES)
EXPERIMENTS: dict[str, Callable[..., Experiment]] = merge(
    (m.__name__, m.EXPERIMENTS) for m in MODULES)
CLAIM_LINKS: dict[str, list[tuple[str, str, str]]] = merge(
    (m.__name__, m.CLAIM_LINKS) for m in MODULES)


def check_name(name: str) -> None:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {sorted(EXPERIMENTS)}")


def experiment(name: str, profile: str = "synthetic", dataset: str | None = None,
               seed: int = 0) -> Experiment:
    """The registered experiment `name` as `profile` runs it."""
    check_name(name)
    check_profile(profile)
    return EXPERIMENTS[name](profile, dataset, seed)


def prerequisites(exp: Experiment) -> list[Experiment]:
    """The registered runs `exp` starts from (its `trunk_from` source, and that one's), in the
    order to run them; an unregistered source is an error naming it."""
    chain: list[Experiment] = []
    while exp.trunk_from:
        source = next((e for e in (f(exp.profile, exp.dataset, 0) for f in EXPERIMENTS.values())
                       if e.run_name == exp.trunk_from), None)
        if source is None:
            raise ValueError(f"{exp.name}: its trunk comes from run {exp.trunk_from!r}, which "
                             "no registered experiment makes")
        chain.insert(0, source)
        exp = source
    return chain


def plan(paper: str, profile: str = "synthetic", dataset: str | None = None,
         scope: str | None = None) -> dict[str, list[Experiment]]:
    """The runs of `paper`'s chapter in `scope` (None: the profile's default), by group."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; choose one of {sorted(PAPERS)}")
    return PAPERS[paper].plan(profile, dataset, resolve_scope(profile, scope))


__all__ = ["PROFILES", "PAPERS", "EXPERIMENTS", "CLAIM_LINKS", "MODULES", "merge", "check_name",
           "experiment", "plan", "prerequisites"]
