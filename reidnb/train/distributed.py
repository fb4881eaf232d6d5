"""Several processes, one model: the helpers `fit` and `evaluate` use under `torchrun`.

`torchrun --nproc_per_node N -m reidnb run ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR/PORT set. Every rank draws the same epoch of batches from the same
seeded generator; each then trains on its own share of every step's batch (`shard_batch`): for
P x K batches a share is whole identities, so no identity is split between ranks and the ranks'
shares put back together are the single-process batch. Gradients are averaged by
DistributedDataParallel. Without these variables (or with WORLD_SIZE=1) every helper is a
no-op and the code runs as one process.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment variables, once.

    Returns True when running with more than one process. The backend defaults to NCCL when CUDA
    is available, else gloo (CPU).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend)
    return dist.get_world_size() > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the process that writes checkpoints and run records (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for_rank(device: torch.device) -> torch.device:
    """`cuda` without an index means this process's GPU (`cuda:LOCAL_RANK`) under torchrun."""
    if device.type == "cuda" and device.index is None and is_distributed():
        return torch.device("cuda", local_rank())
    return device


def shard_batch(batch, rank: int, world_size: int, group: int = 1) -> np.ndarray:
    """This rank's share of one step's batch (rows of `batch`), in whole groups of `group` rows.

    For a P x K batch (`identity_batches`: K consecutive rows per identity) pass `group=K`: rank r
    gets identities r*P/W ... (r+1)*P/W - 1, so the ranks' identities are disjoint. The number of
    groups must divide evenly among the ranks, so every rank takes the same number of steps.
    """
    batch = np.asarray(batch)
    if len(batch) % group:
        raise ValueError(f"a batch of {len(batch)} rows is not made of groups of {group}")
    groups = len(batch) // group
    if groups % world_size:
        what = "identities (P)" if group > 1 else "images (batch_size)"
        raise ValueError(f"{groups} {what} per batch cannot be split evenly over {world_size} "
                         f"processes; choose a multiple of {world_size}")
    share = groups // world_size * group
    return batch[rank * share:(rank + 1) * share]


def shard_epoch(batches: list, rank: int, world_size: int, group: int = 1) -> list[np.ndarray]:
    """`shard_batch` applied to every step of an epoch."""
    return [shard_batch(b, rank, world_size, group) for b in batches]


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over the ranks (itself in a single process)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / world_size()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP does this before each training forward, but the last step leaves each rank with its own
    statistics; after training the ranks' models are made identical again (and equal to rank 0's
    checkpoint) so that features extracted on different ranks agree.
    """
    if is_distributed():
        for buf in model.buffers():
            dist.broadcast(buf, 0)


def gather_rows(local: torch.Tensor, total: int) -> torch.Tensor:
    """Put back together rows that were split round-robin: rank r held rows r, r+W, r+2W, ...

    Every rank gets the full (total, ...) tensor (all-gather; the shares are padded to one length
    because they may differ by one row). Used to gather features extracted on each rank's share
    of the query and gallery images.
    """
    if not is_distributed():
        return local
    w = world_size()
    longest = -(-total // w)
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    out = local.new_empty((total, *local.shape[1:]))
    for r, part in enumerate(parts):
        n = len(range(r, total, w))
        out[r::w] = part[:n]
    return out
