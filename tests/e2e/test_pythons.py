"""The pyz smoke test on every CPython 3.9 to 3.13 found on the machine.

A version that is not installed gets no test at all (not a skip); the folder's conftest prints
which interpreters ran, and one test insists that at least 3.11 (the project's own) was found.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from factory import make_sdist
from factory import make_wheel
from pythons import Interpreter
from pythons import interpreters
from support import CONFIG
from support import WRITE
from support import start_pyz
from support import stop
from support_upload import upload

FOUND = interpreters()


def test_the_smoke_test_covers_at_least_python_3_11() -> None:
    minors = [i.minor for i in FOUND]
    print("pyz smoke test interpreters:", ", ".join(f"{i.version} {i.path}" for i in FOUND))
    assert "3.11" in minors, f"only found {minors}"


@pytest.mark.parametrize("python", FOUND, ids=[i.version for i in FOUND])
def test_pyz_smoke(python: Interpreter, pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    server = start_pyz(
        pyz, tmp_path / "root", "--config", str(config), "--extra_index_url", "",
        python=python.path,
    )  # fmt: skip
    try:
        exe = Path(f"/proc/{server.process.pid}/exe").resolve()
        assert str(exe) == python.path  # the server really runs on this interpreter
        folder = tmp_path / "dists"
        folder.mkdir()
        files = [
            make_wheel(folder, "smoke-pkg", "1.0", requires_python=">=3.9"),
            make_sdist(folder, "smoke-pkg", "1.0"),
        ]
        for path in files:
            status, _, body = upload(server.live, path)
            assert status == 200, body
        assert upload(server.live, files[0])[0] == 200  # identical again
        status, _, page = server.live.request("GET", "/simple/smoke-pkg/")
        assert status == 200
        for path in files:
            data = path.read_bytes()
            assert f"{path.name}#sha256={hashlib.sha256(data).hexdigest()}".encode() in page
            status, headers, served = server.live.request("GET", f"/simple/smoke-pkg/{path.name}")
            assert (status, served) == (200, data)
            assert int(headers["content-length"]) == len(data)
        assert b'data-requires-python="&gt;=3.9"' in page
        status, _, _ = server.live.request("GET", "/simple/smoke-pkg/", auth=("local", "wrong"))
        assert status == 401
        status, _, _ = upload(server.live, files[1].name, b"other bytes")
        assert status == 409
        assert server.live.request("POST", "/simple/", b"x", auth=("local", WRITE))[0] == 415
    finally:
        code = stop(server)
    assert code == 0, server.output()
    assert "Traceback" not in server.output()
