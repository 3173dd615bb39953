"""The GitHub backend against real GitHub: only when a token and a scratch repository are given.

    PYWHARF_GITHUB_LIVE_TOKEN  a token that can push to the repository (it is never printed)
    PYWHARF_GITHUB_LIVE_OWNER  the repository's owner
    PYWHARF_GITHUB_LIVE_REPO   a scratch repository: the test adds a release and deletes it again

One upload with twine, one install with pip through GitHub's signed URL, then the delete
command removes the release, its tag and the index entry (a tombstone stays in index.toml).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from factory import make_wheel
from support import ServerProcess
from support import pip_install
from support import run_pyz
from support import start_pyz
from support import stop
from support import twine_upload

VARIABLES = ("PYWHARF_GITHUB_LIVE_TOKEN", "PYWHARF_GITHUB_LIVE_OWNER", "PYWHARF_GITHUB_LIVE_REPO")
pytestmark = pytest.mark.skipif(
    not all(os.environ.get(v) for v in VARIABLES),
    reason="live GitHub test: set " + ", ".join(VARIABLES) + " to run it",
)
PROJECT = "pywharf-live-check"


@pytest.fixture
def live_server(pyz: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    section = {"type": "github", "owner": os.environ["PYWHARF_GITHUB_LIVE_OWNER"],
               "repo": os.environ["PYWHARF_GITHUB_LIVE_REPO"]}  # fmt: skip
    config = tmp_path / "repos.toml"
    config.write_text(tomli_w.dumps({"local": section}))
    admin = tmp_path / "admin.toml"
    admin.write_text(tomli_w.dumps({"local": {"type": "github", "env": VARIABLES[0]}}))
    server = start_pyz(pyz, tmp_path / "root", "--config", str(config), "--admin_secret",
                       str(admin), "--extra_index_url", "")  # fmt: skip
    try:
        yield server
    finally:
        stop(server)
        assert os.environ[VARIABLES[0]] not in server.output()


def test_upload_install_and_delete_on_real_github(
    pyz: Path, live_server: ServerProcess, tmp_path: Path
) -> None:
    token = os.environ[VARIABLES[0]]
    version = f"0.0.{int(time.time())}"
    wheel = make_wheel(tmp_path, PROJECT, version)
    home = tmp_path / "home"
    uploaded = twine_upload(live_server, [wheel], home, password=token)
    try:
        assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
        index = live_server.live.index_url(token)
        pip = pip_install(index, f"{PROJECT}=={version}", tmp_path / "target", home)
        assert pip.returncode == 0, pip.stdout + pip.stderr
    finally:
        deleted = run_pyz(
            pyz, "delete", "github", "local", PROJECT, wheel.name,
            "--secret_env", VARIABLES[0], "--owner", os.environ[VARIABLES[1]],
            "--repo", os.environ[VARIABLES[2]], "--root", str(tmp_path / "cli-root"),
        )  # fmt: skip
        assert token not in deleted.stdout + deleted.stderr
    assert deleted.returncode == 0, deleted.stderr
