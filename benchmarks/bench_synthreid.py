"""How fast SynthReID renders and writes, on one core.

    python benchmarks/bench_synthreid.py [--n 2000] [--size default] [--height 128 --width 64]
                                         [--out DIR] [--json PATH]

Stages, each over the first `n` images of the planned set (its real mix of views, bags and
occluders): render to a PIL image; render + JPEG encode in memory; render + encode + write a file;
and `generate` end to end (plan, render, encode, write, metadata). Numpy and PIL run single
threaded (thread variables set to 1 before numpy is imported). Reports images/s by wall clock
and by process CPU time: on a shared machine the CPU figure is the steadier one.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from reidnb.data.synthetic import (  # noqa: E402
    JPEG_QUALITY,
    SynthKnobs,
    generate,
    plan_dataset,
    render_planned,
)


def _timed(fn, n: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"images": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "img_per_s_wall": round(n / wall, 1), "img_per_s_cpu": round(n / max(cpu, 1e-9), 1)}


def run(n: int, size: str, height: int, width: int, out: Path, seed: int = 0) -> dict:
    knobs = SynthKnobs()
    idents, cams, plan = plan_dataset(size, seed, knobs)
    items = plan[:n]
    n = len(items)
    for cam in cams:  # draw the panoramas once, as a long run would
        cam.panorama(height, width)

    def render_only():
        for it in items:
            render_planned(it, idents, cams, seed, knobs, height, width)

    def render_encode():
        for it in items:
            buf = io.BytesIO()
            render_planned(it, idents, cams, seed, knobs, height, width).save(
                buf, format="JPEG", quality=JPEG_QUALITY)

    def render_write():
        folder = out / "write"
        folder.mkdir(parents=True, exist_ok=True)
        for it in items:
            buf = io.BytesIO()
            render_planned(it, idents, cams, seed, knobs, height, width).save(
                buf, format="JPEG", quality=JPEG_QUALITY)
            with open(folder / it.name, "wb") as fh:
                fh.write(buf.getvalue())

    res = {
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "size": size,
        "height": height,
        "width": width,
        "out": str(out),
        "render": _timed(render_only, n),
        "render_encode": _timed(render_encode, n),
        "render_encode_write": _timed(render_write, n),
    }
    total = len(plan)
    res["generate"] = _timed(
        lambda: generate(out / "generate", size, seed, knobs, height, width), total)
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="images per stage")
    ap.add_argument("--size", default="default")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also save the results here")
    args = ap.parse_args(argv)
    scratch = args.out or Path(tempfile.mkdtemp(prefix="bench_synthreid_"))
    if scratch.exists() and any(scratch.iterdir()):
        raise SystemExit(f"--out {scratch} must be empty or absent")
    try:
        res = run(args.n, args.size, args.height, args.width, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for stage in ("render", "render_encode", "render_encode_write", "generate"):
        r = res[stage]
        print(f"{stage:20s} {r['images']:6d} images  {r['img_per_s_wall']:8.1f} img/s wall"
              f"  {r['img_per_s_cpu']:8.1f} img/s cpu")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
