"""Training speed of IDE (ResNet-50, 256x128): the classic input pipeline against reidnb's.

    python benchmarks/bench_train.py --device cuda [--steps 50] [--compile] [--json PATH]
    python benchmarks/bench_train.py --smoke   # tiny: ResNet-18, 64x32, a few steps, any device

(a) classic: JPEG files decoded with PIL in DataLoader worker processes, per-image torchvision
    transforms (flip, pad + random crop, to float, normalise, random erasing), batches copied to
    the device, fp32.
(b) reidnb: the images decoded once into a uint8 `ImageCache` held on the device, `BatchAugment`
    on the whole batch there, no worker processes; on CUDA bf16 autocast and channels_last, and
    `torch.compile` with `--compile`.

Both train the same model (IDE, identity cross-entropy, SGD) on the same P x K batches of
SynthReID written as JPEG files to a temporary folder (`--data` to keep and reuse it), at batch
64 (P=16, K=4) and 256 (P=64, K=4). Each configuration runs `--warmup` steps, then `--steps`
timed steps; it prints images/s, peak GPU memory and the ratio (b)/(a). The time to build the
cache (decoding every JPEG once) is printed apart: it is paid once per run, not per step.

On a CPU (issue 18, item 1) the question is another: how close the engine trains to what the
machine can do at all.

    python benchmarks/bench_train.py --engine [--experiment ide] [--steps 60] [--rounds 2]
        [--variants] [--json benchmarks/results/bench_train_cpu.json]

(c) engine: `reidnb.train.engine.fit` on the registered experiment's synthetic profile (IDE:
    ResNet-18, 128x64, its batch, sampler and augmentation, the epoch's checkpoint included);
(d) bare limit: the same model's forward + backward + optimizer step on ready-made tensors.
Both run `--steps` steps, alternating (d), (c) for `--rounds` rounds; the best round of each is
kept and (c)/(d) printed. `--variants` also times the bare limit with channels_last,
torch.compile (inductor) and the foreach optimizer, as ratios to the plain bare limit.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import reidnb  # noqa: F401  (first: it sets how torch's threads wait before torch loads)
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from reidnb.data import build_dataset
from reidnb.data.cache import ImageCache
from reidnb.data.samplers import identity_batches
from reidnb.data.synthetic import generate
from reidnb.data.transforms import IMAGENET_MEAN, IMAGENET_STD, BatchAugment
from reidnb.train.engine import device_info, resolve_device
from reidnb.models import build_model
from reidnb.train.objectives import IdentityObjective

K = 4  # images per identity in every batch


class JPEGDataset(Dataset):
    """The classic pipeline's dataset: decode one JPEG with PIL, transform it, return it."""

    def __init__(self, paths: list[str], pids: list[int], transform):
        self.paths, self.pids, self.transform = paths, pids, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            image = im.convert("RGB")
        return self.transform(image), self.pids[i]


