"""The GitHub backend against the fake GitHub: the shared contract, then GitHub's own rules.

The repository `alice/packages` is private. alice (owner) pushes, bob may pull, carol sees
nothing; the server's own token (the admin secret) belongs to `ci-bot`, a push collaborator.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from contract import BackendContract
from contract import _impostor_of
from contract import fetch
from contract import index_of
from contract import stage
from factory import make_sdist
from factory import make_wheel
from fake_github import FakeGitHub

from pywharf.auth import Permission
from pywharf.backends import Backend
from pywharf.backends import LocalFile
from pywharf.backends import Redirect
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.github import GitHubBackend
from pywharf.backends.github_errors import github_storage_error
from pywharf.backends.github_index import INDEX_WRITE_ATTEMPTS
from pywharf.backends.github_upload import DRAFT_WAITS
from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.config import load_toml
from pywharf.config import parse_repositories
from pywharf.errors import ConfigError
from pywharf.errors import ContentConflict
from pywharf.errors import CredentialInvalid
from pywharf.errors import CredentialRefused
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable
from pywharf.index import Delete
from pywharf.index import FileRecord
from pywharf.index import Yank

OWNER, REPO = "alice", "packages"
WRITE_TOKEN = "ghp_aliceWritesPackages0123456789abcdefAB"
READ_TOKEN = "ghp_bobReadsPackages0123456789abcdefABCDE"
NO_ACCESS_TOKEN = "ghp_carolSeesNothing0123456789abcdefABCD"
SERVER_TOKEN = "ghp_ciBotServerToken0123456789abcdefABCDE"


def seed(github: FakeGitHub) -> None:
    github.add_user(OWNER, WRITE_TOKEN)
    github.add_user("bob", READ_TOKEN)
    github.add_user("carol", NO_ACCESS_TOKEN)
    github.add_user("ci-bot", SERVER_TOKEN)
    github.add_repo(OWNER, REPO, private=True)
    github.grant(OWNER, REPO, "bob", "pull")
    github.grant(OWNER, REPO, "ci-bot", "push")


def github_config(github: FakeGitHub, name: str = "local", **extra: object) -> str:
    section = {"type": "github", "owner": OWNER, "repo": REPO, "api_url": github.api_url,
               "uploads_url": github.uploads_url, "sync_index_interval": 0.2, **extra}  # fmt: skip
    return tomli_w.dumps({name: section})


def new_backend(
    github: FakeGitHub, root: Path, admin: str | None = SERVER_TOKEN, **extra: object
) -> GitHubBackend:
    text = github_config(github, "local", **extra)
    (config,) = parse_repositories(text, "test", backend_settings)
    backend = create_backend(config, root, admin)
    assert isinstance(backend, GitHubBackend)
    return backend


class FakeGitHubTamper:
    """Changes made on GitHub by hand (the web UI, the original pywharf), behind the index."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        project = filename.split("-")[0].replace("_", "-").lower()
        body = {"name": project, "distrib": project, "sha256": hashlib.sha256(data).hexdigest()}
        self.github.add_release(
            OWNER, REPO, filename, body=tomli_w.dumps(body), assets={filename: data}
        )

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        with self.github.world.lock:
            repo = self.github.world.repo(OWNER, REPO)
            assert repo is not None
            (found,) = [r for r in repo.releases.values() if r.tag_name == record.filename]
            del repo.releases[found.id]

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        # Someone replaced the asset's bytes: GitHub's digest and size now disagree with us.
        with self.github.world.lock:
            repo = self.github.world.repo(OWNER, REPO)
            assert repo is not None
            (found,) = [r for r in repo.releases.values() if r.tag_name == record.filename]
            asset = next(a for a in found.assets if a.name == record.filename)
            asset.data += b"tampered"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        seed(fake)
        yield fake


@pytest.fixture
def backend(github: FakeGitHub, tmp_path: Path) -> Iterator[GitHubBackend]:
    backend = new_backend(github, tmp_path / "root")
    yield backend
    backend.close()


@pytest.fixture
def sleeps() -> list[float]:
    """The waits a `quick` backend asked for (it never really waits)."""
    return []


