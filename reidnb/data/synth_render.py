"""Drawing one SynthReID image: knobs, identities, cameras and the renderer.

Everything here is about a single picture; `reidnb.data.synthetic` turns many of them into a data
set on disk. A picture is a little pedestrian built from trapezoids and ellipses (filled by PIL's
C rasteriser, which is several times faster than numpy masks at this size) on a crop of a per-camera
background panorama, then occluded, lit and colour-cast (one lookup table per image), noised and
maybe blurred. All per-image random draws happen up front in a fixed order that does not depend on
the identity or the knobs, so two identities rendered from equal generators differ only where their
attributes differ (the tests rely on this), and a changed knob changes only what it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

VIEWS = ("front", "back", "side")
UPPER_PATTERNS = ("plain", "stripes", "checks", "logo")
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder", "handbag")
HAIR_STYLES = ("short", "long", "bald")
SLEEVES = ("long", "short")
LOGO_SHAPES = ("square", "circle", "diamond")
OCCLUDERS = ("pole", "person", "car", "box")
NUM_CAMERAS = 6

# A deliberately small garment palette with uneven frequencies (dark and neutral clothes are
# common), so that many identities share their main colours and fine cues must decide.
GARMENT_PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (32, 32, 36),
    "white": (222, 222, 216),
    "grey": (124, 126, 130),
    "navy": (38, 52, 112),
    "blue": (60, 110, 190),
    "red": (178, 38, 44),
    "green": (48, 122, 64),
    "beige": (196, 172, 128),
}
GARMENT_WEIGHTS = (0.22, 0.14, 0.16, 0.14, 0.10, 0.08, 0.07, 0.09)
SKIN_TONES: dict[str, tuple[int, int, int]] = {
    "light": (236, 200, 172),
    "fair": (218, 174, 140),
    "medium": (190, 140, 104),
    "tan": (150, 102, 70),
    "dark": (98, 66, 46),
}
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (24, 20, 20),
    "brown": (82, 52, 30),
    "blond": (206, 170, 96),
    "grey": (150, 150, 150),
    "auburn": (140, 62, 34),
}
SHOE_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 22),
    "white": (236, 236, 236),
    "brown": (100, 64, 36),
    "red": (196, 30, 36),
    "blue": (40, 80, 200),
}
# Scene colours: walls and floors are near-neutral (pavement, concrete, painted walls), as in
# outdoor surveillance footage; scene objects also use the garment colours (signs, bins, bikes),
# so that clutter can look like clothing.
NEUTRAL_COLOURS = np.array(
    [
        (150, 150, 148), (170, 168, 164), (124, 124, 126), (138, 136, 132), (190, 190, 188),
        (112, 113, 112), (160, 158, 154), (204, 203, 200), (96, 96, 98), (136, 138, 140),
    ],
    dtype=np.float32,
)
SCENE_COLOURS = np.concatenate(
    [NEUTRAL_COLOURS, np.asarray(list(GARMENT_PALETTE.values()), dtype=np.float32)])


@dataclass(frozen=True)
class SynthKnobs:
    """Every nuisance of SynthReID as a named, sweepable setting (defaults give the benchmark).

    Probabilities are in [0, 1]; offsets and scales are fractions of the image size.
    """

    occlusion_prob: float = 0.25  # chance that an occluder (pole, person, car, box) is drawn
    misalign_offset: float = 0.08  # max detector-box shift, fraction of width (height: half)
    misalign_scale: float = 0.12  # max log-scale change of the person inside the box
    illumination_range: float = 0.20  # camera brightness in 1 +- r, per image 1 +- r/2
    contrast_range: float = 0.15  # camera contrast in 1 +- r
    color_cast_strength: float = 0.06  # per-camera channel gains in 1 +- s
    clutter_density: float = 0.75  # scene objects, x4 per image width
    bag_prob: float = 0.5  # chance that an identity carries a bag
    bag_visible_prob: float = 0.8  # chance that a carried bag is visible in a given camera
    view_probs: tuple[float, float, float] = (0.35, 0.35, 0.30)  # front, back, side
    view_consistency: float = 0.6  # chance an image keeps its (identity, camera) main view
    pose_jitter: float = 1.0  # amplitude of leg/arm swing (0 = standing still)
    noise_std: float = 4.0  # Gaussian pixel noise, in 0..255 units
    blur_prob: float = 0.2  # chance of a small box blur (motion / focus)
    pattern_probs: tuple[float, float, float, float] = (0.4, 0.2, 0.2, 0.2)  # plain..logo

    def __post_init__(self) -> None:
        for name in ("occlusion_prob", "bag_prob", "bag_visible_prob", "view_consistency",
                     "blur_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SynthKnobs.{name} must be in [0, 1], got {value!r}")
        for name in ("misalign_offset", "misalign_scale", "illumination_range", "contrast_range",
                     "color_cast_strength", "clutter_density", "pose_jitter", "noise_std"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"SynthKnobs.{name} must be >= 0, got {value!r}")
        if self.illumination_range >= 1 or self.contrast_range >= 1:
            raise ValueError("SynthKnobs.illumination_range and contrast_range must be < 1")
        for name, size in (("view_probs", 3), ("pattern_probs", 4)):
            probs = np.asarray(getattr(self, name), dtype=float)
            if probs.shape != (size,) or (probs < 0).any() or probs.sum() <= 0:
                raise ValueError(
                    f"SynthKnobs.{name} must be {size} non-negative weights with a positive sum,"
                    f" got {getattr(self, name)!r}"
                )

    @staticmethod
    def names() -> list[str]:
        """The knob names, in declaration order (what a notebook can sweep)."""
        return [f.name for f in fields(SynthKnobs)]


@dataclass(frozen=True)
class Identity:
    """The attributes that make one synthetic person (colours are palette names)."""

    pid: int
    skin: str
    hair_colour: str
    hair_style: str
    upper_colour: str
    upper_pattern: str
    pattern_colour: str
    logo_shape: str
    sleeves: str
    lower_colour: str
    lower_type: str
    shoes_colour: str
    bag: str
    bag_colour: str
    bag_side: int  # +1 / -1: the shoulder or hand that carries it, as seen from the front
    bag_cams: frozenset  # 1-based cameras in which the bag is visible
    height: float  # body height as a fraction of the image height (before misalignment)
    width: float  # build: body width multiplier
    shade: float  # small per-identity brightness of garments, so palette colours vary a bit


def _pick(rng: np.random.Generator, options, p=None):
    """One element of `options` (drawn with probabilities `p`)."""
    return options[int(rng.choice(len(options), p=p))]


def sample_identities(
    n: int, rng: np.random.Generator, knobs: Optional[SynthKnobs] = None, first_pid: int = 1
) -> list[Identity]:
    """Draw `n` random identities with pids `first_pid`, `first_pid + 1`, ...

    Each attribute is independent; garment colours come from the small weighted palette, so
    identities often share their main colours.
    """
    if n < 0:
        raise ValueError(f"sample_identities: n must be >= 0, got {n}")
    knobs = knobs or SynthKnobs()
    garments = list(GARMENT_PALETTE)
    gw = np.asarray(GARMENT_WEIGHTS) / np.sum(GARMENT_WEIGHTS)
    pp = np.asarray(knobs.pattern_probs, dtype=float)
    pp = pp / pp.sum()
    out = []
    for i in range(n):
        # every identity consumes the same random numbers whatever the knobs, so sweeping a
        # knob (say bag_prob) leaves the other attributes of each identity unchanged
        upper = _pick(rng, garments, gw)
        second = _pick(rng, [g for g in garments if g != upper])
        bag = _pick(rng, BAGS[1:]) if rng.random() < knobs.bag_prob else "none"
        if bag == "none":
            _pick(rng, BAGS[1:])
        visible = rng.random(NUM_CAMERAS) < knobs.bag_visible_prob
        out.append(
            Identity(
                pid=first_pid + i,
                skin=_pick(rng, list(SKIN_TONES)),
                hair_colour=_pick(rng, list(HAIR_COLOURS)),
                hair_style=_pick(rng, HAIR_STYLES, (0.5, 0.38, 0.12)),
                upper_colour=upper,
                upper_pattern=_pick(rng, UPPER_PATTERNS, pp),
                pattern_colour=second,
                logo_shape=_pick(rng, LOGO_SHAPES),
                sleeves=_pick(rng, SLEEVES, (0.6, 0.4)),
                lower_colour=_pick(rng, garments, gw),
                lower_type=_pick(rng, LOWER_TYPES, (0.6, 0.2, 0.2)),
                shoes_colour=_pick(rng, list(SHOE_COLOURS)),
                bag=bag,
                bag_colour=_pick(rng, garments),
                bag_side=1 if rng.random() < 0.5 else -1,
                bag_cams=frozenset(int(c) + 1 for c in np.flatnonzero(visible)) if bag != "none"
                else frozenset(),
                height=float(rng.uniform(0.84, 0.95)),
                width=float(rng.uniform(1.0, 1.4)),
                shade=float(rng.uniform(0.9, 1.1)),
            )
        )
    return out


@dataclass
class Camera:
    """One camera: a background panorama (its fixed scene) and its lighting and colour cast.

    Geometry is kept in fractions so the panorama can be drawn at any image size; drawn
    panoramas are cached per size.
    """

    index: int  # 1-based, as in Market-1501 names
    segments: np.ndarray  # (m, 8): x0, x1 (of panorama width), wall rgb, floor rgb
    horizon: float  # fraction of the height where the floor starts
    objects: np.ndarray  # (n, 8): y0, y1 (of H), x0, x1 (of panorama width), r, g, b, kind
    texture_seed: int
    brightness: float
    contrast: float
    gains: tuple[float, float, float]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def panorama(self, height: int, width: int) -> Image.Image:
        """The (3W wide, H high) RGB scene this camera sees; a detector box crops a W window."""
        key = (height, width)
        if key not in self._cache:
            pano = _draw_panorama(self, height, width)
            self._cache[key] = Image.fromarray(np.clip(pano, 0, 255).astype(np.uint8))
        return self._cache[key]

    @property
    def shadow(self) -> tuple[int, int, int]:
        """The colour of a person's shadow on this camera's floor."""
        return _scaled(self.segments[:, 5:8].mean(0), 0.72)


PANORAMA_WIDTHS = 6  # panorama width, in image widths
WALL_SEGMENTS = 10  # stretches of wall / floor along a panorama
WALL_COLOURS = 4  # wall colours per camera
FLOOR_COLOURS = 2  # floor colours per camera


def make_cameras(rng: np.random.Generator, knobs: Optional[SynthKnobs] = None) -> list[Camera]:
    """Six cameras, each with its own scene clutter, brightness, contrast and channel gains.

    Each camera draws from its own child generator, scalars first and scene objects last, so a
    knob sweep scales the same draws (more clutter adds objects, keeps the earlier ones).
    """
    knobs = knobs or SynthKnobs()
    cams = []
    n_scene = len(NEUTRAL_COLOURS)
    s, r, c = knobs.color_cast_strength, knobs.illumination_range, knobs.contrast_range
    for index, crng in enumerate(rng.spawn(NUM_CAMERAS), start=1):
        horizon = float(crng.uniform(0.55, 0.8))
        texture_seed = int(crng.integers(0, 2**31 - 1))
        light = crng.uniform(-1, 1, 5)  # brightness, contrast, three channel gains
        # the scene is a row of near-grey wall/floor stretches: a camera reuses a few colours
        # of its own, so its boxes resemble each other without all sharing one backdrop
        m = WALL_SEGMENTS
        walls = crng.choice(n_scene, WALL_COLOURS, replace=False)
        floors = crng.choice(n_scene, FLOOR_COLOURS, replace=False)
        edges = np.concatenate([[0.0], np.sort(crng.uniform(0, 1, m - 1)), [1.0]])
        segs = np.zeros((m, 8), dtype=np.float32)
        segs[:, 0], segs[:, 1] = edges[:-1], edges[1:]
        segs[:, 2:5] = NEUTRAL_COLOURS[walls[crng.integers(0, WALL_COLOURS, m)]]
        segs[:, 2:5] += crng.uniform(-6, 6, (m, 1))
        segs[:, 5:8] = NEUTRAL_COLOURS[floors[crng.integers(0, FLOOR_COLOURS, m)]] * 0.8
        segs[:, 5:8] += crng.uniform(-6, 6, (m, 1))
        segs[:, 2:] = np.clip(segs[:, 2:], 0, 255)
        n_obj = int(round(knobs.clutter_density * 4 * PANORAMA_WIDTHS))
        objs = np.zeros((n_obj, 8), dtype=np.float32)
        for k in range(n_obj):
            h = crng.uniform(0.08, 0.5)
            grounded = crng.random() < 0.4
            y_top = crng.uniform(h, horizon)
            y1 = horizon + crng.uniform(0, 0.15) if grounded else y_top
            x0 = crng.uniform(-0.05, 1.0)
            w = crng.uniform(0.1, 0.6) / PANORAMA_WIDTHS  # 0.1..0.6 image widths
            objs[k, :4] = (y1 - h, y1, x0, x0 + w)
            objs[k, 4:7] = SCENE_COLOURS[crng.integers(0, len(SCENE_COLOURS))]
            objs[k, 7] = crng.integers(0, 3)  # 0 plain, 1 horizontal slats, 2 vertical slats
        cams.append(
            Camera(
                index=index,
                segments=segs,
                horizon=horizon,
                objects=objs,
                texture_seed=texture_seed,
                brightness=float(1 + r * light[0]),
                contrast=float(1 + c * light[1]),
                gains=tuple(float(v) for v in 1 + s * light[2:]),
            )
        )
    return cams


def _draw_panorama(cam: Camera, height: int, width: int) -> np.ndarray:
    """The camera's scene as float32 (H, PW, 3): walls, floors, objects, smooth texture."""
    pw = width * PANORAMA_WIDTHS
    img = np.empty((height, pw, 3), dtype=np.float32)
    hz = int(round(cam.horizon * height))
    ramp = np.linspace(0.85, 1.1, max(height - hz, 1), dtype=np.float32)[:, None, None]
    for x0, x1, *rgb in cam.segments:
        c0, c1 = int(round(x0 * pw)), int(round(x1 * pw))
        img[:hz, c0:c1] = rgb[:3]
        img[hz:, c0:c1] = np.asarray(rgb[3:], dtype=np.float32) * ramp[: height - hz]
    for y0, y1, x0, x1, r, g, b, kind in cam.objects:
        r0, r1 = max(int(y0 * height), 0), min(int(np.ceil(y1 * height)), height)
        c0, c1 = max(int(x0 * pw), 0), min(int(np.ceil(x1 * pw)), pw)
        if r1 <= r0 or c1 <= c0:
            continue
        img[r0:r1, c0:c1] = (r, g, b)
        step = max(height // 40, 2)
        if kind == 1:
            img[r0:r1:step, c0:c1] *= 0.7
        elif kind == 2:
            img[r0:r1, c0:c1:step] *= 0.7
    trng = np.random.default_rng(cam.texture_seed)
    coarse = trng.normal(0, 1, (max(height // 8, 2), max(pw // 8, 2))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((pw, height), Image.BILINEAR))
    img += 9.0 * smooth[:, :, None]
    return img


# ----------------------------------------------------------------------------------------------
# drawing primitives on a PIL canvas. Coordinates are continuous with pixel i covering [i, i+1);
# PIL puts pixel centres on integers, hence the -0.5 shifts.


def _rgb(c) -> tuple[int, int, int]:
    return (int(c[0]), int(c[1]), int(c[2]))


def _bar(dr: ImageDraw.ImageDraw, y0, y1, x0, x1, hw0, hw1, color) -> None:
    """Fill a trapezoid whose centre line runs (y0, x0) -> (y1, x1), half-width hw0 -> hw1."""
    y0, y1, x0, x1 = y0 - 0.5, y1 - 0.5, x0 - 0.5, x1 - 0.5
    dr.polygon([(x0 - hw0, y0), (x0 + hw0, y0), (x1 + hw1, y1), (x1 - hw1, y1)], fill=color)


def _limb(dr, p0, p1, hw0, hw1, color, t0=0.0, t1=1.0) -> None:
    """Fill the part t0..t1 of the segment p0 -> p1 ((y, x) points) as a tapered bar."""
    (ya, xa), (yb, xb) = p0, p1
    _bar(dr, ya + t0 * (yb - ya), ya + t1 * (yb - ya), xa + t0 * (xb - xa), xa + t1 * (xb - xa),
         hw0 + t0 * (hw1 - hw0), hw0 + t1 * (hw1 - hw0), color)


def _ellipse(dr, cy, cx, ry, rx, color, y_hi=None) -> None:
    """Fill an ellipse; with `y_hi`, only the cap above the horizontal line y = y_hi."""
    box = [cx - rx - 0.5, cy - ry - 0.5, cx + rx - 0.5, cy + ry - 0.5]
    if y_hi is None:
        dr.ellipse(box, fill=color)
        return
    s = (y_hi - cy) / ry
    if s <= -1:
        return
    if s >= 1:
        dr.ellipse(box, fill=color)
        return
    a = math.degrees(math.asin(s))  # PIL angles run clockwise from 3 o'clock
    dr.chord(box, 180 - a, 360 + a, fill=color)


def _pattern(dr, y0, y1, cx, hw0, hw1, kind, color, period) -> None:
    """Stripes or checks in `color` over the trapezoid torso (y0..y1, half-width hw0 -> hw1)."""
    n = int(math.ceil((y1 - y0) / period))
    for i in range(n):
        ya, yb = y0 + i * period, min(y0 + (i + 1) * period, y1)
        ha = hw0 + (ya - y0) / (y1 - y0) * (hw1 - hw0)
        hb = hw0 + (yb - y0) / (y1 - y0) * (hw1 - hw0)
        if kind == "stripes":
            if i % 2 == 1:
                _bar(dr, ya, yb, cx, cx, ha, hb, color)
            continue
        k0 = int(math.floor(-max(ha, hb) / period))
        for k in range(k0, -k0 + 1):
            if (i + k) % 2 == 0:
                continue
            xa, xb = cx + k * period, cx + (k + 1) * period
            la, lb = max(xa, cx - ha), max(xa, cx - hb)
            ra, rb = min(xb, cx + ha), min(xb, cx + hb)
            if ra - la <= 0.3 and rb - lb <= 0.3:
                continue
            dr.polygon([(la - .5, ya - .5), (ra - .5, ya - .5), (rb - .5, yb - .5),
                        (lb - .5, yb - .5)], fill=color)


# ----------------------------------------------------------------------------------------------
# the per-image draws


@dataclass(frozen=True)
class ImageDraws:
    """The nuisances of one image, drawn before anything is painted."""

    facing: int  # side views: +1 faces right, -1 left
    phase: float  # walking phase in [-pose_jitter, pose_jitter]
    dx: float  # box misalignment, fractions of width / height
    dy: float
    scale: float  # person scale inside the box
    bg_offset: float  # where in the camera panorama the box lies, in [0, 1)
    brightness: float  # per-image brightness factor
    occluded: bool
    occluder: str
    occ: tuple  # 6 uniforms that place and colour the occluder
    blur: bool
    noise_offset: tuple  # 2 uniforms that pick a window of the noise bank


N_UNIFORMS = 18


def draw_image_params(rng: np.random.Generator, knobs: SynthKnobs) -> ImageDraws:
    """Draw one image's nuisances; always consumes the same random numbers whatever the knobs."""
    u = rng.random(N_UNIFORMS).tolist()
    r = knobs.illumination_range
    return ImageDraws(
        facing=1 if u[0] < 0.5 else -1,
        phase=(2 * u[1] - 1) * knobs.pose_jitter,
        dx=(2 * u[2] - 1) * knobs.misalign_offset,
        dy=(2 * u[3] - 1) * knobs.misalign_offset * 0.5,
        scale=math.exp((2 * u[4] - 1) * knobs.misalign_scale),
        bg_offset=u[5],
        brightness=1 + (2 * u[6] - 1) * r / 2,
        occluded=u[7] < knobs.occlusion_prob,
        occluder=OCCLUDERS[min(int(u[8] * len(OCCLUDERS)), len(OCCLUDERS) - 1)],
        occ=tuple(u[9:15]),
        blur=u[15] < knobs.blur_prob,
        noise_offset=(u[16], u[17]),
    )


def _scaled(rgb, factor: float) -> tuple[int, int, int]:
    """An RGB triple times `factor`, clipped to 0..255 (plain Python: faster than numpy here)."""
    return tuple(min(255, max(0, int(v * factor))) for v in rgb)


def _garment(name: str, shade: float) -> tuple[int, int, int]:
    return _scaled(GARMENT_PALETTE[name], shade)


# ----------------------------------------------------------------------------------------------
# the person


def _draw_person(im: Image.Image, shadow: tuple, ident: Identity, cam_index: int, view: str,
                 d: ImageDraws) -> None:
    W, H = im.size
    u = H * ident.height * d.scale  # body height in pixels: every length below is a fraction
    top = (H - u) / 2 + d.dy * H
    cx = W / 2 + d.dx * W
    wf = ident.width
    side = view == "side"
    f = d.facing if side else 1  # the direction a side view faces
    ph = d.phase

    def Y(v: float) -> float:
        return top + v * u

    dr = ImageDraw.Draw(im)
    _ellipse(dr, Y(0.99), cx, 0.025 * u, 0.17 * u * wf, shadow)  # on the floor
    skin = SKIN_TONES[ident.skin]
    skin_dark = _scaled(skin, 0.35)
    hair = HAIR_COLOURS[ident.hair_colour]
    upper = _garment(ident.upper_colour, ident.shade)
    second = _garment(ident.pattern_colour, ident.shade)
    lower = _garment(ident.lower_colour, ident.shade)
    shoes = SHOE_COLOURS[ident.shoes_colour]
    bagc = _garment(ident.bag_colour, 0.92)
    bag_dark = _garment(ident.bag_colour, 0.65)
    bag = ident.bag if cam_index in ident.bag_cams else "none"
    # a bag on the person's side s shows on image side s from the front, mirrored from the back
    bs = -ident.bag_side if view == "back" else ident.bag_side

    # --- legs, shoes and lower garment
    hip_y, ank_y = Y(0.50), Y(0.945)
    if side:
        hips = [(hip_y, cx), (hip_y, cx)]
        feet = [(ank_y, cx + f * ph * 0.13 * u),
                (ank_y - abs(ph) * 0.01 * u, cx - f * ph * 0.13 * u)]
        lhw0, lhw1 = 0.045 * u * wf, 0.033 * u * wf
    else:
        spread = 0.05 * u * wf
        hips = [(hip_y, cx - spread), (hip_y, cx + spread)]
        feet = [
            (ank_y - max(ph, 0) * 0.02 * u, cx - spread * 1.1 + ph * 0.01 * u),
            (ank_y - max(-ph, 0) * 0.02 * u, cx + spread * 1.1 + ph * 0.01 * u),
        ]
        lhw0, lhw1 = 0.043 * u * wf, 0.032 * u * wf
    leg_colour = lower if ident.lower_type == "trousers" else skin
    for p0, p1 in zip(hips, feet):
        _limb(dr, p0, p1, lhw0, lhw1, leg_colour)
        if ident.lower_type == "shorts":
            _limb(dr, p0, p1, lhw0 * 1.15, lhw1 * 1.15, lower, 0.0, 0.38)
        _ellipse(dr, p1[0] + 0.018 * u, p1[1] + f * (0.018 * u if side else 0), 0.022 * u,
                 (0.045 if side else 0.034) * u, shoes)
    hw_hip = (0.07 if side else 0.105) * u * wf
    if ident.lower_type == "skirt":
        _bar(dr, Y(0.48), Y(0.72), cx, cx, hw_hip * 0.95, hw_hip * 1.45, lower)
    else:
        _bar(dr, Y(0.48), Y(0.575), cx, cx, hw_hip, hw_hip * 0.9, lower)

    # --- arms and torso
    hw_sh = (0.075 if side else 0.125) * u * wf
    hw_wa = (0.068 if side else 0.105) * u * wf
    arm_hw0, arm_hw1 = 0.030 * u * wf, 0.024 * u * wf
    sleeve_t = 0.88 if ident.sleeves == "long" else 0.35
    if side:
        sh = (Y(0.18), cx)
        arms_far = [(sh, (Y(0.49), cx - f * ph * 0.11 * u))]
        arms_near = [(sh, (Y(0.49), cx + f * ph * 0.11 * u))]
    else:
        swing = ph * 0.012 * u
        arms_far = [
            ((Y(0.18), cx - hw_sh + 0.015 * u), (Y(0.49), cx - hw_sh - 0.02 * u + swing)),
            ((Y(0.18), cx + hw_sh - 0.015 * u), (Y(0.49), cx + hw_sh + 0.02 * u - swing)),
        ]
        arms_near = []

    def arm(p0, p1):
        _limb(dr, p0, p1, arm_hw0, arm_hw1, skin)
        _limb(dr, p0, p1, arm_hw0 * 1.1, arm_hw1 * 1.1, upper, 0.0, sleeve_t)
        _ellipse(dr, p1[0] + 0.01 * u, p1[1], 0.024 * u, 0.022 * u, skin)

    if side and bag == "backpack":  # seen from the side, the pack sticks out behind the back
        bx = cx - f * (hw_sh + 0.035 * u)
        _bar(dr, Y(0.19), Y(0.45), bx, bx, 0.055 * u, 0.06 * u, bagc)
    for p0, p1 in arms_far:
        arm(p0, p1)
    _bar(dr, Y(0.13), Y(0.18), cx, cx, 0.024 * u, 0.026 * u, skin)  # neck
    _bar(dr, Y(0.16), Y(0.52), cx, cx, hw_sh, hw_wa, upper)
    if ident.upper_pattern in ("stripes", "checks"):
        period = (0.042 if ident.upper_pattern == "stripes" else 0.055) * u
        _pattern(dr, Y(0.16), Y(0.52), cx, hw_sh, hw_wa, ident.upper_pattern, second, period)
    if ident.upper_pattern == "logo" and view == "front":
        lc, ls = Y(0.28), 0.048 * u
        if ident.logo_shape == "square":
            _bar(dr, lc - ls, lc + ls, cx, cx, ls, ls, second)
        elif ident.logo_shape == "circle":
            _ellipse(dr, lc, cx, ls * 1.1, ls * 1.1, second)
        else:
            dr.polygon([(cx - .5, lc - 1.35 * ls - .5), (cx + 1.35 * ls - .5, lc - .5),
                        (cx - .5, lc + 1.35 * ls - .5), (cx - 1.35 * ls - .5, lc - .5)],
                       fill=second)

    # --- bags over the torso
    if bag == "backpack":
        if view == "back":
            _bar(dr, Y(0.19), Y(0.46), cx, cx, 0.095 * u * wf, 0.10 * u * wf, bagc)
            _bar(dr, Y(0.34), Y(0.44), cx, cx, 0.06 * u * wf, 0.06 * u * wf, bag_dark)
        elif view == "front":  # only the two straps show
            for s in (-1, 1):
                x = cx + s * 0.075 * u * wf
                _bar(dr, Y(0.165), Y(0.42), x, x, 0.011 * u, 0.011 * u, bagc)
        else:
            x = cx + f * 0.01 * u
            _bar(dr, Y(0.17), Y(0.40), x, x, 0.014 * u, 0.014 * u, bagc)
    elif bag == "shoulder":
        if side:
            _bar(dr, Y(0.17), Y(0.45), cx - f * 0.05 * u, cx + f * 0.04 * u, 0.013 * u,
                 0.013 * u, bagc)
            _bar(dr, Y(0.44), Y(0.57), cx, cx, 0.06 * u, 0.06 * u, bagc)
        else:
            _bar(dr, Y(0.165), Y(0.47), cx - bs * 0.09 * u * wf, cx + bs * 0.11 * u * wf,
                 0.013 * u, 0.013 * u, bagc)
            bx = cx + bs * 0.135 * u * wf
            _bar(dr, Y(0.44), Y(0.57), bx, bx, 0.058 * u, 0.058 * u, bagc)
    for p0, p1 in arms_near:
        arm(p0, p1)
    if bag == "handbag":
        if side:
            hy, hx = arms_near[0][1]
        else:
            hy, hx = (arms_far[0] if bs < 0 else arms_far[1])[1]
        _bar(dr, hy + 0.02 * u, hy + 0.12 * u, hx, hx, 0.045 * u, 0.05 * u, bagc)

    # --- head and hair
    hcx = cx + f * 0.008 * u if side else cx
    hcy, hry, hrx = Y(0.075), 0.068 * u, (0.058 if side else 0.052) * u
    _ellipse(dr, hcy, hcx, hry, hrx, skin)
    if ident.hair_style == "long":
        if view == "front":
            for s in (-1, 1):
                x = hcx + s * 0.045 * u
                _bar(dr, hcy - 0.02 * u, Y(0.22), x, x, 0.016 * u, 0.02 * u, hair)
        elif view == "back":
            _bar(dr, hcy - 0.01 * u, Y(0.24), hcx, hcx, 0.056 * u, 0.06 * u, hair)
        else:
            x = hcx - f * 0.03 * u
            _bar(dr, hcy - 0.02 * u, Y(0.23), x, x, 0.03 * u, 0.032 * u, hair)
    if ident.hair_style != "bald":
        y_hi = {"front": hcy - 0.015 * u, "back": hcy + 0.05 * u, "side": hcy}[view]
        hx = hcx - f * 0.01 * u if side else hcx
        _ellipse(dr, hcy - 0.012 * u, hx, hry * 0.95, hrx * 1.08, hair, y_hi=y_hi)
        if side:
            _ellipse(dr, hcy, hcx - f * 0.03 * u, hry * 0.8, hrx * 0.55, hair,
                     y_hi=hcy + 0.04 * u)
    if view == "front":  # eyes
        for s in (-1, 1):
            _ellipse(dr, hcy + 0.002 * u, hcx + s * 0.02 * u, 0.008 * u, 0.008 * u, skin_dark)


SCENE_RGB = [_rgb(c) for c in SCENE_COLOURS]
CAR_COLOURS = ((176, 178, 182), (30, 30, 34), (150, 24, 30), (34, 60, 130), (230, 230, 226),
               (90, 92, 96))


def _draw_occluder(im: Image.Image, d: ImageDraws) -> None:
    """Something between the camera and the person: a pole, a passer-by, a car or a box."""
    W, H = im.size
    dr = ImageDraw.Draw(im)
    a, b, c, e, g, _ = d.occ
    colour = SCENE_RGB[int(g * len(SCENE_RGB)) % len(SCENE_RGB)]
    if d.occluder == "pole":
        x, hw = W * (0.25 + 0.5 * a), W * (0.05 + 0.05 * b)
        _bar(dr, 0, H, x, x, hw, hw, colour)
        _bar(dr, 0, H, x - hw * 0.4, x - hw * 0.4, hw * 0.25, hw * 0.25, _scaled(colour, 1.25))
    elif d.occluder == "person":
        s = 1 if a < 0.5 else -1
        x = W / 2 + s * W * (0.38 + 0.2 * b)
        coat = list(GARMENT_PALETTE.values())[int(c * 8) % 8]
        _bar(dr, H * 0.60, H * 1.02, x, x, W * 0.20, W * 0.18, colour)
        _bar(dr, H * 0.18, H * 0.62, x, x, W * 0.30, W * 0.27, coat)
        _ellipse(dr, H * 0.1, x, H * 0.085, W * 0.14, list(SKIN_TONES.values())[int(e * 5) % 5])
    elif d.occluder == "car":
        y = H * (0.5 + 0.25 * a)
        body = CAR_COLOURS[int(c * len(CAR_COLOURS)) % len(CAR_COLOURS)]
        _bar(dr, y, H + 1, W / 2, W / 2, W * 0.8, W * 0.8, body)
        _bar(dr, y, y + H * 0.07, W / 2, W / 2, W * 0.8, W * 0.8, (40, 48, 56))  # window
        _ellipse(dr, H * 0.99, W * (0.2 + 0.6 * b), H * 0.09, W * 0.16, (18, 18, 18))
    else:  # a box or bin standing on the floor
        s = 1 if a < 0.5 else -1
        hw = W * (0.2 + 0.15 * b)
        x = W / 2 + s * (W * 0.5 - hw * (0.2 + 0.6 * c))
        y = H * (0.55 + 0.15 * e)
        _bar(dr, y, H + 1, x, x, hw, hw, colour)
        _bar(dr, y, y + H * 0.03, x, x, hw, hw, _scaled(colour, 0.7))


_NOISE_BANKS: dict = {}


def _noise_bank(height: int, width: int, std: float) -> Image.Image:
    """A fixed (2H, 2W) RGB image of 128 + N(0, std) noise; windows of it noise each picture."""
    key = (height, width, round(std, 6))
    if key not in _NOISE_BANKS:
        z = np.random.default_rng(20_200_626).standard_normal((2 * height, 2 * width, 3))
        _NOISE_BANKS[key] = Image.fromarray(np.clip(128 + std * z, 0, 255).astype(np.uint8))
    return _NOISE_BANKS[key]


def render_pil(identity: Optional[Identity], camera: Camera, view: str,
               rng: np.random.Generator, knobs: Optional[SynthKnobs] = None, height: int = 128,
               width: int = 64, draws: Optional[ImageDraws] = None) -> Image.Image:
    """`render`, returning the PIL image (what the writer encodes, without a numpy round trip).
    `draws`: this image's nuisances as drawn elsewhere (`draw_image_params`, perhaps changed,
    e.g. a box moved), instead of drawing them from `rng`."""
    if view not in VIEWS:
        raise ValueError(f"render: view must be one of {VIEWS}, got {view!r}")
    if height < 16 or width < 8:
        raise ValueError(f"render: image size {height}x{width} is too small (min 16x8)")
    knobs = knobs or SynthKnobs()
    d = draw_image_params(rng, knobs) if draws is None else draws
    pano = camera.panorama(height, width)
    off = int(d.bg_offset * (pano.size[0] - width))
    im = pano.crop((off, 0, off + width, height))
    if identity is not None:
        _draw_person(im, camera.shadow, identity, camera.index, view, d)
    if d.occluded:
        _draw_occluder(im, d)
    # lighting and colour cast: one affine map per channel (PIL's colour-matrix conversion)
    k = camera.contrast
    g = [gc * camera.brightness * d.brightness for gc in camera.gains]
    im = im.convert("RGB", (g[0] * k, 0.0, 0.0, g[0] * 128 * (1 - k),
                            0.0, g[1] * k, 0.0, g[1] * 128 * (1 - k),
                            0.0, 0.0, g[2] * k, g[2] * 128 * (1 - k)))
    if knobs.noise_std > 0:
        bank = _noise_bank(height, width, knobs.noise_std)
        ox, oy = int(d.noise_offset[0] * width), int(d.noise_offset[1] * height)
        im = ImageChops.add(im, bank.crop((ox, oy, ox + width, oy + height)), 1.0, -128)
    if d.blur:
        im = im.filter(ImageFilter.BoxBlur(0.6))
    return im


def render(
    identity: Optional[Identity],
    camera: Camera,
    view: str,
    rng: np.random.Generator,
    knobs: Optional[SynthKnobs] = None,
    height: int = 128,
    width: int = 64,
) -> np.ndarray:
    """Render one detector box as an (height, width, 3) uint8 RGB array.

    Pure given `rng`'s state: the same identity, camera, view, knobs and generator state give
    the same pixels. `identity=None` gives a box with no person in it (a false detection).
    """
    return np.array(render_pil(identity, camera, view, rng, knobs, height, width))
