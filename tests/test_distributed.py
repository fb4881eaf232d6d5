"""Training under several processes (DistributedDataParallel, gloo on CPU): the P x K batch is split
between ranks by whole identities, the ranks' parameters stay identical, only rank 0 writes, and a
run interrupted after an epoch resumes to the same weights."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from reidnb.train import distributed
from reidnb.data.cache import ImageCache
from reidnb.data.samplers import identity_batches
from reidnb.data.transforms import BatchAugment
from reidnb.train.engine import TrainConfig, _epoch_generators, fit
from reidnb.models.heads import ReIDOutput
from reidnb.train.objectives import IdentityObjective

WORLD = 2
P, K, IDS, PER_ID = 4, 2, 8, 3
CFG = TrainConfig(epochs=2, lr=0.05, seed=3)


# --- the split itself (no processes) ------------------------------------------------------------

def test_shard_batch_gives_each_rank_whole_identities():
    pids = np.repeat(np.arange(6), 10)
    batch = identity_batches(pids, 6, 3, np.random.default_rng(0))[0]  # P=6 x K=3
    shares = [distributed.shard_batch(batch, r, 3, group=3) for r in range(3)]
    assert np.array_equal(np.concatenate(shares), batch)
    assert [len(s) for s in shares] == [6, 6, 6]
    ids = [set(pids[s].tolist()) for s in shares]
    assert all(len(a & b) == 0 for i, a in enumerate(ids) for b in ids[i + 1:])


def test_shard_batch_refuses_an_uneven_split():
    with pytest.raises(ValueError, match=r"5 identities \(P\) per batch cannot be split evenly "
                                         r"over 2 processes"):
        distributed.shard_batch(np.arange(10), 0, 2, group=2)
    with pytest.raises(ValueError, match="not made of groups of 4"):
        distributed.shard_batch(np.arange(10), 0, 2, group=4)


def test_single_process_helpers_are_no_ops():
    x = torch.arange(6.0).view(3, 2)
    assert not distributed.is_distributed() and distributed.world_size() == 1
    assert distributed.is_main() and distributed.rank() == 0
    assert distributed.gather_rows(x, 3) is x
    assert distributed.all_reduce_mean(x) is x


# --- two processes ------------------------------------------------------------------------------

class TinyNet(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.classifier = nn.Linear(8, num_classes)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        fb = self.bn(f)
        return ReIDOutput(self.classifier(fb), f, fb, {})


class Interrupted(RuntimeError):
    pass


@dataclass
class RecordingObjective(IdentityObjective):
    """The P x K identity objective, recording the batch each step got; it can stop the run when
    an epoch begins (on every rank at once, as a killed job would)."""

    stop_at_epoch: int | None = None

    def __post_init__(self):
        super().__post_init__()
        self.seen: list[list[int]] = []
        self.epochs_started = 0

    def epoch_batches(self, rng):
        self.epochs_started += 1
        if self.stop_at_epoch == self.epochs_started:
            raise Interrupted
        return super().epoch_batches(rng)

    def step(self, model, batch, gen, device):
        self.seen.append(np.asarray(batch).tolist())
        return super().step(model, batch, gen, device)


def _cache() -> ImageCache:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (IDS * PER_ID, 3, 16, 8), dtype=torch.uint8, generator=gen)
    pids = torch.arange(IDS).repeat_interleave(PER_ID)
    return ImageCache(images, pids, torch.arange(IDS * PER_ID) % 2,
                      [f"{i}.jpg" for i in range(IDS * PER_ID)])


def _objective(**kw) -> RecordingObjective:
    return RecordingObjective(_cache(), augment=BatchAugment(pad=1, erasing_p=0.5), sampler="pk",
                              num_identities=P, num_instances=K, triplet_weight=1.0, **kw)


def _model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(IDS)


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        # an uninterrupted run
        model, objective = _model(), _objective()
        fit(model, objective, CFG, os.path.join(out_dir, "full"), progress=False)
        # the same run, stopped when epoch 2 begins, then resumed from its checkpoint
        resumed_dir = os.path.join(out_dir, "resumed")
        try:
            fit(_model(), _objective(stop_at_epoch=2), CFG, resumed_dir, progress=False)
        except Interrupted:
            pass
        resumed = _model()
        res = fit(resumed, _objective(), CFG, resumed_dir, progress=False)
        feats = _gathered_features(model)
        torch.save({"params": {k: v.detach() for k, v in model.named_parameters()},
                    "state": model.state_dict(),
                    "resumed_params": {k: v.detach() for k, v in resumed.named_parameters()},
                    "resumed_from": res.resumed_from, "seen": objective.seen, "features": feats},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _gathered_features(model: nn.Module) -> torch.Tensor:
    from reidnb.train.engine import extract_features
    return extract_features(model, _cache(), flip=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def test_ranks_keep_identical_parameters(two_ranks):
    _, (r0, r1) = two_ranks
    assert r0["params"].keys() == r1["params"].keys()
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    start = _model().state_dict()
    assert not torch.equal(r0["params"]["conv.weight"], start["conv.weight"])  # it did train


def test_ranks_batches_form_the_single_process_pk_batch(two_ranks):
    _, (r0, r1) = two_ranks
    pids = _cache().pids.numpy()
    expected = []
    for epoch in range(CFG.epochs):
        rng, _ = _epoch_generators(CFG.seed, epoch)
        expected += _objective().epoch_batches(rng)
    assert len(r0["seen"]) == len(r1["seen"]) == len(expected) == CFG.epochs * (IDS // P)
    for a, b, whole in zip(r0["seen"], r1["seen"], expected):
        assert len(a) == len(b) == P * K // WORLD
        assert np.array_equal(np.concatenate([a, b]), whole)
        ids_a, ids_b = set(pids[a].tolist()), set(pids[b].tolist())
        assert not ids_a & ids_b                       # no identity drawn by both ranks
        assert len(ids_a | ids_b) == P                 # P identities in the step ...
        counts = np.unique(pids[np.concatenate([a, b])], return_counts=True)[1]
        assert (counts == K).all()                     # ... each with K images


def test_only_rank_zero_writes_and_resume_gives_the_same_weights(two_ranks):
    out, (r0, r1) = two_ranks
    assert (out / "full" / "checkpoint.pt").exists()
    state = torch.load(out / "full" / "checkpoint.pt", weights_only=False)
    for name, value in r0["params"].items():
        assert torch.equal(state["model"][name], value)
    assert r0["resumed_from"] == r1["resumed_from"] == 1
    for name in r0["params"]:
        assert torch.allclose(r0["resumed_params"][name], r0["params"][name], atol=1e-6), name
        assert torch.equal(r0["resumed_params"][name], r1["resumed_params"][name])


def test_ranks_end_with_rank_zeros_statistics(two_ranks):
    _, (r0, r1) = two_ranks
    for name, value in r0["state"].items():   # BatchNorm running statistics included
        assert torch.equal(value, r1["state"][name]), name


def test_features_are_gathered_in_image_order(two_ranks):
    from reidnb.train.engine import extract_features

    _, (r0, r1) = two_ranks
    model = _model()
    model.load_state_dict(r0["state"])
    alone = extract_features(model, _cache(), flip=False)  # one process, every image
    assert r0["features"].shape == alone.shape == (IDS * PER_ID, 8)
    assert torch.equal(r0["features"], r1["features"])
    assert torch.allclose(r0["features"], alone, atol=1e-6)
