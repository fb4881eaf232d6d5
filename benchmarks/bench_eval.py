"""Speed and memory of `reidnb.metrics` against the plain references (issues #3 and #18).

A Market-1501-sized synthetic problem: 3,368 queries x 15,913 gallery images, 750 identities,
6 cameras, 2,793 gallery distractors (pid 0). Features are an identity centre plus a camera
shift plus noise; distances are Euclidean (float32).

    .venv/bin/python benchmarks/bench_eval.py [--threads N] [--subsample 2000]
    .venv/bin/python benchmarks/bench_eval.py --part growth --sizes 0.125,0.25,0.5,1
    .venv/bin/python benchmarks/bench_eval.py --quick --out-dir /tmp/bench   # tiny, seconds

Sets OMP_WAIT_POLICY=PASSIVE unless the environment already sets it (see the comment below).

Prints, in one run (`--part all`, the default):

- classic: evaluate_rank (reference vs reidnb, and their ratio); re_ranking on a subsample
  (reference vs reidnb, ratio); re_ranking at full scale (reidnb only, run in a fresh process
  so that its peak RSS counts only the inputs and the re-ranking).
- growth: evaluate_rank and re_ranking, reidnb and the references, at fractions of Market scale
  (`--sizes`); the reference re-ranking at the sizes where it finishes within
  `--reference-limit` seconds. Fits t = c * N ** p by least squares on log-log axes and draws
  the figure `eval_cost_growth.svg`.
- forms: re_ranking at `--forms-scale` of Market scale from each input form a user may hold
  (numpy float32/float64, C- or F-ordered, views of one big matrix, torch tensors), each in a
  fresh process: seconds (best of 2), ratio to numpy float32 C-contiguous, largest absolute
  difference from it, extra peak memory, and the reference's time over it.

The growth and forms records go to `--out-dir` (default benchmarks/results; nothing is written
with --quick unless --out-dir is given); `--json` writes the classic record that chapter 2 reads.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

# With OpenMP's default (spinning) wait policy, torch's two threads slow down by 3-10x as soon
# as another process wants a core of this 2-core machine; sleeping waiters avoid that. It must
# be set before torch loads its OpenMP runtime. Override it from the shell to compare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reference_metrics import reference_evaluate_rank, reference_re_ranking  # noqa: E402

from reidnb.io import atomic_write_json  # noqa: E402
from reidnb.metrics import evaluate_rank, re_ranking  # noqa: E402

NUM_Q, NUM_G, NUM_IDS, NUM_CAMS, NUM_DISTRACTORS, DIM = 3368, 15913, 750, 6, 2793, 128


def market_like(seed: int = 0) -> dict[str, np.ndarray]:
    """Features and labels of the synthetic Market-sized problem (float32 features)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(NUM_IDS + 1, DIM))
    shifts = 0.6 * rng.normal(size=(NUM_CAMS, DIM))
    pairs = rng.permutation(NUM_IDS * NUM_CAMS)[:NUM_Q]  # one query per (identity, camera)
    q_pids, q_camids = pairs // NUM_CAMS + 1, pairs % NUM_CAMS
    num_real = NUM_G - NUM_DISTRACTORS
    g_pids = np.concatenate(
        [rng.integers(1, NUM_IDS + 1, num_real), np.zeros(NUM_DISTRACTORS, dtype=int)]
    )
    g_camids = rng.integers(0, NUM_CAMS, NUM_G)

    def features(pids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        own = np.where(pids[:, None] > 0, centres[pids], rng.normal(size=(len(pids), DIM)))
        return (own + shifts[cams] + 1.1 * rng.normal(size=(len(pids), DIM))).astype(np.float32)

    return {
        "qf": features(q_pids, q_camids), "gf": features(g_pids, g_camids),
        "q_pids": q_pids, "g_pids": g_pids, "q_camids": q_camids, "g_camids": g_camids,
    }


def cdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_rank(data: dict, fraction: float = 1.0) -> dict:
    nq, ng = fraction_sizes(fraction)
    d = cdist(data["qf"][:nq], data["gf"][:ng])
    labels = [data["q_pids"][:nq], data["g_pids"][:ng], data["q_camids"][:nq],
              data["g_camids"][:ng]]
    t_fast, (cmc, m_ap) = best_of(lambda: evaluate_rank(d, *labels), 5)
    t_ref, (cmc_ref, m_ap_ref) = best_of(lambda: reference_evaluate_rank(d, *labels), 1)
    _, (_, m_ap_t) = best_of(lambda: evaluate_rank(d, *labels, ap="trapezoid"), 1)
    _, (_, m_ap_t_ref) = best_of(lambda: reference_evaluate_rank(d, *labels, ap="trapezoid"), 1)
    return {
        "rank1": float(cmc[0]), "mAP": m_ap, "mAP_trapezoid": m_ap_t,
        "cmc_equal": bool(np.array_equal(cmc, cmc_ref)),
        "mAP_abs_diff": max(abs(m_ap - m_ap_ref), abs(m_ap_t - m_ap_t_ref)),
        "reference_s": t_ref, "reidnb_s": t_fast, "ratio": t_ref / t_fast,
    }


def blocks(data: dict, num_q: int, num_g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    qf, gf = data["qf"][:num_q], data["gf"][:num_g]
    return cdist(qf, gf), cdist(qf, qf), cdist(gf, gf)


def bench_rerank_subsample(data: dict, items: int) -> dict:
    num_q = round(items * NUM_Q / (NUM_Q + NUM_G))
    q_g, q_q, g_g = blocks(data, num_q, items - num_q)
    t_fast, fast = best_of(lambda: re_ranking(q_g, q_q, g_g), 3)
    t_ref, ref = best_of(lambda: reference_re_ranking(q_g, q_q, g_g), 1)
    return {
        "items": items, "queries": num_q, "reference_s": t_ref, "reidnb_s": t_fast,
        "ratio": t_ref / t_fast, "max_abs_diff": float(np.abs(fast - ref).max()),
    }


def bench_rerank_full() -> dict:
    data = market_like()
    q_g, q_q, g_g = blocks(data, NUM_Q, NUM_G)
    del data
    inputs_gb = (q_g.nbytes + q_q.nbytes + g_g.nbytes) / 1e9
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    t = time.perf_counter()
    out = re_ranking(q_g, q_q, g_g)
    elapsed = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB -> GB on Linux
    return {
        "items": NUM_Q + NUM_G, "reidnb_s": elapsed, "inputs_GB": inputs_gb,
        "peak_rss_before_GB": rss_before, "peak_rss_GB": peak, "output_shape": list(out.shape),
    }


# --------------------------------------------------------------------------- cost growth


def fraction_sizes(fraction: float) -> tuple[int, int]:
    """(queries, gallery) at `fraction` of Market scale (the first images of each set)."""
    return max(1, round(NUM_Q * fraction)), max(2, round(NUM_G * fraction))


def fit_exponent(sizes, times) -> tuple[float, float]:
    """Least-squares line through (log n, log t): t ~ c * n ** p; returns (p, c)."""
    p, log_c = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)
    return float(p), float(np.exp(log_c))


class _OutOfTime(Exception):
    pass


def _on_alarm(signum, frame):
    raise _OutOfTime


def within(limit_s: float, fn):
    """(seconds, fn()) or (None, None) when fn runs past limit_s (SIGALRM: main thread, POSIX;
    the reference's Python loops return to the interpreter often, so the alarm lands)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    t = time.perf_counter()
    try:
        out = fn()
        return time.perf_counter() - t, out
    except _OutOfTime:
        return None, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def reference_rerank_in_child(fraction: float, limit_s: float, save: str) -> dict:
    """The reference re-ranking at `fraction` of Market scale in a fresh process (its dense
    N x N arrays, ~10 GB at full scale, then leave with it), stopped after limit_s seconds.
    The result is saved to `save` (.npy) when it finishes."""
    cmd = [sys.executable, __file__, "--part", "reference", "--fraction", repr(fraction),
           "--reference-limit", repr(limit_s), "--save", save,
           "--threads", str(torch.get_num_threads())]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=limit_s + 300)  # + loading and building the inputs
    return json.loads(done.stdout.strip().splitlines()[-1])


def _reference_part(fraction: float, limit_s: float, save: str) -> dict:
    q_g, q_q, g_g = blocks(market_like(), *fraction_sizes(fraction))
    seconds, out = within(limit_s, lambda: reference_re_ranking(q_g, q_q, g_g))
    if out is not None:
        np.save(save, out)
    return {"seconds": seconds}


def cost_growth(fractions, reference_limit_s: float = 120.0, isolate: bool = True,
                data: dict | None = None, log=print, full_limit_s: float | None = None) -> dict:
    """Time evaluate_rank and re_ranking (reidnb and the references) at fractions of Market
    scale, smallest first, and fit t = c * N ** p per series (N = queries + gallery). The
    reference re-ranking runs where it finishes within reference_limit_s: it is skipped once
    a smaller size ran out of time, or when the fit so far predicts over twice the limit.
    At full scale (fraction 1) the limit is `full_limit_s` when given (the speed-up over the
    reference at Market scale is worth a few minutes once).
    `isolate`: run it in a fresh process (for big sizes; in-process for tiny ones)."""
    data = market_like() if data is None else data
    rows, timed_out = [], False
    for fraction in sorted(fractions):
        nq, ng = fraction_sizes(fraction)
        labels = (data["q_pids"][:nq], data["g_pids"][:ng],
                  data["q_camids"][:nq], data["g_camids"][:ng])
        d = cdist(data["qf"][:nq], data["gf"][:ng])
        rank_s, (cmc, m_ap) = best_of(lambda: evaluate_rank(d, *labels), 5)
        rank_ref_s, (cmc_ref, m_ap_ref) = best_of(lambda: reference_evaluate_rank(d, *labels), 1)
        q_g, q_q, g_g = blocks(data, nq, ng)
        rr_s, ours = best_of(lambda: re_ranking(q_g, q_q, g_g), 3)
        row = {"fraction": fraction, "queries": nq, "gallery": ng, "items": nq + ng,
               "evaluate_rank": {"reidnb_s": rank_s, "reference_s": rank_ref_s,
                                 "cmc_equal": bool(np.array_equal(cmc, cmc_ref)),
                                 "mAP_abs_diff": abs(m_ap - m_ap_ref)},
               "re_ranking": {"reidnb_s": rr_s, "reference_s": None, "max_abs_diff": None,
                              "reference_note": ""}}
        done = [(r["items"], r["re_ranking"]["reference_s"]) for r in rows
                if r["re_ranking"]["reference_s"] is not None]
        predicted = None
        if done:
            p = fit_exponent(*zip(*done))[0] if len(done) > 1 else 2.0
            predicted = done[-1][1] * ((nq + ng) / done[-1][0]) ** max(p, 1.0)
        rr = row["re_ranking"]
        limit_s = full_limit_s if fraction >= 1 and full_limit_s else reference_limit_s
        rr["reference_limit_s"] = limit_s
        if timed_out:
            rr["reference_note"] = "skipped: a smaller size ran past the limit"
        elif predicted is not None and predicted > 2 * limit_s:
            rr["reference_note"] = f"skipped: predicted {predicted:.0f} s"
        else:
            if isolate:
                with tempfile.TemporaryDirectory() as tmp:
                    save = os.path.join(tmp, "ref.npy")
                    child = reference_rerank_in_child(fraction, limit_s, save)
                    seconds = child["seconds"]
                    ref = np.load(save) if seconds is not None else None
            else:
                seconds, ref = within(limit_s, lambda: reference_re_ranking(q_g, q_q, g_g))
            if seconds is None:
                timed_out = True
                rr["reference_note"] = f"did not finish within {limit_s:.0f} s"
            else:
                rr["reference_s"] = seconds
                rr["max_abs_diff"] = float(np.abs(ours - ref).max())
                rr["ratio"] = seconds / rr_s
        row["evaluate_rank"]["ratio"] = rank_ref_s / rank_s
        rows.append(row)
        ref_text = (f"{rr['reference_s']:.2f} s ({rr['ratio']:.1f}x, max abs diff "
                    f"{rr['max_abs_diff']:.1e})" if rr["reference_s"] is not None
                    else rr["reference_note"])
        log(f"  {nq + ng:>6,} items ({nq} x {ng}): evaluate_rank reidnb {rank_s:.3f} s, "
            f"reference {rank_ref_s:.2f} s; re_ranking reidnb {rr_s:.3f} s, reference {ref_text}"
            f"  [load {os.getloadavg()[0]:.2f}]")
    exponents = {}
    for task in ("evaluate_rank", "re_ranking"):
        exponents[task] = {}
        for impl in ("reidnb", "reference"):
            pts = [(r["items"], r[task][f"{impl}_s"]) for r in rows
                   if r[task][f"{impl}_s"] is not None]
            exponents[task][impl] = (
                {"exponent": fit_exponent(*zip(*pts))[0], "points": len(pts)}
                if len(pts) > 1 else {"exponent": None, "points": len(pts)})
    return {"rows": rows, "exponents": exponents, "reference_limit_s": reference_limit_s}


def plot_cost_growth(record: dict, path: str | Path) -> None:
    """Time against items, log-log, reidnb and the references, fitted exponents in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bench_eval"  # stable element ids: diffable SVG
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    rows = record["rows"]
    names = {"reidnb": "reidnb", "reference": "reference (tests/reference_metrics.py)"}
    for task, color in (("evaluate_rank", "tab:blue"), ("re_ranking", "tab:orange")):
        for impl, style in (("reidnb", "-o"), ("reference", "--s")):
            pts = [(r["items"], r[task][f"{impl}_s"]) for r in rows
                   if r[task][f"{impl}_s"] is not None]
            if not pts:
                continue
            p = record["exponents"][task][impl]["exponent"]
            fit = f"$N^{{{p:.2f}}}$" if p is not None else "(one size)"
            ax.plot(*zip(*pts), style, color=color, label=f"{task}, {names[impl]}: t ~ {fit}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("items N = queries + gallery (Market scale: 19,281)")
    ax.set_ylabel("seconds")
    ax.set_title(f"Evaluation cost growth, CPU ({record.get('threads', '?')} threads, "
                 f"load {record.get('load_start', float('nan')):.1f} at start)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    meta = {"Date": None} if str(path).endswith(".svg") else {}
    fig.savefig(path, metadata=meta)
    plt.close(fig)


# --------------------------------------------------------------------------- input forms


def _views(big: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return big[:nq, nq:], big[:nq, :nq], big[nq:, nq:]


def _torch_transposed(x: np.ndarray, dtype) -> torch.Tensor:
    """A non-contiguous tensor: the transpose of a C-contiguous copy of x.T."""
    return torch.from_numpy(np.ascontiguousarray(x.T, dtype=dtype)).T


# key -> (what a user holds, builder from the joined float32 (N, N) matrix and the query count);
# the first is the baseline the others are compared with
FORMS = {
    "np32-c": ("numpy float32, C-contiguous blocks",
               lambda big, nq: tuple(np.ascontiguousarray(x) for x in _views(big, nq))),
    "np32-view": ("numpy float32, views of one (N, N) matrix", _views),
    "np32-f": ("numpy float32, F-ordered blocks",
               lambda big, nq: tuple(np.asfortranarray(x) for x in _views(big, nq))),
    "np64-c": ("numpy float64, C-contiguous blocks",
               lambda big, nq: tuple(np.ascontiguousarray(x, dtype=np.float64)
                                     for x in _views(big, nq))),
    "np64-view": ("numpy float64, views of one (N, N) matrix",
                  lambda big, nq: _views(big.astype(np.float64), nq)),
    "np64-f": ("numpy float64, F-ordered blocks",
               lambda big, nq: tuple(np.asfortranarray(x, dtype=np.float64)
                                     for x in _views(big, nq))),
    "torch32-c": ("torch float32, contiguous",
                  lambda big, nq: tuple(torch.from_numpy(np.ascontiguousarray(x))
                                        for x in _views(big, nq))),
    "torch32-view": ("torch float32, views of one (N, N) tensor",
                     lambda big, nq: _views(torch.from_numpy(big), nq)),
    "torch64-c": ("torch float64, contiguous",
                  lambda big, nq: tuple(torch.from_numpy(np.ascontiguousarray(x, np.float64))
                                        for x in _views(big, nq))),
    "torch64-t": ("torch float64, transposed (non-contiguous)",
                  lambda big, nq: tuple(_torch_transposed(x, np.float64)
                                        for x in _views(big, nq))),
}


def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    hit = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(hit.group(1)) if hit else None


def _reset_peak_rss() -> int | None:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux: clear_refs 5) and return
    the current RSS in kB; None where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _held_bytes(arrays) -> int:
    """Bytes of the memory the arrays lie in (each underlying buffer counted once)."""
    owners = {}
    for x in arrays:
        if isinstance(x, torch.Tensor):
            owners[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        else:
            while isinstance(x.base, np.ndarray):
                x = x.base
            owners[x.__array_interface__["data"][0]] = x.nbytes
    return sum(owners.values())


BASELINE_FORM = "np32-c"


def _timed(fn) -> tuple[float, float, object]:
    t, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - cpu, out


def _form_part(key: str, fraction: float, rounds: int = 2) -> dict:
    """One input form in this (fresh) process, paired with the baseline (numpy float32
    C-contiguous blocks of the same distances) so that other jobs on the machine weigh on
    both alike: the form once alone (its extra peak memory, the output included), then
    `rounds` times (baseline, form). Reports the best wall time of each, their ratio, the same
    for CPU time (user + system of all threads, less sensitive to other jobs), and the largest
    difference from the baseline's result."""
    data = market_like()
    nq, ng = fraction_sizes(fraction)
    feats = np.concatenate([data["qf"][:nq], data["gf"][:ng]])
    del data
    big = cdist(feats, feats)
    inputs = FORMS[key][1](big, nq)
    inputs_gb = _held_bytes(inputs) / 1e9
    gc.collect()
    rss0 = _reset_peak_rss()
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu, out = _timed(lambda: re_ranking(*inputs))
    if rss0 is not None:
        extra_gb, how = (_status_kb("VmHWM") - rss0) / 1e6, "VmHWM - VmRSS"
    else:
        extra_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss0) / 1e6
        how = "ru_maxrss difference (a lower bound)"
    walls, cpus, base_walls, base_cpus = [wall], [cpu], [], []
    base_inputs = FORMS[BASELINE_FORM][1](big, nq)
    for _ in range(rounds):
        del out
        wall, cpu, base_out = _timed(lambda: re_ranking(*base_inputs))
        base_walls.append(wall)
        base_cpus.append(cpu)
        del base_out
        wall, cpu, out = _timed(lambda: re_ranking(*inputs))
        walls.append(wall)
        cpus.append(cpu)
    base_out = re_ranking(*base_inputs)
    out = out.numpy() if isinstance(out, torch.Tensor) else out
    return {"form": key, "what": FORMS[key][0], "items": nq + ng,
            "seconds": min(walls), "baseline_s": min(base_walls),
            "ratio": min(walls) / min(base_walls),
            "cpu_s": min(cpus), "baseline_cpu_s": min(base_cpus),
            "cpu_ratio": min(cpus) / min(base_cpus),
            "calls_s": walls, "baseline_calls_s": base_walls,
            "calls_cpu_s": cpus, "baseline_calls_cpu_s": base_cpus,
            "max_abs_diff": float(np.abs(out - base_out).max()),
            "extra_peak_GB": extra_gb, "memory_measure": how, "inputs_GB": inputs_gb}


def input_forms(fraction: float, keys=None, log=print) -> list[dict]:
    """Every input form (FORMS) at `fraction` of Market scale, each in a fresh process."""
    rows = []
    for key in list(FORMS) if keys is None else keys:
        cmd = [sys.executable, __file__, "--part", "form", "--form", key,
               "--fraction", repr(fraction), "--threads", str(torch.get_num_threads())]
        load = os.getloadavg()[0]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load_start"] = load
        rows.append(row)
        log(f"  {row['what']:<44} {row['seconds']:6.2f} s (baseline {row['baseline_s']:5.2f} s)"
            f" x{row['ratio']:.2f}  cpu {row['cpu_s']:5.2f} s x{row['cpu_ratio']:.2f}  "
            f"diff {row['max_abs_diff']:.1e}  extra peak {row['extra_peak_GB']:.2f} GB  "
            f"[load {load:.2f}]")
    return rows


def forms_table(rows: list[dict], reference_s: float | None = None) -> str:
    """Markdown table of the input forms (ratios to the baseline timed in the same process;
    the reference's time over each form's where one is given)."""
    head = ("| input form | load | seconds (best of 3) | float32 C, same process | ratio | "
            "CPU ratio | max abs diff | extra peak memory |")
    rule = "|---|---|---|---|---|---|---|---|"
    if reference_s:
        head, rule = head + " reference / this |", rule + "---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r['what']} | {r.get('load_start', float('nan')):.1f} | {r['seconds']:.2f} | "
                f"{r['baseline_s']:.2f} | {r['ratio']:.2f}x | {r['cpu_ratio']:.2f}x | "
                f"{r['max_abs_diff']:.1e} | {r['extra_peak_GB']:.2f} GB |")
        if reference_s:
            line += f" {reference_s / r['seconds']:.1f}x |"
        lines.append(line)
    return "\n".join(lines)


def growth_table(record: dict) -> str:
    lines = ["| items | evaluate_rank reidnb | reference | re_ranking reidnb | reference |",
             "|---|---|---|---|---|"]
    for r in record["rows"]:
        er, rr = r["evaluate_rank"], r["re_ranking"]
        ref = (f"{rr['reference_s']:.2f} s ({rr['ratio']:.1f}x)" if rr["reference_s"] is not None
               else rr["reference_note"])
        lines.append(f"| {r['items']:,} | {er['reidnb_s']:.3f} s | {er['reference_s']:.2f} s "
                     f"({er['ratio']:.1f}x) | {rr['reidnb_s']:.3f} s | {ref} |")
    ex = record["exponents"]
    fmt = lambda e: "-" if e["exponent"] is None else f"{e['exponent']:.2f}"  # noqa: E731
    lines.append(f"| exponent p (t ~ N^p) | {fmt(ex['evaluate_rank']['reidnb'])} | "
                 f"{fmt(ex['evaluate_rank']['reference'])} | {fmt(ex['re_ranking']['reidnb'])} | "
                 f"{fmt(ex['re_ranking']['reference'])} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--subsample", type=int, default=2000, help="items for the RR reference")
    parser.add_argument("--part", default="all", choices=[
        "all", "classic", "growth", "forms", "rerank-full", "form", "reference"])
    parser.add_argument("--sizes", default="0.125,0.25,0.5,1",
                        help="growth: fractions of Market scale, comma-separated")
    parser.add_argument("--forms-scale", type=float, default=1.0,
                        help="forms: fraction of Market scale")
    parser.add_argument("--forms", default=None, help="forms: only these, comma-separated "
                        f"(of {', '.join(FORMS)})")
    parser.add_argument("--reference-limit", type=float, default=120.0,
                        help="growth: seconds the reference re-ranking may take at one size")
    parser.add_argument("--reference-limit-full", type=float, default=300.0,
                        help="growth: the same at full Market scale (fraction 1)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (seconds in all): --sizes 0.01,0.02,0.03,0.04, "
                        "--forms-scale 0.03, --subsample 300; writes nothing unless --out-dir")
    parser.add_argument("--out-dir", default=None, help="where the growth and forms records "
                        "and the figure go (default benchmarks/results)")
    parser.add_argument("--json", default=None, help="also write the classic figures to this "
                        "JSON file (the record the book's evaluation section reads)")
    parser.add_argument("--form", default=None, choices=list(FORMS), help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "rerank-full":
        print(json.dumps(bench_rerank_full()))
        return {}
    if args.part == "form":
        print(json.dumps(_form_part(args.form, args.fraction)))
        return {}
    if args.part == "reference":
        print(json.dumps(_reference_part(args.fraction, args.reference_limit, args.save)))
        return {}
    if args.quick:
        if args.sizes == parser.get_default("sizes"):
            args.sizes = "0.01,0.02,0.03,0.04"
        if args.forms_scale == parser.get_default("forms_scale"):
            args.forms_scale = 0.03
        if args.subsample == parser.get_default("subsample"):
            args.subsample = 300
    out_dir = Path(args.out_dir) if args.out_dir else (None if args.quick
                                                      else ROOT / "benchmarks" / "results")
    command = " ".join(["python", "benchmarks/bench_eval.py", *(argv or sys.argv[1:])])
    start_load = _load()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, cuda {torch.cuda.is_available()}, "
          f"load {tuple(start_load)} ({os.cpu_count()} cores), {date.today().isoformat()}")
    result: dict = {}
    data = market_like()
    if args.part in ("all", "classic"):
        result["classic"] = classic(data, args)
    if args.part in ("all", "growth"):
        load = _load()
        print(f"growth (load {load[0]:.2f}):")
        fractions = [float(s) for s in args.sizes.split(",")]
        record = cost_growth(fractions, args.reference_limit, isolate=not args.quick, data=data,
                             full_limit_s=args.reference_limit_full)
        record.update({"benchmark": "bench_eval cost growth", "date": date.today().isoformat(),
                       "command": command, "load_start": load[0], "load_start_1_5_15": load,
                       "load_end": _load()[0], "threads": torch.get_num_threads(),
                       "cores": os.cpu_count(), "torch": torch.__version__,
                       "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]})
        print(growth_table(record))
        result["growth"] = record
        if out_dir is not None:
            atomic_write_json(out_dir / "eval_cost_growth.json", record)
            plot_cost_growth(record, out_dir / "eval_cost_growth.svg")
            print(f"wrote {out_dir / 'eval_cost_growth.json'} and eval_cost_growth.svg")
    if args.part in ("all", "forms"):
        load = _load()
        print(f"input forms at {args.forms_scale:g} x Market scale (load {load[0]:.2f}):")
        rows = input_forms(args.forms_scale, args.forms.split(",") if args.forms else None)
        reference_s = None
        for r in result.get("growth", {}).get("rows", []):
            if r["items"] == rows[0]["items"] and r["re_ranking"]["reference_s"] is not None:
                reference_s = r["re_ranking"]["reference_s"]  # measured in this run
        print(forms_table(rows, reference_s))
        record = {"benchmark": "bench_eval input forms", "date": date.today().isoformat(),
                  "command": command, "fraction": args.forms_scale, "load_start": load[0],
                  "load_start_1_5_15": load, "load_end": _load()[0],
                  "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                  "torch": torch.__version__, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                  "reference_s_same_run": reference_s, "forms": rows}
        result["forms"] = record
        if out_dir is not None:
            atomic_write_json(out_dir / "rerank_input_forms.json", record)
            print(f"wrote {out_dir / 'rerank_input_forms.json'}")
    print(f"load after: {tuple(_load())}")
    return result


def classic(data: dict, args) -> dict:
    """The issue-#3 figures: evaluate_rank and re_ranking (subsample) against the references,
    re_ranking at full scale in a fresh process; optionally the chapter-2 record (--json)."""
    fraction = 0.04 if args.quick else 1.0
    rank = bench_rank(data, fraction)
    shape = "{}x{}".format(*fraction_sizes(fraction))
    print(f"evaluate_rank {shape}: reference {rank['reference_s']:.2f} s, "
          f"reidnb {rank['reidnb_s']:.3f} s, ratio {rank['ratio']:.1f}x "
          f"(rank-1 {rank['rank1']:.4f}, mAP {rank['mAP']:.4f}, trapezoid mAP "
          f"{rank['mAP_trapezoid']:.4f}, CMC equal {rank['cmc_equal']}, "
          f"mAP diff {rank['mAP_abs_diff']:.1e})")
    sub = bench_rerank_subsample(data, args.subsample)
    print(f"re_ranking {sub['items']} items ({sub['queries']} queries): reference "
          f"{sub['reference_s']:.2f} s, reidnb {sub['reidnb_s']:.3f} s, ratio {sub['ratio']:.1f}x "
          f"(max abs diff {sub['max_abs_diff']:.1e})")
    full = None
    if not args.quick:
        cmd = [sys.executable, __file__, "--part", "rerank-full", "--threads", str(args.threads)]
        full = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(f"re_ranking {full['items']} items, reidnb: {full['reidnb_s']:.1f} s, peak RSS "
              f"{full['peak_rss_GB']:.2f} GB (inputs {full['inputs_GB']:.2f} GB; "
              f"{full['peak_rss_before_GB']:.2f} GB before re-ranking)")
    if args.json:
        from reidnb.train.engine import device_info

        atomic_write_json(args.json, {
            "benchmark": "bench_eval", "date": date.today().isoformat(),
            "command": " ".join(["python", "benchmarks/bench_eval.py", *sys.argv[1:]]),
            "device": device_info(torch.device("cpu")), "cores": os.cpu_count(),
            "load_after": os.getloadavg()[0], "evaluate_rank": rank,
            "re_ranking_subsample": sub, "re_ranking_full": full})
    return {"evaluate_rank": rank, "re_ranking_subsample": sub, "re_ranking_full": full}


if __name__ == "__main__":
    main()
