"""benchmarks/bench_train.py runs end to end in its tiny configuration, and its pieces hold."""

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _bench():
    path = ROOT / "benchmarks" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batch_plan_is_p_by_k_for_as_many_steps_as_asked():
    bench = _bench()
    pids = np.repeat(np.arange(10), 5)
    plan = bench.batch_plan(pids, 4, 7)  # 2 batches an epoch, so 4 epochs drawn
    assert len(plan) == 7
    for batch in plan:
        counts = np.unique(pids[batch], return_counts=True)[1]
        assert len(counts) == 4 and (counts == bench.K).all()


def test_smoke_run_writes_both_pipelines_and_the_ratio(tmp_path):
    bench = _bench()
    out = tmp_path / "bench.json"
    rows = bench.main(["--smoke", "--device", "cpu", "--batches", "16", "--steps", "1",
                       "--warmup", "1", "--workers", "0", "--data", str(tmp_path / "synth"),
                       "--json", str(out)])
    assert [r["pipeline"][:3] for r in rows] == ["(a)", "(b)"]
    assert all(r["images_per_s"] > 0 and r["peak_gpu_mib"] is None for r in rows)
    assert rows[1]["ratio"] == rows[1]["images_per_s"] / rows[0]["images_per_s"]
    record = json.loads(out.read_text())
    assert record["smoke"] and record["arch"] == "resnet18" and record["size"] == [64, 32]
    assert record["device"]["device"] == "cpu" and len(record["results"]) == 2


def test_first_batches_draws_exactly_the_steps_asked_across_epochs():
    bench = _bench()

    class TwoPerEpoch:
        sampler = "pk"

        def epoch_batches(self, rng):
            return [np.array([int(rng.integers(100))]), np.array([7])]

    wrapped = bench._FirstBatches(TwoPerEpoch(), 5)
    batches = wrapped.epoch_batches(np.random.default_rng(0))
    assert len(batches) == 5 and [int(b[0]) for b in batches[1::2]] == [7, 7]
    assert wrapped.sampler == "pk"  # everything else is the wrapped objective's


def test_engine_mode_times_the_engine_against_the_bare_limit(tmp_path):
    bench = _bench()
    out = tmp_path / "engine.json"
    rows = bench.main(["--engine", "--smoke", "--steps", "2", "--rounds", "1", "--data-root",
                       str(tmp_path / "data"), "--json", str(out)])
    assert [r["pipeline"][:3] for r in rows] == ["(d)", "(c)"]
    assert rows[0]["ratio_to_bare"] == 1.0
    assert rows[1]["ratio_to_bare"] == rows[0]["seconds"] / rows[1]["seconds"]
    assert all(r["images_per_s"] > 0 for r in rows)
    saved = json.loads(out.read_text())
    assert saved["experiment"] == "ide" and saved["steps"] == 2 and len(saved["results"]) == 2
