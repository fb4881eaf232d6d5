"""Experiments: each paper's configuration per profile, run once and cached by configuration.

Profiles
- `smoke`: tiny SynthReID, ResNet-18, a couple of epochs; what CI and nbval run (seconds).
- `synthetic`: the default SynthReID, ResNet-18 at 128x64; what the book's main job runs on a CPU.
- `gpu`: the large SynthReID at 256x128, ResNet-50, the papers' schedules shortened so the whole
  book runs on one GPU in minutes (the GPU reference run; `reidnb book --profile gpu --device cuda`).
- `paper`: the paper's protocol (ResNet-50, 256x128, its epochs and schedule) on a real data set; run it
  on a GPU with your own copy of the data (`dataset`, `data_root`).

`run_experiment` stores everything under `runs/<name>-<dataset>-<hash>/`: `checkpoint.pt` (resumable)
and `record.json` (the run record). A complete record with the same configuration hash is reused, so
rebuilding the book does not retrain.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from . import numerics as numeric_paths
from .data import build_dataset
from .data.cache import ImageCache
from .data.samplers import split_by_identity
from .data.transforms import BatchAugment
from .train import distributed
from .train.engine import TrainConfig, device_info, evaluate, fit, resolve_device, seed_everything
from .io import atomic_write_json, read_json
from .models import build_model
from .train.objectives import IdentityObjective, TripletObjective

PROFILES = ("smoke", "synthetic", "gpu", "paper")
SYNTH_SIZE = {"smoke": "smoke", "synthetic": "default", "gpu": "large"}
OBJECTIVES = {"identity": IdentityObjective, "triplet": TripletObjective}


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
    # the floating-point path (reidnb.numerics): "native" (this machine's fastest kernels), or
    # the portable recipe, which gives the same numbers on every x86-64 CPU (make test)
    numerics: str = field(default_factory=numeric_paths.path_id)

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        """Hash of the configuration. Fields still at their neutral default are left out, so
        adding an option does not rename (and retrain) the runs made before it existed."""
        d = {k: v for k, v in self.to_dict().items() if _NEUTRAL.get(k, object()) != v}
        d["train"] = {k: v for k, v in d["train"].items()
                      if _NEUTRAL_TRAIN.get(k, object()) != v}
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha1(blob).hexdigest()[:10]

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
            "numerics": "native"}
_NEUTRAL_TRAIN = {"channels_last": False, "compile": False}   # TrainConfig fields added later


def _synth_version() -> str:
    """SynthReID's generator version: part of the run hash, so a new generator retrains."""
    from .data.synthetic import GENERATOR_VERSION
    return GENERATOR_VERSION


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")


def ide_experiment(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
                   ) -> Experiment:
    """The IDE baseline (Zheng et al. 2016) as each profile runs it."""
    check_profile(profile)
    if profile == "paper":
        return Experiment(
            name="ide", profile=profile, dataset=dataset or "market1501", height=256, width=128,
            model_kwargs={"backbone": "resnet50", "last_stride": 1, "bnneck": False},
            objective_kwargs={"sampler": "random", "batch_size": 32},
            augment={"flip_p": 0.5, "pad": 10, "erasing_p": 0.0},
            train=TrainConfig(epochs=60, lr=0.05, lr_steps=(40,), warmup_epochs=0, seed=seed))
    if profile == "gpu":
        # The paper's model and image size on the large SynthReID (15,114 training images); its
        # 60 epochs with a step at 40 shortened to 20 with a step at 14 (about 300k images seen),
        # batches of 64 on one GPU, a 2-epoch warm-up for a trunk that may start from scratch.
        return Experiment(
            name="ide", profile=profile, dataset=dataset or "synthreid", synth_size="large",
            height=256, width=128,
            model_kwargs={"backbone": "resnet50", "last_stride": 1, "bnneck": False,
                          "pretrained": "auto"},
            objective_kwargs={"sampler": "random", "batch_size": 64},
            augment={"flip_p": 0.5, "pad": 10, "erasing_p": 0.0},
            train=TrainConfig(epochs=20, lr=0.05, lr_steps=(14,), warmup_epochs=2, seed=seed,
                              channels_last=True))
    smoke = profile == "smoke"
    return Experiment(
        name="ide", profile=profile, dataset=dataset or "synthreid", synth_size=SYNTH_SIZE[profile],
        model_kwargs={"backbone": "resnet18", "last_stride": 2, "bnneck": True,
                      "pretrained": "auto"},
        objective_kwargs={"sampler": "random", "batch_size": 32},
        augment={"flip_p": 0.5, "pad": 4, "erasing_p": 0.3},
        train=TrainConfig(epochs=3 if smoke else 14, lr=0.05, lr_steps=() if smoke else (10,),
                          warmup_epochs=0 if smoke else 1, seed=seed))


