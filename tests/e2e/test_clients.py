"""Real twine, uv and pip against the built pyz."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support import BIN
from support import READ
from support import WRITE
from support import ServerProcess
from support import client_env


def twine_upload(
    server: ServerProcess, files: list[Path], home: Path, password: str = WRITE
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
               "--repository-url", f"{server.live.url}/simple/", "-u", "local", "-p", password,
               *map(str, files)]  # fmt: skip
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


def pip_install(
    index_url: str, requirement: str, target: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "python"), "-m", "pip", "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check",
               "--target", str(target), "--index-url", index_url, requirement]  # fmt: skip
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


def uv_install(
    index_url: str, requirement: str, target: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "uv"), "pip", "install", "--no-cache", "--target", str(target),
               "--index-url", index_url, "--python", str(BIN / "python"), requirement]  # fmt: skip
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


def test_pip_and_uv_install_what_twine_uploaded(
    pyz_server: ServerProcess, dists: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    upload = twine_upload(pyz_server, sorted(dists.iterdir()), home)
    assert upload.returncode == 0, upload.stdout + upload.stderr
    index = pyz_server.live.index_url(READ)
    pip = pip_install(index, "demo-pkg==1.0", tmp_path / "pip-target", home)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (
        tmp_path / "pip-target" / "demo_pkg" / "__init__.py"
    ).read_text() == "__version__ = '1.0'\n"
    uv = uv_install(index, "demo-pkg", tmp_path / "uv-target", home)
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert "'2.0'" in (tmp_path / "uv-target" / "demo_pkg" / "__init__.py").read_text()
