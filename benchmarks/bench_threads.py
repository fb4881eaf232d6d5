"""OpenMP wait policy and thread count: what each costs on an idle machine and beside one
competing process (issue 18, item 2).

    .venv/bin/python benchmarks/bench_threads.py [--json benchmarks/results/bench_threads_cpu.json]
    .venv/bin/python benchmarks/bench_threads.py --quick      # a few steps, to check the script

torch's CPU kernels run on a GNU OpenMP pool whose idle threads either spin (ACTIVE, and for a
while under the default policy) or sleep (PASSIVE). Spinning saves the wake-up between two
short kernels, which pays on an idle machine; when another process wants the cores, a spinning
thread burns the time slice the thread it waits for needs. The policy is read once, when torch
loads its OpenMP runtime, so each setting is measured in a fresh process (`--worker`).

Two workloads, each in its own process per setting:
- train: training steps of the synthetic profile's IDE model (ResNet-18, 128x64, last stride 2,
  BN neck, batch 32, SGD), on ready-made tensors: images/s;
- rank: `evaluate_rank` on a Market-1501-sized problem (3,368 x 15,913 random features): seconds.
Two conditions: idle, and with one competing process (torch matrix products on 2 threads,
PASSIVE) started before and stopped after the measurement. Each row prints the ratio to the
PASSIVE row of the same condition and workload, measured in this same invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: name -> environment changes (None removes the variable)
SETTINGS = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": None},
    "default": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None},
    "spin 10k": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"},
    "spin 100k": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "100000"},
    "1 thread": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None, "OMP_NUM_THREADS": "1"},
}

COMPETITOR = """
import torch
torch.set_num_threads(2)
a = torch.randn(384, 384)
while True:
    a = torch.tanh(a @ a.T / 384)
