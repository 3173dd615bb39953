"""The backend contract every storage implements, and the registry of backend types.

The index is the read model: requests never list a backend. A backend stores files, keeps the
index events that describe them (`read_index` hands out what changed since a cursor), and
decides who may read or write. It knows nothing of HTTP, HTML or auth headers, and maps its own
failures (an `OSError`, a GitHub 404) to `StorageError` subclasses at its edge.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from typing import Protocol
from typing import Union

from packaging.utils import NormalizedName

from pywharf.auth import Permission
from pywharf.config import UPSTREAM_SETTINGS
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.errors import ConfigError
from pywharf.errors import DistributionExists
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import IndexImage

__all__ = [
    "BACKEND_TYPES",
    "ArrivingFile",
    "Backend",
    "BackendType",
    "Download",
    "EarlyStore",
    "IndexUpdate",
    "LocalFile",
    "Redirect",
    "RepairReport",
    "StagedUpload",
    "Streamed",
    "backend_class",
    "backend_settings",
    "create_backend",
    "put_each",
    "register_backend",
]


@dataclass(frozen=True)
class LocalFile:
    path: str
    size: int


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class Streamed:
    """Bytes produced while they are sent (a file fetched for a local copy); `close` always."""

    chunks: Iterator[bytes]
    size: int
    close: Callable[[], None]

    def drain(self) -> None:
        """Read it through without sending it (the copy it makes is then kept), and close it."""
        try:
            for _ in self.chunks:
                pass
        finally:
            self.close()


Download = Union[LocalFile, Redirect, Streamed]


@dataclass(frozen=True)
class IndexUpdate:
    """Index events since a cursor; with `replace` they are the whole index (applied to
    `base`, when the backend keeps a snapshot of what its first events replay to)."""

    events: tuple[Event, ...]
    replace: bool
    cursor: Any  # opaque to callers: handed back to the next `read_index`
    mtime: int  # when the backend's index last changed (seconds since the epoch)
    base: IndexImage | None = None  # with `replace` only: `Index.replace_all(events, base)`


@dataclass(frozen=True)
class ArrivingFile:
    """An upload's file while its bytes still arrive: what is known before the last one."""

    path: Path  # the spool file, still growing
    project: NormalizedName
    filename: str
    sha256: str  # as the client declared it: checked before anything becomes visible
    max_bytes: int  # the most it can grow to (the request's length)
    # Its length if it is the form's last part, as twine and uv send it (None: unknown); a
    # guess, so a backend may send it as one object of that length, and store it again if not.
    size_if_last: int | None = None


