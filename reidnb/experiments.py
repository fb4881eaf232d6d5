"""Experiments: each paper's configuration per profile, run once and cached by configuration.

Profiles
- `smoke`: tiny SynthReID, ResNet-18, a couple of epochs; what CI and nbval run (seconds).
- `synthetic`: the default SynthReID, ResNet-18 at 128x64; what the book's main job runs on a CPU.
- `gpu`: the large SynthReID at 256x128, ResNet-50, the papers' schedules shortened so the whole
  book runs on one GPU in minutes (the GPU reference run; `reidnb book --profile gpu --device cuda`).
- `paper`: the paper's protocol (ResNet-50, 256x128, its epochs and schedule) on a real data set; run it
  on a GPU with your own copy of the data (`dataset`, `data_root`).

Scopes (which of a chapter's runs its plan makes; `resolve_scope`)
- `core`: the rows of each paper's headline claims, on every seed the book's verdict rule needs
  (`reidnb.verdicts`: 3); the default of the `synthetic` profile, 33 runs instead of 103, towards
  a main job that fits an hour on a 2-core CPU (README, "Budget").
- `full`: every row the chapter knows: the ablations, sweeps, controls and second heads too (most
  on the first seed); the default of `smoke` (CI executes every code path on its tiny runs), `gpu`
  and `paper`.

`run_experiment` stores everything under `runs/<name>-<dataset>-<hash>/`: `checkpoint.pt` (resumable)
and `record.json` (the run record). A complete record with the same configuration hash is reused, so
rebuilding the book does not retrain.

When a run fails it says what broke and how to go on, and leaves nothing to clean up by hand: a
lock per run folder, checks before training, `failed`/`stopped` records, `force=True` keeping the
old files aside until the new run has finished (reidnb/train/runfolder.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from . import numerics as numeric_paths
from .data import build_dataset
from .data.cache import decoded
from .data.samplers import split_by_identity
from .data.transforms import BatchAugment
from .train import distributed
from .train.engine import (TrainConfig, device_info, evaluate, fit, load_checkpoint, on_main,
                           resolve_device, seed_everything)
from .train.runfolder import (PreviousRunFailedError, RunRecordUnreadableError,  # noqa: F401
                              aside_dir, check_checkpoint_readable, check_run_space, claim,
                              prepare_run_folder, record_failure, reusable_record)
from .io import RunLock, atomic_write_json, read_json
from .models import build_model
from .train.objectives import IdentityObjective, SiameseObjective, TripletObjective

PROFILES = ("smoke", "synthetic", "gpu", "paper")
SYNTH_SIZE = {"smoke": "smoke", "synthetic": "default", "gpu": "large"}
OBJECTIVES = {"identity": IdentityObjective, "triplet": TripletObjective,
              "siamese": SiameseObjective}


@dataclass
class Experiment:
    """Everything that determines a run's result; its hash names the run folder."""

    name: str
    paper: str = "baseline"
    profile: str = "synthetic"
    dataset: str = "synthreid"
    synth_size: str = "default"
    synth_seed: int = 0
    synth_version: str = field(default_factory=lambda: _synth_version())
    synth_knobs: dict = field(default_factory=dict)   # SynthKnobs overrides (e.g. bag_visible_prob)
    height: int = 128
    width: int = 64
    model: str = "ide"
    model_kwargs: dict = field(default_factory=dict)
    objective: str = "identity"
    objective_kwargs: dict = field(default_factory=dict)
    augment: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: dict = field(default_factory=lambda: {"flip": True, "metric": "euclidean",
                                                "which": "feat_bn"})
    val_fraction: float = 0.0   # share of training identities held out for validation
    select: str = "last"        # evaluate the "last" epoch or the "best" by validation loss
    trunk_from: str = ""        # run name whose trained trunk initialises this one's (not ImageNet)
    eval_every: int = 0         # also evaluate every n epochs, for a learning curve (0: at the end)
    # the floating-point path (reidnb.numerics): "native" (this machine's fastest kernels), or
    # the portable recipe, which gives the same numbers on every x86-64 CPU (make test)
    numerics: str = field(default_factory=numeric_paths.path_id)

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Hash of the configuration. Fields still at their neutral default are left out, so
        adding an option does not rename (and retrain) the runs made before it existed."""
        return config_hash(self.to_dict())

    @property
    def run_name(self) -> str:
        return f"{self.name}-{self.dataset}-{self.key()}"

    def replace(self, **changes) -> "Experiment":
        """A copy with fields changed; `train=dict(...)` updates fields of the TrainConfig."""
        new = copy.deepcopy(self)
        for k, v in changes.items():
            if k == "train" and isinstance(v, dict):
                for tk, tv in v.items():
                    if tk not in {f.name for f in fields(TrainConfig)}:
                        raise ValueError(f"unknown TrainConfig field {tk!r}")
                    setattr(new.train, tk, tuple(tv) if tk == "lr_steps" else tv)
            elif k in {"model_kwargs", "objective_kwargs", "augment", "eval",
                       "synth_knobs"} and isinstance(v, dict):
                getattr(new, k).update(v)
            elif hasattr(new, k):
                setattr(new, k, v)
            else:
                raise ValueError(f"unknown Experiment field {k!r}")
        return new


_NEUTRAL = {"synth_knobs": {}, "val_fraction": 0.0, "select": "last", "trunk_from": "",
            "numerics": "native", "eval_every": 0}
# TrainConfig fields added later
_NEUTRAL_TRAIN = {"channels_last": False, "compile": False, "new_lr_mult": 1.0}


def config_hash(config: dict, without_seed: bool = False) -> str:
    """The hash behind `Experiment.key` of a configuration dict (`Experiment.to_dict()`, or a
    run record's "config"): fields at their neutral default left out. `without_seed=True`
    drops `train.seed` too, so the runs of one configuration over several seeds share it, and
    `eval_every`, which adds a learning curve to a run and changes none of its numbers."""
    d = {k: v for k, v in config.items() if _NEUTRAL.get(k, object()) != v
         and not (without_seed and k == "eval_every")}
    d["train"] = {k: v for k, v in dict(d.get("train") or {}).items()
                  if not (without_seed and k == "seed") and _NEUTRAL_TRAIN.get(k, object()) != v}
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def _synth_version() -> str:
    """SynthReID's generator version: part of the run hash, so a new generator retrains."""
    from .data.synthetic import GENERATOR_VERSION
    return GENERATOR_VERSION


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")


SCOPES = ("core", "full")
#: the scope a profile's chapters run when none is asked for
DEFAULT_SCOPE = {"smoke": "full", "synthetic": "core", "gpu": "full", "paper": "full"}


def resolve_scope(profile: str, scope: str | None = None) -> str:
    """`scope`, checked, or the profile's default (`DEFAULT_SCOPE`) when it is None."""
    check_profile(profile)
    if scope is None:
        return DEFAULT_SCOPE[profile]
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES} (or None: the "
                         f"{profile} profile's default, {DEFAULT_SCOPE[profile]!r})")
    return scope


