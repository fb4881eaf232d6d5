"""The GitHub Actions workflows: they match GitHub's workflow schema (check-jsonschema) and zizmor's
security audits find nothing in them, both run offline; and the GPU workflow runs on the
self-hosted GPU runners and uploads what the issue asks for (executed notebooks, run records, the
rendered book, benchmark results)."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
# zizmor's settings (the unpinned-uses policy, with why); passed explicitly so that a workflow
# written elsewhere (tmp_path) is judged by the same rules as ours
ZIZMOR_CONFIG = ROOT / ".github" / "zizmor.yml"
NAMES = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def _tool(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    exe = str(beside_python) if beside_python.exists() else shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is missing (install the `test` extra: pip install -e '.[test]')")
    return exe


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema",
                           "vendor.github-workflows", *map(str, paths)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def zizmor(path: Path) -> subprocess.CompletedProcess:
    # --offline: no audit that needs the GitHub API, and no network at all
    return subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--color", "never",
                           "--format", "plain", "--config", str(ZIZMOR_CONFIG), str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def _report(proc: subprocess.CompletedProcess) -> str:
    return f"exit code {proc.returncode}\n{proc.stdout}{proc.stderr}"


def _load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def test_both_workflows_are_there():
    assert {"ci.yml", "gpu.yml"} <= set(NAMES)


def test_workflows_match_githubs_schema():
    proc = check_jsonschema(*(WORKFLOWS / n for n in NAMES))  # one start-up; it names the file
    assert proc.returncode == 0, f"check-jsonschema on {', '.join(NAMES)}: {_report(proc)}"


@pytest.mark.parametrize("name", NAMES)
def test_zizmor_finds_nothing(name):
    proc = zizmor(WORKFLOWS / name)
    assert proc.returncode == 0, f"zizmor on {name}: {_report(proc)}"


def test_the_linters_catch_broken_workflows(tmp_path):
    no_runner = tmp_path / "no_runner.yml"
    no_runner.write_text(textwrap.dedent("""\
        name: broken
        on: push
        jobs:
          test:
            steps:
              - run: echo hi
        """))
    proc = check_jsonschema(no_runner)
    assert proc.returncode != 0 and "runs-on" in proc.stdout + proc.stderr, _report(proc)

    injection = tmp_path / "injection.yml"
    injection.write_text(textwrap.dedent("""\
        name: insecure
        on: issues
        permissions: {}
        jobs:
          greet:
            runs-on: ubuntu-latest
            steps:
              - uses: someone/some-action@v1
              - run: echo "${{ github.event.issue.title }}"
        """))
    assert check_jsonschema(injection).returncode == 0  # valid, only unsafe
    proc = zizmor(injection)
    out = proc.stdout + proc.stderr
    # exit codes 10 and up mean findings (1 would be zizmor itself failing)
    assert proc.returncode >= 10, _report(proc)
    assert "template-injection" in out, _report(proc)
    # our config relaxes SHA pins for actions/* only; any other owner still needs one
    assert "unpinned-uses" in out and "someone/some-action@v1" in out, _report(proc)


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
