"""What SynthReID knows about each image and a real data set does not: which pixels show the
person (`person_masks`), and the same picture with the detector box moved (`moved_boxes`).

Purpose: zheng2019 Fig. 4 measures the share of the attention inside the person, and Fig. 5(c)
argues that the profile cut undoes a box error. The generator saves neither; both are computed
on demand here from the same plan and the same random draws as the image, so they line up with
the saved pixels, box misalignment (shift and scale) included.

How: the person is drawn (with `synth_render`'s own drawing code) onto a black and onto a white
canvas; the pixels it paints are equal in both, the rest differ. Its shadow is painted in each
canvas's own colour, so it is not part of the mask. The occluder is found the same way and
removed. Lighting, colour cast, noise and blur only change pixel values, never which pixel is
the person, so they are not needed.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np
from PIL import Image

from reidnb.data.records import DatasetError
from reidnb.data.synth_render import (
    VIEWS,
    Camera,
    Identity,
    SynthKnobs,
    _draw_occluder,
    _draw_person,
    draw_image_params,
    render_pil,
)
from reidnb.data.synthetic import (
    GENERATOR_VERSION,
    META_NAME,
    SPLIT_DIRS,
    PlannedImage,
    SizeSpec,
    load_meta,
    plan_dataset,
    planned_draw,
)

__all__ = ["moved_boxes", "person_mask", "person_mask_for", "person_masks"]

_BLACK, _WHITE = (0, 0, 0), (255, 255, 255)


def _painted(draw, height: int, width: int) -> np.ndarray:
    """Pixels that `draw(canvas, background_colour)` paints, as bool (height, width)."""
    out = []
    for colour in (_BLACK, _WHITE):
        im = Image.new("RGB", (width, height), colour)
        draw(im, colour)
        out.append(np.asarray(im))
    return (out[0] == out[1]).all(axis=-1)


def person_mask_for(identity: Optional[Identity], camera: Camera, view: str,
                    rng: np.random.Generator, knobs: Optional[SynthKnobs] = None,
                    height: int = 128, width: int = 64) -> np.ndarray:
    """The person mask of what `render(identity, camera, view, rng, knobs, height, width)` draws.

    Takes the same arguments as `render` and consumes the same random numbers from `rng`, so
    give it a generator in the same state. Returns bool (height, width): True where the person
    is drawn and not covered by the occluder. `identity=None` (nobody in the box) gives an
    all-False mask. Used for zheng2019 Fig. 4: share of the attention inside the person.
    """
    if view not in VIEWS:
        raise ValueError(f"person_mask_for: view must be one of {VIEWS}, got {view!r}")
    if height < 16 or width < 8:
        raise ValueError(f"person_mask_for: image size {height}x{width} is too small (min 16x8)")
    knobs = knobs or SynthKnobs()
    d = draw_image_params(rng, knobs)  # the draws `render_pil` makes, in the same order
    if identity is None:
        return np.zeros((height, width), dtype=bool)
    # the shadow takes the canvas colour, so it never counts as the person
    mask = _painted(lambda im, bg: _draw_person(im, bg, identity, camera.index, view, d),
                    height, width)
    if d.occluded:
        mask &= ~_painted(lambda im, bg: _draw_occluder(im, d), height, width)
    return mask


def person_mask(item: PlannedImage, identities: list[Identity], cameras: list[Camera],
                seed: int, knobs: Optional[SynthKnobs] = None, height: int = 128,
                width: int = 64) -> np.ndarray:
    """The person mask of planned image `item`, aligned with `render_planned`'s picture.

    Arguments are those of `render_planned` (identities and cameras from `plan_dataset`).
    Returns bool (height, width): True where the person is visible (drawn, not occluded).
    A box with nobody in it gives an all-False mask. Used for zheng2019 Fig. 4: share of the
    attention inside the person.
    """
    # the draws render_planned makes (junk boxes' knobs, each image its own generator)
    return person_mask_for(*planned_draw(item, identities, cameras, seed, knobs), height, width)


def _knobs_from_meta(meta: dict, path: Path) -> SynthKnobs:
    raw = dict(meta.get("knobs") or {})
    known = {f.name for f in fields(SynthKnobs)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DatasetError(f"{path}: unknown SynthReID knobs {unknown}; expected only "
                           f"{sorted(known)}")
    return SynthKnobs(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def _planned_items(root: Path, names: list[Path], height: Optional[int],
                   width: Optional[int], caller: str) -> tuple:
    """(items, identities, cameras, seed, knobs, height, width): the planned image of each name
    in the SynthReID folder `root`, re-planned from its ``synthreid.json`` (nothing else is
    read); errors name the file and what was expected."""
    meta = load_meta(root)
    meta_path = root / META_NAME
    if meta.get("dataset") != "synthreid":
        raise DatasetError(f"{meta_path} describes data set {meta.get('dataset')!r}, expected "
                           f"'synthreid': {caller} works only on SynthReID folders")
    if meta.get("generator_version") != GENERATOR_VERSION:
        raise DatasetError(
            f"{meta_path} was written by SynthReID generator {meta.get('generator_version')!r}, "
            f"this code is {GENERATOR_VERSION!r}: it would not line up; regenerate the set")
    try:
        spec = SizeSpec(**{k: tuple(v) if isinstance(v, list) else v
                           for k, v in meta["size_spec"].items()})
        seed = int(meta["seed"])
    except (KeyError, TypeError) as err:
        raise DatasetError(f"{meta_path} lacks a valid seed or size_spec ({err})") from err
    knobs = _knobs_from_meta(meta, meta_path)
    if height is None or width is None:
        h, w = meta.get("height"), meta.get("width")
        if h is None or w is None:  # an older meta without the size: read the first image
            if not names:
                raise ValueError(f"{meta_path} records no image size; pass height and width")
            first = _find_file(root, names[0])
            with Image.open(first) as im:
                w, h = im.size
        height = int(h) if height is None else height
        width = int(w) if width is None else width
    identities, cameras, plan = plan_dataset(spec, seed, knobs)
    by_name: dict[str, list[PlannedImage]] = {}
    for item in plan:
        by_name.setdefault(item.name, []).append(item)
    split_of_dir = {v: k for k, v in SPLIT_DIRS.items()}
    items = []
    for name in names:
        found = by_name.get(name.name, [])
        split = split_of_dir.get(name.parent.name)
        if split is not None:
            found = [p for p in found if p.split == split]
        if len(found) != 1:
            what = "is ambiguous (give its split folder)" if found else "is not an image of"
            example = plan[0].name if plan else "none"
            raise ValueError(
                f"{caller}: {str(name)!r} {what} the SynthReID set in {root} (seed {seed}, "
                f"size {meta.get('size')!r}); expected a file name of its "
                f"{', '.join(f'{d}/' for d in SPLIT_DIRS.values())} folders, such as {example!r}")
        items.append(found[0])
    return items, identities, cameras, seed, knobs, height, width


def person_masks(root: Union[str, os.PathLike], names: Iterable[Union[str, os.PathLike]],
                 height: Optional[int] = None, width: Optional[int] = None):
    """Person masks for images of the generated SynthReID folder `root`, as a bool tensor.

    `names` are file names (``0001_c1s1_000123_01.jpg``), optionally with their split folder
    (``query/0001_c1s1_000123_01.jpg``) or a full path. The set is re-planned from the seed,
    size and knobs in ``synthreid.json``; nothing but that file is read. Returns a
    torch.BoolTensor (N, H, W), True on the visible person. H, W default to the size the set was
    generated at; another size draws the same geometry at that resolution (for maps at the
    network's input size), which matches a resized image up to a pixel at the edges.
    Used for zheng2019 Fig. 4: share of the attention inside the person.

    Raises DatasetError (a ValueError) when `root` has no ``synthreid.json`` or is not a
    SynthReID set, and ValueError for a name that is not one of its images.
    """
    import torch

    items, identities, cameras, seed, knobs, height, width = _planned_items(
        Path(root), [Path(n) for n in names], height, width, "person_masks")
    out = torch.zeros((len(items), height, width), dtype=torch.bool)
    for i, item in enumerate(items):
        out[i] = torch.from_numpy(person_mask(item, identities, cameras, seed, knobs, height,
                                              width))
    return out


def moved_boxes(root: Union[str, os.PathLike], names: Iterable[Union[str, os.PathLike]],
                dy: float, height: Optional[int] = None, width: Optional[int] = None):
    """The images `names` of the SynthReID folder `root` drawn again with the detector box slid
    up by `dy` x the image height, so the person sits that much lower in it (negative: higher);
    person, pose, background, light and noise as drawn. dy = 0 gives the saved pictures (before
    JPEG). A uint8 tensor (N, 3, H, W). Used for zheng2019 Fig. 5(c): does the profile cut
    follow a box error? Errors as `person_masks`."""
    import torch

    items, identities, cameras, seed, knobs, height, width = _planned_items(
        Path(root), [Path(n) for n in names], height, width, "moved_boxes")
    out = torch.zeros((len(items), 3, height, width), dtype=torch.uint8)
    for i, item in enumerate(items):
        ident, camera, view, rng, item_knobs = planned_draw(item, identities, cameras, seed,
                                                            knobs)
        d = draw_image_params(rng, item_knobs)
        im = render_pil(ident, camera, view, rng, item_knobs, height, width,
                        draws=replace(d, dy=d.dy + dy))
        out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


def _find_file(root: Path, name: Path) -> Path:
    if name.is_file():
        return name
    for sub in SPLIT_DIRS.values():
        if (root / sub / name.name).is_file():
            return root / sub / name.name
    raise FileNotFoundError(f"person_masks: no image {name.name!r} in the split folders of {root}")