def lakshmi_experiments(profile: str = "synthetic", dataset: str | None = None, seed: int = 0,
                        margin: float = 0.3) -> dict[str, Experiment]:
    """The Siamese tutorial's APN training and the comparison runs (lakshmi; chapter 3).

    - "random_triplet": the tutorial: an embedding network trained on anchor / positive / negative
      triplets drawn at random (positive from another camera when one exists), 10 % of the training
      identities held out, the epoch with the lowest validation loss kept.
    - "batch_hard": the same network, P x K batches and batch-hard mining (Hermans et al. 2017),
      the same margin, validation and number of training images seen.
    - "ide": chapter 2's identity-classification baseline (the same configuration, so its cached
      run is reused).
    The tutorial gives no optimizer for this part; Adam at 3e-4 (Hermans et al. 2017) is our choice.
    """
    check_profile(profile)
    paper = profile == "paper"
    smoke = profile == "smoke"
    base = Experiment(
        name="lakshmi_random_triplet", paper="lakshmi", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"),
        height=256 if paper else 128, width=128 if paper else 64, model="embedding",
        model_kwargs={"backbone": "resnet50" if paper else "resnet18",
                      "last_stride": 1 if paper else 2, "embed_dim": 128, "pretrained": "auto"},
        objective="triplet",
        objective_kwargs={"batch_size": 32, "margin": margin, "cross_camera": True,
                          "triplets_per_epoch": 64 if smoke else (None if paper else 1000)},
        augment={"flip_p": 0.5, "pad": 10 if paper else 4, "erasing_p": 0.0 if paper else 0.3},
        train=TrainConfig(epochs=2 if smoke else (60 if paper else 6), optimizer="adam", lr=3e-4,
                          lr_steps=(40,) if paper else (), seed=seed),
        val_fraction=0.2 if smoke else 0.1, select="best")
    # Batch-hard sees as many training images as the random-triplet run: P x K = 16 x 4 images a
    # batch, one batch per 16 identities, so it needs more (shorter) epochs.
    hard_epochs = 3 if smoke else (120 if paper else 25)
    hard = base.replace(name="lakshmi_batch_hard", objective="identity",
                        train={"epochs": hard_epochs,
                                                      "lr_steps": (80,) if paper else ()})
    hard.objective_kwargs = {"sampler": "pk", "num_identities": 16 if not smoke else 4,
                             "num_instances": 4, "id_weight": 0.0, "triplet_weight": 1.0,
                             "triplet_margin": margin}
    if profile == "gpu":
        base, hard = _lakshmi_gpu(base, hard, margin)
    return {"random_triplet": base, "batch_hard": hard,
            "ide": ide_experiment(profile, dataset, seed=seed)}