def keep_in_scope(groups: dict[str, list[Experiment]], scope: str,
                  core: dict[str, tuple[str, ...] | None]) -> dict[str, list[Experiment]]:
    """A chapter's plan in `scope`: every group as it is in the full scope; in the core scope
    only the groups `core` names, each with all its runs (None) or those of the named
    experiments. A group outside the core stays in the plan, empty, so the chapter's cells can
    say that this build did not run it."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    unknown = sorted(set(core) - set(groups))
    if unknown:
        raise ValueError(f"core groups {unknown} are not in the plan's groups {sorted(groups)}")
    if scope == "full":
        return groups
    return {g: [e for e in runs if core.get(g, ()) is None or e.name in core.get(g, ())]
            for g, runs in groups.items()}


def dataset_root(exp: Experiment, data_root: str | Path = "data") -> Path:
    """Where an experiment's data lives; SynthReID is generated there on first use."""
    root = Path(data_root)
    if exp.dataset != "synthreid":
        return root
    name = f"synthreid-{exp.synth_size}-seed{exp.synth_seed}-v{exp.synth_version}"
    size = (128, 64) if exp.height <= 128 else (exp.height, exp.width)  # render at >= 128x64
    if size != (128, 64):
        name += f"-{size[0]}x{size[1]}"
    if exp.synth_knobs:
        blob = json.dumps(exp.synth_knobs, sort_keys=True).encode()
        name += f"-knobs{hashlib.sha1(blob).hexdigest()[:8]}"
    folder = root / name
    if not (folder / "synthreid.json").exists():
        from .data.synth_render import SynthKnobs
        from .data.synthetic import generate
        from .io import RunLock
        # one generator per data root at a time: two processes (the main job's workers, or a
        # kernel beside it) would otherwise write, and clear, the same folder
        lock = RunLock(root)
        lock.acquire(wait=True, what="generate SynthReID in")
        try:
            if not (folder / "synthreid.json").exists():   # the holder may have just made it
                generate(folder, size=exp.synth_size, seed=exp.synth_seed,
                         knobs=SynthKnobs(**exp.synth_knobs), height=size[0], width=size[1],
                         overwrite=folder.exists())
        finally:
            lock.release()
    return folder


