"""The main job's first phase: the book's runs trained before the chapters read them, in
single-thread worker processes, each run after the trunk it starts from; a failure is reported,
not hidden, and leaves the other runs trained."""

import warnings

import pytest
import torch

from reidnb.book.train_ahead import TRAINED_AHEAD, train_ahead
from reidnb.experiments import Experiment, run_dir_for, run_experiment
from reidnb.io import atomic_write_json, read_json
from reidnb.train.engine import TrainConfig


def _ide(name: str, seed: int = 0, **kw) -> Experiment:
    """A seconds-long ResNet-18 IDE run on the smoke SynthReID at 32x16 (a real registered
    model, which spawned workers can build)."""
    return Experiment(name=name, profile="smoke", synth_size="smoke", height=32, width=16,
                      model_kwargs={"backbone": "resnet18", "last_stride": 2,
                                    "pretrained": False},
                      objective_kwargs=kw.pop("objective_kwargs", {"batch_size": 32}),
                      train=TrainConfig(epochs=1, lr=0.05, seed=seed), **kw)


def test_trunk_first_on_every_core_then_the_runs_that_start_from_it_in_workers(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    trunk = _ide("trunk")
    rest = [_ide("head", seed=s, trunk_from=trunk.run_name) for s in (0, 1)]
    lines = []
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        failed = train_ahead([trunk, *rest], data, runs, "cpu", workers=2,
                             log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    finally:
        torch.set_num_threads(threads)
    assert failed == {}
    records = {e.run_name: read_json(run_dir_for(e, runs) / "record.json")
               for e in [trunk, *rest]}
    assert all(r["status"] == "complete" for r in records.values())
    assert records[trunk.run_name]["numerics"]["threads"] == 2   # in this process
    assert "trained_ahead" not in records[trunk.run_name]
    for exp in rest:
        rec = records[exp.run_name]
        assert rec["numerics"]["threads"] == 1                  # in the workers
        assert rec["trained_ahead"] == TRAINED_AHEAD
        assert rec["weights_init"]["source"] == "run"           # after the trunk had finished
        assert trunk.run_name in rec["weights_init"]["detail"]
        assert rec["started"] >= records[trunk.run_name]["finished"]
    assert lines[0] == "      1 trunk run(s) first, in this process on every core"
    assert lines[1].startswith(f"      [1/3] {trunk.run_name} done")
    assert lines[2] == "      2 runs in 2 single-thread worker(s)"
    # a chapter then reads the runs on every core: nothing is trained again, and the thread
    # count the workers used by design draws no warning (another CPU's record would)
    ckpt = run_dir_for(rest[0], runs) / "checkpoint.pt"
    mtime = ckpt.stat().st_mtime_ns
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again = run_experiment(rest[0], data, runs, "cpu", progress=False)
        assert again["metrics"] == records[rest[0].run_name]["metrics"]
        assert ckpt.stat().st_mtime_ns == mtime
        path = run_dir_for(rest[1], runs) / "record.json"   # unmarked: the warning is back
        unmarked = read_json(path)
        del unmarked["trained_ahead"]
        atomic_write_json(path, unmarked)
        with pytest.warns(UserWarning, match="reusing a record made under .*1 threads"):
            run_experiment(rest[1], data, runs, "cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    # a second call finds every run finished and trains nothing
    lines.clear()
    assert train_ahead([trunk, *rest], data, runs, "cpu", workers=2,
                       log=lambda *a, **k: lines.append(" ".join(map(str, a)))) == {}
    assert lines == []


def test_a_failing_run_is_reported_with_its_error_and_the_others_still_train(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    good = _ide("good")
    bad = _ide("bad", objective_kwargs={"batch_size": 32, "no_such_option": 1})
    lines = []
    failed = train_ahead([bad, good], data, runs, "cpu", workers=1,
                         log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert set(failed) == {bad.run_name}
    assert "no_such_option" in failed[bad.run_name]
    assert any(bad.run_name in line and "failed" in line for line in lines)
    assert read_json(run_dir_for(good, runs) / "record.json")["status"] == "complete"


def test_a_failing_trunk_starts_no_run_that_needs_it_and_the_others_still_train(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    trunk = _ide("trunk", objective_kwargs={"batch_size": 32, "no_such_option": 1})
    head = _ide("head", trunk_from=trunk.run_name)
    alone = _ide("alone")
    for workers in (2, 1):
        failed = train_ahead([head, alone, trunk], data, runs, "cpu", workers=workers,
                             log=lambda *a, **k: None)
        assert set(failed) == {trunk.run_name, head.run_name}
        assert "no_such_option" in failed[trunk.run_name]
        assert failed[head.run_name] == f"its trunk {trunk.run_name} failed"
        assert not (run_dir_for(head, runs) / "record.json").exists()
        assert read_json(run_dir_for(alone, runs) / "record.json")["status"] == "complete"


def test_a_worker_killed_mid_run_is_reported_and_the_job_does_not_hang(tmp_path):
    """A worker the system kills (out of memory, a signal) must not leave the main job waiting
    for an answer that never comes: its runs are reported failed, for the chapters to retrain."""
    import multiprocessing as mp
    import os
    import signal
    import threading
    import time

    data, runs = tmp_path / "data", tmp_path / "runs"
    exps = [_ide("one"), _ide("two")]
    out: dict = {}
    job = threading.Thread(target=lambda: out.update(failed=train_ahead(
        exps, data, runs, "cpu", workers=2, log=lambda *a, **k: None)), daemon=True)
    before = set(mp.active_children())
    job.start()
    deadline = time.monotonic() + 60
    while not (set(mp.active_children()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = next(iter(set(mp.active_children()) - before))
    os.kill(victim.pid, signal.SIGKILL)
    job.join(timeout=120)
    assert not job.is_alive()                      # answered, not waiting forever
    assert out["failed"], "the killed worker's run must be reported"
    assert all(e.startswith("its worker stopped") for e in out["failed"].values())


def test_each_finished_run_says_how_long_the_rest_will_take_at_the_pace_so_far(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    exps = [_ide("one"), _ide("two", seed=1), _ide("three", seed=2)]
    lines = []
    train_ahead(exps, data, runs, "cpu", workers=1,
                log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    import re
    done = [line for line in lines if "] " in line]
    assert re.search(r"\[1/3\] .* done \((\d+) s\); 2 left, about \d+ min$", done[0])
    assert re.search(r"\[2/3\] .* done \((\d+) s\); 1 left, about \d+ min$", done[1])
    assert done[2].endswith(" s)")        # nothing left: no estimate
