"""The backend contract every storage implements, and the registry of backend types.

The index is the read model: requests never list a backend. A backend stores files, keeps the
index events that describe them (`read_index` hands out what changed since a cursor), and
decides who may read or write. It knows nothing of HTTP, HTML or auth headers, and maps its own
failures (an `OSError`, a GitHub 404) to `StorageError` subclasses at its edge.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Protocol
from typing import Union

from pywharf.auth import Permission
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.errors import ConfigError
from pywharf.index import Event
from pywharf.index import FileRecord

__all__ = [
    "BACKEND_TYPES",
    "Backend",
    "Download",
    "IndexUpdate",
    "LocalFile",
    "Redirect",
    "RepairReport",
    "StagedUpload",
    "backend_class",
    "create_backend",
]


@dataclass(frozen=True)
class LocalFile:
    path: str
    size: int


@dataclass(frozen=True)
class Redirect:
    url: str


Download = Union[LocalFile, Redirect]


@dataclass(frozen=True)
class IndexUpdate:
    """Index events since a cursor; with `replace` they are the whole index."""

    events: tuple[Event, ...]
    replace: bool
    cursor: Any  # opaque to callers: handed back to the next `read_index`
    mtime: int  # when the backend's index last changed (seconds since the epoch)


@dataclass(frozen=True)
class StagedUpload:
    """A complete, verified upload in a local temporary file, ready to be stored."""

    path: Path
    record: FileRecord
    metadata: bytes | None  # PEP 658: the wheel's METADATA, byte for byte
    form: dict[str, str]  # the original's `.meta`: upload form fields, first value each


@dataclass
class RepairReport:
    """What `update_index` found and changed."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    total: int = 0

    def lines(self) -> list[str]:
        changes = [f"added {n}" for n in self.added] + [f"removed {n}" for n in self.removed]
        changes += [f"repaired {n}" for n in self.repaired]
        summary = f"{self.total} files indexed, {len(changes)} changes"
        return [*changes, summary]


class Backend(Protocol):
    """One repository's storage. Implementations are thread-safe."""

    name: str
    max_file_bytes: int
    sync_index_interval: float
    spool_dir: Path  # where uploads are staged: on the same file system as storage if local
    auth_checks_per_second: float | None  # None: `authorize` is free, no rate bound needed

    def authorize(self, secret: str) -> Permission: ...

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        """Events since `cursor` (None: everything), or None when nothing changed."""

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        """Store a file; identical bytes return the stored record, others `DistributionExists`.

        `credential` is the uploader's secret: a backend such as GitHub acts with it.
        """

    def record(self, event: Event, credential: str) -> None:
        """Persist a yank or delete (and remove a deleted file)."""

    def open(self, record: FileRecord) -> Download: ...

    def open_metadata(self, record: FileRecord) -> Download: ...

    def rebuild_index(self) -> RepairReport:
        """Rescan what the storage really holds and rewrite the index from it."""

    def close(self) -> None: ...


# type name -> "module:Class". Imported lazily; built-in backends register as a third party would.
BACKEND_TYPES = {
    "file_system": "pywharf.backends.file_system:FileSystemBackend",
    "github": "pywharf.backends.github:GitHubBackend",
}


def backend_class(type_name: str, where: str) -> Any:
    target = BACKEND_TYPES.get(type_name)
    if target is None:
        known = ", ".join(sorted(BACKEND_TYPES))
        raise ConfigError(f"{where}: unknown type {type_name!r}; known types: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{where}: backend {type_name!r} cannot load: {error}") from None
    return getattr(module, class_name)


def backend_settings(type_name: str, where: str) -> tuple[Setting, ...]:
    settings: tuple[Setting, ...] = backend_class(type_name, where).SETTINGS
    return settings


def create_backend(config: RepositoryConfig, root: Path, admin_secret: str | None) -> Backend:
    cls = backend_class(config.type, config.source)
    backend: Backend = cls(config, root, admin_secret)
    return backend
