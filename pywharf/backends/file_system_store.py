"""Storing files in a file-system repository: the link saga, and what a crash cut off of it.

Storing a file: write an intent (the record), link the spool file to the final name (atomic,
never replaces), write the sidecars, append the event (fsynced), and only then answer 200. A
crash after the link leaves a file at its final name that the journal does not list. It was not
acknowledged, but it is complete and verified (digests checked, fsynced), so it is listed rather
than removed: the client's retry then answers 200 for exactly those bytes, and a retry with other
bytes answers a 409 for a file the index shows. Two paths complete it: the next start-up reads
the abandoned intent (its lease died with its process), and a `put` that finds a file at the
name journals what it found. A batch (a bundle's import) is stored under one intent that lists
all its files, and their events are appended at once after one fsync per folder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pywharf.backends import StagedUpload
from pywharf.backends.atomic import fsync_directory
from pywharf.backends.atomic import is_leased
from pywharf.backends.atomic import leased_file
from pywharf.backends.atomic import sweep
from pywharf.backends.atomic import write_all
from pywharf.backends.hashing import sha256_of_file
from pywharf.backends.journal import Journal
from pywharf.backends.sidecars import Sidecars
from pywharf.errors import DistributionExists
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.index import Add
from pywharf.index import FileRecord

__all__ = ["FileStore"]

log = logging.getLogger("pywharf")

_SYNC_THREADS = 16
_LINK_ATTEMPTS = 3  # a file found at the name can vanish (its upload failed): link again


class FileStore:
    """Puts staged uploads at their names under `storage` and journals them. Its methods raise
    `OSError` for the backend to turn into a storage error naming what failed."""

    def __init__(
        self, name: str, storage: Path, spool_dir: Path, journal: Journal, sidecars: Sidecars
    ) -> None:
        self.name = name  # the repository's, for the log
        self.storage = storage
        self.spool_dir = spool_dir
        self.journal = journal
        self.sidecars = sidecars

    def path(self, record: FileRecord) -> Path:
        return self.storage / record.project / record.filename

    def put(self, upload: StagedUpload) -> FileRecord:
        with leased_file(self.spool_dir, "intent") as (_, intent):
            write_all(intent, _intent_document([upload]))
            for _attempt in range(_LINK_ATTEMPTS):
                stored = self._link_or_find(upload)
                if stored is not None:
                    return stored
        filename = upload.record.filename
        raise StorageError(f"cannot store {filename!r}: the name is taken and released")

    def put_batch(self, uploads: Sequence[StagedUpload]) -> list[FileRecord | None]:
        """One intent for all, each file linked with its sidecars, one fsync per folder (run
        concurrently) and one journal append; None where the name was taken. A `put` each
        made 10,000 small files take 10.1 s here (two fsyncs and an intent per file); batches
        of 500 took 7.1 s. A crash leaves linked files that the batch's intent lists:
        start-up journals them, as it does a single upload's."""
        with leased_file(self.spool_dir, "intent") as (_, intent):
            write_all(intent, _intent_document(uploads))
            return self._link_batch(uploads)

    def finish_abandoned(self, intent: Path) -> None:
        """Journal the files a dead upload (or batch) linked into place, if it got that far."""
        with self.journal.locked():
            self._journal_intended(_read_intent(intent), skip=None)
        intent.unlink(missing_ok=True)

    def _journal_intended(
        self, intended: list[tuple[FileRecord, dict[str, str]]], skip: str | None
    ) -> None:
        """Journal each intended file found in place (the caller holds the journal's lock)."""
        for record, form in intended:
            if record.filename == skip:
                continue
            stored = self._journal_existing(self.path(record), record, form, None, True)
            if stored is not None and stored.sha256 == record.sha256:
                log.warning(
                    "repository %r: listed %s, cut off by a crash", self.name, record.filename
                )

    def _take_abandoned_intents(self, filename: str) -> bool:
        """Remove the intents of dead uploads of `filename`: whether there were any (few: one
        per upload a crash cut off). Its caller journals the file in their stead; the other
        files of a dead batch are journaled here, as a start-up would."""
        found = False
        for intent in sweep(self.spool_dir, "intent"):
            intended = _read_intent(intent)
            if any(record.filename == filename for record, _ in intended):
                self._journal_intended(intended, skip=filename)
                intent.unlink()
                found = True
        return found

    def _link_or_find(self, upload: StagedUpload) -> FileRecord | None:
        """Store the upload under its name, or journal what is there (None: it vanished)."""
        record = upload.record
        destination = self.path(record)
        destination.parent.mkdir(exist_ok=True)
        try:
            os.link(upload.path, destination)  # atomic, and never replaces: a race has one winner
        except FileExistsError:
            # The spool file linked there is leased by its upload until it has answered.
            is_leased(destination, wait=True)
            with self.journal.locked():
                orphaned = self._take_abandoned_intents(record.filename)
                stored = self._journal_existing(
                    destination, record, upload.form, upload.metadata, orphaned
                )
            if stored is not None and stored.sha256 != record.sha256:
                raise DistributionExists(record.filename) from None
            return stored
        try:
            self.sidecars.write(destination, record, upload.form, upload.metadata)
            fsync_directory(destination.parent)
            with self.journal.locked():
                self.journal.append(Add(record))
        except OSError:
            destination.unlink(missing_ok=True)  # nobody else touches it while it is leased
            raise
        return record

    def _link_batch(self, uploads: Sequence[StagedUpload]) -> list[FileRecord | None]:
        """Link every upload whose name is free, then sync and journal them all at once."""
        linked: list[FileRecord | None] = []
        destinations: list[Path] = []
        try:
            for upload in uploads:
                destination = self.path(upload.record)
                destination.parent.mkdir(exist_ok=True)
                try:
                    os.link(upload.path, destination)  # never replaces: a taken name is left
                except FileExistsError:
                    linked.append(None)
                    continue
                destinations.append(destination)
                self.sidecars.write(destination, upload.record, upload.form, upload.metadata)
                linked.append(upload.record)
            folders = {destination.parent for destination in destinations}
            with ThreadPoolExecutor(_SYNC_THREADS, "fsync") as pool:
                list(pool.map(fsync_directory, folders))  # concurrent: commits are shared
            with self.journal.locked():
                self.journal.append(*(Add(record) for record in linked if record is not None))
        except OSError:
            for destination in destinations:  # ours alone while the batch's intent is leased
                destination.unlink(missing_ok=True)
            raise
        return linked

    def _journal_existing(
        self,
        destination: Path,
        record: FileRecord,
        form: dict[str, str],
        metadata: bytes | None,
        orphaned: bool,
    ) -> FileRecord | None:
        """The record of the file at `destination`, journaled if its upload did not get to it
        (`orphaned`: a crash), so whatever a put answers about is listed. Identical bytes with
        no sidecar get `record`, never a poorer one rebuilt from the bytes (issue 9)."""
        stored = self.sidecars.record(destination, self.sidecars.read_meta(destination))
        if stored is not None and not orphaned:
            return stored  # its upload wrote the sidecar, then the event
        if stored is None:
            if not destination.exists():
                return None
            if sha256_of_file(destination) == record.sha256:
                self.sidecars.write(destination, record, form, metadata)
                stored = record
            else:
                stored = self.sidecars.record_from_disk(destination)
        if stored is not None:
            self.journal.append(Add(stored))  # a repeated Add, if it got there, changes nothing
        return stored


def _intent_document(uploads: Sequence[StagedUpload]) -> bytes:
    files = [{"record": u.record.to_json(), "form": u.form} for u in uploads]
    return json.dumps({"files": files}).encode()


def _read_intent(intent: Path) -> list[tuple[FileRecord, dict[str, str]]]:
    """What an intent file says its upload (or batch) was storing (nothing: it was cut off
    while written, which is before any link). Reads the one-file form of older versions."""
    try:
        data = json.loads(intent.read_bytes())
        files = data.get("files", [data])  # one file: the form of older versions
        return [(FileRecord.from_json(item["record"]), item["form"]) for item in files]
    except (OSError, ValueError, TypeError, KeyError, PywharfError):
        return []
