"""Decode a list of records once into a uint8 tensor, so training never touches JPEG again.

DESIGN.md's data flow: folder -> records -> decoded uint8 image cache -> batched augmentation.
At 128x64 the default SynthReID (about 7k images) takes about 170 MB; Market-1501 at 256x128 about 3.4 GB.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .records import DatasetError, Sample


def load_image(path: str | Path, height: int, width: int) -> np.ndarray:
    """Read one image as uint8 HxWx3 RGB, resized (bilinear) to height x width."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (width, height):
                im = im.resize((width, height), Image.BILINEAR)
            return np.array(im, dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read image {path}: {err} (expected a JPEG/PNG image)") from err


@dataclass
class ImageCache:
    """Images (N,3,H,W) uint8 with their pids and 0-based camera ids, in record order."""

    images: torch.Tensor
    pids: torch.Tensor
    camids: torch.Tensor
    paths: list[str]

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: str | torch.device) -> "ImageCache":
        return ImageCache(self.images.to(device), self.pids.to(device), self.camids.to(device),
                          self.paths)

    def subset(self, index) -> "ImageCache":
        """The images at `index` (a sequence of positions or a boolean mask), in that order."""
        idx = torch.as_tensor(np.asarray(index))
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        return ImageCache(self.images[idx], self.pids[idx], self.camids[idx],
                          [self.paths[int(i)] for i in idx])

    @classmethod
    def from_records(cls, records: list[Sample], height: int = 128, width: int = 64) -> "ImageCache":
        if not records:
            raise DatasetError("cannot build an image cache from an empty list of records")
        images = torch.empty((len(records), 3, height, width), dtype=torch.uint8)
        for i, rec in enumerate(records):
            images[i] = torch.from_numpy(load_image(rec.path, height, width)).permute(2, 0, 1)
        pids = torch.tensor([r.pid for r in records], dtype=torch.long)
        camids = torch.tensor([r.camid for r in records], dtype=torch.long)
        return cls(images, pids, camids, [r.path for r in records])


#: decoded caches of this process, newest last: (records' fingerprint, height, width) -> cache
_DECODED: OrderedDict[tuple, ImageCache] = OrderedDict()
DECODED_KEEP = 6  # a data set's three splits, twice (e.g. the default set and one misaligned)


def records_fingerprint(records: list[Sample]) -> str:
    """A digest of the records and of their files' size and modification time: a file that
    is rewritten (or a list that changes) gives another digest."""
    digest = hashlib.sha1()
    for r in records:
        st = os.stat(r.path)
        digest.update(f"{r.path}\0{r.pid}\0{r.camid}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def decoded(records: list[Sample], height: int = 128, width: int = 64) -> ImageCache:
    """`ImageCache.from_records`, decoded once per process: a notebook that trains and
    evaluates many runs on one data set decodes its images once. The returned cache is shared:
    treat it as read-only (augmentation and `subset` make copies). A changed file or record
    list is decoded again; at most `DECODED_KEEP` caches are kept."""
    if not records:
        raise DatasetError("cannot build an image cache from an empty list of records")
    try:
        key = (records_fingerprint(records), height, width)
    except OSError as err:
        raise DatasetError(f"cannot read image {err.filename}: {err.strerror} "
                           "(expected a JPEG/PNG image)") from err
    if key in _DECODED:
        _DECODED.move_to_end(key)
        return _DECODED[key]
    cache = ImageCache.from_records(records, height, width)
    _DECODED[key] = cache
    while len(_DECODED) > DECODED_KEEP:
        _DECODED.popitem(last=False)
    return cache


def forget_decoded() -> None:
    """Drop this process's decoded caches (frees their memory)."""
    _DECODED.clear()