def _lakshmi_gpu(base: Experiment, hard: Experiment, margin: float
                 ) -> tuple[Experiment, Experiment]:
    """The `gpu` profile of the lakshmi runs: ResNet-50 (last stride 1) at 256x128 on the large
    SynthReID, the paper profile's schedule shortened to fit one GPU.

    Random triplets: 6 epochs of 12,000 triplets (216k images seen), lr step after 4. Batch-hard:
    the same number of images: 675 training identities (750 less 10 % held out) give 42 batches
    of 16 x 4 = 2,688 images an epoch, so 80 epochs (215k images), lr step after 54.
    """
    size = {"synth_size": "large", "height": 256, "width": 128}
    model = {"backbone": "resnet50", "last_stride": 1}
    base = base.replace(**size, model_kwargs=model, augment={"pad": 10, "erasing_p": 0.0},
                        objective_kwargs={"triplets_per_epoch": 12_000},
                        train={"epochs": 6, "lr_steps": (4,), "channels_last": True})
    hard = hard.replace(**size, model_kwargs=model, augment={"pad": 10, "erasing_p": 0.0},
                        objective_kwargs={"num_identities": 16, "triplet_margin": margin},
                        train={"epochs": 80, "lr_steps": (54,), "channels_last": True})
    return base, hard


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
        generate(folder, size=exp.synth_size, seed=exp.synth_seed,
                 knobs=SynthKnobs(**exp.synth_knobs), height=size[0], width=size[1],
                 overwrite=folder.exists())
    return folder


def load_data(exp: Experiment, data_root: str | Path = "data"):
    """(dataset records, train/query/gallery image caches) at the experiment's image size."""
    ds = build_dataset(exp.dataset, dataset_root(exp, data_root))
    caches = {split: ImageCache.from_records(getattr(ds, split), exp.height, exp.width)
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
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["model"]
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


def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_dir_for(exp: Experiment, runs_dir: str | Path = "runs") -> Path:
    return Path(runs_dir) / exp.run_name


def run_experiment(exp: Experiment, data_root: str | Path = "data", runs_dir: str | Path = "runs",
                   device: str = "auto", progress: bool = True, force: bool = False) -> dict:
    """Train and evaluate `exp`, or return its cached complete run record."""
    run_dir = run_dir_for(exp, runs_dir)
    record_path = run_dir / "record.json"
    if exp.numerics != numeric_paths.path_id():
        raise ValueError(
            f"{exp.name}: configured for the numeric path {exp.numerics!r}, but this process "
            f"runs {numeric_paths.path_id()!r} (REIDNB_NUMERICS={numeric_paths.mode()}); build the "
            f"experiment in the process that runs it, or start that process with "
            f"`reidnb numerics portable -- ...` for a portable run")
    if record_path.exists() and not force:
        record = read_json(record_path)
        if record.get("status") == "complete":
            _warn_if_other_path(record, record_path, device)
            return record
    distributed.init_from_env()  # under torchrun: one process per GPU, rank 0 writes
    dev = distributed.device_for_rank(resolve_device(device))
    t_start = time.perf_counter()
    if distributed.is_main():
        dataset_root(exp, data_root)  # SynthReID is generated once, before the others read it
    distributed.barrier()
    ds, caches = load_data(exp, data_root)
    seed_everything(exp.train.seed)  # the initial weights depend on the seed alone
    model = build_for(exp, ds.num_train_pids)
    weights_init = getattr(model, "weights_init", {"source": "unknown"})
    if exp.trunk_from:
        weights_init = load_trunk_from_run(model, exp.trunk_from, runs_dir)
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
        "versions": _versions(), "git": git_sha(),
        "started": _now(), "history": [],
    }
    if exp.val_fraction > 0:
        record["split"] = {"train_images": len(train_cache), "val_images": len(val_cache),
                           "train_ids": int(train_cache.pids.unique().numel()),
                           "val_ids": int(val_cache.pids.unique().numel())}

    def checkpoint_record(epoch: int, row: dict) -> None:
        record["history"].append(row)
        atomic_write_json(record_path, record)

    result = fit(model, objective, exp.train, run_dir, dev, progress, checkpoint_record, validate)
    record["history"] = result.history
    record["resumed_from_epoch"] = result.resumed_from
    record["evaluated_epoch"] = exp.train.epochs
    if exp.select == "best":
        best = torch.load(run_dir / "best.pt", map_location=dev, weights_only=False)
        model.load_state_dict(best["model"])
        record["evaluated_epoch"] = best["epoch"]
    ev = evaluate(model, caches["query"], caches["gallery"], dev, **exp.eval)
    record["metrics"] = {ev.protocol: ev.metrics()}
    record["cmc"] = {ev.protocol: [float(c) for c in ev.cmc]}
    record["train_time_s"] = result.wall_time_s
    record["wall_time_s"] = time.perf_counter() - t_start
    record["finished"] = _now()
    record["status"] = "complete"
    if distributed.is_main():
        atomic_write_json(record_path, record)
    return record


