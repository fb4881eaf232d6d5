"""Run files: atomic writes, write checks and the run folder's lock.

Atomic writes: a reader (or a killed run) never sees half a checkpoint or half a record. A write
that fails names the file and says whether space ran out; the previous version stays intact.
Files get the mode the user's umask gives a new file (0644 under the usual 022), so a `runs/`
shared between machines or users can be read by them.

`RunLock`: one process trains a given run folder at a time. It is an `fcntl.flock` on
`<folder>/.lock`, which the operating system releases when the holder exits, however it exits
(SIGKILL included), so a killed run never leaves a stale lock behind; the file keeps the
holder's pid, host, start time and command for the message another process gets.
"""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

#: errno values that mean "no space left" (the disk, or the user's quota)
NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WriteError(OSError):
    """A run file could not be written: names the path and the cause (no space, read-only...)."""

    def __init__(self, path: Path, err: OSError, what: str = "write"):
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.path = Path(path)
        self.no_space = err.errno in NO_SPACE
        if self.no_space:
            cause = f"no space left on the device holding it ({_free_text(self.path)})"
        else:
            cause = err.strerror or str(err)
        self.message = f"cannot {what} {self.path}: {cause}"

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable (e.g. across multiprocessing), message kept
        return _rebuild_write_error, (str(self.path), self.errno, self.strerror, self.message)


def _rebuild_write_error(path: str, code: int, strerror: str, message: str) -> WriteError:
    err = WriteError(Path(path), OSError(code, strerror))
    err.message = message
    return err


def file_mode() -> int:
    """The mode a new file gets from the process's umask (0o644 under the usual 022)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux reports it without changing it (no window where another thread sees umask 0)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_file(fh, data: bytes, path: Path) -> None:
    """Write, flush and fsync `data` meant for `path` (the seam tests replace to simulate a full
    or read-only disk)."""
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())


def _atomic(path: Path, data: bytes) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, file_mode())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as fh:
            _write_file(fh, data, path)
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        if isinstance(err, WriteError):
            raise
        raise WriteError(path, err) from err
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp and os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=_jsonable).encode()
    _atomic(Path(path), data)


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """`torch.save` with the same temp-file-and-rename guarantee.

    The object is serialised in memory first, so a full disk raises an `OSError` (ENOSPC) from
    the file write, named by `WriteError`, rather than torch's "unexpected pos" from its zip writer.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic(Path(path), buf.getbuffer())


def read_json(path: str | Path) -> Any:
    """Read JSON; a broken file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); expected a reidnb run record") from err


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system holding `path` (its nearest existing parent)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _free_text(path: Path) -> str:
    try:
        return f"{human_bytes(free_bytes(path))} free"
    except OSError:
        return "free space unknown"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_writable(folder: str | Path) -> None:
    """Create `folder` if needed and write, fsync and remove a small probe file in it; a failure
    raises `WriteError` naming the folder (read-only, permission denied, no space...)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WriteError(folder, err, "create the run folder") from err
    if not folder.is_dir():
        raise WriteError(folder, OSError(errno.ENOTDIR, "not a folder"), "write to")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            _write_file(fh, b"reidnb write probe\n", folder / ".write-probe")
    except OSError as err:
        raise WriteError(folder, err, "write to") from err
    finally:
        _discard(tmp)


def check_space(folder: str | Path, needed: int, what: str = "a checkpoint") -> None:
    """Raise `WriteError` (ENOSPC) when the file system holding `folder` has less than `needed`
    bytes free."""
    free = free_bytes(folder)
    if free < needed:
        err = OSError(errno.ENOSPC, "no space left on device")
        e = WriteError(Path(folder), err, "write to")
        e.message = (f"not enough space for {what} in {folder}: it needs about "
                     f"{human_bytes(needed)}, the disk holding it has {human_bytes(free)} free")
        raise e


def _jsonable(o: Any):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


# --- the run folder's lock --------------------------------------------------------------------


class RunLockedError(RuntimeError):
    """Another process holds the run folder's lock."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}


LOCK_NAME = ".lock"


class RunLock:
    """An exclusive `flock` on `<folder>/.lock` (see the module docstring).

    `try_acquire()` returns at once (True when taken); `acquire(wait)` stops with
    `RunLockedError` naming the holder, or, with `wait=True`, polls until the holder is gone.
    The lock file is never removed (removing it would let two processes lock two files).
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        import fcntl

        if self._fd is not None:
            return True
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies
        except OSError as err:
            raise WriteError(self.path, err, "create the lock file") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                return False
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise WriteError(self.path, err, "lock") from err
            import warnings  # a file system without locks (some network mounts): go on unlocked
            warnings.warn(f"{self.path}: this file system cannot lock files ({err.strerror}); "
                          "nothing stops a second process from training the same run",
                          stacklevel=3)
        info = {"pid": os.getpid(), "host": platform.node(),
                "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._fd = fd
        return True

    def holder(self) -> dict:
        """What the holder wrote into the lock file ({} while it is starting)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def describe_holder(self) -> str:
        h = self.holder()
        if not h:
            return "another process (it has not written its pid yet)"
        where = f"pid {h.get('pid')} on {h.get('host')}"
        return f"{where}, since {h.get('since')}: `{h.get('command', '?')}`"

    def acquire(self, wait: bool = False, poll_s: float = 1.0, what: str = "train") -> None:
        if self.try_acquire():
            return
        if not wait:
            raise RunLockedError(self.locked_message(what), self.holder())
        print(f"waiting: {self.folder} is locked by {self.describe_holder()}", file=sys.stderr,
              flush=True)
        while not self.try_acquire():
            time.sleep(poll_s)

    def locked_message(self, what: str = "train") -> str:
        return (f"{self.folder} is in use: {self.describe_holder()} is training it. Let it "
                f"finish, then rerun (its finished record is reused), or rerun with --wait "
                f"(wait=True) to wait for it; a killed holder releases the lock by itself")

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass  # unlocked anyway once closed
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
