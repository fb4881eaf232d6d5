"""Models: trunks with named stages, heads, attention blocks, and one file per paper's model.

`build_model(name, num_classes, **kwargs)` looks a model up in a plain registry;
`build_attention(name, channels, **options)` an attention block (the contract is in
`attention.py`) in `ATTENTION_BLOCKS`, every paper module's own `ATTENTION_BLOCKS` merged.
"""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from . import jamal2020, jeong2020, li2019
from .attention import AttentionBlock, merge_blocks
from .backbones import BACKBONES, WeightsInit, build_backbone, find_imagenet_weights
from .embedding import EmbeddingNet
from .heads import BNNeckClassifier, ReIDOutput
from .ide import IDE
from .jamal2020 import Jamal2020
from .jeong2020 import Jeong2020
from .li2019 import Li2019
from .zheng2019 import CASN

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a model factory `factory(num_classes, **kwargs)`; a taken name is refused."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = factory


def list_models() -> list[str]:
    return sorted(_MODELS)


def _lookup(table: dict, name: str, what: str, listed: str):
    """`table[name]`; an unknown name is a ValueError listing the names (and the closest one)."""
    if name not in table:
        close = difflib.get_close_matches(name, table, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {what} {name!r}; {listed}: {sorted(table)}{hint}")
    return table[name]


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    return _lookup(_MODELS, name, "model", "registered")(num_classes, **kwargs)


#: Every attention block by name: each paper module's `ATTENTION_BLOCKS`, a duplicate refused.
ATTENTION_BLOCKS: dict[str, type[AttentionBlock]] = merge_blocks(jeong2020.ATTENTION_BLOCKS,
                                                               li2019.ATTENTION_BLOCKS,
                                                               jamal2020.ATTENTION_BLOCKS)


def list_attention() -> list[str]:
    return sorted(ATTENTION_BLOCKS)


def build_attention(name: str, channels: int, **options) -> nn.Module:
    """`ATTENTION_BLOCKS[name](channels, **options)`; an unknown name lists the valid ones."""
    return _lookup(ATTENTION_BLOCKS, name, "attention block", "choose from")(channels, **options)


register_model("ide", IDE)
register_model("embedding", EmbeddingNet)
register_model("jamal2020", Jamal2020)
register_model("jeong2020", Jeong2020)
register_model("li2019", Li2019)
register_model("zheng2019", CASN)

__all__ = ["ATTENTION_BLOCKS", "AttentionBlock", "BACKBONES", "BNNeckClassifier", "CASN",
           "EmbeddingNet", "IDE", "Jamal2020", "Jeong2020", "Li2019", "ReIDOutput", "WeightsInit",
           "build_attention", "build_backbone", "build_model", "find_imagenet_weights",
           "list_attention", "list_models", "merge_blocks", "register_model"]
