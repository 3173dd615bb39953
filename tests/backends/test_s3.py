"""The S3 backend on SeaweedFS: the shared contract (redirect and proxy downloads), then S3's
own rules: manifests and their requests, unfinished uploads and deletes, orphan multipart
uploads, credentials, and a store that is down."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import GeneratorType
from typing import Any

import pytest
import tomli_w
from contract import BackendContract
from contract import fetch
from contract import index_of
from contract import stage
from factory import make_sdist
from factory import make_wheel
from s3_support import S3Bucket
from s3_support import free_ports
from support import READ
from support import WRITE

from pywharf.auth import Permission
from pywharf.backends import Backend
from pywharf.backends import Redirect
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.s3 import S3Backend
from pywharf.backends.s3_layout import Layout
from pywharf.backends.s3_layout import object_metadata
from pywharf.clients import s3_core as s3_client
from pywharf.clients.errors import Unavailable
from pywharf.clients.s3 import S3Client
from pywharf.clients.sigv4 import Credentials
from pywharf.config import parse_repositories
from pywharf.errors import ConfigError
from pywharf.errors import DistributionExists
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable
from pywharf.index import Delete
from pywharf.index import FileRecord
from pywharf.repository import Repository
from pywharf.tokens import new_token
from pywharf.tokens import with_token
from pywharf.tokens import without_token

PREFIX = "team/pkgs"


def s3_section(bucket: S3Bucket, **overrides: Any) -> dict[str, Any]:
    return {
        "type": "s3", "bucket": bucket.bucket, "endpoint_url": bucket.endpoint_url,
        "region": bucket.region, "prefix": PREFIX, "read_secret": READ, "write_secret": WRITE,
        **overrides,
    }  # fmt: skip


def new_backend(
    bucket: S3Bucket, root: Path, admin: str | None = None, **overrides: Any
) -> S3Backend:
    (config,) = parse_repositories(
        tomli_w.dumps({"pkgs": s3_section(bucket, **overrides)}), "test", backend_settings
    )
    secret = admin if admin is not None else f"{bucket.access_key}:{bucket.secret_key}"
    backend = create_backend(config, root, secret)
    assert isinstance(backend, S3Backend)
    return backend


def raw_client(bucket: S3Bucket) -> S3Client:
    return S3Client(bucket.location(), Credentials(bucket.access_key, bucket.secret_key))


class S3Tamper:
    """Objects changed with a plain client, behind the manifests (no x-amz-meta-* record)."""

    def __init__(self, bucket: S3Bucket) -> None:
        self.client = raw_client(bucket)
        self.layout = Layout(PREFIX)

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        project = filename.split("-")[0].replace("_", "-")
        self.client.put(self.layout.file(project, filename), data)

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        self.client.delete(self.layout.file(record.project, record.filename))

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        key = self.layout.file(record.project, record.filename)
        got = self.client.get(key)
        assert got is not None
        self.client.put(key, got.data + b"tampered")


@pytest.fixture(params=["redirect", "proxy"])
def download(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def backend(seaweedfs: S3Bucket, tmp_path: Path, download: str) -> Iterator[S3Backend]:
    backend = new_backend(seaweedfs, tmp_path / "root", download=download)
    yield backend
    backend.close()


@pytest.fixture
def twin(seaweedfs: S3Bucket, tmp_path: Path, download: str) -> Iterator[S3Backend]:
    twin = new_backend(seaweedfs, tmp_path / "twin-root", download=download)
    yield twin
    twin.close()


@pytest.fixture
def tamper(seaweedfs: S3Bucket) -> Iterator[S3Tamper]:
    tamper = S3Tamper(seaweedfs)
    yield tamper
    tamper.client.close()


class TestS3Contract(BackendContract):
    pass


# --- S3's own rules ---------------------------------------------------------------------------


class Counter:
    """Counts the requests a backend's client sends, by method, and the bytes of bodies sent as
    they come (`streamed`: a file sent while it arrives)."""

    def __init__(self, backend: S3Backend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.streamed = 0
        transport = backend._client._transport
        send = transport.request

        def counted(method: str, url: str, **kwargs: Any) -> Any:
            self.sent.append(method)
            if isinstance(kwargs.get("body"), GeneratorType):  # not a file: files iterate too
                kwargs["body"] = self._counted(kwargs["body"])
            return send(method, url, **kwargs)

        monkeypatch.setattr(transport, "request", counted)

    def _counted(self, body: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in body:
            self.streamed += len(chunk)
            yield chunk

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def one(seaweedfs: S3Bucket, tmp_path: Path) -> Iterator[S3Backend]:
    backend = new_backend(seaweedfs, tmp_path / "root")
    yield backend
    backend.close()


@pytest.fixture
def wheels(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    return [make_wheel(folder, f"proj-{n % 3}", f"1.{n}") for n in range(6)]


def put(backend: S3Backend, path: Path) -> FileRecord:
    upload = stage(backend, path)
    try:
        return backend.put(upload, WRITE)
    finally:
        upload.path.unlink(missing_ok=True)


def test_requests_per_operation(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    counter = Counter(one, monkeypatch)
    start = one.read_index(None)
    assert start is not None and counter.take() == ["GET"]  # one LIST, empty bucket
    record = put(one, wheels[0])
    # GET manifest, PUT file, PUT METADATA, PUT manifest: acknowledged after all four.
    assert counter.take() == ["GET", "PUT", "PUT", "PUT"]
    assert put(one, wheels[0]) == record and counter.take() == ["GET"]  # identical: 200
    update = one.read_index(start.cursor)
    assert update is not None and counter.take() == ["GET", "GET"]  # LIST + changed manifest
    assert one.read_index(update.cursor) is None
    assert counter.take() == ["GET"]  # an idle sync: one LIST
    for path in wheels[1:]:
        put(one, path)
    restarted = new_backend(seaweedfs, tmp_path / "restarted")
    counter = Counter(restarted, monkeypatch)
    whole = restarted.read_index(None)
    assert whole is not None and len(whole.events) == 6
    assert counter.take() == ["GET"] * 4  # start-up: one LIST + one GET per project (3)
    restarted.close()


def test_the_manifest_is_a_small_json_document_under_the_prefix(
    one: S3Backend, seaweedfs: S3Bucket, wheels: list[Path]
) -> None:
    record = put(one, wheels[0])
    with contextlib.closing(raw_client(seaweedfs)) as client:
        keys = [item.key for item in client.list()]
        manifest = client.get(f"{PREFIX}/index/{record.project}.json")
        head = client.head(f"{PREFIX}/files/{record.project}/{record.filename}")
    assert keys == sorted([
        f"{PREFIX}/files/{record.project}/{record.filename}",
        f"{PREFIX}/files/{record.project}/{record.filename}.metadata",
        f"{PREFIX}/index/{record.project}.json",
    ])  # fmt: skip
    assert manifest is not None
    document = json.loads(manifest.data)
    assert document["files"] == [record.to_json()]
    assert head.metadata["sha256"] == record.sha256
    assert head.metadata == object_metadata(record)


def create_token(backend: S3Backend, label: str) -> str:
    token, record = new_token(label, frozenset({"read"}), None, None, 0.0)
    backend.update_tokens(lambda document: with_token(document, record))
    return token


def test_an_idle_sync_is_one_request_with_tokens_and_manifests(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repository = Repository(one, 3600, 300)
    counter = Counter(one, monkeypatch)
    repository.sync()
    assert counter.take() == ["GET"]  # empty bucket: the LIST shows no token document either
    put(one, wheels[0])
    token = create_token(one, "ci")
    counter.take()
    repository.sync()  # our own token write is known: only the changed manifest is fetched
    assert counter.take() == ["GET", "GET"] and len(repository.tokens.by_id) == 1
    for _ in range(3):
        repository.sync()
        assert counter.take() == ["GET"]  # issue 11: one LIST per idle sync, nothing else
    assert repository.grant(token, Permission.READ) is not None
    repository.sync()  # the last use is stored (GET + PUT), and what was written is known
    assert counter.take() == ["GET", "GET", "PUT"]
    repository.sync()
    assert counter.take() == ["GET"]
    again = new_backend(seaweedfs, tmp_path / "again")
    restarted = Repository(again, 3600, 300)
    counter = Counter(again, monkeypatch)
    restarted.sync()
    assert counter.take() == ["GET"] * 3  # start-up: LIST, the manifest, the token document
    restarted.sync()
    assert counter.take() == ["GET"]
    again.close()


def test_a_token_made_or_revoked_through_another_server_is_seen_at_the_next_sync(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path
) -> None:
    other = new_backend(seaweedfs, tmp_path / "other")
    try:
        repository = Repository(one, 3600, 300)
        repository.sync()
        repository.sync()  # idle: the token document is held as the LIST last showed it
        token = create_token(other, "ci")
        assert repository.grant(token, Permission.READ) is None
        repository.sync()
        assert repository.grant(token, Permission.READ) is not None
        repository.sync()
        other.update_tokens(lambda document: without_token(document, "ci"))
        repository.sync()
        assert repository.grant(token, Permission.READ) is None
        assert create_token(one, "cd") and one.read_tokens() == other.read_tokens()
    finally:
        other.close()


def test_the_token_document_is_under_index_and_no_manifest(
    one: S3Backend, seaweedfs: S3Bucket, wheels: list[Path]
) -> None:
    put(one, wheels[0])
    create_token(one, "ci")
    layout = Layout(PREFIX)
    assert layout.tokens == f"{PREFIX}/index/.tokens"
    assert layout.project_of_manifest(layout.tokens) is None
    with contextlib.closing(raw_client(seaweedfs)) as client:
        before = client.get(layout.tokens)
        report = one.rebuild_index()  # update_index neither lists it nor removes it
        after = client.get(layout.tokens)
    assert before is not None and after is not None and after.data == before.data
    assert not report.repaired
    assert set(one._index.listing()) == {"proj-0"}
    assert not report.added and not report.removed and report.total == 1


def cut_off_before_listing(backend: S3Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next upload stores its objects, then its server dies before the manifest write."""

    def crash(*args: object, **kwargs: object) -> None:
        raise Unavailable("killed before listing the file")

    monkeypatch.setattr(backend._index, "update", crash)


