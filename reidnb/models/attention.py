"""The contract every attention block follows (as timm's `layers/create_attn.py` blocks do).

A block is a module that re-weights a trunk stage's feature map:

- built as `Block(channels, **options)`: the stage's channel count first, then keyword options
  with visible defaults;
- `forward(x)` takes an N x C x H x W tensor and returns a tensor of the same shape, so a model
  can put it after any stage (`Trunk.forward(x, hooks={stage: block})`) without other changes;
- after each forward it keeps the maps it computed in `block.maps` (a dict of named tensors,
  each with the batch dimension first), detached: they are for plots and extras, never part of
  the graph, so keeping them holds no activations alive and the model stays deep-copyable;
- it is chosen by a short name: `reidnb.models.build_attention(name, channels, **options)`.

Each paper's module declares its blocks in its own plain dict `ATTENTION_BLOCKS` (name ->
class), e.g. `reidnb/models/jeong2020.py`; `reidnb/models/__init__.py` merges them with
`merge_blocks`, which refuses a name defined twice. Nothing registers itself at import time.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Base of every attention block: holds `maps`, the latest forward's named maps.

    A subclass computes its output in `forward` and calls `self.keep_maps(name=tensor, ...)`.
    """

    maps: dict[str, torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.maps = {}

    def keep_maps(self, **maps: torch.Tensor) -> None:
        """Replace `self.maps` with these maps, detached from the graph."""
        self.maps = {name: m.detach() for name, m in maps.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # N x C x H x W -> the same shape
        raise NotImplementedError


def merge_blocks(*tables: Mapping[str, type[AttentionBlock]]) -> dict[str, type[AttentionBlock]]:
    """One registry from several papers' `ATTENTION_BLOCKS` dicts; a name in two raises."""
    merged: dict[str, type[AttentionBlock]] = {}
    for table in tables:
        for name, block in table.items():
            if name in merged:
                first = merged[name]
                raise ValueError(f"attention block {name!r} is defined twice: by "
                                 f"{first.__module__}.{first.__qualname__} and by "
                                 f"{block.__module__}.{block.__qualname__}")
            merged[name] = block
    return merged