def _warn_if_other_path(record: dict, record_path: Path, device: str) -> None:
    """A cached record made under another numeric path (another CPU, kernels or thread count) is
    reused, but never silently: its numbers may differ in every digit from this machine's."""
    import warnings

    here = numeric_paths.describe(str(resolve_device(device)))
    if not numeric_paths.same_path(record.get("numerics"), here):
        warnings.warn(f"{record_path}: reusing a record made under the numeric path "
                      f"{numeric_paths.summary(record.get('numerics'))}; this process runs "
                      f"{numeric_paths.summary(here)}, where retraining may give other numbers "
                      f"(force=True / `reidnb run --force` retrains)", stacklevel=3)


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


def load_trained(exp: Experiment, runs_dir: str | Path = "runs", num_classes: int | None = None,
                 device: str = "cpu") -> torch.nn.Module:
    """The model of a finished run, rebuilt from its configuration and checkpoint."""
    run_dir = run_dir_for(exp, runs_dir)
    ckpt = run_dir / ("best.pt" if exp.select == "best" else "checkpoint.pt")
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt}; run run_experiment(exp) first")
    state = torch.load(ckpt, map_location=device, weights_only=False)
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


# --- jeong2020: the uniformity attentive Siamese network (chapter on issue 5) ---------------------

from .train.objectives import SiameseObjective  # noqa: E402

OBJECTIVES["siamese"] = SiameseObjective
JEONG2020_VARIANTS = ("full", "am", "baseline")


