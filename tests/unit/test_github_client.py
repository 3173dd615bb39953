"""The GitHub client against the fake GitHub: every call, retries, rate limits, errors, secrecy."""

from __future__ import annotations

import base64
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3
from fake_github import FakeGitHub
from fake_github import blob_sha

from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.clients.github import GitHubClient
from pywharf.clients.github_models import git_blob_sha

TOKEN = "ghp_aliceSecretToken0123456789abcdefABCDEF"
OTHER = "ghp_bobSecretToken0123456789abcdefABCDEFGH"
WHEEL = "demo-1.0+local-py3-none-any.whl"


class Clock:
    """Time that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_user("alice", TOKEN)
        fake.add_user("bob", OTHER)
        fake.add_repo("alice", "packages", private=True)
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(github: FakeGitHub, clock: Clock) -> Iterator[GitHubClient]:
    with GitHubClient(
        TOKEN, github.api_url, github.uploads_url, timeout=5, sleep=clock.sleep, clock=clock.time
    ) as client:
        yield client


def make_release(
    client: GitHubClient, tag: str = WHEEL, data: bytes = b"wheel bytes", publish: bool = True
) -> tuple[int, int]:
    release = client.create_release("alice", "packages", tag, body="")
    asset = client.upload_asset(release.upload_url, tag, io.BytesIO(data), len(data))
    if publish:
        client.update_release("alice", "packages", release.id, draft=False, body="meta")
    return release.id, asset.id


# -- identity ----------------------------------------------------------------------------------


def test_get_user_and_repo_permissions(client: GitHubClient, github: FakeGitHub) -> None:
    assert client.get_user().login == "alice"
    repo = client.get_repo("alice", "packages")
    assert (repo.private, repo.default_branch, repo.owner) == (True, "main", "alice")
    assert repo.permissions.admin and repo.permissions.push and repo.permissions.pull


def test_collaborator_permissions_come_from_the_repository(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.grant("alice", "packages", "bob", "pull")
    repo = client.with_token(OTHER).get_repo("alice", "packages")
    assert repo.permissions.pull and not repo.permissions.push


def test_private_repository_is_not_found_for_strangers(client: GitHubClient) -> None:
    with pytest.raises(ResourceNotFound, match="cannot see it"):
        client.with_token(OTHER).get_repo("alice", "packages")


def test_anonymous_reads_public_repositories_without_permissions(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_repo("alice", "public", private=False)
    anonymous = client.with_token(None)
    assert not anonymous.get_repo("alice", "public").permissions.pull
    assert "authorization" not in github.calls[-1].request_headers


def test_requests_carry_githubs_headers(client: GitHubClient, github: FakeGitHub) -> None:
    client.get_user()
    headers = github.calls[-1].request_headers
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["user-agent"].startswith("pywharf/")


def test_bad_token_is_refused_and_unnamed(client: GitHubClient) -> None:
    with pytest.raises(Refused, match="rejected the token") as caught:
        client.with_token("ghp_wrongwrongwrong").get_repo("alice", "packages")
    assert "ghp_wrong" not in str(caught.value)


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak"])
def test_malformed_tokens_are_refused_before_any_call(client: GitHubClient, token: str) -> None:
    with pytest.raises(Refused, match="invalid characters"):
        client.with_token(token)


def test_create_and_update_repository(client: GitHubClient, github: FakeGitHub) -> None:
    repo = client.create_repo(None, "index", description="pywharf")
    assert (repo.private, repo.owner) == (True, "alice")
    body = github.calls[-1].request_body
    assert b'"private":true' in body and b'"auto_init":true' in body
    sha = client.get_ref("alice", "index", "heads/main").sha
    assert client.create_ref("alice", "index", "refs/heads/pages", sha).sha == sha
    assert client.update_repo("alice", "index", default_branch="pages").default_branch == "pages"
    with pytest.raises(ClientError, match="already exists"):
        client.create_repo(None, "index")


def test_create_repository_in_an_organization(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_org("acme", {"alice": "admin", "bob": "member"})
    assert client.create_repo("acme", "wheels").full_name == "acme/wheels"
    assert github.calls[-1].path == "/orgs/acme/repos"
    with pytest.raises(Refused) as caught:
        client.with_token(OTHER).create_repo("acme", "more")
    assert caught.value.status == 403


def test_refs_of_an_empty_repository_are_not_found(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.add_repo("alice", "empty", empty=True)
    with pytest.raises(ResourceNotFound, match="empty"):
        client.get_ref("alice", "empty", "heads/main")
    with pytest.raises(ClientError, match="already exists"):
        sha = client.get_ref("alice", "packages", "heads/main").sha
        client.create_ref("alice", "packages", "refs/heads/main", sha)


# -- releases ----------------------------------------------------------------------------------


def test_release_lifecycle_draft_upload_publish(client: GitHubClient, github: FakeGitHub) -> None:
    draft = client.create_release("alice", "packages", WHEEL, body="")
    assert draft.draft and draft.tag_name == WHEEL
    with pytest.raises(ResourceNotFound):
        client.get_release_by_tag("alice", "packages", WHEEL)  # GitHub hides drafts here
    client.upload_asset(draft.upload_url, WHEEL, io.BytesIO(b"data"), 4, "application/zip")
    published = client.update_release("alice", "packages", draft.id, draft=False, body="x = 1")
    assert not published.draft and published.body == "x = 1"
    found = client.get_release_by_tag("alice", "packages", WHEEL)
    assert found.asset_named(WHEEL) is not None
    assert client.get_release("alice", "packages", draft.id).id == draft.id
    client.delete_release("alice", "packages", draft.id)
    assert github.releases("alice", "packages") == []


def test_duplicate_tag_already_exists(client: GitHubClient) -> None:
    client.create_release("alice", "packages", WHEEL)
    with pytest.raises(AlreadyExists) as caught:
        client.create_release("alice", "packages", WHEEL)
    assert caught.value.name == WHEEL and caught.value.status == 422


def test_drafts_are_listed_only_to_writers(client: GitHubClient, github: FakeGitHub) -> None:
    github.add_release("alice", "packages", "a.whl")
    github.add_release("alice", "packages", "b.whl", draft=True)
    github.grant("alice", "packages", "bob", "pull")
    assert {r.tag_name for r in client.list_releases("alice", "packages")} == {"a.whl", "b.whl"}
    reader = client.with_token(OTHER)
    assert [r.tag_name for r in reader.list_releases("alice", "packages")] == ["a.whl"]


def test_list_releases_follows_every_page(client: GitHubClient, github: FakeGitHub) -> None:
    for number in range(23):
        github.add_release("alice", "packages", f"p-{number}.whl", assets={"x": b"x"})
    github.calls.clear()
    releases = client.list_releases("alice", "packages", per_page=5)
    assert sorted(r.tag_name for r in releases) == sorted(f"p-{n}.whl" for n in range(23))
    paths = github.requests()
    assert len(paths) == 5
    # GitHub's next links move to /repositories/{id}/...; the client follows them verbatim.
    assert paths[0] == "GET /repos/alice/packages/releases"
    assert all(path.startswith("GET /repositories/") for path in paths[1:])
    assert [c.query["page"] for c in github.calls[1:]] == [["2"], ["3"], ["4"], ["5"]]


def test_paginate_refuses_a_next_link_to_another_host(
    client: GitHubClient, github: FakeGitHub
) -> None:
    link = '<https://elsewhere.example/next?page=2>; rel="next"'
    github.inject("GET", "/releases$", 200, body=[], headers={"Link": link})
    with pytest.raises(ClientError, match="another host"):
        client.list_releases("alice", "packages")


# -- assets ------------------------------------------------------------------------------------


class CountingReader(io.BytesIO):
    """Records the largest single read, to prove the upload streams."""

    largest = 0

    def read(self, size: int | None = -1) -> bytes:
        self.largest = max(self.largest, size if size is not None and size >= 0 else 1 << 62)
        return super().read(size)


def test_upload_streams_from_the_file_with_its_length(
    client: GitHubClient, github: FakeGitHub
) -> None:
    data = bytes(range(256)) * 12_000  # 3 MB
    source = CountingReader(b"prefix" + data + b"trailing bytes that are not ours")
    source.seek(6)
    release = client.create_release("alice", "packages", WHEEL)
    asset = client.upload_asset(release.upload_url, WHEEL, source, len(data), "application/zip")
    assert source.largest <= 1 << 20
    upload = github.calls[-1]
    assert upload.origin == "uploads"
    assert upload.request_headers["content-length"] == str(len(data))
    assert upload.request_headers["content-type"] == "application/zip"
    assert upload.request_body == data
    assert (asset.name, asset.size, asset.content_type) == (WHEEL, len(data), "application/zip")


def test_plus_survives_and_other_characters_are_renamed(client: GitHubClient) -> None:
    release = client.create_release("alice", "packages", "v1")
    plus = client.upload_asset(release.upload_url, WHEEL, io.BytesIO(b"1"), 1)
    odd = client.upload_asset(
        release.upload_url, "my file (1).txt", io.BytesIO(b"2"), 1, label="a label"
    )
    assert plus.name == WHEEL
    assert (odd.name, odd.label) == ("my.file.1.txt", "a label")


def test_duplicate_asset_already_exists(client: GitHubClient) -> None:
    release = client.create_release("alice", "packages", WHEEL)
    client.upload_asset(release.upload_url, WHEEL, io.BytesIO(b"1"), 1)
    with pytest.raises(AlreadyExists):
        client.upload_asset(release.upload_url, WHEEL, io.BytesIO(b"1"), 1)


def test_a_short_file_fails_the_upload(client: GitHubClient) -> None:
    release = client.create_release("alice", "packages", WHEEL)
    with pytest.raises(ClientError, match="ended after 3 of its 10 bytes"):
        client.upload_asset(release.upload_url, WHEEL, io.BytesIO(b"abc"), 10)


def test_upload_url_must_be_a_configured_host(client: GitHubClient, github: FakeGitHub) -> None:
    before = len(github.calls)
    with pytest.raises(ClientError, match="not the configured uploads_url"):
        client.upload_asset("https://evil.example/assets{?name}", WHEEL, io.BytesIO(b"1"), 1)
    assert len(github.calls) == before


def test_list_get_and_delete_assets(client: GitHubClient) -> None:
    release_id, asset_id = make_release(client)
    assert [a.id for a in client.list_release_assets("alice", "packages", release_id)] == [asset_id]
    asset = client.get_asset("alice", "packages", asset_id)
    assert asset.digest is not None and asset.digest.startswith("sha256:")
    client.delete_asset("alice", "packages", asset_id)
    with pytest.raises(ResourceNotFound):
        client.get_asset("alice", "packages", asset_id)


def test_download_url_is_the_signed_redirect(client: GitHubClient, github: FakeGitHub) -> None:
    _, asset_id = make_release(client, data=b"payload")
    url = client.asset_download_url("alice", "packages", asset_id)
    assert url is not None and url.startswith(github.storage_url)
    assert github.calls[-1].request_headers["accept"] == "application/octet-stream"
    with urllib3.PoolManager() as pool:
        assert pool.request("GET", url).data == b"payload"
        refused = pool.request("GET", url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status == 400  # the storage host refuses a second auth mechanism


def test_download_url_is_none_when_github_sends_the_bytes(
    client: GitHubClient, github: FakeGitHub
) -> None:
    _, asset_id = make_release(client)
    github.inject("GET", r"/releases/assets/\d+$", 200, body=b"direct bytes")
    assert client.asset_download_url("alice", "packages", asset_id) is None


def test_stream_asset_follows_the_redirect_without_the_token(
    client: GitHubClient, github: FakeGitHub
) -> None:
    data = b"x" * 200_000
    _, asset_id = make_release(client, data=data)
    with client.stream_asset("alice", "packages", asset_id) as stream:
        assert stream.size == len(data)
        assert b"".join(stream) == data
    storage = github.calls[-1]
    assert storage.origin == "storage" and storage.status == 200
    assert "authorization" not in storage.request_headers


def test_a_stream_closed_early_frees_its_connection(client: GitHubClient) -> None:
    _, asset_id = make_release(client, data=b"y" * 500_000)
    with client.stream_asset("alice", "packages", asset_id) as stream:
        assert stream.read(10) == b"y" * 10
    assert client.get_user().login == "alice"  # the pool still works


def test_missing_asset_download_is_not_found(client: GitHubClient) -> None:
    with pytest.raises(ResourceNotFound):
        client.asset_download_url("alice", "packages", 999_999)
    with pytest.raises(ResourceNotFound):
        client.stream_asset("alice", "packages", 999_999)


# -- contents ----------------------------------------------------------------------------------


def test_contents_round_trip_with_blob_shas(client: GitHubClient, github: FakeGitHub) -> None:
    created = client.put_contents("alice", "packages", "index.toml", b"a = 1\n", "Create")
    assert created.created and created.sha == blob_sha(b"a = 1\n") == git_blob_sha(b"a = 1\n")
    assert "branch" not in github.calls[-1].request_body.decode()
    raw = client.get_contents_raw("alice", "packages", "index.toml", ref="main")
    assert raw is not None and (raw.data, raw.sha) == (b"a = 1\n", created.sha)
    assert github.calls[-1].request_headers["accept"] == "application/vnd.github.raw+json"
    updated = client.put_contents(
        "alice", "packages", "index.toml", b"a = 2\n", "Update", branch="main", sha=raw.sha
    )
    assert not updated.created
    assert github.file("alice", "packages", "index.toml") == b"a = 2\n"
    assert client.get_content_sha("alice", "packages", "index.toml") == updated.sha


def test_conditional_read_returns_none_and_costs_no_rate_limit(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.put_file("alice", "packages", "index.toml", b"a = 1\n")
    raw = client.get_contents_raw("alice", "packages", "index.toml")
    assert raw is not None and raw.etag
    left = github.world.budget("alice").remaining
    assert client.get_contents_raw("alice", "packages", "index.toml", etag=raw.etag) is None
    assert github.calls[-1].status == 304
    assert github.world.budget("alice").remaining == left
    github.put_file("alice", "packages", "index.toml", b"a = 2\n")
    changed = client.get_contents_raw("alice", "packages", "index.toml", etag=raw.etag)
    assert changed is not None and changed.data == b"a = 2\n"


def test_files_over_one_megabyte_are_read_raw(client: GitHubClient, github: FakeGitHub) -> None:
    big = b"# index\n" * 300_000  # 2.4 MB: the JSON media type would refuse it
    sha = github.put_file("alice", "packages", "index.toml", big)
    raw = client.get_contents_raw("alice", "packages", "index.toml")
    assert raw is not None and raw.data == big and raw.sha == sha
    assert client.get_content_sha("alice", "packages", "index.toml") == sha
    with pytest.raises(Refused, match="1 MB"):
        client.call("GET", "/repos/alice/packages/contents/index.toml")


def test_stale_or_missing_sha_is_a_content_conflict(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.put_file("alice", "packages", "index.toml", b"v1")
    with pytest.raises(Conflict, match="does not match"):
        client.put_contents("alice", "packages", "index.toml", b"v2", "m", sha=blob_sha(b"v0"))
    with pytest.raises(Conflict, match="wasn't supplied"):
        client.put_contents("alice", "packages", "index.toml", b"v2", "m")


def test_a_concurrent_writer_is_caught_and_the_retry_wins(
    client: GitHubClient, github: FakeGitHub
) -> None:
    github.put_file("alice", "packages", "index.toml", b"v1")
    github.on_request(
        "PUT",
        "/contents/index.toml",
        lambda: github.put_file("alice", "packages", "index.toml", b"rival"),
    )
    for _ in range(3):  # the update_index loop: read, write with the sha, retry on conflict
        current = client.get_contents_raw("alice", "packages", "index.toml")
        assert current is not None
        try:
            client.put_contents(
                "alice", "packages", "index.toml", current.data + b"+me", "m", sha=current.sha
            )
            break
        except Conflict:
            continue
    assert github.file("alice", "packages", "index.toml") == b"rival+me"


@pytest.mark.parametrize("status", [409, 422])
def test_injected_index_conflicts_are_content_conflicts(
    client: GitHubClient, github: FakeGitHub, status: int
) -> None:
    github.inject("PUT", "/contents/index.toml$", status)
    with pytest.raises(Conflict):
        client.put_contents("alice", "packages", "index.toml", b"x", "m")
    assert client.put_contents("alice", "packages", "index.toml", b"x", "m").created


def test_one_client_serves_many_threads(client: GitHubClient, github: FakeGitHub) -> None:
    github.put_file("alice", "packages", "index.toml", b"shared")
    results: list[bytes] = []

    def read() -> None:
        for _ in range(10):
            raw = client.get_contents_raw("alice", "packages", "index.toml")
            results.append(raw.data if raw else b"")

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"shared"] * 80


def test_missing_file_and_branch_are_not_found(client: GitHubClient) -> None:
    with pytest.raises(ResourceNotFound):
        client.get_contents_raw("alice", "packages", "nope.toml")
    with pytest.raises(ResourceNotFound, match="Branch nope not found"):
        client.put_contents("alice", "packages", "index.toml", b"x", "m", branch="nope")


def test_generic_call_decodes_json(client: GitHubClient, github: FakeGitHub) -> None:
    github.put_file("alice", "packages", "dir/a.txt", b"a")
    listing = client.call("GET", "/repos/alice/packages/contents/dir", params={"ref": "main"})
    assert [entry["name"] for entry in listing] == ["a.txt"]
    file = client.call("GET", "/repos/alice/packages/contents/dir/a.txt")
    assert base64.b64decode(file["content"]) == b"a"


# -- retries and back-off ----------------------------------------------------------------------


def test_idempotent_calls_retry_5xx_with_backoff(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject("GET", "^/user$", 502, times=2)
    assert client.get_user().login == "alice"
    assert clock.sleeps == [0.5, 1.0]
    assert len(github.requests()) == 3


def test_retries_are_bounded(client: GitHubClient, github: FakeGitHub, clock: Clock) -> None:
    github.inject("GET", "^/user$", 503, times=10)
    with pytest.raises(Unavailable, match="503"):
        client.get_user()
    assert len(github.requests()) == 4 and clock.sleeps == [0.5, 1.0, 2.0]


def test_post_is_never_retried_on_5xx(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject("POST", "/releases$", 502)
    with pytest.raises(Unavailable, match="502"):
        client.create_release("alice", "packages", WHEEL)
    assert clock.sleeps == [] and len(github.requests()) == 1


def test_upload_is_never_retried_on_5xx(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    release = client.create_release("alice", "packages", WHEEL)
    github.inject("POST", "/assets$", 502, origin="uploads")
    with pytest.raises(Unavailable):
        client.upload_asset(release.upload_url, WHEEL, io.BytesIO(b"1"), 1)
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("PUT", "/contents/", lambda c, r: c.put_contents("alice", "packages", "f", b"1", "m")),
        (
            "PATCH",
            r"/releases/\d+$",
            lambda c, r: c.update_release("alice", "packages", r, draft=False),
        ),
        ("DELETE", r"/releases/\d+$", lambda c, r: c.delete_release("alice", "packages", r)),
    ],
)
def test_put_patch_and_delete_are_retried(
    client: GitHubClient, github: FakeGitHub, clock: Clock, method: str, path: str, call: object
) -> None:
    release = client.create_release("alice", "packages", WHEEL)
    github.inject(method, path, 500)
    call(client, release.id)  # type: ignore[operator]
    assert clock.sleeps == [0.5]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_errors_are_retried_then_unavailable(clock: Clock) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with GitHubClient(TOKEN, url, url, retries=2, sleep=clock.sleep, clock=clock.time) as client:
        with pytest.raises(Unavailable, match="NewConnectionError"):
            client.get_user()
        assert clock.sleeps == [0.5, 1.0]
        clock.sleeps.clear()
        with pytest.raises(Unavailable):
            client.create_release("o", "r", "t")
        assert clock.sleeps == []


def test_read_timeouts_are_retried(github: FakeGitHub, clock: Clock) -> None:
    # The first answer is held far past the timeout and the retry is answered at once. (A first
    # answer 3x the timeout late, and a 0.1 s timeout, failed at a load of 17: the retry timed
    # out too.)
    held = threading.Event()
    github.on_request("GET", "^/user$", lambda: held.wait(60))
    try:
        with GitHubClient(
            TOKEN,
            github.api_url,
            github.uploads_url,
            timeout=1,
            sleep=clock.sleep,
            clock=clock.time,
        ) as client:
            assert client.get_user().login == "alice"
    finally:
        held.set()
    assert clock.sleeps == [0.5]


def test_redirects_are_followed_keeping_method_and_body(
    client: GitHubClient, github: FakeGitHub
) -> None:
    repo_id = github.world.repo("alice", "packages").id  # type: ignore[union-attr]
    github.inject(
        "GET",
        "^/repos/alice/packages$",
        301,
        headers={"Location": f"{github.api_url}/repositories/{repo_id}"},
    )
    assert client.get_repo("alice", "packages").id == repo_id
    release = client.create_release("alice", "packages", WHEEL)
    target = f"/repos/alice/packages/releases/{release.id}"
    github.inject("PATCH", f"{target}$", 307, headers={"Location": target})
    assert client.update_release("alice", "packages", release.id, body="moved").body == "moved"
    assert [c.method for c in github.calls[-2:]] == ["PATCH", "PATCH"]
    assert github.calls[-1].request_body == github.calls[-2].request_body


# -- rate limits -------------------------------------------------------------------------------


def test_short_primary_limit_is_slept_through(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject_rate_limit(reset=int(clock.now) + 3)
    assert client.get_user().login == "alice"
    assert len(clock.sleeps) == 1 and 3 <= clock.sleeps[0] <= 5


def test_long_primary_limit_fails_fast_and_stays_failed(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    reset = int(clock.now) + 3600
    github.inject_rate_limit(reset=reset, status=429)
    with pytest.raises(Unavailable, match="used up until") as caught:
        client.get_user()
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(reset)) in str(caught.value)
    assert clock.sleeps == []
    calls = len(github.calls)
    with pytest.raises(Unavailable, match="used up until"):
        client.get_repo("alice", "packages")
    assert len(github.calls) == calls  # no call while the limit is known to be used up
    clock.now = reset + 1
    assert client.get_user().login == "alice"


def test_the_fakes_own_budget_runs_out(client: GitHubClient, github: FakeGitHub) -> None:
    github.set_rate_limit("alice", remaining=1, reset=int(time.time()) + 3600)
    client.get_user()
    with pytest.raises(Unavailable, match="rate limit"):
        client.get_user()


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_limit_with_retry_after_is_waited_even_for_post(
    client: GitHubClient, github: FakeGitHub, clock: Clock, status: int
) -> None:
    github.inject_rate_limit("POST", "/releases$", kind="secondary", status=status, retry_after=2)
    client.create_release("alice", "packages", WHEEL)
    assert clock.sleeps == [2.0]
    assert len(github.releases("alice", "packages")) == 1


def test_secondary_limit_without_advice_waits_a_minute_or_fails(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject_rate_limit(kind="secondary")
    with pytest.raises(Unavailable, match="secondary rate limit: retry after 60 s"):
        client.get_user()
    assert clock.sleeps == []
    patient = GitHubClient(
        TOKEN,
        github.api_url,
        github.uploads_url,
        max_rate_limit_wait=120,
        sleep=clock.sleep,
        clock=clock.time,
    )
    with patient:
        github.inject_rate_limit(kind="secondary")
        assert patient.get_user().login == "alice"
    assert clock.sleeps == [60.0]


def test_retry_after_beyond_the_bound_is_not_waited(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject_rate_limit(kind="secondary", status=429, retry_after=300)
    with pytest.raises(Unavailable, match="retry after 300 s"):
        client.get_user()
    assert clock.sleeps == []


def test_plain_403_is_not_a_rate_limit(
    client: GitHubClient, github: FakeGitHub, clock: Clock
) -> None:
    github.inject("GET", "^/user$", 403, body={"message": "Resource not accessible"})
    with pytest.raises(Refused, match="lacks a permission"):
        client.get_user()
    assert clock.sleeps == []


# -- error mapping and secrecy -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "text"),
    [
        (401, Refused, "401 Bad credentials"),
        (403, Refused, "403 Forbidden"),
        (404, ResourceNotFound, "404 Not Found"),
        (409, Conflict, "409"),
        (410, ClientError, "410 Gone"),
        (422, ClientError, "ReleaseAsset.name already_exists"),
        (500, Unavailable, "500 Server Error"),
    ],
)
def test_each_answer_has_its_client_error_carrying_the_status(
    client: GitHubClient, github: FakeGitHub, status: int, error: type[ClientError], text: str
) -> None:
    github.inject("GET", "^/repos/alice/packages$", status, times=5)
    with pytest.raises(error) as caught:
        client.get_repo("alice", "packages")
    assert text in str(caught.value) and "alice/packages" in str(caught.value)
    assert type(caught.value) is error and caught.value.status == status


def test_the_token_never_appears_in_repr_errors_or_logs(
    github: FakeGitHub, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = GitHubClient(
        TOKEN, github.api_url, github.uploads_url, sleep=clock.sleep, clock=clock.time
    )
    with client:
        assert TOKEN not in repr(client) and "<set>" in repr(client)
        messages = []
        echo = {"message": f"token {TOKEN} is not valid"}  # even if GitHub echoed it back
        for status in (401, 403, 404, 422, 502):
            github.inject("*", ".*", status, times=4 if status >= 500 else 1, body=echo)
            with pytest.raises(ClientError) as caught:
                client.get_user()
            messages.append(str(caught.value))
        github.inject_rate_limit(kind="secondary", retry_after=1)
        client.get_user()
        _, asset_id = make_release(client)
        client.stream_asset("alice", "packages", asset_id).close()
    assert all(TOKEN not in message for message in messages)
    assert "<token>" in messages[0]
    records = [r.getMessage() for r in caplog.records]
    assert records and all(TOKEN not in text for text in records)
    assert all("sig=" not in text for text in records if text.startswith("GET"))


def test_with_token_shares_the_pool_and_close_is_owned(
    client: GitHubClient, github: FakeGitHub
) -> None:
    other = client.with_token(OTHER)
    assert other.get_user().login == "bob"
    other.close()  # does not close the shared pool
    assert client.get_user().login == "alice"
