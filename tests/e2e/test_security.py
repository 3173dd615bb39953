"""Issue 9's attacks, replayed through the pyz: each test failed on the build that had the hole."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from factory import make_wheel
from support import CONFIG
from support import WRITE
from support import ServerProcess
from support import run_pyz
from support import start_pyz
from support import stop
from support_upload import upload

FORM = "application/x-www-form-urlencoded"


def initialize(server: ServerProcess, config: str) -> tuple[int, bytes]:
    body = urlencode({"config": config}).encode()
    status, _, answer = server.live.request(
        "POST", "/initialize/", body=body, headers={"Content-Type": FORM}, auth=None
    )
    return status, answer


def embedded_secrets(root: Path) -> dict[str, str]:
    text = (root / "embedded-secrets.toml").read_text()
    return dict(
        (key.strip(), value.strip().strip('"'))
        for key, _, value in (line.partition("=") for line in text.splitlines() if "=" in line)
    )


@pytest.fixture
def embedded(pyz: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_pyz(pyz, tmp_path / "root")
    yield server
    stop(server)


def test_no_anonymous_takeover_after_every_package_was_deleted(
    embedded: ServerProcess, tmp_path: Path
) -> None:
    write = embedded_secrets(embedded.live.root)["write_secret"]
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    assert upload(embedded.live, wheel, secret=write)[0] == 200
    status, _, _ = embedded.live.request(
        "DELETE", f"/api/files/demo-pkg/{wheel.name}", auth=("local", write)
    )
    assert status == 200
    status, answer = initialize(embedded, CONFIG)
    assert status == 403, answer
    # The embedded repository still serves with its own secrets.
    assert embedded.live.request("GET", "/simple/", auth=("local", write))[0] == 200


@pytest.mark.parametrize("name", ["../../other", "..", "a/b", "a\\\\b", ".hidden", "x" * 65])
def test_initialize_refuses_repository_names_that_are_not_plain_names(
    embedded: ServerProcess, tmp_path: Path, name: str
) -> None:
    config = CONFIG.replace("[local]", f'["{name}"]')
    status, answer = initialize(embedded, config)
    assert status == 400, answer
    assert b"repository name" in answer
    assert not (tmp_path / "other").exists() and not (tmp_path / "cache").exists()
    assert {p.name for p in embedded.live.root.iterdir()} <= {
        "embedded-secrets.toml", "session-key", "cache", "audit.log",
    }  # fmt: skip
    # The fresh server may still be configured properly afterwards.
    assert initialize(embedded, CONFIG)[0] == 200


def test_a_deleted_project_is_not_sent_to_the_extra_index(pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    server = start_pyz(pyz, tmp_path / "root", "--config", str(config))
    try:
        live = server.live
        wheel = make_wheel(tmp_path, "internal-tool", "1.0")
        assert upload(live, wheel)[0] == 200
        path = f"/api/files/internal-tool/{wheel.name}"
        assert live.request("DELETE", path, auth=("local", WRITE))[0] == 200
        status, headers, _ = live.request("GET", "/simple/internal-tool/")
        assert status == 404, headers.get("location")  # never a 302 to the public index
        # A project this index never held still goes to the extra index (the original's meaning).
        status, headers, _ = live.request("GET", "/simple/never-here/")
        assert status == 302 and headers["location"] == "https://pypi.org/simple/never-here/"
    finally:
        stop(server)


def test_a_configuration_error_never_shows_a_secret(pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG.replace('read_secret = "read-secret"', "read_secret = 31415926535897"))
    result = run_pyz(pyz, "server", str(tmp_path / "root"), "--config", str(config))
    assert result.returncode == 2
    assert "local.read_secret" in result.stderr and "is not a string" in result.stderr
    assert "31415926535897" not in result.stderr + result.stdout


def test_the_initialize_secret_can_come_from_the_environment(pyz: Path, tmp_path: Path) -> None:
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "INIT_SECRET": "from-the-environment"}
    args = ("--config", str(config), "--initialize_secret_env", "INIT_SECRET")
    server = start_pyz(pyz, tmp_path / "root", *args, env=env)
    try:
        body = urlencode({"config": CONFIG}).encode()
        headers = {"Content-Type": FORM}
        status, _, _ = server.live.request(
            "POST", "/initialize/", body, headers, auth=("admin", "from-the-environment")
        )
        assert status == 200
        status, _, _ = server.live.request(
            "POST", "/initialize/", body, headers, auth=("admin", "INIT_SECRET")
        )
        assert status == 403
        assert "from-the-environment" not in Path(f"/proc/{server.process.pid}/cmdline").read_text()
    finally:
        stop(server)


def test_the_embedded_secrets_are_printed_on_the_first_start_only(
    pyz: Path, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    first = start_pyz(pyz, root)
    stop(first)
    write = embedded_secrets(root)["write_secret"]
    assert write in first.output()
    second = start_pyz(pyz, root)
    stop(second)
    assert write not in second.output()
    assert "embedded-secrets.toml" in second.output()


def test_initialize_makes_a_world_readable_config_private(pyz: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "config.toml").write_text(CONFIG)
    (root / "config.toml").chmod(0o644)  # as an operator's `cp` or an older version left it
    secret_file = tmp_path / "init-secret"
    secret_file.write_text("s3cret\n")
    args = ("--config", str(root / "config.toml"), "--initialize_secret_file", str(secret_file))
    server = start_pyz(pyz, root, *args)
    try:
        body = urlencode({"config": CONFIG}).encode()
        headers = {"Content-Type": FORM}
        status, _, _ = server.live.request("POST", "/initialize/", body, headers, ("a", "s3cret"))
        assert status == 200
        assert (root / "config.toml").stat().st_mode & 0o777 == 0o600
    finally:
        stop(server)


def test_a_symlink_planted_in_storage_is_never_listed_or_served(pyz: Path, tmp_path: Path) -> None:
    """Issue 9: `update_index` followed a symlink in storage and the server served its target."""
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    root = tmp_path / "root"
    storage = root / "cache" / "local" / "storage"
    (tmp_path / "elsewhere").mkdir()
    secret_wheel = make_wheel(tmp_path / "elsewhere", "secret-pkg", "1.0")
    (storage / "secret-pkg").mkdir(parents=True)
    (storage / "secret-pkg" / secret_wheel.name).symlink_to(secret_wheel)
    (storage / "linked-dir").symlink_to(secret_wheel.parent, target_is_directory=True)
    result = run_pyz(pyz, "update_index", "file_system", "local", "--root", str(root))
    assert result.returncode == 0, result.stderr
    assert "secret" not in result.stdout.replace("0 files indexed", "")
    server = start_pyz(pyz, root, "--config", str(config), "--extra_index_url", "")
    try:
        assert server.live.request("GET", "/simple/secret-pkg/")[0] == 404
        status, _, body = server.live.request("GET", f"/simple/secret-pkg/{secret_wheel.name}")
        assert status == 404 and body != secret_wheel.read_bytes()
        # A file swapped for a symlink after it was listed is refused too.
        real = make_wheel(tmp_path, "real-pkg", "1.0")
        assert upload(server.live, real)[0] == 200
        stored = storage / "real-pkg" / real.name
        stored.unlink()
        stored.symlink_to(secret_wheel)
        status, _, body = server.live.request("GET", f"/simple/real-pkg/{real.name}")
        assert status == 404 and body != secret_wheel.read_bytes()
    finally:
        stop(server)
