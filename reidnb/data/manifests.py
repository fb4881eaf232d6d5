"""Check a data set folder against `data_manifests/<name>.json`, and write such manifests.

A manifest records, per split, what a correct copy holds:

* `images`, `ids`, `cams`: counts of the records a loader returns (junk pid -1 dropped, the
  distractor pid 0 kept and counted as one identity) - the numbers `ReIDDataset.stats()` gives;
* `files`: every image file in the split folder, junk included (OS metadata such as `Thumbs.db`
  is not counted);
* `sha256_sorted_filelist`: see `filelist_hash`; `null` when nobody has computed it yet.

`verify` never stops at the first problem: it collects every difference into a `VerifyReport`
(wrong root, missing split, unparsable names, out-of-range cameras, unreadable images, counts,
hash) so a user sees them all at once; `VerifyReport.raise_for_problems()` turns a failed report
into a `DatasetError`.

Where manifests are found (`manifest_dir`): `<repo>/data_manifests/`, i.e. the parent of the
`reidnb` package folder, as in a source checkout or an editable install; else
`reidnb/data_manifests/` inside the installed package, for wheels that ship them as package data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .cuhk03 import CUHK03_DETECTED, CUHK03_LABELED
from .market1501 import (
    DUKEMTMCREID,
    JUNK_PID,
    MARKET1501,
    SYNTHREID,
    DatasetSpec,
    check_ranges,
    layout_tree,
    list_split_files,
    load_layout,
    resolve_root,
    synthreid_spec,
)
from .records import DatasetError

SPLITS = ("train", "query", "gallery")
COUNT_KEYS = ("images", "ids", "cams", "files")
HASH_KEY = "sha256_sorted_filelist"
HASH_RECIPE = (
    "sha256 (hex) of the UTF-8 bytes of '\\n'.join(sorted(paths)), where paths are the split's "
    "image files relative to the data set folder with '/' separators, e.g. "
    "'bounding_box_train/0002_c1s1_000451_03.jpg'; OS metadata (Thumbs.db, .DS_Store) is left "
    "out. Compute it with reidnb.data.filelist_hash(root, split)."
)
#: how many file names a report lists per kind of problem and split before summarising.
MAX_LISTED = 10

_SPECS: dict[str, DatasetSpec] = {
    s.name: s for s in (MARKET1501, DUKEMTMCREID, CUHK03_LABELED, CUHK03_DETECTED, SYNTHREID)
}


def manifest_dir() -> Path:
    """The folder holding `<name>.json` manifests (see the module docstring for the search)."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "data_manifests", package / "data_manifests"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no data_manifests/ folder found next to the reidnb package ({package.parent}) "
        f"or inside it ({package})"
    )


def get_spec(name: str, root: str | Path | None = None) -> DatasetSpec:
    """The on-disk description of a built-in data set (SynthReID's depends on its root)."""
    if name not in _SPECS:
        close = difflib.get_close_matches(name, list(_SPECS), n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"no layout known for {name!r}; known: {', '.join(sorted(_SPECS))}{hint}")
    if name == SYNTHREID.name and root is not None:
        return synthreid_spec(root)
    return _SPECS[name]


def check_manifest(manifest: dict[str, Any], where: str = "manifest") -> dict[str, Any]:
    """Return `manifest` if it has `splits` -> train/query/gallery with int-or-null counts."""
    splits = manifest.get("splits") if isinstance(manifest, dict) else None
    if not isinstance(splits, dict) or any(s not in splits for s in SPLITS):
        raise ValueError(f"{where}: expected a 'splits' object with keys {', '.join(SPLITS)}")
    for split in SPLITS:
        if not isinstance(splits[split], dict):
            raise ValueError(f"{where}: splits.{split} must be an object")
        for key in COUNT_KEYS:
            value = splits[split].get(key)
            if value is not None and not isinstance(value, int):
                raise ValueError(f"{where}: splits.{split}.{key} must be an integer or null")
    return manifest


