"""Which torch ops give other bits on another CPU, even in the portable numeric mode?

Runs a battery of the ops the library uses (elementwise math, reductions, norms, softmax, GEMMs,
pooling, interpolation, the losses' distance paths, forward and backward) in the portable mode,
once natively and once per CPU model under qemu's user-mode emulator (`qemu-x86_64 -cpu MODEL`,
Debian's qemu-user), and prints every op whose output hash differs. An emulated CPU computes the
approximate instructions (rsqrtps, rcpps) differently from any real one, so an op that reads
them shows up here even though the native machine has no other CPU to compare against. This is
how torch.sqrt's MKL path was found (`reidnb.portable_ops`).

    .venv/bin/python tools/numerics_ops_check.py [--cpu Haswell-v4 EPYC-Rome-v1] [--out r.json]

Exit status 1 when an op in `MUST_AGREE` (what the library calls) differs. About 2 minutes a
CPU model under emulation.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Ops known to differ between CPUs (MKL's vector math); the library does not call them.
KNOWN_UNPINNED = {"torch.sqrt", "pow(0.5)", "torch.atan", "torch.cdist", "torch.sqrt backward",
                  "torch.cdist backward"}


def battery() -> dict[str, str]:
    """SHA-1 (10 hex digits) of each op's output on fixed inputs."""
    import hashlib

    import torch
    import torch.nn.functional as F

    from reidnb import losses, portable_ops
    from reidnb.models.zheng2019 import consistency

    g = torch.Generator().manual_seed(0)
    a = torch.rand(64, 96, generator=g) * 4 - 2
    p = a.abs() + 0.05
    x4 = torch.rand(4, 8, 12, 6, generator=g) * 4 - 2
    a64, p64 = a.double(), p.double()
    pids = torch.arange(16).repeat_interleave(4)

    def digest(t: torch.Tensor) -> str:
        return hashlib.sha1(t.detach().contiguous().numpy().tobytes()).hexdigest()[:10]

    forward = {
        "torch.sqrt": lambda: torch.sqrt(p), "pow(0.5)": lambda: p.pow(0.5),
        "torch.atan": lambda: torch.atan(a), "torch.cdist": lambda: torch.cdist(a, a),
        "portable_ops.sqrt": lambda: portable_ops.sqrt(p),
        "portable_ops.sqrt float64": lambda: portable_ops.sqrt(p64),
        "losses.pairwise_distances": lambda: losses.pairwise_distances(a),
        "losses.batch_hard_triplet": lambda: losses.batch_hard_triplet(a, pids),
        "zheng2019.consistency": lambda: consistency(a[:32], a[32:]),
        "exp": lambda: torch.exp(a), "log": lambda: torch.log(p), "tanh": lambda: torch.tanh(a),
        "sigmoid": lambda: torch.sigmoid(a), "erf": lambda: torch.erf(a),
        "rsqrt": lambda: torch.rsqrt(p), "pow(2)": lambda: a.pow(2), "pow(1.7)": lambda: p.pow(1.7),
        "expm1": lambda: torch.expm1(a), "log1p": lambda: torch.log1p(p),
        "sin": lambda: torch.sin(a), "cos": lambda: torch.cos(a), "reciprocal": lambda: 1 / p,
        "exp float64": lambda: torch.exp(-a64), "log float64": lambda: torch.log(p64),
        "softmax": lambda: F.softmax(a, 1), "log_softmax": lambda: F.log_softmax(a, 1),
        "softplus": lambda: F.softplus(a), "gelu": lambda: F.gelu(a), "elu": lambda: F.elu(a),
        "normalize": lambda: F.normalize(a, dim=1),
        "vector_norm": lambda: torch.linalg.vector_norm(a, dim=1),
        "pairwise_distance": lambda: F.pairwise_distance(a, a.flip(0)),
        "triplet_margin_loss": lambda: F.triplet_margin_loss(a[:20], a[20:40], a[40:60]),
        "cosine_similarity": lambda: F.cosine_similarity(a, a.flip(0)),
        "cross_entropy": lambda: F.cross_entropy(a, torch.arange(64) % 96, label_smoothing=0.1),
        "bce_with_logits": lambda: F.binary_cross_entropy_with_logits(a, (a > 0).float()),
        "interpolate bilinear": lambda: F.interpolate(x4, size=(24, 12), mode="bilinear"),
        "batch_norm": lambda: F.batch_norm(x4, None, None, training=True),
        "layer_norm": lambda: F.layer_norm(x4, (6,)), "var": lambda: a.var(1),
        "mean": lambda: a.mean(1), "logsumexp": lambda: torch.logsumexp(a, 1),
        "mm": lambda: a @ a.t(), "bmm": lambda: torch.bmm(x4.flatten(2), x4.flatten(2).mT),
        "conv2d": lambda: F.conv2d(x4, x4[:4, :, :3, :3], padding=1),
        "adaptive_max_pool2d": lambda: F.adaptive_max_pool2d(x4, 1),
        "randn": lambda: torch.randn(1000, generator=torch.Generator().manual_seed(3)),
    }
    out = {name: digest(fn()) for name, fn in forward.items()}
    backward = {
        "torch.sqrt backward": lambda v: torch.sqrt(v.abs() + 0.05),
        "torch.cdist backward": lambda v: torch.cdist(v, v),
        "portable_ops.sqrt backward": lambda v: portable_ops.sqrt(v.abs() + 0.05),
        "losses.pairwise_distances backward": lambda v: losses.pairwise_distances(v),
        "losses.batch_hard_triplet backward": lambda v: losses.batch_hard_triplet(v, pids),
        "normalize backward": lambda v: F.normalize(v, dim=1),
        "softplus backward": lambda v: F.softplus(v), "tanh backward": lambda v: torch.tanh(v),
        "log_softmax backward": lambda v: F.log_softmax(v, 1),
    }
    for name, fn in backward.items():
        v = a.clone().requires_grad_()
        y = fn(v)
        y.backward(torch.ones_like(y))
        out[name] = digest(v.grad)
    return out


def run_battery(prefix: list[str]) -> dict[str, str]:
    from reidnb.numerics import portable_env

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "battery.json"
        subprocess.run([*prefix, sys.executable, __file__, "--battery", str(out)], check=True,
                       env={**os.environ, **portable_env()}, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return json.loads(out.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", nargs="+", default=["Haswell-v4", "EPYC-Rome-v1"],
                    help="qemu CPU models to emulate (qemu-x86_64 -cpu help)")
    ap.add_argument("--out", help="write the hashes and the differing ops here (JSON)")
    ap.add_argument("--battery", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.battery:
        sys.path.insert(0, str(ROOT))
        Path(args.battery).write_text(json.dumps(battery(), indent=1))
        return 0
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("qemu-x86_64 not found: install Debian's qemu-user "
                         "(apt-get install qemu-user)")
    from reidnb.numerics import cpu_model

    native = run_battery([])
    report = {"native_cpu": cpu_model(), "native": native, "emulated": {}, "differ": {}}
    failed = False
    for model in args.cpu:
        emulated = run_battery([qemu, "-cpu", model])
        differ = sorted(k for k in native if native[k] != emulated.get(k))
        report["emulated"][model], report["differ"][model] = emulated, differ
        unexpected = [k for k in differ if k not in KNOWN_UNPINNED]
        failed |= bool(unexpected)
        print(f"{model}: {len(native) - len(differ)} of {len(native)} ops agree with "
              f"{report['native_cpu']}; differ: {', '.join(differ) or 'none'}"
              + (f"  <- NOT EXPECTED: {', '.join(unexpected)}" if unexpected else ""))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
