"""Records shared by every data set: one `Sample` per image and a `ReIDDataset` of three splits.

A loader only turns a folder into records; decoding, augmentation and sampling live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class DatasetError(ValueError):
    """A data set on disk does not look as expected; the message names the path and the layout."""


class Sample(NamedTuple):
    """One image: its path, identity label and 0-based camera index."""

    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    """Train / query / gallery records of one data set.

    `train` pids are relabelled to 0..num_train_pids-1 (sorted order of the original ids);
    query and gallery keep the original ids (0 = distractor, -1 = junk is dropped by loaders).
    """

    name: str
    root: Path
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    extra: dict = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    def stats(self) -> dict[str, dict[str, int]]:
        """Images, identities and cameras per split (what `data_manifests/` records)."""
        out = {}
        for split in ("train", "query", "gallery"):
            recs = getattr(self, split)
            out[split] = {
                "images": len(recs),
                "ids": len({s.pid for s in recs}),
                "cams": len({s.camid for s in recs}),
            }
        return out

    def __repr__(self) -> str:
        rows = [f"{self.name} at {self.root}"]
        for split, st in self.stats().items():
            rows.append(f"  {split:8s} {st['images']:7d} images {st['ids']:6d} ids {st['cams']:3d} cams")
        return "\n".join(rows)
