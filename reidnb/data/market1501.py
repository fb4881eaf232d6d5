"""Market-1501 layout: one shared parser for Market-1501, DukeMTMC-reID and SynthReID folders.

Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015) and
DukeMTMC-reID (Zheng, Zheng & Yang, ICCV 2017, from Ristani et al.'s DukeMTMC, ECCVW 2016) share a
layout: three flat folders `bounding_box_train/`, `query/`, `bounding_box_test/` whose file names
start with `<pid>_c<camera>`. CUHK03-NP (`cuhk03.py`) and SynthReID (`synthetic.py`) reuse it.

Everything here only turns folders into `Sample` records; expected split statistics live in
`data_manifests/<name>.json` and are checked by `reidnb.data.manifests.verify`.

File-name policy (decided here, used by every loader):
* a split folder may only hold images whose names match the data set's pattern;
* operating-system metadata (`Thumbs.db`, `.DS_Store`, `desktop.ini`, AppleDouble `._*` files,
  `__MACOSX/` and `@eaDir/` folders) is skipped silently: it is clearly not an image;
* anything else (a stray `notes.txt`, a sub-folder, a `.jpg` named another way) raises
  `DatasetError` naming the file and the expected pattern, because it means the folder is not the
  data set we think it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .records import DatasetError, ReIDDataset, Sample

#: split name -> sub-folder, shared by every data set in the Market-1501 layout.
MARKET_SPLITS: Mapping[str, str] = {
    "train": "bounding_box_train",
    "query": "query",
    "gallery": "bounding_box_test",
}

#: entries that are never images and are skipped (compared case-insensitively).
IGNORED_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini", "__macosx", "@eadir"})

JUNK_PID = -1
DISTRACTOR_PID = 0


@dataclass(frozen=True)
class NamePattern:
    """How a data set names its files: a regex with groups `pid` and `cam`, and a real example."""

    regex: re.Pattern[str]
    example: str

    def parse(self, path: Path) -> tuple[int, int]:
        """Return `(pid, camera)` as written in the file name (camera 1-based), or raise."""
        m = self.regex.fullmatch(path.name)
        if m is None:
            raise DatasetError(
                f"{path}: file name {path.name!r} does not match the expected pattern; "
                f"expected names like {self.example!r} (regex {self.regex.pattern})"
            )
        return int(m.group("pid")), int(m.group("cam"))


#: `0002_c1s1_000451_03.jpg`: pid, camera, sequence, frame, box (Zheng et al. 2015, Sec. 3).
MARKET_PATTERN = NamePattern(
    re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)s\d+_\d+_\d+\.(?i:jpe?g|png)"),
    "0002_c1s1_000451_03.jpg",
)
#: `0001_c2_f0046182.jpg`: pid, camera, frame index of the DukeMTMC video.
DUKE_PATTERN = NamePattern(
    re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_f\d+\.(?i:jpe?g|png)"),
    "0001_c2_f0046182.jpg",
)


@dataclass(frozen=True)
class DatasetSpec:
    """Everything a loader needs to know about one data set on disk."""

    name: str
    title: str
    pattern: NamePattern
    cam_range: tuple[int, int]
    pid_range: tuple[int, int] | None
    #: folders a user's root may contain the data set under (tried after the root itself).
    folder_names: tuple[str, ...]
    splits: Mapping[str, str] = field(default_factory=lambda: dict(MARKET_SPLITS))


MARKET1501 = DatasetSpec(
    name="market1501",
    title="Market-1501",
    pattern=MARKET_PATTERN,
    cam_range=(1, 6),
    pid_range=(0, 1501),
    folder_names=("Market-1501-v15.09.15", "market1501", "Market-1501"),
)
DUKEMTMCREID = DatasetSpec(
    name="dukemtmcreid",
    title="DukeMTMC-reID",
    pattern=DUKE_PATTERN,
    cam_range=(1, 8),
    pid_range=None,
    folder_names=("DukeMTMC-reID", "dukemtmcreid", "dukemtmc-reid"),
)
#: SynthReID is written by `reidnb.data.synthetic` with Market-1501 names; its camera count is
#: read from the `synthreid.json` the generator leaves at the root (see `synthreid_spec`).
SYNTHREID = DatasetSpec(
    name="synthreid",
    title="SynthReID",
    pattern=MARKET_PATTERN,
    cam_range=(1, 99),
    pid_range=None,
    folder_names=("synthreid", "SynthReID"),
)


def layout_tree(spec: DatasetSpec) -> str:
    """Draw the folder tree a loader expects, for error messages."""
    top = spec.folder_names[0] if spec.folder_names else spec.name
    subs = list(spec.splits.items())
    width = max(len(sub) for _, sub in subs) + 1
    known = ", ".join(f"{n}/" for n in spec.folder_names)
    lines = [
        f"Expected {spec.title} layout (ROOT is this folder or a parent holding it as {known}):",
        f"  {top}/",
    ]
    for i, (split, sub) in enumerate(subs):
        branch = "└──" if i == len(subs) - 1 else "├──"
        lines.append(f"  {branch} {sub + '/':{width}s}  {split}")
    lines.append(f"  with image files named like {spec.pattern.example}")
    return "\n".join(lines)


def is_ignored(path: Path) -> bool:
    """True for OS metadata that sits beside images but is clearly not one (see module doc)."""
    name = path.name.lower()
    return name in IGNORED_NAMES or name.startswith("._")


def list_split_files(folder: Path) -> list[Path]:
    """Sorted entries of a split folder, OS metadata removed (images and anything unexpected)."""
    return sorted((p for p in folder.iterdir() if not is_ignored(p)), key=lambda p: p.name)


def check_ranges(
    path: Path, pid: int, cam: int, cam_range: tuple[int, int], pid_range: tuple[int, int] | None
) -> None:
    """Raise `DatasetError` naming the file when its camera or identity is out of range."""
    lo, hi = cam_range
    if not lo <= cam <= hi:
        raise DatasetError(f"{path}: camera c{cam} is outside the expected range c{lo}..c{hi}")
    if pid == JUNK_PID:
        return
    if pid_range is not None and not pid_range[0] <= pid <= pid_range[1]:
        raise DatasetError(
            f"{path}: identity {pid} is outside the expected range {pid_range[0]}..{pid_range[1]} "
            f"(or -1 for junk)"
        )


def relabel_pids(samples: Iterable[Sample]) -> tuple[list[Sample], dict[int, int]]:
    """Map the sorted original identities to 0..N-1; return relabelled samples and the map."""
    samples = list(samples)
    pid2label = {pid: i for i, pid in enumerate(sorted({s.pid for s in samples}))}
    return [s._replace(pid=pid2label[s.pid]) for s in samples], pid2label


def parse_dir(
    folder: str | Path,
    pattern: NamePattern,
    *,
    relabel: bool,
    cam_range: tuple[int, int],
    pid_range: tuple[int, int] | None = None,
    drop_junk: bool = True,
    layout_hint: str = "",
) -> list[Sample]:
    """Parse one split folder into `Sample`s sorted by path; camid 0-based.

    `relabel=True` (train only) maps the sorted original pids to 0..N-1. `drop_junk` removes
    pid -1 (Market-1501's "junk" boxes); distractors (pid 0) are kept. `layout_hint` is appended to
    errors about a missing or empty folder.
    """
    folder = Path(folder)
    hint = f"\n{layout_hint}" if layout_hint else ""
    if not folder.is_dir():
        raise DatasetError(f"split folder {folder} does not exist or is not a folder{hint}")
    entries = list_split_files(folder)
    if not entries:
        raise DatasetError(f"split folder {folder} holds no images{hint}")
    samples = []
    for path in entries:
        if path.is_dir():
            raise DatasetError(
                f"{path}: unexpected sub-folder in a split folder; expected only image files "
                f"named like {pattern.example!r}"
            )
        pid, cam = pattern.parse(path)
        check_ranges(path, pid, cam, cam_range, pid_range)
        if drop_junk and pid == JUNK_PID:
            continue
        samples.append(Sample(str(path), pid, cam - 1))
    if relabel:
        samples, _ = relabel_pids(samples)
    return samples


def resolve_root(spec: DatasetSpec, root: str | Path) -> Path:
    """Find the folder holding the split folders: `root` itself or `root/<a known name>`."""
    root = Path(root).expanduser()
    tree = layout_tree(spec)
    if not root.is_dir():
        raise DatasetError(
            f"{spec.title}: data root {root} does not exist or is not a folder\n{tree}"
        )
    candidates = [root] + [root / name for name in spec.folder_names]
    for cand in candidates:
        present = [sub for sub in spec.splits.values() if (cand / sub).is_dir()]
        if present:
            missing = [str(cand / sub) for sub in spec.splits.values() if sub not in present]
            if missing:
                raise DatasetError(
                    f"{spec.title}: {cand} is missing split folder(s): {', '.join(missing)}\n{tree}"
                )
            return cand
    hint = ""
    if root.name in spec.splits.values():
        hint = f" ({root} is itself a split folder; did you mean its parent {root.parent}?)"
    tried = ", ".join(str(c) for c in candidates)
    raise DatasetError(f"{spec.title}: no data set found under {root}{hint}; tried {tried}\n{tree}")


def load_layout(spec: DatasetSpec, root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """Load any data set in the Market-1501 layout described by `spec`."""
    folder = resolve_root(spec, root)
    tree = layout_tree(spec)
    splits = {
        split: parse_dir(
            folder / sub,
            spec.pattern,
            relabel=False,
            cam_range=spec.cam_range,
            pid_range=spec.pid_range,
            drop_junk=drop_junk,
            layout_hint=tree,
        )
        for split, sub in spec.splits.items()
    }
    train, pid2label = relabel_pids(splits["train"])
    return ReIDDataset(
        name=spec.name,
        root=folder,
        train=train,
        query=splits["query"],
        gallery=splits["gallery"],
        extra={"title": spec.title, "train_pid2label": pid2label},
    )


def load_market1501(root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """Market-1501 (Zheng et al., ICCV 2015): 6 cameras; gallery pid 0 = distractor, -1 = junk.

    Expected statistics (junk dropped) are in `data_manifests/market1501.json`.
    """
    return load_layout(MARKET1501, root, drop_junk=drop_junk)


def load_dukemtmcreid(root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """DukeMTMC-reID (Zheng et al., ICCV 2017): 8 cameras, Market-1501 layout, `_f<frame>` names.

    Expected statistics are in `data_manifests/dukemtmcreid.json`.
    """
    return load_layout(DUKEMTMCREID, root, drop_junk=drop_junk)


def synthreid_spec(root: str | Path) -> DatasetSpec:
    """SynthReID's spec, with its camera count read from `synthreid.json` when present.

    The JSON may give `cam_range: [lo, hi]` (a manifest from `make_manifest`) or a count as
    `num_cams`, `num_cameras` or `cams`; without either, cameras c1..c99 are accepted.
    """
    try:
        folder = resolve_root(SYNTHREID, root)
    except DatasetError:
        return SYNTHREID  # the loader reports the problem with its own message
    meta_path = folder / "synthreid.json"
    if not meta_path.is_file():
        return SYNTHREID
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{meta_path}: cannot read SynthReID metadata ({err})") from err
    if not isinstance(meta, dict):
        return SYNTHREID
    rng = meta.get("cam_range")  # as written by `manifests.make_manifest`
    if isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, int) for v in rng):
        return replace(SYNTHREID, cam_range=(rng[0], rng[1]))
    for key in ("num_cams", "num_cameras", "cams"):
        value = meta.get(key)
        if isinstance(value, int) and value > 0:
            return replace(SYNTHREID, cam_range=(1, value))
    return SYNTHREID


def load_synthreid(root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """SynthReID, the built-in synthetic set, written by `reidnb.data.synthetic` as Market-1501."""
    return load_layout(synthreid_spec(root), root, drop_junk=drop_junk)
