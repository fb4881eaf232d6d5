"""Atomic writes: a reader (or a killed run) never sees half a checkpoint or half a record."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    data = json.dumps(obj, indent=2, sort_keys=True, default=_jsonable).encode()
    _atomic(Path(path), lambda fh: fh.write(data))


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """`torch.save` with the same temp-file-and-rename guarantee."""
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def read_json(path: str | Path) -> Any:
    """Read JSON; a broken file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); expected a reidnb run record") from err


def _jsonable(o: Any):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "__dataclass_fields__"):
        from dataclasses import asdict
        return asdict(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")
