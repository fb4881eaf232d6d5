"""Failures tell the user what happened and what to do, and never leave a poisoned run behind
(issue 20): divergence, damaged checkpoints and records, --force, read-only or full runs folders,
two processes on one run folder, file modes.

A tiny model and the smoke SynthReID (generated once for the module) keep each case to seconds.
Full and read-only disks are simulated by replacing `reidnb.io._write_file` (the write every run
file and the write probe go through) or `reidnb.io.free_bytes`, which works as root too.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import reidnb.io as rio
from reidnb import experiments
from reidnb.data.cache import ImageCache
from reidnb.data.transforms import BatchAugment
from reidnb.experiments import (Experiment, PreviousRunFailedError, RunRecordUnreadableError,
                                aside_dir, run_dir_for, run_experiment)
from reidnb.io import RunLock, RunLockedError, WriteError, atomic_torch_save, atomic_write_json
from reidnb.train.engine import (CheckpointUnreadableError, NonFiniteLossError,
                                 NonFiniteStateError, TrainConfig, TrainingDivergedError, fit,
                                 load_checkpoint, nonfinite_tensors)
from reidnb.train.objectives import IdentityObjective


from tiny_model import TinyNet  # noqa: F401  (registers the model "test_tiny")


def _exp(**train) -> Experiment:
    return Experiment(name="failtiny", profile="smoke", synth_size="smoke", height=32, width=16,
                      model="test_tiny", objective_kwargs={"batch_size": 32},
                      train=TrainConfig(**{"epochs": 2, "lr": 0.05, **train}))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    experiments.dataset_root(_exp(), root)  # the smoke SynthReID, once
    return root


@pytest.fixture
def kw(data_root, tmp_path):
    return {"data_root": data_root, "runs_dir": tmp_path / "runs", "device": "cpu",
            "progress": False}


def _all_finite(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=False)
    tensors = list(state["model"].items())
    for slots in state.get("optimizer", {}).get("state", {}).values():
        tensors += list(slots.items())
    return not nonfinite_tensors(tensors)


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


# --- fit: divergence ------------------------------------------------------------------------


def _cache(n_ids=4, per_id=6):
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    base = (pids.view(-1, 1, 1, 1) * 60 % 256).expand(-1, 3, 16, 8).clone()
    imgs = (base + torch.randint(0, 30, base.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    return ImageCache(imgs, pids, torch.arange(len(pids)) % 2, [f"{i}" for i in range(len(pids))])


class PoisonBN(IdentityObjective):
    """Sets one BatchNorm running variance to inf during epoch `at_epoch` (losses stay finite)."""

    at_epoch = 2

    def epoch_batches(self, rng):
        self.epoch = getattr(self, "epoch", 0) + 1
        return super().epoch_batches(rng)

    def step(self, model, batch, gen, device):
        out = super().step(model, batch, gen, device)
        if self.epoch == self.at_epoch:
            model.head.bn.running_var.data[0] = float("inf")
        return out


def test_weights_that_blow_up_without_a_nan_loss_stop_before_the_checkpoint(tmp_path):
    obj = PoisonBN(_cache(), BatchAugment(erasing_p=0.0), sampler="pk", num_identities=2,
                   num_instances=3)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteStateError) as info:
        fit(TinyNet(4), obj, TrainConfig(epochs=3, lr=0.05), tmp_path, progress=False)
    msg = str(info.value)
    ckpt = tmp_path / "checkpoint.pt"
    assert "after epoch 2 (step 2 of 2)" in msg
    assert "head.bn.running_var (1 inf of 16)" in msg
    assert "lr=0.05" in msg and "largest |loss|" in msg
    assert f"Newest checkpoint with every tensor finite: {ckpt} (after epoch 1)" in msg
    # the named checkpoint exists, loads, is the one of epoch 1, and every tensor is finite
    assert load_checkpoint(ckpt)["next_epoch"] == 1 and _all_finite(ckpt)
    assert info.value.details["finite_checkpoint"] == {"path": str(ckpt), "after_epoch": 1}
    assert _no_temp_files(tmp_path)


def test_nan_loss_in_the_first_epoch_says_no_checkpoint_exists(tmp_path):
    obj = IdentityObjective(_cache(n_ids=12), BatchAugment(erasing_p=0.0), sampler="pk",
                            num_identities=2, num_instances=3)
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError) as info:
        fit(TinyNet(12), obj, TrainConfig(epochs=2, lr=1e9), tmp_path, progress=False)
    msg = str(info.value)
    assert "non-finite loss at epoch 1, step " in msg and "lr=1e+09" in msg
    assert "No finite checkpoint exists" in msg
    assert not (tmp_path / "checkpoint.pt").exists()


def test_a_checkpoint_with_non_finite_values_is_not_resumed(tmp_path):
    """A checkpoint written before these checks existed (inf BatchNorm statistics)."""
    cfg = TrainConfig(epochs=2, lr=0.05)
    obj = IdentityObjective(_cache(), BatchAugment(erasing_p=0.0), sampler="pk",
                            num_identities=2, num_instances=3)
    fit(TinyNet(4), obj, TrainConfig(epochs=1, lr=0.05), tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    state["model"]["head.bn.running_var"][:2] = float("nan")
    state["train_config"]["epochs"] = 2
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(NonFiniteStateError, match=r"running_var \(2 nan of 16\).*--force"):
        fit(TinyNet(4), obj, cfg, tmp_path, progress=False)


# --- fit and run files: damaged checkpoints, full disks, modes ---------------------------------


def test_truncated_checkpoint_is_named_with_the_remedy(tmp_path):
    obj = IdentityObjective(_cache(), BatchAugment(erasing_p=0.0), sampler="pk",
                            num_identities=2, num_instances=3)
    fit(TinyNet(4), obj, TrainConfig(epochs=1), tmp_path, progress=False)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointUnreadableError) as info:
        fit(TinyNet(4), obj, TrainConfig(epochs=2), tmp_path, progress=False)
    assert str(ckpt) in str(info.value) and "--force" in str(info.value)
    assert "PytorchStreamReader" in str(info.value)  # torch's own words, kept as the detail
    with pytest.raises(CheckpointUnreadableError, match="cut short"):
        experiments.check_checkpoint_readable(ckpt)


def _full_disk_for(name: str, after: int = 0):
    """A `_write_file` that raises ENOSPC for files called `name` after `after` good writes."""
    real, calls = rio._write_file, {"n": 0}

    def write(fh, data, path):
        if Path(path).name == name:
            calls["n"] += 1
            if calls["n"] > after:
                fh.write(bytes(data)[:100])  # what a filling disk leaves
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fh, data, path)
    return write


def test_full_disk_names_the_file_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    obj = IdentityObjective(_cache(), BatchAugment(erasing_p=0.0), sampler="pk",
                            num_identities=2, num_instances=3)
    monkeypatch.setattr(rio, "_write_file", _full_disk_for("checkpoint.pt", after=1))
    with pytest.raises(WriteError) as info:
        fit(TinyNet(4), obj, TrainConfig(epochs=3), tmp_path, progress=False)
    assert info.value.no_space and info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"cannot write {tmp_path / 'checkpoint.pt'}: no space left")
    assert load_checkpoint(tmp_path / "checkpoint.pt")["next_epoch"] == 1
    assert _no_temp_files(tmp_path)


def test_run_files_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "r.json", {"a": 1})
        atomic_torch_save(tmp_path / "c.pt", {"a": torch.ones(2)})
        assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"a": 1})
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_write_probe_names_a_read_only_folder(tmp_path, monkeypatch):
    def read_only(fh, data, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(rio, "_write_file", read_only)
    with pytest.raises(WriteError, match=f"cannot write to {tmp_path / 'runs'}: Read-only"):
        rio.check_writable(tmp_path / "runs")
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(WriteError, match="cannot create the run folder"):
        rio.check_writable(tmp_path / "file" / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_write_probe_names_a_folder_without_write_permission(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(WriteError, match="Permission denied"):
        rio.check_writable(tmp_path / "ro")


# --- the run folder's lock -----------------------------------------------------------------


def test_lock_names_its_holder_and_waits_for_it(tmp_path):
    holder = RunLock(tmp_path)
    assert holder.try_acquire()
    other = RunLock(tmp_path)
    with pytest.raises(RunLockedError) as info:
        other.acquire()
    assert f"pid {os.getpid()} on " in str(info.value) and "--wait" in str(info.value)
    threading.Timer(0.3, holder.release).start()
    t0 = time.monotonic()
    other.acquire(wait=True, poll_s=0.05)
    assert other.held and time.monotonic() - t0 >= 0.25
    other.release()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from reidnb.io import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        lock = RunLock(tmp_path)
        assert not lock.try_acquire()
        assert f"pid {proc.pid}" in lock.locked_message()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert lock.try_acquire()  # the kernel released it with the process
        lock.release()
    finally:
        proc.kill()
        proc.wait()


# --- run_experiment --------------------------------------------------------------------------


def test_divergence_fails_the_record_and_a_rerun_says_so(kw):
    exp = _exp(lr=1e3)
    with pytest.raises(TrainingDivergedError) as info:
        run_experiment(exp, **kw)
    msg, details = str(info.value), info.value.details
    run_dir = run_dir_for(exp, kw["runs_dir"])
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "failed"
    assert record["failure"]["kind"] == "diverged" and record["failure"]["reason"] == msg
    assert record["failure"]["lr"] == 1e3 and record["failure"]["epoch"] == details["epoch"]
    assert f"epoch {details['epoch']}" in msg and "lr=1000" in msg
    ckpt = run_dir / "checkpoint.pt"
    if details["finite_checkpoint"] is None:
        assert "No finite checkpoint exists" in msg and not ckpt.exists()
    else:  # the checkpoint it names exists, loads, and every tensor in it is finite
        assert details["finite_checkpoint"]["path"] == str(ckpt) and str(ckpt) in msg
        assert load_checkpoint(ckpt)["next_epoch"] == details["finite_checkpoint"]["after_epoch"]
    assert not ckpt.exists() or _all_finite(ckpt)  # nothing non-finite on disk
    assert not (run_dir / "best.pt").exists() and _no_temp_files(run_dir)
    with pytest.raises(PreviousRunFailedError) as again:
        run_experiment(exp, **kw)
    assert "is not retried" in str(again.value) and "--force" in str(again.value)
    assert "non-finite" in str(again.value)


def test_weights_blowing_up_fail_the_run_and_force_retrains_from_scratch(kw, monkeypatch):
    exp = _exp()
    clean = run_experiment(exp, **{**kw, "runs_dir": kw["runs_dir"].parent / "clean"})

    real_batches, real_step, epochs = (IdentityObjective.epoch_batches, IdentityObjective.step,
                                       {"n": 0})

    def counted(self, rng):
        epochs["n"] += 1
        return real_batches(self, rng)

    def poisoned(self, model, batch, gen, device):  # inf in a BN statistic during epoch 2
        out = real_step(self, model, batch, gen, device)
        if epochs["n"] == 2:
            model.head.bn.running_var.data[0] = float("inf")
        return out

    monkeypatch.setattr(IdentityObjective, "epoch_batches", counted)
    monkeypatch.setattr(IdentityObjective, "step", poisoned)
    with pytest.raises(NonFiniteStateError, match="after epoch 2") as info:
        run_experiment(exp, **kw)
    monkeypatch.undo()
    run_dir = run_dir_for(exp, kw["runs_dir"])
    assert json.loads((run_dir / "record.json").read_text())["status"] == "failed"
    assert "running_var (1 inf of" in str(info.value)
    assert _all_finite(run_dir / "checkpoint.pt")
    assert load_checkpoint(run_dir / "checkpoint.pt")["next_epoch"] == 1
    with pytest.raises(PreviousRunFailedError):
        run_experiment(exp, **kw)

    seen_aside = {}
    real_fit = experiments.fit

    def fit_watching(*a, **k):
        seen_aside["record"] = json.loads((aside_dir(run_dir) / "record.json").read_text())
        seen_aside["ckpt_in_run_dir"] = (run_dir / "checkpoint.pt").exists()
        return real_fit(*a, **k)

    monkeypatch.setattr(experiments, "fit", fit_watching)
    rec = run_experiment(exp, force=True, **kw)
    assert seen_aside == {"record": {**seen_aside["record"], "status": "failed"},
                          "ckpt_in_run_dir": False}  # old files aside while the new run trained
    assert rec["status"] == "complete" and rec["resumed_from_epoch"] is None
    assert not aside_dir(run_dir).exists()  # removed once the new run finished
    assert rec["metrics"] == clean["metrics"] and rec["history"] == [
        {**r, "time_s": h["time_s"]} for r, h in zip(clean["history"], rec["history"])]
    a = load_checkpoint(run_dir / "checkpoint.pt")["model"]
    b = load_checkpoint(run_dir_for(exp, kw["runs_dir"].parent / "clean") / "checkpoint.pt")
    assert all(torch.equal(v, b["model"][k]) for k, v in a.items())  # bit-identical


def test_force_retrains_a_finished_run_from_scratch(kw):
    exp = _exp(epochs=1)
    first = run_experiment(exp, **kw)
    run_dir = run_dir_for(exp, kw["runs_dir"])
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # and damaged, for good measure
    again = run_experiment(exp, force=True, **kw)
    assert again["resumed_from_epoch"] is None and len(again["history"]) == 1
    assert again["metrics"] == first["metrics"] and again["started"] >= first["started"]
    assert _all_finite(ckpt) and not aside_dir(run_dir).exists()
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "checkpoint.pt", "record.json"]


def test_damaged_checkpoint_or_record_is_named_before_any_data_is_loaded(kw, monkeypatch):
    exp = _exp(epochs=1)
    run_dir = run_dir_for(exp, kw["runs_dir"])
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    monkeypatch.setattr(experiments, "load_data", lambda *a: pytest.fail("data was loaded"))
    with pytest.raises(CheckpointUnreadableError) as info:
        run_experiment(exp, **kw)
    assert str(run_dir / "checkpoint.pt") in str(info.value)
    assert "reidnb run NAME --force" in str(info.value)
    (run_dir / "record.json").write_text('{"status": "compl')
    with pytest.raises(RunRecordUnreadableError) as info:
        run_experiment(exp, **kw)
    assert str(run_dir / "record.json") in str(info.value) and "--force" in str(info.value)


def test_read_only_or_full_runs_folder_is_found_before_training(kw, monkeypatch):
    exp = _exp(epochs=1)
    monkeypatch.setattr(experiments, "fit", lambda *a, **k: pytest.fail("training started"))

    def read_only(fh, data, path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    with monkeypatch.context() as m:
        m.setattr(rio, "_write_file", read_only)
        m.setattr(experiments, "load_data", lambda *a: pytest.fail("data was loaded"))
        with pytest.raises(WriteError) as info:
            run_experiment(exp, **kw)
    run_dir = run_dir_for(exp, kw["runs_dir"])
    assert f"cannot write to {run_dir}: Read-only file system" in str(info.value)
    assert "--runs-dir" in str(info.value)

    monkeypatch.setattr(rio, "free_bytes", lambda path: 200_000)
    with pytest.raises(WriteError) as info:
        run_experiment(exp, **kw)
    assert info.value.no_space
    assert f"not enough space for a checkpoint in {run_dir}: it needs about" in str(info.value)
    assert "200.0 KB free" in str(info.value)
    assert not (run_dir / "record.json").exists()

    blocker = kw["runs_dir"].parent / "runs-file"
    blocker.write_text("a file where the runs folder should be")
    with pytest.raises(WriteError, match="runs-file"):
        run_experiment(exp, **{**kw, "runs_dir": blocker})


def test_full_disk_during_training_stops_the_run_and_a_rerun_resumes(kw, monkeypatch):
    exp = _exp(epochs=2)
    with monkeypatch.context() as m:
        m.setattr(rio, "_write_file", _full_disk_for("checkpoint.pt", after=1))
        with pytest.raises(WriteError) as info:
            run_experiment(exp, **kw)
    run_dir = run_dir_for(exp, kw["runs_dir"])
    msg = str(info.value)
    assert msg.startswith(f"cannot write {run_dir / 'checkpoint.pt'}: no space left on the device")
    assert f"The checkpoint {run_dir / 'checkpoint.pt'} is intact" in msg
    assert "rerun without --force to resume" in msg
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "stopped" and record["failure"]["reason"] == msg
    assert _no_temp_files(run_dir)
    rec = run_experiment(exp, **kw)
    assert rec["status"] == "complete" and rec["resumed_from_epoch"] == 1


def test_a_second_process_on_the_same_run_stops_naming_the_holder_or_waits(kw):
    exp = _exp(epochs=1)
    holder = RunLock(run_dir_for(exp, kw["runs_dir"]))
    holder.acquire()
    with pytest.raises(RunLockedError) as info:
        run_experiment(exp, **kw)
    assert f"pid {os.getpid()} on " in str(info.value)
    assert not (run_dir_for(exp, kw["runs_dir"]) / "record.json").exists()
    threading.Timer(0.5, holder.release).start()
    rec = run_experiment(exp, wait=True, **kw)
    assert rec["status"] == "complete"


def test_a_run_killed_after_an_epoch_resumes_without_force(kw, tmp_path):
    """SIGKILL after epoch 1: the lock dies with the process; the rerun resumes, bit-identical."""
    exp = _exp(epochs=2)
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_failures as t
        from reidnb import experiments
        real = experiments.fit
        def fit(*a, **k):
            on_epoch = a[6]
            def hang(epoch, row):
                on_epoch(epoch, row)
                print("epoch", epoch, flush=True)
                time.sleep(120)
            return real(*a[:6], hang, *a[7:], **k)
        experiments.fit = fit
        experiments.run_experiment(t._exp(epochs=2), {str(kw['data_root'])!r},
                                   {str(kw['runs_dir'])!r}, "cpu", progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "epoch 1"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            run_experiment(exp, **kw)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
    rec = run_experiment(exp, **kw)
    assert rec["resumed_from_epoch"] == 1
    clean = run_experiment(exp, **{**kw, "runs_dir": tmp_path / "clean"})
    assert rec["metrics"] == clean["metrics"] and rec["cmc"] == clean["cmc"]
    a = load_checkpoint(run_dir_for(exp, kw["runs_dir"]) / "checkpoint.pt")
    b = load_checkpoint(run_dir_for(exp, tmp_path / "clean") / "checkpoint.pt")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


# --- torchrun: only rank 0 locks and writes; every rank stops together -------------------------


def _ddp_worker(rank: int, port: int, data_root: str, runs_dir: str, out_dir: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=60))
    outcome = {}
    kw = {"data_root": data_root, "runs_dir": runs_dir, "device": "cpu", "progress": False}
    for name, exp in (("locked", _exp(epochs=1, seed=7)), ("diverged", _exp(lr=1e3)),
                      ("complete", _exp(epochs=1))):
        try:
            outcome[name] = run_experiment(exp, **kw)["status"]
        except Exception as err:  # noqa: BLE001 - recorded for the parent to check
            outcome[name] = f"{type(err).__name__}: {err}"
    dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcome))


@pytest.mark.slow
def test_under_torchrun_only_rank_zero_locks_and_every_rank_stops_together(kw, tmp_path):
    import torch.multiprocessing as mp

    from test_distributed import _free_port

    holder = RunLock(run_dir_for(_exp(epochs=1, seed=7), kw["runs_dir"]))
    holder.acquire()
    try:
        mp.spawn(_ddp_worker, args=(_free_port(), str(kw["data_root"]), str(kw["runs_dir"]),
                                    str(tmp_path)), nprocs=2, join=True)
    finally:
        holder.release()
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):  # the rival holds the lock: both ranks stop, naming it
        assert r["locked"].startswith("RunLockedError") and f"pid {os.getpid()}" in r["locked"]
        assert r["diverged"].split(":")[0] in {"NonFiniteLossError", "NonFiniteStateError"}
        assert r["complete"] == "complete"
    record = json.loads((run_dir_for(_exp(lr=1e3), kw["runs_dir"]) / "record.json").read_text())
    assert record["status"] == "failed" and record["processes"] == 2


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = RunLock(tmp_path)
    with pytest.warns(UserWarning, match="cannot lock files"):
        assert lock.try_acquire()
    lock.release()
