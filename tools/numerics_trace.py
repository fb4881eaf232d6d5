"""Where do two machines' runs part? A fingerprint of every module output of a run's first steps.

The portable numeric mode (`reidnb.numerics`) is meant to give the same bits on every x86-64
CPU. When a committed smoke notebook fails nbval on one machine only, the run that differs
trains to other numbers after a few chaotic steps, and its end result says nothing about where
the first bit changed. This tool trains one smoke run from scratch in a temporary runs folder
(after the run it starts from, untraced, when it has one) with a global forward hook that
records, for the first `--calls` module calls, the module's class, its output's shape and a
SHA-1 of the output's bytes; a second machine's trace, given with `--compare`, is then read
call by call up to the first that differs.

    .venv/bin/python -m reidnb numerics portable -- .venv/bin/python tools/numerics_trace.py \\
        lakshmi_tutorial_batch_hard --out trace.json [--compare benchmarks/results/...json]

The run is named as the smoke book plans it (`book.mainjob.book_runs("smoke")`, full scope);
it trains in the portable mode only (a native-mode trace differs by design).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def trace_run(name: str, calls: int, data_root: str) -> dict:
    import torch

    from reidnb import numerics
    from reidnb.book.mainjob import book_runs
    from reidnb.experiments import run_experiment

    if not numerics.is_portable():
        raise SystemExit("run it in the portable mode: python -m reidnb numerics portable -- ...")
    exps = {e.name: e for e in book_runs("smoke", "synthreid", "full")}
    if name not in exps:
        raise SystemExit(f"no smoke run named {name!r}; the smoke book's runs: "
                         f"{', '.join(sorted(exps))}")
    rows: list[dict] = []

    def hook(module, inputs, output):
        if len(rows) >= calls or not isinstance(output, torch.Tensor):
            return
        data = output.detach().contiguous().cpu()
        rows.append({"call": len(rows), "module": type(module).__name__,
                     "shape": list(data.shape), "training": module.training,
                     "sha1": hashlib.sha1(data.numpy().tobytes()).hexdigest()[:16]})

    exp = exps[name]
    by_run_name = {e.run_name: e for e in exps.values()}
    with tempfile.TemporaryDirectory() as runs:
        if exp.trunk_from:   # the run it starts from trains first, untraced
            run_experiment(by_run_name[exp.trunk_from], data_root, runs, "cpu", progress=False)
        handle = torch.nn.modules.module.register_module_forward_hook(hook)
        try:
            record = run_experiment(exp, data_root, runs, "cpu", progress=False)
        finally:
            handle.remove()
    return {"run": record["run_name"], "numerics": numerics.describe("cpu"),
            "metrics": record["metrics"], "losses": [h.get("loss") for h in record["history"]],
            "calls": rows}


def first_difference(mine: dict, theirs: dict) -> str:
    """One paragraph: where two traces of the same run part (or that they do not)."""
    from reidnb import numerics

    if mine["run"] != theirs["run"]:
        return f"not the same run: {mine['run']} and {theirs['run']}"
    for a, b in zip(mine["calls"], theirs["calls"]):
        if a != b:
            return (f"the traces part at module call {a['call']}: {a['module']} "
                    f"{a['shape']} (training {a['training']}), {a['sha1']} here and "
                    f"{b['module']} {b['shape']} {b['sha1']} there; here "
                    f"{numerics.summary(mine['numerics'])}, there "
                    f"{numerics.summary(theirs['numerics'])}")
    n = min(len(mine["calls"]), len(theirs["calls"]))
    return f"the first {n} module calls agree bit for bit"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a smoke run's name, e.g. lakshmi_tutorial_batch_hard")
    ap.add_argument("--calls", type=int, default=600, help="module calls to fingerprint")
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--out", required=True, help="where to write this machine's trace (JSON)")
    ap.add_argument("--compare", default=None, help="another machine's trace to read against")
    args = ap.parse_args(argv)
    from reidnb.io import atomic_write_json, read_json

    trace = trace_run(args.run, args.calls, args.data_root)
    atomic_write_json(args.out, trace)
    print(f"{trace['run']}: {len(trace['calls'])} module calls, losses {trace['losses']}, "
          f"metrics {trace['metrics']}")
    if args.compare:
        print(first_difference(trace, read_json(args.compare)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