def test_a_stored_but_unlisted_file_is_finished_by_a_retry(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with monkeypatch.context() as patched:
        cut_off_before_listing(one, patched)
        with pytest.raises(StorageUnavailable, match="'pkgs'"):
            put(one, wheels[0])
    assert index_of(one).records() == []
    other = new_backend(seaweedfs, tmp_path / "other")  # the retry lands on another server
    record = put(other, wheels[0])
    assert [r.filename for r in index_of(one).records()] == [record.filename]
    assert fetch(one.open_metadata(record))  # the METADATA object was written before
    other.close()


def test_other_bytes_under_an_unlisted_file_list_it_then_answer_409(
    one: S3Backend, wheels: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        cut_off_before_listing(one, patched)
        with pytest.raises(StorageUnavailable):
            put(one, wheels[0])
    folder = wheels[0].parent / "impostor"
    folder.mkdir()
    impostor = make_wheel(folder, "proj-0", "1.0", payload_bytes=99)
    with pytest.raises(DistributionExists):
        put(one, impostor)
    (listed,) = index_of(one).records()  # the 409 names a file everyone can now see
    assert listed.sha256 == hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    assert fetch(one.open(listed)) == wheels[0].read_bytes()


def test_update_index_lists_an_unlisted_file_from_its_object_record(
    one: S3Backend, wheels: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = stage(one, wheels[0])
    with monkeypatch.context() as patched:
        cut_off_before_listing(one, patched)
        with pytest.raises(StorageUnavailable):
            one.put(staged, WRITE)
    report = one.rebuild_index()
    assert report.added == [wheels[0].name]
    assert index_of(one).records() == [staged.record]  # upload time and metadata kept


def test_update_index_finishes_a_delete_cut_off_before_removing_the_bytes(
    one: S3Backend, seaweedfs: S3Bucket, wheels: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put(one, wheels[0])
    with monkeypatch.context() as patched:
        patched.setattr(one._client, "delete", lambda key: None)  # killed after unlisting
        one.apply_change(Delete(record.project, record.filename), WRITE)
    report = one.rebuild_index()
    assert (report.added, report.removed) == ([], [])
    assert index_of(one).deleted_sha256(record.filename) == record.sha256
    with contextlib.closing(raw_client(seaweedfs)) as client:
        assert list(client.list(f"{PREFIX}/files/")) == []


def test_update_index_aborts_orphan_multipart_uploads(
    seaweedfs: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = S3Client(seaweedfs.location(), Credentials(seaweedfs.access_key, seaweedfs.secret_key),
                      multipart_threshold=s3_client.MIN_PART_BYTES)  # fmt: skip
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (s3_client.MIN_PART_BYTES + 1))

    def crash(*args: object) -> list[str]:
        raise Unavailable("killed mid-upload")

    with monkeypatch.context() as patched:
        patched.setattr(client, "_send_parts", crash)
        patched.setattr(client, "abort_multipart", lambda key, upload_id: None)
        with pytest.raises(Unavailable):
            client.put_file(f"{PREFIX}/files/big/big-1.0.tar.gz", path, sha256="0" * 64)
    young = new_backend(seaweedfs, tmp_path / "root")
    assert young.rebuild_index().repaired == []  # it may still be running elsewhere
    (config,) = parse_repositories(
        tomli_w.dumps({"pkgs": s3_section(seaweedfs)}), "test", backend_settings
    )
    old = S3Backend(config, tmp_path / "root", f"{seaweedfs.access_key}:{seaweedfs.secret_key}",
                    orphan_upload_seconds=0)  # fmt: skip
    report = old.rebuild_index()
    assert report.repaired == [f"{PREFIX}/files/big/big-1.0.tar.gz (unfinished upload aborted)"]
    assert list(client.list_multipart_uploads()) == []
    for each in (client, young, old):
        each.close()


def test_two_servers_uploading_into_one_project_lose_nothing(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path
) -> None:
    other = new_backend(seaweedfs, tmp_path / "other")
    folder = tmp_path / "many"
    folder.mkdir()
    paths = [make_sdist(folder, "shared", f"1.{n}") for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: put((one, other)[paths.index(p) % 2], p), paths))
    for backend in (one, other):
        assert {r.filename for r in index_of(backend).records()} == {p.name for p in paths}
    other.close()


def test_a_redirect_is_a_presigned_url_of_the_store(
    seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path]
) -> None:
    backend = new_backend(seaweedfs, tmp_path / "root", presign_expires=120)
    record = put(backend, wheels[0])
    target = backend.open(record)
    assert isinstance(target, Redirect)
    assert target.url.startswith(f"{seaweedfs.endpoint_url}/{seaweedfs.bucket}/{PREFIX}/files/")
    assert "X-Amz-Expires=120" in target.url and "X-Amz-Signature=" in target.url
    assert backend.open(record) == target  # reused: no HEAD, no new signature
    assert fetch(target) == wheels[0].read_bytes()
    backend.close()


# --- configuration, credentials, outages ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prefix": "a/../b"}, "no segment may be empty"),
        ({"prefix": "a//b"}, "no segment may be empty"),
        ({"download": "stream"}, "download: 'stream' is not 'redirect' or 'proxy'"),
        ({"addressing": "sideways"}, "addressing: 'sideways' is not 'auto' or 'path' or 'virtual'"),
        ({"endpoint_url": "ftp://host"}, "an endpoint URL is http"),
    ],
)
def test_bad_settings_are_config_errors(
    seaweedfs: S3Bucket, tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        new_backend(seaweedfs, tmp_path, **overrides)


def test_credentials_come_from_the_admin_secret_or_the_environment(
    seaweedfs: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        new_backend(seaweedfs, tmp_path, admin="no-colon-secret-value")
    assert "ACCESS_KEY_ID:SECRET_ACCESS_KEY" in str(caught.value)
    assert "no-colon-secret-value" not in str(caught.value)
    (config,) = parse_repositories(
        tomli_w.dumps({"pkgs": s3_section(seaweedfs)}), "test", backend_settings
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="'pkgs': no S3 credentials"):
        create_backend(config, tmp_path, None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    backend = create_backend(config, tmp_path, None)
    assert backend.read_index(None) is not None
    backend.close()


def test_wrong_credentials_are_one_line_naming_the_repository(
    seaweedfs: S3Bucket, tmp_path: Path
) -> None:
    backend = new_backend(seaweedfs, tmp_path, admin=f"{seaweedfs.access_key}:wrong-secret-xyz")
    with pytest.raises(StorageUnavailable) as caught:
        backend.read_index(None)
    message = str(caught.value)
    assert message.startswith("repository 'pkgs': S3 refused")
    assert "SignatureDoesNotMatch" in message and "\n" not in message
    assert "wrong-secret-xyz" not in message
    assert caught.value.status == 503
    backend.close()


def test_a_store_that_is_down_is_a_503_naming_the_repository(
    tmp_path: Path, seaweedfs: S3Bucket, wheels: list[Path]
) -> None:
    (port,) = free_ports(1)
    section = s3_section(seaweedfs, endpoint_url=f"http://127.0.0.1:{port}", download="proxy")
    (config,) = parse_repositories(tomli_w.dumps({"pkgs": section}), "test", backend_settings)
    waits: list[float] = []
    backend = S3Backend(config, tmp_path, "id:secret", sleep=waits.append)
    staged = stage(backend, wheels[0])
    for act in (lambda: backend.read_index(None), lambda: backend.put(staged, WRITE),
                lambda: backend.open(staged.record)):  # fmt: skip
        with pytest.raises(StorageUnavailable) as caught:
            act()
        assert str(caught.value).startswith("repository 'pkgs': ")
        assert "\n" not in str(caught.value)
    assert waits  # each call was retried with back-off before giving up
    backend.close()


def test_a_missing_object_is_a_404_in_either_mode(
    one: S3Backend, seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path]
) -> None:
    record = stage(one, wheels[0]).record
    with pytest.raises(StorageNotFound):
        one.open(record)
    proxy = new_backend(seaweedfs, tmp_path / "proxy", download="proxy")
    with pytest.raises(StorageNotFound):
        proxy.open(record)
    proxy.close()


def test_a_lost_race_rereads_the_manifest_after_a_jittered_pause(
    seaweedfs: S3Bucket, tmp_path: Path, wheels: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (config,) = parse_repositories(
        tomli_w.dumps({"pkgs": s3_section(seaweedfs)}), "test", backend_settings
    )
    waits: list[float] = []
    secret = f"{seaweedfs.access_key}:{seaweedfs.secret_key}"
    backend = S3Backend(config, tmp_path / "a", secret, sleep=waits.append, jitter=max)
    rival = new_backend(seaweedfs, tmp_path / "b")
    first, second = wheels[0], wheels[3]  # both of proj-0
    write = backend._client.put
    raced: list[FileRecord] = []

    def racing(key: str, data: bytes, **kwargs: Any) -> str:
        if key.endswith(".json") and not raced:  # another server lists a file first
            raced.append(put(rival, second))
        return write(key, data, **kwargs)

    monkeypatch.setattr(backend._client, "put", racing)
    mine = put(backend, first)
    assert waits == [0.02]  # one lost race (412 here, 409 or 404 elsewhere), one pause
    assert {r.filename for r in index_of(backend).records()} == {mine.filename, second.name}
    for each in (backend, rival):
        each.close()
