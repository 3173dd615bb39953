"""`download = "proxy"` on SeaweedFS: a distribution is relayed from the store as it is read,
by every request alike, once the object's size and stored sha256 are the index's; nothing of
it is kept on the server. Its small `.metadata` file is fetched once, verified and kept."""

from __future__ import annotations

import tarfile
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
from pywharf.backends.s3_layout import object_metadata
from pywharf.bundle import export_bundle
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


def kept(backend: S3Backend) -> list[str]:
    folder = backend._downloads.folder
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_every_download_is_relayed_from_the_store_and_nothing_is_kept(
    proxy: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put(proxy, wheel)
    counter = Counter(proxy, monkeypatch)
    for _ in range(2):
        target = proxy.open(record)
        assert isinstance(target, Streamed) and target.size == record.size
        chunks = list(target.chunks)
        target.close()
        assert len(chunks) > 2 and b"".join(chunks) == wheel.read_bytes()  # passed on as read
    assert counter.take() == ["GET", "GET"]
    assert kept(proxy) == []


def test_the_metadata_file_is_fetched_once_verified_and_kept(
    proxy: S3Backend, wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = put(proxy, wheel)
    counter = Counter(proxy, monkeypatch)
    first, later = proxy.open_metadata(record), proxy.open_metadata(record)
    assert isinstance(first, LocalFile) and isinstance(later, LocalFile)
    assert fetch(later).startswith(b"Metadata-Version:")
    assert counter.take() == ["GET"]
    assert kept(proxy) == [f"{wheel.name}.metadata"]


def test_an_object_replaced_in_the_bucket_is_refused_before_a_byte_is_sent(
    proxy: S3Backend, wheel: Path, tamper: S3Tamper
) -> None:
    record = put(proxy, wheel)
    tamper.damage_behind(proxy, record)  # other bytes, stored without our metadata
    with pytest.raises(StorageError, match="is not the file the index lists; not served"):
        proxy.open(record)


def test_an_object_of_the_right_size_with_another_sha256_is_refused(
    proxy: S3Backend, wheel: Path, tamper: S3Tamper
) -> None:
    record = put(proxy, wheel)
    key = tamper.layout.file(record.project, record.filename)
    other = record._replace(sha256="0" * 64)
    tamper.client.put(key, bytes(record.size), metadata=object_metadata(other))
    with pytest.raises(StorageError, match="is not the file the index lists; not served"):
        proxy.open(record)


def test_a_download_closed_unread_frees_its_connection(proxy: S3Backend, wheel: Path) -> None:
    record = put(proxy, wheel)
    for _ in range(20):  # more than the client's pool: each closed one went back to it
        first = proxy.open(record)
        assert isinstance(first, Streamed)
        first.close()  # a HEAD, or a client gone before the body
    assert fetch(proxy.open(record)) == wheel.read_bytes()


def test_concurrent_downloads_each_get_the_whole_file(proxy: S3Backend, wheel: Path) -> None:
    record: FileRecord = put(proxy, wheel)
    start = threading.Barrier(20)

    def download(_: int) -> bytes:
        start.wait()
        return fetch(proxy.open(record))

    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(download, range(20)))
    assert all(body == wheel.read_bytes() for body in bodies)
    assert kept(proxy) == []


def test_an_export_bundles_a_relayed_file_whole(
    proxy: S3Backend, wheel: Path, tmp_path: Path
) -> None:
    record = put(proxy, wheel)
    bundle = tmp_path / "bundle.tar"
    assert export_bundle(proxy, bundle) == [record]
    with tarfile.open(bundle) as tar:
        member = tar.extractfile(f"files/proxied/{wheel.name}")
        assert member is not None and member.read() == wheel.read_bytes()  # 3 chunks and a bit
