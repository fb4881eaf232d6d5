"""Grad-CAM that can be trained through, and channel-pooled activation maps.

Grad-CAM (Selvaraju et al., ICCV 2017, Eqs. 1-2): for a score y and the activation A (B, K, h, w) of
a chosen layer, the channel weights are the spatial mean of dy/dA (Eq. 1) and the map is
ReLU(sum_k w_k A_k) (Eq. 2).

CASN (Zheng et al., CVPR 2019) uses such maps inside its training objective:
- Sec. 3.1.2: M_n is the Grad-CAM of the true identity c_n (here `target=pids`); the soft mask
  sigmoid(alpha (M_n - beta)) and the loss L_ia of Eq. 2 are built from it, so the map must carry
  gradients to the parameters (`create_graph=True`).
- Sec. 3.2.2: the Siamese maps M_1, M_2 use the scores s_i = <alpha, f_i>, alpha being the
  indicator of Eq. 4; here that is `use_logits=False` with `score_fn=feature_score_fn(alpha)`.
The paper states no scaling of M_n before the fixed threshold beta; `normalize_maps` (per-image
min-max, differentiable) is offered and `grad_cam(..., normalize=True)` applies it. Which one the
CASN loss uses is a choice recorded there, not something the paper settles.

Gradients are taken with `torch.autograd.grad` on the hooked activation (no backward hooks), so
the model's `.grad` fields are never touched and the call can sit inside a loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ScoreFn = Callable[[Any], torch.Tensor]


def _get_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule named `layer`, or a ValueError listing a few valid names."""
    try:
        return model.get_submodule(layer)
    except AttributeError as err:
        names = [n for n, _ in model.named_modules() if n]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(
            f"reidnb.cam: model {type(model).__name__} has no submodule {layer!r}; "
            f"expected a dotted name such as one of: {shown}"
        ) from err


class _ActivationCatcher:
    """Forward hook that keeps the output of one module call (and refuses a second call)."""

    def __init__(self, layer: str, need_grad: bool):
        self.layer = layer
        self.need_grad = need_grad
        self.act: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            got = type(output).__name__ if not isinstance(output, torch.Tensor) else output.shape
            raise ValueError(
                f"reidnb.cam: layer {self.layer!r} must output a (B, C, h, w) tensor, got {got}"
            )
        if self.act is not None:
            raise ValueError(
                f"reidnb.cam: layer {self.layer!r} ran more than once in one forward pass; "
                "Grad-CAM needs a layer that runs exactly once per batch"
            )
        if self.need_grad and not output.requires_grad:
            # Frozen trunk or plain inputs: make the activation a leaf so dy/dA still exists.
            output = output.detach().requires_grad_(True)
        self.act = output
        # Pass on a copy, so an in-place op downstream (ReLU(inplace=True)) cannot change A.
        return output.clone()


def _run_hooked(
    model: nn.Module, images: torch.Tensor, layer: str, need_grad: bool
) -> tuple[Any, torch.Tensor]:
    """Forward `images` with a hook on `layer`; the hook is removed whatever happens."""
    catcher = _ActivationCatcher(layer, need_grad)
    handle = _get_layer(model, layer).register_forward_hook(catcher)
    try:
        output = model(images)
    finally:
        handle.remove()
    if catcher.act is None:
        raise ValueError(f"reidnb.cam: layer {layer!r} was not called during model.forward")
    return output, catcher.act


def _logits_of(output: Any) -> torch.Tensor:
    """Identity logits from a ReIDOutput (or a bare logits tensor)."""
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if logits is None:
        raise ValueError(
            "reidnb.cam: use_logits=True needs a model whose output has .logits (B, num_classes); "
            "this model has none - pass use_logits=False and a score_fn"
        )
    if logits.dim() != 2:
        raise ValueError(f"reidnb.cam: expected logits of shape (B, C), got {tuple(logits.shape)}")
    return logits


