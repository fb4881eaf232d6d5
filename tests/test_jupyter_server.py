"""The README's way in: open notebooks/*.py in JupyterLab. A real Jupyter server from this
environment serves every chapter's .py as a notebook (jupytext's contents manager, which jupytext
enables through the jupyter_server config it installs under <venv>/etc/jupyter), with the
`parameters` cell papermill needs, and `jupyter lab` itself runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.py"))
INSTALL = "pip install -e '.[book,test]'"
START_TIMEOUT_S = 90


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (install the `book` extra: {INSTALL})")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, token: str, path: str, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


class Server:
    def __init__(self, proc: subprocess.Popen, base: str, token: str, log: Path):
        self.proc, self.base, self.token, self.log = proc, base, token, log

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str) -> tuple[int, bytes]:
        return _get(self.base, self.token, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _require("jupyter_server", "jupytext")
    tmp = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), secrets.token_hex(24)
    # Only the per-user Jupyter folders are redirected: the system-wide config path, which holds
    # <venv>/etc/jupyter/jupyter_server_config.d/jupytext.json, stays as installed, so the test
    # sees the contents manager a user's `jupyter lab` gets (JUPYTER_NO_CONFIG would drop it).
    env = dict(os.environ,
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), IPYTHONDIR=str(tmp / "ipython"),
               JUPYTER_PLATFORM_DIRS="0")
    env.pop("JUPYTER_CONFIG_PATH", None)
    env.pop("JUPYTER_TOKEN", None)
    log = tmp / "server.log"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={ROOT}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers; the server refuses root
        cmd.append("--allow-root")
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=err, stderr=subprocess.STDOUT)
    srv = Server(proc, f"http://127.0.0.1:{port}", token, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the Jupyter server exited with code {proc.returncode} before "
                            f"answering /api/status:\n{srv.stderr()}")
            try:
                status, _ = _get(srv.base, token, "/api/status", timeout=5)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Jupyter server did not answer /api/status within "
                            f"{START_TIMEOUT_S} s:\n{srv.stderr()}")
            time.sleep(0.5)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def test_the_book_has_its_chapters():
    assert len(CHAPTERS) >= 5, [p.name for p in CHAPTERS]


def test_the_server_uses_jupytexts_contents_manager(server):
    # loaded from <venv>/etc/jupyter/jupyter_server_config.d/jupytext.json, not from this test
    assert re.search(r"jupytext.*(ContentsManager|successfully loaded)", server.stderr(), re.I), \
        server.stderr()
    status, body = server.get("/api/contents/notebooks")
    assert status == 200, f"{status}: {body[:500]!r}\n{server.stderr()}"
    names = {c["name"] for c in json.loads(body)["content"]}
    assert {p.name for p in CHAPTERS} <= names


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_py_opens_as_a_notebook_with_parameters(server, chapter):
    status, body = server.get(f"/api/contents/notebooks/{chapter.name}?type=notebook&content=1")
    assert status == 200, (f"{chapter.name} does not open as a notebook ({status}): "
                           f"{body[:1000]!r}\nserver log:\n{server.stderr()}")
    model = json.loads(body)
    assert model["type"] == "notebook", model["type"]
    nb = model["content"]
    assert nb["nbformat"] == 4
    cells = nb["cells"]
    assert len(cells) > 5, f"{chapter.name} opened with only {len(cells)} cells"
    params = [c for c in cells if c["cell_type"] == "code"
              and "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{chapter.name}: {len(params)} code cells tagged parameters"
    source = params[0]["source"]
    source = "".join(source) if isinstance(source, list) else source
    assert re.search(r"^profile\s*=", source, re.M), source


def test_a_py_opens_after_its_ipynb_was_refreshed(tmp_path):
    """`make notebooks` rewrites every .ipynb after its .py (with papermill's injected-parameters
    cell, so the two differ); jupytext.toml must still let JupyterLab open the .py. Checked on a
    copy with the .ipynb a minute newer, through the contents manager class the server uses."""
    _require("jupytext")
    from jupytext import TextFileContentsManager
    from tornado.web import HTTPError

    chapter = CHAPTERS[-1]
    for src in (chapter, chapter.with_suffix(".ipynb")):
        shutil.copy(src, tmp_path / src.name)
    now = time.time()
    os.utime(tmp_path / chapter.name, (now - 60, now - 60))

    def open_py():
        manager = TextFileContentsManager(root_dir=str(tmp_path))
        return manager.get(chapter.name, type="notebook", content=True)

    with pytest.raises(HTTPError, match="more recent than"):  # jupytext's default margin, 1 s
        open_py()
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    model = open_py()
    assert model["type"] == "notebook"
    tags = [t for c in model["content"]["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert "parameters" in tags and "injected-parameters" not in tags  # inputs from the .py


def test_jupyter_lab_runs_from_this_environment():
    _require("jupyterlab")
    proc = subprocess.run([sys.executable, "-m", "jupyterlab", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"python -m jupyterlab --version:\n{proc.stdout}{proc.stderr}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", proc.stdout.strip()), proc.stdout
