"""Speed and memory of `reidnb.metrics` against the plain references (issue #3).

A Market-1501-sized synthetic problem: 3,368 queries x 15,913 gallery images, 750 identities,
6 cameras, 2,793 gallery distractors (pid 0). Features are an identity centre plus a camera
shift plus noise; distances are Euclidean (float32).

    .venv/bin/python benchmarks/bench_eval.py [--threads N] [--subsample 2000]

Sets OMP_WAIT_POLICY=PASSIVE unless the environment already sets it (see the comment below).

Prints, in one run: evaluate_rank (reference vs reidnb, and their ratio); re_ranking on a
subsample (reference vs reidnb, ratio); re_ranking at full scale (reidnb only, run in a fresh
process so that its peak RSS counts only the inputs and the re-ranking).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
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


def bench_rank(data: dict) -> dict:
    d = cdist(data["qf"], data["gf"])
    labels = [data[k] for k in ("q_pids", "g_pids", "q_camids", "g_camids")]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--subsample", type=int, default=2000, help="items for the RR reference")
    parser.add_argument("--part", default="all", choices=["all", "rerank-full"])
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file "
                        "(the record the book's evaluation section reads)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.part == "rerank-full":
        print(json.dumps(bench_rerank_full()))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, cuda {torch.cuda.is_available()}, "
          f"load {tuple(round(x, 2) for x in os.getloadavg())}")
    data = market_like()
    rank = bench_rank(data)
    print(f"evaluate_rank {NUM_Q}x{NUM_G}: reference {rank['reference_s']:.2f} s, "
          f"reidnb {rank['reidnb_s']:.3f} s, ratio {rank['ratio']:.1f}x "
          f"(rank-1 {rank['rank1']:.4f}, mAP {rank['mAP']:.4f}, trapezoid mAP "
          f"{rank['mAP_trapezoid']:.4f}, CMC equal {rank['cmc_equal']}, "
          f"mAP diff {rank['mAP_abs_diff']:.1e})")
    sub = bench_rerank_subsample(data, args.subsample)
    print(f"re_ranking {sub['items']} items ({sub['queries']} queries): reference "
          f"{sub['reference_s']:.2f} s, reidnb {sub['reidnb_s']:.3f} s, ratio {sub['ratio']:.1f}x "
          f"(max abs diff {sub['max_abs_diff']:.1e})")
    cmd = [sys.executable, __file__, "--part", "rerank-full", "--threads", str(args.threads)]
    full = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    print(f"re_ranking {full['items']} items, reidnb: {full['reidnb_s']:.1f} s, peak RSS "
          f"{full['peak_rss_GB']:.2f} GB (inputs {full['inputs_GB']:.2f} GB; "
          f"{full['peak_rss_before_GB']:.2f} GB before re-ranking)")
    print(f"load after: {tuple(round(x, 2) for x in os.getloadavg())}")
    if args.json:
        from datetime import date

        from reidnb.train.engine import device_info
        from reidnb.io import atomic_write_json

        atomic_write_json(args.json, {
            "benchmark": "bench_eval", "date": date.today().isoformat(),
            "command": " ".join(["python", "benchmarks/bench_eval.py", *sys.argv[1:]]),
            "device": device_info(torch.device("cpu")), "cores": os.cpu_count(),
            "load_after": os.getloadavg()[0], "evaluate_rank": rank,
            "re_ranking_subsample": sub, "re_ranking_full": full})


if __name__ == "__main__":
    main()
