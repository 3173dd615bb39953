"""Files sent to S3 while they arrive, against a fake store (the calls, not S3).

A growing upload sends several parts at once: each part's bytes from its offset, the ETags in
part order whatever order the parts finish in, and no part still in flight when the upload is
aborted. A growing PUT sends all but the last byte as the file grows, the last only at
`complete`, and leaves the file to its caller when it ends at another length or fails."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO
from typing import Any
from typing import cast

import pytest
from support import poll

from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Unavailable
from pywharf.clients.http import ClientResponse
from pywharf.clients.s3_core import S3Core
from pywharf.clients.s3_growing import GrowingPut
from pywharf.clients.s3_multipart import EARLY_PARTS_IN_FLIGHT
from pywharf.clients.s3_multipart import GrowingUpload
from pywharf.clients.s3_multipart import MultipartCalls

PART = 4
WAIT = 10.0  # seconds: a stuck test fails instead of hanging


class FakeStore:
    """The four calls a growing upload makes; `_send_part` runs `hold(number)` first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.parts: dict[int, bytes] = {}
        self.finished: list[int] = []
        self.completed: list[str] | None = None
        self.aborted_with_in_flight: list[int] = []
        self.release = threading.Event()  # set once the first parts are all in flight
        self.third_done = threading.Event()
        self.fail_part = 0

    def hold(self, number: int) -> None:
        """The first parts wait until they are all in flight; part 1 then waits for the last
        of them to finish, so parts end out of order."""
        if number <= EARLY_PARTS_IN_FLIGHT:
            assert self.release.wait(WAIT)
        if number == 1:
            assert self.third_done.wait(WAIT)

    def _begin(self, key: str, headers: object) -> str:
        return "upload-1"

    def _send_part(
        self, key: str, upload_id: str, number: int, file: IO[bytes], offset: int, length: int
    ) -> str:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight == EARLY_PARTS_IN_FLIGHT:
                self.release.set()
        try:
            self.hold(number)
            file.seek(offset)
            self.parts[number] = file.read(length)
            if number == self.fail_part:
                raise ClientError(f"part {number} refused", 500)
            return f"etag-{number}"
        finally:
            with self.lock:
                self.in_flight -= 1
                self.finished.append(number)
            if number == EARLY_PARTS_IN_FLIGHT:
                self.third_done.set()

    def _complete(
        self, key: str, upload_id: str, etags: list[str], conditional: object, create: bool
    ) -> str:
        self.completed = list(etags)
        return "etag"

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.aborted_with_in_flight.append(self.in_flight)


def start(store: FakeStore, path: Path) -> GrowingUpload:
    return GrowingUpload(cast(MultipartCalls, store), "files/a/a.whl", path, PART, {})


def arrive(upload: GrowingUpload, path: Path, data: bytes) -> None:
    """The file written a part at a time, as the upload pipeline reports it."""
    with path.open("wb") as file:
        for offset in range(0, len(data), PART):
            file.write(data[offset : offset + PART])
            file.flush()
            upload.grew(min(offset + PART, len(data)))
    upload.ended(len(data))


def test_parts_go_at_once_and_complete_in_part_order(tmp_path: Path) -> None:
    store, path = FakeStore(), tmp_path / "spool"
    data = bytes(range(7 * PART + 2))  # 7 whole parts and a short last one
    upload = start(store, path)
    arrive(upload, path, data)
    assert upload.complete({"If-None-Match": "*"}) == "etag"
    assert store.most_in_flight == EARLY_PARTS_IN_FLIGHT
    assert store.finished[0] != 1  # part 1 waited for others: they finished out of order
    assert store.completed == [f"etag-{n}" for n in range(1, 9)]
    assert b"".join(store.parts[n] for n in range(1, 9)) == data
    assert store.aborted_with_in_flight == []


def test_an_empty_file_is_one_empty_part(tmp_path: Path) -> None:
    store, path = FakeStore(), tmp_path / "spool"
    store.release.set()
    store.third_done.set()
    path.write_bytes(b"")
    upload = start(store, path)
    upload.ended(0)
    upload.complete({})
    assert store.completed == ["etag-1"] and store.parts == {1: b""}


