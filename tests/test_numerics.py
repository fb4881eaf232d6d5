"""The portable numeric mode (reidnb.numerics): one floating-point path on every x86-64 CPU.

The committed smoke notebooks are compared exactly by nbval, so their training numbers must not
depend on the CPU that runs `make test`. Another machine is simulated here by the variables that
cap each library's instruction set and by the thread count and core affinity; a short training
run's weights must hash the same under all of them in the portable mode, and (the control that
shows the check can fail) differ between ATen's generic and native kernels in the native mode.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from reidnb import numerics

# A short training run touching what the chapters use: conv, BN, pooling, linear, SGD, softmax
# cross-entropy, random init and augmentation noise from torch, a numpy reduction.
FINGERPRINT = r"""
import hashlib, json, sys
import numpy as np
import reidnb, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=8)
opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
g = torch.Generator().manual_seed(1)
for _ in range(3):
    x = torch.randn(8, 3, 64, 32, generator=g)
    y = torch.randint(0, 8, (8,), generator=g)
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
h = hashlib.sha1()
for v in m.state_dict().values():
    h.update(v.numpy().tobytes())
h.update(np.float64(np.exp(np.linspace(0, 3, 1001)).sum()).tobytes())
print(json.dumps({"hash": h.hexdigest(), "path": reidnb.numerics.describe()}))
"""

SIMULATED_MACHINES = {
    "as is": {},
    "ATen AVX2 asked for": {"ATEN_CPU_CAPABILITY": "avx2"},
    "MKL capped at SSE4.2, oneDNN at SSE4.1": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                                               "ONEDNN_MAX_CPU_ISA": "SSE41"},
    "1 thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "4 threads": {"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"},
    "one core": {"__taskset__": "0"},
}


def _fingerprint(env_changes: dict, portable: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in numerics.WATCHED_VARS or k == "OMP_WAIT_POLICY"}
    cmd = [sys.executable, "-c", FINGERPRINT]
    changes = dict(env_changes)
    cores = changes.pop("__taskset__", None)
    if cores is not None:
        if shutil.which("taskset") is None:
            pytest.skip("taskset is not installed")
        cmd = ["taskset", "-c", cores, *cmd]
    env.update(changes)
    if portable:
        env.update(numerics.portable_env())
        env.update(changes)  # the simulated machine's own settings come on top
        env[numerics.MODE_VAR] = "portable"
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_portable_mode_gives_the_same_weights_on_every_simulated_machine():
    results = {name: _fingerprint(env, portable=True) for name, env in SIMULATED_MACHINES.items()}
    hashes = {name: r["hash"] for name, r in results.items()}
    assert len(set(hashes.values())) == 1, f"portable mode differs between machines: {hashes}"
    for r in results.values():
        p = r["path"]
        assert (p["mode"], p["cpu_capability"], p["threads"], p["mkldnn"], p["mkl_branch"],
                p["numpy_simd"]) == ("portable-v1", "DEFAULT", 2, False, "COMPATIBLE", False)


@pytest.mark.slow
def test_native_mode_differs_between_kernels_so_the_check_can_fail():
    native = _fingerprint({}, portable=False)
    if native["path"]["cpu_capability"] == "DEFAULT":
        pytest.skip("this CPU has no vector kernels to compare with")
    generic = _fingerprint({"ATEN_CPU_CAPABILITY": "default"}, portable=False)
    assert native["hash"] != generic["hash"]
    assert native["path"]["mode"] == "native" and generic["path"]["cpu_capability"] == "DEFAULT"


def test_portable_request_after_torch_chose_its_kernels_is_an_error():
    env = {k: v for k, v in os.environ.items() if k not in numerics.WATCHED_VARS}
    env[numerics.MODE_VAR] = "portable"
    code = "import torch; torch.ones(4).sum(); import reidnb"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "NumericModeError" in proc.stderr and "ATen already chose" in proc.stderr
    assert "make test" in proc.stderr and "ATEN_CPU_CAPABILITY=default" in proc.stderr


def test_an_unknown_mode_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(numerics.MODE_VAR, "fast")
    with pytest.raises(ValueError, match=r"REIDNB_NUMERICS='fast'.*'native', 'portable'"):
        numerics.mode()


def test_describe_names_this_process_path():
    import torch

    p = numerics.describe()
    assert p["mode"] == "native" and p["device"] == "cpu" and p["gpu"] is None
    assert p["threads"] == torch.get_num_threads()
    assert p["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert p["cpu_model"] and isinstance(p["env"], dict)


def test_same_path_portable_is_one_path_native_is_per_machine():
    a = {"mode": "native", "cpu_model": "X", "cpu_capability": "AVX2", "threads": 2,
         "mkldnn": True, "mkl_branch": "OFF"}
    assert numerics.same_path(a, dict(a))
    assert not numerics.same_path(a, dict(a, threads=4))
    assert not numerics.same_path(a, dict(a, cpu_capability="AVX512"))
    assert not numerics.same_path(a, dict(a, cpu_model="Y"))
    p = dict(a, mode="portable-v1")
    assert numerics.same_path(p, dict(p, cpu_model="Y", threads=16))
    assert not numerics.same_path(p, dict(p, mode="portable-v2"))
    assert not numerics.same_path(a, None)


def test_cli_prints_the_portable_environment():
    from reidnb.cli import main

    proc = subprocess.run([sys.executable, "-m", "reidnb", "numerics", "env"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pairs = dict(w.split("=", 1) for w in proc.stdout.split())
    assert pairs == numerics.portable_env()
    assert main(["numerics", "portable"]) == 2  # no command to run
