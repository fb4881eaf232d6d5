"""The regression suite still catches real regressions: a test of the tests.

Each entry of MUTATIONS is a deliberate, plausible bug in the library (the junk filter of the
Market-1501 evaluation dropped, re-ranking's lambda ignored, the batch-hard triplet loss mining
the wrong positive, ...). For each one, `reidnb/` and `tests/` are copied into a temporary
folder, the bug is written into the copy, and the tests named to catch it are run there in a
subprocess that imports the mutated copy (checked, not assumed: reidnb is installed in editable
mode, so the subprocess records where it imported reidnb from). The test passes only when that
run fails, reports the named tests as failed, and its output says why (a message naming the
cause, e.g. "junk filter", "lambda_value"). A control runs the same tests on an unmutated copy,
which must pass, so a broken harness cannot pass for a working suite.

When the library's source changes so that a mutation's snippet is no longer found exactly once,
the test fails and says so: update the snippet in MUTATIONS rather than deleting the entry.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300

pytestmark = pytest.mark.slow  # one pytest subprocess (torch import included) per case


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the current source
    new: str  # the deliberate bug
    bug: str  # what the bug is, in words
    catchers: tuple[str, ...]  # pytest node ids that must fail
    cause: str  # regex the failure output must contain (the message naming the cause)


MUTATIONS = (
    Mutation(
        id="junk_kept_in_ranking",
        path="reidnb/metrics/rank.py",
        old="rank = pos + 1 - junk_before",
        new="rank = pos + 1",
        bug="junk (same pid and camera as the query, gallery pid -1) is no longer removed from "
        "the ranking: it stays in as wrong matches ahead of the hits",
        catchers=(
            "tests/test_metrics.py::test_evaluate_rank_same_pid_same_camera_is_junk",
            "tests/test_metrics.py::test_evaluate_rank_gallery_junk_pid_is_ignored",
        ),
        cause=r"junk filter: .*must be removed from the ranking",
    ),
    Mutation(
        id="same_camera_counted_as_match",
        path="reidnb/metrics/rank.py",
        old="good = sp_ok & (g_pids[safe] == q_pids[a:b, None]) & (g_camids[safe] != "
        "q_camids[a:b, None])",
        new="good = sp_ok & (g_pids[safe] == q_pids[a:b, None])",
        bug="the camera check is dropped: gallery images of the query's pid taken by the "
        "query's own camera count as true matches",
        catchers=("tests/test_metrics.py::test_evaluate_rank_same_pid_same_camera_is_junk",),
        cause=r"junk filter: a gallery image with the query's pid AND camera was counted as a "
        r"true match",
    ),
    Mutation(
        id="cmc_off_by_one",
        path="reidnb/metrics/rank.py",
        old="cmc = torch.cumsum(counts[1 : max_rank + 1], 0)",
        new="cmc = torch.cumsum(counts[0:max_rank], 0)",
        bug="cmc[k] counts first hits within the top k instead of the top k + 1",
        catchers=("tests/test_metrics.py::test_evaluate_rank_cmc_counts_top_k_plus_one",),
        cause=r"CMC off by one",
    ),
    Mutation(
        id="rerank_lambda_ignored",
        path="reidnb/metrics/rerank.py",
        old="dst.div_(col_max[:nq, None]).mul_(lambda_value).add_(keep).sub_(q.mul_(keep))",
        new="dst.div_(col_max[:nq, None]).mul_(0.3).add_(0.7).sub_(q.mul_(0.7))",
        bug="re_ranking ignores lambda_value: the final combination always weighs the original "
        "distance 0.3 and the Jaccard distance 0.7 (the default)",
        catchers=("tests/test_metrics.py::test_re_ranking_lambda_value_is_used",),
        cause=r"lambda_value is ignored or mis-weighted",
    ),
    Mutation(
        id="triplet_easiest_positive",
        path="reidnb/losses.py",
        old='d_ap = dist.masked_fill(~same, float("-inf")).amax(1)',
        new='d_ap = dist.masked_fill(~same, float("inf")).amin(1)',
        bug="batch_hard_triplet takes the nearest (easiest) positive, the anchor itself, "
        "instead of the farthest",
        catchers=(
            "tests/test_losses.py::test_batch_hard_triplet_takes_farthest_positive_and_nearest_"
            "negative",
        ),
        cause=r"batch-hard mining takes the farthest positive.*the NEAREST positive",
    ),
)

PROBE = '''"""Loaded with -p: records which reidnb this pytest process imports."""
import os

import reidnb

with open(os.environ["REIDNB_MUTATION_PROBE"], "w") as f:
    f.write(os.path.realpath(reidnb.__file__))
'''


def _copy_repo(dest: Path) -> Path:
    """The library, the tests and the pytest configuration, without caches."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "reidnb", dest / "reidnb", ignore=skip)
    shutil.copytree(REPO / "tests", dest / "tests", ignore=skip)
    for name in ("pyproject.toml", "conftest.py"):  # pytest's configuration, as in the repo
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, dest / name)
    (dest / "_mutation_probe.py").write_text(PROBE)
    return dest


