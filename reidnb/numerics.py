"""Numeric paths: which floating-point code a CPU run takes, and a portable mode that takes the
same one on every x86-64 machine.

A training run's numbers depend on more than its seed. On a CPU, torch picks kernels for the
instruction set it finds (ATen's AVX2 or AVX-512 kernels, oneDNN's JIT convolutions, MKL's
GEMM branches, numpy's SIMD loops), and splits reductions over as many threads as there are
cores. Each choice sums in another order, so a few ulps of difference after the first step grow,
over a short chaotic training, into different rank-1 values (12.7 on one machine, 4.8 on another
for the IDE smoke run: issue 12).

The **portable** mode (`REIDNB_NUMERICS=portable`) fixes every one of those choices:

| what varies between machines | what the portable mode does |
|---|---|
| ATen kernels per instruction set | `ATEN_CPU_CAPABILITY=default`: the generic kernels |
| oneDNN (mkldnn) convolutions, JIT per ISA, blocked by cache size | off: ATen's im2col + GEMM |
| NNPACK convolutions (AVX2 or scalar) | off |
| MKL's GEMM branch per CPU | conditional numerical reproducibility, `MKL_CBWR=COMPATIBLE` |
| threads = cores | 2 threads for torch, OpenMP and MKL, whatever the core count |
| numpy's SIMD loops | `NPY_DISABLE_CPU_FEATURES`: the x86-64-v2 baseline only |
| MKL's vector math behind `torch.sqrt` (1 ulp off, which inputs depends on the CPU) | nothing can pin it: the library calls `reidnb.portable_ops.sqrt` instead, in every mode |

It is what `make test` (nbval) and `make notebooks` (the committed smoke notebooks) run under,
so the committed outputs are those of every machine. It costs about 3x in training speed on
2 cores, so the book's main job and the GPU profile run in the **native** mode (the machine's
fastest kernels), and every run record says which path made it (`describe`).

The environment variables are read when numpy is imported and when torch first dispatches, so
the mode must be in force before either loads: `portable_env()` gives the variables for a child
process (the Makefile, nbval's kernels and papermill's inherit them), and `apply()`, called when
`reidnb` is imported, sets them in this process, switches the torch flags and checks that each
took effect, raising with the remedy when one came too late.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

MODE_VAR = "REIDNB_NUMERICS"
MODES = ("native", "portable")
#: Bumped whenever the portable recipe changes: runs made under another recipe get another name.
PORTABLE_VERSION = "portable-v1"
PORTABLE_THREADS = 2
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "MKL_DYNAMIC": "FALSE",
    "MKL_NUM_THREADS": str(PORTABLE_THREADS),
    "OMP_NUM_THREADS": str(PORTABLE_THREADS),
    "NPY_DISABLE_CPU_FEATURES": "X86_V3,X86_V4,AVX512_ICL,AVX512_SPR",
}
#: Variables that steer a numeric path; a run record keeps those that were set.
WATCHED_VARS = (MODE_VAR, *PORTABLE_ENV, "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                "MKL_ENABLE_INSTRUCTIONS", "OMP_WAIT_POLICY")
_NUMPY_DISPATCH = PORTABLE_ENV["NPY_DISABLE_CPU_FEATURES"].split(",")  # numpy 2.x's targets
_MKL_CBWR_BRANCH = 1        # mkl_cbwr.h: the branch-selection setting
_MKL_CBWR_COMPATIBLE = 3    # mkl_cbwr.h: MKL_CBWR_COMPATIBLE


class NumericModeError(RuntimeError):
    """The portable mode was asked for but one of its settings could not take effect."""


def mode() -> str:
    """"portable" or "native", from `REIDNB_NUMERICS` (unset means native)."""
    value = os.environ.get(MODE_VAR, "native").strip().lower() or "native"
    if value not in MODES:
        raise ValueError(f"{MODE_VAR}={os.environ[MODE_VAR]!r}; choose one of {MODES}")
    return value


def is_portable() -> bool:
    return mode() == "portable"


def portable_env() -> dict[str, str]:
    """The environment a child process needs to start in the portable mode."""
    return {MODE_VAR: "portable", **PORTABLE_ENV}


def apply() -> None:
    """Put this process on the portable path when `REIDNB_NUMERICS=portable` (else do nothing):
    set the variables (children inherit them), set torch's thread count and backend flags, pin
    MKL's branch, and check ATen's capability and numpy's SIMD features."""
    if not is_portable():
        return
    numpy_early = "numpy" in sys.modules and not _numpy_is_baseline()
    os.environ.update(PORTABLE_ENV)
    import torch

    torch.set_num_threads(PORTABLE_THREADS)
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    _pin_mkl_branch()
    problems = []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        problems.append(f"ATen already chose its {capability} kernels")
    if numpy_early or not _numpy_is_baseline():
        problems.append("numpy was imported with its SIMD loops enabled")
    if problems:
        env = " ".join(f"{k}={v}" for k, v in portable_env().items())
        raise NumericModeError(
            f"{MODE_VAR}=portable, but {' and '.join(problems)} before reidnb could switch "
            f"them (they are fixed when numpy is imported and when torch runs its first "
            f"operation). Start the process with the whole portable environment, e.g. "
            f"`env {env} ...`, or through `make test` / `make notebooks`, which set it.")


