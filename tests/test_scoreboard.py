"""The landing page's scoreboard: verdicts a chapter publishes (reidnb.verdicts.publish...), taken
out of the chapter by the assembler and rendered on the root page (reidnb.book.scoreboard)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reidnb import verdicts
from reidnb.book import assemble as book
from reidnb.book import scoreboard
from reidnb.book.assemble import BookError


def _values(rows, metric="rank1"):
    return pd.DataFrame(rows, columns=["label", "seed", metric])


def _table5():
    """Three seeds: +AM beats the baseline on every seed, +AM+UL is level with +AM."""
    vals = _values([("base", 0, 10), ("base", 1, 20), ("base", 2, 30),
                    ("am", 0, 12), ("am", 1, 23), ("am", 2, 34),
                    ("full", 0, 13), ("full", 1, 22), ("full", 2, 34)])
    return verdicts.ordering(vals, ["base", "am", "full"])


def test_record_keeps_each_pair_its_verdict_seeds_and_interval():
    rec = verdicts.record("jeong2020", "Table 5: base < am < full", _table5())
    assert rec["schema"] == verdicts.SCHEMA and rec["paper"] == "jeong2020"
    first, second = rec["rows"]
    assert first["claim"] == "am > base" and first["metric"] == "rank-1"
    assert first["verdict"] == "holds" and first["seeds"] == [0, 1, 2]
    assert first["mean"] == pytest.approx(3.0) and first["percent"] is True
    assert first["low"] == pytest.approx(3 - 4.303 / 3 ** 0.5, abs=1e-4)
    assert second["verdict"] == "within noise"
    json.dumps(rec)   # JSON-ready: it travels as a notebook output
    assert verdicts.summary_line(rec) == ("scoreboard: jeong2020, Table 5: base < am < full: "
                                          "1 holds, 1 within noise")


def test_record_of_an_untested_pair_has_no_numbers():
    vals = _values([("a", 0, 1.0), ("b", 0, 2.0)])
    (row,) = verdicts.record("p", "b beats a", [verdicts.compare(vals, "b", "a")])["rows"]
    assert row["verdict"] == "not tested" and row["seeds"] == [0]
    assert row["mean"] is None and row["low"] is None
    with pytest.raises(TypeError, match="Comparison"):
        verdicts.record("p", "c", ["b > a"])
    with pytest.raises(ValueError, match="paper"):
        verdicts.record("", "c", [])


@pytest.mark.parametrize("gains, expect, verdict", [
    ([1.0, 2.0, 3.0, 4.1], "rises", "holds"),
    ([1.0, 2.0, 3.0, 4.1], "falls", "reversed"),
    ([4.1, 3.0, 2.0, 1.0], "falls", "holds"),
    ([1.0, -1.0, 1.0, -1.0], "rises", "within noise"),
    ([1.0, 2.0, 3.0], "rises", "not tested"),
])
def test_trend_verdict_reads_the_slope_against_the_claimed_direction(gains, expect, verdict):
    knob = [0.0, 0.1, 0.2, 0.3][:len(gains)]
    table = pd.DataFrame({"base": [0.0] * len(gains), "new": gains}, index=knob)
    assert verdicts.trend_verdict(verdicts.trend(table, "new", "base"), expect) == verdict
    rec = verdicts.trend_record("li2019", "gain rises", {"rank1": table, "mAP": table}, "new",
                                "base", expect, seeds=pd.Series([2, 0]).unique(), knob="m")
    assert [r["metric"] for r in rec["rows"]] == ["rank-1", "mAP"]
    assert {r["verdict"] for r in rec["rows"]} == {verdict}
    assert rec["rows"][0]["seeds"] == [0, 2] and rec["rows"][0]["levels"] == len(gains)
    assert rec["rows"][0]["claim"] == f"new \u2212 base {expect} with m"
    with pytest.raises(ValueError, match="expect"):
        verdicts.trend_verdict(verdicts.trend(table, "new", "base"), "grows")


def test_publish_outputs_the_record_under_its_mime_type(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    verdicts.publish("jeong2020", "Table 5", _table5())
    verdicts.publish_not_tested("li2019", "Table 6: softmax beats sigmoid", "one seed", seeds=[0])
    (bundle, raw), (untested, _) = shown
    assert raw and set(bundle) == {verdicts.MIME, "text/plain"}
    assert bundle[verdicts.MIME] == verdicts.record("jeong2020", "Table 5", _table5())
    assert bundle["text/plain"].startswith("scoreboard: jeong2020, Table 5:")
    (row,) = untested[verdicts.MIME]["rows"]
    assert row == {"kind": "note", "claim": "one seed", "metric": "", "percent": False,
                   "verdict": "not tested", "seeds": [0], "mean": None, "low": None,
                   "high": None}


def test_publish_judged_shows_the_verdicts_or_says_why_none_were_formed(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, raw=False: shown.append((obj, raw)))
    verdicts.publish_judged("jeong2020", "Table 5", _table5(), "no runs")
    (bundle, raw), (table, _) = shown
    assert raw and bundle[verdicts.MIME] == verdicts.record("jeong2020", "Table 5", _table5())
    assert table.equals(verdicts.verdict_table(_table5()))
    shown.clear()
    verdicts.publish_judged("jeong2020", "Table 5", [], "the smoke profile has no +AM run")
    ((untested, _),) = shown
    (row,) = untested[verdicts.MIME]["rows"]
    assert row["verdict"] == "not tested" and row["claim"] == "the smoke profile has no +AM run"


# --- the assembler's side ----------------------------------------------------------------

def verdict_output(rec: dict) -> dict:
    return {"output_type": "display_data", "metadata": {},
            "data": {verdicts.MIME: rec, "text/plain": "scoreboard: ..."}}


def chapter_nb(*records: dict, title: str = "# Chapter 4 — Uniformity (`jeong2020`)",
               injected: dict | None = None) -> dict:
    """A chapter as papermill leaves it, one cell per published record (with a table after)."""
    cells = [
        {"cell_type": "markdown", "id": "t", "metadata": {}, "source": title},
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]},
         "execution_count": 1, "outputs": [],
         "source": 'profile = "synthetic"\ndevice = "cpu"\nseed = 0\n'},
    ]
    if injected:
        cells.append({"cell_type": "code", "id": "i", "metadata": {"tags": ["injected-parameters"]},
                      "execution_count": 2, "outputs": [],
                      "source": "# Parameters\n" + "".join(f"{k} = {v!r}\n"
                                                          for k, v in injected.items())})
    for i, rec in enumerate(records):
        table = {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                 "data": {"text/plain": "the verdict table"}}
        cells.append({"cell_type": "code", "id": f"v{i}", "metadata": {}, "execution_count": 3,
                      "outputs": [verdict_output(rec), table],
                      "source": "verdicts.publish(...)\nverdicts.verdict_table(...)"})
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}


def test_take_verdicts_drops_the_outputs_and_leaves_an_anchor():
    rec = verdicts.record("jeong2020", "Table 5: base < am < full", _table5())
    nb = chapter_nb(rec, rec)
    entries = scoreboard.take_verdicts(nb, "04_jeong2020")
    assert [e.anchor for e in entries] == ["verdicts-jeong2020-table-5-base-am-full",
                                           "verdicts-jeong2020-table-5-base-am-full-2"]
    assert entries[0].title == "Chapter 4 — Uniformity (jeong2020)"
    assert entries[0].record == rec and not entries[0].fallback
    kinds = [(c["cell_type"], c["metadata"].get("tags")) for c in nb["cells"]]
    assert kinds[2:] == [("markdown", ["reidnb-anchor"]), ("code", None)] * 2
    anchor = nb["cells"][2]
    assert anchor["source"] == ('<div id="verdicts-jeong2020-table-5-base-am-full" '
                                'class="reidnb-anchor"></div>')
    assert anchor["id"] == "reidnb-anchor-1"
    code = nb["cells"][3]
    assert [o["data"] for o in code["outputs"]] == [{"text/plain": "the verdict table"}]


def test_take_verdicts_refuses_a_record_of_another_form():
    rec = verdicts.record("p", "c", [])
    with pytest.raises(scoreboard.ScoreboardError, match="schema"):
        scoreboard.take_verdicts(chapter_nb({**rec, "schema": 99}), "04_x")
    bad = {**rec, "rows": [{"verdict": "maybe"}]}
    with pytest.raises(scoreboard.ScoreboardError, match="not one of"):
        scoreboard.take_verdicts(chapter_nb(bad), "04_x")


FACTS = {"profile": "synthetic", "device": "cpu", "CPU": "AMD EPYC 7B13 (16 cores)",
         "commit": "35bf2a6", "date": "2026-11-30 16:20 UTC"}


def test_render_lists_each_claim_with_its_link_verdicts_and_seeds():
    rec = verdicts.record("jeong2020", "Table 5: base < am < full", _table5())
    ratio = verdicts.record("jeong2020", "Eq. 8", [verdicts.compare(
        _values([("a", s, 1.0 + s) for s in range(3)] + [("b", s, 0.5 + s) for s in range(3)],
                "score ratio"), "a", "b", "score ratio")])
    entries = scoreboard.take_verdicts(chapter_nb(rec, ratio), "04_jeong2020")
    text = scoreboard.render(entries, FACTS, papers=("jeong2020", "zheng2019", "lakshmi"),
                             no_results=frozenset({"lakshmi"}))
    assert text.startswith(scoreboard.HEADING + "\n\n<div id=\"reidnb-scoreboard\"")
    block = text.split("\n\n")[1]
    assert "\n\n" not in block.strip()        # one raw HTML block: no blank line inside
    for fact, value in FACTS.items():
        assert f'data-fact="{fact}"' in block and value in block.replace("&amp;", "&")
    # three columns however many metrics: each verdict names its metric
    assert "<th>claim</th><th>verdicts</th><th>seeds</th>" in block
    assert block.count("<th>") == 3
    am_row = block[block.index('<td class="reidnb-pair">am &gt; base</td>'):]
    am_row = am_row[:am_row.index("</tr>")]
    assert am_row.count('<span class="reidnb-metric">') == 1
    assert '<span class="reidnb-metric">rank-1</span> <span class="reidnb-v' in am_row
    assert '<span class="reidnb-metric">score ratio</span>' in block
    assert ('<a href="04_jeong2020.html#verdicts-jeong2020-table-5-base-am-full">'
            "Table 5: base &lt; am &lt; full</a>") in block
    assert '<td class="reidnb-pair">am &gt; base</td>' in block
    assert '<span class="reidnb-v reidnb-v-holds">holds</span>' in block
    assert '<span class="reidnb-v reidnb-v-within-noise">within noise</span>' in block
    assert '<td class="reidnb-seeds">0, 1, 2</td>' in block
    assert "3 verdicts on 2 claims from 1 chapter: 2 holds, 1 within noise." in block
    unjudged = scoreboard.render(
        [scoreboard.Entry("c", "C", "a", verdicts.not_tested_record("p", "x", "one seed"))], FACTS)
    assert ('<td class="reidnb-verdicts"><span class="reidnb-v reidnb-v-not-tested">not tested'
            "</span></td>") in unjudged and "reidnb-metric" not in unjudged
    assert "zheng2019" in block and "no chapter of this build runs it" in block
    assert "prints no quantitative result" in block
    assert verdicts.RULE in text


def test_render_without_verdicts_says_not_built_yet():
    text = scoreboard.render([], FACTS)
    assert 'id="reidnb-scoreboard"' in text and "not built yet" in text
    assert "<table" not in text and 'data-fact="commit"' in text


def test_build_facts_from_build_json_or_from_the_assembly(tmp_path, monkeypatch):
    params = {"04_a": {"profile": "synthetic", "device": "cpu"},
              "05_b": {"profile": "synthetic", "device": "cpu"}}
    info = {"cpu": "AMD EPYC 7B13", "cores": 16, "gpu": None, "commit": "abc1234",
            "date": "2026-11-30T16:20:05+00:00"}
    facts = scoreboard.build_facts(params, info)
    assert facts == {"profile": "synthetic", "device": "cpu", "CPU": "AMD EPYC 7B13 (16 cores)",
                     "commit": "abc1234", "date": "2026-11-30 16:20 UTC"}
    mixed = scoreboard.build_facts({**params, "01_c": {"profile": "smoke"}}, None)
    assert mixed["profile"] == "mixed: synthetic, smoke"
    assert mixed["CPU"].startswith("not recorded") and mixed["date"].endswith("(at assembly)")
    monkeypatch.setattr(scoreboard, "git_commit", lambda: "def5678")
    assert scoreboard.build_facts(params, None)["commit"] == "def5678 (at assembly)"


def test_write_build_info_records_the_machine_commit_and_time(tmp_path):
    path = scoreboard.write_build_info(tmp_path / "executed", "smoke", "cpu")
    info = json.loads(path.read_text())
    assert path.name == "build.json" and scoreboard.read_build_info(tmp_path / "executed") == info
    assert info["profile"] == "smoke" and info["device"] == "cpu" and info["cpu"]
    assert info["date"].endswith("+00:00") and info["gpu"] is None
    assert scoreboard.read_build_info(tmp_path) is None


def test_write_into_page_uses_the_placeholder_else_goes_under_the_title(tmp_path):
    page = tmp_path / "intro.md"
    page.write_text(f"# Title\n\nFirst.\n\n{scoreboard.PLACEHOLDER}\n\n## How to read\n")
    scoreboard.write_into_page(page, "SCOREBOARD\n")
    assert page.read_text() == "# Title\n\nFirst.\n\nSCOREBOARD\n\n## How to read\n"
    page.write_text("# Title\n\nFirst.\n")
    scoreboard.write_into_page(page, "SCOREBOARD\n")
    assert page.read_text() == "# Title\n\nSCOREBOARD\n\n\nFirst.\n"


def write_src(root: Path, intro: str) -> Path:
    src = root / "book"
    src.mkdir(parents=True)
    (src / "_config.yml").write_text("title: t\n")
    (src / "intro.md").write_text(intro)
    (src / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    return src


def test_assemble_writes_the_scoreboard_into_the_landing_page(tmp_path):
    src = write_src(tmp_path, f"# Book\n\nWhat it is.\n\n{scoreboard.PLACEHOLDER}\n\n## More\n")
    rec = verdicts.record("jeong2020", "Table 5: base < am < full", _table5())
    executed = tmp_path / "executed"
    executed.mkdir()
    (executed / "04_jeong2020.ipynb").write_text(json.dumps(chapter_nb(rec, injected={
        "profile": "synthetic", "device": "cuda"})))
    (executed / "build.json").write_text(json.dumps({
        "cpu": "Test CPU", "cores": 2, "commit": "abc1234", "date": "2026-11-30T16:20:00+00:00"}))
    asm = book.assemble(executed, tmp_path / "out", src, tmp_path / "nb")
    assert asm.chapters == ["04_jeong2020"] and asm.scoreboard and len(asm.verdicts) == 1
    assert asm.parameters == {"04_jeong2020": {"profile": "synthetic", "device": "cuda",
                                               "seed": 0}}
    intro = (tmp_path / "out" / "intro.md").read_text()
    assert scoreboard.PLACEHOLDER not in intro and intro.index("What it is") < intro.index(
        'id="reidnb-scoreboard"') < intro.index("## More")
    assert "device <code>cuda</code>" in intro and "Test CPU (2 cores)" in intro
    assert "04_jeong2020.html#verdicts-jeong2020-table-5-base-am-full" in intro
    chapter = json.loads((tmp_path / "out" / "04_jeong2020.ipynb").read_text())
    sources = [c["source"] for c in chapter["cells"]]
    assert any('id="verdicts-jeong2020-table-5-base-am-full"' in s for s in sources)
    assert verdicts.MIME not in json.dumps(chapter)


def test_assemble_without_verdicts_still_builds_the_landing_page(tmp_path):
    src = write_src(tmp_path, "# Book\n\nWhat it is.\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "01_a.ipynb").write_text(json.dumps(chapter_nb()))
    asm = book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "notebooks")
    assert asm.fallbacks == ["01_a"] and asm.verdicts == []
    intro = (tmp_path / "out" / "intro.md").read_text()
    assert intro.startswith("# Book\n\n## What this build found") and "not built yet" in intro
    assert "shown with the committed smoke outputs: <code>01_a</code>." in intro


def test_assemble_names_the_chapter_of_a_broken_record(tmp_path):
    src = write_src(tmp_path, "# Book\n")
    (tmp_path / "executed").mkdir()
    rec = {**verdicts.record("p", "c", []), "schema": 0}
    (tmp_path / "executed" / "04_x.ipynb").write_text(json.dumps(chapter_nb(rec)))
    with pytest.raises(BookError, match=r"04_x\.ipynb: 04_x: a cell output: a verdict output"):
        book.assemble(tmp_path / "executed", tmp_path / "out", src, tmp_path / "nb")


def test_effective_parameters_take_papermills_values():
    nb = chapter_nb(injected={"profile": "smoke", "data_root": "/d"})
    assert book.effective_parameters(nb) == {"profile": "smoke", "device": "cpu", "seed": 0,
                                             "data_root": "/d"}
    assert book.parameter_literals("a = 1\nb = f(2)\nc: str = 'x'\n") == {"a": 1, "c": "x"}


def test_build_line_names_the_scope_the_planned_chapters_ran_in():
    params = {"01": {"profile": "synthetic", "device": "cpu"},
              "04": {"profile": "synthetic", "device": "cpu", "scope": None},
              "07": {"profile": "synthetic", "device": "cpu", "scope": "core"}}
    info = {"cpu": "x", "commit": "abc", "date": "2026-12-01T00:00:00+00:00"}
    assert scoreboard.build_facts(params, info)["profile"] == "synthetic, scope core"
    params["07"]["scope"] = "full"
    assert scoreboard.build_facts(params, info)["profile"] == "synthetic, scope mixed: core, full"
    smoke = {"04": {"profile": "smoke", "device": "cpu", "scope": None}}
    assert scoreboard.build_facts(smoke, info)["profile"] == "smoke, scope full"
    assert scoreboard.build_facts({"01": {"profile": "smoke"}}, info)["profile"] == "smoke"
