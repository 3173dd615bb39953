"""The journal's snapshot: the index its first bytes replay to, so a start replays only the rest.

    TAG                      format, marshal version and record width: any other is ignored
    sha256(BODY)             32 bytes: a damaged or cut-off file is ignored
    BODY                     chunks, each a 4-byte big-endian length and a marshal dump:
      (prefix length, prefix sha256, projects, tombstones, tombstoned projects, statuses)
      (name, status, files) of up to _PROJECTS_PER_CHUNK projects, per chunk, by name

The snapshot names the journal bytes it stands for by their length and sha256, and holds only
what replaying exactly those bytes gives: appends leave it valid, and a journal rewritten,
truncated or replaced under it no longer matches it, so its reader replays the whole journal.
marshal, not pickle: loading it builds plain values and never runs code; it is also the fastest
stdlib format for tuples of strings (a million records load in about half a second here).
Chunks, not one dump: each chunk's plain tuples are freed as its records are built, so their
memory is reused by the next chunk instead of being left fragmented beside the index.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Iterable
from collections.abc import Iterator
from functools import partial
from typing import Any
from typing import NamedTuple

from packaging.utils import NormalizedName

from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import IndexImage
from pywharf.index import Project
from pywharf.index import Status
from pywharf.index import gc_paused

__all__ = ["JournalSnapshot", "decode", "encode", "replayed"]

_FIELDS = len(FileRecord._fields)
# Records as `FileRecord` stores them (digests as bytes, trailing Nones left out): format 2.
TAG = f"pywharf journal snapshot 2, marshal 4, {_FIELDS} record fields\n".encode()
_RECORD_LENGTHS = frozenset(range(6, _FIELDS + 1))  # the required fields, then optional ones
_MARSHAL_VERSION = 4  # read by every Python from 3.4 on
_DIGEST_BYTES = 32
_LENGTH_BYTES = 4
_PROJECTS_PER_CHUNK = 1000  # about 10,000 records: a few MiB of plain tuples at a time


class JournalSnapshot(NamedTuple):
    prefix_length: int  # the journal bytes it stands for: whole lines from the start
    prefix_sha256: bytes
    image: IndexImage


def replayed(base: IndexImage | None, events: Iterable[Event]) -> IndexImage:
    """What `events` applied to `base` (None: an empty index) leave."""
    index = Index()
    index.replace_all(events, base)
    return index.image()


def encode(snapshot: JournalSnapshot) -> list[bytes]:
    """The snapshot's file, in parts (joined, a million files' would be one more 150 MB)."""
    image = snapshot.image
    head = (snapshot.prefix_length, snapshot.prefix_sha256, len(image.projects), image.deleted,
            tuple(image.tombstoned), tuple(tuple(s) for s in image.statuses))  # fmt: skip
    chunks = [marshal.dumps(head, _MARSHAL_VERSION)]
    for start in range(0, len(image.projects), _PROJECTS_PER_CHUNK):
        batch = image.projects[start : start + _PROJECTS_PER_CHUNK]
        # marshal takes plain tuples only: each record's as it is stored.
        plain = tuple((p.name, p.status and tuple(p.status), tuple(map(tuple, p.files)))
                      for p in batch)  # fmt: skip
        chunks.append(marshal.dumps(plain, _MARSHAL_VERSION))
    digest = hashlib.sha256()
    parts: list[bytes] = []
    for chunk in chunks:
        for part in (len(chunk).to_bytes(_LENGTH_BYTES, "big"), chunk):
            digest.update(part)
            parts.append(part)
    return [TAG, digest.digest(), *parts]


def decode(data: bytes) -> JournalSnapshot | None:
    """The snapshot `data` holds; None if it is of another format, damaged or incomplete."""
    if not data.startswith(TAG):
        return None
    view = memoryview(data)[len(TAG) :]
    digest, body = view[:_DIGEST_BYTES], view[_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        return None
    try:
        with gc_paused():
            return _decode(_chunks(body))
    except (ValueError, TypeError, EOFError, IndexError, AttributeError, StopIteration):
        return None  # a checksum that matches a file we did not write: a bug, not a crash


def _chunks(body: memoryview) -> Iterator[memoryview]:
    offset = 0
    while offset < len(body):
        length = int.from_bytes(body[offset : offset + _LENGTH_BYTES], "big")
        offset += _LENGTH_BYTES
        if offset + length > len(body):
            raise ValueError("a chunk runs past the end")
        yield body[offset : offset + length]
        offset += length


def _decode(chunks: Iterator[memoryview]) -> JournalSnapshot | None:
    head = marshal.loads(next(chunks))
    prefix_length, prefix_sha256, count, deleted, tombstoned, statuses = head
    projects: list[Project] = []
    for chunk in chunks:
        projects.extend(map(_project, marshal.loads(chunk)))
    if len(projects) != count or not isinstance(deleted, dict) or len(prefix_sha256) != 32:
        return None
    image = IndexImage(tuple(projects), deleted, frozenset(tombstoned),
                       tuple(Status(*s) for s in statuses))  # fmt: skip
    return JournalSnapshot(int(prefix_length), bytes(prefix_sha256), image)


def _project(plain: tuple[Any, ...]) -> Project:
    name, status, files = plain
    lengths = set(map(len, files))
    if not isinstance(name, str) or not lengths or not lengths <= _RECORD_LENGTHS:
        raise ValueError(f"project {name!r} is malformed")
    records = tuple(map(_new_record, files))
    return Project(NormalizedName(name), records, Status(*status) if status else None)


# tuple.__new__ with the fields already in order: FileRecord(*fields) costs several times more.
_new_record = partial(tuple.__new__, FileRecord)
