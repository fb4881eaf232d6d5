"""The per-process decoded-image memo behind `experiments.load_data` (issue 18: a chapter that
trains many runs on one data set decodes its images once)."""

import os

import numpy as np
import pytest
from PIL import Image

from reidnb.data.cache import DECODED_KEEP, decoded, forget_decoded
from reidnb.data.records import DatasetError, Sample


def _records(folder, n=3):
    records = []
    for i in range(n):
        path = folder / f"{i:04d}_c1s1_000000_00.png"
        Image.fromarray(np.full((16, 8, 3), 10 * i, np.uint8)).save(path)
        records.append(Sample(str(path), pid=i, camid=0))
    return records


def test_the_same_records_are_decoded_once_and_shared(tmp_path):
    forget_decoded()
    records = _records(tmp_path)
    first, second = decoded(records, 16, 8), decoded(list(records), 16, 8)
    assert second is first
    assert decoded(records, 32, 16) is not first  # another size is another cache
    assert decoded(records, 32, 16).images.shape == (3, 3, 32, 16)


def test_a_rewritten_file_is_decoded_again(tmp_path):
    forget_decoded()
    records = _records(tmp_path)
    first = decoded(records, 16, 8)
    Image.fromarray(np.full((16, 8, 3), 200, np.uint8)).save(records[1].path)
    st = os.stat(records[1].path)
    os.utime(records[1].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = decoded(records, 16, 8)
    assert again is not first
    assert int(again.images[1].float().mean()) == 200 and int(first.images[1].float().mean()) == 10


def test_other_labels_are_another_cache(tmp_path):
    forget_decoded()
    records = _records(tmp_path)
    first = decoded(records, 16, 8)
    relabelled = [Sample(r.path, pid=r.pid + 1, camid=r.camid) for r in records]
    other = decoded(relabelled, 16, 8)
    assert other is not first and other.pids.tolist() == [1, 2, 3]


def test_only_the_newest_caches_are_kept(tmp_path):
    forget_decoded()
    records = _records(tmp_path)
    first = decoded(records, 16, 8)
    for size in range(1, DECODED_KEEP + 1):
        decoded(records, 16 + size, 8)
    assert decoded(records, 16, 8) is not first


def test_a_missing_file_names_it(tmp_path):
    forget_decoded()
    records = _records(tmp_path)
    os.remove(records[2].path)
    with pytest.raises(DatasetError, match="0002_c1s1_000000_00.png"):
        decoded(records, 16, 8)
