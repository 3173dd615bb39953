"""`update_index` for the S3 backend: list the bucket, reconcile each manifest with it.

A file whose manifest entry still fits its object (same size) keeps its record; an object
with our `x-amz-meta-*` record and no entry (an upload cut off before listing) is listed from
one HEAD; anything else (copied by hand, changed behind the index) is described from its bytes.
An object whose name carries a tombstone of the same bytes is a delete cut off before removing
it: removed. Each manifest is written by compare-and-swap, so an upload finishing meanwhile
is kept. Multipart uploads older than `orphan_upload_seconds` are aborted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from packaging.utils import NormalizedName

from pywharf.backends import RepairReport
from pywharf.backends.events import repair_report
from pywharf.backends.hashing import copy_hashed
from pywharf.backends.s3_index import ManifestStore
from pywharf.backends.s3_layout import Layout
from pywharf.backends.s3_layout import Manifest
from pywharf.backends.s3_layout import record_from_head
from pywharf.clients.s3 import S3Client
from pywharf.clients.s3_core import ListedObject
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.index import FileRecord
from pywharf.metadata import read_wheel_metadata

__all__ = ["ORPHAN_UPLOAD_SECONDS", "Rescan"]

# An unfinished multipart upload younger than this may still be running on another server.
ORPHAN_UPLOAD_SECONDS = 24 * 3600.0
_Objects = dict[str, dict[str, ListedObject]]


class Rescan:
    """What `rebuild_index` does, over one client, layout and manifest store."""

    def __init__(
        self,
        client: S3Client,
        layout: Layout,
        index: ManifestStore,
        *,
        clock: Callable[[], float] = time.time,
        orphan_upload_seconds: float = ORPHAN_UPLOAD_SECONDS,
    ) -> None:
        self._client = client
        self._layout = layout
        self._index = index
        self._clock = clock
        self._orphan_seconds = orphan_upload_seconds

    def run(self, spool: Path) -> RepairReport:
        aborted = self._abort_orphan_uploads()
        objects = self._objects()
        before: dict[str, FileRecord] = {}
        after: dict[str, FileRecord] = {}
        for project in sorted(objects.keys() | self._index.listing().keys()):
            scanned, _ = self._index.read(project)
            before.update(scanned.files)
            found = self._found(project, objects.get(project, {}), scanned, spool)
            reconcile = functools.partial(_reconciled, scanned=scanned, found=found)
            after.update(self._index.update(project, reconcile))
        report = repair_report(before, after)
        report.repaired += aborted
        return report

    def _abort_orphan_uploads(self) -> list[str]:
        cutoff = self._clock() - self._orphan_seconds
        aborted = []
        for upload in self._client.list_multipart_uploads(self._layout.files):
            if upload.initiated <= cutoff:
                self._client.abort_multipart(upload.key, upload.upload_id)
                aborted.append(f"{upload.key} (unfinished upload aborted)")
        return aborted

    def _objects(self) -> _Objects:
        """The objects under `files/`, by project folder and name (metadata objects too)."""
        found: _Objects = {}
        for item in self._client.list(self._layout.files):
            place = self._layout.split_file(item.key)
            if place is not None:
                found.setdefault(place[0], {})[place[1]] = item
        return found

    def _found(
        self, project: str, objects: dict[str, ListedObject], manifest: Manifest, spool: Path
    ) -> dict[str, FileRecord]:
        found = {}
        for filename, item in sorted(objects.items()):
            if filename.endswith(".metadata"):
                continue
            known = manifest.files.get(filename)
            if known is not None and known.size == item.size:
                found[filename] = known
                continue
            record = self._describe(project, filename, item, known, spool)
            if record is None:
                continue
            if known is None and manifest.deleted_sha256(filename) == record.sha256:
                self._client.delete(item.key)  # a delete cut off before removing the bytes
                self._client.delete(self._layout.metadata(project, filename))
                continue
            found[filename] = record
        return found

    def _describe(
        self,
        project: str,
        filename: str,
        item: ListedObject,
        known: FileRecord | None,
        spool: Path,
    ) -> FileRecord | None:
        if known is None:  # an upload cut off before it was listed carries its record
            info = self._client.head(item.key)
            record = record_from_head(filename, project, info.size, info.metadata,
                                      info.last_modified)  # fmt: skip
            if record is not None:
                return record
        return self.describe(project, filename, item, spool, known)

    def describe(
        self,
        project: str,
        filename: str,
        item: ListedObject,
        spool: Path,
        known: FileRecord | None = None,
    ) -> FileRecord | None:
        """Download, hash, and for a wheel store its METADATA (PEP 658) anew."""
        try:
            distribution = parse_filename(filename, project)
        except PywharfError:
            return None  # not a distribution: left unlisted, as the other backends do
        if distribution.project != project:
            return None  # in another project's folder: never served from there
        path = spool / f"rescan-{uuid.uuid4().hex}"
        try:
            with (
                contextlib.closing(self._client.stream(item.key)) as source,
                path.open("wb") as out,
            ):
                sha256 = copy_hashed(source, out)
            metadata_sha256 = requires_python = None
            if distribution.kind == "wheel":
                with contextlib.suppress(PywharfError):  # a malformed wheel: no metadata
                    core = read_wheel_metadata(path, distribution)
                    key = self._layout.metadata(project, filename)
                    self._client.put(key, core.raw)
                    metadata_sha256 = hashlib.sha256(core.raw).hexdigest()
                    requires_python = core.requires_python
            elif known is not None:
                requires_python = known.requires_python
        finally:
            path.unlink(missing_ok=True)
        return FileRecord(
            filename=filename,
            project=distribution.project,
            version=distribution.version,
            sha256=sha256,
            size=item.size,
            upload_time=item.last_modified or self._clock(),
            requires_python=requires_python,
            metadata_sha256=metadata_sha256,
        )


def _reconciled(
    current: Manifest, *, scanned: Manifest, found: dict[str, FileRecord]
) -> tuple[Manifest, dict[str, FileRecord]]:
    """The manifest the scan found; entries listed since it was read (uploads finishing
    meanwhile) are kept, and tombstones stay for names that hold no file."""
    files = dict(found)
    for name, record in current.files.items():
        if name not in scanned.files and name not in files:
            files[name] = record
    deleted = {name: stone for name, stone in current.deleted.items() if name not in files}
    new = Manifest(NormalizedName(current.project), files, deleted, current.status)
    return (current if new == current else new), files
