"""The S3 backend's layout and its per-project manifest, as pure values (no I/O).

    <prefix>files/<project>/<filename>            the file, written once (If-None-Match: *)
    <prefix>files/<project>/<filename>.metadata   PEP 658 METADATA of a wheel, written once
    <prefix>index/<project>.json                  the project's manifest: records + tombstones
    <prefix>index/.tokens                         the token document (hashes, never tokens)

A file's object carries its record in `x-amz-meta-*` headers (`object_metadata`), so a file
stored whose manifest entry was never written can be indexed from one HEAD (`record_from_head`):
by an upload retry, by another upload of the name (which then answers a visible 409), or by
`update_index`. The token document sits under `index/` so that the LIST of each sync carries its
ETag too (an idle sync stays one request); no manifest name can be `.tokens` (not `.json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from typing import Any
from urllib.parse import quote
from urllib.parse import unquote

from packaging.utils import NormalizedName

from pywharf.backends.events import diff_events
from pywharf.backends.events import tombstone
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.index import ACTIVE
from pywharf.index import STATUSES
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Status

__all__ = [
    "PARTIAL_RECORD",
    "Layout",
    "Manifest",
    "manifest_events",
    "object_metadata",
    "record_from_head",
    "whole_events",
]

MANIFEST_FORMAT = 1
# x-amz-meta-* of a file stored while it arrived (`S3Backend.store_early`): its sha256 is the
# checked one, but the rest of its record (requires-python, the METADATA's hash) came later.
PARTIAL_RECORD = "partial-record"


@dataclass(frozen=True)
class Layout:
    """Where each object of a repository lives in its bucket, under `prefix`."""

    prefix: str = ""

    def __post_init__(self) -> None:
        # urllib3 removes `.`/`..` segments from request paths, which breaks the signature
        # (../shared/reference/s3-storage.md, SigV4 pitfall 2): refuse them here, once.
        segments = self.prefix.removesuffix("/").split("/")
        if self.prefix and ("" in segments or {".", ".."} & set(segments)):
            raise ValueError(f"prefix {self.prefix!r}: no segment may be empty, '.' or '..'")

    @property
    def root(self) -> str:
        """The prefix as a folder: "" or ending in exactly one "/"."""
        return self.prefix.removesuffix("/") + "/" if self.prefix else ""

    @property
    def files(self) -> str:
        return f"{self.root}files/"

    @property
    def index(self) -> str:
        return f"{self.root}index/"

    @property
    def tokens(self) -> str:
        """The repository's token document (`pywharf.tokens`: hashes, never tokens)."""
        return f"{self.index}.tokens"

    def file(self, project: str, filename: str) -> str:
        return f"{self.files}{project}/{filename}"

    def metadata(self, project: str, filename: str) -> str:
        return self.file(project, filename) + ".metadata"

    def manifest(self, project: str) -> str:
        return f"{self.index}{project}.json"

    def project_of_manifest(self, key: str) -> str | None:
        """The project whose manifest `key` is; None for any other key (the token document)."""
        name = key.removeprefix(self.index)
        if name == key or "/" in name or not name.endswith(".json") or key == self.tokens:
            return None
        return name.removesuffix(".json") or None

    def split_file(self, key: str) -> tuple[str, str] | None:
        """(project folder, filename) of a key under `files/`, or None."""
        rest = key.removeprefix(self.files)
        project, _, filename = rest.partition("/")
        if rest == key or not project or not filename or "/" in filename:
            return None
        return project, filename


