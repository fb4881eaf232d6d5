"""SynthReID: a procedural person re-identification data set, deterministic from a seed.

It is written to disk in the exact Market-1501 layout (Zheng et al., ICCV 2015) so that the
Market-1501 loader reads it unchanged::

    OUT/bounding_box_train/  OUT/bounding_box_test/  OUT/query/  OUT/synthreid.json
    file names  {pid:04d}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg   (cam 1..6, seq 1..6)
    gallery distractors have pid 0000, junk gallery boxes are named -1_c{cam}s{seq}_...

Identities differ by attributes drawn from small palettes (so the main colours are often shared
and fine cues decide); each camera has its own scene, lighting and colour cast; each image its
own view, pose, box misalignment and maybe an occluder (see `synth_render`). Every nuisance is a
field of `SynthKnobs`. As in Market-1501, each test identity has about one query per camera it
appears in, and gallery images in its other cameras; distractors and junk sit in the gallery.

`synthreid.json` is written last (atomically), so a folder without it is an interrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np

from reidnb.data.records import DatasetError
from reidnb.data.synth_render import (
    NUM_CAMERAS,
    VIEWS,
    Camera,
    Identity,
    SynthKnobs,
    make_cameras,
    render,
    render_pil,
    sample_identities,
)

__all__ = [
    "GENERATOR_VERSION",
    "META_NAME",
    "SIZES",
    "SPLIT_DIRS",
    "Camera",
    "Identity",
    "PlannedImage",
    "SizeSpec",
    "SynthKnobs",
    "generate",
    "load_meta",
    "make_cameras",
    "montage",
    "plan_dataset",
    "planned_draw",
    "render",
    "render_examples",
    "render_planned",
    "sample_identities",
    "save_contact_sheet",
    "sweep_knob",
]

GENERATOR_VERSION = "1.0"
META_NAME = "synthreid.json"
SPLIT_DIRS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SizeSpec:
    """How big a SynthReID set is: identities per split and images per identity."""

    train_ids: int
    test_ids: int
    images_per_id: tuple[int, int]  # inclusive range, drawn per identity
    cams_per_id: tuple[int, int]  # inclusive range, at most 6
    distractors: int  # pid-0 gallery images (other people, or boxes with nobody in them)
    junk: int  # pid -1 gallery images (badly cut boxes that evaluation ignores)

    def __post_init__(self) -> None:
        lo, hi = self.images_per_id
        cmin, cmax = self.cams_per_id
        if not 2 <= cmin <= cmax <= NUM_CAMERAS:
            raise ValueError(f"SizeSpec.cams_per_id must lie in 2..{NUM_CAMERAS}, got "
                             f"{self.cams_per_id}")
        if lo < 2 * cmin or hi < lo:
            raise ValueError(
                f"SizeSpec.images_per_id {self.images_per_id} must allow 2 images in each of "
                f"at least {cmin} cameras (one query, one gallery)")
        if self.train_ids + self.test_ids > 1500:
            raise ValueError("SizeSpec: at most 1500 identities (Market-1501 pid range)")


SIZES: dict[str, SizeSpec] = {
    "smoke": SizeSpec(24, 24, (6, 10), (2, 4), distractors=12, junk=6),
    "default": SizeSpec(200, 200, (10, 22), (2, 6), distractors=500, junk=150),
    "large": SizeSpec(750, 750, (12, 28), (2, 6), distractors=3000, junk=800),
    # CUHK03-like: every identity in exactly two cameras (a camera pair), a few images each, so
    # a query has at most four true matches; no distractors or junk (CUHK03-NP has neither)
    "two_camera": SizeSpec(100, 100, (6, 10), (2, 2), distractors=0, junk=0),
    "two_camera_smoke": SizeSpec(16, 16, (6, 8), (2, 2), distractors=0, junk=0),
}

# the junk boxes: person far off-centre and badly scaled
JUNK_KNOBS = {"misalign_offset": 0.45, "misalign_scale": 0.6}


@dataclass(frozen=True)
class PlannedImage:
    """One image of the plan: where it goes and what to render (before any pixel is drawn)."""

    index: int  # position in the plan; seeds the image's own generator
    split: str  # train / query / gallery
    name: str  # Market-1501 file name
    pid: int  # the pid in the name (0 distractor, -1 junk)
    ident: int  # index into the plan's identity list, or -1 for a box with nobody in it
    cam: int  # 1-based
    view: str
    kind: str  # person / distractor / junk


def _resolve_size(size: Union[str, SizeSpec]) -> tuple[str, SizeSpec]:
    if isinstance(size, SizeSpec):
        return "custom", size
    if size not in SIZES:
        raise ValueError(f"SynthReID size {size!r} is unknown; valid sizes: {sorted(SIZES)}")
    return size, SIZES[size]


def _market_name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    head = "-1" if pid == -1 else f"{pid:04d}"
    return f"{head}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg"


def plan_dataset(
    size: Union[str, SizeSpec] = "smoke", seed: int = 0, knobs: Optional[SynthKnobs] = None
) -> tuple[list[Identity], list[Camera], list[PlannedImage]]:
    """Decide every identity, camera and file of a SynthReID set without rendering anything.

    Train and test identities are disjoint. A test identity appears in 2..6 cameras with at
    least two images in each; one image per camera becomes its query, the rest gallery.
    """
    _, spec = _resolve_size(size)
    knobs = knobs or SynthKnobs()
    n_people = spec.train_ids + spec.test_ids
    people = sample_identities(n_people, np.random.default_rng([seed, 1]), knobs)
    others = sample_identities(spec.distractors, np.random.default_rng([seed, 3]), knobs,
                               first_pid=0)
    cameras = make_cameras(np.random.default_rng([seed, 2]), knobs)
    rng = np.random.default_rng([seed, 0])
    pids = rng.permutation(n_people) + 1
    people = [replace(p, pid=int(q)) for p, q in zip(people, pids)]
    identities = people + [replace(p, pid=0) for p in others]
    views = np.asarray(knobs.view_probs, dtype=float)
    views = views / views.sum()
    used: dict[str, set] = {s: set() for s in SPLIT_DIRS}
    plan: list[PlannedImage] = []

    def add(split, pid, ident, cam, seq, frame, view, kind):
        box = 1
        name = _market_name(pid, cam, seq, frame, box)
        while name in used[split]:
            box += 1
            name = _market_name(pid, cam, seq, frame, box)
        used[split].add(name)
        plan.append(PlannedImage(len(plan), split, name, pid, ident, cam, view, kind))

    lo, hi = spec.images_per_id
    cmin, cmax = spec.cams_per_id
    for i, person in enumerate(people):
        test = i >= spec.train_ids
        per_cam = 2 if test else 1
        n_img = int(rng.integers(lo, hi + 1))
        k = int(rng.integers(cmin, min(cmax, n_img // per_cam) + 1))
        cams = np.sort(rng.choice(NUM_CAMERAS, size=k, replace=False)) + 1
        counts = per_cam + rng.multinomial(n_img - per_cam * k, np.full(k, 1.0 / k))
        for cam, count in zip(cams, counts):
            main_view = VIEWS[int(rng.choice(3, p=views))]
            seq = int(rng.integers(1, 7))
            frames = int(rng.integers(0, 20000)) + np.cumsum(rng.integers(5, 90, size=count))
            query_at = int(rng.integers(0, count)) if test else -1
            for j, frame in enumerate(frames):
                keep = rng.random() < knobs.view_consistency
                other = VIEWS[int(rng.choice(3, p=views))]
                split = "train" if not test else ("query" if j == query_at else "gallery")
                add(split, person.pid, i, int(cam), seq, int(frame),
                    main_view if keep else other, "person")
    for j in range(spec.distractors):
        cam, seq = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        frame, view = int(rng.integers(0, 20000)), VIEWS[int(rng.choice(3, p=views))]
        nobody = rng.random() < 0.25  # a false detection: a box with only background in it
        add("gallery", 0, -1 if nobody else n_people + j, cam, seq, frame, view, "distractor")
    for _ in range(spec.junk):
        cam, seq = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        frame, view = int(rng.integers(0, 20000)), VIEWS[int(rng.choice(3, p=views))]
        who = int(rng.integers(spec.train_ids, n_people)) if spec.test_ids else -1
        add("gallery", -1, who, cam, seq, frame, view, "junk")
    return identities, cameras, plan


def render_planned(
    item: PlannedImage,
    identities: list[Identity],
    cameras: list[Camera],
    seed: int,
    knobs: Optional[SynthKnobs] = None,
    height: int = 128,
    width: int = 64,
):
    """Render one planned image as a PIL image (its own generator: seed and plan index)."""
    return render_pil(*planned_draw(item, identities, cameras, seed, knobs), height, width)


def planned_draw(item: PlannedImage, identities: list[Identity], cameras: list[Camera],
                 seed: int, knobs: Optional[SynthKnobs] = None) -> tuple:
    """What `render_pil` draws planned image `item` with: (identity or None, camera, view, a
    generator of its own seeded by the set's seed and the plan index, knobs, junk boxes'
    looser). Anything that must line up with the picture (its person mask) starts here."""
    knobs = knobs or SynthKnobs()
    if item.kind == "junk":
        knobs = replace(knobs, **JUNK_KNOBS)
    ident = identities[item.ident] if item.ident >= 0 else None
    rng = np.random.default_rng([seed, 7, item.index])
    return ident, cameras[item.cam - 1], item.view, rng, knobs


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"SynthReID output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"SynthReID output folder {out} is not empty; choose an empty folder or pass "
                "overwrite=True (which deletes its synthreid.json and split folders)")
        meta = out / META_NAME
        if meta.exists():
            meta.unlink()  # first, so that an interrupted overwrite reads as incomplete
        for sub in SPLIT_DIRS.values():
            if (out / sub).exists():
                shutil.rmtree(out / sub)
    for sub in SPLIT_DIRS.values():
        (out / sub).mkdir(parents=True, exist_ok=True)


def _split_counts(plan: list[PlannedImage]) -> dict[str, dict[str, int]]:
    counts = {}
    for split in ("train", "query", "gallery"):
        items = [p for p in plan if p.split == split]
        people = [p for p in items if p.pid > 0]
        counts[split] = {
            "images": len(items),
            "ids": len({p.pid for p in people}),
            "cams": len({p.cam for p in items}),
        }
    gal = [p for p in plan if p.split == "gallery"]
    counts["gallery"]["distractors"] = sum(p.pid == 0 for p in gal)
    counts["gallery"]["junk"] = sum(p.pid == -1 for p in gal)
    return counts


def generate(
    out_dir: Union[str, os.PathLike],
    size: Union[str, SizeSpec] = "smoke",
    seed: int = 0,
    knobs: Optional[SynthKnobs] = None,
    height: int = 128,
    width: int = 64,
    overwrite: bool = False,
    progress: bool = False,
) -> dict:
    """Write a SynthReID set to `out_dir` in the Market-1501 layout and return its metadata.

    Refuses a non-empty folder unless `overwrite`. Images are written first and
    `synthreid.json` (seed, size, knobs, version, per-split counts, a content hash) last, so a
    folder without it is an interrupted run. The same arguments give the same JPEG bytes.
    """
    size_name, spec = _resolve_size(size)
    knobs = knobs or SynthKnobs()
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    identities, cameras, plan = plan_dataset(spec, seed, knobs)
    digests = []
    items = plan
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(plan, desc="SynthReID", unit="img")
    for item in items:
        im = render_planned(item, identities, cameras, seed, knobs, height, width)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=JPEG_QUALITY)
        data = buf.getvalue()
        rel = f"{SPLIT_DIRS[item.split]}/{item.name}"
        with open(out / rel, "wb") as fh:
            fh.write(data)
        digests.append(f"{rel} {hashlib.sha256(data).hexdigest()}")
    # the manifest `reidnb data verify synthreid OUT` checks the folder against
    from reidnb.data.manifests import make_manifest

    manifest = make_manifest(
        "synthreid", out, source=f"reidnb.data.synthetic.generate {GENERATOR_VERSION}, "
        f"size {size_name}, seed {seed}")
    manifest["cam_range"] = [1, NUM_CAMERAS]
    meta = {
        "dataset": "synthreid",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": size_name,
        "size_spec": asdict(spec),
        "height": height,
        "width": width,
        "knobs": asdict(knobs),
        "layout": "market1501",
        "num_cams": NUM_CAMERAS,
        "counts": _split_counts(plan),
        "content_sha256": hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest(),
        "manifest": manifest,
    }
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    tmp = out / (META_NAME + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out / META_NAME)
    return json.loads(text)  # exactly what load_meta will read back (lists, not tuples)


def load_meta(out_dir: Union[str, os.PathLike]) -> dict:
    """Read `synthreid.json`; a folder without it is not a complete SynthReID set."""
    path = Path(out_dir) / META_NAME
    if not path.is_file():
        raise DatasetError(
            f"{path} is missing: {out_dir} is not a complete SynthReID folder (generation was "
            "interrupted or never ran); regenerate it with reidnb.data.synthetic.generate")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------
# pictures for notebooks


def render_examples(
    seed: int = 0,
    n_ids: int = 4,
    knobs: Optional[SynthKnobs] = None,
    height: int = 128,
    width: int = 64,
    views: Optional[list[str]] = None,
) -> np.ndarray:
    """The first `n_ids` identities of the set `seed`, each seen by all six of its cameras.

    Returns uint8 (n_ids, 6, H, W, 3). `views` gives one view per camera (default: front, back,
    side, front, back, side).
    """
    knobs = knobs or SynthKnobs()
    views = views or [VIEWS[c % 3] for c in range(NUM_CAMERAS)]
    if len(views) != NUM_CAMERAS:
        raise ValueError(f"render_examples: need {NUM_CAMERAS} views, got {len(views)}")
    people = sample_identities(n_ids, np.random.default_rng([seed, 1]), knobs)
    cameras = make_cameras(np.random.default_rng([seed, 2]), knobs)
    out = np.zeros((n_ids, NUM_CAMERAS, height, width, 3), dtype=np.uint8)
    for i, person in enumerate(people):
        for c, (cam, view) in enumerate(zip(cameras, views)):
            rng = np.random.default_rng([seed, 11, i, c])
            out[i, c] = render(person, cam, view, rng, knobs, height, width)
    return out


def sweep_knob(
    name: str,
    values: list,
    seed: int = 0,
    n_ids: int = 4,
    camera: int = 1,
    view: str = "front",
    base: Optional[SynthKnobs] = None,
    height: int = 128,
    width: int = 64,
) -> np.ndarray:
    """The same people and draws rendered with one knob set to each of `values`.

    Returns uint8 (len(values), n_ids, H, W, 3): rows differ only by the knob.
    """
    base = base or SynthKnobs()
    if name not in SynthKnobs.names():
        raise ValueError(f"sweep_knob: unknown knob {name!r}; knobs are {SynthKnobs.names()}")
    out = np.zeros((len(values), n_ids, height, width, 3), dtype=np.uint8)
    for r, value in enumerate(values):
        knobs = replace(base, **{name: value})
        people = sample_identities(n_ids, np.random.default_rng([seed, 1]), knobs)
        cam = make_cameras(np.random.default_rng([seed, 2]), knobs)[camera - 1]
        for i, person in enumerate(people):
            rng = np.random.default_rng([seed, 12, i])
            out[r, i] = render(person, cam, view, rng, knobs, height, width)
    return out


def montage(grid: np.ndarray, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile a (rows, cols, H, W, 3) image grid into one uint8 picture with `pad` pixel gaps."""
    if grid.ndim != 5 or grid.shape[-1] != 3:
        raise ValueError(f"montage: expected (rows, cols, H, W, 3), got shape {grid.shape}")
    rows, cols, h, w, _ = grid.shape
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            sheet[y:y + h, x:x + w] = grid[r, c]
    return sheet


