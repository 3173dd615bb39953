"""The index: the in-memory read model behind `/simple/`, changed only by index events.

Requests never list a backend. Each change replaces the touched `Project` (an immutable value),
so readers take no lock, and anything derived from a project (its rendered pages) is cached on
that value and dies with it.
"""

from __future__ import annotations

import contextlib
import gc
import operator
import sys
import threading
import time
from collections.abc import Iterable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from typing import TYPE_CHECKING
from typing import Any
from typing import NamedTuple
from typing import Union
from typing import cast

from packaging.utils import NormalizedName

from pywharf.errors import StorageError

__all__ = [
    "ACTIVE",
    "ARCHIVED",
    "DEPRECATED",
    "QUARANTINED",
    "STATUSES",
    "UPSTREAM",
    "Add",
    "Delete",
    "Event",
    "FileRecord",
    "Index",
    "IndexImage",
    "Listing",
    "Project",
    "Status",
    "Yank",
    "event_from_json",
    "event_to_json",
    "gc_paused",
    "status_from_json",
]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector off while an index is built: records are tuples of strings and
    numbers (no cycles), yet each million of them set off collections that scanned every
    object so far, a third of a million-file start-up. Paused by the outermost caller only."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_ORIGIN = operator.attrgetter("origin")
UPSTREAM = "upstream"  # a FileRecord's origin when it is a cached copy of an upstream file
# PEP 792 project statuses; "active" is every project's status until one is set.
ACTIVE, ARCHIVED, QUARANTINED, DEPRECATED = "active", "archived", "quarantined", "deprecated"
STATUSES = (ACTIVE, ARCHIVED, QUARANTINED, DEPRECATED)


_FIELDS = (
    "filename",
    "project",
    "version",
    "sha256",
    "size",
    "upload_time",
    "requires_python",
    "metadata_sha256",
    "yanked",
    "origin",
    "stored_time",
    "summary",
    "provenance",
)
_REQUIRED = 6  # the fields before `requires_python`: every record holds them
_SHA256_HEX = 64


def _stored_digest(hexdigest: str | None) -> str | bytes | None:
    """A sha256 as a record stores it: 64 lowercase hex digits as their 32 bytes (an 80-byte
    object instead of a 128-byte one, for each of a million files: issue 16); anything else
    as given, so that it reads back exactly."""
    if hexdigest is None or len(hexdigest) != _SHA256_HEX:
        return hexdigest
    try:
        digest = bytes.fromhex(hexdigest)
    except ValueError:
        return hexdigest
    return digest if digest.hex() == hexdigest else hexdigest


def _optional(position: int) -> Any:
    """A field after the required ones: absent from the tuple when it and all after it are
    None (a record of a file nobody yanked, cached or attested is 7 fields, not 13)."""

    def get(record: tuple[Any, ...]) -> Any:
        return record[position] if len(record) > position else None

    return property(get)


