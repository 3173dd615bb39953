"""The GitHub layout as values: release bodies, index documents and what they list.

Pure functions over parsed TOML and GitHub's objects; `github.py` does the calls. The layout is
the original pywharf's (one release per file, tag = name = filename, the metadata as TOML in the
release body, an `index.toml` of `[[pkgs]]` entries whose `url` is the asset's API URL), plus
what we add where the original ignores it: asset ids per entry, `[[deleted]]` tombstones, and
our record fields as flat keys of the body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import tomli_w

from pywharf.backends.events import tombstone
from pywharf.clients.github_models import Asset
from pywharf.clients.github_models import Release
from pywharf.config import load_toml
from pywharf.dists import parse_filename
from pywharf.errors import DistributionExists
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.index import FileRecord
from pywharf.index import Status
from pywharf.index import status_from_json
from pywharf.remote_index import dump_index
from pywharf.remote_index import load_index

__all__ = [
    "IndexFile",
    "Location",
    "add_entry",
    "build_document",
    "content_type_of",
    "empty_index",
    "find_assets",
    "parse_body",
    "parse_document",
    "published_file",
    "read_document",
    "release_body",
    "remove_entry",
    "same_document",
    "set_status",
    "set_yank",
    "with_yank",
]

_ASSET_URL = re.compile(r"/releases/assets/(\d+)$")
_CONTENT_TYPES = (
    (".whl", "application/zip"),
    (".zip", "application/zip"),
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
)


def content_type_of(filename: str) -> str:
    """The media type an asset is uploaded with (the original sent application/zip for all)."""
    found = (kind for suffix, kind in _CONTENT_TYPES if filename.endswith(suffix))
    return next(found, "application/octet-stream")


@dataclass(frozen=True)
class Location:
    """Where a file is on GitHub: never derived from the filename, since GitHub renames."""

    asset_id: int
    url: str  # the asset's API URL: the original's `url`
    name: str  # GitHub's name for the asset
    metadata_asset_id: int | None = None

    def fields(self) -> dict[str, Any]:
        """The index entry's location keys (top level, where the original ignores extras)."""
        found: dict[str, Any] = {
            "url": self.url,
            "asset_id": self.asset_id,
            "asset_name": self.name,
        }
        if self.metadata_asset_id is not None:
            found["metadata_asset_id"] = self.metadata_asset_id
        return found


@dataclass
class IndexFile:
    """An index file (ours or the original's) and the files it lists."""

    document: dict[str, Any]  # the parsed TOML, entries as written
    mtime: int
    records: dict[str, FileRecord]
    locations: dict[str, Location]
    tombstones: dict[str, dict[str, Any]]  # filename -> `[[deleted]]` item
    statuses: list[Status]  # PEP 792, from `[[status]]`


# --- the index document --------------------------------------------------------------------------


def empty_index() -> IndexFile:
    """What a repository without an index file lists: nothing."""
    return IndexFile({"mtime": 0, "pkgs": []}, 0, {}, {}, {}, [])


def _entry_filename(entry: Mapping[str, Any]) -> str:
    return f"{entry.get('package')}.{entry.get('ext')}"


def parse_document(data: bytes, source: str) -> dict[str, Any]:
    try:
        return load_toml(data.decode("utf-8"), source)
    except (UnicodeDecodeError, PywharfError) as error:
        raise StorageError(f"{source}: unreadable: {error}") from None


def location_of(entry: Mapping[str, Any], filename: str) -> Location | None:
    """An entry's location: ours has asset ids; the original's only the asset's API `url`."""
    url = entry.get("url")
    if not isinstance(url, str):
        return None
    asset_id = entry.get("asset_id")
    if not isinstance(asset_id, int):
        found = _ASSET_URL.search(url)
        if found is None:
            return None
        asset_id = int(found.group(1))
    name = entry.get("asset_name")
    metadata_id = entry.get("metadata_asset_id")
    return Location(
        asset_id,
        url,
        name if isinstance(name, str) else filename,  # the original named assets exactly so
        metadata_id if isinstance(metadata_id, int) else None,
    )


