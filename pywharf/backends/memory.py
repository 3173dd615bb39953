"""The in-memory backend: the contract's cheap reference implementation (fsspec's `memory`).

Files, their PEP 658 metadata and the index's event journal live in this process, in a store
shared by every backend built for the same ROOT and repository name (so two instances behave
as two servers on one store). Nothing survives the process: use it for tests and trials.

Downloads are local copies: the contract's `Download` is a local file or a URL, and a copy
in ROOT/cache/<name>/files/ (the shared download cache, verified against the sha256) keeps
the contract as it is rather than widening it for bytes held in memory.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from pywharf.auth import Permission
from pywharf.auth import permission_of_secret
from pywharf.backends import ArrivingFile
from pywharf.backends import BackendType
from pywharf.backends import IndexUpdate
from pywharf.backends import LocalFile
from pywharf.backends import RepairReport
from pywharf.backends import StagedUpload
from pywharf.backends import put_each
from pywharf.backends.atomic import local_directory
from pywharf.backends.download_cache import DownloadCache
from pywharf.backends.events import rescanned_events
from pywharf.backends.file_system import SETTINGS
from pywharf.backends.file_system import FileSystemSettings
from pywharf.config import RepositoryConfig
from pywharf.config import typed_settings
from pywharf.dists import parse_filename
from pywharf.errors import DistributionExists
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Yank

__all__ = ["MemoryBackend", "MemoryStore"]


@dataclass
class Blob:
    """A stored file: its bytes, its wheel's METADATA, and the record put() wrote (None: added
    behind the index's back, so a rebuild describes it from the bytes)."""

    data: bytes
    metadata: bytes | None = None
    record: FileRecord | None = None


@dataclass
class MemoryStore:
    """One repository's files and journal; `generation` changes when a rebuild rewrites it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    files: dict[str, Blob] = field(default_factory=dict)
    journal: list[Event] = field(default_factory=list)
    generation: int = 0
    mtime: int = 0
    tokens: bytes = b""  # pywharf.tokens' document

    def append(self, event: Event) -> None:
        self.journal.append(event)
        self.mtime = int(time.time())


_STORES: dict[tuple[str, str], MemoryStore] = {}
_STORES_LOCK = threading.Lock()


class MemoryBackend:
    """Packages in this process's memory, shared by the instances of one ROOT and name."""

    SETTINGS = SETTINGS  # the file_system's keys: read and write secrets, limits
    auth_checks_per_second = None  # comparing two strings costs nothing
    reads_locally = True  # everything in this process
    keeps_spool_file = False  # its bytes are read into memory

    def __init__(self, config: RepositoryConfig, root: Path, admin_secret: str | None) -> None:
        self.settings = typed_settings(config, FileSystemSettings)
        self.name = config.name
        self.max_file_bytes = self.settings.max_file_bytes
        self.sync_index_interval = self.settings.sync_index_interval
        self.spool_dir = local_directory(root / "cache" / config.name / "spool", self.name)
        self._copies = DownloadCache(root / "cache" / config.name / "files")
        with _STORES_LOCK:
            self.store = _STORES.setdefault((str(root.resolve()), self.name), MemoryStore())

    def authorize(self, secret: str) -> Permission:
        return permission_of_secret(secret, self.settings.read_secret, self.settings.write_secret)

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        store = self.store
        with store.lock:
            generation, offset = cursor if cursor is not None else (None, 0)
            if generation != store.generation:
                offset = 0
            elif offset == len(store.journal):
                return None
            events = tuple(store.journal[offset:])
            new_cursor = (store.generation, len(store.journal))
            return IndexUpdate(events, offset == 0, new_cursor, store.mtime)

    def put_many(
        self, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        return put_each(self, uploads, credential)

    def store_early(self, arriving: ArrivingFile) -> None:
        return None  # nothing to overlap: `put` copies bytes in memory

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        record = upload.record
        try:
            data = upload.path.read_bytes()
        except OSError as error:
            raise StorageError(f"cannot read the upload of {record.filename!r}: {error}") from None
        with self.store.lock:
            stored = self.store.files.get(record.filename)
            if stored is not None:
                if stored.record is None or stored.record.sha256 != record.sha256:
                    raise DistributionExists(record.filename)
                return stored.record
            self.store.files[record.filename] = Blob(data, upload.metadata, record)
            self.store.append(Add(record))
        return record

    def apply_change(self, event: Event, credential: str) -> None:
        if isinstance(event, Add):
            raise StorageError("an Add is stored by put()")
        with self.store.lock:
            if isinstance(event, Delete):
                self.store.files.pop(event.filename, None)
            elif isinstance(event, Yank):
                blob = self.store.files.get(event.filename)
                if blob is None or blob.record is None:
                    raise StorageNotFound(f"{event.filename!r} is not stored")
                blob.record = blob.record._replace(yanked=event.reason)
            self.store.append(event)  # a project status lives in the journal only
        if isinstance(event, Delete):
            self._copies.forget(event.filename)
            self._copies.forget(event.filename + ".metadata")

    def open(self, record: FileRecord) -> LocalFile:
        blob = self._blob(record)
        return self._copies.local_copy(
            record.filename, record.sha256, lambda: io.BytesIO(blob.data)
        )

    def open_metadata(self, record: FileRecord) -> LocalFile:
        metadata = self._blob(record).metadata
        if metadata is None or record.metadata_sha256 is None:
            raise StorageNotFound(f"{record.filename!r} has no metadata file")
        name = record.filename + ".metadata"
        return self._copies.local_copy(name, record.metadata_sha256, lambda: io.BytesIO(metadata))

    def _blob(self, record: FileRecord) -> Blob:
        with self.store.lock:
            blob = self.store.files.get(record.filename)
        if blob is None:
            raise StorageNotFound(f"{record.filename!r} is missing from the storage")
        return blob

    def rebuild_index(self) -> RepairReport:
        """Describe every stored file (from its bytes if its record no longer fits them)."""
        with self.store.lock:
            found = []
            for name, blob in sorted(self.store.files.items()):
                blob.record = _described(name, blob)
                if blob.record is not None:
                    found.append(blob.record)
            events, report = rescanned_events(found, self.store.journal)
            self.store.journal = events
            self.store.generation += 1
            self.store.mtime = int(time.time())
        for name in report.repaired:  # a local copy of other bytes is stale
            self._copies.forget(name)
        return report

    def read_tokens(self) -> bytes:
        return self.store.tokens

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        with self.store.lock:
            self.store.tokens = change(self.store.tokens)

    def close(self) -> None:
        pass


def _described(filename: str, blob: Blob) -> FileRecord | None:
    """The blob's record if its bytes still match it, else one made from the bytes."""
    record = blob.record
    digest = hashlib.sha256(blob.data).hexdigest()
    if record is not None and (record.size, record.sha256) == (len(blob.data), digest):
        return record
    try:
        distribution = parse_filename(filename)
    except PywharfError:
        return None  # not a distribution: left unlisted, as the file system does
    return FileRecord(
        filename=filename,
        project=distribution.project,
        version=distribution.version,
        sha256=digest,
        size=len(blob.data),
        upload_time=time.time(),
        requires_python=record.requires_python if record else None,
        metadata_sha256=record.metadata_sha256 if record else None,
    )


_: BackendType = MemoryBackend  # mypy --strict checks the class against the contract
