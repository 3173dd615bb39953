"""Bundles for air-gapped hosts: a repository's files exported to one tar, imported elsewhere.

    pywharf-bundle.json                  the manifest: one index record per file (sha256, size,
                                         upload time, requires-python, yanked, origin, PEP 740
                                         provenance) and the projects' PEP 792 statuses
    files/<project>/<filename>           the file
    files/<project>/<filename>.metadata  its PEP 658 metadata, for a wheel

Import goes through the backend contract (`put`), so every backend takes a bundle and running
servers list what was imported at their next sync. Every byte is checked against the manifest
before it is stored; a tar that is hostile as a whole (absolute paths, `..`, links, sizes the
archive does not hold) is refused before anything is stored.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from pathlib import PurePosixPath
from typing import IO
from typing import Any
from typing import TextIO

from pywharf.backends import Backend
from pywharf.backends import Download
from pywharf.backends import LocalFile
from pywharf.backends import StagedUpload
from pywharf.backends import Streamed
from pywharf.backends.hashing import CHUNK_BYTES
from pywharf.dists import SDIST_SUFFIXES
from pywharf.dists import parse_filename
from pywharf.errors import DistributionExists
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.index import ACTIVE
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Status
from pywharf.index import status_from_json
from pywharf.metadata import read_wheel_metadata

__all__ = ["BundleError", "ImportReport", "Progress", "export_bundle", "import_source"]

MANIFEST = "pywharf-bundle.json"
FORMAT = 1
_FILES = PurePosixPath("files")
_SUFFIXES = (".whl", *SDIST_SUFFIXES)


class BundleError(PywharfError):
    """A bundle that cannot be read at all (hostile or damaged): nothing was imported."""


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # identical bytes already stored
    refused: list[str] = field(default_factory=list)  # "filename: why"
    statuses: list[str] = field(default_factory=list)  # "project status", as set by the import

    def lines(self) -> list[str]:
        lines = [f"refused {reason}" for reason in self.refused]
        lines += [f"status {change}" for change in self.statuses]
        summary = (
            f"imported {len(self.imported)}, skipped {len(self.skipped)} (identical), "
            f"refused {len(self.refused)}"
        )
        return [*lines, summary]


class Progress:
    """Progress on stderr: a bar redrawn in place on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        if not self.tty:
            self.stream.write(f"{self.done}/{self.total} {what}\n")
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {what[:40]:<40}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def _current(backend: Backend) -> Index:
    index = Index()
    update = backend.read_index(None)
    if update is not None:
        index.replace_all(update.events, update.base)
    return index


# --- export --------------------------------------------------------------------------------------


def _matches(project: str, globs: tuple[str, ...]) -> bool:
    return not globs or any(fnmatch.fnmatchcase(project, g) for g in globs)


def _selected(
    records: Iterable[FileRecord], globs: tuple[str, ...], since: float | None
) -> list[FileRecord]:
    return sorted(
        (
            r
            for r in records
            if _matches(r.project, globs) and (since is None or r.stored_at >= since)
        ),
        key=lambda r: (r.project, r.filename),
    )


def _add(tar: tarfile.TarFile, name: PurePosixPath, target: Download, mtime: float) -> None:
    """The file `target` opens as member `name`: a local file, or bytes relayed from a store."""
    if isinstance(target, LocalFile):
        with open(target.path, "rb") as data:
            tar.addfile(_member(name, target.size, mtime), data)
    elif isinstance(target, Streamed):
        try:
            tar.addfile(_member(name, target.size, mtime), _ChunkReader(target.chunks))
        finally:
            target.close()
    else:  # the commands open remote backends with download = "proxy"; a redirect is a URL
        raise StorageError(f"{name.name!r} is behind a URL: export with --download proxy")


class _ChunkReader:
    """`read(n)` over chunks: what `tarfile.addfile` asks of a file (n bytes each time)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._at = 0

    def read(self, size: int = -1, /) -> bytes:
        size = sys.maxsize if size < 0 else size
        parts = []
        while size > 0:
            if self._at == len(self._chunk):
                self._chunk, self._at = next(self._chunks, b""), 0
                if not self._chunk:
                    break
            part = self._chunk[self._at : self._at + size]
            self._at += len(part)
            size -= len(part)
            parts.append(part)
        return b"".join(parts)


def _member(name: PurePosixPath, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(str(name))
    info.size, info.mtime, info.mode = size, int(mtime), 0o644
    return info


def export_bundle(
    backend: Backend,
    output: Path,
    globs: tuple[str, ...] = (),
    since: float | None = None,
    progress: Progress | None = None,
) -> list[FileRecord]:
    """Write the selected files to `output` (whole or not at all); the records written."""
    index = _current(backend)
    records = _selected(index.records(), globs, since)
    # A status is the project's current state, whatever `since` selects of its files.
    statuses = [s._asdict() for s in index.statuses() if _matches(s.project, globs)]
    manifest = json.dumps(
        {"format": FORMAT, "files": [r.to_json() for r in records], "statuses": statuses}
    ).encode()
    partial = output.with_name(f".{output.name}.{uuid.uuid4().hex}.part")
    try:
        # Copied CHUNK_BYTES at a time: tarfile's default, 16 KiB, costs a Python round each.
        pax, copy = tarfile.PAX_FORMAT, CHUNK_BYTES
        with tarfile.TarFile(partial, "w", format=pax, copybufsize=copy) as tar:
            tar.addfile(_member(PurePosixPath(MANIFEST), len(manifest), time.time()),
                        io.BytesIO(manifest))  # fmt: skip
            for record in records:
                _export_one(tar, backend, record)
                if progress:
                    progress.step(record.filename)
        os.replace(partial, output)
    except OSError as error:
        raise StorageError(f"cannot write {output}: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return records


def _export_one(tar: tarfile.TarFile, backend: Backend, record: FileRecord) -> None:
    folder = _FILES / record.project
    _add(tar, folder / record.filename, backend.open(record), record.stored_at)
    if record.metadata_sha256:
        metadata = backend.open_metadata(record)
        _add(tar, folder / (record.filename + ".metadata"), metadata, record.stored_at)


# --- import --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One file to import: its record (as the bundle claims it) and where its bytes are."""

    record: FileRecord
    open: Any  # () -> a binary stream of the file
    metadata: Any = None  # () -> the metadata's binary stream, or None


