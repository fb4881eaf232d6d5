"""Models: trunks with named stages, heads, and one file per paper's model.

`build_model(name, num_classes, **kwargs)` looks a model up in a plain registry.
"""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from .backbones import BACKBONES, WeightsInit, build_backbone, find_imagenet_weights
from .embedding import EmbeddingNet
from .heads import BNNeckClassifier, ReIDOutput
from .ide import IDE
from .jeong2020 import Jeong2020

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a model factory `factory(num_classes, **kwargs)`; a taken name is refused."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = factory


def list_models() -> list[str]:
    return sorted(_MODELS)


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, _MODELS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}; registered: {list_models()}{hint}")
    return _MODELS[name](num_classes, **kwargs)


register_model("ide", IDE)
register_model("embedding", EmbeddingNet)
register_model("jeong2020", Jeong2020)

__all__ = ["BACKBONES", "BNNeckClassifier", "EmbeddingNet", "IDE", "Jeong2020", "ReIDOutput", "WeightsInit", "build_backbone",
           "build_model", "find_imagenet_weights", "list_models", "register_model"]
