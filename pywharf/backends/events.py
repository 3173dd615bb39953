"""Index events as every backend derives them: diffs, tombstones and the repair report.

A backend whose index is a document (GitHub's `index.toml`) hands out the difference between
two versions of it; a backend that rescans its storage (`rebuild_index`) keeps the tombstones
of deleted files, so a deleted filename never takes other bytes, and reports what changed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

from pywharf.backends import RepairReport
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.index import ACTIVE
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Status
from pywharf.index import Yank

__all__ = [
    "diff_events",
    "rescanned_events",
    "repair_report",
    "tombstone",
    "status_changes",
    "tombstone_events",
]


def _unyanked(record: FileRecord) -> dict[str, Any]:
    fields = record.to_json()
    fields.pop("yanked", None)
    return fields


def diff_events(old: Mapping[str, FileRecord], new: Mapping[str, FileRecord]) -> list[Event]:
    """What turns `old` into `new`, in filename order."""
    events: list[Event] = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if after is None and before is not None:
            events.append(Delete(before.project, name, before.sha256, before.origin))
        elif after is not None and before != after:
            if before is not None and _unyanked(before) == _unyanked(after):
                events.append(Yank(after.project, name, after.yanked))
            else:
                events.append(Add(after))
    return events


def tombstone(
    filename: str, project: str, sha256: str, origin: str | None = None
) -> dict[str, Any]:
    """A stored tombstone: the filename may take these bytes again, never others."""
    stone = {"filename": filename, "project": project, "sha256": sha256,
             "deleted_at": int(time.time())}  # fmt: skip
    if origin is not None:
        stone["origin"] = origin
    return stone


def tombstone_events(tombstones: Mapping[str, Mapping[str, Any]]) -> list[Event]:
    """The index's form of a tombstone: a Delete that carries the deleted bytes' sha256."""
    events: list[Event] = []
    for name, stone in sorted(tombstones.items()):
        sha256 = stone.get("sha256")
        project = stone.get("project")
        try:
            normalized = parse_filename(name, project=project if isinstance(project, str) else None)
        except PywharfError:
            continue
        origin = stone.get("origin")
        if isinstance(sha256, str) and sha256:
            origin = origin if isinstance(origin, str) else None
            events.append(Delete(normalized.project, name, sha256, origin))
    return events


def repair_report(
    before: Mapping[str, FileRecord], after: Mapping[str, FileRecord]
) -> RepairReport:
    """What a rescan changed: files found, files gone, and files whose record changed."""
    report = RepairReport(total=len(after))
    report.added = sorted(after.keys() - before.keys())
    report.removed = sorted(before.keys() - after.keys())
    report.repaired = sorted(n for n in after.keys() & before.keys() if after[n] != before[n])
    return report


def rescanned_events(
    found: Iterable[FileRecord], before: Iterable[Event]
) -> tuple[list[Event], RepairReport]:
    """The whole index a rescan found, with the tombstones and project statuses of `before`
    (a status is the operator's, not the storage's: no rescan can find it)."""
    files = {record.filename: record for record in found}
    history = list(before)
    index = Index()
    index.apply(history)
    report = repair_report({record.filename: record for record in index.records()}, files)
    deleted = {e.filename: e for e in history if isinstance(e, Delete) and e.filename not in files}
    events: list[Event] = [Add(files[name]) for name in files]
    events += [
        Delete(e.project, name, index.deleted_sha256(name), e.origin) for name, e in deleted.items()
    ]
    events += index.statuses()
    return events, report


def status_changes(old: Iterable[Status], new: Iterable[Status]) -> list[Status]:
    """The Status events that turn the statuses `old` into `new` (a dropped one is cleared)."""
    before = {s.project: s for s in old}
    after = {s.project: s for s in new}
    changes = [after[name] for name in sorted(after) if before.get(name) != after[name]]
    return changes + [Status(name, ACTIVE) for name in sorted(before.keys() - after.keys())]
