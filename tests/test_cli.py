import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reidnb import experiments, papers
from reidnb.cli import main
from reidnb.io import RunLock
from reidnb.train.engine import TrainConfig


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.jpg")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_cli_generate_same_seed_same_pixels(tmp_path, capsys):
    assert main(["data", "generate", "synthreid", str(tmp_path / "a"), "--size", "smoke",
                 "--seed", "3"]) == 0
    assert main(["data", "generate", "synthreid", str(tmp_path / "b"), "--size", "smoke",
                 "--seed", "3"]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert "written to" in capsys.readouterr().out


def test_cli_verify_reports_wrong_path_and_exits_1(tmp_path, capsys):
    assert main(["data", "verify", "market1501", str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "nowhere" in out and "bounding_box_train" in out


def test_cli_generate_refuses_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["data", "generate", "synthreid", str(tmp_path / "x")]) == 1
    assert "x" in capsys.readouterr().err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_python_dash_m_entry_point_prints_usage():
    out = subprocess.run([sys.executable, "-m", "reidnb", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "data generate synthreid" in out and "data verify" in out


@pytest.fixture
def tiny_run(monkeypatch, tmp_path):
    """A registered experiment `clitiny` whose run folder the tests fill by hand (no training)."""
    exp = experiments.Experiment(name="clitiny", profile="smoke", synth_size="smoke", height=32,
                                 width=16, train=TrainConfig(epochs=1))
    monkeypatch.setitem(papers.EXPERIMENTS, "clitiny", lambda profile, dataset, seed: exp)
    run_dir = experiments.run_dir_for(exp, tmp_path / "runs")
    run_dir.mkdir(parents=True)
    argv = ["run", "clitiny", "--profile", "smoke", "--runs-dir", str(tmp_path / "runs"),
            "--data-root", str(tmp_path / "nodata")]
    return run_dir, argv


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_run_failed_before_says_why_and_the_force_command(tiny_run, capsys):
    run_dir, argv = tiny_run
    (run_dir / "record.json").write_text(json.dumps({
        "status": "failed", "run_name": run_dir.name,
        "failure": {"at": "2025-01-01T00:00:00+00:00", "reason": "training diverged: non-finite "
                    "loss at epoch 3, step 5: {'loss': nan}; lr=1000. ..."}}))
    assert main(argv) == 1
    err = _one_error_line(capsys)
    assert f"{run_dir} failed on 2025-01-01T00:00:00+00:00" in err
    assert "non-finite loss at epoch 3, step 5" in err
    assert (f"`reidnb run clitiny --profile smoke --data-root {run_dir.parents[1] / 'nodata'} "
            f"--runs-dir {run_dir.parent} --force`") in err


def test_cli_run_names_a_truncated_checkpoint_and_the_remedy(tiny_run, capsys):
    run_dir, argv = tiny_run
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    assert main(argv) == 1
    err = _one_error_line(capsys)
    assert f"cannot read the checkpoint {run_dir / 'checkpoint.pt'}" in err
    assert "`reidnb run clitiny --profile smoke" in err and "--force`" in err


def test_cli_run_names_the_process_holding_the_run(tiny_run, capsys):
    run_dir, argv = tiny_run
    lock = RunLock(run_dir)
    lock.acquire()
    try:
        assert main(argv) == 1
    finally:
        lock.release()
    err = _one_error_line(capsys)
    assert f"{run_dir} is in use: pid {os.getpid()} on " in err and "--wait" in err
