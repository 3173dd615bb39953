"""A full disk: uploads answer 507 with one line, reads keep working, the journal stays whole,
and uploads work again once space is freed, with no restart (issue 9).

Two variants: a real 4 MiB tmpfs (needs `mount`, so root; skipped with its reason otherwise),
and `ENOSPC` injected at each write of the store, which always runs.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factory import make_wheel
from support import build_app
from support_upload import app_get
from support_upload import app_upload

from pywharf import upload as upload_module
from pywharf.app import App
from pywharf.backends import atomic

STORAGE = Path("cache") / "local" / "storage"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"no tmpfs (the injected variant runs): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file until the disk is full, then give `leave` bytes back."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 65536)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        try:
            while True:
                file.write(b"\0" * 512)
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def check_whole(root: Path) -> list[str]:
    """The journal's records are whole lines; the spool holds nothing; the listed filenames."""
    journal = (root / STORAGE / ".pywharf" / "journal.jsonl").read_bytes()
    assert journal.endswith(b"\n")
    records = [json.loads(line) for line in journal.splitlines()]
    assert list((root / STORAGE / ".pywharf" / "tmp").iterdir()) == []
    return sorted(r["filename"] for r in records if r["op"] == "add")


def page(app: App) -> bytes:
    response = app_get(app, "/simple/demo-pkg/")
    assert response.status == 200
    assert isinstance(response.body, bytes)
    return response.body


def check_refused(app: App, wheel: Path) -> None:
    response = app_upload(app, wheel)
    assert response.status == 507, response.body
    assert isinstance(response.body, bytes)
    assert response.body.count(b"\n") == 1 and b"full" in response.body  # one line, no errno
    assert wheel.name.encode() not in page(app)


@pytest.mark.parametrize("leave", [0, 4096, 8192, 16384, 24576])
def test_a_full_tmpfs_refuses_uploads_with_507_and_recovers_when_space_is_freed(
    small_disk: Path, tmp_path: Path, leave: int
) -> None:
    root = small_disk / "root"
    app = build_app(root)
    first = make_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.8")
    second = make_wheel(tmp_path, "demo-pkg", "2.0", payload_bytes=16384)
    assert app_upload(app, first).status == 200
    filler = fill(small_disk, leave)
    response = app_upload(app, second)
    assert response.status in (200, 507), response.body  # 200: it fit after all
    if leave == 0:
        assert response.status == 507
    if response.status == 507:
        check_refused(app, second)
    assert first.name.encode() in page(app)  # reads keep working
    download = app_get(app, f"/simple/demo-pkg/{first.name}")
    assert download.status == 200
    filler.unlink()
    assert app_upload(app, second).status == 200  # no restart needed
    assert check_whole(root) == sorted([first.name, second.name])
    assert second.name.encode() in page(build_app(root))  # and a restart agrees


def no_space(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def journal_writes_half_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """`os.write` on the journal writes half a record, then the disk is full."""
    real = os.write
    calls = []

    def write(descriptor: int, data: Any) -> int:
        if not os.readlink(f"/proc/self/fd/{descriptor}").endswith("journal.jsonl"):
            return real(descriptor, data)
        calls.append(len(data))
        if len(calls) == 1:
            return real(descriptor, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)


INJECTIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "spool": lambda m: m.setattr(upload_module, "write_all", no_space),
    "temporary file": lambda m: m.setattr(atomic, "write_all", no_space),
    "link": lambda m: m.setattr(os, "link", no_space),
    "journal, after a short write": journal_writes_half_then_fails,
}


@pytest.mark.parametrize("where", INJECTIONS)
def test_enospc_anywhere_answers_507_and_leaves_the_store_whole(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    app = build_app(root)
    first = make_wheel(tmp_path, "demo-pkg", "1.0")
    second = make_wheel(tmp_path, "demo-pkg", "2.0")
    assert app_upload(app, first).status == 200
    journal = (root / STORAGE / ".pywharf" / "journal.jsonl").read_bytes()
    with monkeypatch.context() as patched:
        INJECTIONS[where](patched)
        check_refused(app, second)
        assert first.name.encode() in page(app)
    assert (root / STORAGE / ".pywharf" / "journal.jsonl").read_bytes() == journal
    assert not (root / STORAGE / "demo-pkg" / second.name).exists()
    assert app_upload(app, second).status == 200
    assert check_whole(root) == sorted([first.name, second.name])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"