def save_contact_sheet(path: Union[str, os.PathLike], seed: int = 0, n_ids: int = 8,
                       knobs: Optional[SynthKnobs] = None, zoom: int = 2) -> Path:
    """Save `render_examples` as a PNG (identities in rows, cameras 1..6 in columns)."""
    from PIL import Image

    sheet = montage(render_examples(seed, n_ids, knobs))
    im = Image.fromarray(sheet)
    im = im.resize((im.width * zoom, im.height * zoom), Image.NEAREST)
    im.save(path)
    return Path(path)


def bag_change_pair(seed: int = 7, view: str = "back", knobs: Optional[SynthKnobs] = None,
                    height: int = 128, width: int = 64, max_ids: int = 200
                    ) -> tuple[np.ndarray, dict]:
    """One person who carries a bag, seen by a camera that shows it and by one that does not,
    both from the same `view`: the "camera change" case of jeong2020's Fig. 5b, chosen from the
    data (the first such identity of the set `seed`, the lowest-numbered camera of each kind).
    Both images are rendered without occluders, so the pair differs only by the camera's scene
    and light and by the bag.

    Returns uint8 (2, H, W, 3), bag visible first, and a dict with the identity's index, its
    bag and the two cameras (1-based). ValueError when none of the first `max_ids` identities
    qualifies (e.g. bag_visible_prob of 0 or 1)."""
    knobs = knobs or SynthKnobs()
    people = sample_identities(max_ids, np.random.default_rng([seed, 1]), knobs)
    cameras = make_cameras(np.random.default_rng([seed, 2]), knobs)
    clear = replace(knobs, occlusion_prob=0.0)
    for i, person in enumerate(people):
        shown = sorted(person.bag_cams)
        hidden = [c for c in range(1, NUM_CAMERAS + 1) if c not in person.bag_cams]
        if person.bag == "none" or not shown or not hidden:
            continue
        pair = np.stack([render(person, cameras[c - 1], view,
                                np.random.default_rng([seed, 13, i, c]), clear, height, width)
                         for c in (shown[0], hidden[0])])
        return pair, {"identity": i, "bag": person.bag, "visible_in": shown[0],
                      "hidden_in": hidden[0]}
    raise ValueError(f"bag_change_pair: none of the first {max_ids} identities of set {seed} "
                     f"carries a bag that one camera shows and another hides (bag_prob="
                     f"{knobs.bag_prob}, bag_visible_prob={knobs.bag_visible_prob})")
