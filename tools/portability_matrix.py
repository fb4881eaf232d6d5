"""Run the nbval suite under simulated other machines: does `make test` pass on every x86-64 CPU?

A machine differs from this one in its instruction set (which ATen, oneDNN, MKL and numpy kernels
run) and in its core count (how reductions are split over threads). Each cell of the matrix
simulates one such machine with the variables that cap each library's instruction set, a thread
count, or a CPU affinity of one core, and runs nbval over the committed notebooks in the portable
numeric mode (reidnb/numerics.py) with an empty `data/` and `runs/`, so every smoke run trains
from scratch. The simulated machine's variables are set *after* the portable mode's, as a user's
shell would have them. A `native` control cell runs without the portable mode under ATen's
generic kernels: it must fail, which shows that the matrix can tell two numeric paths apart.

    .venv/bin/python tools/portability_matrix.py                 # every cell (about 8 min each)
    .venv/bin/python tools/portability_matrix.py --cells as-is one-core
    .venv/bin/python tools/portability_matrix.py --quick         # the IDE smoke run per cell

`--quick` trains only the IDE smoke run (`reidnb run ide --profile smoke`) per cell and compares
the rank-1, mAP and final loss: a minute a cell instead of the whole suite. The results are printed
as a table and written to build/portability_matrix.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reidnb.numerics import WATCHED_VARS, portable_env  # noqa: E402


def _has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def cells() -> dict[str, dict]:
    """name -> {"env": variables set on top of the portable mode, "cores": affinity or None,
    "portable": False for the control, "expect": "pass" or "fail"}."""
    out = {
        "as-is": {"env": {}},
        "aten-default": {"env": {"ATEN_CPU_CAPABILITY": "default"}},
        "aten-avx2": {"env": {"ATEN_CPU_CAPABILITY": "avx2"}},
        "onednn-sse41": {"env": {"ONEDNN_MAX_CPU_ISA": "SSE41"}},
        "onednn-avx2": {"env": {"ONEDNN_MAX_CPU_ISA": "AVX2"}},
        "mkl-sse42": {"env": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}},
        "mkl-avx2-cbwr-auto": {"env": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AUTO"}},
        "threads-1": {"env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}},
        "threads-2": {"env": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}},
        "threads-4": {"env": {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}},
        "one-core": {"env": {}, "cores": "0"},
        "native-generic-kernels": {"env": {"ATEN_CPU_CAPABILITY": "default"}, "portable": False,
                                   "expect": "fail"},
    }
    if _has_avx512():
        out["aten-avx512"] = {"env": {"ATEN_CPU_CAPABILITY": "avx512"}}
        out["onednn-avx512"] = {"env": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}}
        out["mkl-avx512"] = {"env": {"MKL_ENABLE_INSTRUCTIONS": "AVX512"}}
    for c in out.values():
        c.setdefault("cores", None)
        c.setdefault("portable", True)
        c.setdefault("expect", "pass")
    return out


def cell_env(cell: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in WATCHED_VARS}
    if cell["portable"]:
        env.update(portable_env())
    env.update(cell["env"])
    if not cell["portable"]:
        env["REIDNB_NUMERICS"] = "native"
    return env


def workspace(tmp: Path) -> Path:
    """What a fresh clone holds before `make test`: every tracked file (the chapters read
    benchmark records and book pages too), the library linked (it is the one installed), and
    no data/ or runs/."""
    ws = tmp / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    for rel in tracked:
        if rel.startswith("reidnb/") or not (ROOT / rel).is_file():
            continue
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, ws / rel)
    (ws / "reidnb").symlink_to(ROOT / "reidnb", target_is_directory=True)
    return ws


def run_cell(name: str, cell: dict, quick: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"matrix-{name}-") as tmp:
        ws = workspace(Path(tmp))
        if quick:
            cmd = [sys.executable, "-m", "reidnb", "run", "ide", "--profile", "smoke",
                   "--device", "cpu"]
        else:
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                   "notebooks", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
        if cell["cores"] is not None:
            cmd = ["taskset", "-c", cell["cores"], *cmd]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ws, env=cell_env(cell), capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        out = {"cell": name, "env": cell["env"], "cores": cell["cores"],
               "portable": cell["portable"], "expect": cell["expect"],
               "returncode": proc.returncode, "seconds": round(seconds, 1),
               "tail": (proc.stdout + proc.stderr)[-1500:]}
        if quick:
            records = list((ws / "runs").glob("*/record.json"))
            if records:
                rec = json.loads(records[0].read_text())
                metrics = next(iter(rec["metrics"].values()))
                last = {k: v for k, v in rec["history"][-1].items()
                        if k.startswith("loss") or k == "acc"}
                out["result"] = {"rank1": metrics["rank1"], "mAP": metrics["mAP"], **last}
        else:
            last = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or [""]
            out["result"] = last[0]
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="*", help="cell names (default: all); --list shows them")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the IDE smoke run only, per cell")
    ap.add_argument("--out", default=str(ROOT / "build" / "portability_matrix.json"))
    args = ap.parse_args(argv)
    table = cells()
    if args.list:
        for name, c in table.items():
            print(f"{name:24s} {c}")
        return 0
    chosen = args.cells or list(table)
    unknown = [c for c in chosen if c not in table]
    if unknown:
        print(f"error: unknown cells {unknown}; choose from {list(table)}", file=sys.stderr)
        return 2
    results = []
    for name in chosen:
        r = run_cell(name, table[name], args.quick)
        results.append(r)
        print(f"{name:24s} exit {r['returncode']} ({r['seconds']:.0f} s)  {r.get('result')}",
              flush=True)
    ok = True
    if args.quick:
        portable = [r["result"] for r in results if r["portable"] and "result" in r]
        same = all(p == portable[0] for p in portable)
        for r in results:
            r["verdict"] = ("same" if r.get("result") == (portable[0] if portable else None)
                            else "differs")
            if r["portable"] and (r["returncode"] != 0 or r["verdict"] != "same"):
                ok = False
        print(f"portable cells identical: {same}")
    else:
        for r in results:
            passed = r["returncode"] == 0
            r["verdict"] = "as expected" if passed == (r["expect"] == "pass") else "UNEXPECTED"
            ok = ok and r["verdict"] == "as expected"
            print(f"{r['cell']:24s} expected {r['expect']}: {r['verdict']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"quick": args.quick, "cells": results}, indent=2))
    print(f"written: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