"""


def worker(workload: str, steps: int) -> dict:
    """Runs in the measured process: one workload, its figure as JSON on stdout."""
    import numpy as np
    import torch

    if workload == "train":
        from reidnb.models import build_model
        torch.manual_seed(0)
        model = build_model("ide", 200, backbone="resnet18", last_stride=2, bnneck=True,
                            pretrained=False).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        x, y = torch.randn(32, 3, 128, 64), torch.randint(0, 200, (32,))

        def step():
            loss = torch.nn.functional.cross_entropy(model(x).logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for _ in range(2):
            step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return {"images_per_s": steps * 32 / (time.perf_counter() - t)}
    if workload == "rank":
        from reidnb.metrics import evaluate_rank
        rng = np.random.default_rng(0)  # Market-1501's test split in size: 751 ids, 6 cameras
        q_pids, g_pids = rng.integers(1, 752, 3368), rng.integers(0, 752, 15913)
        q_cams, g_cams = rng.integers(0, 6, 3368), rng.integers(0, 6, 15913)
        centres = rng.normal(size=(752, 64)).astype(np.float32)
        qf = centres[q_pids] + rng.normal(size=(3368, 64)).astype(np.float32)
        gf = centres[g_pids] + rng.normal(size=(15913, 64)).astype(np.float32)
        dist = torch.cdist(torch.from_numpy(qf), torch.from_numpy(gf)).numpy()
        args = (dist, q_pids, g_pids, q_cams, g_cams)
        evaluate_rank(*args)  # warm-up
        best = min(_timed(lambda: evaluate_rank(*args)) for _ in range(max(1, steps // 5)))
        return {"seconds": best}
    raise ValueError(f"unknown workload {workload!r}; choose 'train' or 'rank'")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def setting_env(setting: str, base: dict[str, str]) -> dict[str, str]:
    """`base` with the setting's variables set or removed (the thread count left to torch
    unless the setting names one)."""
    env = dict(base)
    for key, value in SETTINGS[setting].items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if "OMP_NUM_THREADS" not in SETTINGS[setting]:
        env.pop("OMP_NUM_THREADS", None)
    return env


def measure(workload: str, setting: str, steps: int) -> dict:
    env = setting_env(setting, dict(os.environ))
    out = subprocess.run([sys.executable, __file__, "--worker", workload, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{workload} under {setting} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parallel(steps: int, rounds: int = 2) -> list[dict]:
    """The book's runs on a 2-core machine: one process on every core, or one single-thread
    process per core training side by side (the main job's `book.train_ahead`)? Training
    images/s of the same IDE steps, summed over the processes, alternating the two layouts
    `rounds` times; each row's ratio is to the one-process layout of its round."""
    cores = os.cpu_count() or 1
    base_env = {**os.environ, "GOMP_SPINCOUNT": "10000"}
    base_env.pop("OMP_WAIT_POLICY", None)
    cmd = [sys.executable, __file__, "--worker", "train", "--steps", str(steps)]
    rows = []
    for r in range(rounds):
        env = {**base_env, "OMP_NUM_THREADS": str(cores)}
        one = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT,
                                        check=True).stdout.strip().splitlines()[-1])
        env = {**base_env, "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                 for _ in range(cores)]
        each = [json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_s"]
                for p in procs]
        for layout, value in ((f"1 process x {cores} threads", one["images_per_s"]),
                              (f"{cores} processes x 1 thread", sum(each))):
            rows.append({"round": r + 1, "layout": layout, "images_per_s": value,
                         "ratio": value / one["images_per_s"]})
            print(f"round {r + 1} {layout:24s} {value:6.1f} images/s  "
                  f"x{value / one['images_per_s']:.2f}", flush=True)
    return rows


def run(conditions: list[str], workloads: list[str], settings: list[str], steps: int) -> list[dict]:
    rows = []
    for condition in conditions:
        competitor = None
        if condition == "1 competing process":
            env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR], env=env)
            time.sleep(3)  # let it load torch and start multiplying
        try:
            for workload in workloads:
                base = None
                for setting in settings:
                    load = os.getloadavg()[0]
                    fig = measure(workload, setting, steps)
                    value = fig.get("images_per_s", fig.get("seconds"))
                    if setting == "PASSIVE":
                        base = value
                    # speed relative to PASSIVE: > 1 is faster
                    speed = (value / base if "images_per_s" in fig else base / value) if base else None
                    row = {"condition": condition, "workload": workload, "setting": setting,
                           **fig, "speed_vs_passive": speed, "load_1min": load}
                    rows.append(row)
                    print(f"{condition:22s} {workload:5s} {setting:9s} "
                          + (f"{value:7.1f} images/s" if "images_per_s" in fig
                             else f"{value:7.3f} s") +
                          (f"  x{speed:.2f} vs PASSIVE" if speed else "") +
                          f"  (load {load:.1f})", flush=True)
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per setting")
    ap.add_argument("--quick", action="store_true", help="3 steps, two settings, idle only")
    ap.add_argument("--json", default=None, help="also save the figures to this JSON file")
    ap.add_argument("--parallel", action="store_true",
                    help="one process on all cores against one 1-thread process per core")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps)))
        return []
    if args.parallel:
        rows = parallel(args.steps)
    elif args.quick:
        rows = run(["idle"], ["train"], ["PASSIVE", "1 thread"], 3)
    else:
        rows = run(["idle", "1 competing process"], ["train", "rank"], list(SETTINGS), args.steps)
    if args.json:
        sys.path.insert(0, str(ROOT))
        from reidnb.io import atomic_write_json
        from reidnb.numerics import describe
        cpu = describe("cpu")
        atomic_write_json(args.json, {
            "cpu": f"{cpu['cpu_model']}, {cpu['cpu_capability']}, {cpu['cores']} cores",
            "benchmark": "bench_threads", "date": datetime.now(timezone.utc).isoformat(
                timespec="seconds"),
            "command": " ".join(["python", "benchmarks/bench_threads.py",
                                 *(argv if argv is not None else sys.argv[1:])]),
            "cpus": os.cpu_count(), "settings": SETTINGS, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
