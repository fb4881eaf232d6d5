"""reidnb's device pipeline against the classic one it replaces (per-image torchvision transforms,
a DataLoader over the same indices), and the speed-only training options."""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import nn
from torch.utils.data import DataLoader, Dataset

from reidnb.data.cache import ImageCache
from reidnb.data.samplers import identity_batches, shuffled_batches
from reidnb.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, BatchAugment, erase, normalize,
                                    sample_erase_boxes)
from reidnb.train.engine import SPEED_FIELDS, TrainConfig, fit
from reidnb.models.heads import ReIDOutput
from reidnb.train.objectives import IdentityObjective, TripletObjective


def _cache(ids: int = 6, per_id: int = 4, h: int = 16, w: int = 8) -> ImageCache:
    gen = torch.Generator().manual_seed(1)
    n = ids * per_id
    images = torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)
    return ImageCache(images, torch.arange(ids).repeat_interleave(per_id), torch.arange(n) % 3,
                      [f"{i}.jpg" for i in range(n)])


class PerImage(Dataset):
    """The classic pipeline's dataset: one (image, pid) per index, read one at a time."""

    def __init__(self, cache: ImageCache):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int):
        return self.cache.images[i], int(self.cache.pids[i])


def test_pk_sampler_gives_the_same_identities_to_either_pipeline():
    cache = _cache()
    objective = IdentityObjective(cache, sampler="pk", num_identities=3, num_instances=2)
    ours = [cache.pids[torch.as_tensor(b)] for b in objective.epoch_batches(
        np.random.default_rng(7))]
    batches = identity_batches(cache.pids.numpy(), 3, 2, np.random.default_rng(7))
    loader = DataLoader(PerImage(cache), batch_sampler=[b.tolist() for b in batches])
    theirs = [pids for _, pids in loader]
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
        assert len(set(a.tolist())) == 3


def test_random_and_triplet_samplers_give_the_same_images_to_either_pipeline():
    cache = _cache()
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    ours = IdentityObjective(cache, batch_size=5).epoch_batches(rng_a)
    loader = DataLoader(PerImage(cache), batch_sampler=[b.tolist() for b in
                                                        shuffled_batches(len(cache), 5, rng_b)])
    for idx, (images, pids) in zip(ours, loader, strict=True):
        assert torch.equal(cache.images[torch.as_tensor(idx)], images)
        assert torch.equal(cache.pids[torch.as_tensor(idx)], pids)
    trip = TripletObjective(cache, batch_size=4).epoch_batches(np.random.default_rng(5))
    again = TripletObjective(cache, batch_size=4).epoch_batches(np.random.default_rng(5))
    assert all(np.array_equal(a, b) for a, b in zip(trip, again, strict=True))
    for b in trip:  # anchor and positive share an identity, the negative does not
        pids = cache.pids.numpy()[b]
        assert (pids[:, 0] == pids[:, 1]).all() and (pids[:, 0] != pids[:, 2]).all()


def test_normalize_matches_torchvision_per_image():
    images = _cache().images[:4]
    ours = normalize(images)
    for i in range(4):
        ref = TF.normalize(TF.to_dtype(images[i], torch.float32, scale=True),
                           list(IMAGENET_MEAN), list(IMAGENET_STD))
        assert torch.allclose(ours[i], ref, atol=1e-6)


def test_erase_matches_torchvision_for_every_image_and_value():
    x = normalize(_cache().images[:3])
    boxes = torch.tensor([[2, 1, 5, 3], [0, 0, 16, 8], [15, 7, 1, 1]])
    out = erase(x, boxes, 0.5)
    for i in range(3):
        top, left, h, w = boxes[i].tolist()
        assert torch.equal(out[i], TF.erase(x[i], top, left, h, w, torch.tensor(0.5)))


def test_batch_augment_matches_the_per_image_torchvision_recipe():
    """BatchAugment with the parameters it drew (replayed from the same generator, in its order:
    flip flags, crop offsets, erase boxes) equals flip -> pad -> crop -> to float -> normalise ->
    erase applied image by image with torchvision."""
    images = _cache(ids=4, per_id=4, h=32, w=16).images
    aug = BatchAugment(flip_p=0.5, pad=3, erasing_p=0.7)
    out = aug(images, torch.Generator().manual_seed(11))
    gen = torch.Generator().manual_seed(11)
    b, _, h, w = images.shape
    flags = torch.rand(b, generator=gen) < aug.flip_p
    offsets = torch.randint(0, 2 * aug.pad + 1, (b, 2), generator=gen)
    boxes = sample_erase_boxes(b, h, w, aug.erasing_p, gen)
    assert flags.any() and not flags.all() and (boxes[:, 2] > 0).any()  # both branches seen
    for i in range(b):
        x = TF.horizontal_flip(images[i]) if flags[i] else images[i]
        x = TF.crop(TF.pad(x, [aug.pad] * 4), int(offsets[i, 0]), int(offsets[i, 1]), h, w)
        x = TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(IMAGENET_MEAN),
                         list(IMAGENET_STD))
        top, left, eh, ew = boxes[i].tolist()
        if eh:
            x = TF.erase(x, top, left, eh, ew, torch.tensor(0.0))
        assert torch.allclose(out[i], x, atol=1e-6), i


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 6):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        return ReIDOutput(self.fc(f), f, f, {})


def _train(cfg: TrainConfig, run_dir=None) -> nn.Module:
    torch.manual_seed(0)
    model = _Tiny()
    fit(model, IdentityObjective(_cache(), batch_size=8), cfg, run_dir, progress=False)
    return model


def test_speed_options_change_nothing_on_cpu():
    """channels_last and compile apply on CUDA only: on CPU the weights are bit-for-bit those of
    a run without them."""
    plain = _train(TrainConfig(epochs=1))
    fast = _train(TrainConfig(epochs=1, channels_last=True, compile=True))
    for a, b in zip(plain.parameters(), fast.parameters(), strict=True):
        assert torch.equal(a, b)
    assert set(SPEED_FIELDS) == {"channels_last", "compile"}


class _Stop(Exception):
    pass


def _stop(epoch: int, row: dict) -> None:
    raise _Stop


def test_checkpoint_from_before_the_speed_options_still_resumes(tmp_path):
    torch.manual_seed(0)
    try:  # stopped after epoch 1 of 2
        fit(_Tiny(), IdentityObjective(_cache(), batch_size=8), TrainConfig(epochs=2), tmp_path,
            progress=False, on_epoch_end=_stop)
    except _Stop:
        pass
    ckpt = tmp_path / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=False)
    for name in SPEED_FIELDS:  # as the engine wrote it before these fields existed
        del state["train_config"][name]
    torch.save(state, ckpt)
    res = fit(_Tiny(), IdentityObjective(_cache(), batch_size=8),
              TrainConfig(epochs=2, channels_last=True), tmp_path, progress=False)
    assert res.resumed_from == 1 and len(res.history) == 2