@pytest.fixture
def quick(github: FakeGitHub, tmp_path: Path, sleeps: list[float]) -> Iterator[GitHubBackend]:
    """A backend whose retries, backoff and draft waits cost no time: they land in `sleeps`.

    Not for the concurrent contract tests: a draft wait there really waits for another thread.
    """
    (config,) = parse_repositories(github_config(github), "test", backend_settings)
    backend = GitHubBackend(config, tmp_path / "root", SERVER_TOKEN, sleep=sleeps.append)
    yield backend
    backend.close()


@pytest.fixture
def twin(github: FakeGitHub, tmp_path: Path) -> Iterator[GitHubBackend]:
    twin = new_backend(github, tmp_path / "twin-root")
    yield twin
    twin.close()


@pytest.fixture
def secrets() -> tuple[str, str]:
    return READ_TOKEN, WRITE_TOKEN


@pytest.fixture
def credential() -> str:
    return WRITE_TOKEN


@pytest.fixture
def tamper(github: FakeGitHub) -> FakeGitHubTamper:
    return FakeGitHubTamper(github)


class TestGitHubContract(BackendContract):
    keeps_tokens = False


# --- helpers -------------------------------------------------------------------------------------


def put(backend: GitHubBackend, path: Path, token: str = WRITE_TOKEN, **form: str) -> FileRecord:
    upload = stage(backend, path, **form)
    try:
        return backend.put(upload, token)
    finally:
        upload.path.unlink(missing_ok=True)


def index_toml(github: FakeGitHub) -> dict[str, Any]:
    data = github.file(OWNER, REPO, "index.toml")
    assert data is not None, "no index.toml on the default branch"
    return load_toml(data.decode(), "index.toml")


def releases(github: FakeGitHub) -> list[Any]:
    return github.releases(OWNER, REPO)


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.8")


@pytest.fixture
def sdist(tmp_path: Path) -> Path:
    return make_sdist(tmp_path, "demo-pkg", "1.0")


# --- the edge: client errors become storage errors in one place ----------------------------------


@pytest.mark.parametrize(
    ("error", "callers", "servers"),
    [
        (ResourceNotFound("gone", 404), StorageNotFound, StorageNotFound),
        (Refused("no push", 403), CredentialRefused, StorageUnavailable),
        (Refused("unknown token", 401), CredentialInvalid, StorageUnavailable),
        (Unavailable("down", 502), StorageUnavailable, StorageUnavailable),
        (Conflict("stale sha", 409), ContentConflict, ContentConflict),
        (AlreadyExists("taken", "a.whl", 422), DistributionExists, DistributionExists),
        (ClientError("odd answer", 410), StorageError, StorageError),
    ],
)
def test_client_errors_map_by_whose_token_was_refused(
    error: ClientError, callers: type[StorageError], servers: type[StorageError]
) -> None:
    assert type(github_storage_error(error, callers_token=True)) is callers
    assert type(github_storage_error(error, callers_token=False)) is servers
    assert [CredentialInvalid.status, CredentialRefused.status] == [401, 403]


def test_every_public_method_passes_the_edge() -> None:
    """Every public method that calls GitHub maps the client's errors; `close` and the token
    methods (pywharf tokens do not apply on GitHub) and `store_early` call nothing."""
    methods = {name: value for name, value in vars(GitHubBackend).items() if callable(value)}
    public = {name for name in methods if not name.startswith("_")} | {"__init__"}
    assert {"authorize", "put", "apply_change", "read_index", "open"} <= public
    calls_nothing = {"close", "read_tokens", "update_tokens", "store_early"}
    unmapped = {n for n in public - calls_nothing if not hasattr(methods[n], "__wrapped__")}
    assert unmapped == set()


def test_the_server_s_token_refused_is_a_503_not_the_reader_s_fault(
    github: FakeGitHub, backend: GitHubBackend
) -> None:
    github.revoke(SERVER_TOKEN)
    with pytest.raises(StorageUnavailable) as caught:
        backend.read_index(None)
    assert caught.value.status == 503 and "rejected the token" in str(caught.value)


# --- authorize -----------------------------------------------------------------------------------


def test_permissions_come_from_github(github: FakeGitHub, backend: GitHubBackend) -> None:
    assert backend.authorize(WRITE_TOKEN) is Permission.WRITE
    assert backend.authorize(READ_TOKEN) is Permission.READ
    assert backend.authorize(NO_ACCESS_TOKEN) is Permission.NONE  # GitHub answers 404
    assert backend.authorize("ghp_unknown") is Permission.NONE  # GitHub answers 401
    assert backend.authorize("two words") is Permission.NONE  # never sent
    assert github.requests().count(f"GET /repos/{OWNER}/{REPO}") == 4  # one call per check


