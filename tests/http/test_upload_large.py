"""Large uploads take the threaded hashing path: digests are still verified, nothing leaks."""

from __future__ import annotations

import threading
from pathlib import Path

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
