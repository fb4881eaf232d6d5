"""Train the book's runs before its chapters read them: one single-thread process per core.

On a small CPU, one training process spread over every core loses time in the threads' hand-offs
(ResNet-18 at 128x64, batch 32, has little work per kernel); one single-thread process per core
trains more images a second in all (`benchmarks/bench_threads.py --parallel`). The main job
therefore trains the runs first, in parallel workers, then executes the chapters, which find
every run cached (`experiments.run_experiment` reads a finished record) and only evaluate, draw
and judge.

The trunks (the runs others start from: chapter 1's IDE run) train first, in this process on
every core: nearly every other run waits for one, and a trunk on one thread would hold the
book up (on the 2-core AVX2 EPYC, 14 epochs at about 165 s each instead of 90 s, while the two
runs that need none, chapter 3's, would be done long before). The other runs then go to the
workers in the book's order. A run that fails is reported and left to its chapter, which
trains it again and shows the error where it belongs; the runs that need a failed trunk are
not started. A run that another process is training is waited for
(`RunLock`), so a second main job or a JupyterLab kernel beside this one does not train it
twice.

A run's numbers depend on the thread count in the native numeric mode (reductions split over
threads sum in another order), as they depend on the CPU; the portable mode, which fixes both,
is the one the regression tests use (`reidnb.numerics`), and it is never run here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path


#: What a run record trained by a worker says of it: the chapters that read it run on every core,
#: and `train.runfolder.warn_if_other_path` does not warn about that thread count alone.
TRAINED_AHEAD = "by the main job, in a single-thread worker (reidnb.book.train_ahead)"


def _worker_init() -> None:
    import torch
    torch.set_num_threads(1)


def _train_one(args, progress: bool = False) -> tuple[str, float, str]:
    """(run name, wall seconds, "" or the error) of one run trained in a worker, or in this
    process (with a progress bar when `progress`)."""
    exp, data_root, runs_dir, device = args
    from ..experiments import run_experiment
    from ..experiments import run_dir_for
    from ..io import atomic_write_json, read_json
    path = run_dir_for(exp, runs_dir) / "record.json"
    trained_before = path.exists() and read_json(path).get("status") == "complete"
    t = time.perf_counter()
    try:
        record = run_experiment(exp, data_root, runs_dir, device, progress=progress, wait=True)
    except Exception as err:  # noqa: BLE001 - the chapter retrains it and shows the error
        return exp.run_name, time.perf_counter() - t, f"{type(err).__name__}: {err}"
    if not trained_before and record.get("numerics", {}).get("threads") == 1:
        record = read_json(path)   # as written, then marked (see `TRAINED_AHEAD`)
        record["trained_ahead"] = TRAINED_AHEAD
        atomic_write_json(path, record)
    return exp.run_name, time.perf_counter() - t, ""


def default_workers() -> int:
    """One worker per core this process may use (1 on a one-core machine: no parallel phase)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def train_ahead(exps: list, data_root: str | Path, runs_dir: str | Path, device: str = "cpu",
                workers: int | None = None, log=print) -> dict[str, str]:
    """Train every run of `exps` that has no complete record: the trunks (the runs that others
    start from, `trunk_from`) first, in this process on every core, then the rest in
    `workers` single-thread processes (None: one per core). With one worker, or on a GPU,
    every run trains one after another in this process. Returns run name -> error for the
    runs that failed or could not start (empty when all finished)."""
    from ..book.mainjob import finished_runs

    workers = default_workers() if workers is None else workers
    done = set(finished_runs(exps, runs_dir))
    trunks = {e.trunk_from for e in exps if e.trunk_from}
    # the trunks first, then the book's order
    todo = sorted((e for e in exps if e.run_name not in done),
                  key=lambda e: e.run_name not in trunks)
    if not todo:
        return {}
    failed: dict[str, str] = {}
    total = len(todo)
    finished = 0
    paced: list[float] = []   # wall seconds of the runs other than trunks trained here
    parallel = 1              # runs training at once (the workers, once they start)

    def report(name: str, seconds: float, error: str) -> None:
        nonlocal finished
        finished += 1
        if error:
            failed[name] = error
        else:
            done.add(name)
            if name not in trunks:
                paced.append(seconds)
        line = (f"      [{finished}/{total}] {name} "
                f"{'failed: ' + error if error else 'done'} ({seconds:.0f} s)")
        left = total - finished
        if left and paced:   # the pace of the runs trained so far, `parallel` at a time
            line += (f"; {left} left, about "
                     f"{left * sum(paced) / len(paced) / parallel / 60:.0f} min")
        log(line, flush=True)

    def skip_orphans() -> None:
        """The runs that start from a trunk that failed are reported, not started."""
        for exp in [e for e in todo if e.trunk_from and e.trunk_from in failed]:
            todo.remove(exp)
            report(exp.run_name, 0.0, f"its trunk {exp.trunk_from} failed")

    args = (str(data_root), str(runs_dir), device)
    if workers <= 1 or device != "cpu" or total == 1:
        log(f"      {total} run(s), one after another in this process", flush=True)
        while todo:
            skip_orphans()
            if todo:
                exp = todo.pop(0)
                report(*_train_one((exp, *args), progress=True))
        return failed
    first = [e for e in todo if e.run_name in trunks]
    if first:
        log(f"      {len(first)} trunk run(s) first, in this process on every core", flush=True)
        for exp in first:
            todo.remove(exp)
            report(*_train_one((exp, *args), progress=True))
    skip_orphans()
    if not todo:
        return failed
    log(f"      {len(todo)} runs in {workers} single-thread worker(s)", flush=True)
    parallel = min(workers, len(todo))
    context = mp.get_context("spawn")
    before = set(mp.active_children())
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=context,
                               initializer=_worker_init)
    try:
        pending = {pool.submit(_train_one, (exp, *args)): exp.run_name for exp in todo}
        todo.clear()
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                name = pending.pop(future)
                try:
                    report(*future.result())
                except Exception as err:   # noqa: BLE001 - a worker died (killed, out of memory)
                    report(name, 0.0, f"its worker stopped: {type(err).__name__}: {err}")
    except BaseException:
        # interrupted (Ctrl-C, a kernel's stop): the workers stop too; each run resumes from
        # its last epoch's checkpoint when the book is built again
        pool.shutdown(wait=False, cancel_futures=True)
        for child in set(mp.active_children()) - before:
            child.terminate()
        raise
    pool.shutdown()
    return failed