def load_manifest(name: str) -> dict[str, Any]:
    """Read `data_manifests/<name>.json`; an unknown name lists the manifests that exist."""
    folder = manifest_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json"))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        extra = ""
        if name == SYNTHREID.name:
            extra = " (SynthReID is generated: verify it against the manifest written with it)"
        raise ValueError(f"no manifest {path}; available: {', '.join(known)}{hint}{extra}")
    return check_manifest(json.loads(path.read_text(encoding="utf-8")), str(path))


def save_manifest(manifest: dict[str, Any], path: str | Path) -> Path:
    """Write a manifest as indented JSON and return its path."""
    path = Path(path)
    check_manifest(manifest, str(path))
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def split_files(folder: Path) -> list[Path]:
    """Files of a split folder that count as images (OS metadata and sub-folders left out)."""
    return [p for p in list_split_files(folder) if p.is_file()]


def _hash_paths(rel_paths: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(rel_paths)).encode("utf-8")).hexdigest()


def filelist_hash(root: str | Path, split: str, *, name: str | None = None) -> str:
    """sha256 of the sorted relative file list of one split (recipe in `HASH_RECIPE`).

    `root` is the folder holding `bounding_box_train/` etc.; pass `name` to let it be a parent
    folder, resolved as the loaders do. `split` is `train`, `query` or `gallery`.
    """
    spec = get_spec(name, root) if name else MARKET1501
    folder = resolve_root(spec, root) if name else Path(root)
    if split not in spec.splits:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(spec.splits)}")
    sub = folder / spec.splits[split]
    if not sub.is_dir():
        raise DatasetError(f"split folder {sub} does not exist\n{layout_tree(spec)}")
    return _hash_paths([f"{spec.splits[split]}/{p.name}" for p in split_files(sub)])


#: the image format each file extension promises (what the data sets ship)
EXPECTED_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def image_problem(path: Path) -> str | None:
    """None if PIL can verify and fully decode `path` and its content is the format its
    extension promises (JPEG for `.jpg`), else a message naming the file."""
    try:
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:  # verify() leaves the file unusable; decode a fresh one
            im.load()
            found = im.format
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError...)
        return f"{path}: unreadable image ({type(err).__name__}: {err})"
    expected = EXPECTED_FORMAT.get(Path(path).suffix.lower())
    if expected and found != expected:
        return (f"{path}: {found} data in a {Path(path).suffix} file (expected {expected}): "
                f"converted or renamed, not the data set's original; copy the original file")
    return None


@dataclass
class SplitCheck:
    """Expected vs found numbers for one split (keys: images, ids, cams, files, sha256)."""

    split: str
    folder: str
    expected: dict[str, int | str | None]
    found: dict[str, int | str | None]
    images_checked: int = 0
    images_total: int = 0
    images_unreadable: int = 0