def import_source(
    backend: Backend, source: Path, progress_stream: TextIO | None = None
) -> ImportReport:
    """Import a bundle tar, or a directory of wheels and sdists (`pip download -d DIR`)."""
    index = _current(backend)
    report = ImportReport()
    if source.is_dir():
        entries = list(_directory_entries(source, report))
        _import_all(backend, index, entries, report, progress_stream)
        return report
    with _open_bundle(source) as (tar, members):
        entries, statuses = _bundle_entries(tar, members, report)
        _import_all(backend, index, entries, report, progress_stream)
    _import_statuses(backend, index, statuses, report)
    return report


def _import_statuses(
    backend: Backend, index: Index, statuses: list[Status], report: ImportReport
) -> None:
    """PEP 792 statuses the bundle carries, set where they differ from this repository's."""
    current = {s.project: s for s in index.statuses()}
    for status in statuses:
        if current.get(status.project, Status(status.project, ACTIVE)) != status:
            backend.apply_change(status, "")
            report.statuses.append(f"{status.project} {status.status}")


# Files staged before they are stored together (`put_many`): the batch bounds the spool's
# size and the work a crash leaves for start-up to finish.
BATCH_FILES = 500
BATCH_BYTES = 256 * 1024 * 1024


def _import_all(
    backend: Backend,
    index: Index,
    entries: list[_Entry],
    report: ImportReport,
    stream: TextIO | None,
) -> None:
    progress = Progress(len(entries), stream)
    batch: list[StagedUpload] = []
    staged_bytes = 0
    try:
        for entry in entries:
            staged = _stage(backend, index, entry, report)
            if staged is None:
                progress.step(entry.record.filename)
                continue
            batch.append(staged)
            staged_bytes += staged.record.size
            if len(batch) >= BATCH_FILES or staged_bytes >= BATCH_BYTES:
                _store(backend, batch, report, progress)
                staged_bytes = 0
        _store(backend, batch, report, progress)
    finally:
        for upload in batch:  # what a failure left unstored
            upload.path.unlink(missing_ok=True)


def _store(
    backend: Backend, batch: list[StagedUpload], report: ImportReport, progress: Progress
) -> None:
    """Store the staged files together, then empty the batch (and the spool)."""
    try:
        results = backend.put_many(batch, "") if batch else []
        for upload, result in zip(batch, results):
            if isinstance(result, DistributionExists):
                refused = f"{upload.record.filename}: other bytes are stored under this name"
                report.refused.append(refused)
            else:
                report.imported.append(upload.record.filename)
            progress.step(upload.record.filename)
    finally:
        for upload in batch:
            upload.path.unlink(missing_ok=True)
        batch.clear()


def _stage(
    backend: Backend, index: Index, entry: _Entry, report: ImportReport
) -> StagedUpload | None:
    """The entry copied to the spool and checked against the manifest; None: skipped or
    refused (and reported)."""
    record = entry.record
    stored = index.file(record.project, record.filename)
    deleted = index.deleted_sha256(record.filename)
    if stored is not None and stored.sha256 == record.sha256:
        report.skipped.append(record.filename)
        return None
    if stored is not None or (deleted is not None and deleted != record.sha256):
        report.refused.append(f"{record.filename}: other bytes are stored under this name")
        return None
    spool = backend.spool_dir / f".import-{uuid.uuid4().hex}.part"
    try:
        with entry.open() as data, spool.open("xb") as out:
            digest, size = _copy(data, out)
        if (digest, size) != (record.sha256, record.size):
            report.refused.append(f"{record.filename}: its bytes do not match the manifest")
        else:
            matched, metadata = _metadata(entry, record, report)
            if matched:
                staged = record._replace(stored_time=time.time())
                return StagedUpload(spool, staged, metadata, {})
    except BaseException:
        spool.unlink(missing_ok=True)
        raise
    spool.unlink(missing_ok=True)
    return None