def _target_scores(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Per-image logit of the target class (default: the arg-max class)."""
    b, c = logits.shape
    if target is None:
        idx = logits.detach().argmax(dim=1)
    elif isinstance(target, int):
        idx = torch.full((b,), target, dtype=torch.long, device=logits.device)
    else:
        idx = torch.as_tensor(target, device=logits.device).long().reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(b)
        if idx.shape != (b,):
            raise ValueError(
                f"reidnb.cam: target must be an int or a (B,)={b} tensor of class ids, "
                f"got shape {tuple(idx.shape)}"
            )
    if bool(((idx < 0) | (idx >= c)).any()):
        raise ValueError(f"reidnb.cam: target class ids must lie in [0, {c}), got {idx.tolist()}")
    return logits.gather(1, idx[:, None]).squeeze(1)


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    target: int | torch.Tensor | None = None,
    create_graph: bool = False,
    use_logits: bool = True,
    score_fn: ScoreFn | None = None,
    normalize: bool = False,
    return_output: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Any]:
    """Grad-CAM maps (B, h, w) at the resolution of `layer` (Selvaraju et al. 2017, Eqs. 1-2).

    target: class per image (int, (B,) LongTensor such as the pids, or None for the arg-max);
        used when `use_logits` is True.
    score_fn: with `use_logits=False`, maps the model output to a (B,) score to explain.
    create_graph: keep the graph so the maps are differentiable w.r.t. the parameters (CASN);
        otherwise the maps are detached.
    normalize: apply `normalize_maps` (per-image min-max to [0, 1]).
    return_output: also return the model output of the same forward pass (saves a second pass
        inside a training loss).

    The model's train/eval mode is left as it is. In train mode BatchNorm mixes the images of a
    batch, so the per-image score's gradient also reaches other images' activations; like common
    Grad-CAM code, the gradient of the summed scores is used.
    """
    if not use_logits and score_fn is None:
        raise ValueError("reidnb.cam: use_logits=False needs score_fn(output) -> (B,) tensor")
    if images.dim() != 4:
        raise ValueError(f"reidnb.cam: images must be (B, 3, H, W), got {tuple(images.shape)}")
    with torch.enable_grad():
        output, act = _run_hooked(model, images, layer, need_grad=True)
        if use_logits:
            scores = _target_scores(_logits_of(output), target)
        else:
            scores = score_fn(output)  # type: ignore[misc]
            if not isinstance(scores, torch.Tensor) or scores.shape != (images.shape[0],):
                got = getattr(scores, "shape", type(scores).__name__)
                raise ValueError(
                    f"reidnb.cam: score_fn must return a ({images.shape[0]},) tensor, got {got}"
                )
        grads = None
        if scores.requires_grad:
            (grads,) = torch.autograd.grad(
                scores.sum(), act, create_graph=create_graph, retain_graph=create_graph,
                allow_unused=True,
            )
        if grads is None:
            raise ValueError(f"reidnb.cam: the score does not depend on layer {layer!r}")
        if not create_graph:
            act = act.detach()
        weights = grads.mean(dim=(2, 3), keepdim=True)
        maps = F.relu((weights * act).sum(dim=1))
    if normalize:
        maps = normalize_maps(maps)
    return (maps, output) if return_output else maps


def feature_score_fn(weights: torch.Tensor, which: str = "feat") -> ScoreFn:
    """score_fn giving s = <weights, f> per image (CASN Sec. 3.2.2, s_i = (alpha, f_i)).

    weights: (D,) or (B, D), e.g. the indicator alpha of CASN Eq. 4 (detached).
    which: output field holding f, "feat" (before the BN neck) or "feat_bn".
    """
    if which not in ("feat", "feat_bn"):
        raise ValueError(f"reidnb.cam: which must be 'feat' or 'feat_bn', got {which!r}")
    w = weights.detach()

    def score(output: Any) -> torch.Tensor:
        return (getattr(output, which) * w).sum(dim=1)

    return score


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, h, w) maps to (B, H, W) (`size` = (H, W) or an int)."""
    if maps.dim() != 3:
        raise ValueError(f"reidnb.cam: maps must be (B, h, w), got {tuple(maps.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    up = F.interpolate(maps[:, None].float(), size=hw, mode="bilinear", align_corners=False)
    return up[:, 0]


def normalize_maps(maps: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1]; a flat map becomes zeros. Differentiable, NaN-free."""
    if maps.dim() < 2:
        raise ValueError(f"reidnb.cam: maps must be (B, ...), got {tuple(maps.shape)}")
    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - lo
    keep = (span > eps).to(maps.dtype)
    out = (flat - lo) / span.clamp_min(eps) * keep
    return out.reshape(maps.shape)


def activation_map(
    model: nn.Module, images: torch.Tensor, layer: str, p: float = 2.0
) -> torch.Tensor:
    """Channel mean of |A|^p at `layer`, (B, h, w), without gradients.

    This is the activation-based attention map of Zagoruyko & Komodakis (ICLR 2017, Sec. 3.1,
    F^p_sum with p=2, divided by the channel count). jeong2020 (Figs. 1 and 5) plot "activation
    maps" without defining them; this is the reading used here. The model's mode is left as it
    is: call `model.eval()` first, since a train-mode forward updates BatchNorm statistics.
    """
    if images.dim() != 4:
        raise ValueError(f"reidnb.cam: images must be (B, 3, H, W), got {tuple(images.shape)}")
    with torch.no_grad():
        _, act = _run_hooked(model, images, layer, need_grad=False)
        return act.abs().pow(p).mean(dim=1)
