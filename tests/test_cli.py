import hashlib
import subprocess
import sys
from pathlib import Path

from reidnb.cli import main


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.jpg")):
        h.update(p.relative_to(folder).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_cli_generate_same_seed_same_pixels(tmp_path, capsys):
    assert main(["data", "generate", "synthreid", str(tmp_path / "a"), "--size", "smoke",
                 "--seed", "3"]) == 0
    assert main(["data", "generate", "synthreid", str(tmp_path / "b"), "--size", "smoke",
                 "--seed", "3"]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert "written to" in capsys.readouterr().out


def test_cli_verify_reports_wrong_path_and_exits_1(tmp_path, capsys):
    assert main(["data", "verify", "market1501", str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "nowhere" in out and "bounding_box_train" in out


def test_cli_generate_refuses_non_empty_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert main(["data", "generate", "synthreid", str(tmp_path / "x")]) == 1
    assert "x" in capsys.readouterr().err
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_python_dash_m_entry_point_prints_usage():
    out = subprocess.run([sys.executable, "-m", "reidnb", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "data generate synthreid" in out and "data verify" in out
