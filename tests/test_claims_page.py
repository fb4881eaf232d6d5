"""The claims page's per-paper tables (reidnb/book/claims_page.py) and the flagged cells."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from reidnb.claims import ClaimsError, load_claims
from reidnb.book.claims_page import (FLAG_MARK, load_flags, paper_claims_html, parse_built,
                                unmatched_flags)
from reidnb.results import NOT_RUN, SYNTH_COLUMN, claims_vs_runs


def claim_table(rows, built=None):
    """A `claims_vs_runs` table from (table, dataset, protocol, method, metric, value) rows;
    `built` maps (method, metric) to (reproduced, SynthReID) strings."""
    frame = pd.DataFrame([{"paper": "zheng2019", "table": t, "dataset": d, "protocol": p,
                           "method": m, "metric": k, "value": v} for t, d, p, m, k, v in rows])
    frame["reproduced"] = NOT_RUN
    frame["run dataset"] = ""
    frame[SYNTH_COLUMN] = NOT_RUN
    for (method, metric), (real, synth) in (built or {}).items():
        sel = (frame.method == method) & (frame.metric == metric)
        frame.loc[sel & (frame.dataset == "market1501"), "reproduced"] = real
        frame.loc[sel, SYNTH_COLUMN] = synth
    return frame


ROWS = [
    ("3", "market1501", "single_query", "HA-CNN (quoted [21])", "rank1", 91.2),
    ("3", "market1501", "single_query", "IDE +IA", "rank1", 91.0),
    ("3", "market1501", "single_query", "IDE +IA", "mAP", 76.9),
    ("3", "market1501", "single_query", "IDE baseline", "rank1", 85.3),
    ("3", "market1501", "single_query", "IDE baseline", "mAP", 68.5),
    ("3", "dukemtmcreid", "single_query", "IDE baseline", "rank1", 73.2),
]
FLAGS = pd.DataFrame([
    {"paper": "zheng2019", "table": "3", "dataset": "*", "protocol": "*",
     "method": "IDE baseline", "metric": "*", "note": "Labelled 'IDE [34]' <the PCB paper>."},
    {"paper": "zheng2019", "table": "3", "dataset": "market1501", "protocol": "single_query",
     "method": "IDE +IA", "metric": "rank1", "note": "The text says 9.0."},
    {"paper": "zheng2019", "table": "3", "dataset": "dukemtmcreid", "protocol": "*",
     "method": "*", "metric": "*", "note": "Column headed only 'CUHK03-NP'."},
])


def rows_of(html: str, table: int = 0) -> list[list[str]]:
    """The text of each row's cells in the `table`-th table (markers kept, tags dropped)."""
    body = re.findall(r"<table.*?</table>", html, re.S)[table]
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_own_methods_first_with_paper_and_build_side_by_side():
    table = claim_table(ROWS, {("IDE baseline", "rank1"): ("80.0", "10.0 ± 1.0 (n=3)"),
                               ("IDE baseline", "mAP"): (NOT_RUN, "5.0 ± 0.5 (n=3)")})
    html = paper_claims_html(table, "zheng2019", flags=FLAGS.iloc[:0])
    rows = rows_of(html)
    assert rows[0] == ["method", "rank-1", "mAP", "n"]
    assert rows[1] == ["paper", "build", "paper", "build"]
    assert rows[2] == ["Table 3, Market-1501, single query"]
    # METHODS order (baseline before +IA), not file order; the build's mean beside the paper's
    assert rows[3] == ["IDE baseline", "85.3", "80.0", "68.5", "5.0", "3"]
    assert rows[4] == ["IDE +IA", "91.0", "–", "76.9", "–", ""]
    assert rows[5] == ["Table 3, DukeMTMC-reID, single query"]
    assert rows[6] == ["IDE baseline", "73.2", "10.0", "", "", "3"]   # mAP not printed there
    # the real run plainly, the SynthReID one in grey italics, its spread in the tooltip
    assert '<td class="reidnb-real" title="this build on this data set: 80.0">80.0</td>' in html
    assert ('<td class="reidnb-synth" title="this build on SynthReID: 5.0 ± 0.5 (n=3)">5.0'
            "</td>") in html
    assert 'class="reidnb-legend"' in html
    # the quoted row: folded, after the own table, paper values only
    own, quoted = html.split("<details", 1)
    assert "HA-CNN" not in own and "HA-CNN (quoted [21])" in quoted
    assert "Rows quoted from other work: 1 methods in 1 table</summary>" in quoted
    assert rows_of(html, 1) == [["method", "rank-1"], ["Table 3, Market-1501, single query"],
                                ["HA-CNN (quoted [21])", "91.2"]]


