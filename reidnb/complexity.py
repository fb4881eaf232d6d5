"""Model size and cost: parameters and floating-point operations of one forward pass, and the
time it takes on this machine.

Operations are counted with `torch.utils.flop_counter.FlopCounterMode`, which counts matrix
products and convolutions (transposed ones included) and counts each multiply-add as 2 FLOPs.
Normalisation, activations, pooling and additions are not counted; they are a small share of a
CNN's cost. `Complexity.macs` is half of `flops`: multiply-accumulates, the unit in which the
ResNet paper (He et al. 2016) and most re-ID papers quote "FLOPs" (ResNet-50's "3.8 x 10^9 FLOPs"
at 224 x 224 are multiply-adds). jeong2020 Sec. 4.2 quotes 2.90 x 10^9 FLOPs at 256 x 128; compare
it with `macs`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Complexity:
    """Per-image cost of a model's forward pass at `input_size` (height, width)."""

    params: int
    flops: int                       # 2 per multiply-add, as FlopCounterMode counts
    input_size: tuple[int, int]
    by_module: dict[str, int] = field(default_factory=dict)   # flops per top-level submodule

    @property
    def macs(self) -> int:
        return self.flops // 2

    def summary(self) -> dict[str, float]:
        """Millions of parameters, GFLOPs (2 per multiply-add) and GMACs."""
        return {"params_M": self.params / 1e6, "gflops": self.flops / 1e9,
                "gmacs": self.macs / 1e9}


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


@torch.no_grad()
def count_flops(model: nn.Module, input_size: tuple[int, int] = (256, 128), channels: int = 3
                ) -> Complexity:
    """FLOPs of `model(x)` for one image x of `channels` x height x width, in eval mode."""
    if len(input_size) != 2:
        raise ValueError(f"count_flops: input_size must be (height, width), got {input_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, channels, *input_size, device=device)
    counter = FlopCounterMode(display=False, depth=3)
    try:
        with counter:
            model(x)
    finally:
        model.train(was_training)
    return Complexity(count_params(model), int(counter.get_total_flops()), tuple(input_size),
                      _by_child(counter.get_flop_counts(), type(model).__name__))


@torch.no_grad()
def count_call_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (2 per multiply-add, as `count_flops`) of one call `fn()`, for what is not a plain
    `model(x)`: a Siamese pair forward, a re-scoring pass. Put the model in eval mode first."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def _by_child(counts: dict[str, dict], top: str) -> dict[str, int]:
    """FLOPs per direct child of the model: the sum of the child's own submodules where it has
    recorded ones (so an attention block that a trunk runs between its stages counts once, as
    the block, not again inside the trunk), else the child as a whole. Assumes a child with
    submodules does no counted operation outside them (true of trunks and heads here)."""
    groups: dict[str, dict[int, int]] = {}
    for name, ops in counts.items():
        parts = name.split(".")
        if len(parts) >= 2 and parts[0] == top:
            depth = groups.setdefault(parts[1], {})
            depth[len(parts)] = depth.get(len(parts), 0) + int(sum(ops.values()))
    return {child: depth[3] if 3 in depth else depth[min(depth)]
            for child, depth in groups.items()}


@torch.no_grad()
def output_shapes(model: nn.Module, modules: list[str], input_size: tuple[int, int] = (256, 128)
                  ) -> dict[str, tuple[int, ...]]:
    """Shape (without the batch) of each named submodule's output for one image, in eval mode;
    for a module returning a tuple, its first tensor. Raises KeyError naming unknown modules."""
    named = dict(model.named_modules())
    unknown = [m for m in modules if m not in named]
    if unknown:
        raise KeyError(f"output_shapes: no submodule {unknown} in {type(model).__name__}")
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for name in modules:
        def hook(_mod, _inp, out, name=name):
            t = out[0] if isinstance(out, (tuple, list)) else out
            shapes[name] = tuple(t.shape[1:])
        hooks.append(named[name].register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, *input_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return {m: shapes[m] for m in modules if m in shapes}


@torch.no_grad()
def time_inference(model: nn.Module, input_size: tuple[int, int] = (256, 128), batch: int = 16,
                   repeats: int = 2, warmup: int = 1, warmup_batch: int = 2,
                   device: str | torch.device = "cpu", threads: int | None = None) -> float:
    """Seconds per image of `model(x)` in eval mode, x a random batch of `batch` 3-channel
    images of `input_size` (height, width) on `device`: `warmup` untimed passes on the first
    `warmup_batch` images (memory, kernel choice), then `repeats` timed passes of the whole batch
    (CUDA synchronised before each clock reading); the time over `repeats * batch`. `threads`
    sets torch's CPU threads for the timing only. The model's device and train/eval mode are
    restored afterwards."""
    dev = torch.device(device)
    first = next(model.parameters(), None)
    home = first.device if first is not None else None
    was_training, old_threads = model.training, torch.get_num_threads()
    net = model.to(dev).eval()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        x = torch.randn(batch, 3, *input_size, device=dev)

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        for _ in range(warmup):
            net(x[:warmup_batch])
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x)
        sync()
        elapsed = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
        if home is not None:
            model.to(home)
    return elapsed / (repeats * batch)