class FileRecord(tuple):  # type: ignore[type-arg]
    """What the index knows of one stored distribution file, as a NamedTuple's interface
    (fields, `_asdict`, `_replace`) over a smaller tuple.

    A server holds one per file, a million of them for a large upstream cache, so each takes
    what it needs: sha256 digests are stored as 32 bytes, and the rarely set fields at the end
    are left out while they are None: a million-file server's RSS went from 493 MiB (the
    13-field NamedTuple, hex strings) to 393. Readers see the NamedTuple's fields and types.
    """

    __slots__ = ()
    _fields = _FIELDS

    if TYPE_CHECKING:
        filename: str
        project: NormalizedName
        version: str
        size: int
        upload_time: float  # seconds since the epoch, UTC
        requires_python: str | None
        yanked: str | None  # PEP 592: None, or the reason ("" for none given)
        origin: str | None  # None: hosted here; UPSTREAM: a copy cached from the upstream
        stored_time: float | None  # when it entered this repository, if not `upload_time`
        summary: str | None  # the upload's one-line Summary: the web pages search it
        # PEP 740: the provenance object served at `<file URL>.provenance`, as compact JSON
        # text (attestations are a few KiB: held only by the files uploaded with them).
        provenance: str | None
    else:
        # itemgetter properties run in C: a record's fields are read on every page and upload.
        filename = property(operator.itemgetter(0))
        project = property(operator.itemgetter(1))
        version = property(operator.itemgetter(2))
        size = property(operator.itemgetter(4))
        upload_time = property(operator.itemgetter(5))
        requires_python = _optional(6)
        yanked = _optional(8)
        origin = _optional(9)
        stored_time = _optional(10)
        summary = _optional(11)
        provenance = _optional(12)

    def __new__(
        cls,
        filename: str,
        project: NormalizedName,
        version: str,
        sha256: str,
        size: int,
        upload_time: float,
        requires_python: str | None = None,
        metadata_sha256: str | None = None,  # PEP 658: sha256 of the wheel's METADATA
        yanked: str | None = None,
        origin: str | None = None,
        stored_time: float | None = None,
        summary: str | None = None,
        provenance: str | None = None,
    ) -> FileRecord:
        values = [filename, project, version, _stored_digest(sha256), size, upload_time,
                  requires_python, _stored_digest(metadata_sha256), yanked, origin,
                  stored_time, summary, provenance]  # fmt: skip
        length = len(values)
        while length > _REQUIRED and values[length - 1] is None:
            length -= 1
        return tuple.__new__(cls, values[:length])

    @property
    def sha256(self) -> str:
        stored: str | bytes = self[3]
        return stored.hex() if isinstance(stored, bytes) else stored

    @property
    def metadata_sha256(self) -> str | None:
        stored: str | bytes | None = self[7] if len(self) > 7 else None
        return stored.hex() if isinstance(stored, bytes) else stored

    def _asdict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def _replace(self, **changes: Any) -> FileRecord:
        return FileRecord(**{**self._asdict(), **changes})

    def __getnewargs__(self) -> tuple[Any, ...]:  # copy and pickle build it from its fields
        return tuple(self._asdict().values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._asdict().items())
        return f"FileRecord({fields})"

    @property
    def hosted(self) -> bool:
        return self.origin is None

    @property
    def stored_at(self) -> float:
        """When the file entered this repository (`export --since` selects by it)."""
        return self.upload_time if self.stored_time is None else self.stored_time

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self._asdict().items() if v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileRecord:
        """Unknown keys are ignored: a newer pywharf may add fields to the journal."""
        get = data.get
        filename, sha256 = get("filename"), get("sha256")
        # Absent: sys.intern raises TypeError, which readers take for a malformed line.
        project, version = cast(str, get("project")), cast(str, get("version"))
        if not isinstance(filename, str) or not isinstance(sha256, str):
            raise StorageError(f"index record {filename!r} is malformed")
        requires_python, summary = get("requires_python"), get("summary")
        # One tuple per record, built directly (`_make` then `_replace` built three: a third of
        # a million-file start-up). Projects, versions, Requires-Python and summaries repeat
        # across files: one string each.
        return cls(
            filename,
            NormalizedName(sys.intern(project)),
            sys.intern(version),
            sha256,
            get("size"),  # type: ignore[arg-type]
            get("upload_time"),  # type: ignore[arg-type]
            requires_python and sys.intern(requires_python),
            get("metadata_sha256"),
            get("yanked"),
            get("origin"),
            get("stored_time"),
            summary and sys.intern(summary),
            get("provenance"),
        )


class Add(NamedTuple):
    record: FileRecord


class Yank(NamedTuple):
    project: NormalizedName
    filename: str
    reason: str | None  # None un-yanks


class Delete(NamedTuple):
    project: NormalizedName
    filename: str
    sha256: str | None = None  # the deleted bytes: the name may hold only them again
    origin: str | None = None  # the deleted file's: an upstream copy's tombstone holds no project


