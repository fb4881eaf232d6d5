"""Tensor ops whose bits are the same on every CPU, for the few torch ops that no setting pins.

The portable numeric mode (`reidnb.numerics`) fixes every kernel choice that an environment
variable or a torch flag reaches. One family is out of its reach: on the CPU, `torch.sqrt`
(with `x.pow(0.5)`, the Euclidean `torch.cdist` and `torch.atan`) runs MKL's vector math,
whatever ATen's capability. Its float32 square root is 1 ulp off the correctly rounded value
for about 15 % of inputs, and *which* inputs depends on the CPU's approximate
reciprocal-square-root instruction: an AVX2 AMD EPYC, an AVX-512 Xeon and an emulated CPU
(qemu) each give other bits. One such ulp in the distances of a batch-hard triplet batch sent
chapter 3's smoke run to rank-1 15.87 on one machine kind and 22.22 on another (issue 18's
portability note; `tools/numerics_ops_check.py` finds such ops by running a battery of them
natively and under qemu).

The library therefore takes its square roots from here. Exponentials, logarithms, tanh,
sigmoid, softmax, norms and the GEMMs were checked the same way and agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch


class _RoundedSqrt(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            # numpy's sqrt is the IEEE square-root instruction: correctly rounded on every x86-64
            a = x.detach().contiguous().numpy()
            y = torch.from_numpy(np.sqrt(a, out=np.empty_like(a)))  # an array even for 0-d x
        else:
            y = torch.sqrt(x)  # CUDA's sqrt is correctly rounded; other dtypes are not pinned
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad / (2 * y)  # torch.sqrt's own derivative, from the same rounded root


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Elementwise square root, correctly rounded on the CPU (the same bits on every machine),
    with torch.sqrt's gradient grad / (2 sqrt(x)). Shape and dtype as `x`."""
    return _RoundedSqrt.apply(x)
