"""Tests for reidnb.claims: the schema of claims.csv, spot checks against the papers' tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from reidnb import claims as C

HEADER = "paper,table,dataset,protocol,method,metric,value"
GOOD_ROW = "jeong2020,2,market1501,single_query,ResNet-50 +AM+UL,rank1,91.3"


def _write(tmp_path: Path, *lines: str, header: str = HEADER) -> Path:
    path = tmp_path / "claims.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


# --- the shipped file -------------------------------------------------------------------------

def test_claims_csv_header_is_exact() -> None:
    first = C.default_path().read_text(encoding="utf-8").splitlines()[0]
    assert first == HEADER


def test_load_claims_shipped_file_has_schema_and_float_values() -> None:
    frame = C.load_claims()
    assert tuple(frame.columns) == C.COLUMNS
    assert frame["value"].dtype == float
    assert len(frame) > 400


def test_load_claims_shipped_file_has_no_duplicate_keys() -> None:
    frame = C.load_claims()
    assert not frame.duplicated(subset=list(C.KEY_COLUMNS)).any()


def test_load_claims_accuracy_values_are_percentages() -> None:
    frame = C.load_claims()
    acc = frame[frame["metric"].isin(C.ACCURACY_METRICS)]
    assert acc["value"].between(0, 100).all()
    # Printed as percent, not fractions: every paper's best rank-1 is far above 1.
    assert (acc.groupby("paper")["value"].max() > 50).all()


def test_load_claims_every_paper_with_results_has_own_and_table_rows() -> None:
    frame = C.load_claims()
    for paper in C.PAPERS:
        rows = frame[frame["paper"] == paper]
        if paper in C.PAPERS_WITHOUT_RESULTS:
            assert rows.empty, paper
            continue
        own = rows[~rows["method"].map(C.is_quoted)]
        assert not own.empty, paper
        assert rows["table"].str.isdigit().any(), paper


def test_methods_registry_matches_file() -> None:
    frame = C.load_claims()
    for paper, methods in C.METHODS.items():
        used = set(frame.loc[(frame["paper"] == paper) & ~frame["method"].map(C.is_quoted),
                             "method"])
        assert used == set(methods), paper


def test_values_keep_printed_precision_in_csv() -> None:
    with C.default_path().open(newline="", encoding="utf-8") as fh:
        printed = {(r["paper"], r["table"], r["method"], r["metric"], r["dataset"]): r["value"]
                   for r in csv.DictReader(fh)}
    assert printed[("li2019", "4", "+self-attn", "rank1", "market1501")] == "90.20"
    assert printed[("jeong2020", "sec4.2", "ResNet-50 +AM+UL", "gflops", "none")] == "2.90"
    assert not any(v.endswith("%") for v in printed.values())


# --- spot checks, each read off the paper's table --------------------------------------------

@pytest.mark.parametrize(
    ("key", "expected"),
    [
        # jeong2020 Table 2 (Market-1501, single and multi query), Table 3 (CUHK03), Table 4
        (("jeong2020", "2", "market1501", "single_query", "ResNet-50 +AM+UL", "mAP"), 79.2),
        (("jeong2020", "2", "market1501", "multi_query", "ResNet-50 +AM+UL", "rank1"), 94.1),
        (("jeong2020", "3", "cuhk03_labeled", "single_query", "ResNet-50 +AM+UL", "rank1"), 62.6),
        (("jeong2020", "4", "dukemtmcreid", "single_query", "ResNet-50 +AM+UL", "mAP"), 65.5),
        (("jeong2020", "5", "market1501", "single_query", "VGG16 +AM+UL", "rank1"), 89.2),
        (("jeong2020", "6", "market1501", "single_query", "ResNet-50 +AM@layer4+UL", "mAP"),
         75.4),
        (("jeong2020", "sec4.2", "none", "none", "ResNet-50 +AM+UL", "params_M"), 27.7),
        # li2019 Table 3 (ablation), Table 5 (Duke), Table 6 (activation)
        (("li2019", "3", "cuhk03_detected", "single_query", "+self-attn", "mAP"), 67.8),
        (("li2019", "3", "dukemtmcreid", "single_query", "+spatial-attn", "rank20"), 92.3),
        (("li2019", "5", "dukemtmcreid", "single_query", "+self-attn", "mAP"), 78.0),
        (("li2019", "6", "market1501", "single_query", "+self-attn (sigmoid)", "rank1"), 89.4),
        # jamal2020 Table 1 (all protocols), Table 2 (Duke baseline)
        (("jamal2020", "1", "market1501", "rerank", "+MA", "mAP"), 87.30),
        (("jamal2020", "1", "dukemtmcreid", "single_query", "+MA", "rank1"), 80.83),
        (("jamal2020", "2", "dukemtmcreid", "single_query", "baseline", "rank1"), 75.27),
        (("jamal2020", "3", "market1501", "multi_query", "+MA", "mAP"), 83.55),
        # zheng2019 Tables 1-3
        (("zheng2019", "1", "cuhk03_detected", "single_query", "PCB +IA+SA", "rank1"), 71.5),
        (("zheng2019", "2", "dukemtmcreid", "single_query", "MGN (quoted [36])", "mAP"), 78.4),
        (("zheng2019", "3", "market1501", "single_query", "IDE baseline", "rank1"), 85.3),
    ],
)
def test_claim_returns_printed_value(key: tuple[str, ...], expected: float) -> None:
    assert C.claim(*key) == pytest.approx(expected)


def test_claim_accepts_integer_table_number() -> None:
    assert C.claim("zheng2019", 2, "market1501", "single_query", "PCB +IA+SA", "mAP") == 82.8


def test_claim_unknown_key_raises_keyerror_with_suggestion() -> None:
    with pytest.raises(KeyError, match=r"nearest: .*jeong2020\|2\|market1501\|single_query\|"
                                       r"ResNet-50 \+AM\+UL\|rank1"):
        C.claim("jeong2020", "2", "market1501", "single_query", "ResNet50 +AM+UL", "rank1")


def test_claim_paper_without_results_raises_keyerror() -> None:
    with pytest.raises(KeyError, match="lakshmi.*no quantitative results"):
        C.claim("lakshmi", "1", "market1501", "single_query", "baseline", "rank1")


# --- claims_table ------------------------------------------------------------------------------

def test_claims_table_pivots_methods_by_dataset_protocol_metric() -> None:
    wide = C.claims_table("zheng2019", 3)
    assert list(wide.index[:2]) == ["IDE baseline", "IDE +IA"]
    assert wide.columns.names == ["dataset", "protocol", "metric"]
    assert wide.loc["PCB +SA", ("dukemtmcreid", "single_query", "rank1")] == 86.8
    assert wide.shape == (8, 6)


def test_claims_table_marks_dash_cells_missing() -> None:
    wide = C.claims_table("jamal2020", "3")
    assert math.isnan(wide.loc["PUL (quoted [56])", ("market1501", "single_query", "mAP")])
    assert wide.loc["+MA", ("market1501", "multi_query", "rank1")] == 93.82


def test_claims_table_unknown_table_lists_existing_ones() -> None:
    with pytest.raises(KeyError, match=r"has tables \['1', '2', '3', 'sec4.1'\]"):
        C.claims_table("zheng2019", "9")


# --- validation of bad files -------------------------------------------------------------------

def test_load_claims_good_minimal_file(tmp_path: Path) -> None:
    frame = C.load_claims(_write(tmp_path, GOOD_ROW))
    assert isinstance(frame, pd.DataFrame)
    assert frame.loc[0, "value"] == 91.3


def test_load_claims_rejects_wrong_header(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_ROW, header="paper,table,dataset,protocol,method,metric,val")
    with pytest.raises(C.ClaimsError, match="header is"):
        C.load_claims(path)


def test_load_claims_rejects_duplicate_key_naming_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_ROW, GOOD_ROW.replace("91.3", "91.4"))
    with pytest.raises(C.ClaimsError, match=r"claims.csv:3: duplicate key .*first on line 2"):
        C.load_claims(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (GOOD_ROW.replace("jeong2020", "jeong2021"), "paper 'jeong2021' is not one of"),
        (GOOD_ROW.replace("market1501", "market"), "dataset 'market' is not one of"),
        (GOOD_ROW.replace("single_query", "sq"), "protocol 'sq' is not one of"),
        (GOOD_ROW.replace("rank1", "top1"), "metric 'top1' is not one of"),
        (GOOD_ROW.replace("91.3", "91.3%"), "value '91.3%' is not a number"),
        (GOOD_ROW.replace("91.3", "nan"), "not finite"),
        (GOOD_ROW.replace("91.3", "191.3"), r"outside \[0, 100\]"),
        (GOOD_ROW.replace(",2,", ",II,"), "table 'II' is neither"),
        (GOOD_ROW.replace("ResNet-50 +AM+UL", "Ours"), "method 'Ours' is neither quoted"),
        (GOOD_ROW.replace("single_query", "none"), "needs a real dataset and protocol"),
        (GOOD_ROW.replace(",91.3", ","), "column 'value' is empty"),
        (GOOD_ROW.replace(",91.3", ""), "expected 7 fields"),
        (GOOD_ROW + ",extra", "expected 7 fields"),
        (GOOD_ROW.replace("jeong2020", "lakshmi"), "prints no results"),
    ],
)
def test_load_claims_rejects_bad_row_naming_line(tmp_path: Path, row: str,
                                                 message: str) -> None:
    path = _write(tmp_path, GOOD_ROW.replace("rank1", "mAP"), row)
    with pytest.raises(C.ClaimsError, match=rf"claims.csv:3: .*{message}"):
        C.load_claims(path)


def test_load_claims_missing_file_names_path(tmp_path: Path) -> None:
    with pytest.raises(C.ClaimsError, match="nowhere.csv: claims file not found"):
        C.load_claims(tmp_path / "nowhere.csv")
