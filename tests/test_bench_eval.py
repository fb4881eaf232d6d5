"""benchmarks/bench_eval.py: the cost-growth fit and its code path at tiny sizes (issue 18,
item 5), the time limit on the reference, and the input-form runs. Nothing here is timed: the
checks are on the fit of known timings and on the records' shape."""

from __future__ import annotations

import functools
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def _bench():
    path = ROOT / "benchmarks" / "bench_eval.py"
    spec = importlib.util.spec_from_file_location("bench_eval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("power", [1.0, 2.0, 2.5])
def test_fit_exponent_recovers_a_known_power(power):
    n = np.array([2410, 4820, 9640, 19281])
    p, c = _bench().fit_exponent(n, 3e-7 * n**power)
    assert p == pytest.approx(power, abs=1e-9)
    assert c == pytest.approx(3e-7, rel=1e-6)


def test_fit_exponent_is_the_least_squares_slope_on_log_log_axes():
    # noisy timings: the slope of the least-squares line through (log n, log t)
    n = np.array([100.0, 200.0, 400.0, 800.0])
    t = 0.5 * n**2 * np.array([1.1, 0.9, 1.05, 1.0])
    want = np.polyfit(np.log(n), np.log(t), 1)[0]
    assert _bench().fit_exponent(n, t)[0] == pytest.approx(want, abs=1e-12)


def test_within_stops_a_call_at_its_limit():
    bench = _bench()
    t = time.perf_counter()
    assert bench.within(0.05, lambda: time.sleep(5)) == (None, None)
    assert time.perf_counter() - t < 2
    seconds, out = bench.within(5, lambda: 42)
    assert out == 42 and seconds >= 0


def test_cost_growth_at_tiny_sizes_writes_record_and_figure(tmp_path):
    bench = _bench()
    result = bench.main(["--part", "growth", "--quick", "--sizes", "0.02,0.01",
                         "--out-dir", str(tmp_path)])
    record = json.loads((tmp_path / "eval_cost_growth.json").read_text())
    assert record["rows"] == json.loads(json.dumps(result["growth"]["rows"]))
    assert [r["fraction"] for r in record["rows"]] == [0.01, 0.02]  # smallest first
    for row in record["rows"]:
        assert row["items"] == row["queries"] + row["gallery"]
        assert row["evaluate_rank"]["cmc_equal"]
        rr = row["re_ranking"]
        assert rr["reidnb_s"] > 0 and rr["reference_s"] > 0  # tiny: the reference finishes
        assert rr["max_abs_diff"] < 1e-5
    for task in ("evaluate_rank", "re_ranking"):
        for impl in ("reidnb", "reference"):
            fit = record["exponents"][task][impl]
            assert fit["points"] == 2 and np.isfinite(fit["exponent"])
    assert record["load_start"] >= 0 and record["command"].startswith("python benchmarks/")
    svg = (tmp_path / "eval_cost_growth.svg").read_text()
    assert svg.startswith("<?xml") and "re_ranking, reidnb" in svg


def test_cost_growth_skips_the_reference_after_it_ran_out_of_time(monkeypatch):
    bench = _bench()
    monkeypatch.setattr(bench, "within", lambda limit, fn: (None, None))  # always too slow
    record = bench.cost_growth([0.01, 0.02], reference_limit_s=1.0, isolate=False, log=lambda s: 0)
    notes = [r["re_ranking"]["reference_note"] for r in record["rows"]]
    assert notes == ["did not finish within 1 s", "skipped: a smaller size ran past the limit"]
    assert record["exponents"]["re_ranking"]["reference"] == {"exponent": None, "points": 0}


@pytest.mark.slow  # three fresh processes (torch import each)
def test_reference_child_and_input_forms_run_in_fresh_processes(tmp_path):
    bench = _bench()
    save = str(tmp_path / "ref.npy")
    got = bench.reference_rerank_in_child(0.01, 60.0, save)
    assert got["seconds"] > 0 and np.load(save).shape == bench.fraction_sizes(0.01)
    rows = bench.input_forms(0.01, keys=["np32-c", "np64-view"], log=lambda s: 0)
    assert [r["form"] for r in rows] == ["np32-c", "np64-view"]
    for r in rows:  # each paired with the float32 C-contiguous baseline in its own process
        assert r["max_abs_diff"] < 1e-4 and r["extra_peak_GB"] >= 0
        assert r["ratio"] == r["seconds"] / r["baseline_s"] and len(r["calls_s"]) == 3
    assert "| numpy float64, views of one (N, N) matrix |" in bench.forms_table(rows, 1.0)
