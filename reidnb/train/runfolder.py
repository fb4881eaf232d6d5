"""A run folder's life: who may train it, whether it can be written, what to do with the files
of an earlier run, and what its record says when training stops early.

- One process trains a run folder at a time (`io.RunLock`): a second stops naming the holder, or
  waits (`claim(..., wait=True)`).
- Before any data is loaded the folder is checked for writing and an existing checkpoint for
  being readable (`prepare_run_folder`); once the model is built, the disk for the space a
  checkpoint needs (`check_run_space`).
- `force` sets the old files aside in `<run folder>.replaced/` (`set_aside`) until the new run
  has finished.
- A run that diverges leaves its record `failed` with the reason, and any other stop `stopped`
  (`record_failure`); `reusable_record` then refuses to retry the first and resumes the second.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from .. import numerics
from ..io import (LOCK_NAME, RunLock, RunLockedError, WriteError, atomic_write_json, check_space,
                  check_writable, read_json)
from . import distributed
from .engine import (FORCE_REMEDY, CheckpointUnreadableError, TrainingDivergedError,
                     resolve_device)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class PreviousRunFailedError(RuntimeError):
    """The run record says this configuration failed (diverged) before; it is not retried."""


class RunRecordUnreadableError(RuntimeError):
    """A run record cannot be read (damaged, or not a reidnb record)."""


def aside_dir(run_dir: str | Path) -> Path:
    """Where `force=True` keeps a run folder's old files until the new run has finished."""
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".replaced")


def reusable_record(record_path: Path, device: str, announce: bool = True) -> dict | None:
    """The complete record to reuse; None to (re)train; raises for a failed or unreadable one."""
    if not record_path.exists():
        return None
    try:
        record = read_json(record_path)
    except (ValueError, OSError) as err:
        raise RunRecordUnreadableError(f"cannot read the run record: {err}; {FORCE_REMEDY}"
                                       ) from err
    if not isinstance(record, dict) or "status" not in record:
        raise RunRecordUnreadableError(f"{record_path} is not a reidnb run record (no status); "
                                       f"{FORCE_REMEDY}")
    status = record["status"]
    if status == "complete":
        warn_if_other_path(record, record_path, device)
        return record
    if status == "failed":
        failure = record.get("failure", {})
        raise PreviousRunFailedError(
            f"{record_path.parent} failed on {failure.get('at', '?')} and is not retried (the "
            f"same configuration fails the same way): {failure.get('reason', '(no reason kept)')} "
            f"To retrain it from scratch anyway (e.g. on another machine): `reidnb run NAME "
            f"--force` (run_experiment(..., force=True)).")
    if status == "stopped" and announce and distributed.is_main():
        failure = record.get("failure", {})
        reason = failure.get("summary", failure.get("reason", ""))
        print(f"{record_path.parent}: continuing after an earlier stop ({reason})",
              file=sys.stderr, flush=True)
    return None


def claim(lock: RunLock, dev, wait: bool, poll_s: float = 1.0) -> None:
    """Rank 0 takes the run folder's lock; every rank learns whether it could (see `io.RunLock`).

    Only rank 0 locks: the other ranks of a torchrun job are the same run, not rivals. With
    `wait`, rank 0 polls the lock and every rank waits with it (no collective outlasts a poll).
    """
    told = False
    while True:
        error = None
        got = False
        if distributed.is_main():
            try:
                got = lock.try_acquire()
            except WriteError as err:
                error = _cannot_write(err)
        if distributed.is_distributed():
            flags = torch.tensor([float(got), float(error is not None)], device=dev)
            got, failed = (distributed.all_reduce_mean(flags) * distributed.world_size()).tolist()
            got = got > 0.5
            if failed > 0.5 and error is None:
                error = RuntimeError(f"rank 0 could not lock {lock.folder}; see its message")
        if error is not None:
            raise error
        if got:
            return
        if not wait:
            raise RunLockedError(lock.locked_message(), lock.holder())
        if not told and distributed.is_main():
            print(f"waiting: {lock.folder} is being trained by {lock.describe_holder()}",
                  file=sys.stderr, flush=True)
            told = True
        time.sleep(poll_s)


def check_run_space(run_dir: Path, needed: int) -> None:
    try:
        check_space(run_dir, needed)
    except WriteError as err:
        raise _cannot_write(err) from err


def _cannot_write(err: WriteError) -> WriteError:
    fix = "free space there" if err.no_space else "make it writable"
    err.message += (f". A run writes its checkpoint and record there: {fix}, or choose another "
                    f"runs folder (--runs-dir / runs_dir=)")
    return err