def test_a_paper_without_build_values_shows_its_numbers_alone():
    html = paper_claims_html(claim_table(ROWS), "zheng2019", flags=FLAGS.iloc[:0])
    assert rows_of(html)[0] == ["method", "rank-1", "mAP"]
    assert "build" not in rows_of(html)[1] and "reidnb-legend" not in html


def test_flags_mark_the_cell_row_or_group_they_concern_and_are_listed_once():
    html = paper_claims_html(claim_table(ROWS), "zheng2019", flags=FLAGS)
    rows = rows_of(html)
    assert rows[2] == ["IDE baseline" + f"{FLAG_MARK}1", "85.3", "68.5"]   # the row's name
    assert rows[3] == ["IDE +IA", f"91.0{FLAG_MARK}2", "76.9"]             # one value cell
    assert rows[4] == [f"Table 3, DukeMTMC-reID, single query{FLAG_MARK}3"]  # the group
    assert rows[5] == [f"IDE baseline{FLAG_MARK}1", "73.2", ""]           # same note, same number
    notes = re.findall(r'<li id="(reidnb-note-zheng2019-\d)" value="\d">(.*?)</li>', html)
    assert notes == [("reidnb-note-zheng2019-1", "Labelled &#x27;IDE [34]&#x27; &lt;the PCB "
                                                 "paper&gt;."),
                     ("reidnb-note-zheng2019-2", "The text says 9.0."),
                     ("reidnb-note-zheng2019-3", "Column headed only &#x27;CUHK03-NP&#x27;.")]
    assert 'href="#reidnb-note-zheng2019-2" title="The text says 9.0."' in html
    assert 'href="#inconsistencies-found-while-transcribing"' in html


def test_cost_figures_get_a_table_of_their_own():
    rows = ROWS + [("sec4.2", "none", "none", "IDE +IA+SA", "params_M", 27.7),
                   ("sec4.2", "none", "none", "IDE +IA+SA", "fps", 50.0)]
    html = paper_claims_html(claim_table(rows), "zheng2019", flags=FLAGS.iloc[:0])
    assert rows_of(html, 1) == [["method", "params (M)", "fps"], ["Section 4.2"],
                                ["IDE +IA+SA", "27.7", "50.0"]]


def test_parse_built_reads_claims_vs_runs_values():
    assert parse_built("50.0") == ("50.0", None, 1)
    assert parse_built("12.3 ± 1.2 (n=3)") == ("12.3", "1.2", 3)
    assert parse_built(NOT_RUN) is None


def test_the_shipped_flags_all_point_at_ledger_rows():
    flags = load_flags()
    assert len(flags) >= 30 and set(flags.paper) <= {"jeong2020", "li2019", "jamal2020",
                                                      "zheng2019"}
    assert unmatched_flags(flags, load_claims()) == []
    typo = flags.iloc[:1].assign(method="ResNet-51 +AM+UL")
    assert len(unmatched_flags(typo, load_claims())) == 1


def test_cell_flags_gather_the_cell_row_and_group_notes_of_one_number():
    from reidnb.book.claims_page import cell_flags

    flags = load_flags()
    r5 = cell_flags(flags, "jamal2020", "1", "market1501", "single_query", "+MA", "rank5")
    assert len(r5) == 1 and "below rank-1" in r5[0]
    rr = cell_flags(flags, "jamal2020", "1", "market1501", "rerank", "+MA", "rank10")
    assert len(rr) == 2 and any("single shot" in n for n in rr)    # the cell and its group
    assert cell_flags(flags, "jamal2020", "1", "market1501", "single_query", "+MA",
                      "rank1") == []


def test_load_flags_rejects_a_bad_file(tmp_path):
    path = tmp_path / "flags.csv"
    path.write_text("paper,table,note\njeong2020,2,x\n")
    with pytest.raises(ClaimsError, match="header"):
        load_flags(path)
    path.write_text("paper,table,dataset,protocol,method,metric,note\njeong2020,2,,*,*,*,x\n")
    with pytest.raises(ClaimsError, match=r"flags\.csv:2: every column needs a value"):
        load_flags(path)


def test_every_paper_of_the_ledger_renders_every_number_once():
    table = claims_vs_runs(load_claims(), [])
    for paper in table.paper.unique():
        html = paper_claims_html(table, paper)
        rows = table[table.paper == paper]
        cells = sum(len(re.findall(r"<td>[^<]", t)) for t in re.findall(r"<table.*?</table>",
                                                                        html, re.S))
        assert cells == len(rows), paper
    assert "<table" not in paper_claims_html(table, "lakshmi")
