"""The main job: generate SynthReID, execute every chapter with papermill, render the book.

Also `refresh_committed`, which re-executes the chapters in the `smoke` profile into the paired
`notebooks/NN_topic.ipynb` files that nbval checks.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"


def chapter_sources(notebooks_dir: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The jupytext sources `NN_topic.py`, in chapter order."""
    srcs = sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.py"))
    if only:
        srcs = [p for p in srcs if any(p.stem.startswith(o) for o in only)]
    if not srcs:
        raise FileNotFoundError(f"no chapter sources NN_topic.py in {notebooks_dir}")
    return srcs


def _as_terminal(text: str) -> str:
    """What a terminal would show: a carriage return sends the cursor back to the start of the
    line, so later text overwrites earlier (a tqdm bar redraws itself that way). Lines that a
    redraw left blank are dropped."""
    lines = []
    for line in text.split("\n"):
        shown = ""
        for piece in line.split("\r"):
            shown = piece + shown[len(piece):]
        if "\r" in line:
            shown = shown.rstrip()
            if not shown:
                continue
        lines.append(shown)
    return "\n".join(lines)


def merge_streams(outputs: list) -> list:
    """Consecutive stdout (or stderr) outputs joined into one, carriage returns resolved; a
    stream left empty is dropped."""
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged
                and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = merged[-1]["text"] + out["text"]
        else:
            merged.append(out)
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = _as_terminal(out["text"])
    return [o for o in merged if o.get("output_type") != "stream" or o["text"]]


def clean_notebook(nb) -> None:
    """Drop volatile metadata (timings, papermill bookkeeping) and give each cell an id derived
    from its source, so re-executing an unchanged chapter leaves its cell ids, and the diff of
    the committed notebook, unchanged."""
    seen: dict[str, int] = {}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
        digest = hashlib.sha1(f"{cell.cell_type}\n{cell.source}".encode()).hexdigest()[:10]
        seen[digest] = seen.get(digest, 0) + 1
        cell["id"] = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
    nb.metadata.pop("papermill", None)
    nb.metadata.get("widgets", {})  # widget state is kept: the static book renders it


def slowest_cells(nb, n: int = 3) -> list[tuple[float, str]]:
    """The `n` code cells papermill timed longest: (seconds, the cell's first line)."""
    timed = [(float(c.metadata.get("papermill", {}).get("duration") or 0.0),
              next((line for line in c.source.splitlines() if line.strip()), ""))
             for c in nb.cells if c.cell_type == "code"]
    return sorted(timed, key=lambda t: -t[0])[:n]


def execute_notebook(src: Path, out: Path, parameters: dict, cwd: Path = REPO,
                     log_output: bool = False, progress: bool = False,
                     slowest: list | None = None) -> float:
    """jupytext source -> executed .ipynb with papermill; returns the seconds it took. The
    three slowest cells, (seconds, first line), are appended to `slowest` when given."""
    import jupytext
    import nbformat
    import papermill as pm

    out.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(src)
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    tmp_in = out.with_suffix(".input.ipynb")
    nbformat.write(nb, tmp_in)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(tmp_in), str(out), parameters=parameters, cwd=str(cwd),
                            kernel_name="python3", progress_bar=progress, log_output=log_output)
    finally:
        tmp_in.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    done = nbformat.read(out, as_version=4)
    if slowest is not None:
        slowest.extend(slowest_cells(done))
    clean_notebook(done)
    nbformat.write(done, out)
    return seconds


def declared_parameters(src: Path) -> set[str]:
    """The names a chapter's `parameters` cell assigns (papermill injects only those)."""
    import ast

    import jupytext

    names: set[str] = set()
    for cell in jupytext.read(src).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else []
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def book_runs(profile: str, dataset: str | None = None, scope: str | None = None,
              chapters: set[str] | None = None) -> list:
    """Every run the chapters' plans make in `profile` and `scope` (None: the profile's
    default), each once (the IDE trunk that every chapter starts from counts once), in chapter
    order; only those of `chapters` (notebook stems, e.g. "05_li2019_self_attention") when
    given."""
    from ..papers import MODULES

    seen: dict = {}
    for module in sorted(MODULES, key=lambda m: m.CHAPTER):
        if chapters is not None and module.CHAPTER not in chapters:
            continue
        for group in module.plan(profile, dataset, scope).values():
            for exp in group:
                seen.setdefault(exp.run_name, exp)
    return list(seen.values())


