"""The remote index file (`index.toml`): the original's format, read in full, written lean.

The original wrote `mtime` and one `[[pkgs]]` table per file with every upload form field in
`[pkgs.meta]`, README bodies included (533 KB for 42 files). We read all of that and write only
what an index needs; our own fields ride in `[pkgs.meta]`, where the original ignores them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

from pywharf.config import load_toml
from pywharf.dists import SDIST_SUFFIXES
from pywharf.dists import canonicalize_name
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.flat_toml import dump_flat_toml
from pywharf.index import FileRecord

__all__ = ["dump_index", "index_parts", "load_index"]

_ENTRIES_PER_PART = 1000
# Longest first (`tar.gz` before `gz`), sorted once: per file it was 4 s of a million-file rebuild.
_EXTENSIONS = sorted(("whl", *(s.lstrip(".") for s in SDIST_SUFFIXES)), key=len, reverse=True)


def _split_extension(filename: str) -> tuple[str, str]:
    for extension in _EXTENSIONS:
        if filename.endswith("." + extension):
            return filename[: -len(extension) - 1], extension
    raise StorageError(f"{filename!r} has no known extension")


def _entry(record: FileRecord, backend_type: str, location: dict[str, Any]) -> dict[str, Any]:
    package, extension = _split_extension(record.filename)
    meta: dict[str, Any] = {
        "name": record.project,
        "version": record.version,
        "distrib": record.project,
        "sha256": record.sha256,
        "size": record.size,
        "upload_time": record.upload_time,
    }
    if record.requires_python:
        meta["requires_python"] = record.requires_python
    if record.metadata_sha256:
        meta["metadata_sha256"] = record.metadata_sha256
    if record.yanked is not None:
        meta["yanked"] = record.yanked
    if record.origin is not None:
        meta["origin"] = record.origin
    if record.stored_time is not None:
        meta["stored_time"] = record.stored_time
    if record.provenance is not None:
        meta["provenance"] = record.provenance  # PEP 740, as JSON text
    entry = {"type": backend_type, "distrib": record.project, "package": package,
             "ext": extension, "sha256": record.sha256, **location.get(record.filename, {}),
             "meta": meta}  # fmt: skip
    return entry


def dump_index(
    records: Iterable[FileRecord],
    mtime: int,
    backend_type: str,
    locations: dict[str, Any] | None = None,
) -> bytes:
    """The lean index; `locations` adds the original's `url` / `package_path` per filename."""
    return b"".join(index_parts(records, mtime, backend_type, locations))


def index_parts(
    records: Iterable[FileRecord],
    mtime: int,
    backend_type: str,
    locations: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """`dump_index` a thousand files at a time: a million files' index is 541 MB of text, and
    its tables and text held at once took 2.5 GB (issue 16). The parts join to the one
    document's text, in which each `[[pkgs]]` table follows a blank line."""
    entries = (_entry(r, backend_type, locations or {}) for r in records)
    batch = list(itertools.islice(entries, _ENTRIES_PER_PART))
    if not batch:  # tomli_w writes `pkgs = []`
        yield dump_flat_toml({"mtime": mtime, "pkgs": []}).encode()
        return
    yield dump_flat_toml({"mtime": mtime}).encode()
    while batch:
        yield b"\n" + dump_flat_toml({"pkgs": batch}).encode()
        batch = list(itertools.islice(entries, _ENTRIES_PER_PART))


def _record(entry: dict[str, Any], default_time: float) -> FileRecord:
    meta = entry.get("meta") or {}
    filename = f"{entry['package']}.{entry['ext']}"
    distribution = parse_filename(filename, project=entry.get("distrib"))
    project = canonicalize_name(entry.get("distrib") or distribution.project)
    requires_python = meta.get("requires_python") or None
    return FileRecord(
        filename=filename,
        project=project,
        version=distribution.version,
        sha256=str(entry["sha256"]),
        size=int(meta.get("size", 0)),
        upload_time=float(meta.get("upload_time", default_time)),
        requires_python=requires_python if requires_python != "UNKNOWN" else None,
        metadata_sha256=meta.get("metadata_sha256"),
        yanked=meta.get("yanked"),
        origin=meta.get("origin"),
        stored_time=meta.get("stored_time"),
        provenance=meta.get("provenance") if isinstance(meta.get("provenance"), str) else None,
    )


def load_index(data: bytes, source: str) -> tuple[int, list[FileRecord], list[dict[str, Any]]]:
    """(mtime, records, raw entries): entries the original wrote but we cannot read are skipped."""
    try:
        document = load_toml(data.decode("utf-8"), source)
    except UnicodeDecodeError as error:
        raise StorageError(f"{source}: not UTF-8: {error}") from None
    except PywharfError as error:
        raise StorageError(str(error)) from None
    mtime = int(document.get("mtime", 0))
    records, entries = [], []
    for entry in document.get("pkgs", []):
        try:
            records.append(_record(entry, float(mtime)))
            entries.append(entry)
        except (PywharfError, KeyError, TypeError, ValueError):
            continue  # the original indexed only what it could read; so do we
    return mtime, records, entries
