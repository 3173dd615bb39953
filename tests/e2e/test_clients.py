"""Real twine, uv and pip against the built pyz."""

from __future__ import annotations

from pathlib import Path

from support import READ
from support import ServerProcess
from support import pip_install
from support import twine_upload
from support import uv_install


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