def finished_runs(exps: list, runs_dir: str | Path) -> dict[str, float]:
    """Run name -> wall time in seconds (0 when unrecorded) of the runs of `exps` whose record
    is complete."""
    from ..experiments import run_dir_for
    from ..io import read_json

    done = {}
    for exp in exps:
        path = run_dir_for(exp, runs_dir) / "record.json"
        rec = read_json(path) if path.exists() else {}
        if rec.get("status") == "complete":
            done[exp.run_name] = float(rec.get("wall_time_s") or 0.0)
    return done


def runs_progress(exps: list, runs_dir: str | Path, cached: set[str]) -> str:
    """One line: how many of the book's runs are done, how many this job trained and at what
    mean wall time, and the time the rest would take at that pace. The pace leaves out the
    trunk run the others start from (chapter 1's IDE run trains 14 epochs, the chapters' runs
    3-6): there is no estimate until a run other than it was trained, since a guess would not
    tell the truth."""
    done = finished_runs(exps, runs_dir)
    trunks = {e.trunk_from for e in exps if e.trunk_from}
    trained = {name: t for name, t in done.items() if name not in cached}
    paced = {name: t for name, t in trained.items() if name not in trunks}
    left = len(exps) - len(done)
    line = (f"runs: {len(done)} of {len(exps)} done ({len(cached)} cached at the start, "
            f"{len(trained)} trained by this job)")
    if paced and left:
        pace = sum(paced.values()) / len(paced)
        line += (f"; {left} left, about {left * pace / 60:.0f} min at this job's "
                 f"{pace / 60:.1f} min a run")
    elif left:
        line += f"; {left} left"
    return line