def classic_transform(height: int, width: int, pad: int, erasing_p: float) -> v2.Compose:
    """The per-image recipe that `BatchAugment` replaces."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize((height, width), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.Pad(pad),
        v2.RandomCrop((height, width)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.RandomErasing(erasing_p, value=0),
    ])


def batch_plan(pids: np.ndarray, p: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    """At least `steps` P x K batches: as many epochs of `identity_batches` as it takes."""
    rng = np.random.default_rng(seed)
    plan: list[np.ndarray] = []
    while len(plan) < steps:
        plan += identity_batches(pids, p, K, rng)
    return plan[:steps]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _model(args, num_classes: int, device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("ide", num_classes, backbone=args.arch, last_stride=1, bnneck=False,
                        pretrained=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def _sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)


def run_classic(args, records, num_classes: int, plan, device: torch.device) -> dict:
    """(a): PIL + torchvision per image in DataLoader workers, fp32."""
    model = _model(args, num_classes, device, channels_last=False)
    opt = _sgd(model)
    data = JPEGDataset([r.path for r in records], [r.pid for r in records],
                       classic_transform(args.height, args.width, args.pad, args.erasing_p))
    loader = DataLoader(data, batch_sampler=[b.tolist() for b in plan], num_workers=args.workers,
                        pin_memory=device.type == "cuda", persistent_workers=False,
                        prefetch_factor=4 if args.workers else None)
    _reset_peak(device)
    t0 = None
    for step, (images, pids) in enumerate(loader):
        if step == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        images = images.to(device, non_blocking=True)
        pids = pids.to(device, non_blocking=True)
        loss = torch.nn.functional.cross_entropy(model(images).logits, pids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images_per_s": args.steps * len(plan[0]) / seconds,
            "peak_gpu_mib": _peak_mib(device), "last_loss": float(loss.detach())}


def run_reidnb(args, cache: ImageCache, num_classes: int, plan, device: torch.device) -> dict:
    """(b): device-resident cache, batched augmentation, bf16 + channels_last on CUDA."""
    cuda = device.type == "cuda"
    model = _model(args, num_classes, device, channels_last=cuda)
    opt = _sgd(model)
    train_model = torch.compile(model) if args.compile and cuda else model
    objective = IdentityObjective(cache, BatchAugment(pad=args.pad, erasing_p=args.erasing_p),
                                  sampler="pk", num_identities=len(plan[0]) // K, num_instances=K)
    gen = torch.Generator().manual_seed(0)
    _reset_peak(device)
    t0 = None
    for step, batch in enumerate(plan):
        if step == args.warmup:
            _sync(device)
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = objective.step(train_model, batch, gen, device)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images_per_s": args.steps * len(plan[0]) / seconds,
            "peak_gpu_mib": _peak_mib(device), "last_loss": float(loss.detach())}


def prepare_data(args) -> tuple[Path, bool]:
    """SynthReID as JPEG files (generated unless `--data` already holds it)."""
    if args.data and (Path(args.data) / "synthreid.json").exists():
        return Path(args.data), False
    folder = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="bench_train_"))
    t = time.perf_counter()
    generate(folder, size=args.synth_size, seed=0, height=args.height, width=args.width,
             overwrite=folder.exists())
    print(f"SynthReID {args.synth_size} at {args.height}x{args.width} written to {folder} "
          f"({time.perf_counter() - t:.0f} s)")
    return folder, args.data is None


def format_table(rows: list[dict]) -> str:
    lines = ["| batch | pipeline | images/s | peak GPU memory | (b)/(a) |", "|---|---|---|---|---|"]
    for r in rows:
        mem = "n/a (CPU)" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib'] / 1024:.2f} GiB"
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        lines.append(f"| {r['batch']} | {r['pipeline']} | {r['images_per_s']:,.0f} | {mem} | "
                     f"{ratio} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cuda:1, cpu or auto")
    ap.add_argument("--steps", type=int, default=50, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--batches", default="64,256", help="batch sizes, each P x 4")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--pad", type=int, default=10)
    ap.add_argument("--erasing-p", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="DataLoader worker processes of the classic pipeline")
    ap.add_argument("--synth-size", default="default", help="SynthReID size to write")
    ap.add_argument("--data", default=None, help="SynthReID folder to write or reuse")
    ap.add_argument("--compile", action="store_true", help="torch.compile reidnb's model (CUDA)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny check: resnet18, 64x32, batches 16 and 32, 3 steps, 2 workers")
    ap.add_argument("--json", default=None, help="also save the figures to this JSON file")
    ap.add_argument("--engine", action="store_true",
                    help="CPU: the engine's fit() against the bare limit (see the docstring)")
    ap.add_argument("--experiment", default="ide", help="--engine: the registered experiment")
    ap.add_argument("--rounds", type=int, default=2, help="--engine: alternating rounds")
    ap.add_argument("--variants", action="store_true",
                    help="--engine: also channels_last, foreach, torch.compile")
    ap.add_argument("--data-root", default="data", help="--engine: where SynthReID lives")
    args = ap.parse_args(argv)
    if args.smoke:  # other defaults; options given on the command line still win
        ap.set_defaults(arch="resnet18", height=64, width=32, pad=4, batches="16,32", steps=3,
                        warmup=1, synth_size="smoke", workers=min(2, os.cpu_count() or 1))
        args = ap.parse_args(argv)
    return args


class _FirstBatches:
    """An objective whose epochs are the first `steps` batches of the wrapped one's."""

    def __init__(self, objective, steps: int):
        self.objective, self.steps = objective, steps

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def epoch_batches(self, rng):
        batches = []
        while len(batches) < self.steps:
            batches += self.objective.epoch_batches(rng)
        return batches[:self.steps]