def _tombstones(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for item in document.get("deleted") or ():
        if isinstance(item, dict) and isinstance(item.get("filename"), str):
            found[item["filename"]] = item
    return found


def _statuses(document: Mapping[str, Any]) -> list[Status]:
    """The `[[status]]` items (PEP 792): one per project that set one; malformed ones skipped."""
    found = {}
    for item in document.get("status") or ():
        try:
            status = status_from_json(item) if isinstance(item, dict) else None
        except PywharfError:
            continue
        if status is not None:
            found[status.project] = status
    return [found[name] for name in sorted(found)]


def set_status(document: dict[str, Any], status: Status) -> bool:
    """Set (or with "active" and no reason, clear) a project's `[[status]]`; False if so."""
    kept = {s.project: s for s in _statuses(document)}
    if kept.get(status.project) == (None if status.cleared else status):
        return False
    kept.pop(status.project, None)
    if not status.cleared:
        kept[status.project] = status
    _put_statuses(document, kept.values())
    return True


def _put_statuses(document: dict[str, Any], statuses: Any) -> None:
    items = [{k: v for k, v in s._asdict().items() if v is not None} for s in statuses]
    if items:
        document["status"] = sorted(items, key=lambda item: item["project"])
    else:
        document.pop("status", None)


def read_document(data: bytes, source: str) -> IndexFile:
    """The files an index file lists (entries we cannot download are left out)."""
    document = parse_document(data, source)
    mtime, records, entries = load_index(data, source)
    listed = IndexFile(document, mtime, {}, {}, {}, _statuses(document))
    for record, entry in zip(records, entries):
        location = location_of(entry, record.filename)
        if location is not None:
            listed.records[record.filename] = record
            listed.locations[record.filename] = location
    stones = _tombstones(document)
    listed.tombstones = {k: v for k, v in stones.items() if k not in listed.records}
    return listed


def _entry(record: FileRecord, location: Location) -> dict[str, Any]:
    """One `[[pkgs]]` entry, in exactly the format `dump_index` writes."""
    text = dump_index([record], 0, "github", {record.filename: location.fields()})
    entry: dict[str, Any] = load_toml(text.decode(), "entry")["pkgs"][0]
    return entry


def build_document(
    records: Mapping[str, tuple[FileRecord, Location]],
    tombstones: Mapping[str, Any],
    mtime: int,
    statuses: list[Status],
) -> dict[str, Any]:
    document: dict[str, Any] = {"mtime": mtime, "pkgs": []}
    document["pkgs"] = [_entry(*records[name]) for name in sorted(records)]
    if tombstones:
        document["deleted"] = [tombstones[name] for name in sorted(tombstones)]
    _put_statuses(document, statuses)
    return document


def _sort_entries(document: dict[str, Any]) -> None:
    document["pkgs"] = sorted(document.get("pkgs") or [], key=_entry_filename)


def add_entry(document: dict[str, Any], record: FileRecord, location: Location) -> bool:
    """Add (or replace) a file's entry and lift its tombstone; False if already so.

    A filename deleted with other bytes stays refused (DistributionExists), even for a server
    that has not synced the deletion yet.
    """
    stone = _tombstones(document).get(record.filename)
    if stone is not None and stone.get("sha256") != record.sha256:
        raise DistributionExists(record.filename)
    new = _entry(record, location)
    entries = document.get("pkgs") or []
    if new in entries and record.filename not in _tombstones(document):
        return False
    document["pkgs"] = [e for e in entries if _entry_filename(e) != record.filename] + [new]
    _sort_entries(document)
    _drop_tombstone(document, record.filename)
    return True


def _drop_tombstone(document: dict[str, Any], filename: str) -> None:
    kept = [t for t in _tombstones(document).values() if t["filename"] != filename]
    if kept:
        document["deleted"] = kept
    else:
        document.pop("deleted", None)


def set_yank(document: dict[str, Any], filename: str, reason: str | None) -> bool:
    for entry in document.get("pkgs") or []:
        if _entry_filename(entry) == filename:
            meta = entry.setdefault("meta", {})
            if meta.get("yanked") == reason:
                return False
            if reason is None:
                meta.pop("yanked", None)
            else:
                meta["yanked"] = reason
            return True
    raise StorageNotFound(f"{filename!r} is not in the remote index")


def remove_entry(document: dict[str, Any], project: str, filename: str) -> bool:
    """Remove a file's entry and leave a tombstone, so the name never takes other bytes."""
    entries = document.get("pkgs") or []
    gone = [e for e in entries if _entry_filename(e) == filename]
    if not gone:
        return False
    document["pkgs"] = [e for e in entries if _entry_filename(e) != filename]
    tombstones = _tombstones(document)
    origin = (gone[0].get("meta") or {}).get("origin")
    tombstones[filename] = tombstone(filename, project, str(gone[0].get("sha256")), origin)
    document["deleted"] = [tombstones[name] for name in sorted(tombstones)]
    return True


def same_document(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Whether two index documents list the same (their `mtime` aside)."""
    return {k: v for k, v in left.items() if k != "mtime"} == {
        k: v for k, v in right.items() if k != "mtime"
    }


# --- release bodies -------------------------------------------------------------------------------


def release_body(form: Mapping[str, str], record: FileRecord) -> str:
    """The original's release body (the form fields plus `distrib` and `sha256`), plus ours.

    Flat strings and numbers only: the original reads the body as a str -> str mapping.
    """
    meta: dict[str, Any] = {**form, "distrib": record.project, "sha256": record.sha256,
                            "size": record.size, "upload_time": record.upload_time}  # fmt: skip
    meta.pop("requires_python", None)  # the artifact's value beats the form's
    optional = {"requires_python": record.requires_python,
                "metadata_sha256": record.metadata_sha256, "yanked": record.yanked,
                "provenance": record.provenance}  # fmt: skip
    meta.update({k: v for k, v in optional.items() if v is not None})
    return tomli_w.dumps(meta)


def parse_body(body: str) -> dict[str, Any] | None:
    try:
        return load_toml(body, "release body")
    except PywharfError:
        return None


def with_yank(body: str, reason: str | None) -> str | None:
    """The release body with the yank set (None: un-yanked); None if it needs no change."""
    meta = parse_body(body)
    if meta is None or meta.get("yanked") == reason:
        return None
    meta.pop("yanked", None)
    meta.update({} if reason is None else {"yanked": reason})
    return tomli_w.dumps(meta)


def _text(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return value if isinstance(value, str) else None


def _digest(asset: Asset | None) -> str | None:
    """GitHub's own sha256 of an asset (answers since 2025); None when it gives none."""
    if asset is None or not asset.digest or not asset.digest.startswith("sha256:"):
        return None
    return asset.digest.removeprefix("sha256:").lower()


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _upload_time(recorded: Any, published_at: Any) -> float:
    """Ours from the body; the original's release only has GitHub's publishing time."""
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return float(recorded)
    return _epoch(published_at) or 0.0


def find_assets(release: Release, known: Location | None) -> tuple[Asset | None, Asset | None]:
    """The release's file asset and metadata asset: by our map, then by name."""
    by_id = {a.id: a for a in release.assets}
    asset = by_id.get(known.asset_id) if known else None
    asset = asset or release.asset_named(release.tag_name)
    if asset is None:  # renamed by GitHub: our releases hold the file and its .metadata only
        others = [a for a in release.assets if not a.name.endswith(".metadata")]
        asset = others[0] if len(others) == 1 else None
    if asset is None:
        return None, None
    metadata = by_id.get(known.metadata_asset_id) if known and known.metadata_asset_id else None
    metadata = metadata or release.asset_named(asset.name + ".metadata")
    return asset, metadata


def published_file(
    release: Release, published_at: Any = None, known: Location | None = None
) -> tuple[FileRecord, Location] | None:
    """The file a published release holds, if its body and assets describe one."""
    meta = parse_body(release.body)
    if meta is None or _text(meta, "distrib") is None or _text(meta, "sha256") is None:
        return None
    try:
        distribution = parse_filename(release.tag_name, project=_text(meta, "distrib"))
    except PywharfError:
        return None
    asset, metadata = find_assets(release, known)
    if asset is None:
        return None
    upload_time = meta.get("upload_time")
    requires_python = _text(meta, "requires_python")
    metadata_sha256 = (_digest(metadata) or _text(meta, "metadata_sha256")) if metadata else None
    record = FileRecord(
        filename=release.tag_name,
        project=distribution.project,
        version=distribution.version,
        sha256=_digest(asset) or str(meta["sha256"]).lower(),
        size=asset.size,
        upload_time=_upload_time(upload_time, published_at),
        requires_python=requires_python if requires_python not in (None, "", "UNKNOWN") else None,
        metadata_sha256=metadata_sha256,
        yanked=_text(meta, "yanked"),
        provenance=_text(meta, "provenance"),
    )
    location = Location(asset.id, asset.url, asset.name, metadata.id if metadata else None)
    return record, location
