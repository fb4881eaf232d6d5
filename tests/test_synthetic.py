"""Tests for SynthReID (reidnb.data.synthetic, reidnb.data.synth_render)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from reidnb.data.records import DatasetError
from reidnb.data.synthetic import (
    META_NAME,
    SIZES,
    SPLIT_DIRS,
    SizeSpec,
    SynthKnobs,
    generate,
    load_meta,
    make_cameras,
    montage,
    plan_dataset,
    render,
    render_examples,
    sample_identities,
    sweep_knob,
)

# Market-1501 names: 4-digit pid (0000 = distractor) or -1 (junk), camera 1..6, sequence 1..6
NAME = re.compile(r"(?P<pid>-1|\d{4})_c(?P<cam>[1-6])s(?P<seq>[1-6])_\d{6}_\d{2}\.jpg")
TINY = SizeSpec(train_ids=4, test_ids=4, images_per_id=(4, 6), cams_per_id=(2, 3),
                distractors=3, junk=2)
# every nuisance off: renders differ only by what a test changes
CLEAN = SynthKnobs(occlusion_prob=0.0, misalign_offset=0.0, misalign_scale=0.0,
                   illumination_range=0.0, contrast_range=0.0, color_cast_strength=0.0,
                   noise_std=0.0, blur_prob=0.0, pose_jitter=0.0, bag_visible_prob=1.0)


def _parse(folder: Path) -> list[tuple[int, int]]:
    """(pid, cam) of every file in a split folder; fails on any name that is not Market's."""
    out = []
    for path in sorted(folder.iterdir()):
        m = NAME.fullmatch(path.name)
        assert m is not None, f"{path.name} does not follow the Market-1501 naming"
        out.append((int(m.group("pid")), int(m.group("cam"))))
    return out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthreid") / "smoke"
    return out, generate(out, "smoke", seed=0)


def _person(**attrs):
    base = sample_identities(1, np.random.default_rng(5), CLEAN)[0]
    return replace(base, **attrs)


def _render(identity, view, camera=1, knobs=CLEAN, seed=3, height=128, width=64):
    cams = make_cameras(np.random.default_rng(0), knobs)
    return render(identity, cams[camera - 1], view, np.random.default_rng(seed), knobs,
                  height, width).astype(int)


def test_generate_names_match_market_convention(smoke):
    out, _ = smoke
    assert sorted(p.name for p in out.iterdir()) == sorted([*SPLIT_DIRS.values(), META_NAME])
    for sub in SPLIT_DIRS.values():
        assert _parse(out / sub), f"{sub} is empty"


def test_generate_counts_match_meta(smoke):
    out, meta = smoke
    assert meta == load_meta(out)
    for split, sub in SPLIT_DIRS.items():
        recs = _parse(out / sub)
        counts = meta["counts"][split]
        assert counts["images"] == len(recs)
        assert counts["ids"] == len({p for p, _ in recs if p > 0})
        assert counts["cams"] == len({c for _, c in recs})
    gallery = _parse(out / SPLIT_DIRS["gallery"])
    assert meta["counts"]["gallery"]["distractors"] == sum(p == 0 for p, _ in gallery)
    assert meta["counts"]["gallery"]["junk"] == sum(p == -1 for p, _ in gallery)
    spec = SIZES["smoke"]
    assert meta["counts"]["train"]["ids"] == spec.train_ids
    assert meta["counts"]["query"]["ids"] == spec.test_ids
    assert (meta["seed"], meta["size"], meta["height"], meta["width"]) == (0, "smoke", 128, 64)
    assert meta["knobs"]["occlusion_prob"] == SynthKnobs().occlusion_prob


def test_generate_gallery_has_distractors_and_junk(smoke):
    out, _ = smoke
    gallery = _parse(out / SPLIT_DIRS["gallery"])
    assert sum(p == 0 for p, _ in gallery) == SIZES["smoke"].distractors > 0
    assert sum(p == -1 for p, _ in gallery) == SIZES["smoke"].junk > 0
    assert not any(p <= 0 for p, _ in _parse(out / SPLIT_DIRS["query"]))
    assert not any(p <= 0 for p, _ in _parse(out / SPLIT_DIRS["train"]))