def prepare_run_folder(run_dir: Path, force: bool) -> None:
    """Before any data is loaded: (with `force`) set the old files aside, check that the folder
    can be written, and that an existing checkpoint can be read."""
    if force:
        _set_aside(run_dir)
    try:
        check_writable(run_dir)
    except WriteError as err:
        raise _cannot_write(err) from err
    ckpt = run_dir / "checkpoint.pt"
    if ckpt.exists():
        check_checkpoint_readable(ckpt)


def check_checkpoint_readable(path: Path) -> None:
    """A cheap read of the whole checkpoint (its zip directory and every member's CRC), so a
    truncated one is named before data loading, not after."""
    try:
        with zipfile.ZipFile(path) as zf:
            broken = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise CheckpointUnreadableError(
            f"cannot read the checkpoint {path} ({err}): it is damaged or cut short (a full disk, "
            f"an interrupted copy?); {FORCE_REMEDY}") from err
    if broken is not None:
        raise CheckpointUnreadableError(
            f"cannot read the checkpoint {path} (its member {broken} is damaged); {FORCE_REMEDY}")


def _set_aside(run_dir: Path) -> None:
    """Move the run folder's files (all but the lock) to `aside_dir(run_dir)`.

    If an earlier forced run left files aside and did not finish, the original run stays aside
    and the unfinished one is dropped (unless it did finish, in which case it replaces them).
    """
    if not run_dir.is_dir():
        return
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if not entries:
        return
    aside = aside_dir(run_dir)
    if aside.exists():
        if _status(run_dir / "record.json") == "complete":
            shutil.rmtree(aside)
        else:
            for p in entries:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            return
    aside.mkdir()
    for p in entries:
        os.replace(p, aside / p.name)


def _status(record_path: Path) -> str | None:
    try:
        return read_json(record_path).get("status")
    except (ValueError, OSError, AttributeError):
        return None


def record_failure(record: dict, record_path: Path, run_dir: Path, err: BaseException) -> None:
    """Write why the run stopped into its record: `failed` (diverged: not retried) or `stopped`
    (resumed by the next run), and add to the message what to do. Only rank 0 writes; a record
    that cannot be written is left as it was."""
    diverged = isinstance(err, TrainingDivergedError)
    summary = str(err) or type(err).__name__
    if isinstance(err, WriteError):
        ckpt = run_dir / "checkpoint.pt"
        if ckpt.exists():
            _append(err, f". The checkpoint {ckpt} is intact: free space (or choose another "
                    f"--runs-dir), then rerun without --force to resume from it")
        else:
            _append(err, ". No checkpoint of this run was written yet: free space (or choose "
                    "another --runs-dir), then rerun")
    aside = aside_dir(run_dir)
    if aside.exists():
        _append(err, f"{'' if str(err).endswith('.') else '.'} The run folder that --force "
                f"replaced is kept in {aside}: move its files back into {run_dir} to restore it")
    if not distributed.is_main():
        return
    failure = {"kind": "diverged" if diverged else "stopped", "error": type(err).__name__,
               "summary": summary, "reason": str(err) or type(err).__name__, "at": _now()}
    if diverged:
        failure.update({k: _plain(v) for k, v in err.details.items()})
    record["status"] = "failed" if diverged else "stopped"
    record["failure"] = failure
    try:
        atomic_write_json(record_path, record)
    except OSError:
        pass  # e.g. the disk is full: the raised error says so


def _append(err: BaseException, text: str) -> None:
    if isinstance(err, WriteError):
        err.message += text
    elif err.args and isinstance(err.args[0], str):
        err.args = (err.args[0] + text, *err.args[1:])


def _plain(value):
    """JSON without NaN/inf (they are written as text)."""
    if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def warn_if_other_path(record: dict, record_path: Path, device: str) -> None:
    """A cached record made under another numeric path (another CPU, kernels or thread count) is
    reused, but never silently: its numbers may differ in every digit from this machine's. The
    one exception: a record the main job's single-thread workers trained (`"trained_ahead"`,
    `book.train_ahead`) read by a process with more threads on the same CPU."""
    here = numerics.describe(str(resolve_device(device)))
    made = record.get("numerics")
    if record.get("trained_ahead") and isinstance(made, dict):
        # the main job trains the book's runs one thread a process by design and its chapters
        # read them on every core: that thread count is the expected one, not a surprise
        made = {**made, "threads": here.get("threads")}
    if not numerics.same_path(made, here):
        warnings.warn(f"{record_path}: reusing a record made under the numeric path "
                      f"{numerics.summary(record.get('numerics'))}; this process runs "
                      f"{numerics.summary(here)}, where retraining may give other numbers "
                      f"(force=True / `reidnb run --force` retrains)", stacklevel=3)