def test_an_archived_repository_only_reads(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_repo(OWNER, "old", archived=True)
    backend = new_backend(github, tmp_path, repo="old")
    assert backend.authorize(WRITE_TOKEN) is Permission.READ


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502, "times": 4},
        {"status": 403, "headers": {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}},
    ],
    ids=["outage", "rate-limit"],
)
def test_an_outage_is_not_a_wrong_token(
    github: FakeGitHub, quick: GitHubBackend, sleeps: list[float], fault: dict[str, Any]
) -> None:
    """A 401 would be cached as a wrong secret; GitHub being down must answer 503 instead."""
    reset = str(int(time.time()) + 3600)
    headers = {k: (reset if v == "1" else v) for k, v in fault.get("headers", {}).items()}
    github.inject(
        "GET", rf"^/repos/{OWNER}/{REPO}$", fault["status"], times=fault.get("times", 1),
        headers=headers,
    )  # fmt: skip
    with pytest.raises(StorageUnavailable) as caught:
        quick.authorize(WRITE_TOKEN)
    assert caught.value.status == 503
    assert WRITE_TOKEN not in str(caught.value)
    assert len(sleeps) == (3 if fault["status"] == 502 else 0)  # backoff, then give up


# --- the layout ----------------------------------------------------------------------------------


def test_an_upload_is_one_published_release_in_the_original_layout(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path
) -> None:
    record = put(backend, wheel, summary="A test package")
    (release,) = releases(github)
    assert release.tag_name == release.name == wheel.name
    assert not release.draft
    body = load_toml(release.body, "body")
    assert body["distrib"] == "demo-pkg"  # what the original's update_index requires
    assert body["sha256"] == record.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert body["summary"] == "A test package"  # the form fields, flat
    assert all(isinstance(v, (str, int, float)) for v in body.values())  # the original: str->str
    assets = {a.name: a for a in release.assets}
    assert assets[wheel.name].data == wheel.read_bytes()
    assert assets[wheel.name].content_type == "application/zip"
    assert assets[wheel.name + ".metadata"].data.startswith(b"Metadata-Version")
    (entry,) = index_toml(github)["pkgs"]
    assert entry["type"] == "github" and entry["distrib"] == "demo-pkg"
    assert f"{entry['package']}.{entry['ext']}" == wheel.name
    assert entry["url"].endswith(f"/releases/assets/{assets[wheel.name].id}")
    assert entry["asset_id"] == assets[wheel.name].id
    assert entry["metadata_asset_id"] == assets[wheel.name + ".metadata"].id
    assert all(not isinstance(v, (dict, list)) for v in entry["meta"].values())


