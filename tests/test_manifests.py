"""Manifests: the shipped JSON files, file-list hashes, make_manifest and verify."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures import make_cuhk03, make_duke, make_market, write_corrupt_image, write_image

from reidnb.data import (
    DatasetError,
    filelist_hash,
    load_manifest,
    make_manifest,
    manifest_dir,
    verify,
)
from reidnb.data.manifests import SPLITS, save_manifest

REAL = ("market1501", "dukemtmcreid", "cuhk03_labeled", "cuhk03_detected")


# --- the shipped manifests -------------------------------------------------------------------


def test_manifest_dir_is_repo_data_manifests():
    repo = Path(__file__).resolve().parents[1]
    assert manifest_dir() == repo / "data_manifests"


def test_load_manifest_market1501_counts():
    m = load_manifest("market1501")["splits"]
    assert (m["train"]["images"], m["train"]["ids"], m["train"]["cams"]) == (12936, 751, 6)
    assert (m["query"]["images"], m["query"]["ids"]) == (3368, 750)
    assert (m["gallery"]["files"], m["gallery"]["images"], m["gallery"]["ids"]) == (
        19732,
        15913,
        751,
    )
    assert m["gallery"]["files"] - m["gallery"]["images"] == m["gallery"]["junk_images"] == 3819


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dukemtmcreid", [(16522, 702, 8), (2228, 702, 8), (17661, 1110, 8)]),
        ("cuhk03_labeled", [(7368, 767, 2), (1400, 700, 2), (5328, 700, 2)]),
        ("cuhk03_detected", [(7365, 767, 2), (1400, 700, 2), (5332, 700, 2)]),
    ],
)
def test_load_manifest_counts(name, expected):
    m = load_manifest(name)["splits"]
    assert [(m[s]["images"], m[s]["ids"], m[s]["cams"]) for s in SPLITS] == expected


@pytest.mark.parametrize("name", REAL)
def test_manifest_every_split_has_source_and_null_or_hex_hash(name):
    m = load_manifest(name)
    assert m["name"] == name
    for split in SPLITS:
        entry = m["splits"][split]
        assert len(entry["source"]) > 20
        h = entry["sha256_sorted_filelist"]
        assert h is None or re.fullmatch(r"[0-9a-f]{64}", h)


@pytest.mark.parametrize("name", REAL)
def test_manifest_totals_match_split_sums(name):
    m = load_manifest(name)
    files = {s: m["splits"][s]["files"] for s in SPLITS}
    # Market-1501's 32,668 boxes are train + gallery; its 3,368 query boxes were drawn apart.
    parts = ("train", "gallery") if name == "market1501" else SPLITS
    assert sum(files[s] for s in parts) == m["totals"]["images"]


def test_load_manifest_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'market1501'"):
        load_manifest("market")


# --- filelist_hash ---------------------------------------------------------------------------


def test_filelist_hash_follows_documented_recipe(tmp_path):
    ds = make_market(tmp_path)
    names = sorted(p.name for p in (ds / "query").iterdir())
    text = "\n".join(f"query/{n}" for n in names)
    assert filelist_hash(ds, "query") == hashlib.sha256(text.encode()).hexdigest()
    # Thumbs.db is not part of the train list
    train = sorted(f"bounding_box_train/{n}" for n in
                   ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0005_c5s2_000976_01.jpg",
                    "0005_c6s1_001051_02.jpg", "0007_c2s3_070952_01.jpg"])
    expected = hashlib.sha256("\n".join(train).encode()).hexdigest()
    assert filelist_hash(ds, "train") == expected


def test_filelist_hash_changes_with_files_and_resolves_parent(tmp_path):
    ds = make_market(tmp_path)
    before = filelist_hash(tmp_path, "gallery", name="market1501")
    assert before == filelist_hash(ds, "gallery")
    write_image(ds / "bounding_box_test" / "0003_c6s1_000001_01.jpg")
    assert filelist_hash(ds, "gallery") != before


def test_filelist_hash_unknown_split(tmp_path):
    ds = make_market(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        filelist_hash(ds, "test")


# --- make_manifest ---------------------------------------------------------------------------


def test_make_manifest_counts_fixture(tmp_path):
    make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    got = {s: {k: m["splits"][s][k] for k in ("images", "ids", "cams", "files")} for s in SPLITS}
    assert got == {
        "train": {"images": 5, "ids": 3, "cams": 5, "files": 5},
        "query": {"images": 2, "ids": 2, "cams": 2, "files": 2},
        "gallery": {"images": 4, "ids": 3, "cams": 4, "files": 6},
    }
    assert m["splits"]["gallery"]["sha256_sorted_filelist"] == filelist_hash(
        tmp_path, "gallery", name="market1501"
    )


def test_make_manifest_save_and_reload(tmp_path):
    make_duke(tmp_path)
    m = make_manifest("dukemtmcreid", tmp_path)
    path = save_manifest(m, tmp_path / "duke.json")
    assert json.loads(path.read_text()) == m
    assert verify("dukemtmcreid", tmp_path, manifest=path).ok


# --- verify ----------------------------------------------------------------------------------


def test_verify_ok_against_own_manifest(tmp_path):
    make_market(tmp_path)
    report = verify("market1501", tmp_path, manifest=make_manifest("market1501", tmp_path))
    assert report.ok and report.differences == []
    assert [sc.images_checked for sc in report.splits] == [5, 2, 6]
    assert "OK: every check passed" in str(report)


def test_verify_reports_count_differences(tmp_path):
    make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    bad = copy.deepcopy(m)
    bad["splits"]["gallery"]["images"] = 5
    bad["splits"]["query"]["ids"] = 3
    report = verify("market1501", tmp_path, manifest=bad)
    assert not report.ok
    assert report.differences == [
        "query: ids: expected 3, found 2",
        "gallery: images: expected 5, found 4",
    ]
    text = str(report)
    assert "FAILED: 2 difference(s)" in text
    assert re.search(r"gallery\s+images\s+5\s+4\s+DIFFERS", text)


def test_verify_reports_hash_difference(tmp_path):
    make_cuhk03(tmp_path)
    m = make_manifest("cuhk03_labeled", tmp_path)
    m["splits"]["train"]["sha256_sorted_filelist"] = "0" * 64
    report = verify("cuhk03_labeled", tmp_path, manifest=m)
    assert len(report.differences) == 1
    assert report.differences[0].startswith("train: file-list sha256: expected 0000")


def test_verify_shipped_manifest_flags_fixture(tmp_path):
    make_market(tmp_path)
    report = verify("market1501", tmp_path, check_images=False)
    assert report.manifest_source.endswith("data_manifests/market1501.json")
    assert "train: images: expected 12936, found 5" in report.differences
    assert "gallery: files: expected 19732, found 6" in report.differences


def test_verify_wrong_root_names_path_and_layout(tmp_path):
    report = verify("dukemtmcreid", tmp_path / "missing")
    assert not report.ok and report.splits == []
    assert str(tmp_path / "missing") in report.differences[0]
    assert "DukeMTMC-reID/" in report.differences[0]


def test_verify_missing_split_named(tmp_path):
    ds = make_market(tmp_path)
    shutil.rmtree(ds / "bounding_box_test")
    report = verify("market1501", tmp_path)
    assert not report.ok
    assert f"missing split folder(s): {ds / 'bounding_box_test'}" in report.differences[0]


def test_verify_unparsable_name_named(tmp_path):
    ds = make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    write_image(ds / "query" / "img_0001.jpg")
    report = verify("market1501", tmp_path, manifest=m)
    assert any("img_0001.jpg" in d and "does not match" in d for d in report.differences)
    assert "query: files: expected 2, found 3" in report.differences


def test_verify_unreadable_image_named(tmp_path):
    ds = make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    bad = write_corrupt_image(ds / "bounding_box_train" / "0005_c6s1_001051_02.jpg")
    report = verify("market1501", tmp_path, manifest=m)
    assert len(report.differences) == 1
    assert f"train: {bad}: unreadable image" in report.differences[0]
    with pytest.raises(DatasetError, match=re.escape(bad.name)):
        report.raise_for_problems()
    # without image checks the same folder passes (names and counts are right)
    assert verify("market1501", tmp_path, manifest=m, check_images=False).ok


def test_verify_names_a_png_saved_as_jpg(tmp_path):
    from PIL import Image

    ds = make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    png = ds / "query" / "0003_c2s1_000301_00.jpg"
    Image.new("RGB", (4, 8), (1, 2, 3)).save(png, format="PNG")
    report = verify("market1501", tmp_path, manifest=m)
    assert not report.ok
    assert report.differences == [f"query: {png}: PNG data in a .jpg file (expected JPEG): "
                                   "converted or renamed, not the data set's original; copy the "
                                   "original file"]


def test_verify_lists_unusable_images_before_count_differences(tmp_path):
    ds = make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    m["splits"]["gallery"]["images"] = 5
    m["splits"]["train"]["ids"] = 9
    bad = write_corrupt_image(ds / "bounding_box_test" / "0001_c2s1_000351_01.jpg")
    report = verify("market1501", tmp_path, manifest=m)
    assert report.image_problems == [report.differences[0]]
    assert report.differences[0].startswith(f"gallery: {bad}: unreadable image")
    assert report.differences[1:] == ["train: ids: expected 9, found 3",
                                      "gallery: images: expected 5, found 4"]
    text = str(report)
    section = text.index("IMAGES THAT CANNOT BE USED (1 file;")
    assert section < text.index(str(bad)) < text.index("split    check") < text.index("FAILED")
    assert text.count(str(bad)) == 1  # listed once, in its own section
    assert "FAILED: 3 difference(s)" in text


def test_verify_sample_limits_images_checked(tmp_path):
    make_market(tmp_path)
    m = make_manifest("market1501", tmp_path)
    report = verify("market1501", tmp_path, manifest=m, sample=1)
    assert [sc.images_checked for sc in report.splits] == [1, 1, 1]
    assert [sc.images_total for sc in report.splits] == [5, 2, 6]


def test_verify_synthreid_uses_manifest_at_its_root(tmp_path):
    ds = make_market(tmp_path, folder="synthreid")
    save_manifest(make_manifest("synthreid", tmp_path), ds / "synthreid.json")
    report = verify("synthreid", tmp_path)
    assert report.ok, str(report)
    assert report.manifest_source == str(ds / "synthreid.json")
    (ds / "query" / "0003_c2s1_000301_00.jpg").unlink()
    report = verify("synthreid", tmp_path)
    assert "query: images: expected 2, found 1" in report.differences


def test_verify_unknown_name_suggests():
    with pytest.raises(ValueError, match="did you mean 'cuhk03_detected'"):
        verify("cuhk03_detect", "/nonexistent")


def test_manifest_table_lists_shipped_counts():
    from reidnb.data.manifests import manifest_table

    table = manifest_table()
    assert table.loc[("market1501", "train"), "images"] == 12936
    assert table.loc[("dukemtmcreid", "gallery"), "ids"] == 1110
