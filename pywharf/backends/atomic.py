"""Atomic local writes, and leased temporary files that a crash leaves for a sweep to reclaim.

A temporary file is named `<kind>-<INSTANCE>-<uuid>` and held under an `flock` for as long as
its owner may still use it: the lock is the lease. A PID would not do as the owner: a server that
is PID 1 in a container has the same PID after every restart, and two servers in two PID
namespaces sharing a ROOT see each other's PIDs as someone else's (issue 9). A lock dies with
its process, whatever the namespace, so a sweep removes only files no live process holds.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "fsync_directory",
    "instance_id",
    "is_leased",
    "leased_file",
    "sweep",
    "write_all",
    "write_atomically",
]

# A file being created and locked carries this suffix until it is renamed into its lease:
# a sweep leaves it alone for this long, so it never takes a file between `open` and `flock`.
_NEW = ".new"
_NEW_GRACE_SECONDS = 60.0


class _Instance:
    """This process's owner id: random, so unique across hosts and PID namespaces."""

    value = secrets.token_hex(8)

    @classmethod
    def renew(cls) -> None:
        cls.value = secrets.token_hex(8)


os.register_at_fork(after_in_child=_Instance.renew)  # a forked child is another owner


def instance_id() -> str:
    return _Instance.value


@contextmanager
def leased_file(directory: Path, kind: str) -> Iterator[tuple[Path, BinaryIO]]:
    """A new, empty file in `directory`, leased to this process until the block ends."""
    path = directory / f"{kind}-{instance_id()}-{uuid.uuid4().hex}"
    staging = path.with_name(path.name + _NEW)
    file = staging.open("xb", buffering=0)
    try:
        fcntl.flock(file, fcntl.LOCK_EX)
        os.rename(staging, path)  # the lock follows the inode: the file is never unleased
        try:
            yield path, file
        finally:
            path.unlink(missing_ok=True)
    finally:
        staging.unlink(missing_ok=True)
        file.close()  # releases the lease, after the unlink: nobody sweeps a file in use


def is_leased(path: Path, wait: bool = False) -> bool:
    """Whether a live process holds `path`'s lease; with `wait`, False once none does."""
    try:
        with path.open("rb") as file:
            fcntl.flock(file, fcntl.LOCK_SH if wait else fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False


def sweep(directory: Path, kind: str) -> list[Path]:
    """The `kind` files in `directory` whose owner is gone: nobody will use them again."""
    abandoned = []
    for path in sorted(directory.glob(f"{kind}-*")):
        if path.name.endswith(_NEW):
            try:
                young = time.time() - path.stat().st_mtime < _NEW_GRACE_SECONDS
            except FileNotFoundError:
                continue
            if young:
                continue
        if not is_leased(path):
            abandoned.append(path)
    return abandoned


def write_atomically(path: Path, data: bytes, temporary_dir: Path) -> None:
    """Write a leased temporary file, then `os.replace` it over `path` (atomic on POSIX)."""
    with leased_file(temporary_dir, "tmp") as (temporary, file):
        write_all(file, data)
        os.replace(temporary, path)


def write_all(file: BinaryIO, data: bytes) -> None:
    """Write every byte: on a full disk an unbuffered write can write part, then fail."""
    view = memoryview(data)
    while view:
        view = view[file.write(view) :]  # unbuffered: a short write returns less


def fsync_directory(path: Path) -> None:
    """Make a directory's new entries (a link, a rename) survive a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
