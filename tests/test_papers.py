"""The paper registry (reidnb/papers/): every registered experiment builds in every profile, names
and profiles are checked with the choices listed before any data is made, the claim links name
rows of the claims ledger, and a name that two papers define is refused."""

import subprocess
import sys

import pytest

from reidnb import papers
from reidnb.claims import load_claims
from reidnb.experiments import PROFILES


@pytest.mark.parametrize("profile", PROFILES)
def test_every_registered_experiment_builds_under_its_name(profile):
    for name in papers.EXPERIMENTS:
        exp = papers.experiment(name, profile)
        assert exp.name == name and exp.profile == profile


def test_unknown_name_and_profile_list_the_choices():
    with pytest.raises(ValueError, match=r"unknown experiment 'idee'.*'ide'.*'jeong2020_full'"):
        papers.experiment("idee", "smoke")
    with pytest.raises(ValueError, match=r"unknown profile 'fast'.*'smoke'"):
        papers.experiment("ide", "fast")
    with pytest.raises(ValueError, match=r"unknown paper 'li2018'.*'jeong2020'"):
        papers.plan("li2018", "smoke")


def test_a_name_defined_by_two_papers_is_refused():
    with pytest.raises(ValueError, match=r"'ide' is defined by both a and b"):
        papers.merge([("a", {"ide": 1}), ("b", {"ide": 2, "x": 3})])


def test_claim_links_name_ledger_rows_and_registered_runs():
    claims = load_claims()
    rows = set(zip(claims.paper, claims.table.astype(str), claims.method))
    plan_names = {e.name for m in papers.MODULES for group in m.plan("synthetic", scope="full").values()
                  for e in group}
    for run, targets in papers.CLAIM_LINKS.items():
        assert run in papers.EXPERIMENTS or run in plan_names, f"{run}: no such run"
        for target in targets:
            assert target in rows, f"{run} -> {target}: not a row of claims.csv"


def test_every_paper_module_names_its_chapter():
    from reidnb.book.mainjob import NOTEBOOKS
    for key, module in papers.PAPERS.items():
        assert (NOTEBOOKS / f"{module.CHAPTER}.py").is_file(), f"{key}: {module.CHAPTER}.py"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "reidnb", *args], capture_output=True,
                          text=True, timeout=120)


def test_cli_run_offers_every_registered_experiment_and_checks_the_profile(tmp_path):
    proc = _cli("run", "nosuch", "--data-root", str(tmp_path / "data"))
    assert proc.returncode == 2 and "jeong2020_full" in proc.stderr
    assert "lakshmi_batch_hard" in proc.stderr
    proc = _cli("run", "jeong2020_am", "--profile", "fast", "--data-root", str(tmp_path / "d"))
    assert proc.returncode == 2 and "'smoke'" in proc.stderr
    proc = _cli("book", "--profile", "fast", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "'synthetic'" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "d").exists()


def test_notebook_setup_refuses_an_unknown_profile_before_any_data(tmp_path, monkeypatch):
    from reidnb.book import notebook
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"unknown profile 'papr'.*'paper'"):
        notebook.setup("papr")
    assert list(tmp_path.iterdir()) == []


def test_prerequisites_name_the_trunk_source_run():
    full = papers.experiment("jeong2020_full", "smoke")
    chain = papers.prerequisites(full)
    assert [e.run_name for e in chain] == [full.trunk_from]
    assert chain[0].name == "ide" and papers.prerequisites(chain[0]) == []
    with pytest.raises(ValueError, match="no registered experiment makes"):
        papers.prerequisites(full.replace(trunk_from="ide-synthreid-0000000000"))


def test_trunk_source_names_the_ide_run_or_none():
    from reidnb.papers.ide import ide_experiment, trunk_source

    assert trunk_source("synthetic", None, "ide", "resnet18") == ide_experiment("synthetic").run_name
    assert trunk_source("synthetic", None, "imagenet", "resnet18") == ""
    with pytest.raises(ValueError, match="this model's resnet50"):
        trunk_source("synthetic", None, "ide", "resnet50")
    with pytest.raises(ValueError, match="trunk='random'"):
        trunk_source("synthetic", None, "random", "resnet18")


def test_notebook_setup_lets_a_table_cell_hold_a_sentence(tmp_path, monkeypatch):
    import pandas as pd

    from reidnb.book import notebook
    monkeypatch.chdir(tmp_path)
    sentence = "two FC layers, 512 wide, input f1 - f2 (signed), then a softmax over same/other"
    with pd.option_context("display.max_colwidth", 50):
        assert "..." in repr(pd.DataFrame({"v": [sentence]}))
        notebook.setup("smoke")
        assert sentence in repr(pd.DataFrame({"v": [sentence]}))
