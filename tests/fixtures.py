"""Tiny data set trees with the real naming conventions, written into a test's tmp_path.

Every image is a real 4x8 JPEG or PNG (written with PIL) so readability checks mean something;
`write_corrupt_image` writes a truncated JPEG under a valid name.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

MARKET_FILES: dict[str, list[str]] = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c3s1_000551_01.jpg",
        "0007_c2s3_070952_01.jpg",
        "0005_c6s1_001051_02.jpg",
        "0005_c5s2_000976_01.jpg",
    ],
    "query": ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"],
    "bounding_box_test": [
        "0001_c2s1_000351_01.jpg",
        "0001_c4s2_000201_02.jpg",
        "0003_c1s1_000411_02.jpg",
        "0000_c3s1_000151_01.jpg",  # distractor
        "-1_c1s1_000401_03.jpg",  # junk
        "-1_c5s1_000126_04.jpg",  # junk
    ],
}

DUKE_FILES: dict[str, list[str]] = {
    "bounding_box_train": [
        "0001_c2_f0046182.jpg",
        "0001_c5_f0051341.jpg",
        "0008_c8_f0012345.jpg",
        "0004_c1_f0000001.jpg",
    ],
    "query": ["0005_c1_f0050000.jpg", "0006_c7_f0060000.jpg"],
    "bounding_box_test": [
        "0005_c3_f0050500.jpg",
        "0006_c2_f0061111.jpg",
        "0010_c4_f0070000.jpg",  # an identity that never appears as a query
    ],
}

CUHK03_FILES: dict[str, dict[str, list[str]]] = {
    "labeled": {
        "bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0003_c1_2.png"],
        "query": ["0010_c1_1.png", "0010_c2_6.png"],
        "bounding_box_test": ["0010_c1_2.png", "0010_c2_7.png", "0011_c1_1.png"],
    },
    "detected": {  # one train box fewer than labeled, so the two are told apart
        "bounding_box_train": ["0001_c1_1.png", "0003_c1_2.png"],
        "query": ["0010_c1_1.png", "0010_c2_6.png"],
        "bounding_box_test": ["0010_c1_2.png", "0010_c2_7.png", "0011_c1_1.png"],
    },
}


def write_image(path: Path, color: tuple[int, int, int] = (120, 60, 30)) -> Path:
    """Write a real 4x8 image; the format follows the suffix (.jpg/.jpeg -> JPEG, else PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if path.suffix.lower() in {".jpg", ".jpeg"} else "PNG"
    Image.new("RGB", (4, 8), color).save(path, format=fmt)
    return path


def write_corrupt_image(path: Path) -> Path:
    """Write the first half of a valid JPEG: it opens but cannot be decoded."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 32), (10, 200, 10)).save(buf, format="JPEG")
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def build_tree(folder: Path, files: dict[str, list[str]]) -> Path:
    """Write `{sub_folder: [file names]}` under `folder` as tiny images; return `folder`."""
    for sub, names in files.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            write_image(folder / sub / name, color=(10 * i % 256, 80, 160))
    return folder


def make_market(root: Path, folder: str = "Market-1501-v15.09.15") -> Path:
    """Market-1501 fixture under `root/folder`, with a Thumbs.db in train; return its folder."""
    ds = build_tree(root / folder if folder else root, MARKET_FILES)
    (ds / "bounding_box_train" / "Thumbs.db").write_bytes(b"\x00thumbnail cache")
    return ds


def make_duke(root: Path, folder: str = "DukeMTMC-reID") -> Path:
    """DukeMTMC-reID fixture under `root/folder`; return the data set folder."""
    return build_tree(root / folder if folder else root, DUKE_FILES)


def make_cuhk03(root: Path) -> Path:
    """CUHK03-NP fixture: `root/cuhk03-np/{labeled,detected}/...`; return `root/cuhk03-np`."""
    for kind, files in CUHK03_FILES.items():
        build_tree(root / "cuhk03-np" / kind, files)
    return root / "cuhk03-np"
