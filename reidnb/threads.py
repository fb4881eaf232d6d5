"""How torch's CPU threads wait between two pieces of work (issue 18, item 2).

torch runs its CPU kernels on a GNU OpenMP thread pool. Between two kernels an idle thread
either spins (keeps its core busy, ready at once) or sleeps (gives the core back, wakes up a
few microseconds later). The runtime reads the choice once, from the environment, when torch
loads it; by default it spins for a while and then sleeps. Spinning wins on an idle machine;
beside another busy process it loses several-fold, because a spinning thread takes the core
the thread it waits for needs (benchmarks/README.md, "Threads").

`import reidnb` (before torch is imported) sets `DEFAULT_WAIT` unless the environment already
says how to wait, so a JupyterLab kernel or a user's script gets the setting that was measured
best across both cases without knowing about it: a short spin (`GOMP_SPINCOUNT=10000`, about
a few microseconds) then sleep. On the 2-core machine of benchmarks/README.md ("Threads",
2026-11-30) it trained 1.31x faster than PASSIVE when idle (ACTIVE: 1.34x) and 0.97x beside a
competing process (ACTIVE: 0.66x, the runtime default: 0.39x); `evaluate_rank` at Market scale
took 0.18 s idle and 0.52 s beside the competitor (runtime default: 4.5 s). A process that imported torch first keeps
the runtime's own default: `describe()` says which case holds.
"""

from __future__ import annotations

import os
import sys

#: The variables that steer the waiting; a user's own value of any of them is left alone.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
#: What `import reidnb` sets when none of `WAIT_VARS` is set (measured: benchmarks/README.md).
DEFAULT_WAIT = {"GOMP_SPINCOUNT": "10000"}

_applied: dict[str, str] = {}


def apply_default() -> dict[str, str]:
    """Set `DEFAULT_WAIT` in this process's environment (children inherit it) when no wait
    variable is set and torch is not loaded yet; returns what it set ({} when it set nothing)."""
    if _applied or "torch" in sys.modules or any(v in os.environ for v in WAIT_VARS):
        return {}
    os.environ.update(DEFAULT_WAIT)
    _applied.update(DEFAULT_WAIT)
    return dict(DEFAULT_WAIT)


def describe() -> dict[str, object]:
    """The wait settings in this process's environment, and who chose them: "reidnb" (its
    default), "environment" (set before reidnb was imported), or "runtime default" (none set;
    e.g. torch was imported before reidnb)."""
    current = {v: os.environ[v] for v in WAIT_VARS if v in os.environ}
    if _applied and all(current.get(k) == v for k, v in _applied.items()):
        source = "reidnb"
    elif current:
        source = "environment"
    else:
        source = "runtime default"
    return {"settings": current, "source": source}
