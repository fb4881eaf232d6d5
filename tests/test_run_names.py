"""Every run the chapters make keeps its name (its configuration hash) across refactors: a renamed
run would retrain silently and orphan the records under runs/. The golden list was taken at commit
3d16f78, before the paper contract (issue 13); li2019's, jamal2020's and zheng2019's runs were
added when their experiments landed, leaving every earlier name as it was. A change to it must be
deliberate and said in the chapter that shows the run. One was: zheng2019's IDE-head runs of the
gpu and paper profiles, renamed when their last stride became 2 (`zheng2019.LAST_STRIDE`; none had
been run; chapter 7's table of readings says so)."""

import json
from pathlib import Path

import pytest

from reidnb.papers import ide, jamal2020, jeong2020, lakshmi, li2019, zheng2019

GOLDEN = json.loads((Path(__file__).parent / "golden_run_names.json").read_text())


def _chapter_runs(profile: str) -> set[str]:
    exps = [ide.ide_experiment(profile), *lakshmi.lakshmi_experiments(profile).values()]
    for group in jeong2020.jeong2020_plan(profile, scope="full").values():
        exps += group
    exps += list(jeong2020.jeong2020_bag_runs(profile).values())
    for group in li2019.li2019_plan(profile, scope="full").values():
        exps += group
    for group in jamal2020.jamal2020_plan(profile, scope="full").values():
        exps += group
    for group in zheng2019.zheng2019_plan(profile, scope="full").values():
        exps += group
    return {e.run_name for e in exps}


@pytest.mark.parametrize("profile", sorted(GOLDEN))
def test_run_names_are_unchanged(profile):
    now = _chapter_runs(profile)
    assert now == set(GOLDEN[profile]), (
        f"{profile}: renamed or new runs {sorted(now - set(GOLDEN[profile]))}, "
        f"gone {sorted(set(GOLDEN[profile]) - now)}")
