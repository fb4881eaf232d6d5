"""One training and evaluation engine for every chapter.

`fit` runs epochs of an `Objective` (which batches to draw, and how one step turns a batch into named
losses), with SGD/Adam, step decay and warm-up, bf16 autocast on CUDA, a progress bar, a checkpoint
written atomically after every epoch, and resume from it. Randomness is drawn from generators seeded by
(seed, epoch), so a run that was killed and resumed ends with the same weights as one that was not.
`evaluate` extracts features (with flip averaging), computes distances and CMC/mAP.

Divergence: every step's loss, and after every epoch (before anything is written) every weight,
buffer (BatchNorm running statistics) and optimizer state, is checked for NaN/inf by reading it
only (no random draw, no change to any operation), so a run that diverges stops at once with a
`TrainingDivergedError` naming the step, the values, the learning rate and the newest checkpoint
whose every tensor is finite; a checkpoint with a non-finite tensor is never written.
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


class TrainingDivergedError(RuntimeError):
    """Training diverged (a NaN/inf loss, weight, BatchNorm statistic, optimizer state or feature).

    The run stopped at once; `details` (epoch, step, lr, the values, the newest finite checkpoint)
    is what `run_experiment` writes into the failed run record.
    """

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details


class NonFiniteLossError(TrainingDivergedError):
    """A loss became NaN or infinite; the run stops and keeps its newest finite checkpoint."""


class NonFiniteStateError(TrainingDivergedError):
    """A weight, buffer (BatchNorm running statistics) or optimizer state became NaN or infinite,
    or a checkpoint to resume from holds such a value."""


class NonFiniteFeaturesError(TrainingDivergedError):
    """A trained model's features or distances are NaN or infinite (it diverged without a
    non-finite loss or weight, e.g. weights too large for float32 distances)."""


class CheckpointUnreadableError(RuntimeError):
    """A checkpoint cannot be read (truncated, damaged or not a reidnb checkpoint)."""


#: what a message tells a user to do with a damaged run folder
FORCE_REMEDY = ("retrain from scratch with `reidnb run NAME --force` (run_experiment(..., "
                "force=True)), which keeps the old run folder aside until the new run has finished")


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
    # lr of the layers a paper adds (every parameter outside `model.backbone`) as a multiple of
    # lr: the new-layer rate of re-ID baselines (IDE: 10x); 1.0 is one rate for all
    new_lr_mult: float = 1.0


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


def _param_groups(model: nn.Module, cfg: TrainConfig
                  ) -> list[tuple[float, list[tuple[str, nn.Parameter]]]]:
    """(lr multiple, named trainable parameters) per optimizer group: one group, or with
    `cfg.new_lr_mult != 1` the trunk (`backbone.*`) then the new layers."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.new_lr_mult == 1.0:
        return [(1.0, named)]
    if cfg.new_lr_mult <= 0:
        raise ValueError(f"new_lr_mult={cfg.new_lr_mult}: must be > 0")
    trunk = [(n, p) for n, p in named if n.startswith("backbone.")]
    new = [(n, p) for n, p in named if not n.startswith("backbone.")]
    if not trunk:
        raise ValueError(f"new_lr_mult={cfg.new_lr_mult}: {type(model).__name__} has no "
                         "`backbone` parameters to tell the trunk from the new layers")
    return [(1.0, trunk), (cfg.new_lr_mult, new)]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over the parameter groups, with the multi-tensor ("foreach") update: on a
    2-core CPU it trains 1.17x faster than the per-parameter loop torch picks there by default
    (benchmarks/README.md, "Training at the limit") and gives bit-identical weights (the same
    element-wise kernels, fewer Python calls; tests/test_engine.py checks it)."""
    groups = [{"params": [p for _, p in named], "lr_mult": mult, "lr": cfg.lr * mult}
              for mult, named in _param_groups(model, cfg)]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay, foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
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
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        monitor: Callable[[nn.Module, int], dict[str, float] | None] | None = None) -> FitResult:
    """Train `model` for `cfg.epochs`; resume from `run_dir/checkpoint.pt` if it exists.

    The checkpoint holds the model, optimizer, history and the next epoch. It is replaced
    atomically at the end of each epoch, so killing the process at any moment loses at most the
    epoch in progress. A NaN/inf loss raises `NonFiniteLossError` naming the loss, epoch, step
    and learning rate; a NaN/inf weight, BatchNorm statistic or optimizer state, checked after
    every epoch before the checkpoint is written, raises `NonFiniteStateError`. Both name the
    newest checkpoint whose every tensor is finite (or say that none exists); a checkpoint that
    cannot be read raises `CheckpointUnreadableError`, one with non-finite values is not resumed.

    `validate(model)` (optional) returns named validation numbers after each epoch, with
    "val_loss" among them; they join the epoch's history row, and the weights of the epoch with
    the lowest "val_loss" so far are written atomically to `run_dir/best.pt` (the tutorial's
    "keep the best model" loop, lakshmi Sec. "Create Training Loop").

    `monitor(model, epoch)` (optional) returns numbers to record after an epoch (or None), e.g.
    test rank-1 for a learning curve; it runs in eval mode without gradients, before the
    checkpoint, and changes nothing of the training (each epoch reseeds every generator).
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
    good_ckpt: tuple[Path, int] | None = None  # the newest checkpoint whose tensors are finite
    if ckpt_path and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, device)
        if _resume_config(state.get("train_config")) != _resume_config(asdict(cfg)):
            raise ValueError(f"{ckpt_path} was written with another configuration; remove it or "
                             "use another run folder")
        bad = nonfinite_tensors(_checkpoint_tensors(state))
        if bad:
            raise NonFiniteStateError(
                f"training diverged before: the checkpoint {ckpt_path} (after epoch "
                f"{state['next_epoch']}) holds non-finite values: {_listing(bad)}; it cannot be "
                f"resumed. There is no finite checkpoint to go on from: lower the learning rate "
                f"(or set grad_clip) and {FORCE_REMEDY}",
                epoch=state["next_epoch"], step=None, lr=None, values=bad, finite_checkpoint=None)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointUnreadableError(
                f"{ckpt_path} does not fit this model or optimizer ({_first_line(err)}); "
                f"{FORCE_REMEDY}") from err
        start_epoch = state["next_epoch"]
        good_ckpt = (ckpt_path, start_epoch)
        result.history = state["history"]
        result.resumed_from = start_epoch
        result.wall_time_s = state.get("wall_time_s", 0.0)
        best = state.get("best", best)
    use_amp = cfg.amp and device.type == "cuda"
    step_names = _optimizer_param_names(model, cfg)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        lr = lr_at(epoch, cfg)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        rng, gen = _epoch_generators(cfg.seed, epoch)
        batches = objective.epoch_batches(rng)
        if not batches:
            raise ValueError("the objective produced no batch for an epoch (too few samples?)")
        if world > 1:  # every rank drew the same batches; each trains on its share of each
            batches = distributed.shard_epoch(batches, rank, world, _rows_per_identity(objective))
            rank_seed = np.random.SeedSequence([cfg.seed, epoch, rank]).generate_state(1)[0]
            gen.manual_seed(int(rank_seed))  # each rank its own augmentation draws
        sums: dict[str, float] = {}
        peak = (0.0, 0)  # the epoch's largest |loss| and its step, for a divergence message
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
                where = f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {bad}; lr={lr:g}"
                if not bad:
                    where += " (on another process)"
                if peak[0]:
                    where += (f"; this epoch's largest |loss| before it: {peak[0]:.3g} "
                              f"(step {peak[1]})")
                raise NonFiniteLossError(
                    f"training diverged: {where}. {_resume_hint(good_ckpt, ckpt_path)}",
                    epoch=epoch + 1, step=step + 1, lr=lr, values=bad,
                    finite_checkpoint=_ckpt_detail(good_ckpt))
            opt.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            images += int(np.asarray(batch).size)
            for k, v in losses.items():
                value = float(v.detach())
                sums[k] = sums.get(k, 0.0) + value
                if k == "loss" and abs(value) > peak[0]:
                    peak = (abs(value), step + 1)
            if progress:
                bar.set_postfix(loss=f"{float(total.detach()):.3f}")
        if world > 1:  # losses averaged over the ranks, as over the whole batch
            sums = dict(zip(sums, distributed.all_reduce_mean(
                torch.tensor(list(sums.values()), dtype=torch.float64, device=device)).tolist()))
        _check_state(model, opt, step_names, device, epoch + 1, len(batches), lr, peak,
                     good_ckpt, ckpt_path)  # before anything of this epoch is written
        row = {"epoch": epoch + 1, "lr": lr, **{k: v / len(batches) for k, v in sums.items()},
               "images": images, "time_s": time.perf_counter() - t0}
        if validate is not None:
            model.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in validate(model).items()})
            if "val_loss" not in row:
                raise KeyError("validate(model) must return a 'val_loss' entry")
            new_best = row["val_loss"] < best["val_loss"]
            if new_best:
                best = {"epoch": epoch + 1, "val_loss": row["val_loss"]}
            if ckpt_path:  # every rank takes part (the ranks' val_loss may differ)
                on_main(device, (lambda: atomic_torch_save(
                    ckpt_path.with_name("best.pt"), {"model": model.state_dict(), **best}))
                    if new_best else None)
            row["best_epoch"] = best["epoch"]
        if monitor is not None:
            model.eval()
            with torch.no_grad():
                row.update({k: float(v) for k, v in (monitor(model, epoch + 1) or {}).items()})
        result.history.append(row)
        result.wall_time_s += row["time_s"]
        if ckpt_path:
            on_main(device, lambda: atomic_torch_save(ckpt_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "next_epoch": epoch + 1, "history": result.history,
                "train_config": asdict(cfg), "best": best, "wall_time_s": result.wall_time_s}))
            good_ckpt = (ckpt_path, epoch + 1)
        if on_epoch_end:  # rank 0 only; a failure (e.g. writing the record) stops every rank
            on_main(device, lambda: on_epoch_end(epoch + 1, row), "write the run record")
        distributed.barrier()  # the other ranks read best.pt / the checkpoint only once written
    distributed.broadcast_buffers(model)  # every rank ends with rank 0's weights and statistics
    result.best_epoch = best["epoch"]
    return result


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    keys: tuple[str, ...] = ("model", "optimizer", "next_epoch", "history"),
                    remedy: str = FORCE_REMEDY) -> dict:
    """A checkpoint written by `fit` (or best.pt, with `keys=("model", "epoch")`); one that
    cannot be read (truncated by a full disk or a killed copy, or not a reidnb checkpoint)
    raises `CheckpointUnreadableError` naming it and `remedy`."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # zip, pickle and EOF errors, each of its own type
        raise CheckpointUnreadableError(
            f"cannot read the checkpoint {path} ({type(err).__name__}: {_first_line(err)}): it "
            f"is damaged or cut short (a full disk, an interrupted copy?); {remedy}") from err
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointUnreadableError(
            f"{path} is not a reidnb training checkpoint (it lacks {', '.join(missing)}); {remedy}")
    return state


def nonfinite_tensors(named) -> dict[str, str]:
    """{name: 'k of n nan/inf'} for every floating-point tensor with a NaN or infinite value.

    Reads the tensors only (no random draw, no in-place change); one device sync per device when
    every value is finite.
    """
    tensors = [(n, t) for n, t in named
               if torch.is_tensor(t) and (t.is_floating_point() or t.is_complex())]
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, t) in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    suspects = []
    for idx in by_device.values():
        ok = torch.stack([torch.isfinite(tensors[i][1]).all() for i in idx])
        if not bool(ok.all()):
            suspects += [i for i, good in zip(idx, ok.tolist()) if not good]
    out = {}
    for i in sorted(suspects):
        name, t = tensors[i]
        nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        kinds = " and ".join(f"{c} {w}" for c, w in ((nan, "nan"), (inf, "inf")) if c)
        out[name] = f"{kinds} of {t.numel()}"
    return out


def _listing(bad: dict[str, str], most: int = 4) -> str:
    items = [f"{k} ({v})" for k, v in list(bad.items())[:most]]
    if len(bad) > most:
        items.append(f"and {len(bad) - most} more tensors")
    return ", ".join(items)


def _optimizer_param_names(model: nn.Module, cfg: TrainConfig) -> list[str]:
    """Parameter names in the order `build_optimizer` hands them to the optimizer."""
    return [n for _, named in _param_groups(model, cfg) for n, _ in named]


def _optimizer_tensors(opt_state: dict, names: list[str] | None = None):
    for idx, slots in opt_state.get("state", {}).items():
        pname = names[idx] if names and isinstance(idx, int) and idx < len(names) else idx
        for slot, t in slots.items():
            yield f"optimizer {slot} of {pname}", t


def _checkpoint_tensors(state: dict):
    yield from state["model"].items()
    yield from _optimizer_tensors(state["optimizer"])


def _ckpt_detail(good: tuple[Path, int] | None) -> dict | None:
    return None if good is None else {"path": str(good[0]), "after_epoch": good[1]}


def _resume_hint(good: tuple[Path, int] | None, ckpt_path: Path | None) -> str:
    if ckpt_path is None:
        where = "No checkpoint was kept (no run folder)."
    elif good is None:
        where = (f"No finite checkpoint exists: it diverged before the first one was written "
                 f"(nothing was written to {ckpt_path}).")
    else:
        where = (f"Newest checkpoint with every tensor finite: {good[0]} (after epoch "
                 f"{good[1]}); nothing later was written.")
    return (f"{where} Lower the learning rate (or set grad_clip), or check the inputs; the same "
            "configuration diverges the same way.")


def _check_state(model: nn.Module, opt: torch.optim.Optimizer, names: list[str],
                 device: torch.device, epoch: int, steps: int, lr: float,
                 peak: tuple[float, int], good: tuple[Path, int] | None,
                 ckpt_path: Path | None) -> None:
    """Stop (every rank at once) when a weight, buffer or optimizer state is not finite."""
    bad = nonfinite_tensors(model.state_dict().items())
    bad.update(nonfinite_tensors(_optimizer_tensors(opt.state_dict(), names)))
    if distributed.is_distributed():
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        if float(distributed.all_reduce_mean(flag)) == 0.0:
            return
    elif not bad:
        return
    values = _listing(bad) if bad else "on another process (not on this one)"
    loss = f"the epoch's losses were finite, the largest |loss| {peak[0]:.3g} (step {peak[1]})"
    raise NonFiniteStateError(
        f"training diverged: after epoch {epoch} (step {steps} of {steps}), non-finite "
        f"weights or statistics: {values}; {loss}; lr={lr:g}. The checkpoint of epoch {epoch} "
        f"was not written. {_resume_hint(good, ckpt_path)}",
        epoch=epoch, step=steps, lr=lr, values=bad, largest_loss=peak[0],
        finite_checkpoint=_ckpt_detail(good))


def on_main(device: torch.device, action: Callable[[], Any] | None,
            what: str = "write the checkpoint") -> None:
    """Rank 0 does `action` (when given); under torchrun every rank learns whether it could, so
    a failure stops every rank at once instead of leaving the others waiting at the next
    collective. Every rank must call it at the same point."""
    err = None
    if distributed.is_main() and action is not None:
        try:
            action()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the others are told
            err = e
    if distributed.is_distributed():
        flag = torch.tensor([1.0 if err else 0.0], device=device)
        if float(distributed.all_reduce_mean(flag)) > 0 and err is None:
            raise RuntimeError(f"rank 0 could not {what}; see its message")
    if err is not None:
        raise err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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


def _check_features(qf: torch.Tensor, gf: torch.Tensor, distmat: torch.Tensor) -> None:
    """Non-finite features or distances mean a model that diverged; say so (read-only check)."""
    bad = nonfinite_tensors([("query features", qf), ("gallery features", gf),
                             ("distances", distmat)])
    if not bad:
        return
    finite = torch.cat([qf[torch.isfinite(qf)], gf[torch.isfinite(gf)]]).abs()
    largest = f"{float(finite.max()):.3g}" if finite.numel() else "none"
    raise NonFiniteFeaturesError(
        f"training diverged: the trained model gives non-finite features or distances "
        f"({_listing(bad)}; largest finite |feature| {largest}), although every weight is "
        f"finite: it diverged without a non-finite loss. Lower the learning rate (or set "
        f"grad_clip); the same configuration diverges the same way.",
        epoch=None, step=None, lr=None, values=bad, finite_checkpoint=None)


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
    _check_features(qf, gf, distmat)
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
