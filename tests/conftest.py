"""Fixtures shared by every test folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from factory import make_sdist
from factory import make_wheel
from s3_support import s3_pyz_server  # noqa: F401  (fixtures register by import)
from s3_support import seaweedfs  # noqa: F401
from s3_support import seaweedfs_server  # noqa: F401
from support import CONFIG
from support import PYZ
from support import REPO
from support import Live
from support import ServerProcess
from support import build_app
from support import serving
from support import start_pyz
from support import stop


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[Live]:
    """The app in-process on a ThreadingHTTPServer in a daemon thread."""
    root = tmp_path / "root"
    app = build_app(root)
    with serving(app) as server:
        yield Live("127.0.0.1", server.server_address[1], root, app)


@pytest.fixture(scope="session")
def pyz() -> Path:
    """The built zipapp; tests/run.py builds it before pytest starts."""
    if not PYZ.exists():
        subprocess.run([sys.executable, str(REPO / "build.py")], check=True)
    return PYZ


@pytest.fixture
def pyz_server(pyz: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """The built pyz serving CONFIG on an ephemeral port, with no extra index."""
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    server = start_pyz(pyz, tmp_path / "root", "--config", str(config), "--extra_index_url", "")
    try:
        yield server
    finally:
        if server.process.poll() is None:
            stop(server)


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    """A folder with a wheel and an sdist of `demo-pkg` 1.0 and a wheel of 2.0."""
    folder = tmp_path / "dists"
    folder.mkdir()
    make_wheel(folder, "demo-pkg", "1.0", requires_python=">=3.8")
    make_sdist(folder, "demo-pkg", "1.0")
    make_wheel(folder, "demo-pkg", "2.0", requires_python=">=3.8")
    return folder
