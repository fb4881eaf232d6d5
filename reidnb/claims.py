"""The papers' own numbers, as printed, in one long table (``claims.csv`` next to this module).

Each row is one printed number, keyed by ``(paper, table, dataset, protocol, method, metric)``.
The book's "claimed vs reproduced" tables look numbers up with :func:`claim` and show whole
tables with :func:`claims_table`. Inconsistencies found while transcribing are listed in
``book/claims_inconsistencies.md``.

Conventions
-----------
paper
    ``jeong2020``, ``li2019``, ``jamal2020``, ``zheng2019``, ``lakshmi``. The lakshmi tutorial
    prints no quantitative result at all, so it has no rows (:data:`PAPERS_WITHOUT_RESULTS`).
table
    The table number as printed (``"2"``). A number stated only in running text is keyed by its
    section instead: ``"sec4.2"`` (jeong2020's model size and speed, zheng2019's prose-only
    comparisons in Section 4.1).
dataset
    ``market1501``, ``dukemtmcreid``, ``cuhk03_labeled``, ``cuhk03_detected``; ``cuhk03`` is kept
    for a CUHK03 number whose box type a paper leaves open (none so far: every CUHK03 table in the
    five papers names labeled or detected boxes, and all use the 767/700-identity split, i.e.
    CUHK03-NP). ``none`` is for figures tied to no data set (parameters, FLOPs, speed).
protocol
    ``single_query``, ``multi_query`` (the papers' "multi query"/"multi-shoot"), ``rerank``
    (single query followed by k-reciprocal re-ranking), ``none`` for cost figures. Where a table
    does not name its protocol it is ``single_query``: DukeMTMC-reID and CUHK03-NP define only
    that one, and every Market-1501 table without a label repeats single-query numbers.
metric
    Accuracy: ``rank1``, ``rank5``, ``rank10``, ``rank20``, ``mAP`` (percent, as printed). Cost:
    ``params_M`` (millions), ``gflops`` (10^9 FLOPs per image), ``time_s`` (test seconds per
    image), ``fps``, ``train_time_h`` (hours).
method
    A paper's own configurations are named in :data:`METHODS` (one name per configuration, the
    same in every table of that paper). A row a paper quotes from other work keeps the printed
    label followed by ``(quoted [N])``, N being that paper's own reference number; we do not
    resolve N to authors because several tables cite the wrong entry (see the inconsistencies
    page). Where a paper's own tables vary the backbone or base model (jeong2020, zheng2019), the
    backbone leads the name (``ResNet-50 +AM+UL``, ``PCB +IA+SA``); otherwise names are bare
    configurations (``baseline``, ``+MA``).
value
    The number exactly as printed, without the percent sign (``90.20`` stays ``90.20`` in the
    csv; the loaded frame holds floats). Cells printed as a dash have no row.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pandas as pd

COLUMNS: tuple[str, ...] = ("paper", "table", "dataset", "protocol", "method", "metric", "value")
KEY_COLUMNS: tuple[str, ...] = COLUMNS[:-1]

PAPERS: tuple[str, ...] = ("jeong2020", "li2019", "jamal2020", "zheng2019", "lakshmi")
PAPERS_WITHOUT_RESULTS: frozenset[str] = frozenset({"lakshmi"})
DATASETS: tuple[str, ...] = (
    "market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected", "cuhk03", "none",
)
PROTOCOLS: tuple[str, ...] = ("single_query", "multi_query", "rerank", "none")
ACCURACY_METRICS: tuple[str, ...] = ("rank1", "rank5", "rank10", "rank20", "mAP")
COST_METRICS: tuple[str, ...] = ("params_M", "gflops", "time_s", "fps", "train_time_h")
METRICS: tuple[str, ...] = ACCURACY_METRICS + COST_METRICS
QUOTED_MARK = " (quoted ["

#: Each paper's own configurations: method name -> what it is (with the printed label).
METHODS: Mapping[str, Mapping[str, str]] = {
    "jeong2020": {
        "ResNet-50 baseline": "ResNet-50 with identification + verification losses, no AM "
                              "(Table 5 'ResNet50-Basel.')",
        "ResNet-50 +AM": "baseline + attention module after layer3, no uniformity loss "
                         "(Table 5 'ResNet50 + AM')",
        "ResNet-50 +AM+UL": "full model, AM after layer3 + uniformity loss "
                            "('Ours (ResNet50)', Tables 2-5)",
        "VGG16 baseline": "VGG16 with identification + verification losses (Table 5)",
        "VGG16 +AM": "VGG16 baseline + attention module (Table 5)",
        "VGG16 +AM+UL": "full model on VGG16 ('Ours (VGG16)', Tables 2-5)",
        "ResNet-50 +AM@layer1+UL": "full model with AM after layer1 (Table 6 'layer1-AM')",
        "ResNet-50 +AM@layer2+UL": "full model with AM after layer2 (Table 6 'layer2-AM')",
        "ResNet-50 +AM@layer3+UL": "full model with AM after layer3 (Table 6 'layer3-AM'; "
                                   "same configuration as 'ResNet-50 +AM+UL')",
        "ResNet-50 +AM@layer4+UL": "full model with AM after layer4 (Table 6 'layer4-AM')",
    },
    "li2019": {
        "baseline": "ResNet-50, cross-entropy + triplet, no attention (Table 3 row 1)",
        "+spatial-attn": "baseline + the spatial-attention variant (Table 3 row 2)",
        "+self-attn": "full model: self-attention, softmax scores, CE + triplet "
                      "('Ours', Tables 3-7)",
        "+self-attn (sigmoid)": "full model with sigmoid instead of softmax scores (Table 6)",
        "+self-attn (CE only)": "full model trained with cross-entropy only (Table 7)",
        "+self-attn (triplet only)": "full model trained with triplet loss only (Table 7)",
    },
    "jamal2020": {
        "baseline": "ResNet-50 without the mutual-attention layer, trained by the authors "
                    "('ResNet-50 Baseline'/'ResNet-50 Base', Tables 2-3)",
        "+MA": "full model with mutual attention at layer3 and layer4 "
               "('Ours'/'Ours with MA', Tables 1-3)",
    },
    "zheng2019": {
        "IDE baseline": "ResNet-50 IDE (Table 3 'IDE [34]')",
        "IDE +IA": "IDE + identification attention (Table 3)",
        "IDE +SA": "IDE + Siamese attention (Table 3)",
        "IDE +IA+SA": "CASN on IDE ('CASN (IDE)', Tables 1-3)",
        "PCB baseline": "PCB (Table 3 'PCB [34]')",
        "PCB +IA": "PCB + identification attention (Table 3)",
        "PCB +SA": "PCB + Siamese attention (Table 3)",
        "PCB +IA+SA": "CASN on PCB ('CASN (PCB)', Tables 1-3)",
        "DenseNet IDE +IA+SA": "CASN on a DenseNet IDE (Section 4.1 text only)",
    },
    "lakshmi": {},
}


class ClaimsError(ValueError):
    """A claims file that breaks the schema; the message names the file and the line."""


def default_path() -> Path:
    """Path of the ``claims.csv`` shipped next to this module."""
    return Path(str(resources.files("reidnb").joinpath("claims.csv")))


def is_quoted(method: str) -> bool:
    """True for a row a paper quotes from other work (``'HA-CNN (quoted [30])'``)."""
    return QUOTED_MARK in method and method.endswith("])")


def _check_row(row: dict[str, str], where: str) -> float:
    """Validate one csv row and return its value as a float; raise ClaimsError naming ``where``."""
    for col in COLUMNS:
        text = row.get(col)
        if text is None or text.strip() == "":
            raise ClaimsError(f"{where}: column {col!r} is empty")
        if text != text.strip():
            raise ClaimsError(f"{where}: column {col!r} has surrounding spaces: {text!r}")
    allowed = {"paper": PAPERS, "dataset": DATASETS, "protocol": PROTOCOLS, "metric": METRICS}
    for col, values in allowed.items():
        if row[col] not in values:
            raise ClaimsError(f"{where}: {col} {row[col]!r} is not one of {list(values)}")
    table = row["table"]
    if not (table.isdigit() or (table.startswith("sec") and _is_section(table[3:]))):
        raise ClaimsError(f"{where}: table {table!r} is neither a number nor 'sec<N.M>'")
    try:
        value = float(row["value"])
    except ValueError:
        raise ClaimsError(f"{where}: value {row['value']!r} is not a number") from None
    if not math.isfinite(value):
        raise ClaimsError(f"{where}: value {row['value']!r} is not finite")
    if row["metric"] in ACCURACY_METRICS:
        if not 0.0 <= value <= 100.0:
            raise ClaimsError(f"{where}: {row['metric']} {value} is outside [0, 100]")
        if "none" in (row["dataset"], row["protocol"]):
            raise ClaimsError(f"{where}: accuracy metric {row['metric']!r} needs a real "
                              f"dataset and protocol, got {row['dataset']!r}/{row['protocol']!r}")
    elif value < 0:
        raise ClaimsError(f"{where}: cost metric {row['metric']} is negative ({value})")
    if row["paper"] in PAPERS_WITHOUT_RESULTS:
        raise ClaimsError(f"{where}: paper {row['paper']!r} prints no results; it has no rows")
    own = METHODS[row["paper"]]
    if not is_quoted(row["method"]) and row["method"] not in own:
        raise ClaimsError(f"{where}: method {row['method']!r} is neither quoted "
                          f"('... (quoted [N])') nor one of {row['paper']}'s own {list(own)}")
    return value


def _is_section(text: str) -> bool:
    """True for a printed section number such as ``4`` or ``4.2``."""
    return all(part.isdigit() for part in text.split("."))


def load_claims(path: str | Path | None = None) -> pd.DataFrame:
    """Read and validate a claims csv (default: the shipped one).

    Returns a frame with the columns of :data:`COLUMNS`, ``value`` as float, in file order.
    Raises :class:`ClaimsError` naming the file and line of the first bad row.
    """
    if path is None:
        return _load_default().copy()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _load_default() -> pd.DataFrame:
    return _load(default_path())


def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ClaimsError(f"{path}: claims file not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        if header != COLUMNS:
            raise ClaimsError(f"{path}: header is {list(header)}, expected {list(COLUMNS)}")
        records: list[dict[str, object]] = []
        seen: dict[tuple[str, ...], int] = {}
        for row in reader:
            line = reader.line_num
            where = f"{path}:{line}"
            if None in row or any(v is None for v in row.values()):
                raise ClaimsError(f"{where}: expected {len(COLUMNS)} fields")
            value = _check_row(row, where)
            key = tuple(row[c] for c in KEY_COLUMNS)
            if key in seen:
                raise ClaimsError(f"{where}: duplicate key {key} (first on line {seen[key]})")
            seen[key] = line
            records.append({**row, "value": value})
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def claim(paper: str, table: str | int, dataset: str, protocol: str, method: str,
          metric: str) -> float:
    """The printed number for one key, e.g. ``claim('jeong2020', 2, 'market1501',
    'single_query', 'ResNet-50 +AM+UL', 'rank1') == 91.3``.

    Raises KeyError listing the nearest existing keys when there is no such row.
    """
    key = (paper, str(table), dataset, protocol, method, metric)
    _refuse_paper_without_results(paper)
    index = _index()
    if key in index:
        return index[key]
    raise KeyError(f"no claim for {key}; nearest: {_near(key, list(index))}")


def _refuse_paper_without_results(paper: str) -> None:
    if paper in PAPERS_WITHOUT_RESULTS:
        raise KeyError(f"{paper!r} prints no quantitative results, so it has no claims")


@functools.lru_cache(maxsize=1)
def _index() -> dict[tuple[str, ...], float]:
    frame = _load_default()
    keys = frame[list(KEY_COLUMNS)].itertuples(index=False, name=None)
    return dict(zip(keys, frame["value"].tolist()))


def _near(key: tuple[str, ...], keys: list[tuple[str, ...]], n: int = 5) -> list[str]:
    """The ``n`` existing keys most similar to ``key`` (same paper first), as '|'-joined text."""
    same_paper = [k for k in keys if k[0] == key[0]] or keys
    text = {"|".join(k): k for k in same_paper}
    best = difflib.get_close_matches("|".join(key), list(text), n=n, cutoff=0.0)
    return best


def claims_table(paper: str, table: str | int) -> pd.DataFrame:
    """One printed table, pivoted: rows are methods (file order), columns a
    ``(dataset, protocol, metric)`` MultiIndex in file order; missing cells are NaN.

    Raises KeyError naming the tables the paper does have.
    """
    _refuse_paper_without_results(paper)
    frame = _load_default()
    rows = frame[(frame["paper"] == paper) & (frame["table"] == str(table))]
    if rows.empty:
        have = sorted(set(frame.loc[frame["paper"] == paper, "table"]))
        raise KeyError(f"no rows for {paper!r} table {str(table)!r}; "
                       f"{paper!r} has tables {have}")
    columns = ["dataset", "protocol", "metric"]
    col_order = list(dict.fromkeys(rows[columns].itertuples(index=False, name=None)))
    row_order = list(dict.fromkeys(rows["method"]))
    wide = rows.pivot(index="method", columns=columns, values="value")
    wide = wide.reindex(index=row_order, columns=pd.MultiIndex.from_tuples(col_order,
                                                                            names=columns))
    return wide