@dataclass
class VerifyReport:
    """Outcome of `verify`: per-split numbers, every difference found, and `ok`.

    `differences` lists the images that cannot be read (or are not the format their name says)
    first, then names, layout and counts; `image_problems` holds the former alone, and the
    printed report shows them in their own section before the table.
    """

    name: str
    root: str
    manifest_source: str
    splits: list[SplitCheck] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    image_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def raise_for_problems(self) -> None:
        """Raise `DatasetError` with the full report when any difference was found."""
        if not self.ok:
            raise DatasetError(str(self))

    def __str__(self) -> str:
        lines = [f"verify {self.name}: {self.root}", f"manifest: {self.manifest_source}"]
        if self.image_problems:
            lines.append(f"IMAGES THAT CANNOT BE USED ({self.images_unreadable()}; each listed "
                         "file must be replaced by the original):")
            lines.extend(f"  - {d}" for d in self.image_problems)
        if self.splits:
            lines.append(f"{'split':8s} {'check':9s} {'expected':>16s} {'found':>16s}  status")
            for sc in self.splits:
                for key in (*COUNT_KEYS, "sha256"):
                    exp, got = sc.expected.get(key), sc.found.get(key)
                    status = "-" if exp is None else ("ok" if exp == got else "DIFFERS")
                    lines.append(
                        f"{sc.split:8s} {key:9s} {_cell(exp):>16s} {_cell(got):>16s}  {status}"
                    )
                if sc.images_checked == 0:
                    status = "not checked"
                else:
                    status = f"{sc.images_unreadable} unreadable" if sc.images_unreadable else "ok"
                lines.append(
                    f"{sc.split:8s} {'decoded':9s} {'':>16s} "
                    f"{f'{sc.images_checked}/{sc.images_total}':>16s}  {status}"
                )
        if self.ok:
            lines.append("OK: every check passed")
        else:
            lines.append(f"FAILED: {len(self.differences)} difference(s)")
            if self.image_problems:
                lines.append(f"  - the {len(self.image_problems)} image problem line(s) above")
            lines.extend(f"  - {d}" for d in self.differences if d not in self.image_problems)
        return "\n".join(lines)

    def images_unreadable(self) -> str:
        total = sum(sc.images_unreadable for sc in self.splits)
        return f"{total} file{'s' if total != 1 else ''}"


def _cell(value: int | str | None) -> str:
    if value is None:
        return "(unknown)"
    if isinstance(value, str) and len(value) > 16:
        return value[:12] + "..."
    return str(value)


