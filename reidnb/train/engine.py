"""One training and evaluation engine for every chapter.

`fit` runs epochs of an `Objective` (which batches to draw, and how one step turns a batch into named
losses), with SGD/Adam, step decay and warm-up, bf16 autocast on CUDA, a progress bar, a checkpoint
written atomically after every epoch, and resume from it. Randomness is drawn from generators seeded by
(seed, epoch), so a run that was killed and resumed ends with the same weights as one that was not.
`evaluate` extracts features (with flip averaging), computes distances and CMC/mAP.
"""

from __future__ import annotations

import math
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from ..data.cache import ImageCache
from ..data.transforms import normalize
from ..io import atomic_torch_save
from ..losses import pairwise_distances


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by all objectives (each field one documented choice)."""

    epochs: int = 10
    optimizer: str = "sgd"            # "sgd" | "adam"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_steps: tuple[int, ...] = ()    # epochs at which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    warmup_epochs: int = 0            # linear warm-up from lr/10 (Luo et al. 2019)
    amp: bool = True                  # bf16 autocast, only on CUDA
    seed: int = 0
    grad_clip: float | None = None
    channels_last: bool = False       # NHWC weights and activations, only on CUDA (tensor cores)
    compile: bool = False             # torch.compile the training model, only on CUDA


# Settings that change how fast a step runs, not what it computes: a checkpoint written with other
# values of these still resumes.
SPEED_FIELDS = ("channels_last", "compile")


class Objective(Protocol):
    """What a chapter supplies: the batches of an epoch, and one step's named losses."""

    def epoch_batches(self, rng: np.random.Generator) -> list[Any]: ...

    def step(self, model: nn.Module, batch: Any, gen: torch.Generator,
             device: torch.device) -> dict[str, torch.Tensor]: ...


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "host": platform.node()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose 'sgd' or 'adam'")


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate of an epoch (0-based): warm-up, then x lr_gamma at each of lr_steps."""
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.lr * (0.1 + 0.9 * epoch / cfg.warmup_epochs)
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= s for s in cfg.lr_steps)


def _epoch_generators(seed: int, epoch: int) -> tuple[np.random.Generator, torch.Generator]:
    rng = np.random.default_rng([seed, epoch])
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    torch.manual_seed(seed * 100_003 + epoch)  # dropout and other global-RNG users
    return rng, gen


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one dict of mean losses per epoch
    resumed_from: int | None = None
    wall_time_s: float = 0.0
    best_epoch: int | None = None      # lowest val_loss, when a validate function was given


def fit(model: nn.Module, objective: Objective, cfg: TrainConfig, run_dir: str | Path | None = None,
        device: str | torch.device = "cpu", progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None,
        validate: Callable[[nn.Module], dict[str, float]] | None = None) -> FitResult:
    """Train `model` for `cfg.epochs`; resume from `run_dir/checkpoint.pt` if it exists.

    The checkpoint holds the model, optimizer, history and the next epoch. It is replaced
    atomically at the end of each epoch, so killing the process at any moment loses at most the
    epoch in progress. A NaN/inf loss raises `NonFiniteLossError` naming the loss, epoch and step.

    `validate(model)` (optional) returns named validation numbers after each epoch, with
    "val_loss" among them; they join the epoch's history row, and the weights of the epoch with
    the lowest "val_loss" so far are written atomically to `run_dir/best.pt` (the tutorial's
    "keep the best model" loop, lakshmi Sec. "Create Training Loop").
    """
    device = torch.device(device)
    seed_everything(cfg.seed)
    model.to(device)
    if cfg.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    world, rank = distributed.world_size(), distributed.rank()
    is_main = rank == 0  # only rank 0 writes checkpoints, best.pt and (via on_epoch_end) records
    train_model = _training_model(model, cfg, device, world)
    opt = build_optimizer(model, cfg)
    result = FitResult()
    start_epoch = 0
    best = {"epoch": None, "val_loss": math.inf}
    ckpt_path = Path(run_dir) / "checkpoint.pt" if run_dir else None
    if ckpt_path and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        if _resume_config(state.get("train_config")) != _resume_config(asdict(cfg)):
            raise ValueError(f"{ckpt_path} was written with another configuration; remove it or "
                             "use another run folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch = state["next_epoch"]
        result.history = state["history"]
        result.resumed_from = start_epoch
        result.wall_time_s = state.get("wall_time_s", 0.0)
        best = state.get("best", best)
    use_amp = cfg.amp and device.type == "cuda"
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        rng, gen = _epoch_generators(cfg.seed, epoch)
        batches = objective.epoch_batches(rng)
        if not batches:
            raise ValueError("the objective produced no batch for an epoch (too few samples?)")
        if world > 1:  # every rank drew the same batches; each trains on its share of each
            batches = distributed.shard_epoch(batches, rank, world, _rows_per_identity(objective))
            rank_seed = np.random.SeedSequence([cfg.seed, epoch, rank]).generate_state(1)[0]
            gen.manual_seed(int(rank_seed))  # each rank its own augmentation draws
        sums: dict[str, float] = {}
        images = 0  # training images this epoch (a triplet counts three)
        model.train()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for step, batch in enumerate(bar):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                losses = objective.step(train_model, batch, gen, device)
            total = losses["loss"]
            if not torch.isfinite(distributed.all_reduce_mean(total.detach())):  # all ranks stop
                bad = {k: float(v.detach()) for k, v in losses.items()
                       if not math.isfinite(float(v.detach()))}
                raise NonFiniteLossError(
                    f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {bad}; lr={lr:g}. "
                    f"Last good checkpoint: {ckpt_path or 'none (no run_dir)'}. Lower the learning "
                    "rate or check the inputs.")
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            images += int(np.asarray(batch).size)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            if progress:
                bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        if world > 1:  # losses averaged over the ranks, as over the whole batch
            sums = dict(zip(sums, distributed.all_reduce_mean(
                torch.tensor(list(sums.values()), dtype=torch.float64, device=device)).tolist()))
        row = {"epoch": epoch + 1, "lr": lr, **{k: v / len(batches) for k, v in sums.items()},
               "images": images, "time_s": time.perf_counter() - t0}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in validate(model).items()})
            if "val_loss" not in row:
                raise KeyError("validate(model) must return a 'val_loss' entry")
            if row["val_loss"] < best["val_loss"]:
                best = {"epoch": epoch + 1, "val_loss": row["val_loss"]}
                if ckpt_path and is_main:
                    atomic_torch_save(ckpt_path.with_name("best.pt"),
                                      {"model": model.state_dict(), **best})
            row["best_epoch"] = best["epoch"]
        result.history.append(row)
        result.wall_time_s += row["time_s"]
        if ckpt_path and is_main:
            atomic_torch_save(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                          "next_epoch": epoch + 1, "history": result.history,
                                          "train_config": asdict(cfg), "best": best,
                                          "wall_time_s": result.wall_time_s})
        if on_epoch_end and is_main:
            on_epoch_end(epoch + 1, row)
        distributed.barrier()  # the other ranks read best.pt / the checkpoint only once written
    distributed.broadcast_buffers(model)  # every rank ends with rank 0's weights and statistics
    result.best_epoch = best["epoch"]
    return result


def _training_model(model: nn.Module, cfg: TrainConfig, device: torch.device,
                    world: int) -> nn.Module:
    """The module the steps call: `model` itself, wrapped in DistributedDataParallel under
    torchrun, then compiled when asked on CUDA. Checkpoints always hold `model`'s own weights."""
    wrapped = model
    if world > 1:
        # static_graph: every step uses the same parameters, which lets a loss leave a head
        # unused (triplet-only training leaves the classifier out) without a graph search per
        # step; buffers (BN statistics) are broadcast from rank 0 before each forward.
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            static_graph=True)
    if cfg.compile and device.type == "cuda":
        wrapped = torch.compile(wrapped)
    return wrapped


