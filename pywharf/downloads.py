"""What a download answers with: a stored file, a redirect, or bytes relayed while fetched."""

from __future__ import annotations

from dataclasses import dataclass

from pywharf.backends import Backend
from pywharf.backends import LocalFile
from pywharf.backends import Redirect
from pywharf.backends import Streamed
from pywharf.errors import NotFound
from pywharf.index import FileRecord

__all__ = ["FileDownload", "stored_download"]


@dataclass(frozen=True)
class FileDownload:
    """Where a file's bytes are, and what validates a cached copy of them."""

    target: LocalFile | Redirect | Streamed
    etag: str  # strong: a filename never holds other bytes (RFC 9110 8.8.3)
    last_modified: float


def stored_download(backend: Backend, record: FileRecord, metadata: bool) -> FileDownload:
    """A stored file, or with `metadata` its PEP 658 core metadata."""
    if not metadata:
        return FileDownload(backend.open(record), f'"{record.sha256}"', record.stored_at)
    if record.metadata_sha256 is None:
        raise NotFound(f"no metadata for {record.filename + '.metadata'!a}")
    target = backend.open_metadata(record)
    return FileDownload(target, f'"{record.metadata_sha256}"', record.stored_at)
