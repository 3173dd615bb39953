"""Atomic local writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["fsync_directory", "temporary_name", "write_atomically"]


def temporary_name(path: Path) -> Path:
    """A hidden sibling of `path` no other process or thread will pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomically(path: Path, data: bytes) -> None:
    """Write a temporary sibling, then `os.replace` it over `path` (atomic on POSIX)."""
    temporary = temporary_name(path)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def fsync_directory(path: Path) -> None:
    """Make a directory's new entries (a link, a rename) survive a crash."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