@dataclass(frozen=True)
class Manifest:
    """One project's index: its files' records, and the tombstones of deleted files."""

    project: NormalizedName
    files: Mapping[str, FileRecord] = field(default_factory=dict)
    deleted: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    status: Status | None = None  # PEP 792; None: active, never set

    def with_file(self, record: FileRecord) -> Manifest:
        """The file listed (a re-upload after a delete takes its tombstone's place)."""
        deleted = {k: v for k, v in self.deleted.items() if k != record.filename}
        return replace(self, files={**self.files, record.filename: record}, deleted=deleted)

    def without_file(self, filename: str) -> Manifest:
        record = self.files.get(filename)
        if record is None:
            return self
        files = {k: v for k, v in self.files.items() if k != filename}
        stone = tombstone(filename, self.project, record.sha256)
        return replace(self, files=files, deleted={**self.deleted, filename: stone})

    def with_yank(self, filename: str, reason: str | None) -> Manifest:
        record = self.files[filename]
        return replace(self, files={**self.files, filename: record._replace(yanked=reason)})

    def with_status(self, status: Status) -> Manifest:
        return replace(self, status=None if status.cleared else status)

    def deleted_sha256(self, filename: str) -> str | None:
        sha256 = self.deleted.get(filename, {}).get("sha256")
        return sha256 if isinstance(sha256, str) else None

    def to_bytes(self) -> bytes:
        document = {
            "format": MANIFEST_FORMAT,
            "project": self.project,
            "files": [self.files[name].to_json() for name in sorted(self.files)],
            "deleted": [dict(self.deleted[name]) for name in sorted(self.deleted)],
        }
        if self.status is not None:
            document["status"] = {"status": self.status.status, "reason": self.status.reason}
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, project: str) -> Manifest:
        try:
            document = json.loads(data)
            files = [FileRecord.from_json(item) for item in document["files"]]
            deleted = [dict(item) for item in document.get("deleted", ())]
            names = [str(item["filename"]) for item in deleted]
            status = _status(document.get("status"), project)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StorageError(f"the manifest of {project!r} is malformed: {error!r}") from None
        return cls(
            NormalizedName(project),
            {record.filename: record for record in files},
            dict(zip(names, deleted)),
            status,
        )


def _status(value: Any, project: str) -> Status | None:
    if value is None:
        return None
    if value.get("status") not in STATUSES or not isinstance(
        value.get("reason"), (str, type(None))
    ):
        raise ValueError(f"status {value!r} is not a PEP 792 status")
    return Status(NormalizedName(project), value["status"], value["reason"])


def _tombstone_events(manifest: Manifest, skip: Mapping[str, Any]) -> list[Event]:
    events: list[Event] = []
    for name in sorted(manifest.deleted.keys() - skip.keys()):
        sha256 = manifest.deleted_sha256(name)
        if sha256:
            events.append(Delete(manifest.project, name, sha256))
    return events


def manifest_events(old: Manifest | None, new: Manifest | None) -> list[Event]:
    """What turns the index of `old` into that of `new` (None: no manifest)."""
    before = old.files if old else {}
    after = new.files if new else {}
    events = diff_events(before, after)
    if new is not None:  # tombstones of files this reader never saw listed
        seen = {e.filename: e for e in events if isinstance(e, Delete)}
        events += _tombstone_events(new, {**(old.deleted if old else {}), **seen})
    before_status = old.status if old else None
    after_status = new.status if new else None
    if after_status != before_status:
        project = (new or old).project  # type: ignore[union-attr]
        events.append(after_status or Status(project, ACTIVE))
    return events


def whole_events(manifest: Manifest) -> list[Event]:
    events: list[Event] = [Add(manifest.files[name]) for name in sorted(manifest.files)]
    events += _tombstone_events(manifest, {})
    return [*events, manifest.status] if manifest.status is not None else events


def object_metadata(record: FileRecord) -> dict[str, str]:
    """The record, as x-amz-meta-* headers of its object (values kept ASCII, as S3 needs)."""
    fields = {"sha256": record.sha256, "upload-time": repr(record.upload_time)}
    if record.requires_python is not None:
        fields["requires-python"] = quote(record.requires_python, safe="")
    if record.metadata_sha256 is not None:
        fields["metadata-sha256"] = record.metadata_sha256
    return fields


def record_from_head(
    filename: str, project: str, size: int, metadata: Mapping[str, str], modified: float
) -> FileRecord | None:
    """The record an object's metadata describes; None without a sha256 (stored by hand) or
    when the name is not a distribution of `project`."""
    sha256 = metadata.get("sha256", "")
    if PARTIAL_RECORD in metadata:
        return None  # stored while it arrived: only its sha256 was known then
    try:
        distribution = parse_filename(filename, project)
        upload_time = float(metadata.get("upload-time", modified or time.time()))
    except (PywharfError, ValueError):
        return None
    if len(sha256) != 64 or distribution.project != project:
        return None
    requires_python = metadata.get("requires-python")
    return FileRecord(
        filename=filename,
        project=distribution.project,
        version=distribution.version,
        sha256=sha256,
        size=size,
        upload_time=upload_time,
        requires_python=unquote(requires_python) if requires_python is not None else None,
        metadata_sha256=metadata.get("metadata-sha256") or None,
    )