def test_generate_test_ids_have_query_and_gallery_in_other_cameras(smoke):
    out, _ = smoke
    query = _parse(out / SPLIT_DIRS["query"])
    gallery = _parse(out / SPLIT_DIRS["gallery"])
    train_ids = {p for p, _ in _parse(out / SPLIT_DIRS["train"])}
    g_cams = defaultdict(set)
    for pid, cam in gallery:
        g_cams[pid].add(cam)
    q_cams = defaultdict(set)
    for pid, cam in query:
        q_cams[pid].add(cam)
        assert g_cams[pid] - {cam}, f"query {pid} c{cam} has no gallery match in another camera"
    assert all(len(c) >= 2 for c in q_cams.values()), "a test id has queries from one camera"
    assert not train_ids & set(q_cams), "train and test identities overlap"


def test_generate_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(tmp_path / "a", TINY, seed=1)
    b = generate(tmp_path / "b", TINY, seed=1)
    c = generate(tmp_path / "c", TINY, seed=2)
    assert a["content_sha256"] == b["content_sha256"] != c["content_sha256"]
    name = sorted((tmp_path / "a" / "query").iterdir())[0].name
    assert (tmp_path / "a/query" / name).read_bytes() == (tmp_path / "b/query" / name).read_bytes()


def test_generate_refuses_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(tmp_path, TINY)
    meta = generate(tmp_path, TINY, seed=4, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only its own files are replaced
    assert load_meta(tmp_path)["seed"] == 4
    assert meta["counts"]["query"]["images"] == len(list((tmp_path / "query").iterdir()))


def test_load_meta_flags_interrupted_run(tmp_path):
    generate(tmp_path, TINY)
    (tmp_path / META_NAME).unlink()  # what a run killed before its last step leaves
    with pytest.raises(DatasetError, match="not a complete SynthReID folder"):
        load_meta(tmp_path)


def test_generate_rejects_unknown_size(tmp_path):
    with pytest.raises(ValueError, match="valid sizes"):
        generate(tmp_path, "huge")


def test_generate_image_size_option(tmp_path):
    from PIL import Image

    generate(tmp_path, TINY, height=256, width=128)
    path = next((tmp_path / "bounding_box_train").iterdir())
    with Image.open(path) as im:
        assert im.size == (128, 256) and im.mode == "RGB"


def test_market_loader_reads_generated_folder(smoke):
    from reidnb.data import load_synthreid

    out, meta = smoke
    ds = load_synthreid(out)
    assert len(ds.train) == meta["counts"]["train"]["images"]
    assert len(ds.query) == meta["counts"]["query"]["images"]
    gal = meta["counts"]["gallery"]
    assert len(ds.gallery) == gal["images"] - gal["junk"]  # the loader drops junk
    assert ds.num_train_pids == SIZES["smoke"].train_ids


def test_plan_each_identity_seen_by_two_to_six_cameras():
    idents, _, plan = plan_dataset("smoke", seed=3)
    cams = defaultdict(set)
    for item in plan:
        if item.kind == "person":
            cams[item.pid].add(item.cam)
    assert len(cams) == SIZES["smoke"].train_ids + SIZES["smoke"].test_ids
    lo, hi = SIZES["smoke"].cams_per_id
    assert all(lo <= len(c) <= hi for c in cams.values())


def _views_per_person_camera(knobs=None, seed=3):
    _, _, plan = plan_dataset("default", seed=seed, knobs=knobs)
    views = defaultdict(list)
    for item in plan:
        if item.kind == "person":
            views[(item.pid, item.cam)].append(item.view)
    return views


def test_plan_draws_the_view_per_image_not_per_camera():
    """Chapter 1 says so: with the default knobs one person in one camera is seen from several
    sides; only view_consistency=1 pins one view per (person, camera)."""
    mixed = _views_per_person_camera()
    assert sum(len(set(v)) > 1 for v in mixed.values()) > len(mixed) // 10
    pinned = _views_per_person_camera(SynthKnobs(view_consistency=1.0))
    assert all(len(set(v)) == 1 for v in pinned.values())
    assert len({v[0] for v in pinned.values()}) == 3  # the main views themselves still vary


def test_sample_identities_share_a_small_palette():
    people = sample_identities(300, np.random.default_rng(0))
    uppers = [p.upper_colour for p in people]
    assert len(set(uppers)) <= 8
    top = max(uppers.count(c) for c in set(uppers))
    assert top >= 0.15 * len(people)  # many people share their main colour
    assert {p.upper_pattern for p in people} == {"plain", "stripes", "checks", "logo"}
    assert {p.bag for p in people} == {"none", "backpack", "shoulder", "handbag"}


def test_render_is_deterministic_and_shaped():
    who = _person()
    a = _render(who, "front", knobs=SynthKnobs(), seed=9)
    assert a.shape == (128, 64, 3)
    assert np.array_equal(a, _render(who, "front", knobs=SynthKnobs(), seed=9))
    assert not np.array_equal(a, _render(who, "front", knobs=SynthKnobs(), seed=10))
    assert _render(who, "back", height=256, width=128).shape == (256, 128, 3)


def test_render_logo_only_in_front_view():
    logo = _person(upper_pattern="logo", upper_colour="black", pattern_colour="white",
                   bag="none")
    plain = replace(logo, upper_pattern="plain")
    front = np.abs(_render(logo, "front") - _render(plain, "front")).sum(-1) > 0
    rows, cols = np.nonzero(front)
    assert front.sum() > 30, "the logo is missing from the front view"
    assert 0.15 * 128 < rows.mean() < 0.45 * 128 and abs(cols.mean() - 32) < 6  # on the chest
    for view in ("back", "side"):
        assert np.array_equal(_render(logo, view), _render(plain, view)), view


def test_render_backpack_body_only_from_back_and_side():
    pack = _person(bag="backpack", bag_colour="red", upper_colour="black",
                   upper_pattern="plain", bag_cams=frozenset(range(1, 7)))
    none = replace(pack, bag="none")
    diff = {v: np.abs(_render(pack, v) - _render(none, v)).sum(-1) > 0
            for v in ("front", "back", "side")}
    widest = {v: int(d.sum(1).max()) for v, d in diff.items()}  # changed pixels per row
    assert diff["back"].sum() > 300 and diff["side"].sum() > 150
    assert widest["back"] >= 20 and widest["side"] >= 8, widest  # the pack itself
    assert 0 < widest["front"] <= 10, widest  # from the front: two thin straps only
    cols = np.nonzero(diff["front"].any(0))[0]
    assert cols.max() - cols.min() > 12  # ... one over each shoulder


def test_render_bag_hidden_outside_its_cameras():
    bag = _person(bag="shoulder", bag_cams=frozenset({1}))
    none = replace(bag, bag="none")
    assert not np.array_equal(_render(bag, "front", camera=1), _render(none, "front", camera=1))
    assert np.array_equal(_render(bag, "front", camera=2), _render(none, "front", camera=2))


def test_render_occlusion_knob_changes_pixels():
    who = _person()
    occluded = replace(CLEAN, occlusion_prob=1.0)
    a = _render(who, "front", knobs=occluded)
    assert not np.array_equal(a, _render(who, "front"))
    assert np.array_equal(_render(who, "front"), _render(who, "front"))


def test_render_nobody_box_has_no_person():
    who = _person()
    empty = _render(None, "front")
    assert not np.array_equal(empty, _render(who, "front"))
    assert np.array_equal(empty, _render(None, "back"))  # the view of nobody changes nothing


def test_knobs_reject_out_of_range_values():
    with pytest.raises(ValueError, match="occlusion_prob"):
        SynthKnobs(occlusion_prob=1.5)
    with pytest.raises(ValueError, match="view_probs"):
        SynthKnobs(view_probs=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="noise_std"):
        SynthKnobs(noise_std=-1.0)


def test_sweep_knob_rows_differ_only_by_the_knob():
    grid = sweep_knob("occlusion_prob", [0.0, 0.0, 1.0], n_ids=2)
    assert grid.shape == (3, 2, 128, 64, 3)
    assert np.array_equal(grid[0], grid[1])
    assert not np.array_equal(grid[0], grid[2])
    with pytest.raises(ValueError, match="unknown knob"):
        sweep_knob("no_such_knob", [1])


def test_render_examples_and_montage_shapes():
    grid = render_examples(seed=0, n_ids=2)
    assert grid.shape == (2, 6, 128, 64, 3) and grid.dtype == np.uint8
    sheet = montage(grid, pad=2)
    assert sheet.shape == (2 * 130 + 2, 6 * 66 + 2, 3)
    assert np.array_equal(sheet[2:130, 2:66], grid[0, 0])


def test_meta_json_is_written_last_and_complete(smoke):
    out, _ = smoke
    meta = json.loads((out / META_NAME).read_text())
    assert meta["dataset"] == "synthreid" and meta["num_cams"] == 6
    assert set(meta["knobs"]) == set(SynthKnobs.names())
    assert not list(out.glob("*.tmp"))


def test_generated_folder_verifies_against_its_own_manifest(tmp_path):
    from reidnb.data.manifests import verify

    generate(tmp_path, TINY, seed=0)
    report = verify("synthreid", tmp_path, check_images=False)
    assert report.ok and META_NAME in report.manifest_source, str(report)
    next((tmp_path / "query").iterdir()).unlink()
    assert not verify("synthreid", tmp_path, check_images=False).ok
