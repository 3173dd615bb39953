"""Large uploads take the threaded hashing path: digests are still verified, nothing leaks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from factory import make_wheel
from support import CONFIG
from support import build_app
from support_upload import app_get
from support_upload import app_upload

from pywharf import upload


def test_a_large_upload_is_hashed_on_a_thread_and_verified(tmp_path: Path) -> None:
    app = build_app(tmp_path / "root", CONFIG.replace("2000000", "50000000"))
    size = upload.THREADED_HASHING_BYTES + 1024 * 1024
    wheel = make_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=size)
    before = threading.active_count()
    wrong = app_upload(app, wheel, blake2_256_digest="0" * 64)
    assert wrong.status == 400 and b"blake2_256_digest" in bytes(wrong.body)  # type: ignore[arg-type]
    assert app_get(app, "/simple/big-pkg/").status == 404
    right = app_upload(app, wheel)
    assert right.status == 200, right.body
    page = app_get(app, "/simple/big-pkg/")
    assert wheel.name.encode() in bytes(page.body)  # type: ignore[arg-type]
    assert threading.active_count() == before  # the hashing thread is gone
    spool = tmp_path / "root" / "cache" / "local" / "storage" / ".pywharf" / "tmp"
    assert list(spool.iterdir()) == []


def test_a_large_file_is_flushed_to_disk_while_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fdatasync` every FLUSH_BYTES on a thread of its own, then the fsync before the answer;
    the thread is gone once the upload answered, also when it was refused."""
    flushed: list[int] = []  # the file's size at each flush
    real = os.fdatasync

    def counted(descriptor: int) -> None:
        flushed.append(os.fstat(descriptor).st_size)
        real(descriptor)

    monkeypatch.setattr(upload, "FLUSH_BYTES", 1024 * 1024)
    monkeypatch.setattr(os, "fdatasync", counted)
    app = build_app(tmp_path / "root", CONFIG.replace("2000000", "50000000"))
    wheel = make_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=upload.THREADED_HASHING_BYTES)
    before = threading.active_count()
    assert app_upload(app, wheel, sha256_digest="0" * 64).status == 400
    assert threading.active_count() == before
    flushed.clear()
    assert app_upload(app, wheel).status == 200
    assert threading.active_count() == before
    # At least the first: it is queued before the thread is told to stop. Each flush saw the
    # file at least as long as when it was asked for.
    assert flushed and flushed == sorted(flushed) and flushed[0] >= 1024 * 1024


def test_a_spool_file_the_backend_only_reads_is_never_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that stores the bytes elsewhere (S3, GitHub, memory) leaves the spool file's
    pages to be dropped with it: syncing them doubled the disk writes of an S3 upload."""
    synced: list[str] = []
    monkeypatch.setattr(upload, "FLUSH_BYTES", 1024 * 1024)
    monkeypatch.setattr(os, "fdatasync", lambda _: synced.append("fdatasync"))
    monkeypatch.setattr(os, "fsync", lambda _: synced.append("fsync"))
    config = CONFIG.replace("file_system", "memory").replace("2000000", "50000000")
    app = build_app(tmp_path / "root", config)
    wheel = make_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=upload.THREADED_HASHING_BYTES)
    assert app_upload(app, wheel).status == 200
    assert synced == []
    assert wheel.name.encode() in bytes(app_get(app, "/simple/big-pkg/").body)  # type: ignore[arg-type]
