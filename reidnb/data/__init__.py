"""Data sets as records, and a registry that builds them by name.

    >>> from reidnb.data import build_dataset
    >>> ds = build_dataset("market1501", "/data/reid")   # or the Market-1501-v15.09.15 folder
    >>> ds.train[0]                                       # Sample(path, pid, camid)

The registry is a plain dict behind `register_dataset`, `build_dataset` and `list_datasets`;
a loader is any callable `loader(root, **kw) -> ReIDDataset`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from .cuhk03 import CUHK03_DETECTED, CUHK03_LABELED, load_cuhk03_detected, load_cuhk03_labeled
from .manifests import (
    VerifyReport,
    filelist_hash,
    get_spec,
    load_manifest,
    make_manifest,
    manifest_dir,
    save_manifest,
    verify,
)
from .market1501 import (
    DUKEMTMCREID,
    MARKET1501,
    SYNTHREID,
    DatasetSpec,
    NamePattern,
    load_dukemtmcreid,
    load_market1501,
    load_synthreid,
    parse_dir,
)
from .records import DatasetError, ReIDDataset, Sample

Loader = Callable[..., ReIDDataset]

_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str, loader: Loader) -> None:
    """Add `loader` under `name`; a name that is already taken raises `ValueError`."""
    if name in _DATASETS:
        raise ValueError(f"data set {name!r} is already registered (to {_DATASETS[name]!r})")
    _DATASETS[name] = loader


def list_datasets() -> list[str]:
    """Registered data set names, sorted."""
    return sorted(_DATASETS)


def _unknown_name(name: str) -> ValueError:
    names = list_datasets()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown data set {name!r}; valid names: {', '.join(names)}{hint}")


def get_loader(name: str) -> Loader:
    """The loader registered under `name`, or `ValueError` listing the names and the closest."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise _unknown_name(name) from None


def build_dataset(name: str, root: str | Path, **kwargs) -> ReIDDataset:
    """Load data set `name` from `root` (the data set folder or a parent that holds it)."""
    return get_loader(name)(root, **kwargs)


for _name, _loader in (
    ("market1501", load_market1501),
    ("dukemtmcreid", load_dukemtmcreid),
    ("cuhk03_labeled", load_cuhk03_labeled),
    ("cuhk03_detected", load_cuhk03_detected),
    ("synthreid", load_synthreid),
):
    register_dataset(_name, _loader)

__all__ = [
    "CUHK03_DETECTED",
    "CUHK03_LABELED",
    "DUKEMTMCREID",
    "MARKET1501",
    "SYNTHREID",
    "DatasetError",
    "DatasetSpec",
    "NamePattern",
    "ReIDDataset",
    "Sample",
    "VerifyReport",
    "build_dataset",
    "filelist_hash",
    "get_loader",
    "get_spec",
    "list_datasets",
    "load_cuhk03_detected",
    "load_cuhk03_labeled",
    "load_dukemtmcreid",
    "load_manifest",
    "load_market1501",
    "load_synthreid",
    "make_manifest",
    "manifest_dir",
    "parse_dir",
    "register_dataset",
    "save_manifest",
    "verify",
]
