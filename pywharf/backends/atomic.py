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
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO

from pywharf.errors import storage_error

__all__ = [
    "fsync_directory",
    "instance_id",
    "is_leased",
    "local_directory",
    "leased_file",
    "sweep",
    "write_all",
    "write_atomically",
]


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
    while True:
        path = directory / f"{kind}-{instance_id()}-{uuid.uuid4().hex}"
        file = path.open("xb", buffering=0)
        fcntl.flock(file, fcntl.LOCK_EX)
        if _still_named(path, file):
            break
        file.close()  # a sweep took it between `open` and `flock`: it holds the lock to unlink
    try:
        yield path, file
    finally:
        path.unlink(missing_ok=True)
        file.close()  # releases the lease, after the unlink: nobody sweeps a file in use


def _still_named(path: Path, file: BinaryIO) -> bool:
    try:
        named, held = path.stat(), os.fstat(file.fileno())
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


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


def sweep(directory: Path, kind: str) -> Iterator[Path]:
    """Each `kind` file in `directory` whose owner is gone, leased to the caller while it is
    handled (removed, usually): a file just created is locked before it counts as leased."""
    for path in sorted(directory.glob(f"{kind}-*")):
        try:
            file = path.open("rb")
        except FileNotFoundError:
            continue
        with file:
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if _still_named(path, file):
                yield path


def local_directory(path: Path, repository: str) -> Path:
    """A backend's local folder (its spool, its copies), made if missing; one line if not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise storage_error(f"repository {repository!r}: cannot create {path}", error) from None
    return path


def write_atomically(path: Path, data: bytes | Iterable[bytes], temporary_dir: Path) -> None:
    """Write a leased temporary file, then `os.replace` it over `path` (atomic on POSIX).
    `data` may come in parts, made as they are written: a large document is never whole."""
    with leased_file(temporary_dir, "tmp") as (temporary, file):
        for part in (data,) if isinstance(data, bytes) else data:
            write_all(file, part)
        os.replace(temporary, path)


def write_all(target: BinaryIO | int, data: bytes) -> None:
    """Write every byte to an unbuffered file or a descriptor: on a full disk a write can
    write part and return less, then fail on the next one."""
    write = target.write if not isinstance(target, int) else partial(os.write, target)
    view = memoryview(data)
    while view:
        view = view[write(view) :]


def fsync_directory(path: Path) -> None:
    """Make a directory's new entries (a link, a rename) survive a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
