"""benchmarks/bench_threads.py: each setting's environment is what its name says."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_threads",
                                                  ROOT / "benchmarks" / "bench_threads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_setting_sets_or_removes_its_variables():
    bench = _bench()
    base = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "5", "OMP_NUM_THREADS": "2",
            "PATH": "/bin"}
    default = bench.setting_env("default", base)
    assert "OMP_WAIT_POLICY" not in default and "GOMP_SPINCOUNT" not in default
    assert "OMP_NUM_THREADS" not in default and default["PATH"] == "/bin"
    assert bench.setting_env("ACTIVE", base)["OMP_WAIT_POLICY"] == "ACTIVE"
    spin = bench.setting_env("spin 10k", base)
    assert spin["GOMP_SPINCOUNT"] == "10000" and "OMP_WAIT_POLICY" not in spin
    one = bench.setting_env("1 thread", base)
    assert one["OMP_NUM_THREADS"] == "1" and one["OMP_WAIT_POLICY"] == "PASSIVE"
    assert base["GOMP_SPINCOUNT"] == "5"  # the caller's environment is not changed


def test_the_training_worker_reports_a_speed():
    fig = _bench().worker("train", 1)
    assert set(fig) == {"images_per_s"} and fig["images_per_s"] > 0
