"""Operating pywharf through the pyz: update_index, sync, /initialize/, env mode, extra index."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
from factory import make_wheel
from support import BIN
from support import CONFIG
from support import READ
from support import WRITE
from support import Live
from support import ServerProcess
from support import announced_port
from support import client_env
from support import run_pyz
from support import start_pyz
from support import stop
from support import wait_until_serving
from support_upload import basic
from support_upload import multipart_body
from support_upload import upload

from pywharf.remote_index import load_index

STORAGE = Path("cache") / "local" / "storage"


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def listed(live: Live, project: str = "demo-pkg") -> str:
    status, _, body = live.request("GET", f"/simple/{project}/")
    return body.decode() if status == 200 else ""


@pytest.fixture
def wheels(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return [make_wheel(folder, "demo-pkg", f"1.{n}") for n in range(24)]


# --- update_index ---------------------------------------------------------------------------


def test_update_index_while_uploads_run_loses_nothing(
    pyz: Path, pyz_server: ServerProcess, wheels: list[Path]
) -> None:
    live = pyz_server.live
    failures: list[int] = []

    def uploader() -> None:
        for wheel in wheels:
            status, _, _ = upload(live, wheel)
            if status != 200:
                failures.append(status)

    thread = threading.Thread(target=uploader)
    thread.start()
    reports = []
    while thread.is_alive():
        result = run_pyz(pyz, "update_index", "file_system", "local", "--root", str(live.root))
        assert result.returncode == 0, result.stderr
        reports.append(result.stdout)
    thread.join()
    assert not failures
    final = run_pyz(pyz, "update_index", "file_system", "local", "--root", str(live.root))
    assert final.stdout.strip().endswith(f"{len(wheels)} files indexed, 0 changes")
    assert all(READ not in r and WRITE not in r for r in [*reports, final.stdout, final.stderr])
    wait_for(lambda: all(w.name in listed(live) for w in wheels))


def test_update_index_repairs_a_hand_copied_file_and_writes_the_original_index(
    pyz: Path, pyz_server: ServerProcess, tmp_path: Path
) -> None:
    live = pyz_server.live
    wheel = make_wheel(tmp_path, "hand-copied", "3.0")
    target = live.root / STORAGE / "hand-copied"
    target.mkdir(parents=True)
    shutil.copy(wheel, target / wheel.name)
    result = run_pyz(pyz, "update_index", "file_system", "local", "--root", str(live.root))
    assert result.returncode == 0, result.stderr
    assert f"added {wheel.name}" in result.stdout
    wait_for(lambda: wheel.name in listed(live, "hand-copied"))
    mtime, records, entries = load_index((live.root / STORAGE / "index.toml").read_bytes(), "t")
    assert mtime > 0 and [r.filename for r in records] == [wheel.name]
    assert entries[0]["package_path"].endswith(wheel.name)
    assert "description" not in entries[0]["meta"]  # lean: no README bodies


# --- sync between servers --------------------------------------------------------------------


def test_a_second_server_on_the_same_root_sees_uploads_after_sync(
    pyz: Path, pyz_server: ServerProcess, wheels: list[Path]
) -> None:
    config = pyz_server.live.root.parent / "repos.toml"
    second = start_pyz(pyz, pyz_server.live.root, "--config", str(config), "--extra_index_url", "")
    try:
        assert upload(pyz_server.live, wheels[0])[0] == 200
        wait_for(lambda: wheels[0].name in listed(second.live))
        assert upload(second.live, wheels[1])[0] == 200
        wait_for(lambda: wheels[1].name in listed(pyz_server.live))
        status, _, body = second.live.request("GET", "/index_mtime/")
        assert status == 200 and int(body) > 0
    finally:
        stop(second)


# --- /initialize/ ----------------------------------------------------------------------------


def initialize(
    live: Live, body: bytes, content_type: str, password: str | None = None
) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type}
    if password is not None:
        headers["Authorization"] = basic("admin", password)
    status, _, answer = live.request("POST", "/initialize/", body, headers, auth=None)
    return status, answer


def urlencoded(config: str) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"config": config, "admin_secret": ""}).encode()


def test_initialize_configures_a_fresh_server_once_then_needs_the_secret(
    pyz: Path, tmp_path: Path
) -> None:
    server = start_pyz(pyz, tmp_path / "root", "--initialize_secret", "init-secret")
    try:
        live = server.live
        form = "application/x-www-form-urlencoded"
        status, _ = initialize(live, urlencoded(CONFIG), form)
        assert status == 200
        assert live.request("GET", "/simple/")[0] == 200  # the posted repository now serves
        assert initialize(live, urlencoded(CONFIG), form)[0] == 401  # anonymous: never again
        assert initialize(live, urlencoded(CONFIG), form, "wrong")[0] == 403
        bad = "[local\ntype = 1"
        status, answer = initialize(live, urlencoded(bad), form, "init-secret")
        assert status == 400 and b"invalid TOML" in answer
        assert live.request("GET", "/simple/")[0] == 200  # the old configuration keeps serving
        renamed = CONFIG.replace("[local]", "[other]")
        body, content_type = multipart_body(
            [], ("config.toml", renamed.encode()), file_field="config"
        )
        assert initialize(live, body, content_type, "init-secret")[0] == 200
        assert live.request("GET", "/simple/", auth=("other", READ))[0] == 200
        assert live.request("GET", "/simple/")[0] == 401
        assert oct((live.root / "config.toml").stat().st_mode & 0o777) == "0o600"
    finally:
        stop(server)


def test_initialize_is_refused_on_a_configured_server_without_a_secret(
    pyz_server: ServerProcess,
) -> None:
    status, answer = initialize(
        pyz_server.live, urlencoded(CONFIG), "application/x-www-form-urlencoded"
    )
    assert status == 403 and b"initialize_secret" in answer


# --- environment mode ------------------------------------------------------------------------


def env_server(pyz: Path, root: Path, **variables: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYWHARF_")}
    env.update(variables, SHIV_ROOT=str(root.parent / "shiv"))
    log = (root.parent / "env-server.log").open("wb")
    with log:
        return subprocess.Popen(
            [sys.executable, str(pyz)], stdout=log, stderr=subprocess.STDOUT, env=env
        )


def test_environment_mode_reads_each_value_type(pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    process = env_server(
        pyz,
        tmp_path / "root",
        pywharf_command="server",  # names are case-insensitive
        Pywharf_Command_Root=str(tmp_path / "root"),
        PYWHARF_COMMAND_CONFIG=str(config),
        PYWHARF_COMMAND_HOST="127.0.0.1",
        PYWHARF_COMMAND_PORT="0",
        PYWHARF_COMMAND_DEBUG="false",  # the original read this as true
        PYWHARF_COMMAND_EXTRA_INDEX_URL="",  # an empty string, not a bare flag
    )
    log_path = tmp_path / "env-server.log"
    try:
        live = Live("127.0.0.1", announced_port(process, log_path), tmp_path / "root")
        wait_until_serving(live, process, log_path)
        assert live.request("GET", "/simple/nothing-here/")[0] == 404  # no extra index
        assert "DEBUG" not in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(15) == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PYWHARF_COMMAND_PORT", "eighty"),
        ("PYWHARF_COMMAND_DEBUG", "maybe"),
        ("PYWHARF_COMMAND_NOPE", "1"),
    ],
)
def test_environment_mode_names_the_wrong_variable(
    pyz: Path, tmp_path: Path, variable: str, value: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYWHARF_")}
    env.update(PYWHARF_COMMAND="server", PYWHARF_COMMAND_ROOT=str(tmp_path), **{variable: value})
    result = run_pyz(pyz, env=env)
    assert result.returncode == 2
    assert variable in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- extra index -----------------------------------------------------------------------------


@pytest.fixture
def public_index(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A static PEP 503 index playing PyPI, and the paths it was asked for."""
    folder = tmp_path / "pypi"
    project = folder / "simple" / "upstream-pkg"
    project.mkdir(parents=True)
    wheel = make_wheel(project, "upstream-pkg", "5.0")
    (project / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>')
    asked: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple/", asked
    finally:
        server.shutdown()
        server.server_close()


def test_pip_and_uv_install_through_the_extra_index(
    pyz: Path, tmp_path: Path, public_index: tuple[str, list[str]]
) -> None:
    url, asked = public_index
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    server = start_pyz(pyz, tmp_path / "root", "--config", str(config), "--extra_index_url", url)
    try:
        local = make_wheel(tmp_path, "upstream-pkg", "1.0")  # a local project of the same name
        index = server.live.index_url()
        env = client_env(tmp_path / "home")
        pip = [str(BIN / "python"), "-m", "pip", "install", "--isolated", "--no-cache-dir",
               "--disable-pip-version-check",
               "--index-url", index]  # fmt: skip
        result = subprocess.run([*pip, "--target", str(tmp_path / "a"), "upstream-pkg"],
                                env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "'5.0'" in (tmp_path / "a" / "upstream_pkg" / "__init__.py").read_text()
        uv = [str(BIN / "uv"), "pip", "install", "--no-cache", "--python", str(BIN / "python"),
              "--index-url", index, "--target", str(tmp_path / "b"), "upstream-pkg"]  # fmt: skip
        result = subprocess.run(uv, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert upload(server.live, local)[0] == 200
        asked.clear()
        result = subprocess.run([*pip, "--target", str(tmp_path / "c"), "upstream-pkg"],
                                env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert "'1.0'" in (tmp_path / "c" / "upstream_pkg" / "__init__.py").read_text()
        assert asked == []  # a local project never consults the extra index
    finally:
        stop(server)


def test_the_index_mtime_is_an_integer(pyz_server: ServerProcess) -> None:
    status, _, body = pyz_server.live.request("GET", "/index_mtime/")
    assert status == 200 and body.strip().isdigit()
    assert pyz_server.live.request("GET", "/index_mtime/", auth=None)[0] == 401


def test_update_index_on_an_empty_root_reports_nothing(pyz: Path, tmp_path: Path) -> None:
    result = run_pyz(pyz, "update_index", "file_system", "local", "--root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 files indexed, 0 changes"
    assert (tmp_path / STORAGE / "index.toml").exists()


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state whose socket the process holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:  # closed since the listing (the server is busy starting)
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_server_is_one_process_with_one_listener(pyz_server: ServerProcess) -> None:
    """No redis, no worker processes, no exporter: the original opened three more ports."""
    pid = pyz_server.process.pid
    assert _listening_ports(pid) == {pyz_server.live.port}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children == []


def _browser_login(live: Live, name: str, secret: str) -> str:
    """The session cookie a browser gets for a good login (form token included)."""
    status, headers, body = live.request("GET", "/login/", auth=None)
    token = body.decode().split('name="csrf" value="')[1].split('"')[0]
    form = f"pkg_repo_name={name}&pkg_repo_secret_raw={secret}&csrf={token}".encode()
    status, headers, _ = live.request(
        "POST",
        "/login/",
        form,
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"pywharf_csrf={token}"},
        auth=None,
    )
    assert status == 303, status
    return headers["set-cookie"].split(";")[0]


def test_a_browser_session_ends_when_its_repository_is_reconfigured(
    pyz: Path, tmp_path: Path
) -> None:
    server = start_pyz(pyz, tmp_path / "root", "--initialize_secret", "init-secret")
    try:
        live = server.live
        form = "application/x-www-form-urlencoded"
        assert initialize(live, urlencoded(CONFIG), form)[0] == 200
        cookie = _browser_login(live, "local", READ)
        session = {"Cookie": cookie, "Accept": "application/vnd.pypi.simple.v1+json"}
        assert live.request("GET", "/simple/", headers=session, auth=None)[0] == 200
        same = initialize(live, urlencoded(CONFIG), form, "init-secret")
        assert same[0] == 200
        assert live.request("GET", "/simple/", headers=session, auth=None)[0] == 200
        rotated = CONFIG.replace(READ, "a-new-read-secret")
        assert initialize(live, urlencoded(rotated), form, "init-secret")[0] == 200
        assert live.request("GET", "/simple/", headers=session, auth=None)[0] == 401
        assert READ not in cookie and WRITE not in cookie
    finally:
        stop(server)