def _listed(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_LISTED:
        return problems
    return problems[:MAX_LISTED] + [f"... and {len(problems) - MAX_LISTED} more like these"]


def _resolve_manifest(
    name: str, folder: Path | None, manifest: dict | str | Path | None
) -> tuple[dict[str, Any] | None, str]:
    """Pick the manifest: given dict or path, else data_manifests/, else SynthReID's own file."""
    if isinstance(manifest, dict):
        return check_manifest(manifest), "(given as a dict)"
    if manifest is not None:
        path = Path(manifest)
        return check_manifest(json.loads(path.read_text(encoding="utf-8")), str(path)), str(path)
    try:
        path = manifest_dir() / f"{name}.json"
    except FileNotFoundError:
        path = None
    if path is not None and path.is_file():
        return load_manifest(name), str(path)
    if name == SYNTHREID.name and folder is not None and (folder / "synthreid.json").is_file():
        own = folder / "synthreid.json"
        data = json.loads(own.read_text(encoding="utf-8"))
        for candidate in (data, data.get("manifest") if isinstance(data, dict) else None):
            try:
                return check_manifest(candidate, str(own)), str(own)
            except ValueError:
                continue
    return None, "(none found: counts are not compared)"


def _count_split(
    spec: DatasetSpec, split: str, files: list[Path], diffs: list[str]
) -> dict[str, int | str | None]:
    """Parse every name (collecting problems) and count records as a loader would."""
    bad_names, bad_ranges = [], []
    pids, cams, images = set(), set(), 0
    for path in files:
        try:
            pid, cam = spec.pattern.parse(path)
        except DatasetError as err:
            bad_names.append(str(err))
            continue
        try:
            check_ranges(path, pid, cam, spec.cam_range, spec.pid_range)
        except DatasetError as err:
            bad_ranges.append(str(err))
            continue
        if pid == JUNK_PID:
            continue
        images += 1
        pids.add(pid)
        cams.add(cam)
    diffs.extend(f"{split}: {m}" for m in _listed(bad_names + bad_ranges))
    sub = spec.splits[split]
    return {
        "images": images,
        "ids": len(pids),
        "cams": len(cams),
        "files": len(files),
        "sha256": _hash_paths([f"{sub}/{p.name}" for p in files]),
    }


def verify(
    name: str,
    root: str | Path,
    *,
    manifest: dict | str | Path | None = None,
    check_images: bool = True,
    sample: int | None = None,
    seed: int = 0,
) -> VerifyReport:
    """Check the data set `name` under `root` against its manifest; never stops early.

    Checks the folder layout, that every file name parses with in-range camera/identity, that
    images open and decode with PIL (`check_images`; `sample=n` checks n random files per split),
    the counts and, when the manifest has one, the file-list hash. `manifest` overrides the
    lookup (a dict or a JSON path); SynthReID falls back to the `synthreid.json` at its root.
    """
    spec = get_spec(name, root)
    try:
        folder = resolve_root(spec, root)
    except DatasetError as err:
        _, source = _resolve_manifest(name, None, manifest)
        return VerifyReport(name, str(root), source, differences=[str(err)])
    mani, source = _resolve_manifest(name, folder, manifest)
    report = VerifyReport(name, str(folder), source)
    rng = random.Random(seed)
    for split in SPLITS:
        sub = folder / spec.splits[split]
        expected_split = mani["splits"][split] if mani else {}
        expected = {k: expected_split.get(k) for k in COUNT_KEYS}
        expected["sha256"] = expected_split.get(HASH_KEY)
        entries = list_split_files(sub)
        files = [p for p in entries if p.is_file()]
        for p in entries:
            if not p.is_file():
                report.differences.append(f"{split}: {p}: unexpected sub-folder in a split folder")
        if not files:
            report.differences.append(
                f"{split}: split folder {sub} holds no images\n{layout_tree(spec)}"
            )
        found = _count_split(spec, split, files, report.differences)
        check = SplitCheck(split, str(sub), expected, found, images_total=len(files))
        if check_images and files:
            picked = files if sample is None or sample >= len(files) else rng.sample(files, sample)
            problems = [m for m in map(image_problem, picked) if m is not None]
            report.image_problems.extend(f"{split}: {m}" for m in _listed(problems))
            check.images_checked = len(picked)
            check.images_unreadable = len(problems)
        for key in (*COUNT_KEYS, "sha256"):
            exp, got = expected[key], found[key]
            if exp is not None and exp != got:
                what = "file-list sha256" if key == "sha256" else key
                report.differences.append(f"{split}: {what}: expected {exp}, found {got}")
        report.splits.append(check)
    report.differences[:0] = report.image_problems  # what to fix first, before any count
    return report


def make_manifest(name: str, root: str | Path, *, source: str | None = None) -> dict[str, Any]:
    """Count a data set folder into a manifest dict (what `verify` compares against).

    Loads the folder strictly (any bad name raises `DatasetError`); for SynthReID this is the
    manifest written at generation time. Save it with `save_manifest`.
    """
    spec = get_spec(name, root)
    ds = load_layout(spec, root)
    stats = ds.stats()
    splits: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        sub = spec.splits[split]
        files = split_files(Path(ds.root) / sub)
        splits[split] = {
            **stats[split],
            "files": len(files),
            HASH_KEY: _hash_paths([f"{sub}/{p.name}" for p in files]),
            "source": source or "make_manifest: counted from the files on disk",
        }
    return {
        "name": spec.name,
        "title": spec.title,
        "layout": dict(spec.splits),
        "example_file": spec.pattern.example,
        "file_pattern": spec.pattern.regex.pattern,
        "cam_range": list(spec.cam_range),
        "hash_recipe": HASH_RECIPE,
        "splits": splits,
    }


def manifest_table(names: tuple[str, ...] = ("market1501", "dukemtmcreid", "cuhk03_labeled",
                                             "cuhk03_detected")) -> "pandas.DataFrame":
    """Expected images and identities per data set and split, as the manifests record them."""
    import pandas as pd

    rows = [{"dataset": name, "split": split, "images": st.get("images"), "ids": st.get("ids")}
            for name in names for split, st in load_manifest(name)["splits"].items()]
    return pd.DataFrame(rows).set_index(["dataset", "split"])