class Status(NamedTuple):
    """PEP 792: a project's status, set by an operator; "active" with no reason clears it."""

    project: NormalizedName
    status: str  # one of STATUSES
    reason: str | None = None

    @property
    def cleared(self) -> bool:
        return self.status == ACTIVE and not self.reason


Event = Union[Add, Yank, Delete, Status]


def event_to_json(event: Event) -> dict[str, Any]:
    if isinstance(event, Add):
        return {"op": "add", **event.record.to_json()}
    if isinstance(event, Status):
        return {"op": "status", "project": event.project, "status": event.status,
                "reason": event.reason}  # fmt: skip
    if isinstance(event, Yank):
        return {"op": "yank", "project": event.project, "filename": event.filename,
                "reason": event.reason}  # fmt: skip
    document = {"op": "delete", "project": event.project, "filename": event.filename,
                "sha256": event.sha256}  # fmt: skip
    if event.origin is not None:
        document["origin"] = event.origin
    return document


def event_from_json(data: dict[str, Any]) -> Event:
    """The event a journal line describes."""
    op = data.get("op")
    if op == "add":
        return Add(FileRecord.from_json(data))
    if op == "status":
        return status_from_json(data)
    project, filename = data.get("project"), data.get("filename")
    if not isinstance(project, str) or not isinstance(filename, str):
        raise StorageError(f"index event {data!r:.80} is malformed")
    if op == "yank":
        return Yank(NormalizedName(project), filename, data.get("reason"))
    if op == "delete":
        return Delete(NormalizedName(project), filename, data.get("sha256"), data.get("origin"))
    raise StorageError(f"index event has an unknown op {op!r}")


def status_from_json(data: dict[str, Any]) -> Status:
    """A stored status (journal line, bundle manifest, index document); unknown ones refused."""
    project, status, reason = data.get("project"), data.get("status"), data.get("reason")
    if not isinstance(project, str) or status not in STATUSES:
        raise StorageError(f"project status {data!r:.80} is malformed")
    return Status(
        NormalizedName(project), status, reason if isinstance(reason, str) and reason else None
    )


@dataclass(frozen=True, eq=False)
class Project:
    """A project and its files, sorted by filename; `pages` caches what is rendered from it."""

    name: NormalizedName
    files: tuple[FileRecord, ...]
    status: Status | None = None  # PEP 792; None: active

    hosted: bool = field(init=False, repr=False)  # any file uploaded here, not cached
    mixed: bool = field(init=False, repr=False)  # some files uploaded here, some cached
    _pages: dict[str, Any] | None = field(default=None, init=False, repr=False)

    @property
    def pages(self) -> dict[str, Any]:
        """What is derived from the project (its rendered pages, a filename index), made at
        the first use: an empty dict for each of 100,000 projects was 6 MiB. Two threads that
        make it at once lose one's entry, which is made again."""
        pages = self._pages
        if pages is None:
            pages = {}
            object.__setattr__(self, "_pages", pages)
        return pages

    def __post_init__(self) -> None:
        # map and count run in C: a generator over the files was a fifth of a snapshot's load.
        hosted = list(map(_ORIGIN, self.files)).count(None)
        object.__setattr__(self, "hosted", hosted > 0)
        object.__setattr__(self, "mixed", 0 < hosted < len(self.files))

    def file(self, filename: str) -> FileRecord | None:
        # Built on the first lookup, not with the project: a dict per project was a tenth of
        # the memory of a million-file index, and most projects are only ever listed.
        by_filename = self.pages.get("by_filename")
        if by_filename is None:
            by_filename = self.pages["by_filename"] = {r.filename: r for r in self.files}
        record: FileRecord | None = by_filename.get(filename)
        return record

    @property
    def state(self) -> str:
        """The PEP 792 status: "active" unless one was set."""
        return self.status.status if self.status else ACTIVE

    def hosted_only(self) -> Project:
        """The project without its upstream copies: a project we hold never mixes them in."""
        if self.hosted and not self.mixed:  # known once, not a pass over the files per page
            return self
        view = self.pages.get("hosted")
        if view is None:
            view = self.pages["hosted"] = Project(
                self.name, tuple(r for r in self.files if r.hosted), self.status
            )
        assert isinstance(view, Project)
        return view


