"""Training objectives: which batches an epoch draws and how a step turns a batch into losses.

Each objective returns a dict of named scalar tensors with the total under "loss"; the engine logs
every entry per epoch. `validation_losses(model, cache, device)` scores held-out identities with the
objective's own metric loss on batches fixed once (no augmentation), for best-model selection. Chapters add their own (jeong2020's identification + verification +
uniformity, CASN's attention losses) by following the same two-method shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import losses
from ..data.cache import ImageCache
from ..data.samplers import identity_batches, shuffled_batches, triplet_indices
from ..data.transforms import BatchAugment, normalize


def _batch(cache: ImageCache, idx, augment: BatchAugment, gen: torch.Generator,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    images = augment(cache.images[idx.to(cache.images.device)], gen).to(device)
    return images, cache.pids[idx.to(cache.pids.device)].to(device)


@dataclass
class IdentityObjective:
    """Identity classification (IDE), optionally with batch-hard triplet (li2019 Eq. 8).

    sampler="random": shuffled batches of `batch_size`; sampler="pk": P identities x K images.
    `id_weight=0` with `triplet_weight>0` is batch-hard triplet alone (Hermans et al. 2017), for a
    model without a classifier.
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
    id_weight: float = 1.0

    def __post_init__(self):
        if self.id_weight <= 0 and self.triplet_weight <= 0:
            raise ValueError("IdentityObjective needs id_weight > 0 or triplet_weight > 0")

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
        result = {}
        total = 0.0
        if self.id_weight > 0:
            loss_id = losses.cross_entropy(out.logits.float(), pids, self.label_smoothing)
            result["loss_id"] = loss_id
            total = self.id_weight * loss_id
            result["acc"] = (out.logits.argmax(1) == pids).float().mean().detach()
        if self.triplet_weight > 0:
            loss_tri = losses.batch_hard_triplet(out.feat.float(), pids, self.triplet_margin)
            result["loss_triplet"] = loss_tri
            total = total + self.triplet_weight * loss_tri
        result["loss"] = total
        return result

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Batch-hard triplet loss on P x K batches of held-out identities (identities unseen in
        training, so the identity loss cannot be scored)."""
        if self.triplet_weight <= 0:
            raise ValueError("validation needs a metric loss: set triplet_weight > 0")
        batches = identity_batches(cache.pids.cpu().numpy(), min(self.num_identities,
                                   len(cache.pids.unique())), self.num_instances,
                                   np.random.default_rng(seed))
        vals = [losses.batch_hard_triplet(_embed(model, cache, b, device), cache.pids[b].to(device),
                                          self.triplet_margin) for b in batches]
        return {"val_loss": float(torch.stack(vals).mean())}


@dataclass
class TripletObjective:
    """Anchor / positive / negative triplets drawn at random (the lakshmi tutorial's APN set)."""

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    batch_size: int = 32
    margin: float = 1.0
    cross_camera: bool = True
    triplets_per_epoch: int | None = None   # None: every image is an anchor once per epoch

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n = len(self.cache)
        anchors = None
        if self.triplets_per_epoch is not None and self.triplets_per_epoch < n:
            anchors = np.sort(rng.choice(n, size=self.triplets_per_epoch, replace=False))
        trip = triplet_indices(self.cache.pids.cpu().numpy(), self.cache.camids.cpu().numpy(), rng,
                               anchors=anchors, cross_camera=self.cross_camera)
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

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Triplet loss on one fixed APN triplet per held-out image (drawn with `seed`)."""
        trip = triplet_indices(cache.pids.cpu().numpy(), cache.camids.cpu().numpy(),
                               np.random.default_rng(seed), cross_camera=self.cross_camera)
        vals = []
        for i in range(0, len(trip), 128):
            a, p, n = (_embed(model, cache, trip[i:i + 128, j], device) for j in range(3))
            vals.append(losses.triplet_margin(a, p, n, self.margin) * len(a))
        return {"val_loss": float(torch.stack(vals).sum() / len(trip))}


def _embed(model: nn.Module, cache: ImageCache, idx, device: torch.device) -> torch.Tensor:
    """Embeddings (`feat`) of cached images without augmentation."""
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return model(normalize(cache.images[idx].to(device))).feat.float()


@dataclass
class SiameseObjective:
    """jeong2020's training (Sec. 4.2, Eq. 9): L = w_id L_id + w_ver L_ver + w_unif L_unif.

    A batch is P anchors of P different identities (`num_identities`), each with a positive
    (another image of its identity, from another camera when there is one) and a negative (an
    image of another identity): 3P images. L_id is cross-entropy on all 3P images; L_ver is the
    two-way verification loss on the P (anchor, positive) pairs labelled "same" and the P
    (anchor, negative) pairs labelled "different" (the model's verification head, Eqs. 6-7,
    asked for through `model(images, pairs=...)`); L_unif is the
    uniformity loss on the attention scores extras["score"] (Eq. 8, `losses.uniformity`).
    An epoch draws `anchors_per_epoch` anchors (default: as many as training images), every
    identity once per round. `unif_weight=0` gives Table 5's "+AM" and baseline rows; the
    uniformity loss is then still reported, computed without gradient.
    """

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    num_identities: int = 16
    anchors_per_epoch: int | None = None
    cross_camera: bool = True
    id_weight: float = 1.0
    ver_weight: float = 1.0
    unif_weight: float = 1.0
    unif_margin: float = 1.0
    unif_form: str = "text"
    label_smoothing: float = 0.0
    val_triplets: int = 512

    def __post_init__(self):
        if self.unif_form not in losses.UNIFORMITY_FORMS:
            raise ValueError(f"SiameseObjective: unif_form={self.unif_form!r}; choose from "
                             f"{losses.UNIFORMITY_FORMS}")

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """(P, 3) anchor / positive / negative index arrays, P distinct identities each."""
        pids = self.cache.pids.cpu().numpy()
        target = self.anchors_per_epoch or len(pids)
        n_batches = max(1, target // self.num_identities)
        anchor_batches: list[np.ndarray] = []
        while len(anchor_batches) < n_batches:   # each round: every identity once
            anchor_batches += identity_batches(pids, self.num_identities, 1, rng)
        anchors = np.concatenate(anchor_batches[:n_batches])
        trip = triplet_indices(pids, self.cache.camids.cpu().numpy(), rng, anchors=anchors,
                               cross_camera=self.cross_camera)
        return list(trip.reshape(n_batches, self.num_identities, 3))

    @staticmethod
    def _pairs(num_triplets: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch positions of the (anchor, positive) then (anchor, negative) pairs."""
        a = torch.arange(num_triplets, device=device)
        return torch.cat([a, a]), torch.cat([a + num_triplets, a + 2 * num_triplets])

    def _losses(self, out, pids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        pair_logits = out.extras["pair_logits"].float()
        num = len(pair_logits) // 2
        same = torch.cat([torch.ones(num), torch.zeros(num)]).long().to(pair_logits.device)
        result = {"loss_ver": losses.verification(pair_logits, same),
                  "acc_ver": (pair_logits.argmax(1) == same).float().mean().detach()}
        scores = out.extras["score"].float()
        if self.unif_weight <= 0:
            scores = scores.detach()
        result["loss_unif"] = losses.uniformity(*scores.chunk(3), margin=self.unif_margin,
                                                form=self.unif_form)
        if pids is not None:
            result["loss_id"] = losses.cross_entropy(out.logits.float(), pids,
                                                     self.label_smoothing)
            result["acc"] = (out.logits.argmax(1) == pids).float().mean().detach()
        return result

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        flat = np.asarray(batch).T.reshape(-1)  # anchors, then positives, then negatives
        images, pids = _batch(self.cache, flat, self.augment, gen, device)
        out = model(images, pairs=self._pairs(len(flat) // 3, images.device))
        result = self._losses(out, pids)
        total = self.id_weight * result["loss_id"] + self.ver_weight * result["loss_ver"]
        if self.unif_weight > 0:
            total = total + self.unif_weight * result["loss_unif"]
        result["loss"] = total
        return result

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Verification (+ weighted uniformity) loss on up to `val_triplets` fixed triplets of
        held-out identities (their identity loss cannot be scored)."""
        rng = np.random.default_rng(seed)
        n = len(cache)
        anchors = np.sort(rng.choice(n, size=min(n, self.val_triplets), replace=False))
        trip = triplet_indices(cache.pids.cpu().numpy(), cache.camids.cpu().numpy(), rng,
                               anchors=anchors, cross_camera=self.cross_camera)
        sums, count = {"val_ver": 0.0, "val_unif": 0.0}, 0
        for i in range(0, len(trip), 128):
            chunk = trip[i:i + 128]
            idx = torch.as_tensor(chunk.T.reshape(-1))
            out = model(normalize(cache.images[idx].to(device)),
                        pairs=self._pairs(len(chunk), device))
            part = self._losses(out, None)
            sums["val_ver"] += float(part["loss_ver"]) * len(chunk)
            sums["val_unif"] += float(part["loss_unif"]) * len(chunk)
            count += len(chunk)
        result = {k: v / count for k, v in sums.items()}
        result["val_loss"] = (self.ver_weight * result["val_ver"]
                              + max(self.unif_weight, 0.0) * result["val_unif"])
        return result
