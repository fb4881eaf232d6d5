"""Tests for SynthReID person masks (reidnb.data.synth_truth)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reidnb.data.records import DatasetError
from reidnb.data.synth_truth import person_mask, person_masks
from reidnb.data.synthetic import (
    META_NAME,
    SPLIT_DIRS,
    PlannedImage,
    SizeSpec,
    SynthKnobs,
    generate,
    plan_dataset,
    render_planned,
)

TINY = SizeSpec(train_ids=3, test_ids=3, images_per_id=(4, 5), cams_per_id=(2, 2),
                distractors=8, junk=2)
# lighting, colour cast, noise, blur and occluders off: pixels are scene or person (or shadow)
FLAT = SynthKnobs(occlusion_prob=0.0, illumination_range=0.0, contrast_range=0.0,
                  color_cast_strength=0.0, noise_std=0.0, blur_prob=0.0)


def _item(index: int, ident: int = 0, cam: int = 1, view: str = "front",
          kind: str = "person") -> PlannedImage:
    return PlannedImage(index, "query", "x.jpg", 1, ident, cam, view, kind)


def _nobody(item: PlannedImage) -> PlannedImage:
    """The same box and draws with nobody in it: the background the person is drawn over."""
    return replace(item, ident=-1)


@pytest.fixture(scope="module")
def planned():
    return plan_dataset(TINY, seed=3, knobs=FLAT)


def test_mask_share_of_box_and_empty_for_nobody():
    ids, cams, plan = plan_dataset(TINY, seed=1)
    people = [p for p in plan if p.kind == "person"]
    shares = [person_mask(p, ids, cams, 1).mean() for p in people]
    assert all(0.10 < s < 0.60 for s in shares), (min(shares), max(shares))
    nobody = [p for p in plan if p.ident < 0]
    assert nobody, "the test set should hold a box with nobody in it"
    for p in nobody:
        m = person_mask(p, ids, cams, 1)
        assert m.dtype == bool and m.shape == (128, 64) and not m.any()


@pytest.mark.parametrize("view", ["front", "back", "side"])
def test_mask_is_exactly_the_person(planned, view):
    ids, cams, _ = planned
    shadows = 0
    for index in range(8):  # the last two are junk boxes, drawn with their own misalignment
        item = _item(index, ident=index % 3, cam=1 + index % 6, view=view,
                     kind="junk" if index >= 6 else "person")
        img = np.asarray(render_planned(item, ids, cams, 3, FLAT)).astype(int)
        bg = np.asarray(render_planned(_nobody(item), ids, cams, 3, FLAT)).astype(int)
        mask = person_mask(item, ids, cams, 3, FLAT)
        changed = (img != bg).any(-1)
        # outside the mask only the shadow (in the camera's shadow colour) may differ
        shadow = (img == np.asarray(cams[item.cam - 1].shadow)).all(-1)
        assert not (changed & ~mask & ~shadow).any()
        shadows += (changed & ~mask).any()  # the shadow is there, and outside the mask
        # inside, the person differs from the background nearly everywhere
        assert mask.any() and changed[mask].mean() > 0.95
    assert shadows >= 6


def test_occluder_is_cut_out(planned):
    ids, cams, _ = planned
    occ = replace(FLAT, occlusion_prob=1.0)  # same draws: only whether it is drawn changes
    cut = 0
    for index in range(8):
        item = _item(index, ident=index % 3)
        full = person_mask(item, ids, cams, 3, FLAT)
        seen = person_mask(item, ids, cams, 3, occ)
        assert not (seen & ~full).any()
        a = np.asarray(render_planned(item, ids, cams, 3, FLAT))
        b = np.asarray(render_planned(item, ids, cams, 3, occ))
        assert (a[seen] == b[seen]).all()  # visible person pixels are untouched
        hidden = full & ~seen
        if hidden.any():
            assert (a[hidden] != b[hidden]).any(-1).mean() > 0.9
            cut += 1
    assert cut >= 3


def _centroids(knobs: SynthKnobs, ids, cams, n: int = 24) -> np.ndarray:
    out = []
    for index in range(n):
        m = person_mask(_item(index), ids, cams, 3, knobs)
        ys, xs = np.nonzero(m)
        out.append((ys.mean(), xs.mean()))
    return np.asarray(out)


def test_misalignment_moves_the_mask(planned):
    ids, cams, _ = planned
    still = replace(FLAT, misalign_offset=0.0, misalign_scale=0.0, pose_jitter=0.0)
    spread = [_centroids(replace(still, misalign_offset=o), ids, cams).std(0)
              for o in (0.0, 0.05, 0.2)]
    assert spread[0].max() < 0.05  # the same person, front view, no misalignment: one place
    assert (spread[1] > spread[0] + 0.5).all() and (spread[2] > 2 * spread[1]).all()
    # the horizontal shift is the drawn dx, to a pixel
    base = _centroids(still, ids, cams)[:, 1]
    moved = _centroids(replace(still, misalign_offset=0.2), ids, cams)[:, 1]
    dx = []
    for index in range(24):
        rng = np.random.default_rng([3, 7, index])
        dx.append((2 * rng.random(18)[2] - 1) * 0.2 * 64)
    assert np.abs(moved - base - np.asarray(dx)).max() < 1.0
    # scale changes the area
    areas = [person_mask(_item(i), ids, cams, 3, replace(still, misalign_scale=0.3)).sum()
             for i in range(24)]
    assert np.std(areas) > 0.1 * np.mean(areas)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthmasks") / "set"
    generate(out, TINY, seed=5, knobs=FLAT)
    return out


def test_person_masks_line_up_with_saved_images(folder):
    ids, cams, plan = plan_dataset(TINY, seed=5, knobs=FLAT)
    queries = [p for p in plan if p.split == "query"]
    names = [p.name for p in queries]
    masks = person_masks(folder, names)
    assert masks.dtype == torch.bool and masks.shape == (len(names), 128, 64)
    assert (masks.flatten(1).sum(1) > 0).all()
    for item, mask in zip(queries, masks.numpy()):
        saved = np.asarray(Image.open(folder / "query" / item.name)).astype(float)
        bg = np.asarray(render_planned(_nobody(item), ids, cams, 5, FLAT)).astype(float)
        diff = np.abs(saved - bg).mean(-1)  # JPEG: near 0 on the background, large on people
        ring = ~mask & (np.arange(128)[:, None] < 110)  # off the person, above the shadow
        assert diff[mask].mean() > 5 * diff[ring].mean() + 5
    # split folders and paths are accepted; nobody boxes are empty
    nobody = [p for p in plan if p.ident < 0]
    more = person_masks(folder, [f"query/{names[0]}", folder / "bounding_box_test" /
                                 nobody[0].name])
    assert torch.equal(more[0], masks[0]) and not more[1].any()
    # another size draws the same geometry at that size
    big = person_masks(folder, names[:1], height=256, width=128)
    small = torch.nn.functional.interpolate(big[None].float(), size=(128, 64), mode="area")
    assert ((small[0, 0] > 0.5) != masks[0]).float().mean() < 0.03


def test_person_masks_errors(folder, tmp_path):
    with pytest.raises(ValueError, match="9999_c1s1_000001_01.jpg.*is not an image of"):
        person_masks(folder, ["9999_c1s1_000001_01.jpg"])
    with pytest.raises(ValueError, match="not an image of"):  # right name, wrong split
        name = next(p.name for p in (folder / SPLIT_DIRS["query"]).iterdir())
        person_masks(folder, [f"bounding_box_train/{name}"])
    with pytest.raises(DatasetError, match="synthreid.json is missing"):
        person_masks(tmp_path, ["0001_c1s1_000001_01.jpg"])
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads((folder / META_NAME).read_text())
    (other / META_NAME).write_text(json.dumps({**meta, "dataset": "market1501"}))
    with pytest.raises(DatasetError, match="expected 'synthreid'"):
        person_masks(other, ["0001_c1s1_000001_01.jpg"])


def test_moved_boxes_move_only_the_person_by_the_asked_amount(tmp_path):
    from reidnb.data.synth_truth import moved_boxes
    from reidnb.data.synthetic import generate

    root = tmp_path / "set"
    generate(root, size="smoke", seed=3)
    names = [f"query/{p.name}" for p in sorted((root / "query").glob("*.jpg"))[:6]]
    still = moved_boxes(root, names, 0.0)
    saved = torch.stack([torch.from_numpy(np.asarray(Image.open(root / n).convert("RGB")).copy())
                         .permute(2, 0, 1) for n in names])
    assert (still.float() - saved.float()).abs().mean() < 6.0      # dy = 0: the saved picture
    down = moved_boxes(root, names, 0.125)                          # 16 px lower at 128 high
    masks = person_masks(root, names)
    lower = torch.zeros_like(masks)
    lower[:, 16:] = masks[:, :-16]
    changed = (down.float() - still.float()).abs().sum(dim=1) > 30
    assert changed.sum(dim=(1, 2)).min() > 50                       # every person moved
    # what changed is where the person was or now is (its shadow, at the feet, aside)
    inside = (changed & (masks | lower)).sum() / changed.sum()
    assert inside > 0.9
    assert not torch.equal(moved_boxes(root, names, -0.125), down)
    with pytest.raises(ValueError, match="moved_boxes"):
        moved_boxes(root, ["query/nobody_here.jpg"], 0.1)
