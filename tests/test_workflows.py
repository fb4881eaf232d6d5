"""The GitHub Actions workflows: actionlint finds nothing in them, and the GPU workflow runs on the
self-hosted GPU runners and uploads what the issue asks for (executed notebooks, run records, the
rendered book, benchmark results)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"


def _actionlint() -> str | None:
    beside_python = Path(sys.executable).parent / "actionlint"
    return str(beside_python) if beside_python.exists() else shutil.which("actionlint")


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


@pytest.mark.parametrize("name", ["ci.yml", "gpu.yml"])
def test_actionlint_finds_nothing(name):
    exe = _actionlint()
    if exe is None:
        pytest.skip("the actionlint binary is missing (install the `test` extra: "
                    "pip install -e '.[test]')")
    config = ROOT / ".github" / "actionlint.yaml"  # declares the self-hosted `gpu` label
    proc = subprocess.run([exe, "-no-color", "-config-file", str(config), str(WORKFLOWS / name)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"actionlint on {name}:\n{proc.stdout}{proc.stderr}"


def test_cpu_workflow_runs_the_ci_script():
    steps = _load("ci.yml")["jobs"]["test"]["steps"]
    assert any(s.get("run") == "bash .ci/run" for s in steps)
    python = [s for s in steps if s.get("uses", "").startswith("actions/setup-python@")]
    assert python and str(python[0]["with"]["python-version"]) == "3.11"


def _gpu_job() -> dict:
    jobs = _load("gpu.yml")["jobs"]
    assert len(jobs) == 1, "gpu.yml is expected to hold one job"
    return next(iter(jobs.values()))


def test_gpu_workflow_runs_on_self_hosted_gpu_runners():
    assert _gpu_job()["runs-on"] == ["self-hosted", "gpu"]


def test_gpu_workflow_sets_up_and_runs_the_book_in_the_gpu_profile():
    runs = "\n".join(s.get("run", "") for s in _gpu_job()["steps"])
    assert "make env" in runs
    assert "-m reidnb book --profile gpu --device cuda" in runs
    assert "benchmarks/bench_train.py" in runs and "benchmarks/bench_eval.py" in runs


def test_gpu_workflow_uploads_the_four_artifact_kinds():
    uploads = [s for s in _gpu_job()["steps"]
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    paths = {s["with"]["path"] for s in uploads}
    assert all(s.get("if") == "always()" for s in uploads)  # uploaded even when a step failed
    assert "build/executed/*.ipynb" in paths
    assert "runs/**/record.json" in paths
    assert "build/book/_build/html" in paths
    assert any(p.startswith("build/bench/") and p.endswith(".json") for p in paths)
    assert len({s["with"]["name"] for s in uploads}) == len(uploads)  # names must not collide
