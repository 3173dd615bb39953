"""The file-system backend: packages in a directory tree, compatible with the original's layout.

    ROOT/cache/<repo>/storage/<project>/<filename>           the file
    ROOT/cache/<repo>/storage/<project>/<filename>.meta      TOML sidecar (the original's format)
    ROOT/cache/<repo>/storage/<project>/<filename>.metadata  PEP 658 METADATA of a wheel
    ROOT/cache/<repo>/storage/.pywharf/journal.jsonl         index events (`journal.py`)
    ROOT/cache/<repo>/storage/.pywharf/tmp/                  leased spool, temp and intent files

How a file is stored, and how what a crash cut off is completed: `file_system_store.py`.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
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
from pywharf.backends.atomic import sweep
from pywharf.backends.atomic import write_atomically
from pywharf.backends.events import rescanned_events
from pywharf.backends.file_system_store import FileStore
from pywharf.backends.journal import Journal
from pywharf.backends.journal import JournalCorrupt
from pywharf.backends.sidecars import Sidecars
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.config import typed_settings
from pywharf.dists import SDIST_SUFFIXES
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import storage_error
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Status
from pywharf.index import Yank
from pywharf.remote_index import index_parts

__all__ = ["FileSystemBackend", "FileSystemSettings"]

log = logging.getLogger("pywharf")

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


@dataclass(frozen=True)
class FileSystemSettings:
    """A `type = "file_system"` section (and `memory`'s), checked against `SETTINGS`."""

    read_secret: str
    write_secret: str
    max_file_bytes: int
    sync_index_interval: float


_PRIVATE = ".pywharf"
_TOKENS = "tokens.json"  # hashes only (pywharf.tokens)
_SUFFIXES = (".whl", *SDIST_SUFFIXES)


class FileSystemBackend:
    """Packages under `ROOT/cache/<repo>/storage/`."""

    SETTINGS = SETTINGS
    auth_checks_per_second = None  # comparing two strings costs nothing
    reads_locally = True  # files on a local disk
    keeps_spool_file = True  # `put` links it into the storage

    def __init__(self, config: RepositoryConfig, root: Path, admin_secret: str | None) -> None:
        self.settings = typed_settings(config, FileSystemSettings)
        self.name = config.name
        self.max_file_bytes = self.settings.max_file_bytes
        self.sync_index_interval = self.settings.sync_index_interval
        self.storage = root / "cache" / config.name / "storage"
        private = self.storage / _PRIVATE
        self.spool_dir = private / "tmp"
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self.journal = Journal(private / "journal.jsonl", private / "lock", self.spool_dir)
            self.sidecars = Sidecars(self.spool_dir)
            self.store = FileStore(
                self.name, self.storage, self.spool_dir, self.journal, self.sidecars
            )
        except OSError as error:
            where = f"repository {self.name!r}: cannot create {self.storage}"
            raise storage_error(where, error) from None
        self._repair()

    # --- auth --------------------------------------------------------------------------------

    def authorize(self, secret: str) -> Permission:
        return permission_of_secret(secret, self.settings.read_secret, self.settings.write_secret)

    # --- start-up repair ---------------------------------------------------------------------

    def _repair(self) -> None:
        """Undo what a crash left: a torn journal tail, uploads cut off after their link, and
        the temporary files of processes that are gone. Idempotent; on a full disk it does
        what it can and leaves the rest for the next start (reads need none of it)."""
        try:
            with self.journal.locked():
                self.journal.heal()
            for intent in sweep(self.spool_dir, "intent"):
                self.store.finish_abandoned(intent)
            for kind in ("upload", "tmp"):
                for leftover in sweep(self.spool_dir, kind):
                    leftover.unlink()
        except OSError as error:
            log.warning("repository %r: %s", self.name, storage_error("start-up repair", error))

    # --- the journal -------------------------------------------------------------------------

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        if not self.journal.exists():
            self.rebuild_index()  # a root from the original pywharf, or a new one
        try:
            try:
                return self.journal.read(cursor)
            except JournalCorrupt as error:
                log.warning("repository %r: %s; rebuilding it", self.name, error)
                self.rebuild_index()
                return self.journal.read(None)
        except OSError as error:
            where = f"repository {self.name!r}: cannot read its journal"
            raise storage_error(where, error) from None

    # --- files -------------------------------------------------------------------------------

    def store_early(self, arriving: ArrivingFile) -> None:
        return None  # the spool is on the same file system: `put` is a rename

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        try:
            return self.store.put(upload)
        except OSError as error:
            raise storage_error(f"cannot store {upload.record.filename!r}", error) from None

    def put_many(
        self, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        try:
            linked = self.store.put_batch(uploads)
        except OSError as error:
            raise storage_error(f"cannot store {len(uploads)} files", error) from None
        results: list[FileRecord | DistributionExists] = []
        for upload, record in zip(uploads, linked):
            if record is None:  # the name was taken: decided as a lone put decides it
                results.extend(put_each(self, [upload], credential))
            else:
                results.append(record)
        return results

    def apply_change(self, event: Event, credential: str) -> None:
        if isinstance(event, Add):
            raise StorageError("an Add is stored by put()")
        try:
            with self.journal.locked():  # a put journaling this file sees it before or after
                if isinstance(event, Delete):
                    path = self.storage / event.project / event.filename
                    for suffix in (".metadata", ".meta", ""):
                        path.with_name(path.name + suffix).unlink(missing_ok=True)
                elif isinstance(event, Yank):
                    self._update_yank(self.storage / event.project / event.filename, event)
                # A project status lives in the journal only (rebuilds carry it over).
                self.journal.append(event)
        except OSError as error:
            what = event.project if isinstance(event, Status) else event.filename
            raise storage_error(f"cannot change {what!r}", error) from None

    def _update_yank(self, path: Path, event: Yank) -> None:
        stored = self.sidecars.record_from_disk(path)
        if stored is None:
            raise StorageNotFound(f"{event.filename!r} is not stored")
        meta = self.sidecars.read_meta(path) or {}
        form = {k: v for k, v in meta.items() if isinstance(v, str)}
        self.sidecars.write_meta(path, stored._replace(yanked=event.reason), form)

    def open(self, record: FileRecord) -> LocalFile:
        # A string and os.lstat: pathlib's two joins and stat cost 5 us of a small download.
        path = f"{self.storage}{os.sep}{record.project}{os.sep}{record.filename}"
        try:
            found = os.lstat(path)  # lstat: a symlink put in place of a file is not served
        except OSError:
            raise StorageNotFound(f"{record.filename!a} is missing from the storage") from None
        if not stat.S_ISREG(found.st_mode):
            raise StorageNotFound(f"{record.filename!a} in the storage is not a regular file")
        return LocalFile(path, found.st_size)

    def open_metadata(self, record: FileRecord) -> LocalFile:
        path = self.store.path(record)
        return self._local(path.with_name(path.name + ".metadata"))

    def _local(self, path: Path) -> LocalFile:
        try:
            found = path.lstat()  # lstat: a symlink put in place of a file is not served
        except OSError:
            raise StorageNotFound(f"{path.name!a} is missing from the storage") from None
        if not stat.S_ISREG(found.st_mode):
            raise StorageNotFound(f"{path.name!a} in the storage is not a regular file")
        return LocalFile(str(path), found.st_size)

    def rebuild_index(self) -> RepairReport:
        """Rescan the storage, rewrite the journal from it, and say what changed."""
        with self.journal.locked():
            found, moved = self._scan()
            history, bad = self.journal.salvage()
            if bad:  # kept, since only its unreadable lines are lost: tombstones live in it
                backup = self.journal.back_up(self.journal.path.read_bytes(), "corrupt")
                log.warning("repository %r: %d journal lines unreadable; kept in %s, "
                            "rebuilt from the storage", self.name, bad, backup)  # fmt: skip
            events, report = rescanned_events(found, history)
            report.repaired += moved
            self._write_journal(events, found)
            return report

    def _scan(self) -> tuple[list[FileRecord], list[str]]:
        """The files the storage holds, each moved into its project's folder if need be."""
        found, moved = [], []
        for folder, entry in _stored_files(self.storage):
            record = self.sidecars.record_from_disk(entry.path)
            if record is None:
                continue
            # Compared by name: building the target path cost more than reading a sidecar.
            if (folder, entry.name) != (record.project, record.filename):
                if _into_folder(Path(entry.path), self.store.path(record)) is None:
                    continue
                moved.append(f"{record.filename} (moved into {record.project}/)")
            found.append(record)
        return found, moved

    def _write_journal(self, events: list[Event], found: list[FileRecord]) -> None:
        """The journal (a new inode: readers reload it whole) and the original's index.toml."""
        self.journal.rewrite(events)
        storage = str(self.storage)  # joined as text: a million Paths took a second
        locations = {r.filename: {"package_path": f"{storage}/{r.project}/{r.filename}"}
                     for r in found}  # fmt: skip
        remote = index_parts(found, int(time.time()), "file_system", locations)
        write_atomically(self.storage / "index.toml", remote, self.spool_dir)  # the original's

    # --- tokens ------------------------------------------------------------------------------

    def read_tokens(self) -> bytes:
        try:
            return (self.storage / _PRIVATE / _TOKENS).read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as error:
            raise storage_error(
                f"repository {self.name!r}: cannot read its tokens", error
            ) from None

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        try:
            with self.journal.locked():  # the journal's lock serializes every writer of ROOT
                document = change(self.read_tokens())
                write_atomically(self.storage / _PRIVATE / _TOKENS, document, self.spool_dir)
        except OSError as error:
            where = f"repository {self.name!r}: cannot write its tokens"
            raise storage_error(where, error) from None

    def close(self) -> None:
        if not self.journal.exists():
            return
        try:
            self.journal.snapshot_if_behind()
        except (OSError, StorageError) as error:  # it only saves the next start some time
            log.warning("repository %r: no snapshot of the journal at close: %s", self.name, error)


def _stored_files(storage: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """The distributions in the project folders, each with its folder's name. A symlink, to a
    folder or a file, is never followed: it could list and serve anything the server can read
    (issue 9). Directory entries know their type: no stat per file (a million of them were a
    tenth of a rescan)."""
    for project in _sorted_entries(storage):
        if project.name.startswith(".") or not project.is_dir(follow_symlinks=False):
            continue
        for entry in _sorted_entries(project.path):
            if not entry.name.endswith(_SUFFIXES) or entry.name.startswith("."):
                continue
            if not entry.is_file(follow_symlinks=False):
                log.warning("update_index: %s is not a regular file; not listed", entry.path)
                continue
            yield project.name, entry


def _sorted_entries(folder: str | Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _into_folder(path: Path, target: Path) -> Path | None:
    """A file copied into another folder moves to its project's (`target`), where it is
    served; if that place is taken, it stays where it is, unlisted."""
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


_: BackendType = FileSystemBackend  # mypy --strict checks the class against the contract