def _metadata(entry: _Entry, record: FileRecord, report: ImportReport) -> tuple[bool, bytes | None]:
    """Whether the entry's PEP 658 metadata matches its record (else refused), and its bytes."""
    if entry.metadata is None:
        return record.metadata_sha256 is None or _missing(record, report), None
    with entry.metadata() as stream:
        data = bytes(stream.read())
    if hashlib.sha256(data).hexdigest() != record.metadata_sha256:
        report.refused.append(f"{record.filename}: its metadata does not match the manifest")
        return False, None
    return True, data


def _missing(record: FileRecord, report: ImportReport) -> bool:
    report.refused.append(f"{record.filename}: its metadata is missing from the bundle")
    return False


def _copy(data: IO[bytes], out: IO[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := data.read(CHUNK_BYTES):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _directory_entries(folder: Path, report: ImportReport) -> Iterator[_Entry]:
    """`pip download -d` output: each file counts as hosted, uploaded now."""
    now = time.time()
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not path.name.endswith(_SUFFIXES):
            continue
        try:
            distribution = parse_filename(path.name)
            core = read_wheel_metadata(path, distribution) if distribution.kind == "wheel" else None
            digest, size = _copy_to_nothing(path)
        except PywharfError as error:
            report.refused.append(f"{path.name}: {error}")
            continue
        record = FileRecord(
            filename=path.name,
            project=distribution.project,
            version=distribution.version,
            sha256=digest,
            size=size,
            upload_time=now,
            requires_python=core.requires_python if core else None,
            metadata_sha256=hashlib.sha256(core.raw).hexdigest() if core else None,
        )
        raw = core.raw if core else None
        yield _Entry(record, lambda p=path: p.open("rb"),
                     (lambda r=raw: io.BytesIO(r)) if raw is not None else None)  # fmt: skip


def _copy_to_nothing(path: Path) -> tuple[str, int]:
    with path.open("rb") as data, open(os.devnull, "wb") as sink:
        return _copy(data, sink)


@contextmanager
def _open_bundle(source: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, tarfile.TarInfo]]]:
    """The tar and its members by name, every header checked before anything is stored."""
    try:
        size = source.stat().st_size
        tar = tarfile.open(source, "r:")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as error:
        raise BundleError(f"{source}: not a readable bundle tar: {error}") from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise BundleError(f"{source}: the tar is damaged: {error}") from None
        yield tar, {m.name: _checked(m, size, source) for m in members if not m.isdir()}


def _checked(member: tarfile.TarInfo, archive_size: int, source: Path) -> tarfile.TarInfo:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise BundleError(f"{source}: member {member.name!r} leaves the bundle; refused")
    if not member.isreg():
        raise BundleError(f"{source}: member {member.name!r} is not a regular file; refused")
    if member.offset_data + member.size > archive_size:
        raise BundleError(
            f"{source}: member {member.name!r} declares {member.size} bytes, more than the "
            "archive holds; refused"
        )
    return member


def _bundle_entries(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], report: ImportReport
) -> tuple[list[_Entry], list[Status]]:
    manifest = members.get(MANIFEST)
    if manifest is None:
        raise BundleError(f"the tar has no {MANIFEST}: not a pywharf bundle")
    try:
        document = json.loads(_read(tar, manifest))
        records = [FileRecord.from_json(item) for item in document["files"]]
        statuses = [status_from_json(item) for item in document.get("statuses", [])]
    except (ValueError, KeyError, TypeError, PywharfError) as error:
        raise BundleError(f"{MANIFEST} is malformed: {error}") from None
    entries, expected = [], {MANIFEST}
    for record in records:
        name = str(_FILES / record.project / record.filename)
        metadata = name + ".metadata" if record.metadata_sha256 else None
        expected.update(n for n in (name, metadata) if n)
        problem = _record_problem(record, members.get(name))
        if problem:
            report.refused.append(f"{record.filename}: {problem}")
            continue
        with_metadata = _opener(tar, members[metadata]) if metadata in members else None
        entries.append(_Entry(record, _opener(tar, members[name]), with_metadata))
    for extra in sorted(set(members) - expected):
        report.refused.append(f"{extra}: not in the manifest")
    return entries, statuses


def _record_problem(record: FileRecord, member: tarfile.TarInfo | None) -> str | None:
    try:
        distribution = parse_filename(record.filename, record.project)
    except PywharfError as error:
        return str(error)
    if distribution.project != record.project:
        return f"it is not a file of {record.project!r}"
    if member is None:
        return "missing from the bundle"
    if member.size != record.size:
        return f"the bundle holds {member.size} bytes, the manifest says {record.size}"
    return None


def _opener(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    def open_member() -> IO[bytes]:
        stream = tar.extractfile(member)
        assert stream is not None  # regular files only (_checked)
        return stream

    return open_member


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.size > 256 * 1024 * 1024:  # a manifest of a million files is ~300 MB
        raise BundleError(f"{MANIFEST} is implausibly large ({member.size} bytes)")
    stream = tar.extractfile(member)
    assert stream is not None
    return stream.read()