def curve_point(ev) -> dict[str, float]:
    """An evaluation as a learning curve's point in a history row: test rank-1 and mAP (%)."""
    m = ev.metrics()
    return {"test_rank1": m["rank1"], "test_mAP": m["mAP"]}


def load_data(exp: Experiment, data_root: str | Path = "data"):
    """(dataset records, train/query/gallery image caches) at the experiment's image size,
    decoded once per process (`data.cache.decoded`: shared, read-only)."""
    ds = build_dataset(exp.dataset, dataset_root(exp, data_root))
    caches = {split: decoded(getattr(ds, split), exp.height, exp.width)
              for split in ("train", "query", "gallery")}
    return ds, caches


def build_for(exp: Experiment, num_classes: int) -> torch.nn.Module:
    return build_model(exp.model, num_classes, **exp.model_kwargs)


def load_trunk_from_run(model: torch.nn.Module, run_name: str, runs_dir: str | Path = "runs"
                        ) -> dict:
    """Copy the trained trunk (`backbone.*`) of a finished run into `model`'s trunk: a stand-in
    for ImageNet initialisation where no ImageNet weights can be had. Every trunk weight must be
    present with the same shape; heads and attention modules keep their own initialisation.
    Returns the provenance written to the run record."""
    ckpt = Path(runs_dir) / run_name / "checkpoint.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"trunk_from={run_name!r}: no checkpoint at {ckpt}; run that "
                                "experiment first (run_experiment) or change trunk_from")
    state = load_checkpoint(ckpt, "cpu", keys=("model",), remedy=(
        f"retrain that run from scratch (its experiment with force=True, or `reidnb run` of it "
        f"with --force), then this one"))["model"]
    trunk = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    missing = sorted(set(own) - set(trunk))
    wrong = sorted(k for k in own if k in trunk and trunk[k].shape != own[k].shape)
    if missing or wrong:
        raise ValueError(f"{ckpt}: its trunk does not fit this model's "
                         f"({len(missing)} weights missing, e.g. {missing[:2]}; "
                         f"{len(wrong)} of another shape, e.g. {wrong[:2]})")
    model.backbone.load_state_dict({k: trunk[k] for k in own})
    return {"source": "run", "detail": f"trunk of {run_name} ({len(own)} tensors)"}


def initial_model(exp: Experiment, num_classes: int, runs_dir: str | Path = "runs"
                  ) -> tuple[torch.nn.Module, dict]:
    """The model as `exp`'s training starts, and where its weights came from: seeded by the
    run's seed alone, its trunk copied from `exp.trunk_from`'s run when set."""
    seed_everything(exp.train.seed)
    model = build_for(exp, num_classes)
    weights_init = getattr(model, "weights_init", {"source": "unknown"})
    if exp.trunk_from:
        weights_init = load_trunk_from_run(model, exp.trunk_from, runs_dir)
    return model, weights_init