def jeong2020_experiment(profile: str = "synthetic", variant: str = "full",
                         backbone: str = "resnet", stage: str = "layer3", seed: int = 0,
                         dataset: str | None = None, synth_knobs: dict | None = None,
                         trunk: str | None = None, **overrides) -> Experiment:
    """One row of jeong2020's Tables 5-6: `variant` "baseline" (no attention module), "am"
    (attention module, no uniformity loss) or "full" (+ uniformity loss); `stage` places the
    module (Table 6); `backbone` "resnet" (ResNet-50 in the paper profile, ResNet-18 otherwise)
    or "vgg" (VGG16, costly on a CPU). `trunk`: where the trunk's initial weights come from,
    "imagenet" (the paper; random with a warning when no cached file) or "ide" (the trained trunk
    of the profile's IDE run, chapter 1: the CPU profiles' stand-in for ImageNet, ResNet only);
    default "ide" in smoke/synthetic, "imagenet" otherwise. `overrides` go to
    `Experiment.replace`.

    paper: ResNet-50 from ImageNet, 256 x 128, last stride 2 (Table 1: layer4 is 8 x 4),
      unpadded encoder, SGD lr 0.04 momentum 0.9 (plain, not Nesterov), x0.1 every 30 epochs
      (Sec. 4.2). The paper gives neither the number of epochs nor P; we take 90 epochs (three
      30-epoch steps; about the 4 hours Sec. 4.2 reports on two GPUs at an epoch of one anchor
      per training image) and P = 16 anchors (48 images) a batch. Augmentation is not described;
      we use the common flip and pad-crop, no random erasing.
    synthetic: ResNet-18 at 128 x 64 on the default SynthReID, its trunk initialised from
      chapter 1's IDE run (trained on SynthReID's training identities) as the paper's is from
      ImageNet; encoder_padding=True at every stage (layer3 is 8 x 4 there, too small for the
      unpadded encoder; an unpadded layer3 needs >= 96 pixels of width, 2.3x the cost); 4 epochs
      of 384 anchors (4,608 training images), the paper's lr 0.04 after one warm-up epoch, x0.1
      for the last epoch. From random weights (the setting until the chapter had to fit the main
      job's 60 minutes) 5 epochs of 384-512 anchors left every variant far from converged
      (training accuracy 8-40 %, rank-1 spread of 10-17 points between two seeds), so the
      ablation measured early learning speed, not the module. About 1.5 min per run on two
      CPU cores (the module after layer1 costs 2.3x that).
    smoke: the tiny SynthReID, two short epochs, the smoke IDE run's trunk, lr 0.04 (seconds).
    gpu: the paper's model and image size (unpadded encoder) on the large SynthReID, P = 32,
      20 epochs of 5,000 anchors (about 300k images, as the IDE gpu run), lr 0.01 with a
      2-epoch warm-up and a step at 14. The trunk may start from random weights there (no
      ImageNet file), and on a CPU lr 0.04 from random weights stayed near chance (rank-1 11 %
      after 4 epochs), hence 0.01; not yet tried on a GPU.
    """
    check_profile(profile)
    if variant not in JEONG2020_VARIANTS:
        raise ValueError(f"variant={variant!r}; choose from {JEONG2020_VARIANTS}")
    if backbone not in ("resnet", "vgg"):
        raise ValueError(f"backbone={backbone!r}; choose 'resnet' or 'vgg'")
    paper, smoke = profile == "paper", profile == "smoke"
    arch = "vgg16" if backbone == "vgg" else ("resnet50" if paper else "resnet18")
    name = "jeong2020" + ("_vgg" if backbone == "vgg" else "") + f"_{variant}"
    if stage != "layer3":
        name += f"_{stage}"
    gpu = profile == "gpu"
    big = paper or gpu   # ResNet-50 at 256 x 128 with the unpadded (paper) encoder
    if gpu and backbone != "vgg":
        arch = "resnet50"
    trunk = trunk or ("ide" if profile in ("smoke", "synthetic") and backbone == "resnet"
                      else "imagenet")
    if trunk not in ("imagenet", "ide"):
        raise ValueError(f"trunk={trunk!r}; choose 'imagenet' or 'ide'")
    trunk_from = ""
    if trunk == "ide":
        ide = ide_experiment(profile, dataset)
        if ide.model_kwargs["backbone"] != arch:
            raise ValueError(f"trunk='ide': the {profile} IDE run's trunk is "
                             f"{ide.model_kwargs['backbone']}, this model's {arch}")
        trunk_from = ide.run_name
    cpu_lr = 0.04 if trunk == "ide" else 0.01
    exp = Experiment(
        name=name, paper="jeong2020", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"), synth_knobs=dict(synth_knobs or {}),
        height=256 if big else 128, width=128 if big else 64, model="jeong2020",
        trunk_from=trunk_from,
        model_kwargs={"backbone": arch, "last_stride": 2,
                      "pretrained": False if trunk_from else "auto",
                      "attention": variant != "baseline", "stage": stage,
                      "encoder_padding": not big},
        objective="siamese",
        objective_kwargs={"num_identities": 4 if smoke else (32 if gpu else 16),
                          "anchors_per_epoch": (32 if smoke else None if paper
                                                else 5000 if gpu else 384),
                          "unif_weight": 1.0 if variant == "full" else 0.0,
                          "unif_margin": 1.0, "unif_form": "text"},
        augment={"flip_p": 0.5, "pad": 10 if big else 4, "erasing_p": 0.0},
        train=TrainConfig(epochs=2 if smoke else 90 if paper else 20 if gpu else 4,
                          lr=0.04 if paper else 0.01 if gpu else cpu_lr, momentum=0.9,
                          nesterov=False,
                          lr_steps=(30, 60) if paper else (14,) if gpu else () if smoke else (3,),
                          warmup_epochs=0 if paper or smoke else 2 if gpu else 1,
                          channels_last=gpu, seed=seed))
    if profile == "synthetic":
        # one forward per test image, not two (no flip averaging): saves about 20 s of each of
        # the chapter's 15 CPU runs; the same for every row, so the comparisons are unaffected
        exp.eval["flip"] = False
    return exp.replace(**overrides) if overrides else exp