def _rows_per_identity(objective: Objective) -> int:
    """K for P x K batches (split between ranks by whole identities), else 1."""
    return int(objective.num_instances) if getattr(objective, "sampler", None) == "pk" else 1


def _resume_config(train_config: dict | None) -> dict | None:
    """A saved TrainConfig without the speed-only settings (older checkpoints lack them)."""
    if train_config is None:
        return None
    return {k: v for k, v in train_config.items() if k not in SPEED_FIELDS}


@torch.no_grad()
def extract_features(model: nn.Module, cache: ImageCache, device: str | torch.device = "cpu",
                     batch_size: int = 128, flip: bool = True, which: str = "feat_bn",
                     amp: bool = True) -> torch.Tensor:
    """Embeddings (N, D) of every cached image, averaged with the left-right flip when `flip`."""
    device = torch.device(device)
    model.eval().to(device)
    use_amp = amp and device.type == "cuda"
    images = cache.images
    if distributed.is_distributed():  # each rank embeds every W-th image; gathered below
        images = images[distributed.rank()::distributed.world_size()]
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            f = getattr(model(x), which).float()
            if flip:
                f = (f + getattr(model(x.flip(-1)), which).float()) / 2
        out.append(f)
    return distributed.gather_rows(torch.cat(out), len(cache))


