"""Chunked sha256 of files and streams: one pass, bounded memory, for every backend."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["CHUNK_BYTES", "copy_hashed", "relay_checked", "sha256_of_file"]

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


def relay_checked(
    chunks: Iterable[bytes], out: IO[bytes], size: int | None, check: Callable[[str, int], None]
) -> Iterator[bytes]:
    """Pass `chunks` on while writing them to `out` and hashing them, holding the last one
    back until `check(sha256, total)` returned: it raises when the bytes are not the ones
    expected (more than `size` are never read), so a client never gets a complete wrong file
    (a short body instead), and it keeps the copy when they are."""
    digest = hashlib.sha256()
    total, pending = 0, b""
    for chunk in chunks:
        total += len(chunk)
        if size is not None and total > size:
            break
        out.write(chunk)
        digest.update(chunk)
        if pending:
            yield pending
        pending = chunk
    out.flush()
    check(digest.hexdigest(), total)
    yield pending
