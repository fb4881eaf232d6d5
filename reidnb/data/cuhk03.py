"""CUHK03-NP, labeled and detected boxes, read with the shared Market-1501-layout parser.

CUHK03 (Li et al., "DeepReID", CVPR 2014) has 1,467 identities seen by 2 cameras, each box
available hand-labelled and DPM-detected. CUHK03-NP is the 767 / 700 identity split of Zhong et
al. ("Re-ranking Person Re-identification with k-reciprocal Encoding", CVPR 2017), released as
Market-style folders:

    cuhk03-np/
    ├── labeled/   bounding_box_train/  query/  bounding_box_test/
    └── detected/  bounding_box_train/  query/  bounding_box_test/

Assumption about names: the release's files look like `0001_c1_1.png` (identity, camera 1 or 2,
index of the box within that camera). The pattern accepts any digit counts and `.png`, `.jpg`
or `.jpeg`, so a copy converted to JPEG also loads. Identities must lie in 1..1467.
"""

from __future__ import annotations

import re
from pathlib import Path

from .market1501 import DatasetSpec, NamePattern, load_layout
from .records import ReIDDataset

#: `0001_c1_1.png`: pid, camera (1 or 2), box index within the camera.
CUHK03_PATTERN = NamePattern(
    re.compile(r"(?P<pid>-1|\d+)_c(?P<cam>\d+)_\d+\.(?i:png|jpe?g)"),
    "0001_c1_1.png",
)


def _cuhk03_spec(kind: str) -> DatasetSpec:
    return DatasetSpec(
        name=f"cuhk03_{kind}",
        title=f"CUHK03-NP ({kind})",
        pattern=CUHK03_PATTERN,
        cam_range=(1, 2),
        pid_range=(1, 1467),
        folder_names=(
            f"cuhk03-np/{kind}",
            kind,
            f"CUHK03-NP/{kind}",
            f"cuhk03_np/{kind}",
            f"cuhk03np/{kind}",
        ),
    )


CUHK03_LABELED = _cuhk03_spec("labeled")
CUHK03_DETECTED = _cuhk03_spec("detected")


def load_cuhk03_labeled(root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """CUHK03-NP with hand-labelled boxes; statistics in `data_manifests/cuhk03_labeled.json`."""
    return load_layout(CUHK03_LABELED, root, drop_junk=drop_junk)


def load_cuhk03_detected(root: str | Path, *, drop_junk: bool = True) -> ReIDDataset:
    """CUHK03-NP with DPM-detected boxes; statistics in `data_manifests/cuhk03_detected.json`."""
    return load_layout(CUHK03_DETECTED, root, drop_junk=drop_junk)