def _mutate(root: Path, m: Mutation) -> None:
    target = root / m.path
    source = target.read_text()
    found = source.count(m.old)
    assert found == 1, (
        f"mutation {m.id}: expected its snippet exactly once in {m.path}, found it {found} "
        f"times; the source changed, update MUTATIONS in tests/test_mutations.py.\n"
        f"snippet: {m.old!r}"
    )
    target.write_text(source.replace(m.old, m.new))


def _run_pytest(root: Path, nodes: tuple[str, ...]) -> tuple[int, str]:
    """Run `nodes` in the copy at `root`; check that the copy's reidnb is the one imported."""
    probe = root / "imported_from.txt"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["REIDNB_MUTATION_PROBE"] = str(probe)
    env.setdefault("OMP_NUM_THREADS", "1")
    # the catching tests need no third-party plugin, and nbval's import alone costs seconds
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
           "_mutation_probe", "--tb=short", "-rf", "--color=no", *nodes]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    output = proc.stdout + proc.stderr
    assert probe.exists(), f"the pytest subprocess did not start properly:\n{output}"
    imported = Path(probe.read_text())
    assert imported.is_relative_to(root.resolve()), (
        f"the pytest subprocess imported reidnb from {imported}, not from the copy under "
        f"{root}: the mutation was not tested"
    )
    return proc.returncode, output


def test_mutation_table_is_consistent():
    ids = [m.id for m in MUTATIONS]
    assert len(ids) == len(set(ids)), f"duplicate mutation ids: {ids}"
    for m in MUTATIONS:
        assert m.old != m.new, m.id
        assert (REPO / m.path).read_text().count(m.old) == 1, (
            f"mutation {m.id}: snippet not found exactly once in {m.path}; update MUTATIONS"
        )
        for node in m.catchers:
            assert (REPO / node.split("::")[0]).is_file(), f"{m.id}: no file for {node}"


def test_unmutated_copy_passes_the_catching_tests(tmp_path):
    nodes = tuple(dict.fromkeys(n for m in MUTATIONS for n in m.catchers))
    rc, output = _run_pytest(_copy_repo(tmp_path / "repo"), nodes)
    assert rc == 0, f"the catching tests fail on the unmutated copy (exit {rc}):\n{output}"
    assert re.search(r"\b\d+ passed\b", output) and "failed" not in output, output


@pytest.mark.parametrize("m", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_mutation_is_caught_with_its_cause(m, tmp_path):
    root = _copy_repo(tmp_path / "repo")
    _mutate(root, m)
    rc, output = _run_pytest(root, m.catchers)
    assert rc == 1, (
        f"mutation {m.id} ({m.bug}) was not caught: pytest exited {rc} (1 = tests failed)"
        f"\n{output}"
    )
    for node in m.catchers:
        assert re.search(rf"^FAILED {re.escape(node)}(\[| |$)", output, re.M), (
            f"mutation {m.id}: {node} did not fail\n{output}"
        )
    # the explanation lines pytest prints for a failure ("E   AssertionError: ..."), not the
    # test's source, which holds the message text whether or not it was raised
    explained = "\n".join(line[1:].strip() for line in output.splitlines()
                          if line.startswith("E "))
    assert re.search(m.cause, explained), (
        f"mutation {m.id}: the failure does not name its cause (no match for {m.cause!r})"
        f"\n{output}"
    )
