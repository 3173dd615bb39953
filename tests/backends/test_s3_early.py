"""Large uploads stored while they arrive (`S3Backend.store_early`), on SeaweedFS: parts go to
the store as the spool file grows, nothing is visible before `put`, and every way an upload
can end leaves no part behind."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from contract import fetch
from contract import index_of
from contract import stage
from factory import make_wheel
from s3_support import S3Bucket
from support import WRITE
from support import poll
from support_upload import basic
from support_upload import multipart_body
from support_upload import upload_form
from test_s3 import PREFIX
from test_s3 import Counter
from test_s3 import cut_off_before_listing
from test_s3 import raw_client
from test_s3 import s3_section

from pywharf.app import App
from pywharf.backends import ArrivingFile
from pywharf.backends import EarlyStore
from pywharf.backends import StagedUpload
from pywharf.backends import backend_settings
from pywharf.backends.s3 import S3Backend
from pywharf.backends.s3_layout import PARTIAL_RECORD
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.s3_core import MIN_PART_BYTES
from pywharf.clients.s3_growing import GrowingPut
from pywharf.clients.s3_multipart import GrowingUpload
from pywharf.config import parse_repositories
from pywharf.dists import parse_filename
from pywharf.errors import DistributionExists
from pywharf.errors import StorageUnavailable
from pywharf.http import Request
from pywharf.http import Response
from pywharf.index import FileRecord
from pywharf.repository import Repository

MiB = 1024**2


def early_backend(bucket: S3Bucket, root: Path, name: str = "pkgs") -> S3Backend:
    """Parts of the smallest size S3 takes, so a 12 MiB wheel is three of them."""
    (config,) = parse_repositories(
        tomli_w.dumps({name: s3_section(bucket)}), "test", backend_settings
    )
    return S3Backend(
        config, root, f"{bucket.access_key}:{bucket.secret_key}",
        multipart_threshold=MIN_PART_BYTES, part_bytes=MIN_PART_BYTES,
    )  # fmt: skip


@pytest.fixture
def backend(seaweedfs: S3Bucket, tmp_path: Path) -> Iterator[S3Backend]:
    backend = early_backend(seaweedfs, tmp_path / "root")
    yield backend
    backend.close()


@pytest.fixture
def big(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=12 * MiB)


def unfinished(bucket: S3Bucket) -> list[str]:
    with contextlib.closing(raw_client(bucket)) as client:
        return [upload.key for upload in client.list_multipart_uploads()]


def stored(bucket: S3Bucket, key: str) -> bool:
    with contextlib.closing(raw_client(bucket)) as client:
        try:
            client.head(key)
        except ResourceNotFound:
            return False
        return True


class Arrival:
    """A wheel's bytes written into a spool file bit by bit, as the upload pipeline does;
    `one_put`: its length told at its start (it is the form's last part), so it goes as one
    PUT; `told` overrides that length (a wrong guess)."""

    def __init__(
        self, backend: S3Backend, wheel: Path, one_put: bool = False, told: int | None = None
    ) -> None:
        self.wheel = wheel
        self.data = wheel.read_bytes()
        self.path = backend.spool_dir / f"upload-early-{wheel.name}"
        self.file = self.path.open("wb")
        project = parse_filename(wheel.name).project
        sha256 = hashlib.sha256(self.data).hexdigest()
        size_if_last = (len(self.data) if told is None else told) if one_put else None
        self.arriving = ArrivingFile(
            self.path, project, wheel.name, sha256, len(self.data) + 999, size_if_last
        )
        self.key = f"{PREFIX}/files/{project}/{wheel.name}"
        self.written = 0

    def start(self, backend: S3Backend) -> GrowingPut | GrowingUpload:
        early = backend.store_early(self.arriving)
        assert isinstance(early, GrowingPut if self.arriving.size_if_last else GrowingUpload)
        return early

    def write(self, early: EarlyStore, upto: int) -> None:
        self.file.write(self.data[self.written : upto])
        self.file.flush()
        self.written = upto
        early.grew(upto)

    def finish(self, early: EarlyStore) -> None:
        self.write(early, len(self.data))
        self.file.close()
        early.ended(len(self.data))


KINDS = {"in parts": False, "as one PUT": True}


def test_parts_go_to_the_store_while_the_file_arrives_and_show_only_after_put(
    backend: S3Backend, seaweedfs: S3Bucket, big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(backend, monkeypatch)
    arrival = Arrival(backend, big)
    early = arrival.start(backend)
    arrival.write(early, 2 * MIN_PART_BYTES + 1)
    # Two parts sent before the file is complete (a POST to begin, then a PUT each).
    poll(lambda: True if counter.sent.count("PUT") == 2 else None, "two parts sent early")
    assert not stored(seaweedfs, arrival.key)  # nothing visible while it arrives
    assert unfinished(seaweedfs) == [arrival.key]
    arrival.finish(early)
    upload = dataclasses.replace(stage(backend, big), early=early)
    record = backend.put(upload, WRITE)
    # Begin, three parts, the manifest's GET, complete, the wheel's METADATA, the manifest:
    # the file is never sent a second time.
    sent = counter.take()
    assert (sent.count("POST"), sent.count("PUT"), sent.count("GET")) == (2, 5, 1), sent
    assert fetch(backend.open(record)) == arrival.data
    assert [r.filename for r in index_of(backend).records()] == [big.name]
    assert unfinished(seaweedfs) == []
    counter.take()
    early.abort()  # what the upload pipeline always does at the end: nothing left to drop
    assert counter.take() == []


def streamed(counter: Counter, size: int) -> Callable[[], bool | None]:
    return lambda: True if counter.streamed == size else None


def test_a_file_of_known_length_goes_as_one_put_while_it_arrives_and_shows_only_after_put(
    backend: S3Backend, seaweedfs: S3Bucket, big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(backend, monkeypatch)
    arrival = Arrival(backend, big, one_put=True)
    early = arrival.start(backend)
    half = len(arrival.data) // 2
    arrival.write(early, half)
    poll(streamed(counter, half), "what arrived sent at once")
    assert not stored(seaweedfs, arrival.key)
    arrival.finish(early)
    # All but the last byte: the store cannot hold the object before `put` verified it.
    poll(streamed(counter, len(arrival.data) - 1), "all but the last byte sent")
    assert not stored(seaweedfs, arrival.key)
    record = backend.put(dataclasses.replace(stage(backend, big), early=early), WRITE)
    # The file's PUT, the manifest's GET, the wheel's METADATA, the manifest: the file is sent
    # once, and in no parts.
    sent = counter.take()
    assert (sent.count("POST"), sent.count("PUT"), sent.count("GET")) == (0, 3, 1), sent
    assert counter.streamed == len(arrival.data)
    assert fetch(backend.open(record)) == arrival.data
    assert [r.filename for r in index_of(backend).records()] == [big.name]
    counter.take()
    early.abort()  # what the upload pipeline always does at the end: nothing left to drop
    assert counter.take() == []


@pytest.mark.parametrize("off_by", [-5, 5])
def test_a_wrong_length_told_stores_the_file_whole_at_put(
    backend: S3Backend, big: Path, monkeypatch: pytest.MonkeyPatch, off_by: int
) -> None:
    """A part after the file (a client other than twine and uv) makes the guess wrong."""
    counter = Counter(backend, monkeypatch)
    told = big.stat().st_size + off_by
    arrival = Arrival(backend, big, one_put=True, told=told)
    early = arrival.start(backend)
    arrival.finish(early)
    sendable = min(len(arrival.data), told - 1)  # never the length told: never stored
    poll(streamed(counter, sendable), "all the early PUT may send")
    record = backend.put(dataclasses.replace(stage(backend, big), early=early), WRITE)
    assert fetch(backend.open(record)) == arrival.data
    # The early PUT, cut off; then the file whole, from the spool (in parts, over this
    # backend's multipart threshold: a POST to begin and one to complete).
    sent = counter.take()
    assert (sent[0], sent.count("POST")) == ("PUT", 2), sent
    assert counter.streamed == sendable


@pytest.mark.parametrize("one_put", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("when", ["while arriving", "after it arrived"])
def test_an_aborted_upload_leaves_no_object_and_no_parts(
    backend: S3Backend,
    seaweedfs: S3Bucket,
    big: Path,
    when: str,
    one_put: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counter = Counter(backend, monkeypatch)
    arrival = Arrival(backend, big, one_put)
    early = arrival.start(backend)
    arrival.write(early, MIN_PART_BYTES + 10)
    if when == "after it arrived":
        arrival.finish(early)
        if one_put:  # the store holds all but the last byte when the connection closes
            poll(streamed(counter, len(arrival.data) - 1), "all but the last byte sent")
    arrival.file.close()
    early.abort()  # a bad digest, a bad wheel, a client gone, a 409, a 403
    assert not stored(seaweedfs, arrival.key)
    assert unfinished(seaweedfs) == []
    early.abort()  # twice is harmless


def stored_unlisted(backend: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another server stores `wheel` and dies before listing it."""
    with monkeypatch.context() as patched:
        cut_off_before_listing(backend, patched)
        with pytest.raises(StorageUnavailable):
            backend.put(stage(backend, wheel), WRITE)


@pytest.mark.parametrize("one_put", KINDS.values(), ids=KINDS.keys())
def test_a_name_taken_meanwhile_is_a_412_at_completion_handled_as_before(
    backend: S3Backend,
    seaweedfs: S3Bucket,
    tmp_path: Path,
    big: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_put: bool,
) -> None:
    other = early_backend(seaweedfs, tmp_path / "other")
    arrival = Arrival(backend, big, one_put)
    early = arrival.start(backend)
    arrival.finish(early)
    stored_unlisted(other, big, monkeypatch)  # the same bytes: completing answers 412
    record = backend.put(dataclasses.replace(stage(backend, big), early=early), WRITE)
    assert record.sha256 == hashlib.sha256(arrival.data).hexdigest()  # identical: a 200
    assert [r.filename for r in index_of(backend).records()] == [big.name]
    assert unfinished(seaweedfs) == []  # the 412 aborted the upload
    folder = tmp_path / "impostor"
    folder.mkdir()
    stored_unlisted(other, make_wheel(folder, "big-pkg", "2.0", payload_bytes=6 * MiB), monkeypatch)
    late = Arrival(backend, make_wheel(tmp_path, "big-pkg", "2.0", payload_bytes=7 * MiB), one_put)
    early = late.start(backend)
    late.finish(early)
    with pytest.raises(DistributionExists):
        backend.put(dataclasses.replace(stage(backend, late.wheel), early=early), WRITE)
    assert unfinished(seaweedfs) == []
    assert len(index_of(backend).records()) == 2  # the 409 names a file everyone can see
    other.close()


def stored_early_unlisted(
    backend: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch, one_put: bool
) -> StagedUpload:
    """`wheel` stored while it arrived, by a server that dies before listing it."""
    arrival = Arrival(backend, wheel, one_put)
    early = arrival.start(backend)
    arrival.finish(early)
    staged = dataclasses.replace(stage(backend, wheel), early=early)
    with monkeypatch.context() as patched:
        cut_off_before_listing(backend, patched)
        with pytest.raises(StorageUnavailable):
            backend.put(staged, WRITE)
    return staged


@pytest.mark.parametrize("one_put", KINDS.values(), ids=KINDS.keys())
def test_an_early_file_cut_off_before_listing_is_listed_by_update_index_from_its_bytes(
    backend: S3Backend,
    seaweedfs: S3Bucket,
    tmp_path: Path,
    big: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_put: bool,
) -> None:
    staged = stored_early_unlisted(backend, big, monkeypatch, one_put)
    with contextlib.closing(raw_client(seaweedfs)) as client:
        key = f"{PREFIX}/files/big-pkg/{big.name}"
        assert PARTIAL_RECORD in client.head(key).metadata
    # update_index describes it from its bytes: the record's METADATA hash is not in its head.
    report = backend.rebuild_index()
    assert report.added == [big.name]
    (listed,) = index_of(backend).records()
    expected: FileRecord = staged.record
    assert (listed.sha256, listed.metadata_sha256) == (expected.sha256, expected.metadata_sha256)
    assert unfinished(seaweedfs) == []


@pytest.mark.parametrize("one_put", KINDS.values(), ids=KINDS.keys())
def test_other_bytes_under_an_early_unlisted_file_list_it_from_its_bytes_then_answer_409(
    backend: S3Backend,
    tmp_path: Path,
    big: Path,
    monkeypatch: pytest.MonkeyPatch,
    one_put: bool,
) -> None:
    staged = stored_early_unlisted(backend, big, monkeypatch, one_put)
    folder = tmp_path / "impostor"
    folder.mkdir()
    impostor = make_wheel(folder, "big-pkg", "1.0", payload_bytes=99)
    with pytest.raises(DistributionExists):
        backend.put(stage(backend, impostor), WRITE)
    (listed,) = index_of(backend).records()  # the 409 names a file everyone can now see
    assert (listed.sha256, listed.metadata_sha256) == (
        staged.record.sha256,
        staged.record.metadata_sha256,
    )


def test_small_files_are_stored_whole_by_put(backend: S3Backend, tmp_path: Path) -> None:
    small = make_wheel(tmp_path, "small-pkg", "1.0")
    arriving = ArrivingFile(tmp_path / "x", parse_filename(small.name).project, small.name,
                            "0" * 64, MIN_PART_BYTES)  # fmt: skip
    assert backend.store_early(arriving) is None


# --- through the upload pipeline ---------------------------------------------------------------


class Body(io.BytesIO):
    """A request body that stops after `pause_at` bytes until `resume()` says so."""

    def __init__(self, data: bytes, pause_at: int, resume: Callable[[], bool]) -> None:
        super().__init__(data)
        self._pause_at = pause_at
        self._resume = resume

    def read(self, size: int | None = -1) -> bytes:
        position = self.tell()
        if position >= self._pause_at:
            poll(lambda: True if self._resume() else None, "parts sent while the body arrives")
            self._pause_at = len(self.getbuffer()) + 1
        elif size is not None and size >= 0:
            size = min(size, self._pause_at - position)
        return super().read(size)


@pytest.fixture
def app(seaweedfs: S3Bucket, tmp_path: Path) -> Iterator[tuple[App, S3Backend]]:
    backend = early_backend(seaweedfs, tmp_path / "root", name="local")
    repository = Repository(backend, 3600, 300)
    repository.sync()
    yield App({"local": repository}), backend
    backend.close()


def post(app: App, wheel: Path, data: bytes, pause_at: int, resume: Callable[[], bool]) -> Response:
    fields = upload_form(wheel.name, wheel.read_bytes())
    body, content_type = multipart_body(fields, (wheel.name, data))
    headers = {"content-type": content_type, "authorization": basic("local", WRITE)}
    request = Request("POST", "/simple/", {}, headers, Body(body, pause_at, resume), len(body))
    return app.handle(request)


def test_an_upload_is_sent_to_the_store_while_its_body_arrives(
    app: tuple[App, S3Backend], seaweedfs: S3Bucket, big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, backend = app
    counter = Counter(backend, monkeypatch)
    data = big.read_bytes()
    # The body waits past its middle until half the file went to the store (as one PUT: the
    # file is the form's last part): without the early sending, the upload would time out here.
    answer = post(handler, big, data, len(data) // 2 + 2 * MIN_PART_BYTES,
                  lambda: counter.streamed >= len(data) // 2)  # fmt: skip
    assert answer.status == 200, answer.body
    assert counter.streamed == len(data)  # and only then
    assert [r.filename for r in index_of(backend).records()] == [big.name]
    assert unfinished(seaweedfs) == []
    again = post(handler, big, data, len(data), lambda: True)  # identical: nothing is sent
    assert again.status == 200
    assert unfinished(seaweedfs) == []


@pytest.mark.parametrize("damage", ["digest", "wheel"])
def test_a_rejected_upload_sent_early_leaves_nothing_in_the_store(
    app: tuple[App, S3Backend], seaweedfs: S3Bucket, big: Path, damage: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    handler, backend = app
    counter = Counter(backend, monkeypatch)
    data = big.read_bytes()
    if damage == "digest":  # other bytes than the sha256 declared
        data = data[:-100] + bytes(100)
    else:  # a wheel that is no zip, declared with its own sha256
        data = bytes(len(data))
        big = big.with_name("big_pkg-1.0-py3-none-any.whl")
        big.write_bytes(data)
    answer = post(handler, big, data, 2 * MIN_PART_BYTES,
                  lambda: counter.streamed >= MIN_PART_BYTES)  # fmt: skip
    assert answer.status == 400, answer.body
    assert index_of(backend).records() == []
    assert unfinished(seaweedfs) == []
    key = f"{PREFIX}/files/big-pkg/{big.name}"
    assert not stored(seaweedfs, key)
