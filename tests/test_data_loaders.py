"""Loaders and registry on tiny fixture trees with the real naming conventions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures import make_cuhk03, make_duke, make_market, write_image

import reidnb.data as data
from reidnb.data import (
    DatasetError,
    Sample,
    build_dataset,
    list_datasets,
    parse_dir,
    register_dataset,
)
from reidnb.data.market1501 import MARKET_PATTERN


def _names(samples: list[Sample]) -> list[str]:
    return [Path(s.path).name for s in samples]


# --- Market-1501 -----------------------------------------------------------------------------


def test_market1501_parse_counts_pids_camids(tmp_path):
    make_market(tmp_path)
    ds = build_dataset("market1501", tmp_path)
    # sorted by path: 0002_c1, 0002_c3, 0005_c5, 0005_c6, 0007_c2 (Thumbs.db skipped)
    assert _names(ds.train)[0] == "0002_c1s1_000451_03.jpg"
    assert [s.pid for s in ds.train] == [0, 0, 1, 1, 2]
    assert [s.camid for s in ds.train] == [0, 2, 4, 5, 1]
    assert [(s.pid, s.camid) for s in ds.query] == [(1, 0), (3, 1)]
    assert ds.stats() == {
        "train": {"images": 5, "ids": 3, "cams": 5},
        "query": {"images": 2, "ids": 2, "cams": 2},
        "gallery": {"images": 4, "ids": 3, "cams": 4},
    }


def test_market1501_relabel_sorted_contiguous_train_only(tmp_path):
    make_market(tmp_path)
    ds = build_dataset("market1501", tmp_path)
    assert ds.extra["train_pid2label"] == {2: 0, 5: 1, 7: 2}
    assert sorted({s.pid for s in ds.train}) == list(range(ds.num_train_pids))
    assert {s.pid for s in ds.query} == {1, 3}  # original ids kept
    assert {s.pid for s in ds.gallery} == {0, 1, 3}


def test_market1501_drops_junk_keeps_distractor(tmp_path):
    make_market(tmp_path)
    ds = build_dataset("market1501", tmp_path)
    assert [(s.pid, s.camid) for s in ds.gallery] == [(0, 2), (1, 1), (1, 3), (3, 0)]
    kept = build_dataset("market1501", tmp_path, drop_junk=False)
    assert [s.pid for s in kept.gallery].count(-1) == 2


def test_market1501_samples_are_sorted_paths(tmp_path):
    make_market(tmp_path)
    ds = build_dataset("market1501", tmp_path)
    for split in (ds.train, ds.query, ds.gallery):
        paths = [s.path for s in split]
        assert paths == sorted(paths)


@pytest.mark.parametrize("folder", ["Market-1501-v15.09.15", "market1501", ""])
def test_market1501_root_accepts_folder_or_parent(tmp_path, folder):
    ds_folder = make_market(tmp_path, folder=folder)
    from_parent = build_dataset("market1501", tmp_path)
    direct = build_dataset("market1501", ds_folder)
    assert from_parent.root == direct.root == ds_folder
    assert from_parent.train == direct.train


def test_parse_dir_rejects_unmatched_name(tmp_path):
    ds_folder = make_market(tmp_path)
    write_image(ds_folder / "bounding_box_train" / "0002_c1_f0046182.jpg")  # a Duke name
    with pytest.raises(DatasetError, match=re.escape("0002_c1_f0046182.jpg")) as err:
        build_dataset("market1501", tmp_path)
    assert "0002_c1s1_000451_03.jpg" in str(err.value)  # the expected example is shown


def test_parse_dir_rejects_stray_text_file(tmp_path):
    folder = tmp_path / "query"
    write_image(folder / "0001_c1s1_001051_00.jpg")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="notes.txt"):
        parse_dir(folder, MARKET_PATTERN, relabel=False, cam_range=(1, 6))


def test_parse_dir_rejects_subfolder(tmp_path):
    folder = tmp_path / "query"
    write_image(folder / "0001_c1s1_001051_00.jpg")
    (folder / "extra").mkdir()
    with pytest.raises(DatasetError, match="unexpected sub-folder"):
        parse_dir(folder, MARKET_PATTERN, relabel=False, cam_range=(1, 6))


def test_parse_dir_relabel_flag(tmp_path):
    folder = tmp_path / "train"
    for name in ("0040_c1s1_000001_00.jpg", "0009_c2s1_000001_00.jpg", "0040_c3s1_000002_00.jpg"):
        write_image(folder / name)
    raw = parse_dir(folder, MARKET_PATTERN, relabel=False, cam_range=(1, 6))
    rel = parse_dir(folder, MARKET_PATTERN, relabel=True, cam_range=(1, 6))
    assert [s.pid for s in raw] == [9, 40, 40]
    assert [s.pid for s in rel] == [0, 1, 1]
    assert [s.camid for s in rel] == [1, 0, 2]


def test_parse_dir_rejects_camera_out_of_range(tmp_path):
    ds_folder = make_market(tmp_path)
    write_image(ds_folder / "query" / "0001_c7s1_001051_00.jpg")
    with pytest.raises(DatasetError, match=r"0001_c7s1_001051_00\.jpg.*c7.*c1\.\.c6"):
        build_dataset("market1501", tmp_path)


def test_market1501_missing_split_names_path_and_layout(tmp_path):
    ds_folder = make_market(tmp_path)
    shutil.rmtree(ds_folder / "query")
    with pytest.raises(DatasetError, match=re.escape(str(ds_folder / "query"))) as err:
        build_dataset("market1501", tmp_path)
    assert "bounding_box_train/" in str(err.value)  # the expected tree is drawn


def test_market1501_empty_split_names_path(tmp_path):
    ds_folder = make_market(tmp_path)
    for p in (ds_folder / "query").iterdir():
        p.unlink()
    (ds_folder / "query" / "Thumbs.db").write_bytes(b"x")  # metadata alone is still "empty"
    with pytest.raises(DatasetError, match=re.escape(f"{ds_folder / 'query'} holds no images")):
        build_dataset("market1501", tmp_path)


def test_build_dataset_wrong_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(str(missing))) as err:
        build_dataset("market1501", missing)
    assert "Expected Market-1501 layout" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no data set found under .*empty"):
        build_dataset("market1501", tmp_path / "empty")


def test_build_dataset_split_folder_as_root_suggests_parent(tmp_path):
    ds_folder = make_market(tmp_path)
    with pytest.raises(DatasetError, match="did you mean its parent"):
        build_dataset("market1501", ds_folder / "bounding_box_train")


# --- DukeMTMC-reID ---------------------------------------------------------------------------


def test_dukemtmcreid_parse_counts_relabel_camids(tmp_path):
    make_duke(tmp_path)
    ds = build_dataset("dukemtmcreid", tmp_path)
    assert _names(ds.train) == [
        "0001_c2_f0046182.jpg",
        "0001_c5_f0051341.jpg",
        "0004_c1_f0000001.jpg",
        "0008_c8_f0012345.jpg",
    ]
    assert [s.pid for s in ds.train] == [0, 0, 1, 2]
    assert [s.camid for s in ds.train] == [1, 4, 0, 7]
    assert [(s.pid, s.camid) for s in ds.query] == [(5, 0), (6, 6)]
    assert [s.pid for s in ds.gallery] == [5, 6, 10]


def test_dukemtmcreid_rejects_market_name(tmp_path):
    ds_folder = make_duke(tmp_path)
    write_image(ds_folder / "query" / "0001_c1s1_001051_00.jpg")
    with pytest.raises(DatasetError, match=r"0001_c1s1_001051_00\.jpg.*0001_c2_f0046182\.jpg"):
        build_dataset("dukemtmcreid", tmp_path)


def test_dukemtmcreid_camera_9_out_of_range(tmp_path):
    ds_folder = make_duke(tmp_path)
    write_image(ds_folder / "bounding_box_test" / "0005_c9_f0050500.jpg")
    with pytest.raises(DatasetError, match="c9 is outside"):
        build_dataset("dukemtmcreid", tmp_path)


# --- CUHK03-NP -------------------------------------------------------------------------------


def test_cuhk03_labeled_and_detected_read_their_own_folders(tmp_path):
    make_cuhk03(tmp_path)
    lab = build_dataset("cuhk03_labeled", tmp_path)
    det = build_dataset("cuhk03_detected", tmp_path)
    assert lab.root == tmp_path / "cuhk03-np" / "labeled"
    assert det.root == tmp_path / "cuhk03-np" / "detected"
    assert len(lab.train) == 3 and len(det.train) == 2
    assert [(s.pid, s.camid) for s in lab.train] == [(0, 0), (0, 1), (1, 0)]
    assert [(s.pid, s.camid) for s in lab.query] == [(10, 0), (10, 1)]
    assert lab.stats()["gallery"] == {"images": 3, "ids": 2, "cams": 2}


def test_cuhk03_accepts_labeled_folder_itself_and_jpg(tmp_path):
    folder = make_cuhk03(tmp_path) / "labeled"
    write_image(folder / "bounding_box_train" / "0004_c2_3.jpg")
    ds = build_dataset("cuhk03_labeled", folder)
    assert ds.root == folder
    assert _names(ds.train)[-1] == "0004_c2_3.jpg"
    assert ds.num_train_pids == 3


def test_cuhk03_rejects_pid_out_of_range(tmp_path):
    folder = make_cuhk03(tmp_path) / "detected"
    write_image(folder / "query" / "1468_c1_1.png")
    with pytest.raises(DatasetError, match=r"1468_c1_1\.png.*identity 1468.*1\.\.1467"):
        build_dataset("cuhk03_detected", tmp_path)


def test_cuhk03_rejects_market_name(tmp_path):
    folder = make_cuhk03(tmp_path) / "labeled"
    write_image(folder / "query" / "0010_c1s1_000001_00.png")
    with pytest.raises(DatasetError, match=r"0010_c1s1_000001_00\.png.*0001_c1_1\.png"):
        build_dataset("cuhk03_labeled", tmp_path)


# --- SynthReID (Market-1501 layout) ----------------------------------------------------------


def test_synthreid_reads_market_layout_and_camera_count(tmp_path):
    ds_folder = make_market(tmp_path, folder="synthreid")
    (ds_folder / "synthreid.json").write_text(json.dumps({"num_cams": 6}))
    ds = build_dataset("synthreid", tmp_path)
    assert ds.name == "synthreid" and ds.root == ds_folder
    assert [s.pid for s in ds.train] == [0, 0, 1, 1, 2]
    (ds_folder / "synthreid.json").write_text(json.dumps({"num_cams": 5}))
    with pytest.raises(DatasetError, match=r"c6 is outside the expected range c1\.\.c5"):
        build_dataset("synthreid", tmp_path)


# --- registry --------------------------------------------------------------------------------


def test_registry_lists_builtin_names():
    assert list_datasets() == [
        "cuhk03_detected",
        "cuhk03_labeled",
        "dukemtmcreid",
        "market1501",
        "synthreid",
    ]


def test_register_dataset_duplicate_raises():
    with pytest.raises(ValueError, match="'market1501' is already registered"):
        register_dataset("market1501", data.load_market1501)


def test_register_dataset_custom_loader_is_built(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "_DATASETS", dict(data._DATASETS))
    seen = []

    def loader(root, **kw):
        seen.append((Path(root), kw))
        return data.ReIDDataset("mine", Path(root), [], [], [])

    register_dataset("mine", loader)
    ds = build_dataset("mine", tmp_path, size=3)
    assert ds.name == "mine" and seen == [(tmp_path, {"size": 3})]
    assert "mine" in list_datasets()


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("market", "market1501"), ("duke", "dukemtmcreid"), ("cuhk03", "cuhk03_labeled")],
)
def test_build_dataset_unknown_name_suggests_closest(typo, suggestion):
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'") as err:
        build_dataset(typo, "/nonexistent")
    assert "market1501, synthreid" in str(err.value)  # the valid names are listed


def test_build_dataset_unknown_name_without_close_match():
    with pytest.raises(ValueError, match="unknown data set 'zzzzzzzz'") as err:
        build_dataset("zzzzzzzz", "/nonexistent")
    assert "did you mean" not in str(err.value)
