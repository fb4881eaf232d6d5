"""reidnb.threads: `import reidnb` chooses how torch's idle threads wait, only when nobody else
has and torch is not loaded yet (the runtime reads it once, when torch loads it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = ("import json, os, sys; {first}; import reidnb.threads as t; "
         "print(json.dumps({{'env': {{v: os.environ.get(v) for v in t.WAIT_VARS}}, "
         "'describe': t.describe()}}))")


def _probe(first: str = "pass", **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], cwd=ROOT,
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_reidnb_first_sets_the_default():
    from reidnb.threads import DEFAULT_WAIT
    got = _probe("import reidnb")
    assert got["env"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None} | DEFAULT_WAIT
    assert got["describe"] == {"settings": DEFAULT_WAIT, "source": "reidnb"}


def test_a_users_setting_is_kept():
    got = _probe("import reidnb", OMP_WAIT_POLICY="ACTIVE")
    assert got["env"]["OMP_WAIT_POLICY"] == "ACTIVE" and got["env"]["GOMP_SPINCOUNT"] is None
    assert got["describe"]["source"] == "environment"
    got = _probe("import reidnb", GOMP_SPINCOUNT="1000")
    assert got["env"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}


def test_torch_loaded_first_keeps_the_runtime_default():
    got = _probe("import torch; import reidnb")
    assert got["env"] == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    assert got["describe"] == {"settings": {}, "source": "runtime default"}