class IndexImage(NamedTuple):
    """What replaying events leaves, without the events: a journal snapshot stores it."""

    projects: tuple[Project, ...]  # sorted by name
    deleted: dict[str, str]  # the tombstones: filename -> sha256
    tombstoned: frozenset[NormalizedName]  # projects a hosted file was deleted from
    statuses: tuple[Status, ...]  # PEP 792, of the projects that set one


@dataclass(frozen=True, eq=False)
class Listing:
    """The sorted project names; `pages` caches the rendered root page."""

    names: tuple[NormalizedName, ...]
    pages: dict[str, Any] = field(default_factory=dict, repr=False)


class Index:
    """The read model of one repository. Writers serialize on a lock; readers take none."""

    def __init__(self, records: Iterable[FileRecord] = ()) -> None:
        self._lock = threading.Lock()
        self._projects: dict[NormalizedName, Project] = {}
        self._deleted: dict[str, str] = {}  # filename -> sha256: never reused with other bytes
        # Projects with a tombstone: held here even with no file left, so never looked up
        # elsewhere (an extra index would serve whatever the public one holds under the name).
        self._tombstoned: set[NormalizedName] = set()
        self._statuses: dict[NormalizedName, Status] = {}  # PEP 792, of projects that set one
        self._listing: Listing | None = Listing(())  # None: projects came or went since
        self.changed_at = 0.0
        self.deletions = 0  # Deletes applied, tombstones of absent files too (a cache key)
        self.generation = 0  # counts visible changes: what is derived from the index keys on it
        self.apply([Add(r) for r in records])

    @property
    def listing(self) -> Listing:
        """The sorted project names, sorted again at the first read after projects came or
        went. Kept sorted by each commit, an upload that added a project to 100,000 paid 1.1
        ms for it (in process, 200 uploads); the root page that reads it renders them all."""
        listing = self._listing
        if listing is None:
            with self._lock:
                listing = self._sorted()
        return listing

    def _sorted(self) -> Listing:
        """The listing, sorted if need be; under the lock."""
        if self._listing is None:  # new names come last in the dict: Timsort's fast case
            self._listing = Listing(tuple(sorted(self._projects)))
        return self._listing

    def project(self, name: NormalizedName) -> Project | None:
        return self._projects.get(name)

    def file(self, project: NormalizedName, filename: str) -> FileRecord | None:
        entry = self._projects.get(project)
        return entry.file(filename) if entry is not None else None

    def statuses(self) -> list[Status]:
        """Every status set (none "active" without a reason), by project name."""
        return [self._statuses[name] for name in sorted(self._statuses)]

    def deleted_sha256(self, filename: str) -> str | None:
        return self._deleted.get(filename)

    def holds(self, name: NormalizedName) -> bool:
        """Whether the project is this repository's: it has hosted files, or had them deleted.

        Copies cached from an upstream, and their tombstones, do not make a project ours.
        """
        project = self._projects.get(name)
        return (project is not None and project.hosted) or name in self._tombstoned

    @property
    def pristine(self) -> bool:
        """Nothing was ever stored: no file and no tombstone."""
        return not self._projects and not self._deleted

    def __len__(self) -> int:
        return sum(len(p.files) for p in self._projects.values())

    def records(self) -> list[FileRecord]:
        return [r for p in self._projects.values() for r in p.files]

    def apply(self, events: Iterable[Event]) -> bool:
        """Apply events in order; returns whether anything visible changed."""
        with self._lock, gc_paused():
            touched: dict[NormalizedName, dict[str, FileRecord]] = {}
            for event in events:
                self._apply_one(event, touched)
            return self._commit(touched)

    def replace_all(self, events: Iterable[Event], base: IndexImage | None = None) -> bool:
        """Make the index hold exactly what `events` describe (a full reload), applied to
        `base` (a journal snapshot) if given."""
        with self._lock, gc_paused():
            if base is not None:
                return self._replace_from(base, events)
            touched: dict[NormalizedName, dict[str, FileRecord]] = {n: {} for n in self._projects}
            self._deleted = {}
            self._tombstoned = set()
            self._statuses = {}
            for event in events:
                self._apply_one(event, touched)
            return self._commit(touched)

    def image(self) -> IndexImage:
        """The current state, sharing its values (they are immutable)."""
        with self._lock:
            projects = tuple(self._projects[name] for name in self._sorted().names)
            return IndexImage(projects, dict(self._deleted), frozenset(self._tombstoned),
                              tuple(self._statuses.values()))  # fmt: skip

    def _replace_from(self, image: IndexImage, events: Iterable[Event]) -> bool:
        """Hold `image`, then `events`; every `Project` that ends as it was is kept, with its
        rendered pages (a reload after `update_index` changes few or none)."""
        old = self._projects
        self._projects = {}
        for project in image.projects:
            current = old.get(project.name)
            same = current is not None and (current.files, current.status) == (
                project.files,
                project.status,
            )
            self._projects[project.name] = current if same and current else project
        self._deleted = dict(image.deleted)
        self._tombstoned = set(image.tombstoned)
        self._statuses = {status.project: status for status in image.statuses}
        self.deletions += len(image.deleted)  # as many as the Deletes it stands for
        touched: dict[NormalizedName, dict[str, FileRecord]] = {}
        for event in events:
            self._apply_one(event, touched)
        for name in touched.keys() & old.keys():
            self._projects[name] = old[name]  # what `_commit` compares the result with
        self._commit(touched)
        names = tuple(sorted(self._projects))  # nearly sorted already: Timsort's fast case
        if self._listing is None or names != self._listing.names:  # else its pages are kept
            self._listing = Listing(names)
        projects = self._projects.items()
        changed = len(old) != len(projects) or any(p is not old.get(n) for n, p in projects)
        if changed:
            self.changed_at = time.time()
            self.generation += 1
        return changed

    def _files_of(
        self, name: NormalizedName, touched: dict[NormalizedName, dict[str, FileRecord]]
    ) -> dict[str, FileRecord]:
        if name not in touched:
            current = self._projects.get(name)
            touched[name] = {r.filename: r for r in current.files} if current else {}
        return touched[name]

    def _apply_one(
        self, event: Event, touched: dict[NormalizedName, dict[str, FileRecord]]
    ) -> None:
        if isinstance(event, Add):
            record = event.record
            self._files_of(record.project, touched)[record.filename] = record
            self._deleted.pop(record.filename, None)
            return
        files = self._files_of(event.project, touched)
        if isinstance(event, Status):
            if event.cleared:
                self._statuses.pop(event.project, None)
            else:
                self._statuses[event.project] = event
            return
        existing = files.get(event.filename)
        if isinstance(event, Delete):
            self.deletions += 1
            # A tombstone stands even without the file (a rebuilt journal keeps only those).
            sha256 = existing.sha256 if existing else event.sha256
            if sha256:
                self._deleted[event.filename] = sha256
                if event.origin is None:
                    self._tombstoned.add(event.project)
            files.pop(event.filename, None)
        elif existing is not None:
            files[event.filename] = existing._replace(yanked=event.reason)

    def _commit(self, touched: dict[NormalizedName, dict[str, FileRecord]]) -> bool:
        changed = names_changed = False
        for name, files in touched.items():
            current = self._projects.get(name)
            ordered = tuple(sorted(files.values(), key=lambda r: r.filename))
            status = self._statuses.get(name)
            if current is not None and (current.files, current.status) == (ordered, status):
                continue
            changed = True
            if ordered:
                names_changed = names_changed or current is None
                self._projects[name] = Project(name, ordered, status)
            elif current is not None:
                names_changed = True
                del self._projects[name]
        if names_changed:
            self._listing = None
        if changed:
            self.changed_at = time.time()
            self.generation += 1
        return changed
