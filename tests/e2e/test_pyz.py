"""End to end through the built zipapp: real twine, uv and pip, the embedded default, signals."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w
from factory import make_sdist
from factory import make_wheel
from support import BIN
from support import READ
from support import WRITE
from support import ServerProcess
from support import client_env
from support import pip_install
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install
from support import uv_publish
from support_upload import multipart_body
from support_upload import raw_connect
from support_upload import upload
from support_upload import upload_form
from support_upload import upload_head

from pywharf.config import read_text
from pywharf.index import Add
from pywharf.index import FileRecord
from pywharf.index import event_to_json
from pywharf.service import EMBEDDED_SECRETS

STORAGE = Path("cache") / "local" / "storage"


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def installed_version(target: Path, module: str = "demo_pkg") -> str:
    text = (target / module / "__init__.py").read_text()
    return text.split("=")[1].strip().strip("'\"")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# --- in with twine and uv, out with pip and uv --------------------------------------------------


def test_twine_in_pip_and_uv_out(
    pyz_server: ServerProcess, dists: Path, home: Path, tmp_path: Path
) -> None:
    result = twine_upload(pyz_server, sorted(dists.iterdir()), home)
    assert result.returncode == 0, output(result)
    index = pyz_server.live.index_url(READ)
    pip = pip_install(index, "demo-pkg==1.0", tmp_path / "pip", home)
    assert pip.returncode == 0, output(pip)
    assert installed_version(tmp_path / "pip") == "1.0"
    uv = uv_install(pyz_server.live.index_url(WRITE), "demo-pkg", tmp_path / "uv", home)
    assert uv.returncode == 0, output(uv)
    assert installed_version(tmp_path / "uv") == "2.0"


def test_uv_publish_in_pip_and_uv_out(
    pyz_server: ServerProcess, dists: Path, home: Path, tmp_path: Path
) -> None:
    result = uv_publish(pyz_server, sorted(dists.iterdir()), home)
    assert result.returncode == 0, output(result)
    index = pyz_server.live.index_url(READ)
    pip = pip_install(index, "demo-pkg<2", tmp_path / "pip", home)
    assert pip.returncode == 0, output(pip)
    assert installed_version(tmp_path / "pip") == "1.0"
    uv = uv_install(index, "demo-pkg", tmp_path / "uv", home)
    assert uv.returncode == 0, output(uv)
    assert installed_version(tmp_path / "uv") == "2.0"


def test_pip_installs_from_the_sdist_when_there_is_no_wheel(
    pyz_server: ServerProcess, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "only-sdist"
    folder.mkdir()
    sdist = make_sdist(folder, "sdist-only", "1.0")
    result = twine_upload(pyz_server, [sdist], home)
    assert result.returncode == 0, output(result)
    _, _, page = pyz_server.live.request("GET", "/simple/sdist-only/")
    assert hashlib.sha256(sdist.read_bytes()).hexdigest().encode() in page
    status, _, data = pyz_server.live.request("GET", f"/simple/sdist-only/{sdist.name}")
    assert (status, data) == (200, sdist.read_bytes())


def test_identical_re_uploads_succeed_with_both_clients(
    pyz_server: ServerProcess, dists: Path, home: Path
) -> None:
    files = sorted(dists.iterdir())
    assert twine_upload(pyz_server, files, home).returncode == 0
    again = twine_upload(pyz_server, files, home)
    assert again.returncode == 0, output(again)
    again = uv_publish(pyz_server, files, home)
    assert again.returncode == 0, output(again)


# --- refusals, as the real clients show them ---------------------------------------------------


@pytest.fixture
def impostor(tmp_path: Path) -> Path:
    folder = tmp_path / "impostor"
    folder.mkdir()
    return make_wheel(folder, "demo-pkg", "1.0", payload_bytes=64)


def test_twine_shows_409_file_already_exists(
    pyz_server: ServerProcess, dists: Path, impostor: Path, home: Path
) -> None:
    assert twine_upload(pyz_server, sorted(dists.iterdir()), home).returncode == 0
    result = twine_upload(pyz_server, [impostor], home)
    assert result.returncode != 0
    assert "409" in output(result)
    assert "File already exists" in output(result)


def test_uv_publish_refuses_other_bytes_under_a_stored_filename(
    pyz_server: ServerProcess, dists: Path, impostor: Path, home: Path
) -> None:
    assert uv_publish(pyz_server, sorted(dists.iterdir()), home).returncode == 0
    result = uv_publish(pyz_server, [impostor], home)
    assert result.returncode != 0
    assert "409" in output(result) or "File already exists" in output(result)
    _, _, data = pyz_server.live.request("GET", f"/simple/demo-pkg/{impostor.name}")
    assert data == (dists / impostor.name).read_bytes()


def test_twine_shows_403_for_the_read_secret(
    pyz_server: ServerProcess, dists: Path, home: Path
) -> None:
    result = twine_upload(pyz_server, sorted(dists.iterdir()), home, password=READ)
    assert result.returncode != 0
    assert "403" in output(result)
    assert pyz_server.live.request("GET", "/simple/demo-pkg/")[0] == 404


def test_uv_publish_fails_with_the_read_secret(
    pyz_server: ServerProcess, dists: Path, home: Path
) -> None:
    result = uv_publish(pyz_server, sorted(dists.iterdir()), home, password=READ)
    assert result.returncode != 0
    assert "403" in output(result)
    assert pyz_server.live.request("GET", "/simple/demo-pkg/")[0] == 404


def test_twine_fails_with_a_wrong_secret(
    pyz_server: ServerProcess, dists: Path, home: Path
) -> None:
    result = twine_upload(pyz_server, sorted(dists.iterdir()), home, password="wrong")
    assert result.returncode != 0
    assert "401" in output(result) or "403" in output(result)
    assert pyz_server.live.request("GET", "/simple/demo-pkg/")[0] == 404


def test_twine_shows_413_for_a_file_over_the_limit(
    pyz_server: ServerProcess, home: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    big = make_wheel(folder, "demo-pkg", "1.0", payload_bytes=2_100_000)
    assert big.stat().st_size > 2_000_000
    result = twine_upload(pyz_server, [big], home)
    assert result.returncode != 0
    assert "413" in output(result)
    assert pyz_server.live.request("GET", "/simple/demo-pkg/")[0] == 404


@pytest.mark.parametrize("digest", ["sha256", "blake2_256", "md5"])
def test_a_digest_mismatch_is_400_through_the_pyz(
    pyz_server: ServerProcess, dists: Path, digest: str
) -> None:
    wheel = dists / "demo_pkg-1.0-py3-none-any.whl"
    data = wheel.read_bytes()
    fields = [
        (k, "f" * len(v) if k == f"{digest}_digest" else v)
        for k, v in upload_form(wheel.name, data, digests=("sha256", "blake2_256", "md5"))
    ]
    status, _, body = upload(pyz_server.live, wheel, fields=fields)
    assert status == 400
    assert b"does not match" in body
    assert pyz_server.live.request("GET", "/simple/demo-pkg/")[0] == 404
    assert not list((pyz_server.live.root / STORAGE / "demo-pkg").glob("*"))


def test_pip_fails_with_a_wrong_secret(
    pyz_server: ServerProcess, dists: Path, home: Path, tmp_path: Path
) -> None:
    assert twine_upload(pyz_server, sorted(dists.iterdir()), home).returncode == 0
    result = pip_install(pyz_server.live.index_url("wrong"), "demo-pkg", tmp_path / "t", home)
    assert result.returncode != 0
    assert "401" in output(result)


# --- the embedded default -----------------------------------------------------------------------


def usage_lines(server: ServerProcess) -> dict[str, list[str]]:
    """The printed pip, uv and twine command lines, as argv lists."""
    lines: dict[str, list[str]] = {}
    for line in server.output().splitlines():
        stripped = line.strip()
        for tool in ("pip install", "uv pip install", "twine upload"):
            if stripped.startswith(tool):
                lines[tool] = shlex.split(stripped)
    return lines


@pytest.mark.slow
def test_the_embedded_default_makes_private_secrets_once_and_its_printed_lines_work(
    pyz: Path, dists: Path, home: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    server = start_pyz(pyz, root, "--extra_index_url", "")
    try:
        lines = usage_lines(server)
        assert set(lines) == {"pip install", "uv pip install", "twine upload"}, server.output()
        write_secret = lines["twine upload"][lines["twine upload"].index("-p") + 1]
        (secrets_file,) = [
            p for p in root.iterdir() if p.is_file() and write_secret.encode() in p.read_bytes()
        ]
        for path in root.iterdir():  # the secrets, and any other secret kept in ROOT
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        contents = secrets_file.read_bytes()
        assert server.output().count("twine upload") == 1  # printed once
        # twine, exactly as printed, with dist/* expanded as a shell would
        twine = lines["twine upload"]
        pattern = twine[-1]
        assert pattern.endswith("*")
        files = sorted(str(p) for p in dists.iterdir())
        command = [str(BIN / "twine"), *twine[1:-1], "--non-interactive", *files]
        result = subprocess.run(
            command, env=client_env(home), capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, output(result)
        # pip and uv, exactly as printed, with PROJECT filled in and a target folder added
        pip = [a if a != "PROJECT" else "demo-pkg==1.0" for a in lines["pip install"]]
        result = subprocess.run(
            [str(BIN / "python"), "-m", *pip, "--target", str(tmp_path / "pip"),
             "--no-cache-dir", "--disable-pip-version-check"],
            env=client_env(home), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, output(result)
        assert installed_version(tmp_path / "pip") == "1.0"
        uv = [a if a != "PROJECT" else "demo-pkg" for a in lines["uv pip install"]]
        result = subprocess.run(
            [str(BIN / "uv"), *uv[1:], "--target", str(tmp_path / "uv"), "--no-cache",
             "--python", str(BIN / "python")],
            env=client_env(home), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, output(result)
        assert installed_version(tmp_path / "uv") == "2.0"
    finally:
        assert stop(server) == 0
    # A restart reuses the secrets, and points to their file instead of printing them again
    # (issue 9: a secret printed on every start ends up in every log).
    again = start_pyz(pyz, root, "--extra_index_url", "")
    try:
        assert secrets_file.read_bytes() == contents
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        assert usage_lines(again) == {}
        assert write_secret not in again.output() and str(secrets_file) in again.output()
        index = next(a for a in lines["pip install"] if a.startswith("http"))
        read_secret = index.split("@")[0].rsplit(":", 1)[1]
        status, _, _ = again.live.request("GET", "/simple/demo-pkg/", auth=("local", read_secret))
        assert status == 200  # still there
    finally:
        assert stop(again) == 0


def test_the_embedded_secrets_are_not_the_same_on_two_roots(pyz: Path, tmp_path: Path) -> None:
    first = start_pyz(pyz, tmp_path / "a" / "root", "--extra_index_url", "")
    second = start_pyz(pyz, tmp_path / "b" / "root", "--extra_index_url", "")
    try:
        assert usage_lines(first)["twine upload"][-2] != usage_lines(second)["twine upload"][-2]
        for server in (first, second):
            text = read_text(server.live.root / EMBEDDED_SECRETS)
            made = re.findall(r'^(read|write)_secret = "(.*)"$', text, re.MULTILINE)
            # Hex: a secret beginning with "-" made the printed `twine upload -p` read it as an
            # option (urlsafe base64 did, one secret in 64).
            assert [kind for kind, _ in made] == ["read", "write"], text
            assert all(re.fullmatch("[0-9a-f]{48}", secret) for _, secret in made), text
    finally:
        assert stop(first) == 0
        assert stop(second) == 0


# --- stopping -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_server_quickly_and_discards_unfinished_uploads(
    pyz_server: ServerProcess, signum: int
) -> None:
    spool = pyz_server.live.root / STORAGE / ".pywharf" / "tmp"
    data = os.urandom(400_000)
    filename = "demo_pkg-1.0.tar.gz"
    body, content_type = multipart_body(upload_form(filename, data), (filename, data))
    with raw_connect(pyz_server.live) as sock:
        sock.sendall(upload_head(pyz_server.live, content_type, len(body)) + body[:200_000])
        deadline = time.monotonic() + 10
        while not list(spool.iterdir()):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.02)
        started = time.monotonic()
        pyz_server.process.send_signal(signum)
        code = pyz_server.process.wait(10)
        elapsed = time.monotonic() - started
    assert code == 0, pyz_server.output()
    assert elapsed < 3, elapsed
    assert list(spool.iterdir()) == []
    assert "Traceback" not in pyz_server.output()
    assert not list((pyz_server.live.root / STORAGE).glob("demo-pkg/*"))


def test_an_idle_server_stops_at_once_on_sigterm(pyz_server: ServerProcess) -> None:
    started = time.monotonic()
    assert stop(pyz_server) == 0
    assert time.monotonic() - started < 3


# --- start-up with a filled root ----------------------------------------------------------------


def test_a_restart_serves_what_was_uploaded_before(
    pyz: Path, pyz_server: ServerProcess, dists: Path, home: Path, tmp_path: Path
) -> None:
    assert twine_upload(pyz_server, sorted(dists.iterdir()), home).returncode == 0
    _, _, before = pyz_server.live.request("GET", "/simple/demo-pkg/")
    assert stop(pyz_server) == 0
    config = tmp_path / "repos.toml"  # written by the pyz_server fixture
    again = start_pyz(pyz, pyz_server.live.root, "--config", str(config), "--extra_index_url", "")
    try:
        status, _, after = again.live.request("GET", "/simple/demo-pkg/")
        assert (status, after) == (200, before)
        result = pip_install(again.live.index_url(READ), "demo-pkg", tmp_path / "t", home)
        assert result.returncode == 0, output(result)
    finally:
        assert stop(again) == 0


def test_a_root_in_the_original_layout_is_served_to_pip(
    pyz: Path, home: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    wheel = make_wheel(source, "demo-pkg", "1.0")
    root = tmp_path / "root"
    folder = root / STORAGE / "demo-pkg"
    folder.mkdir(parents=True)
    shutil.copyfile(wheel, folder / wheel.name)
    meta = {"name": "demo-pkg", "version": "1.0", "distrib": "demo-pkg",
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}  # fmt: skip
    (folder / (wheel.name + ".meta")).write_text(tomli_w.dumps(meta))
    (root / STORAGE / "index.toml").write_text("mtime = 1594491762\npkgs = []\n")
    config = tmp_path / "repos.toml"
    config.write_text(
        f'[local]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
    )
    server = start_pyz(pyz, root, "--config", str(config), "--extra_index_url", "")
    try:
        result = pip_install(server.live.index_url(READ), "demo-pkg", tmp_path / "t", home)
        assert result.returncode == 0, output(result)
        assert installed_version(tmp_path / "t") == "1.0"
    finally:
        assert stop(server) == 0


def write_journal(root: Path, count: int) -> None:
    """A journal of `count` files in 1,000 projects, as a long-lived repository would have."""
    private = root / STORAGE / ".pywharf"
    private.mkdir(parents=True)
    with (private / "journal.jsonl").open("w") as journal:
        for n in range(count):
            project = f"project-{n % 1000}"
            record = FileRecord(
                filename=f"project_{n % 1000}-{n}.0-py3-none-any.whl",
                project=project,  # type: ignore[arg-type]
                version=f"{n}.0",
                sha256=hashlib.sha256(str(n).encode()).hexdigest(),
                size=1000 + n,
                upload_time=1_600_000_000.0 + n,
                requires_python=">=3.8",
            )
            journal.write(json.dumps(event_to_json(Add(record)), separators=(",", ":")) + "\n")


@pytest.mark.slow
def test_a_100000_file_journal_loads_whole(pyz: Path, tmp_path: Path) -> None:
    """Start-up reads the whole journal; its speed is measured in benchmarks/ (cold start),
    never here: a loaded machine must not fail the suite."""
    config = tmp_path / "repos.toml"
    config.write_text(
        f'[local]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
    )
    root = tmp_path / "big" / "root"
    write_journal(root, 100_000)
    server = start_pyz(pyz, root, "--config", str(config), "--extra_index_url", "")
    try:
        status, _, page = server.live.request("GET", "/simple/project-7/")
        assert status == 200
        assert page.count(b"<a ") == 100  # files 7, 1007, ... 99007
        status, _, root_page = server.live.request("GET", "/simple/")
        assert status == 200 and root_page.count(b"<a ") == 1000
    finally:
        assert stop(server) == 0


def test_the_pyz_runs_as_a_program(pyz: Path, tmp_path: Path) -> None:
    assert pyz.read_bytes()[:23] == b"#!/usr/bin/env python3\n"
    assert os.access(pyz, os.X_OK)
    result = subprocess.run(
        [str(pyz), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")},
    )
    assert result.returncode == 0, result.stderr
    assert "server" in result.stdout


def test_the_pyz_does_not_need_the_test_venv(pyz: Path, tmp_path: Path) -> None:
    """Run by a plain interpreter with no site-packages: everything it needs is inside."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(pyz), "server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", ""), "SHIV_ROOT": str(tmp_path / "shiv")},
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