def test_an_sdist_is_uploaded_as_gzip(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    put(backend, sdist)
    (release,) = releases(github)
    (asset,) = release.assets
    assert asset.content_type == "application/gzip"


def test_a_renamed_asset_is_found_by_our_map(
    github: FakeGitHub, backend: GitHubBackend, tmp_path: Path
) -> None:
    """GitHub renames "!" (an epoch) to "."; the listed filename stays ours."""
    wheel = make_wheel(tmp_path, "demo-pkg", "1!2.0")
    record = put(backend, wheel)
    (release,) = releases(github)
    names = {a.name for a in release.assets}
    assert wheel.name not in names and wheel.name.replace("!", ".") in names
    assert fetch(backend.open(record)) == wheel.read_bytes()
    assert index_of(backend).records() == [record]
    assert backend.rebuild_index().lines()[-1] == "1 files indexed, 0 changes"


def test_a_local_version_keeps_its_plus(
    github: FakeGitHub, backend: GitHubBackend, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0+local")
    put(backend, wheel)
    (release,) = releases(github)
    assert wheel.name in {a.name for a in release.assets}  # sent as %2B, not as a space


# --- uploads that fail leave nothing behind ------------------------------------------------------

# name: (method, path, status, times, origin) of GitHub's fault -> the status we answer
UPLOAD_FAULTS = {
    "asset-502": (("POST", r"/assets$", 502, 1, "uploads"), 503),
    "asset-duplicate-422": (("POST", r"/assets$", 422, 1, "uploads"), 503),
    "publish-500": (("PATCH", r"/releases/\d+$", 500, 4, "api"), 503),
    "index-409-always": (("PUT", r"/contents/index\.toml$", 409, INDEX_WRITE_ATTEMPTS, "api"), 503),
    "index-422-always": (("PUT", r"/contents/index\.toml$", 422, INDEX_WRITE_ATTEMPTS, "api"), 503),
    "index-404": (("PUT", r"/contents/index\.toml$", 404, 1, "api"), 404),
    # The caller's token refused at any step is their answer (issue 9), not a 503.
    "create-401": (("POST", r"/releases$", 401, 1, "api"), 401),
    "asset-403": (("POST", r"/assets$", 403, 1, "uploads"), 403),
    "publish-403": (("PATCH", r"/releases/\d+$", 403, 1, "api"), 403),
    "index-401": (("PUT", r"/contents/index\.toml$", 401, 1, "api"), 401),
    "index-403": (("PUT", r"/contents/index\.toml$", 403, 1, "api"), 403),
}


def assert_nothing_stored(github: FakeGitHub, filename: str) -> None:
    assert releases(github) == []
    repo = github.world.repo(OWNER, REPO)
    assert repo is not None and filename not in repo.tags
    assert github.file(OWNER, REPO, "index.toml") is None


@pytest.mark.parametrize("fault", sorted(UPLOAD_FAULTS))
def test_a_failed_upload_leaves_no_release_and_no_tag(
    github: FakeGitHub, quick: GitHubBackend, wheel: Path, fault: str
) -> None:
    backend = quick
    (method, path, status, times, origin), expected = UPLOAD_FAULTS[fault]
    github.inject(method, path, status, times=times, origin=origin)
    with pytest.raises(StorageError) as caught:
        put(backend, wheel)
    assert caught.value.status == expected  # never a 409: nothing is stored
    assert WRITE_TOKEN not in str(caught.value) and "\n" not in str(caught.value)
    assert_nothing_stored(github, wheel.name)
    put(backend, wheel)  # and the same upload then goes through
    assert [r.tag_name for r in releases(github)] == [wheel.name]


@pytest.mark.parametrize("step", ["POST /assets", "PATCH /releases", "PUT /contents"])
def test_a_token_revoked_mid_upload_is_a_401_and_the_server_cleans_up(
    github: FakeGitHub, quick: GitHubBackend, wheel: Path, step: str
) -> None:
    """Revoked, the caller's token cannot delete its own draft: the server's token does."""
    method, path = step.split()
    github.on_request(method, path, lambda: github.revoke(WRITE_TOKEN))
    with pytest.raises(CredentialInvalid) as caught:
        put(quick, wheel)
    assert caught.value.status == 401 and "rejected the token" in str(caught.value)
    assert caught.value.headers[0][0] == "WWW-Authenticate"
    assert_nothing_stored(github, wheel.name)


@pytest.mark.parametrize("status", [409, 422])
def test_a_concurrent_index_write_is_retried(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path, sdist: Path, status: int
) -> None:
    put(backend, sdist)
    github.inject("PUT", r"/contents/index\.toml$", status, times=2)
    put(backend, wheel)
    names = {f"{e['package']}.{e['ext']}" for e in index_toml(github)["pkgs"]}
    assert names == {wheel.name, sdist.name}


def test_another_writer_s_entries_survive_our_write(
    github: FakeGitHub, backend: GitHubBackend, twin: GitHubBackend, wheel: Path, sdist: Path
) -> None:
    assert backend.read_index(None) is not None
    put(twin, sdist)  # backend's copy of index.toml is now stale
    put(backend, wheel)
    names = {f"{e['package']}.{e['ext']}" for e in index_toml(github)["pkgs"]}
    assert names == {wheel.name, sdist.name}


def test_a_rate_limit_fails_fast_with_503(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path
) -> None:
    github.inject_rate_limit("POST", r"/releases$", reset=int(time.time()) + 3600)
    with pytest.raises(StorageUnavailable) as caught:
        put(backend, wheel)
    assert "rate limit" in str(caught.value)
    assert releases(github) == []


def test_a_draft_left_by_a_crash_answers_503_not_409(
    github: FakeGitHub, quick: GitHubBackend, sleeps: list[float], wheel: Path
) -> None:
    backend = quick
    github.add_release(OWNER, REPO, wheel.name, draft=True)
    with pytest.raises(StorageUnavailable) as caught:
        put(backend, wheel)
    assert "draft" in str(caught.value)
    assert sleeps == list(DRAFT_WAITS)  # it waited for the draft to be published, then gave up


# --- duplicates ----------------------------------------------------------------------------------


def test_a_release_published_by_hand_counts_as_stored(
    github: FakeGitHub, backend: GitHubBackend, tamper: FakeGitHubTamper, wheel: Path
) -> None:
    """Identical bytes: the stored record (and the index learns of it); other bytes: 409."""
    tamper.add_behind(backend, wheel.name, wheel.read_bytes())
    record = put(backend, wheel)
    assert record.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert [r.tag_name for r in releases(github)] == [wheel.name]
    assert [e["package"] for e in index_toml(github)["pkgs"]] == [wheel.name[: -len(".whl")]]
    with pytest.raises(DistributionExists):
        put(backend, _impostor_of(wheel))


def test_a_deleted_filename_refuses_other_bytes_even_unsynced(
    github: FakeGitHub, backend: GitHubBackend, twin: GitHubBackend, sdist: Path, tmp_path: Path
) -> None:
    record = put(backend, sdist)
    backend.apply_change(Delete(record.project, record.filename), WRITE_TOKEN)
    other = tmp_path / "other"
    other.mkdir()
    impostor = make_sdist(other, "demo-pkg", "1.0", requires_python=">=3")
    assert impostor.name == sdist.name
    with pytest.raises(DistributionExists):
        put(twin, impostor)  # twin never synced the delete; the remote tombstone says no
    assert releases(github) == []


# --- index sync ----------------------------------------------------------------------------------


def test_an_unchanged_index_costs_a_304(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path
) -> None:
    put(backend, wheel)
    update = backend.read_index(None)
    assert update is not None
    before = len(github.calls)
    assert backend.read_index(update.cursor) is None
    (call,) = github.calls[before:]
    assert call.status == 304 and call.request_headers["if-none-match"] == update.cursor


def test_the_index_is_read_raw_so_it_may_pass_1_mb(
    github: FakeGitHub, backend: GitHubBackend
) -> None:
    entries = [
        {"type": "github", "distrib": f"p{n}", "package": f"p{n}-1.0", "ext": "tar.gz",
         "sha256": "0" * 64, "url": f"{github.api_url}/repos/{OWNER}/{REPO}/releases/assets/{n}",
         "meta": {"description": "x" * 2000}}
        for n in range(600)
    ]  # fmt: skip
    data = tomli_w.dumps({"mtime": 1, "pkgs": entries}).encode()
    assert len(data) > 1024 * 1024
    github.put_file(OWNER, REPO, "index.toml", data)
    update = backend.read_index(None)
    assert update is not None and len(update.events) == 600


def test_the_branch_is_the_repository_default_looked_up_once(
    github: FakeGitHub, tmp_path: Path, wheel: Path
) -> None:
    github.add_repo(OWNER, "trunk", default_branch="trunk")
    github.grant(OWNER, "trunk", "ci-bot", "push")
    backend = new_backend(github, tmp_path, repo="trunk")
    put(backend, wheel)
    backend.read_index(None)
    assert github.file(OWNER, "trunk", "index.toml", branch="trunk") is not None
    assert github.requests().count(f"GET /repos/{OWNER}/trunk") == 1


def test_a_missing_repository_is_a_clear_error(github: FakeGitHub, tmp_path: Path) -> None:
    backend = new_backend(github, tmp_path, repo="nope", admin=None)
    with pytest.raises(StorageNotFound) as caught:
        backend.read_index(None)
    assert "no admin secret" in str(caught.value)


# --- the original pywharf's repositories ---------------------------------------------------------


def original_repository(github: FakeGitHub, folder: Path) -> dict[str, bytes]:
    """Releases and an index.toml as pywharf 0.2 wrote them (a fat meta, `url`, no size)."""
    paths = (make_wheel(folder, "legacy", "0.1"), make_sdist(folder, "legacy", "0.1"))
    files = {path.name: path.read_bytes() for path in paths}
    entries = []
    for name, data in files.items():
        sha256 = hashlib.sha256(data).hexdigest()
        meta = {"name": "legacy", "version": "0.1", "description": "A long README " * 50,
                ":action": "file_upload", "protocol_version": "1", "distrib": "legacy",
                "sha256": sha256}  # fmt: skip
        release = github.add_release(
            OWNER, REPO, name, body=tomli_w.dumps(meta), assets={name: data}
        )
        ext = "whl" if name.endswith(".whl") else "tar.gz"
        url = f"{github.api_url}/repos/{OWNER}/{REPO}/releases/assets/{release.assets[0].id}"
        entries.append({"type": "github", "distrib": "legacy", "package": name[: -len(ext) - 1],
                        "ext": ext, "sha256": sha256, "url": url, "meta": meta})  # fmt: skip
    document = {"mtime": 1594491762, "pkgs": entries}
    github.put_file(OWNER, REPO, "index.toml", tomli_w.dumps(document).encode())
    return files


def test_a_repository_of_the_original_is_served_unchanged(
    github: FakeGitHub, backend: GitHubBackend, tmp_path: Path
) -> None:
    files = original_repository(github, tmp_path)
    before = github.file(OWNER, REPO, "index.toml")
    index = index_of(backend)
    for name, data in files.items():
        record = index.file("legacy", name)  # type: ignore[arg-type]
        assert record is not None and record.sha256 == hashlib.sha256(data).hexdigest()
        assert fetch(backend.open(record)) == data
    assert github.file(OWNER, REPO, "index.toml") == before
    report = backend.rebuild_index()  # update_index then writes it lean, sizes included
    assert report.added == report.removed == [] and sorted(report.repaired) == sorted(files)
    rebuilt = index_of(backend)
    assert {r.filename: r.size for r in rebuilt.records()} == {n: len(d) for n, d in files.items()}
    assert "description" not in index_toml(github)["pkgs"][0]["meta"]


# --- downloads -----------------------------------------------------------------------------------


def test_a_signed_url_is_reused_for_a_minute(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path
) -> None:
    record = put(backend, wheel)
    first, second = backend.open(record), backend.open(record)
    assert isinstance(first, Redirect) and first == second
    assets = [c for c in github.requests() if "/releases/assets/" in c]
    assert len(assets) == 1


def test_proxy_mode_keeps_one_verified_copy(
    github: FakeGitHub, tmp_path: Path, wheel: Path
) -> None:
    backend = new_backend(github, tmp_path / "root", download="proxy")
    record = put(backend, wheel)
    metadata = backend.open_metadata(record)
    first = backend.open(record)
    calls = len(github.calls)
    second = backend.open(record)
    assert isinstance(first, LocalFile) and first == second
    assert len(github.calls) == calls  # served from ROOT, GitHub not asked again
    assert Path(first.path).read_bytes() == wheel.read_bytes()
    assert Path(first.path).is_relative_to(tmp_path / "root" / "cache" / "local" / "files")
    assert hashlib.sha256(fetch(metadata)).hexdigest() == record.metadata_sha256
    storage = [c for c in github.calls if c.origin == "storage"]
    assert storage and all("authorization" not in c.request_headers for c in storage)


def test_proxy_mode_refuses_bytes_that_do_not_match(
    github: FakeGitHub, tmp_path: Path, wheel: Path, tamper: FakeGitHubTamper
) -> None:
    backend = new_backend(github, tmp_path / "root", download="proxy")
    record = put(backend, wheel)
    tamper.damage_behind(backend, record)
    with pytest.raises(StorageError) as caught:
        backend.open(record)
    assert "does not match" in str(caught.value)
    assert list((tmp_path / "root" / "cache" / "local" / "files").iterdir()) == []


def test_the_download_setting_is_checked(github: FakeGitHub, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        new_backend(github, tmp_path, download="mirror")
    assert "download" in str(caught.value) and "'mirror'" in str(caught.value)


# --- yank and delete -----------------------------------------------------------------------------


def test_yank_is_kept_in_the_release_body_and_the_index(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    record = put(backend, sdist)
    backend.apply_change(Yank(record.project, record.filename, "broken"), WRITE_TOKEN)
    (release,) = releases(github)
    assert load_toml(release.body, "body")["yanked"] == "broken"
    assert index_toml(github)["pkgs"][0]["meta"]["yanked"] == "broken"
    assert backend.rebuild_index().repaired == []  # the body and the index agree


def test_delete_removes_the_release_and_its_tag_and_leaves_a_tombstone(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    record = put(backend, sdist)
    backend.apply_change(Delete(record.project, record.filename), WRITE_TOKEN)
    assert releases(github) == []
    repo = github.world.repo(OWNER, REPO)
    assert repo is not None and sdist.name not in repo.tags
    document = index_toml(github)
    assert document["pkgs"] == []
    assert document["deleted"][0]["filename"] == sdist.name
    assert document["deleted"][0]["sha256"] == record.sha256
    assert backend.rebuild_index().lines()[-1] == "0 files indexed, 0 changes"


def test_a_deleted_file_is_no_longer_redirected_to(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    record = put(backend, sdist)
    assert isinstance(backend.open(record), Redirect)  # its signed URL is now reused
    backend.apply_change(Delete(record.project, record.filename), WRITE_TOKEN)
    with pytest.raises(StorageNotFound):
        backend.open(record)


def test_a_read_token_cannot_change_anything(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    with pytest.raises(StorageError):
        put(backend, sdist, token=READ_TOKEN)
    assert releases(github) == []


# --- update_index --------------------------------------------------------------------------------


def test_rebuild_keeps_a_file_published_after_its_listing(
    github: FakeGitHub, backend: GitHubBackend, sdist: Path
) -> None:
    """An upload that lands between the listing and the index write must not be dropped."""
    record = put(backend, sdist)
    github.inject("GET", rf"/repos/{OWNER}/{REPO}/releases$", 200, body=[])  # a stale listing
    report = backend.rebuild_index()
    assert report.removed == [] and report.total == 1
    assert index_of(backend).records() == [record]


def test_rebuild_retries_when_the_index_changes_meanwhile(
    github: FakeGitHub, backend: GitHubBackend, twin: GitHubBackend, sdist: Path, wheel: Path
) -> None:
    put(backend, sdist)
    tamper = FakeGitHubTamper(github)
    tamper.add_behind(backend, wheel.name, wheel.read_bytes())

    def another_writer() -> None:
        before = github.file(OWNER, REPO, "index.toml") or b""
        github.put_file(OWNER, REPO, "index.toml", before + b"\n")

    github.on_request("PUT", r"/contents/index\.toml$", another_writer)
    report = backend.rebuild_index()
    assert report.added == [wheel.name]
    assert {r.filename for r in index_of(twin).records()} == {sdist.name, wheel.name}


def test_rebuild_lists_every_page_and_skips_drafts(
    github: FakeGitHub, backend: GitHubBackend, tamper: FakeGitHubTamper, tmp_path: Path
) -> None:
    for n in range(105):
        tamper.add_behind(backend, f"many-{n}.tar.gz", f"file {n}".encode())
    github.add_release(OWNER, REPO, "draft-1.0.tar.gz", draft=True,
                       body='distrib = "draft"\nsha256 = "00"\n',
                       assets={"draft-1.0.tar.gz": b"x"})  # fmt: skip
    report = backend.rebuild_index()
    assert report.total == 105 and len(report.added) == 105
    pages = [c for c in github.requests() if c.endswith("/releases")]
    assert len(pages) == 2  # 100 per page
    assert backend.rebuild_index().lines()[-1] == "105 files indexed, 0 changes"


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b"[]", b'"a string"'])
def test_a_success_that_is_not_the_json_asked_for_is_a_clean_failure(
    github: FakeGitHub, quick: GitHubBackend, wheel: Path, body: bytes
) -> None:
    """A proxy's HTML page with a 200, or a list where an object belongs: never a traceback
    (a 500), but GitHub's failure: 502 or 503 with one line."""
    github.inject("POST", r"/releases$", 201, body=body)
    with pytest.raises(StorageError) as caught:
        put(quick, wheel)
    assert caught.value.status in (502, 503) and "\n" not in str(caught.value)
    assert_nothing_stored(github, wheel.name)


def test_a_store_without_a_caller_acts_with_the_server_s_token(
    github: FakeGitHub, backend: GitHubBackend, wheel: Path
) -> None:
    """An upstream cache fill or a bundle import has no caller: the server's token stores."""
    record = put(backend, wheel, token="")
    assert [r.tag_name for r in releases(github)] == [wheel.name]
    assert index_of(backend).file(record.project, wheel.name) is not None
