"""The GitHub backend end to end: the built pyz, real twine, pip and uv, the fake GitHub.

The repository `alice/packages` is private: alice's token pushes, bob's pulls, carol's sees
nothing. The server's own token (the admin secret, given through the environment) belongs to
`ci-bot`, who may only pull: syncing and downloads need no more.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from factory import make_sdist
from factory import make_wheel
from fake_github import FakeGitHub
from support import Live
from support import ServerProcess
from support import pip_install
from support import poll
from support import run_pyz
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install
from support_upload import basic
from support_upload import upload

from pywharf.config import load_toml

OWNER, REPO = "alice", "packages"
WRITE_TOKEN = "ghp_aliceWritesPackages0123456789abcdefAB"
READ_TOKEN = "ghp_bobReadsPackages0123456789abcdefABCDE"
NO_ACCESS_TOKEN = "ghp_carolSeesNothing0123456789abcdefABCD"
SERVER_TOKEN = "ghp_ciBotServerToken0123456789abcdefABCDE"
TOKEN_VARIABLE = "PYWHARF_TEST_GITHUB_TOKEN"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_user(OWNER, WRITE_TOKEN)
        fake.add_user("bob", READ_TOKEN)
        fake.add_user("carol", NO_ACCESS_TOKEN)
        fake.add_user("ci-bot", SERVER_TOKEN)
        fake.add_repo(OWNER, REPO, private=True)
        fake.grant(OWNER, REPO, "bob", "pull")
        fake.grant(OWNER, REPO, "ci-bot", "pull")
        yield fake


def start_github_server(
    pyz: Path, github: FakeGitHub, root: Path, download: str = "redirect"
) -> ServerProcess:
    section = {"type": "github", "owner": OWNER, "repo": REPO, "api_url": github.api_url,
               "uploads_url": github.uploads_url, "download": download,
               "sync_index_interval": 0.2}  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    config = root.parent / f"{root.name}-repos.toml"
    config.write_text(tomli_w.dumps({"local": section}))
    admin = root.parent / f"{root.name}-admin.toml"
    admin.write_text(tomli_w.dumps({"local": {"type": "github", "env": TOKEN_VARIABLE}}))
    env = {**os.environ, TOKEN_VARIABLE: SERVER_TOKEN}
    return start_pyz(pyz, root, "--config", str(config), "--admin_secret", str(admin),
                     "--extra_index_url", "", env=env)  # fmt: skip


@pytest.fixture
def server(pyz: Path, github: FakeGitHub, tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_github_server(pyz, github, tmp_path / "root")
    try:
        yield process
    finally:
        stop(process)
        assert "Traceback" not in process.output()
        assert SERVER_TOKEN not in process.output()


@pytest.fixture
def proxy_server(pyz: Path, github: FakeGitHub, tmp_path: Path) -> Iterator[ServerProcess]:
    process = start_github_server(pyz, github, tmp_path / "proxy-root", download="proxy")
    try:
        yield process
    finally:
        stop(process)
        assert "Traceback" not in process.output()


@pytest.fixture
def dists(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "dists"
    folder.mkdir()
    return [
        make_wheel(folder, "demo-pkg", "1.0", requires_python=">=3.8"),
        make_sdist(folder, "demo-pkg", "1.0"),
        make_wheel(folder, "demo-pkg", "2.0"),
    ]


def releases(github: FakeGitHub) -> list[str]:
    return [r.tag_name for r in github.releases(OWNER, REPO)]


def drafts(github: FakeGitHub) -> list[str]:
    return [r.tag_name for r in github.releases(OWNER, REPO) if r.draft]


def index_names(github: FakeGitHub) -> set[str]:
    data = github.file(OWNER, REPO, "index.toml")
    entries = load_toml(data.decode(), "index.toml")["pkgs"] if data else []
    return {f"{e['package']}.{e['ext']}" for e in entries}


def listed(live: Live, project: str = "demo-pkg", secret: str = READ_TOKEN) -> str:
    status, _, body = live.request("GET", f"/simple/{project}/", auth=("local", secret))
    return body.decode() if status == 200 else ""


def storage_calls(github: FakeGitHub) -> list[dict[str, str]]:
    return [c.request_headers for c in github.calls if c.origin == "storage"]


def update_index(pyz: Path, github: FakeGitHub, root: Path, repo: str = REPO) -> str:
    """`update_index github` as the workflow runs it: the token in an environment variable."""
    result = run_pyz(pyz, "update_index", "github", "local", "--secret_env", TOKEN_VARIABLE,
                     "--owner", OWNER, "--repo", repo, "--api_url", github.api_url,
                     "--root", str(root), env={TOKEN_VARIABLE: WRITE_TOKEN})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert WRITE_TOKEN not in result.stdout + result.stderr
    return result.stdout


# --- upload and install ---------------------------------------------------------------------------


def test_twine_uploads_and_pip_and_uv_install_through_github_s_signed_urls(
    server: ServerProcess, github: FakeGitHub, dists: list[Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = twine_upload(server, dists, home, password=WRITE_TOKEN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(releases(github)) == sorted(p.name for p in dists)
    assert drafts(github) == []
    assert index_names(github) == {p.name for p in dists}
    index = server.live.index_url(READ_TOKEN)
    pip = pip_install(index, "demo-pkg==1.0", tmp_path / "pip-target", home)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (tmp_path / "pip-target" / "demo_pkg" / "__init__.py").exists()
    uv = uv_install(index, "demo-pkg", tmp_path / "uv-target", home)
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert "'2.0'" in (tmp_path / "uv-target" / "demo_pkg" / "__init__.py").read_text()
    # Both fetched the bytes from the storage host, and neither sent it our credentials.
    seen = storage_calls(github)
    assert len(seen) >= 2
    assert all("authorization" not in headers for headers in seen)


def test_proxy_mode_serves_the_bytes_itself(
    proxy_server: ServerProcess, github: FakeGitHub, dists: list[Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = twine_upload(proxy_server, dists[:1], home, password=WRITE_TOKEN)
    assert result.returncode == 0, result.stdout + result.stderr
    index = proxy_server.live.index_url(READ_TOKEN)
    for target in ("pip-a", "pip-b"):
        pip = pip_install(index, "demo-pkg==1.0", tmp_path / target, home)
        assert pip.returncode == 0, pip.stdout + pip.stderr
    uv = uv_install(index, "demo-pkg==1.0", tmp_path / "uv-target", home)
    assert uv.returncode == 0, uv.stdout + uv.stderr
    assert len(storage_calls(github)) <= 2  # the wheel and its metadata, once each, by us
    copy = proxy_server.live.root / "cache" / "local" / "files" / dists[0].name
    assert copy.read_bytes() == dists[0].read_bytes()


def test_duplicates_409_identical_200_read_token_403_bad_token_401(
    server: ServerProcess, github: FakeGitHub, dists: list[Path], tmp_path: Path
) -> None:
    live = server.live
    wheel = dists[0]
    assert upload(live, wheel, secret=WRITE_TOKEN)[0] == 200
    assert upload(live, wheel, secret=WRITE_TOKEN)[0] == 200  # identical bytes
    impostor = make_wheel(tmp_path, "demo-pkg", "1.0", payload_bytes=64)
    status, _, body = upload(live, impostor, secret=WRITE_TOKEN)
    assert status == 409 and body.startswith(b"File already exists")
    status, _, _ = upload(live, dists[1], secret=READ_TOKEN)
    assert status == 403
    for secret in (NO_ACCESS_TOKEN, "ghp_revoked"):
        status, headers, _ = upload(live, dists[1], secret=secret)
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert releases(github) == [wheel.name]


def test_a_flood_of_bad_tokens_costs_github_a_bounded_number_of_calls(
    server: ServerProcess, github: FakeGitHub
) -> None:
    live = server.live
    before = github.requests().count(f"GET /repos/{OWNER}/{REPO}")
    started = time.monotonic()
    connection = http.client.HTTPConnection(live.host, live.port, timeout=10)
    try:
        statuses = []
        for n in range(150):
            headers = {"Authorization": basic("local", f"ghp_guess{n:04d}")}
            connection.request("GET", "/simple/", headers=headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        # Refused, then throttled: after 20 failures the address is refused unchecked (429).
        assert statuses[:20] == [401] * 20 and set(statuses[20:]) <= {401, 429}
        assert statuses.count(429) > 100
    finally:
        connection.close()
    elapsed = time.monotonic() - started
    checks = github.requests().count(f"GET /repos/{OWNER}/{REPO}") - before
    assert 1 <= checks <= 2 + 2 * elapsed + 1  # the server's bound: 2 checks per second


# --- GitHub failing: clean answers, nothing half-made ---------------------------------------------

FAULTS = {
    # The caller's token refused at any step is their answer, with one line (issue 9).
    "create-401": (("POST", r"/releases$", 401), {}, 401),
    "asset-403": (("POST", r"/assets$", 403), {"origin": "uploads"}, 403),
    "index-401": (("PUT", r"/contents/index\.toml$", 401), {}, 401),
    "create-404": (("POST", r"/releases$", 404), {}, 404),
    "create-5xx": (("POST", r"/releases$", 502), {}, 503),
    "asset-5xx": (("POST", r"/assets$", 502), {"origin": "uploads"}, 503),
    "asset-422-duplicate": (("POST", r"/assets$", 422), {"origin": "uploads"}, 503),
    "publish-5xx": (("PATCH", r"/releases/\d+$", 500), {"times": 4}, 503),
    "index-409": (("PUT", r"/contents/index\.toml$", 409), {"times": 5}, 503),
    "index-422": (("PUT", r"/contents/index\.toml$", 422), {"times": 5}, 503),
    "index-404": (("PUT", r"/contents/index\.toml$", 404), {}, 404),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_github_fault_is_answered_cleanly_and_leaves_no_release(
    server: ServerProcess, github: FakeGitHub, dists: list[Path], name: str
) -> None:
    (method, path, status), options, expected = FAULTS[name]
    github.inject(method, path, status, **options)  # type: ignore[arg-type]
    answer, headers, body = upload(server.live, dists[1], secret=WRITE_TOKEN)
    assert answer == expected, body
    assert headers["content-type"].startswith("text/plain")
    assert body.count(b"\n") == 1 and b"Traceback" not in body
    assert WRITE_TOKEN.encode() not in body
    if answer == 401:
        assert headers["www-authenticate"].startswith("Basic")
    assert releases(github) == [] and index_names(github) == set()
    assert upload(server.live, dists[1], secret=WRITE_TOKEN)[0] == 200  # then it works


@pytest.mark.parametrize("kind", ["primary", "secondary"])
def test_a_rate_limit_is_a_503_with_its_reason(
    server: ServerProcess, github: FakeGitHub, dists: list[Path], kind: str
) -> None:
    reset = int(time.time()) + 3600
    github.inject_rate_limit("POST", r"/releases$", kind=kind, retry_after=600, reset=reset)
    status, _, body = upload(server.live, dists[1], secret=WRITE_TOKEN)
    assert status == 503 and b"rate limit" in body
    assert releases(github) == []


@pytest.mark.slow
def test_a_sync_failure_keeps_the_last_good_index(
    server: ServerProcess, github: FakeGitHub, dists: list[Path]
) -> None:
    assert upload(server.live, dists[1], secret=WRITE_TOKEN)[0] == 200
    github.inject("GET", r"/contents/index\.toml$", 502, times=4)  # one sync, all its tries
    mark = len(github.calls)
    poll(lambda: True if len(github.calls) > mark + 4 else None, "failed syncs")
    assert dists[1].name in listed(server.live)


# --- sync, update_index, the original's repositories ----------------------------------------------


def test_a_second_server_sees_an_upload_after_its_sync(
    pyz: Path, server: ServerProcess, github: FakeGitHub, dists: list[Path], tmp_path: Path
) -> None:
    other = start_github_server(pyz, github, tmp_path / "second-root")
    try:
        assert upload(server.live, dists[0], secret=WRITE_TOKEN)[0] == 200
        assert dists[0].name in listed(server.live)  # at once on the server that took it
        poll(lambda: dists[0].name in listed(other.live) or None, "the second server's sync")
    finally:
        stop(other)


def test_update_index_picks_up_a_release_made_by_hand(
    pyz: Path, server: ServerProcess, github: FakeGitHub, dists: list[Path]
) -> None:
    assert upload(server.live, dists[0], secret=WRITE_TOKEN)[0] == 200
    sdist = dists[1]
    body = {"name": "demo-pkg", "version": "1.0", "distrib": "demo-pkg",
            "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}  # fmt: skip
    github.add_release(OWNER, REPO, sdist.name, body=tomli_w.dumps(body),
                       assets={sdist.name: sdist.read_bytes()})  # fmt: skip
    root = server.live.root.parent / "cli-root"
    output = update_index(pyz, github, root)
    assert f"added {sdist.name}" in output
    assert output.strip().endswith("2 files indexed, 1 changes")
    poll(lambda: sdist.name in listed(server.live) or None, "the sync after update_index")
    assert update_index(pyz, github, root).strip() == "2 files indexed, 0 changes"


def test_a_repository_of_the_original_pywharf_is_served_unchanged(
    server: ServerProcess, github: FakeGitHub, tmp_path: Path
) -> None:
    folder = tmp_path / "legacy"
    folder.mkdir()
    wheel = make_wheel(folder, "legacy-tool", "0.3")
    data = wheel.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    meta = {"name": "legacy-tool", "version": "0.3", "filetype": "bdist_wheel",
            "description": "README " * 100, ":action": "file_upload", "protocol_version": "1",
            "distrib": "legacy-tool", "sha256": sha256}  # fmt: skip
    release = github.add_release(OWNER, REPO, wheel.name, body=tomli_w.dumps(meta),
                                 assets={wheel.name: data})  # fmt: skip
    url = f"{github.api_url}/repos/{OWNER}/{REPO}/releases/assets/{release.assets[0].id}"
    entry = {"type": "github", "distrib": "legacy-tool", "package": wheel.name[:-4],
             "ext": "whl", "sha256": sha256, "url": url, "meta": meta}  # fmt: skip
    original = tomli_w.dumps({"mtime": 1594491762, "pkgs": [entry]}).encode()
    github.put_file(OWNER, REPO, "index.toml", original)
    poll(lambda: wheel.name in listed(server.live, "legacy-tool") or None, "the original index")
    assert f"#sha256={sha256}" in listed(server.live, "legacy-tool")
    home = tmp_path / "home"
    pip = pip_install(server.live.index_url(READ_TOKEN), "legacy-tool", tmp_path / "t", home)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert github.file(OWNER, REPO, "index.toml") == original  # read, never rewritten


def test_yank_and_delete_commands_reach_every_server(
    pyz: Path, server: ServerProcess, github: FakeGitHub, dists: list[Path]
) -> None:
    for path in dists[:2]:
        assert upload(server.live, path, secret=WRITE_TOKEN)[0] == 200
    flags = ["--secret_env", TOKEN_VARIABLE, "--owner", OWNER, "--repo", REPO,
             "--api_url", github.api_url, "--uploads_url", github.uploads_url,
             "--root", str(server.live.root.parent / "cli-root")]  # fmt: skip
    env = {TOKEN_VARIABLE: WRITE_TOKEN}
    yank = run_pyz(pyz, "yank", "github", "local", "demo-pkg", dists[0].name,
                   "--reason", "broken", *flags, env=env)  # fmt: skip
    assert yank.returncode == 0, yank.stderr
    delete = run_pyz(pyz, "delete", "github", "local", "demo-pkg", dists[1].name, *flags, env=env)
    assert delete.returncode == 0, delete.stderr
    assert releases(github) == [dists[0].name]
    poll(lambda: 'data-yanked="broken"' in listed(server.live) or None, "the yank")
    poll(lambda: dists[1].name not in listed(server.live) or None, "the delete")
    impostor_folder = server.live.root.parent / "impostor"
    impostor_folder.mkdir()
    impostor = make_sdist(impostor_folder, "demo-pkg", "1.0", requires_python=">=3")
    assert upload(server.live, impostor, secret=WRITE_TOKEN)[0] == 409  # the tombstone holds


# --- setting a repository up ----------------------------------------------------------------------


def test_init_pkg_repo_and_gen_gh_pages_through_the_pyz(
    pyz: Path, github: FakeGitHub, dists: list[Path], tmp_path: Path
) -> None:
    result = run_pyz(pyz, "github.init_pkg_repo", "team", WRITE_TOKEN, "new-packages",
                     "--sync_index_interval", "30", "--api_url", github.api_url)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert WRITE_TOKEN not in result.stdout + result.stderr
    repo = github.world.repo(OWNER, "new-packages")
    assert repo is not None and repo.private
    workflow = github.file(OWNER, "new-packages", ".github/workflows/update-index.yml")
    assert workflow is not None
    assert b"::set-env" not in workflow and b"${{ secrets.GITHUB_TOKEN }}" in workflow
    assert github.file(OWNER, "new-packages", ".github/pywharf/pywharf.pyz") == pyz.read_bytes()
    assert "sync_index_interval = 30" in result.stdout
    github.grant(OWNER, "new-packages", "ci-bot", "pull")
    release = github.add_release(OWNER, "new-packages", dists[1].name, body=tomli_w.dumps(
        {"distrib": "demo-pkg", "sha256": hashlib.sha256(dists[1].read_bytes()).hexdigest()}),
        assets={dists[1].name: dists[1].read_bytes()})  # fmt: skip
    assert release.assets
    rebuilt = update_index(pyz, github, tmp_path / "cli-root", repo="new-packages")
    assert f"added {dists[1].name}" in rebuilt
    site = tmp_path / "site"
    pages = run_pyz(pyz, "github.gen_gh_pages", "team", WRITE_TOKEN, OWNER, "new-packages",
                    str(site), "--api_url", github.api_url)  # fmt: skip
    assert pages.returncode == 0, pages.stderr
    page = (site / "demo-pkg" / "index.html").read_text()
    assert f"/releases/download/{dists[1].name}/{dists[1].name}#sha256=" in page
    assert not (site / "index.toml").exists()
