"""Training objectives: which batches an epoch draws and how a step turns a batch into losses.

Each objective returns a dict of named scalar tensors with the total under "loss"; the engine logs
every entry per epoch. Chapters add their own (jeong2020's identification + verification +
uniformity, CASN's attention losses) by following the same two-method shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import losses
from .data.cache import ImageCache
from .data.samplers import identity_batches, shuffled_batches, triplet_indices
from .data.transforms import BatchAugment


def _batch(cache: ImageCache, idx, augment: BatchAugment, gen: torch.Generator,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    images = augment(cache.images[idx.to(cache.images.device)], gen).to(device)
    return images, cache.pids[idx.to(cache.pids.device)].to(device)


@dataclass
class IdentityObjective:
    """Identity classification (IDE), optionally with batch-hard triplet (li2019 Eq. 8).

    sampler="random": shuffled batches of `batch_size`; sampler="pk": P identities x K images.
    """

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    sampler: str = "random"
    batch_size: int = 32
    num_identities: int = 8
    num_instances: int = 4
    label_smoothing: float = 0.0
    triplet_weight: float = 0.0
    triplet_margin: float | None = 0.3

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        if self.sampler == "random":
            return shuffled_batches(len(self.cache), self.batch_size, rng)
        if self.sampler == "pk":
            return identity_batches(self.cache.pids.cpu().numpy(), self.num_identities,
                                    self.num_instances, rng)
        raise ValueError(f"unknown sampler {self.sampler!r}; choose 'random' or 'pk'")

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        images, pids = _batch(self.cache, batch, self.augment, gen, device)
        out = model(images)
        loss_id = losses.cross_entropy(out.logits.float(), pids, self.label_smoothing)
        result = {"loss_id": loss_id}
        total = loss_id
        if self.triplet_weight > 0:
            loss_tri = losses.batch_hard_triplet(out.feat.float(), pids, self.triplet_margin)
            result["loss_triplet"] = loss_tri
            total = total + self.triplet_weight * loss_tri
        result["acc"] = (out.logits.argmax(1) == pids).float().mean().detach()
        result["loss"] = total
        return result


@dataclass
class TripletObjective:
    """Anchor / positive / negative triplets drawn at random (the lakshmi tutorial's APN set)."""

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    batch_size: int = 32
    margin: float = 1.0
    cross_camera: bool = True

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        trip = triplet_indices(self.cache.pids.cpu().numpy(), self.cache.camids.cpu().numpy(), rng,
                               cross_camera=self.cross_camera)
        order = rng.permutation(len(trip))
        stop = (len(trip) // self.batch_size) * self.batch_size
        return [trip[order[i:i + self.batch_size]] for i in range(0, stop, self.batch_size)]

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        flat = np.asarray(batch).T.reshape(-1)  # anchors, then positives, then negatives
        images, _ = _batch(self.cache, flat, self.augment, gen, device)
        feat = model(images).feat.float()
        a, p, n = feat.chunk(3)
        loss = losses.triplet_margin(a, p, n, self.margin)
        return {"loss_triplet": loss, "loss": loss}
