"""Chunked sha256 of files and streams: one pass, bounded memory, for every backend."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

__all__ = ["CHUNK_BYTES", "copy_hashed", "sha256_of_file"]

CHUNK_BYTES = 1 << 20  # 1 MiB: hashlib releases the GIL for buffers this large


def sha256_of_file(path: Path) -> str:
    """The hex sha256 of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(chunks: Iterable[bytes], out: IO[bytes]) -> str:
    """Write every chunk to `out`; the hex sha256 of what was written."""
    digest = hashlib.sha256()
    for chunk in chunks:
        out.write(chunk)
        digest.update(chunk)
    return digest.hexdigest()