_CODE_FINGERPRINT: str | None = None


def code_fingerprint() -> str:
    """The library's code as 12 hex digits: sha256 over every `reidnb/**/*.py` (relative path
    and bytes, in path order). A run record keeps it as "code": two runs of one configuration
    trained by code of the same fingerprint give the same numbers in the portable mode, while a
    cached run from other code may not (`mainjob.set_aside_stale_runs`)."""
    global _CODE_FINGERPRINT
    if _CODE_FINGERPRINT is None:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for path in sorted(root.rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        _CODE_FINGERPRINT = h.hexdigest()[:12]
    return _CODE_FINGERPRINT


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_dir_for(exp: Experiment, runs_dir: str | Path = "runs") -> Path:
    return Path(runs_dir) / exp.run_name


def run_experiment(exp: Experiment, data_root: str | Path = "data", runs_dir: str | Path = "runs",
                   device: str = "auto", progress: bool = True, force: bool = False,
                   wait: bool = False) -> dict:
    """Train and evaluate `exp`, or return its cached complete run record.

    `force=True` trains from scratch even if a record or checkpoint exists (the old files are
    kept aside until the new run has finished). Another process training the same run folder
    makes this one stop with a message naming it, or, with `wait=True`, wait for it (and reuse
    its record when it finished the run). See the module docstring for how failures are reported.
    """
    run_dir = run_dir_for(exp, runs_dir)
    record_path = run_dir / "record.json"
    if exp.numerics != numeric_paths.path_id():
        raise ValueError(
            f"{exp.name}: configured for the numeric path {exp.numerics!r}, but this process "
            f"runs {numeric_paths.path_id()!r} (REIDNB_NUMERICS={numeric_paths.mode()}); build the "
            f"experiment in the process that runs it, or start that process with "
            f"`reidnb numerics portable -- ...` for a portable run")
    if not force:  # a finished run is read without writing anything (runs/ may be read-only)
        cached = reusable_record(record_path, device, announce=False)
        if cached is not None:
            return cached
    distributed.init_from_env()  # under torchrun: one process per GPU, rank 0 writes
    dev = distributed.device_for_rank(resolve_device(device))
    lock = RunLock(run_dir)
    try:
        claim(lock, dev, wait)
        if not force:  # another process may have finished (or failed) it while this one waited
            cached = reusable_record(record_path, device)
            if cached is not None:
                return cached
        on_main(dev, lambda: prepare_run_folder(run_dir, force), "prepare the run folder")
        return _train_and_evaluate(exp, run_dir, data_root, runs_dir, dev, progress)
    finally:
        lock.release()


def _train_and_evaluate(exp: Experiment, run_dir: Path, data_root: str | Path,
                        runs_dir: str | Path, dev, progress: bool) -> dict:
    record_path = run_dir / "record.json"
    t_start = time.perf_counter()
    if distributed.is_main():
        dataset_root(exp, data_root)  # SynthReID is generated once, before the others read it
    distributed.barrier()
    ds, caches = load_data(exp, data_root)
    model, weights_init = initial_model(exp, ds.num_train_pids, runs_dir)
    on_main(dev, lambda: check_run_space(run_dir, checkpoint_bytes(model, exp)),
            "find space for a checkpoint")
    train_cache, validate = caches["train"], None
    if exp.val_fraction > 0:
        train_idx, val_idx = split_by_identity(train_cache.pids.numpy(), exp.val_fraction,
                                               exp.train.seed)
        train_cache, val_cache = train_cache.subset(train_idx), train_cache.subset(val_idx)
    elif exp.select == "best":
        raise ValueError(f"{exp.name}: select='best' needs val_fraction > 0")
    if dev.type == "cuda":  # decoded once, kept in GPU memory: batches never leave the device
        train_cache = train_cache.to(dev)
    objective = OBJECTIVES[exp.objective](train_cache, augment=BatchAugment(**exp.augment),
                                          **exp.objective_kwargs)
    if exp.val_fraction > 0:
        def validate(m):
            return objective.validation_losses(m, val_cache, dev, seed=exp.train.seed)
    record = {
        "name": exp.name, "paper": exp.paper, "profile": exp.profile, "key": exp.key(),
        "run_name": exp.run_name, "status": "running", "config": exp.to_dict(),
        "dataset": {"name": exp.dataset, "root": str(ds.root), "stats": ds.stats()},
        "weights_init": weights_init,
        "device": device_info(dev), "processes": distributed.world_size(),
        "numerics": numeric_paths.describe(str(dev)),
        "versions": _versions(), "git": git_sha(), "code": code_fingerprint(),
        "started": _now(), "history": [],
    }
    if exp.val_fraction > 0:
        record["split"] = {"train_images": len(train_cache), "val_images": len(val_cache),
                           "train_ids": int(train_cache.pids.unique().numel()),
                           "val_ids": int(val_cache.pids.unique().numel())}

    def checkpoint_record(epoch: int, row: dict) -> None:
        record["history"].append(row)
        atomic_write_json(record_path, record)

    monitor = None
    if exp.eval_every:
        if exp.eval_every < 0:
            raise ValueError(f"{exp.name}: eval_every={exp.eval_every}; give 0 (evaluate at the "
                             "end only) or a positive number of epochs")

        def monitor(m, epoch):
            """Test rank-1 and mAP every `eval_every` epochs (the last is evaluated below)."""
            if epoch % exp.eval_every or (epoch == exp.train.epochs and exp.select == "last"):
                return None
            return curve_point(evaluate(m, caches["query"], caches["gallery"], dev, **exp.eval))

    try:
        result = fit(model, objective, exp.train, run_dir, dev, progress, checkpoint_record,
                     validate, monitor)
        record["history"] = result.history
        record["resumed_from_epoch"] = result.resumed_from
        record["evaluated_epoch"] = exp.train.epochs
        if exp.select == "best":
            best = load_checkpoint(run_dir / "best.pt", dev, keys=("model", "epoch"))
            model.load_state_dict(best["model"])
            record["evaluated_epoch"] = best["epoch"]
        ev = evaluate(model, caches["query"], caches["gallery"], dev, **exp.eval)
    except BaseException as err:
        record_failure(record, record_path, run_dir, err)
        raise
    if exp.eval_every and exp.select == "last" and record["history"]:
        record["history"][-1].update(curve_point(ev))  # the curve's last point: the final result
    record["metrics"] = {ev.protocol: ev.metrics()}
    record["cmc"] = {ev.protocol: [float(c) for c in ev.cmc]}
    record["train_time_s"] = result.wall_time_s
    record["wall_time_s"] = time.perf_counter() - t_start
    record["finished"] = _now()
    record["status"] = "complete"
    if distributed.is_main():
        atomic_write_json(record_path, record)
        shutil.rmtree(aside_dir(run_dir), ignore_errors=True)  # the run --force replaced
    return record


def checkpoint_bytes(model: torch.nn.Module, exp: Experiment) -> int:
    """About the size of `exp`'s checkpoint (and best.pt) on disk, with a margin."""
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    cfg = exp.train
    slots = 2 if cfg.optimizer == "adam" else (1 if cfg.momentum else 0)
    total = weights + slots * params + (weights if exp.val_fraction > 0 else 0)
    return int(total * 1.1) + 1_000_000


def run_all(exps: list[Experiment], data_root: str | Path = "data", runs_dir: str | Path = "runs",
            device: str = "auto") -> list[dict]:
    """`run_experiment` for each (cached runs are read, not retrained); prints one line a run:
    its name, rank-1 and training minutes. Returns the records in order."""
    records = []
    for exp in exps:
        rec = run_experiment(exp, data_root, runs_dir, device, progress=False)
        metrics = next(iter(rec["metrics"].values()))
        print(f"{rec['run_name']:48s} rank-1 {metrics['rank1']:5.1f}  "
              f"{rec['train_time_s'] / 60:4.1f} min", flush=True)
        records.append(rec)
    return records


def trained_run_results(exp: Experiment, runs_dir: str | Path, filename: str, what: str
                        ) -> tuple[Path, dict]:
    """(path, saved results) of a results file kept in a trained run's folder (read back, {}
    when absent), for evaluations made after training (the misalignment sweep, chapter 6's
    protocols). FileNotFoundError naming the run when it has not been trained; `what` says who
    asks."""
    run_dir = run_dir_for(exp, runs_dir)
    record = run_dir / "record.json"
    if not record.exists() or read_json(record).get("status") != "complete":
        raise FileNotFoundError(f"{record}: {what} trained runs; train {exp.run_name} first")
    store = run_dir / filename
    return store, (read_json(store) if store.exists() else {})


def load_trained(exp: Experiment, runs_dir: str | Path = "runs", num_classes: int | None = None,
                 device: str = "cpu") -> torch.nn.Module:
    """The model of a finished run, rebuilt from its configuration and checkpoint."""
    run_dir = run_dir_for(exp, runs_dir)
    ckpt = run_dir / ("best.pt" if exp.select == "best" else "checkpoint.pt")
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt}; run run_experiment(exp) first")
    state = load_checkpoint(ckpt, device, keys=("model",))
    if num_classes is None:
        num_classes = read_json(run_dir / "record.json")["dataset"]["stats"]["train"]["ids"]
    kwargs = dict(exp.model_kwargs, pretrained=False)
    model = build_model(exp.model, num_classes, **kwargs)
    model.load_state_dict(state["model"])
    return model.eval()


