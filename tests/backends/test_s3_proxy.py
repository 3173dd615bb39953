"""`download = "proxy"` on SeaweedFS: the first download is streamed while its verified copy
is written (the last chunk held back until the sha256 matched), later ones get the copy, and
concurrent first downloads fetch the object once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from contract import fetch
from factory import make_wheel
from s3_support import S3Bucket
from test_s3 import Counter
from test_s3 import S3Tamper
from test_s3 import new_backend
from test_s3 import put

from pywharf.backends import LocalFile
from pywharf.backends import Streamed
from pywharf.backends.s3 import S3Backend
from pywharf.errors import StorageError
from pywharf.index import FileRecord


@pytest.fixture
def proxy(seaweedfs: S3Bucket, tmp_path: Path) -> Iterator[S3Backend]:
    backend = new_backend(seaweedfs, tmp_path / "root", download="proxy")
    yield backend
    backend.close()


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "proxied", "1.0", payload_bytes=3 * 1024**2)  # a few chunks


@pytest.fixture
def tamper(seaweedfs: S3Bucket) -> Iterator[S3Tamper]:
    tamper = S3Tamper(seaweedfs)
    yield tamper
    tamper.client.close()


def copies(backend: S3Backend) -> list[str]:
    folder = backend._downloads.folder
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_first_download_streams_while_the_copy_is_made_then_the_copy_serves(
    proxy: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put(proxy, wheel)
    counter = Counter(proxy, monkeypatch)
    target = proxy.open(record)
    assert isinstance(target, Streamed) and target.size == record.size
    received: list[bytes] = []
    for chunk in target.chunks:
        if len(received) == 1:  # served before the object is all read: nothing kept yet
            assert wheel.name not in copies(proxy)
        received.append(chunk)
    target.close()
    assert len(received) > 2 and b"".join(received) == wheel.read_bytes()
    assert copies(proxy) == [wheel.name]  # kept, and the temporary file is gone
    later = proxy.open(record)
    assert isinstance(later, LocalFile) and fetch(later) == wheel.read_bytes()
    assert counter.take() == ["GET"]  # one fetch from the store, for both


def test_a_mismatch_is_never_served_complete_nor_kept(
    proxy: S3Backend, wheel: Path, tamper: S3Tamper
) -> None:
    record = put(proxy, wheel)
    tamper.damage_behind(proxy, record)
    for _ in range(2):  # not kept: the next request fetches (and refuses) again
        target = proxy.open(record)
        assert isinstance(target, Streamed)
        received = bytearray()
        with pytest.raises(StorageError, match="does not match its sha256"):
            for chunk in target.chunks:
                received += chunk
        target.close()
        assert len(received) < record.size  # the last chunk was held back
        assert copies(proxy) == []


def test_a_download_closed_unread_keeps_nothing_and_frees_the_file(
    proxy: S3Backend, wheel: Path
) -> None:
    record = put(proxy, wheel)
    first = proxy.open(record)
    assert isinstance(first, Streamed)
    first.close()  # a HEAD, or a client gone before the body
    assert copies(proxy) == []
    assert fetch(proxy.open(record)) == wheel.read_bytes()  # not blocked: streamed anew


def test_concurrent_first_downloads_fetch_the_object_once(
    proxy: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record: FileRecord = put(proxy, wheel)
    counter = Counter(proxy, monkeypatch)
    start = threading.Barrier(20)

    def download(_: int) -> bytes:
        start.wait()
        return fetch(proxy.open(record))

    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(download, range(20)))
    assert all(body == wheel.read_bytes() for body in bodies)
    assert counter.take() == ["GET"]