def _pin_mkl_branch() -> None:
    """MKL's conditional numerical reproducibility, set through its service call so that it holds
    even when the variable came after MKL loaded. Skipped where torch has no MKL."""
    lib = _mkl_library()
    if lib is None:
        return
    if lib.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE:
        lib.mkl_serv_cbwr_set(_MKL_CBWR_COMPATIBLE)
    if lib.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE:
        raise NumericModeError(
            "MKL_CBWR=COMPATIBLE could not be set: MKL had already run a routine in this "
            "process; start it with the portable environment (reidnb.numerics.portable_env())")


def _mkl_library():
    import torch

    lib_path = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not lib_path.exists():
        return None
    try:
        lib = ctypes.CDLL(str(lib_path))
        for name in ("mkl_serv_cbwr_get", "mkl_serv_cbwr_set"):
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def mkl_branch() -> str | None:
    """MKL's branch setting in this process: "COMPATIBLE", "AUTO", "OFF", another code, or None
    when torch was built without MKL."""
    lib = _mkl_library()
    if lib is None:
        return None
    code = lib.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH)
    return {1: "OFF", 2: "AUTO", 3: "COMPATIBLE"}.get(code, str(code))


def _numpy_is_baseline() -> bool:
    """True when numpy runs no SIMD loop above the x86-64-v2 baseline (or is not loaded)."""
    np = sys.modules.get("numpy")
    if np is None:
        return True
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        return True
    return not any(features.get(f) for f in _NUMPY_DISPATCH)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (e.g. "AMD EPYC 7B13")."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def path_id() -> str:
    """The numeric path's name in a run's configuration: "native", or the portable recipe's
    version (the same on every machine)."""
    return PORTABLE_VERSION if is_portable() else "native"


def describe(device: str = "cpu") -> dict:
    """The numeric path of this process (on `device`), for a run record."""
    import torch

    gpu = None
    if str(device).startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {
        "mode": path_id(),
        "device": str(device),
        "gpu": gpu,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "mkl_branch": mkl_branch(),
        "numpy_simd": not _numpy_is_baseline(),
        "env": {k: os.environ[k] for k in WATCHED_VARS if k in os.environ},
    }


def same_path(a: dict | None, b: dict | None) -> bool:
    """Whether two `describe()` results name the same numeric path: the portable mode is one path
    on every machine; a native path is the CPU model, its kernels and the thread count."""
    if not a or not b:
        return False
    if a.get("mode") != b.get("mode"):
        return False
    if a["mode"] != "native":
        return True
    if a.get("gpu") or b.get("gpu"):   # a GPU run: its kernels are the GPU's
        keys = ("gpu",)
    else:
        keys = ("cpu_model", "cpu_capability", "threads", "mkldnn", "mkl_branch")
    return all(a.get(k) == b.get(k) for k in keys)


def summary(path: dict | None) -> str:
    """One line for messages: "native: AMD EPYC 7B13, AVX2, 2 threads"."""
    if not path:
        return "unknown (a record made before numeric paths were recorded)"
    if path.get("mode") != "native":
        return f"{path.get('mode')} (recorded on {path.get('cpu_model')})"
    if path.get("gpu"):
        return f"native: {path['gpu']}"
    return (f"native: {path.get('cpu_model')}, {path.get('cpu_capability')}, "
            f"{path.get('threads')} threads")