#: Seeds, attention stages and bag-visibility values of the jeong2020 chapter, per profile. The
#: CPU profile is sized to the main job's budget: 13 runs, 25.3 minutes on 2 idle cores (README).
JEONG2020_PLAN = {
    "smoke": {"seeds": (0,), "stages": ("layer2", "layer3"), "bag_visible": (0.2,),
              "vgg": False},
    "synthetic": {"seeds": (0, 1), "stages": ("layer1", "layer2", "layer3", "layer4"),
                  "bag_visible": (0.5,), "vgg": False},
    "gpu": {"seeds": (0, 1, 2), "stages": ("layer1", "layer2", "layer3", "layer4"),
            "bag_visible": (0.0, 0.2, 0.5, 1.0), "vgg": True},
    "paper": {"seeds": (0, 1, 2), "stages": ("layer1", "layer2", "layer3", "layer4"),
              "bag_visible": (), "vgg": True},
}


def _default_bag_visible() -> float:
    from .data.synth_render import SynthKnobs
    return SynthKnobs().bag_visible_prob


def jeong2020_bag_runs(profile: str = "synthetic", dataset: str | None = None
                       ) -> dict[tuple[str, float], Experiment]:
    """The bag-visibility sweep, (variant, p) -> run, first seed, the default set's p included
    (that point is Table 5's run). Empty for a real data set: the knob is SynthReID's."""
    plan = JEONG2020_PLAN[profile]
    if (dataset or "synthreid") != "synthreid":
        return {}
    default_p, seed = _default_bag_visible(), plan["seeds"][0]
    runs = {}
    for p in sorted({default_p, *plan["bag_visible"]}):
        for v in JEONG2020_VARIANTS:
            runs[(v, p)] = (jeong2020_experiment(profile, v, seed=seed, dataset=dataset)
                            if p == default_p else
                            jeong2020_experiment(profile, v, seed=seed, dataset=dataset,
                                                 synth_knobs={"bag_visible_prob": p},
                                                 name=f"jeong2020_{v}_bag{p:g}"))
    return runs


def jeong2020_plan(profile: str = "synthetic", dataset: str | None = None
                   ) -> dict[str, list[Experiment]]:
    """Every run the jeong2020 chapter needs, grouped by what it feeds: "trunk" (the IDE run
    whose trunk initialises the others in the CPU profiles; empty when they start from
    ImageNet), "table5" (baseline / +AM / +AM+UL per backbone and seed), "table6" (the full
    model with the module after each stage, first seed; layer3 is Table 5's run), "bag_sweep"
    (the three variants on SynthReID sets whose carried bag is visible with another
    probability; SynthReID only; the default set's own value, 0.8, is Table 5's first-seed
    run) and "eq8_printed" (the full model trained with Eq. 8 exactly as printed, first seed)."""
    plan = JEONG2020_PLAN[profile]
    backbones = ("resnet", "vgg") if plan["vgg"] else ("resnet",)
    table5 = [jeong2020_experiment(profile, v, b, seed=s, dataset=dataset)
              for b in backbones for v in JEONG2020_VARIANTS for s in plan["seeds"]]
    table6 = [jeong2020_experiment(profile, "full", stage=st, seed=plan["seeds"][0],
                                   dataset=dataset) for st in plan["stages"]]
    default_p = _default_bag_visible()
    sweep = [e for (v, p), e in jeong2020_bag_runs(profile, dataset).items() if p != default_p]
    # Eq. 8 as printed (distances swapped), to test the sign against the text's form
    printed = [jeong2020_experiment(profile, "full", seed=plan["seeds"][0], dataset=dataset,
                                    objective_kwargs={"unif_form": "printed"},
                                    name="jeong2020_full_printed_eq8")]
    trunks = sorted({e.trunk_from for group in (table5, table6, sweep, printed) for e in group
                     if e.trunk_from})
    ide = ide_experiment(profile, dataset)
    trunk = [ide] if ide.run_name in trunks else []
    if len(trunks) > len(trunk):
        raise ValueError(f"jeong2020_plan: trunks from runs outside the plan: {trunks}")
    return {"trunk": trunk, "table5": table5, "table6": table6, "bag_sweep": sweep,
            "eq8_printed": printed}