class EarlyStore(Protocol):
    """A file a backend stores while it arrives (`Backend.store_early`); `put` finishes it.

    The upload pipeline reports the spool file's growth, then its end, and always calls
    `abort` once the upload is over: a no-op after `put` finished it, else nothing of it stays.
    """

    def grew(self, size: int) -> None: ...

    def ended(self, size: int) -> None: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class StagedUpload:
    """A complete, verified upload in a local temporary file, ready to be stored."""

    path: Path
    record: FileRecord
    metadata: bytes | None  # PEP 658: the wheel's METADATA, byte for byte
    form: dict[str, str]  # the original's `.meta`: upload form fields, first value each
    early: EarlyStore | None = None  # what `store_early` began, for `put` to finish


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

    # Read-only members, so a plain attribute or a class constant of a narrower type fits.
    @property
    def name(self) -> str: ...

    @property
    def max_file_bytes(self) -> int: ...

    @property
    def sync_index_interval(self) -> float: ...

    @property
    def spool_dir(self) -> Path:
        """Where uploads are staged: on the same file system as the storage, if it is local."""

    @property
    def keeps_spool_file(self) -> bool:
        """`put` makes the staged file itself part of the storage (a link), so it is made
        durable as it arrives; a backend that sends its bytes elsewhere leaves it unsynced."""

    @property
    def auth_checks_per_second(self) -> float | None:
        """How many `authorize` calls per second the auth cache allows (None: they are free)."""

    @property
    def reads_locally(self) -> bool:
        """`open` and `open_metadata` never wait on a network (a local file, a redirect made
        here): the server's connection loop may then answer downloads itself, with no thread
        (pages need only free `authorize` calls: `auth_checks_per_second` None)."""

    def authorize(self, secret: str) -> Permission: ...

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        """Events since `cursor` (None: everything), or None when nothing changed."""

    def store_early(self, arriving: ArrivingFile) -> EarlyStore | None:
        """Begin storing a file while it arrives, invisible until `put` (None: `put` stores
        it whole). For a remote store, sending during the upload halves a large one's time."""

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        """Store a file; identical bytes return the stored record, others `DistributionExists`.

        `credential` is the uploader's secret: a backend such as GitHub acts with it.
        """

    def put_many(
        self, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        """Store several files (a bundle's): for each, what `put` returns or refuses with.

        As durable as one `put` each when it returns; a backend may batch its syncs (the file
        backend: one intent, one fsync per folder, one journal append). `put_each` is the
        plain way: a `put` after another.
        """

    def apply_change(self, event: Event, credential: str) -> None:
        """Persist a yank or delete (and remove a deleted file); an Add is `put`'s."""

    def open(self, record: FileRecord) -> Download:
        """The file: local, a redirect, or streamed (relayed from a store, or while a local copy
        is made); a `Streamed` must be closed, read or not."""

    def open_metadata(self, record: FileRecord) -> Download: ...

    def rebuild_index(self) -> RepairReport:
        """Rescan what the storage really holds and rewrite the index from it."""

    def read_tokens(self) -> bytes:
        """The repository's token document (`pywharf.tokens`; b"": none): hashes, never tokens.

        Read at every sync, so it should be cheap; servers sharing the storage share it.
        """

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        """Store `change(current document)`, atomic against other writers of the same storage.

        `change` may raise (a label taken): nothing is then written. A backend whose own
        credentials decide permissions (GitHub) raises `ConfigError` instead.
        """

    def close(self) -> None: ...


class BackendType(Protocol):
    """A backend class: its settings table, and a constructor every backend shares.

    `root` is the server's ROOT (local state lives under `ROOT/cache/<name>/`); `admin_secret`
    is the server's own credential for the backend (None: it has none).
    """

    @property
    def SETTINGS(self) -> tuple[Setting, ...]:
        """The backend's configuration keys: validation, `--help` and the docs read them."""

    def __call__(
        self, config: RepositoryConfig, root: Path, admin_secret: str | None
    ) -> Backend: ...


def put_each(
    backend: Backend, uploads: Sequence[StagedUpload], credential: str
) -> list[FileRecord | DistributionExists]:
    """`put_many` as one `put` after another: for backends with nothing to batch."""
    results: list[FileRecord | DistributionExists] = []
    for upload in uploads:
        try:
            results.append(backend.put(upload, credential))
        except DistributionExists as refused:
            results.append(refused)
    return results


_registry: dict[str, str] = {}
# type name -> "module:Class", read-only. Imported lazily, when a repository of the type is built.
BACKEND_TYPES: Mapping[str, str] = MappingProxyType(_registry)


def register_backend(type_name: str, target: str) -> None:
    """Make `type = "<type_name>"` build `target` ("package.module:Class"), imported lazily."""
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name.isidentifier():
        raise ValueError(f"backend {type_name!r}: {target!r} is not 'module:Class'")
    if _registry.get(type_name, target) != target:
        raise ValueError(f"backend type {type_name!r} is already {_registry[type_name]!r}")
    _registry[type_name] = target


# The built-in backends register exactly as a third party's would.
register_backend("file_system", "pywharf.backends.file_system:FileSystemBackend")
register_backend("github", "pywharf.backends.github:GitHubBackend")
register_backend("memory", "pywharf.backends.memory:MemoryBackend")
register_backend("s3", "pywharf.backends.s3:S3Backend")


def backend_class(type_name: str, where: str) -> BackendType:
    target = BACKEND_TYPES.get(type_name)
    if target is None:
        known = ", ".join(sorted(BACKEND_TYPES))
        raise ConfigError(f"{where}: unknown type {type_name!r}; known types: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        missing = error.name or module_name
        raise ConfigError(
            f"{where}: backend type {type_name!r} needs {missing!r}, which cannot be imported "
            f"({error}); install the package that provides it"
        ) from None
    cls: BackendType | None = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{where}: backend type {type_name!r}: {target!r} does not exist")
    return cls


def backend_settings(type_name: str, where: str) -> tuple[Setting, ...]:
    """The backend's own keys, plus the upstream keys every repository section takes."""
    return (*backend_class(type_name, where).SETTINGS, *UPSTREAM_SETTINGS)


def create_backend(config: RepositoryConfig, root: Path, admin_secret: str | None) -> Backend:
    return backend_class(config.type, config.source)(config, root, admin_secret)
