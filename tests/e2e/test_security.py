"""Issue 9's attacks, replayed through the pyz: each test failed on the build that had the hole."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from factory import make_wheel
from support import CONFIG
from support import WRITE
from support import ServerProcess
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
def embedded(pyz: Path, tmp_path: Path) -> ServerProcess:
    server = start_pyz(pyz, tmp_path / "root")
    yield server  # type: ignore[misc]
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
        "embedded-secrets.toml", "session-key", "cache",
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
