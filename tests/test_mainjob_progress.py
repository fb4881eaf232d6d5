"""The main job's run accounting: every run of the book once, and a time-left line that only
extrapolates from runs this job actually trained."""

import json

from reidnb.book.mainjob import book_runs, finished_runs, runs_progress
from reidnb.experiments import run_dir_for
from reidnb.io import atomic_write_json
from reidnb.papers import MODULES


def _complete(exp, runs_dir, wall):
    atomic_write_json(run_dir_for(exp, runs_dir) / "record.json",
                      {"status": "complete", "wall_time_s": wall})


def test_book_runs_lists_each_run_of_every_plan_once():
    runs = book_runs("synthetic", "synthreid")
    names = [e.run_name for e in runs]
    assert len(names) == len(set(names))
    every = {e.run_name for m in MODULES for g in m.plan("synthetic", "synthreid").values()
             for e in g}
    assert set(names) == every
    # the IDE trunk every CPU chapter starts from is one run, listed first (chapter 2's plan)
    trunk = {e.trunk_from for e in runs if e.trunk_from}
    assert len(trunk) == 1 and names.index(trunk.pop()) == 0


def test_progress_counts_cached_and_trained_runs_and_extrapolates_only_from_trained(tmp_path):
    runs = book_runs("smoke", "synthreid")
    n = len(runs)
    assert runs_progress(runs, tmp_path, set()) == (
        f"runs: 0 of {n} done (0 cached at the start, 0 trained by this job); {n} left")
    _complete(runs[0], tmp_path, 600.0)            # there before the job: cached
    cached = set(finished_runs(runs, tmp_path))
    assert cached == {runs[0].run_name}
    assert "; " + f"{n - 1} left" in runs_progress(runs, tmp_path, cached)   # no pace yet
    _complete(runs[1], tmp_path, 60.0)
    _complete(runs[2], tmp_path, 180.0)             # trained by the job: 2 min a run
    atomic_write_json(run_dir_for(runs[3], tmp_path) / "record.json", {"status": "running"})
    line = runs_progress(runs, tmp_path, cached)
    assert line.startswith(f"runs: 3 of {n} done (1 cached at the start, 2 trained by this job)")
    assert line.endswith(f"{n - 3} left, about {(n - 3) * 2:.0f} min at this job's 2.0 min a run")
    for exp in runs[3:]:
        _complete(exp, tmp_path, 1.0)
    assert runs_progress(runs, tmp_path, cached).endswith(f"{n - 1} trained by this job)")


def test_pace_leaves_out_the_trunk_run_the_chapters_start_from(tmp_path):
    """Chapter 1's IDE trunk trains several times longer than a chapter's run: a pace taken
    from it alone would promise hours that the book does not take."""
    runs = book_runs("synthetic", "synthreid")
    n = len(runs)
    trunk = {e.trunk_from for e in runs if e.trunk_from}
    assert runs[0].run_name in trunk
    _complete(runs[0], tmp_path, 700.0)             # the trunk, trained by this job
    line = runs_progress(runs, tmp_path, set())
    assert line == (f"runs: 1 of {n} done (0 cached at the start, 1 trained by this job); "
                    f"{n - 1} left")
    _complete(runs[1], tmp_path, 120.0)
    line = runs_progress(runs, tmp_path, set())
    assert line.endswith(f"{n - 2} left, about {(n - 2) * 2:.0f} min at this job's 2.0 min a run")


def test_runs_from_other_code_are_set_aside_before_a_refresh(tmp_path, capsys):
    """refresh_committed re-executes over the runs this code trains, never over cached runs
    that older code trained (their numbers may differ from what nbval trains from scratch)."""
    from reidnb.book.mainjob import set_aside_stale_runs
    from reidnb.experiments import code_fingerprint

    runs = tmp_path / "runs"
    current = code_fingerprint()
    assert len(current) == 12 and current == code_fingerprint()
    for name, profile, code in (("fresh", "smoke", current), ("old", "smoke", "0123456789ab"),
                                ("unmarked", "smoke", None), ("book", "synthetic", "x")):
        (runs / name).mkdir(parents=True)
        rec = {"run_name": name, "profile": profile, "status": "complete"}
        if code is not None:
            rec["code"] = code
        (runs / name / "record.json").write_text(json.dumps(rec))
        (runs / name / "best.pt").write_bytes(b"weights")
    assert set_aside_stale_runs(runs, "smoke") == ["old", "unmarked"]
    assert sorted(p.name for p in runs.iterdir()) == ["book", "fresh"]
    (stamp,) = (tmp_path / "runs.stale").iterdir()
    assert sorted(p.name for p in stamp.iterdir()) == ["old", "unmarked"]
    assert (stamp / "old" / "best.pt").read_bytes() == b"weights"   # moved, not deleted
    assert "2 smoke run(s) trained by other code" in capsys.readouterr().out
    assert set_aside_stale_runs(runs, "smoke") == []


def test_book_runs_of_some_chapters_are_those_chapters_runs_only():
    """`reidnb book --only 03 04` trains ahead only what those two chapters read."""
    every = book_runs("smoke", "synthreid", "full")
    some = book_runs("smoke", "synthreid", "full",
                     {"03_lakshmi_siamese_tutorial", "04_jeong2020_uniformity"})
    names = {e.name for e in some}
    assert {e.run_name for e in some} < {e.run_name for e in every}
    assert "lakshmi_tutorial_batch_hard" in names and "jeong2020_full" in names
    assert not any(n.startswith(("li2019", "jamal2020", "zheng2019")) for n in names)
    assert book_runs("smoke", "synthreid", "full", set()) == []
