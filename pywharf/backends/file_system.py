"""The file-system backend: packages in a directory tree, compatible with the original's layout.

    ROOT/cache/<repo>/storage/<project>/<filename>           the file
    ROOT/cache/<repo>/storage/<project>/<filename>.meta      TOML sidecar (the original's format)
    ROOT/cache/<repo>/storage/<project>/<filename>.metadata  PEP 658 METADATA of a wheel
    ROOT/cache/<repo>/storage/.pywharf/journal.jsonl         index events, one JSON per line
    ROOT/cache/<repo>/storage/.pywharf/tmp/                  uploads being received

The journal is append-only, so an upload costs the same at 100,000 files as at 10, and servers
sharing a ROOT follow each other by reading what was appended since their cursor. Each event is
one `write` on an O_APPEND descriptor under a shared `flock`; `rebuild_index` rewrites the
journal under the exclusive lock, and the new inode tells readers to reload it whole.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

from pywharf.auth import Permission
from pywharf.auth import secret_matches
from pywharf.backends import BackendType
from pywharf.backends import IndexUpdate
from pywharf.backends import LocalFile
from pywharf.backends import RepairReport
from pywharf.backends import StagedUpload
from pywharf.backends.atomic import fsync_directory
from pywharf.backends.atomic import write_atomically
from pywharf.backends.events import rescanned_events
from pywharf.backends.hashing import sha256_of_file
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.config import load_toml
from pywharf.dists import SDIST_SUFFIXES
from pywharf.dists import Distribution
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
from pywharf.index import event_from_json
from pywharf.index import event_to_json
from pywharf.metadata import read_wheel_metadata
from pywharf.remote_index import dump_index

__all__ = ["FileSystemBackend"]

SETTINGS = (
    Setting("read_secret", str, "", "Secret that allows downloads (the write secret does too)."),
    Setting("write_secret", str, "", "Secret that allows uploads, yanks and deletes."),
    Setting(
        "max_file_bytes",
        int,
        5 * 1024**3 - 1,
        "Largest file accepted for upload, in bytes.",
        bounds=(1, 2**62),
    ),
    Setting(
        "sync_index_interval",
        float,
        60.0,
        "Seconds between index syncs with the storage.",
        bounds=(0, 10**9),
    ),
)
_PRIVATE = ".pywharf"
_PARSE_BATCH_LINES = 64  # measured: fastest, and the least memory left fragmented
_SUFFIXES = (".whl", *SDIST_SUFFIXES)


class FileSystemBackend:
    """Packages under `ROOT/cache/<repo>/storage/`."""

    SETTINGS = SETTINGS
    auth_checks_per_second = None  # comparing two strings costs nothing

    def __init__(self, config: RepositoryConfig, root: Path, admin_secret: str | None) -> None:
        self.name = config.name
        self.max_file_bytes: int = config["max_file_bytes"]
        self.sync_index_interval: float = config["sync_index_interval"]
        self._read_secret: str = config["read_secret"]
        self._write_secret: str = config["write_secret"]
        self.storage = root / "cache" / config.name / "storage"
        self._private = self.storage / _PRIVATE
        self.spool_dir = self._private / "tmp"
        self._journal = self._private / "journal.jsonl"
        self._lock_path = self._private / "lock"
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._lock_path.touch(exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"repository {self.name!r}: cannot create {self.storage}: {error}"
            ) from None
        self._remove_stale_spool_files()

    # --- auth --------------------------------------------------------------------------------

    def authorize(self, secret: str) -> Permission:
        if secret_matches(secret, self._write_secret):
            return Permission.WRITE
        if secret_matches(secret, self._read_secret):
            return Permission.READ
        return Permission.NONE

    # --- the journal -------------------------------------------------------------------------

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        with self._lock_path.open("rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield  # closing the file releases the lock

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        if not self._journal.exists():
            self.rebuild_index()  # a root from the original pywharf, or a new one
        try:
            with self._journal.open("rb") as journal:
                status = os.fstat(journal.fileno())
                inode, offset = cursor if cursor is not None else (None, 0)
                if inode != status.st_ino:
                    offset = 0
                elif offset == status.st_size:
                    return None
                journal.seek(offset)
                data = journal.read(status.st_size - offset)
        except OSError as error:
            raise StorageError(
                f"repository {self.name!r}: cannot read its journal: {error}"
            ) from None
        complete = data[: data.rfind(b"\n") + 1]  # a line being appended is read next time
        events = self._parse_events(complete)
        new_cursor = (status.st_ino, offset + len(complete))
        return IndexUpdate(events, offset == 0, new_cursor, int(status.st_mtime))

    def _parse_events(self, data: bytes) -> tuple[Event, ...]:
        events: list[Event] = []
        lines = data.splitlines()
        for start in range(0, len(lines), _PARSE_BATCH_LINES):
            # One json.loads per batch: five times faster than one per line, and the parsed
            # dicts of one batch are freed before the next, so their memory is reused.
            batch = b"[" + b",".join(lines[start : start + _PARSE_BATCH_LINES]) + b"]"
            try:
                items = json.loads(batch)
            except ValueError as error:
                raise StorageError(
                    f"repository {self.name!r}: its journal is corrupt: {error}"
                ) from None
            events.extend(event_from_json(item) for item in items)
        return tuple(events)

    def _append(self, event: Event) -> None:
        line = json.dumps(event_to_json(event), separators=(",", ":")).encode() + b"\n"
        with self._locked(exclusive=False):
            descriptor = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, line)  # one write on O_APPEND: never interleaved
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    # --- files -------------------------------------------------------------------------------

    def _path(self, record: FileRecord) -> Path:
        return self.storage / record.project / record.filename

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        record = upload.record
        destination = self._path(record)
        try:
            destination.parent.mkdir(exist_ok=True)
            os.link(upload.path, destination)  # atomic, and never replaces: a race has one winner
        except FileExistsError:
            return self._existing(destination, record)
        except OSError as error:
            raise StorageError(f"cannot store {record.filename!r}: {error}") from None
        try:
            self._write_sidecars(destination, upload)
            fsync_directory(destination.parent)
            self._append(Add(record))
        except OSError as error:
            destination.unlink(missing_ok=True)
            raise StorageError(f"cannot store {record.filename!r}: {error}") from None
        return record

    def _existing(self, destination: Path, record: FileRecord) -> FileRecord:
        """An identical re-upload (same sha256) is a success; other bytes are a conflict."""
        stored = self._record_from_disk(destination)
        if stored is None or stored.sha256 != record.sha256:
            raise DistributionExists(record.filename)
        return stored

    def _write_sidecars(self, destination: Path, upload: StagedUpload) -> None:
        if upload.metadata is not None:
            write_atomically(destination.with_name(destination.name + ".metadata"), upload.metadata)
        self._write_meta(destination, upload.record, upload.form)

    def _write_meta(self, destination: Path, record: FileRecord, form: dict[str, str]) -> None:
        # The original's sidecar: the form fields plus `distrib` and `sha256`; ours adds the
        # record's own fields so a rescan rebuilds exactly what the journal said.
        meta: dict[str, Any] = {**form, "distrib": record.project, "sha256": record.sha256}
        meta["pywharf"] = record.to_json()
        write_atomically(
            destination.with_name(destination.name + ".meta"), tomli_w.dumps(meta).encode()
        )

    def apply_change(self, event: Event, credential: str) -> None:
        if isinstance(event, Add):
            raise StorageError("an Add is stored by put()")
        path = self.storage / event.project / event.filename
        try:
            if isinstance(event, Delete):
                for suffix in (".metadata", ".meta", ""):
                    path.with_name(path.name + suffix).unlink(missing_ok=True)
            else:
                self._update_yank(path, event)
            self._append(event)
        except OSError as error:
            raise StorageError(f"cannot change {event.filename!r}: {error}") from None

    def _update_yank(self, path: Path, event: Yank) -> None:
        stored = self._record_from_disk(path)
        if stored is None:
            raise StorageNotFound(f"{event.filename!r} is not stored")
        meta = self._read_meta(path) or {}
        form = {k: v for k, v in meta.items() if isinstance(v, str)}
        yanked = stored._replace(yanked=event.reason)
        self._write_meta(path, yanked, form)

    def open(self, record: FileRecord) -> LocalFile:
        return self._local(self._path(record))

    def open_metadata(self, record: FileRecord) -> LocalFile:
        path = self._path(record)
        return self._local(path.with_name(path.name + ".metadata"))

    def _local(self, path: Path) -> LocalFile:
        try:
            return LocalFile(str(path), path.stat().st_size)
        except OSError:
            raise StorageNotFound(f"{path.name!r} is missing from the storage") from None

    # --- rescans -----------------------------------------------------------------------------

    def _read_meta(self, path: Path) -> dict[str, Any] | None:
        meta_path = path.with_name(path.name + ".meta")
        try:
            return load_toml(meta_path.read_text(encoding="utf-8"), str(meta_path))
        except (OSError, UnicodeDecodeError, PywharfError):
            return None

    def _record_from_disk(self, path: Path) -> FileRecord | None:
        """The record a stored file's sidecars describe; rebuilt from the bytes if they lie."""
        try:
            status = path.stat()
        except OSError:
            return None
        meta = self._read_meta(path)
        ours = meta.get("pywharf") if meta else None
        if isinstance(ours, dict):
            try:
                record = FileRecord.from_json(ours)
                if record.size == status.st_size:
                    return record
            except PywharfError:
                pass
        return self._record_from_bytes(path, meta or {}, status.st_mtime, status.st_size)

    def _record_from_bytes(
        self, path: Path, meta: dict[str, Any], mtime: float, size: int
    ) -> FileRecord | None:
        try:
            distribution = parse_filename(path.name, meta.get("name") or path.parent.name)
        except PywharfError:
            return None
        sha256 = meta.get("sha256") if meta.get("pywharf") else None  # the original's was trusted
        requires_python = meta.get("requires_python")
        metadata = path.with_name(path.name + ".metadata")
        if distribution.kind == "wheel" and not metadata.exists():
            self._extract_metadata(path, distribution, metadata)
        return FileRecord(
            filename=path.name,
            project=distribution.project,
            version=distribution.version,
            sha256=sha256 if isinstance(sha256, str) else sha256_of_file(path),
            size=size,
            upload_time=mtime,
            requires_python=requires_python if isinstance(requires_python, str) else None,
            metadata_sha256=sha256_of_file(metadata) if metadata.exists() else None,
        )

    def _extract_metadata(self, path: Path, distribution: Distribution, target: Path) -> None:
        """PEP 658 for a wheel stored without it (hand-copied, or by the original pywharf)."""
        try:
            core = read_wheel_metadata(path, distribution)
        except PywharfError:
            return  # a malformed wheel is still listed, without metadata
        write_atomically(target, core.raw)

    def _stored_files(self) -> Iterator[Path]:
        for project in sorted(self.storage.iterdir()):
            if project.name.startswith(".") or not project.is_dir():
                continue
            for path in sorted(project.iterdir()):
                if path.name.endswith(_SUFFIXES) and not path.name.startswith("."):
                    yield path

    def rebuild_index(self) -> RepairReport:
        """Rescan the storage, rewrite the journal from it, and say what changed."""
        with self._locked(exclusive=True):
            found, moved = self._scan()
            update = self.read_index(None) if self._journal.exists() else None
            events, report = rescanned_events(found, update.events if update else ())
            report.repaired += moved
            self._write_journal(events, found)
            return report

    def _scan(self) -> tuple[list[FileRecord], list[str]]:
        """The files the storage holds, each moved into its project's folder if need be."""
        found, moved = [], []
        for path in self._stored_files():
            record = self._record_from_disk(path)
            target = self._in_project_folder(path, record) if record else None
            if record is None or target is None:
                continue
            if target != path:
                moved.append(f"{record.filename} (moved into {record.project}/)")
            found.append(record)
        return found, moved

    def _write_journal(self, events: list[Event], found: list[FileRecord]) -> None:
        """The journal (a new inode: readers reload it whole) and the original's index.toml."""
        lines = (json.dumps(event_to_json(e), separators=(",", ":")) + "\n" for e in events)
        write_atomically(self._journal, "".join(lines).encode())
        locations = {r.filename: {"package_path": str(self._path(r))} for r in found}
        remote = dump_index(found, int(time.time()), "file_system", locations)
        write_atomically(self.storage / "index.toml", remote)  # the original's index file

    def _in_project_folder(self, path: Path, record: FileRecord) -> Path | None:
        """A file copied into another folder moves to its project's, where it is served;
        if that place is taken, it stays where it is, unlisted."""
        target = self._path(record)
        if path == target:
            return path
        target.parent.mkdir(exist_ok=True)
        try:
            os.link(path, target)  # never replaces a stored file
        except OSError:
            return None
        for suffix in (".meta", ".metadata"):
            sidecar = path.with_name(path.name + suffix)
            if sidecar.exists():
                os.replace(sidecar, target.with_name(target.name + suffix))
        path.unlink()
        return target

    def _remove_stale_spool_files(self) -> None:
        """Uploads cut off by a crash: spool files of processes that no longer run."""
        for path in self.spool_dir.glob("upload-*"):
            pid = path.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                path.unlink(missing_ok=True)

    def close(self) -> None:
        pass


_: BackendType = FileSystemBackend  # mypy --strict checks the class against the contract