def compute_distmat(qf: torch.Tensor, gf: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """Query x gallery distances: 'euclidean', or 'cosine' (1 - cosine similarity)."""
    if metric == "euclidean":
        return pairwise_distances(qf, gf)
    if metric == "cosine":
        qn, gn = nn.functional.normalize(qf, dim=1), nn.functional.normalize(gf, dim=1)
        return 1 - qn @ gn.t()
    raise ValueError(f"unknown metric {metric!r}; choose 'euclidean' or 'cosine'")


@dataclass
class EvalResult:
    """CMC (fractions, ranks 1..max_rank), mAP, and the named ranks the claims ledger uses."""

    cmc: np.ndarray
    mAP: float
    protocol: str = "single_query"

    def metrics(self) -> dict[str, float]:
        """Percentages keyed as in the claims ledger: rank1, rank5, rank10, rank20, mAP."""
        out = {f"rank{k}": 100.0 * float(self.cmc[k - 1]) for k in (1, 5, 10, 20)
               if k <= len(self.cmc)}
        out["mAP"] = 100.0 * self.mAP
        return out


def evaluate(model: nn.Module, query: ImageCache, gallery: ImageCache,
             device: str | torch.device = "cpu", flip: bool = True, metric: str = "euclidean",
             which: str = "feat_bn", rerank: bool = False, max_rank: int = 50,
             ap: str = "standard", return_distmat: bool = False):
    """Single-query Market-1501 protocol (optionally + k-reciprocal re-ranking)."""
    from ..metrics import evaluate_rank

    qf = extract_features(model, query, device, flip=flip, which=which)
    gf = extract_features(model, gallery, device, flip=flip, which=which)
    distmat = compute_distmat(qf, gf, metric)
    protocol = "single_query"
    if rerank:
        from ..metrics import re_ranking

        distmat = torch.as_tensor(re_ranking(distmat, compute_distmat(qf, qf, metric),
                                             compute_distmat(gf, gf, metric)),
                                  device=distmat.device)
        protocol = "rerank"
    max_rank = min(max_rank, len(gallery))
    # features, distances, re-ranking and ranking stay on the features' device (the GPU on CUDA);
    # only the CMC curve and mAP come back
    dev = distmat.device
    cmc, mAP = evaluate_rank(distmat, query.pids.to(dev), gallery.pids.to(dev),
                             query.camids.to(dev), gallery.camids.to(dev), max_rank=max_rank, ap=ap)
    res = EvalResult(np.asarray(cmc), float(mAP), protocol)
    return (res, distmat.cpu().numpy()) if return_distmat else res
