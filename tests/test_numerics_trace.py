"""tools/numerics_trace.py: two machines' traces of one run read up to the first module call
that differs."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "numerics_trace", Path(__file__).resolve().parents[1] / "tools" / "numerics_trace.py")
trace_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(trace_tool)

NUMERICS = {"mode": "portable-v1", "cpu_model": "AMD EPYC", "cpu_capability": "DEFAULT",
            "threads": 2}


def _trace(shas, run="r-synthreid-1"):
    return {"run": run, "numerics": NUMERICS,
            "calls": [{"call": i, "module": "Conv2d", "shape": [2, 3], "training": True,
                       "sha1": s} for i, s in enumerate(shas)]}


def test_the_first_call_whose_output_differs_is_named():
    text = trace_tool.first_difference(_trace(["a", "b", "c", "d"]), _trace(["a", "b", "x", "y"]))
    assert text.startswith("the traces part at module call 2: Conv2d")
    assert "c here" in text and "x there" in text


def test_agreeing_traces_and_other_runs_say_so():
    assert trace_tool.first_difference(_trace(["a", "b"]), _trace(["a", "b", "c"])) == \
        "the first 2 module calls agree bit for bit"
    assert trace_tool.first_difference(_trace(["a"]), _trace(["a"], run="s")).startswith(
        "not the same run")
