"""The file-system backend's journal: index events, one JSON record a line, append-only.

An upload costs the same at 100,000 files as at 10, and servers sharing a ROOT follow each other
by reading what was appended since their cursor. Records are whole or absent: an append holds the
exclusive `flock`, loops on short writes, fsyncs, and on any failure (a full disk) truncates back
to where its record began. A tail left torn by a crash mid-append is cut off, after a backup, by
the next writer (start-up or append); readers never see it, as they read complete lines only.
`rewrite` replaces the journal whole: the new inode tells readers to reload it.

A whole read starts from `journal.snapshot` (`journal_snapshot.py`) when it matches the journal's
first bytes, and replays only the lines after them; one that replays many lines writes a new
snapshot of where they lead, as does `rewrite`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from typing import BinaryIO

from pywharf.backends import IndexUpdate
from pywharf.backends.atomic import write_all
from pywharf.backends.atomic import write_atomically
from pywharf.backends.journal_snapshot import JournalSnapshot
from pywharf.backends.journal_snapshot import decode
from pywharf.backends.journal_snapshot import encode
from pywharf.backends.journal_snapshot import replayed
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.index import Event
from pywharf.index import event_from_json
from pywharf.index import event_to_json
from pywharf.index import gc_paused

__all__ = ["Journal", "JournalCorrupt"]

log = logging.getLogger("pywharf")

_PARSE_BATCH_LINES = 64  # measured: fastest, and the least memory left fragmented
_READ_BLOCK_BYTES = 1 << 20
_LINES_PER_PART = 4096  # a rewrite's lines, about 1 MB, encoded and written at a time
# One encoder for every line: `json.dumps` with `separators` builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_TAIL_BYTES = 64 * 1024  # a record is a few hundred bytes: a torn one is within this
_LOGGED_TAIL_BYTES = 1024
# A whole read that replays more than this writes a snapshot: 4 MiB is about 18,000 records,
# a tenth of a second to replay; a snapshot of a million files takes a second or two to write.
SNAPSHOT_AFTER_BYTES = 4 << 20


class JournalCorrupt(StorageError):
    """A complete journal line does not parse (written by a version that tore its records)."""


class Journal:
    """`journal.jsonl` and the lock file that serializes its writers."""

    def __init__(self, path: Path, lock_path: Path, temporary_dir: Path) -> None:
        self.path = path
        self.snapshot_path = path.with_suffix(".snapshot")
        self.snapshot_after_bytes = SNAPSHOT_AFTER_BYTES
        self._snapshotted = 0  # the journal bytes the snapshot last read or written stands for
        self._lock_path = lock_path
        self._temporary_dir = temporary_dir
        lock_path.touch(exist_ok=True)

    @contextmanager
    def locked(self, exclusive: bool = True) -> Iterator[None]:
        """Writers hold it exclusively; an `flock` per open file, so threads exclude too."""
        with self._lock_path.open("rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield  # closing the file releases the lock

    def exists(self) -> bool:
        return self.path.exists()

    # --- reading -----------------------------------------------------------------------------

    def read(self, cursor: Any) -> IndexUpdate | None:
        """The events appended since `cursor` (None: all of them), or None when there are none."""
        with self.path.open("rb") as journal:
            status = os.fstat(journal.fileno())
            inode, offset = cursor if cursor is not None else (None, 0)
            if inode != status.st_ino or offset > status.st_size:  # rewritten, or cut back
                return self._read_whole(journal, status)
            if offset == status.st_size:
                return None
            journal.seek(offset)
            events, complete = _read_complete_lines(journal, status.st_size - offset)
        new_cursor = (status.st_ino, offset + complete)
        return IndexUpdate(events, False, new_cursor, int(status.st_mtime))

    def _read_whole(self, journal: BinaryIO, status: os.stat_result) -> IndexUpdate:
        """The whole index: the snapshot and the lines after it, or every line."""
        snapshot, digest = self._matching_snapshot(journal, status.st_size)
        start = snapshot.prefix_length if snapshot else 0
        events, complete = _read_complete_lines(journal, status.st_size - start, digest)
        base = snapshot.image if snapshot else None
        self._snapshotted = start
        if complete and complete >= self.snapshot_after_bytes:
            base, events = replayed(base, events), ()
            latest = JournalSnapshot(start + complete, digest.digest(), base)
            self._write_snapshot(latest, status.st_ino)
        cursor = (status.st_ino, start + complete)
        return IndexUpdate(events, True, cursor, int(status.st_mtime), base)

    def _matching_snapshot(
        self, journal: BinaryIO, size: int
    ) -> tuple[JournalSnapshot | None, Any]:
        """The snapshot, if it stands for the journal's first bytes, with the sha256 of those
        bytes so far; else None, a fresh sha256, and the journal back at its start."""
        snapshot = self._load_snapshot()
        digest = hashlib.sha256()
        if snapshot is None or snapshot.prefix_length > size:
            return None, digest
        remaining = snapshot.prefix_length
        while remaining > 0:
            block = journal.read(min(_READ_BLOCK_BYTES, remaining))
            if not block:
                break
            digest.update(block)
            remaining -= len(block)
        if remaining == 0 and digest.digest() == snapshot.prefix_sha256:
            return snapshot, digest
        log.info("journal %s: its snapshot is of another journal; replaying it whole", self.path)
        journal.seek(0)
        return None, hashlib.sha256()

    def _load_snapshot(self) -> JournalSnapshot | None:
        try:
            data = self.snapshot_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            log.warning("cannot read %s: %s; replaying the journal", self.snapshot_path, error)
            return None
        snapshot = decode(data)
        if snapshot is None:
            log.warning("%s is damaged or of another version; replaying the journal",
                        self.snapshot_path)  # fmt: skip
        return snapshot

    def _write_snapshot(self, snapshot: JournalSnapshot, inode: int | None = None) -> None:
        """Replace the snapshot (`inode`: only if the journal was not rewritten meanwhile; the
        caller of `rewrite` holds the lock already). A failure costs the next start time only."""
        data = encode(snapshot)
        try:
            with self.locked(exclusive=False) if inode is not None else contextlib.nullcontext():
                # No rewrite while the lock is shared: a snapshot of the journal it replaced
                # would be ignored, but would take the place of the rewrite's own.
                if inode is None or os.stat(self.path).st_ino == inode:
                    write_atomically(self.snapshot_path, data, self._temporary_dir)
                    self._snapshotted = snapshot.prefix_length
        except OSError as error:
            log.warning("cannot write %s: %s", self.snapshot_path, error)

    def snapshot_if_behind(self) -> None:
        """A whole read, which writes a snapshot, if the journal grew `snapshot_after_bytes`
        past the last snapshot seen: a server that took many uploads leaves its next start a
        short tail to replay (20,000 uploads replayed: 0.25 to 0.29 s to the first answer;
        from their snapshot: 0.17 to 0.18 s)."""
        if os.stat(self.path).st_size - self._snapshotted >= self.snapshot_after_bytes:
            self.read(None)

    def salvage(self) -> tuple[list[Event], int]:
        """Every event that parses, and how many complete lines do not."""
        data = self.path.read_bytes() if self.exists() else b""
        complete = data[: data.rfind(b"\n") + 1]
        try:
            return list(_parse(complete)), 0  # whole: a line at a time took ten times longer
        except JournalCorrupt:
            pass
        events: list[Event] = []
        bad = 0
        for line in complete.splitlines():
            try:
                events.extend(_parse(line))
            except JournalCorrupt:
                bad += 1
        return events, bad

    # --- writing: the caller holds `locked()` ------------------------------------------------

    def append(self, *events: Event) -> None:
        """Append records, whole and with one fsync, or raise `OSError` having written none."""
        if not events:
            return
        line = _lines(events).encode()
        descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = self._cut_torn_tail(descriptor)
            try:
                write_all(descriptor, line)  # a full disk can write part, then fail
                os.fsync(descriptor)
            except OSError:
                # Never a partial line; if even this fails, the next writer cuts the tail.
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, start)
                raise
        finally:
            os.close(descriptor)

    def heal(self) -> None:
        """Cut a torn tail off (start-up repair): appends then start on a fresh line."""
        if not self.exists():
            return
        descriptor = os.open(self.path, os.O_RDWR)
        try:
            self._cut_torn_tail(descriptor)
        finally:
            os.close(descriptor)

    def rewrite(self, events: list[Event]) -> None:
        digest, written = hashlib.sha256(), 0

        def parts() -> Iterator[bytes]:
            # Made as they are written: a million files' journal, as text then as bytes, was
            # half a gigabyte at once.
            nonlocal written
            for start in range(0, len(events), _LINES_PER_PART):
                part = _lines(events[start : start + _LINES_PER_PART]).encode()
                digest.update(part)
                written += len(part)
                yield part

        write_atomically(self.path, parts(), self._temporary_dir)
        if written and written >= self.snapshot_after_bytes:
            snapshot = JournalSnapshot(written, digest.digest(), replayed(None, events))
            self._write_snapshot(snapshot)

    def back_up(self, data: bytes, kind: str) -> Path | None:
        """Keep damaged bytes next to the journal as `journal.jsonl.<kind>-<time>`."""
        backup = self.path.with_name(f"{self.path.name}.{kind}-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            with backup.open("ab") as file:  # two backups in one second go to one file
                file.write(data)
                os.fsync(file.fileno())
        except OSError as error:
            log.warning("cannot back the journal up to %s: %s", backup, error.strerror)
            return None
        return backup

    def _cut_torn_tail(self, descriptor: int) -> int:
        """Truncate an unfinished last line (its writer is gone: we hold the lock); the size."""
        size = os.fstat(descriptor).st_size
        window = min(size, _TAIL_BYTES)
        tail = os.pread(descriptor, window, size - window)
        if not tail or tail.endswith(b"\n"):
            return size
        torn = tail[tail.rfind(b"\n") + 1 :]
        backup = self.back_up(torn, "torn")
        log.warning(
            "journal %s: cut off a torn last record of %d bytes (a write cut short by a crash "
            "or a full disk); %s",
            self.path,
            len(torn),
            f"kept in {backup}" if backup else f"it was {torn[:_LOGGED_TAIL_BYTES]!r}",
        )
        os.ftruncate(descriptor, size - len(torn))
        return size - len(torn)


def _lines(events: Iterable[Event]) -> str:
    return "".join(_ENCODER.encode(event_to_json(e)) + "\n" for e in events)


def _read_complete_lines(
    journal: BinaryIO, size: int, digest: Any = None
) -> tuple[tuple[Event, ...], int]:
    """The events of the complete lines in the next `size` bytes, and those lines' length (a
    line being appended is read next time), fed to `digest` if given. Read a block at a time:
    the whole journal of a million files (230 MB) and its lines held at once were half of the
    start-up's peak memory."""
    events: list[Event] = []
    complete, carry = 0, b""
    while size > 0:
        block = carry + journal.read(min(_READ_BLOCK_BYTES, size))
        size -= len(block) - len(carry)
        if len(block) == len(carry):  # the file shrank since its fstat
            break
        cut = block.rfind(b"\n") + 1
        if digest is not None:
            digest.update(memoryview(block)[:cut])
        events.extend(_parse(block[:cut]))
        complete += cut
        carry = block[cut:]
    return tuple(events), complete


def _parse(data: bytes) -> tuple[Event, ...]:
    with gc_paused():
        return _parse_lines(data)


def _parse_lines(data: bytes) -> tuple[Event, ...]:
    events: list[Event] = []
    lines = data.splitlines()
    for start in range(0, len(lines), _PARSE_BATCH_LINES):
        # One json.loads per batch: five times faster than one per line, and the parsed
        # dicts of one batch are freed before the next, so their memory is reused.
        batch = b"[" + b",".join(lines[start : start + _PARSE_BATCH_LINES]) + b"]"
        try:
            events.extend(event_from_json(item) for item in json.loads(batch))
        except (ValueError, TypeError, AttributeError, PywharfError) as error:  # not an object
            raise JournalCorrupt(f"its journal is corrupt: {error}") from None
    return tuple(events)
