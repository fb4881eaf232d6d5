"""The executed notebooks in notebooks/ are nbval's baselines: each must be the smoke-profile
execution of its paired .py source, as `make notebooks` (papermill) leaves it.

A notebook re-synced from its .py with `jupytext --update` keeps the outputs but drops papermill's
injected-parameters cell, so nbval would run it in the book's default profile (hours of training)
and compare against smoke outputs; these checks catch that before CI does.
"""
import json
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXECUTED = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def source(cell: dict) -> str:
    s = cell["source"]
    return ("".join(s) if isinstance(s, list) else s).strip()


def test_every_chapter_source_has_its_executed_notebook():
    sources = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert sources and sources == [p.stem for p in EXECUTED]


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_executed_notebook_was_run_by_papermill_in_the_smoke_profile(path):
    nb = json.loads(path.read_text())
    cells = code_cells(nb)
    params = [i for i, c in enumerate(cells) if "parameters" in tags(c)]
    injected = [i for i, c in enumerate(cells) if "injected-parameters" in tags(c)]
    assert len(params) == 1, f"{path.name}: expected one cell tagged 'parameters'"
    assert injected == [params[0] + 1], (
        f"{path.name}: papermill's injected-parameters cell is missing or misplaced; "
        "re-execute it with `make notebooks` instead of syncing it from the .py")
    assert 'profile = "smoke"' in source(cells[injected[0]]), path.name
    counts = [c.get("execution_count") for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: cells not executed once each, top to bottom: {counts}")


@pytest.mark.parametrize("path", EXECUTED, ids=lambda p: p.name)
def test_executed_notebook_matches_its_py_source(path):
    nb = json.loads(path.read_text())
    paired = jupytext.read(path.with_suffix(".py"))
    executed = [(c["cell_type"], source(c)) for c in nb["cells"]
                if "injected-parameters" not in tags(c)]
    expected = [(c["cell_type"], source(c)) for c in paired["cells"]]
    assert len(executed) == len(expected), f"{path.name}: cell count differs from the .py"
    for i, (got, want) in enumerate(zip(executed, expected)):
        assert got == want, f"{path.name}: cell {i} differs from the .py source (stale outputs?)"
