"""Batched image augmentation on uint8 tensors (the usual re-ID recipe, done on a whole batch).

Each op draws its random parameters from a `torch.Generator` so a run is repeatable, and the
parameters can also be passed in explicitly, which is how the tests compare them with per-image
reference transforms. Recipe: horizontal flip, zero-pad + random crop, normalise, random erasing
(Zhong et al. 2020, "Random Erasing Data Augmentation").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,3,H,W) -> float32 normalised with the ImageNet mean and std."""
    x = images.float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def hflip(images: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Flip left-right the images whose flag is True."""
    out = images.clone()
    if flags.any():
        out[flags] = images[flags].flip(-1)
    return out


def pad_crop(images: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad by `pad` pixels, then crop back to HxW at per-image (top, left) `offsets` (B,2)."""
    if pad == 0:
        return images
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = offsets[:, 0].view(b, 1) + torch.arange(h, device=images.device).view(1, h)
    cols = offsets[:, 1].view(b, 1) + torch.arange(w, device=images.device).view(1, w)
    idx_b = torch.arange(b, device=images.device).view(b, 1, 1)
    # gather (B, H, W) pixels for every channel at once
    out = padded.permute(0, 2, 3, 1)[idx_b, rows.view(b, h, 1), cols.view(b, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def erase(images: torch.Tensor, boxes: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Fill per-image boxes (B,4: top, left, height, width; height 0 = no erase) with `value`."""
    b, _, h, w = images.shape
    ys = torch.arange(h, device=images.device).view(1, h, 1)
    xs = torch.arange(w, device=images.device).view(1, 1, w)
    top, left, bh, bw = (boxes[:, i].view(b, 1, 1) for i in range(4))
    mask = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw)
    return images.masked_fill(mask.unsqueeze(1), value)


def sample_erase_boxes(b: int, h: int, w: int, p: float, gen: torch.Generator,
                       area=(0.02, 0.4), ratio=(0.3, 3.3)) -> torch.Tensor:
    """Random-erasing boxes: with probability p a box of random area and aspect, else empty."""
    boxes = torch.zeros((b, 4), dtype=torch.long)
    do = torch.rand(b, generator=gen) < p
    for i in torch.nonzero(do).flatten().tolist():
        for _ in range(20):  # rejection sampling as in the original recipe
            target = float(torch.empty(1).uniform_(*area, generator=gen)) * h * w
            log_r = torch.empty(1).uniform_(torch.log(torch.tensor(ratio[0])).item(),
                                            torch.log(torch.tensor(ratio[1])).item(), generator=gen)
            aspect = float(torch.exp(log_r))
            eh = int(round((target * aspect) ** 0.5))
            ew = int(round((target / aspect) ** 0.5))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (1,), generator=gen))
                left = int(torch.randint(0, w - ew + 1, (1,), generator=gen))
                boxes[i] = torch.tensor([top, left, eh, ew])
                break
    return boxes


@dataclass
class BatchAugment:
    """Training augmentation for a uint8 batch; returns a normalised float batch."""

    flip_p: float = 0.5
    pad: int = 10
    erasing_p: float = 0.5

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, h, w = images.shape
        dev = images.device
        flags = (torch.rand(b, generator=gen) < self.flip_p).to(dev)
        x = hflip(images, flags)
        if self.pad:
            offsets = torch.randint(0, 2 * self.pad + 1, (b, 2), generator=gen).to(dev)
            x = pad_crop(x, self.pad, offsets)
        x = normalize(x)
        if self.erasing_p > 0:
            boxes = sample_erase_boxes(b, h, w, self.erasing_p, gen).to(dev)
            x = erase(x, boxes, 0.0)
        return x