def _bare_steps(model, opt, x, y, steps: int, channels_last: bool = False) -> float:
    """Seconds for `steps` forward + backward + optimizer steps on ready-made tensors."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    t = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def engine_vs_bare(args) -> list[dict]:
    """(c) the engine against (d) the bare limit, on the CPU, in this process."""
    from dataclasses import replace

    from reidnb.experiments import OBJECTIVES, build_for, dataset_root, load_data
    from reidnb.papers import experiment
    from reidnb.train.engine import build_optimizer, fit

    exp = experiment(args.experiment, "smoke" if args.smoke else "synthetic")
    dataset_root(exp, args.data_root)
    ds, caches = load_data(exp, args.data_root)
    cfg = replace(exp.train, epochs=1, warmup_epochs=0, lr_steps=())
    objective = OBJECTIVES[exp.objective](caches["train"], augment=BatchAugment(**exp.augment),
                                          **exp.objective_kwargs)
    batch_size = len(objective.epoch_batches(np.random.default_rng(0))[0])
    n = args.steps

    def fresh_model():
        torch.manual_seed(0)
        kwargs = {**exp.model_kwargs, "pretrained": False}
        return build_for(replace(exp, model_kwargs=kwargs), ds.num_train_pids).train()

    x = torch.randn(batch_size, 3, exp.height, exp.width)
    y = torch.randint(0, ds.num_train_pids, (batch_size,))
    first = _FirstBatches(objective, n)
    engine_s, bare_s = [], []
    for _ in range(args.rounds):
        model = fresh_model()
        _bare_steps(model, build_optimizer(model, cfg), x, y, 2)  # warm-up
        bare_s.append(_bare_steps(model, build_optimizer(model, cfg), x, y, n))
        with tempfile.TemporaryDirectory(prefix="bench_engine_") as run_dir:
            model = fresh_model()
            t = time.perf_counter()
            fit(model, first, cfg, run_dir, "cpu", progress=False)
            engine_s.append(time.perf_counter() - t)
    rows = [{"pipeline": "(d) bare limit: forward + backward + step on ready tensors",
             "seconds": min(bare_s), "all_seconds": bare_s},
            {"pipeline": "(c) engine: fit() with batches, augmentation, checkpoint",
             "seconds": min(engine_s), "all_seconds": engine_s}]
    if args.variants:
        variants = [("(d) + channels_last", {"channels_last": True}),
                    ("(d) + foreach optimizer", {"foreach": True}),
                    ("(d) + torch.compile (inductor)", {"compile": True})]
        for name, v in variants:
            model = fresh_model()
            if v.get("channels_last"):
                model = model.to(memory_format=torch.channels_last)
            opt = build_optimizer(model, cfg)
            if v.get("foreach"):
                for group in opt.param_groups:
                    group["foreach"] = True
            run_model = model
            t = time.perf_counter()
            if v.get("compile"):
                run_model = torch.compile(model)
            _bare_steps(run_model, opt, x, y, 2, v.get("channels_last", False))  # warm-up
            warm = time.perf_counter() - t
            best = min(_bare_steps(run_model, opt, x, y, n, v.get("channels_last", False))
                       for _ in range(args.rounds))
            rows.append({"pipeline": name, "seconds": best, "warmup_s": warm})
    bare = rows[0]["seconds"]
    for r in rows:
        r["images_per_s"] = n * batch_size / r["seconds"]
        r["ratio_to_bare"] = bare / r["seconds"]
    print(f"{exp.name} ({exp.profile}): {exp.model_kwargs.get('backbone')} at "
          f"{exp.height}x{exp.width}, batch {batch_size}, {n} steps x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, load {os.getloadavg()[0]:.1f}")
    for r in rows:
        print(f"  {r['pipeline']:62s} {r['images_per_s']:7.1f} images/s  "
              f"{r['ratio_to_bare']:.2f} of (d)")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.engine:
        rows = engine_vs_bare(args)
        if args.json:
            from reidnb.io import atomic_write_json
            atomic_write_json(args.json, {
                "benchmark": "bench_train --engine", "smoke": args.smoke,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["python", "benchmarks/bench_train.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
                "device": device_info(torch.device("cpu")), "experiment": args.experiment,
                "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "load_1min_end": os.getloadavg()[0], "steps": args.steps,
                "rounds": args.rounds, "results": rows})
        return rows
    if device.type == "cpu" and not args.smoke:
        print("no CUDA device: ResNet-50 at 256x128 on a CPU takes hours, so the --smoke "
              "configuration runs instead; its figures are not the benchmark's", file=sys.stderr)
        args = parse_args([*(argv if argv is not None else sys.argv[1:]), "--smoke"])
    folder, remove = prepare_data(args)
    try:
        ds = build_dataset("synthreid", folder)
        records, num_classes = ds.train, ds.num_train_pids  # train pids are 0..N-1
        t = time.perf_counter()
        cache = ImageCache.from_records(records, args.height, args.width).to(device)
        _sync(device)
        cache_s = time.perf_counter() - t
        print(f"{device_info(device)}; {args.arch} at {args.height}x{args.width}; "
              f"{len(records)} training images, {num_classes} identities; cache built in "
              f"{cache_s:.1f} s ({cache.images.numel() / 2**20:.0f} MiB uint8 on {device})")
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            plan = batch_plan(cache.pids.cpu().numpy(), batch // K, args.warmup + args.steps)
            classic = run_classic(args, records, num_classes, plan, device)
            ours = run_reidnb(args, cache, num_classes, plan, device)
            ours["ratio"] = ours["images_per_s"] / classic["images_per_s"]
            rows += [{"batch": batch, "pipeline": "(a) classic: PIL + torchvision + DataLoader, "
                      "fp32", **classic},
                     {"batch": batch, "pipeline": "(b) reidnb: device cache + BatchAugment"
                      + (", bf16, channels_last" if device.type == "cuda" else ", fp32 (CPU)")
                      + (", compile" if args.compile and device.type == "cuda" else ""), **ours}]
            print(f"batch {batch}: (a) {classic['images_per_s']:,.0f} images/s, (b) "
                  f"{ours['images_per_s']:,.0f} images/s, (b)/(a) {ours['ratio']:.2f}x", flush=True)
        print()
        print(format_table(rows))
        if args.json:
            from reidnb.io import atomic_write_json
            atomic_write_json(args.json, {
                "benchmark": "bench_train", "smoke": args.smoke,
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["python", "benchmarks/bench_train.py",
                                     *(argv if argv is not None else sys.argv[1:])]),
                "device": device_info(device), "arch": args.arch,
                "size": [args.height, args.width], "steps": args.steps, "warmup": args.warmup,
                "workers": args.workers, "compile": args.compile,
                "train_images": len(records), "cache_build_s": cache_s, "results": rows})
        return rows
    finally:
        if remove:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