def test_a_failed_part_fails_the_upload_and_aborts_it_once_no_part_is_in_flight(
    tmp_path: Path,
) -> None:
    store, path = FakeStore(), tmp_path / "spool"
    store.fail_part = 1
    upload = start(store, path)
    arrive(upload, path, bytes(6 * PART))
    with pytest.raises(ClientError, match="part 1 refused"):
        upload.complete({})
    assert store.completed is None
    assert store.aborted_with_in_flight == [0]


def test_an_abort_waits_for_the_parts_in_flight(tmp_path: Path) -> None:
    store, path = FakeStore(), tmp_path / "spool"
    upload = start(store, path)
    data = bytes(3 * PART)
    with path.open("wb") as file:
        file.write(data)
    upload.grew(len(data))  # three parts in flight, part 1 held until the third began
    upload.abort()
    assert store.aborted_with_in_flight == [0]
    upload.abort()  # again: nothing more
    assert store.aborted_with_in_flight == [0]


class FakePut:
    """One PUT's `_send`: takes the body as it comes, then answers `answer` (or raises it)."""

    _written = S3Core._written
    _error = S3Core._error

    def __init__(self, answer: int | BaseException) -> None:
        self.answer = answer
        self.received = bytearray()
        self.cut_off: BaseException | None = None

    def _send(self, method: str, key: str, **kwargs: Any) -> ClientResponse:
        try:
            for chunk in kwargs["body"]:
                self.received += chunk
        except BaseException as error:  # urllib3 closes the connection short of its length
            self.cut_off = error
            raise
        if isinstance(self.answer, BaseException):
            raise self.answer
        return ClientResponse(self.answer, {"etag": '"etag"'}, "http://store/k", b"")


def growing_put(store: FakePut, path: Path, data: bytes, told: int) -> GrowingPut:
    """A PUT told `told` bytes, of a file that arrives as `data` in two halves."""
    with path.open("wb") as file:  # the spool file exists before its first byte
        put = GrowingPut(cast(S3Core, store), "files/a/a.whl", path, told, "0" * 64, {})
        for piece in (data[: len(data) // 2], data[len(data) // 2 :]):
            file.write(piece)
            file.flush()
            put.grew(file.tell())
    put.ended(len(data))
    return put


def received(store: FakePut, size: int) -> bool | None:
    return True if len(store.received) == size else None


def test_a_growing_put_sends_its_last_byte_only_at_complete(tmp_path: Path) -> None:
    store, data = FakePut(200), bytes(range(200))
    put = growing_put(store, tmp_path / "spool", data, len(data))
    poll(lambda: received(store, len(data) - 1), "all but the last byte")
    assert put.complete() == "etag"
    assert store.received == data
    put.abort()  # finished: nothing to do
    assert store.cut_off is None


@pytest.mark.parametrize("off_by", [-1, 1])
def test_a_file_of_another_length_is_cut_off_and_left_to_the_caller(
    tmp_path: Path, off_by: int
) -> None:
    store, data = FakePut(200), bytes(100)
    put = growing_put(store, tmp_path / "spool", data, len(data) + off_by)
    poll(lambda: received(store, min(len(data), len(data) + off_by - 1)), "what may be sent")
    assert put.complete() is None
    assert store.cut_off is not None  # never the length told: the store keeps nothing


@pytest.mark.parametrize("answer", [503, 403, Unavailable("connection refused", None)])
def test_a_failed_put_is_left_to_the_caller(tmp_path: Path, answer: int | BaseException) -> None:
    put = growing_put(FakePut(answer), tmp_path / "spool", bytes(10), 10)
    assert put.complete() is None


def test_a_taken_name_is_already_exists(tmp_path: Path) -> None:
    put = growing_put(FakePut(412), tmp_path / "spool", bytes(10), 10)
    with pytest.raises(AlreadyExists):
        put.complete()


def test_an_abort_cuts_the_put_off_short_of_its_length(tmp_path: Path) -> None:
    store = FakePut(200)
    put = growing_put(store, tmp_path / "spool", bytes(10), 10)
    poll(lambda: received(store, 9), "all but the last byte")
    put.abort()
    assert store.cut_off is not None and len(store.received) == 9
    put.abort()  # again: nothing more
    with pytest.raises(RuntimeError, match="not ready to complete"):
        put.complete()