def main_job(profile: str = "synthetic", data_root: str = "data", out: str = "build",
             device: str = "cpu", only: list[str] | None = None, scope: str | None = None,
             workers: int | None = None) -> int:
    """Data -> the book's runs -> every notebook (papermill) -> HTML book. Prints progress and
    a timing table. `scope`: which of each chapter's runs ("core" or "full",
    `experiments.SCOPES`; None: the profile's default, core for synthetic). `workers`: the
    single-thread processes that train the runs before the chapters execute
    (`book.train_ahead`; None: one per core; 0: none, each chapter trains its own runs)."""
    from .assemble import build as build_book
    from .scoreboard import write_build_info
    from ..experiments import SYNTH_SIZE, Experiment, dataset_root, resolve_scope

    scope = resolve_scope(profile, scope)  # before any data is generated
    out_dir = REPO / out
    timings: dict[str, float] = {}
    cells: dict[str, list] = {}   # chapter -> its slowest cells
    t0 = time.perf_counter()
    print(f"[1/4] SynthReID ({SYNTH_SIZE.get(profile, 'default')}) in {data_root}/", flush=True)
    t = time.perf_counter()
    image_size = {"height": 256, "width": 128} if profile == "gpu" else {}  # as the chapters
    folder = dataset_root(Experiment(name="data", synth_size=SYNTH_SIZE.get(profile, "default"),
                                     **image_size), REPO / data_root)
    timings["synthreid"] = time.perf_counter() - t
    print(f"      {folder} ready ({timings['synthreid']:.1f} s)", flush=True)
    srcs = chapter_sources(only=only)
    params = {"profile": profile, "data_root": data_root, "device": device, "scope": scope}
    runs_dir = REPO / "runs"
    runs = book_runs(profile, "synthreid", scope)
    print(f"      scope {scope}: {len(runs)} runs", flush=True)
    cached = set(finished_runs(runs, runs_dir))
    print(f"      {runs_progress(runs, runs_dir, cached)}", flush=True)
    # the machine, commit and time the landing page's scoreboard names
    write_build_info(out_dir / "executed", profile, device)
    if workers != 0:
        from .train_ahead import train_ahead
        print("[2/4] training the book's runs before the chapters read them", flush=True)
        t = time.perf_counter()
        chapter_runs = book_runs(profile, "synthreid", scope,
                                 {src.stem for src in srcs} if only else None)
        train_ahead(chapter_runs, REPO / data_root, runs_dir, device, workers)
        timings["runs"] = time.perf_counter() - t
        print(f"      {runs_progress(runs, runs_dir, cached)} ({timings['runs']:.0f} s)",
              flush=True)
    else:
        print("[2/4] no training phase (workers 0): each chapter trains its own runs", flush=True)
    for i, src in enumerate(srcs, 1):
        print(f"[3/4] notebook {i}/{len(srcs)}: {src.name} (profile {profile}, scope {scope})",
              flush=True)
        declared = declared_parameters(src)
        slow: list = []
        timings[src.stem] = execute_notebook(src, out_dir / "executed" / f"{src.stem}.ipynb",
                                             {k: v for k, v in params.items()
                                              if k != "scope" or k in declared},
                                             progress=True, slowest=slow)
        cells[src.stem] = [{"seconds": round(t, 1), "cell": line} for t, line in slow]
        print(f"      done in {timings[src.stem]:.0f} s; "
              f"{runs_progress(runs, runs_dir, cached)}", flush=True)
        print("      slowest cells: " + "; ".join(f"{t:.0f} s `{line[:50]}`"
                                                   for t, line in slow), flush=True)
    print("[4/4] rendering the book", flush=True)
    t = time.perf_counter()
    index = build_book(executed_dir=out_dir / "executed", out_dir=out_dir / "book")
    timings["book"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    (out_dir / "main_job_timings.json").write_text(json.dumps(
        {**timings, "slowest_cells": cells}, indent=2))
    print("\n".join(f"  {k:32s} {v:8.1f} s" for k, v in timings.items()))
    print(f"book: {index}")
    return 0


def set_aside_stale_runs(runs_dir: str | Path = "runs", profile: str = "smoke") -> list[str]:
    """Move the `profile` runs under `runs_dir` that other code trained (their record's "code"
    differs from `experiments.code_fingerprint()`, or is missing) to `<runs_dir>.stale/<time>/`,
    and return their names. The chapters then train them again: a cached run from older code
    of the same configuration can hold other numbers than the current code trains, and nbval,
    which trains every run from scratch, would then disagree with the committed outputs (the
    CI failure on 6dcf922: chapters 3, 5 and 7 had been executed over such runs)."""
    import shutil

    from ..experiments import code_fingerprint
    runs_dir = Path(runs_dir)
    current = code_fingerprint()
    stale = []
    for record in sorted(runs_dir.glob("*/record.json")):
        try:
            rec = json.loads(record.read_text())
        except (OSError, ValueError):
            continue   # unreadable: the run itself reports it when it is needed
        if isinstance(rec, dict) and rec.get("profile") == profile \
                and rec.get("code") != current:
            stale.append(record.parent)
    if stale:
        dest = runs_dir.with_name(runs_dir.name + ".stale") / time.strftime("%Y%m%d-%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for run in stale:
            shutil.move(str(run), str(dest / run.name))
        print(f"{len(stale)} {profile} run(s) trained by other code moved to {dest}: "
              f"{', '.join(r.name for r in stale)}")
    return [r.name for r in stale]


def refresh_committed(only: list[str] | None = None, runs_dir: str | Path = REPO / "runs"
                      ) -> None:
    """Re-execute every chapter in the smoke profile into notebooks/NN_topic.ipynb (for nbval),
    in the portable numeric mode, so the outputs are those of every x86-64 machine. Smoke runs
    that other code trained are set aside first (`set_aside_stale_runs`), so the outputs are
    what this code trains from scratch, as nbval will."""
    import os

    from ..numerics import is_portable, portable_env
    if not is_portable():
        raise RuntimeError("refresh_committed: run it in the portable numeric mode (`make "
                           "notebooks`, or `reidnb numerics portable -- python -c ...`): nbval "
                           "compares the committed outputs exactly on every machine")
    os.environ.update(portable_env())  # the kernels papermill starts inherit it
    set_aside_stale_runs(runs_dir, "smoke")
    for src in chapter_sources(only=only):
        secs = execute_notebook(src, src.with_suffix(".ipynb"),
                                {"profile": "smoke", "data_root": "data", "device": "cpu"})
        print(f"{src.with_suffix('.ipynb').name}: {secs:.0f} s")
