"""Scopes: the core scope (the synthetic book's default) keeps each paper's headline rows on every
seed the verdict rule needs, and nothing else; the full scope is every row the chapter knows."""

import pytest

from reidnb import papers, verdicts
from reidnb.book.mainjob import book_runs, declared_parameters
from reidnb.book.notebook import left_out
from reidnb.experiments import DEFAULT_SCOPE, PROFILES, SCOPES, keep_in_scope, resolve_scope
from reidnb.papers import MODULES

#: the headline rows each chapter must keep in the core scope: experiment name -> chapter group
HEADLINE = {
    "jeong2020": {"table5": {"jeong2020_baseline", "jeong2020_am", "jeong2020_full"}},
    "li2019": {"table3": {"li2019_baseline", "li2019_spatial", "li2019_full"}},
    "jamal2020": {"compared": {"jamal2020_baseline", "jamal2020_full"}},
    "zheng2019": {"table3": {"zheng2019_ide", "zheng2019_casn"}},
}


def test_every_profile_has_a_default_scope_and_a_bad_scope_names_the_choices():
    assert set(DEFAULT_SCOPE) == set(PROFILES) and set(DEFAULT_SCOPE.values()) <= set(SCOPES)
    assert resolve_scope("synthetic") == "core" and resolve_scope("smoke") == "full"
    assert resolve_scope("synthetic", "full") == "full"
    with pytest.raises(ValueError, match=r"unknown scope 'most'.*'core', 'full'"):
        resolve_scope("synthetic", "most")
    with pytest.raises(ValueError, match="unknown profile"):
        resolve_scope("laptop", "core")


def test_keep_in_scope_empties_groups_outside_the_core_and_keeps_their_keys():
    from reidnb.papers.ide import ide_experiment

    a, b = ide_experiment("smoke"), ide_experiment("smoke", seed=1).replace(name="other")
    groups = {"main": [a, b], "extra": [a]}
    assert keep_in_scope(groups, "full", {"main": ("ide",)}) == groups
    assert keep_in_scope(groups, "core", {"main": ("ide",)}) == {"main": [a], "extra": []}
    assert keep_in_scope(groups, "core", {"main": None}) == {"main": [a, b], "extra": []}
    with pytest.raises(ValueError, match=r"core groups \['table9'\]"):
        keep_in_scope(groups, "core", {"table9": None})


@pytest.mark.parametrize("paper", sorted(HEADLINE))
def test_core_plan_is_the_headline_rows_on_every_seed_and_a_subset_of_the_full(paper):
    core = papers.plan(paper, "synthetic", scope="core")
    full = papers.plan(paper, "synthetic", scope="full")
    assert papers.plan(paper, "synthetic") == core          # the synthetic default
    assert core.keys() == full.keys()                        # the chapter's cells see every group
    for group, runs in core.items():
        assert {e.run_name for e in runs} <= {e.run_name for e in full[group]}
        wanted = HEADLINE[paper].get(group)
        if group in ("trunk", "ide"):
            assert runs == full[group]
        elif wanted is None:
            assert runs == [], f"{paper}: group {group} is outside the core"
        else:
            assert {e.name for e in runs} == wanted
            for name in wanted:                              # the verdict rule's seeds
                seeds = sorted(e.train.seed for e in runs if e.name == name)
                assert len(seeds) >= verdicts.MIN_SEEDS and len(set(seeds)) == len(seeds)
    assert sum(map(len, core.values())) < sum(map(len, full.values()))


def test_the_synthetic_book_trains_the_core_by_default_and_the_full_scope_on_request():
    core, full = book_runs("synthetic", "synthreid"), book_runs("synthetic", "synthreid", "full")
    assert {e.run_name for e in core} < {e.run_name for e in full}
    assert book_runs("synthetic", "synthreid", "core") == core
    assert len(core) == 33 and len(full) == 103   # the README's budget counts these
    # the smoke profile (CI) runs every code path: its default is the full scope
    assert book_runs("smoke", "synthreid") == book_runs("smoke", "synthreid", "full")


def test_only_the_chapters_with_a_plan_scope_declare_the_parameter():
    from reidnb.book.mainjob import NOTEBOOKS

    declares = {m.CHAPTER for m in MODULES
                if "scope" in declared_parameters(NOTEBOOKS / f"{m.CHAPTER}.py")}
    assert declares == {m.CHAPTER for m in MODULES if m.PAPER in HEADLINE}
    # every chapter declares the profile and passes it to its setup
    for m in MODULES:
        assert "profile" in declared_parameters(NOTEBOOKS / f"{m.CHAPTER}.py")


def test_left_out_says_so_and_publishes_the_sections_claims_as_not_tested(capsys, monkeypatch):
    published = []
    monkeypatch.setattr(verdicts, "publish_not_tested",
                        lambda paper, claim, why, seeds=None: published.append((paper, claim, why)))
    assert left_out("full", "Table 6", "jeong2020", ("Table 6: best after layer3",)) is False
    assert capsys.readouterr().out == "" and published == []
    assert left_out("core", "Table 6", "jeong2020", ("Table 6: best after layer3",)) is True
    out = capsys.readouterr().out
    assert out.startswith("Table 6: not run in this build (scope 'core'") and "scope full" in out
    assert published == [("jeong2020", "Table 6: best after layer3", "not run in the core scope")]
    with pytest.raises(ValueError, match="unknown scope"):
        left_out("some", "Table 6")


def test_not_run_figure_holds_only_its_message():
    from reidnb.viz import not_run

    fig = not_run("nothing here")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["nothing here"] and not ax.axison