def _versions() -> dict:
    import numpy
    import torchvision
    return {"reidnb": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunArtifacts:
    """What a chapter needs to inspect a finished run: model, data, features and distances."""

    record: dict
    model: torch.nn.Module
    dataset: object
    caches: dict
    distmat: object


def load_run(exp: Experiment, data_root: str | Path = "data", runs_dir: str | Path = "runs",
             device: str = "cpu") -> RunArtifacts:
    """Rebuild a finished run's model and recompute its query x gallery distances."""
    from .train.engine import compute_distmat, extract_features

    record = read_json(run_dir_for(exp, runs_dir) / "record.json")
    ds, caches = load_data(exp, data_root)
    model = load_trained(exp, runs_dir, ds.num_train_pids, device)
    kw = {"flip": exp.eval.get("flip", True), "which": exp.eval.get("which", "feat_bn")}
    qf = extract_features(model, caches["query"], device, **kw)
    gf = extract_features(model, caches["gallery"], device, **kw)
    distmat = compute_distmat(qf, gf, exp.eval.get("metric", "euclidean")).cpu().numpy()
    return RunArtifacts(record, model, ds, caches, distmat)


# --- detector misalignment: an experiment's data drawn with looser boxes (reidnb.misalignment) ---

#: The misalignment levels the li2019, jamal2020 and zheng2019 chapters share.
LEVELS = (0.0, 0.05, 0.1, 0.2)


def misalignment_knobs(level: float, height: int = 128, width: int = 64) -> dict[str, float]:
    """SynthReID knobs for box errors of up to `level` x the box height: `misalign_offset` is a
    fraction of the width for the horizontal shift (half of it, of the height, for the vertical
    one), `misalign_scale` the largest log change of the person's size."""
    if not 0.0 <= level < 1.0:
        raise ValueError(f"misalignment level must be in [0, 1), got {level}")
    return {"misalign_offset": level * height / width, "misalign_scale": math.log1p(level)}


def misaligned(exp: Experiment, level: float) -> Experiment:
    """`exp` with its test data drawn at misalignment `level` (the data set changes, nothing
    else; SynthReID draws the same numbers whatever the knobs, so the people, cameras, views and
    every other nuisance stay as they were)."""
    if exp.dataset != "synthreid":
        raise ValueError(f"{exp.name}: the misalignment sweep needs SynthReID, not {exp.dataset}")
    return exp.replace(synth_knobs={**exp.synth_knobs,
                                    **misalignment_knobs(level, exp.height, exp.width)})
