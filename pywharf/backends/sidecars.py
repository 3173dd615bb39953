"""A stored file's sidecars, in the original pywharf's format, and the records read from them.

<filename>.meta      TOML: the upload form fields, `distrib` and `sha256` (the original's),
                     and under `pywharf` the index record, so a rescan rebuilds it exactly
<filename>.metadata  PEP 658: a wheel's METADATA, byte for byte
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import tomli_w

from pywharf.backends.atomic import write_atomically
from pywharf.backends.hashing import sha256_of_file
from pywharf.config import load_toml
from pywharf.dists import Distribution
from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.flat_toml import parse_flat_toml
from pywharf.index import FileRecord
from pywharf.metadata import read_wheel_metadata

__all__ = ["Sidecars"]


class Sidecars:
    """Reads and writes sidecars; writes go through leased temporary files in `temporary_dir`."""

    def __init__(self, temporary_dir: Path) -> None:
        self._temporary_dir = temporary_dir

    def write(
        self, destination: Path, record: FileRecord, form: dict[str, str], metadata: bytes | None
    ) -> None:
        target = destination.with_name(destination.name + ".metadata")
        if metadata is not None:
            write_atomically(target, metadata, self._temporary_dir)
        elif record.metadata_sha256 is not None and not target.exists():
            self._extract_metadata(destination, parse_filename(record.filename), target)
        self.write_meta(destination, record, form)

    def write_meta(self, destination: Path, record: FileRecord, form: dict[str, str]) -> None:
        # The original's sidecar: the form fields plus `distrib` and `sha256`; ours adds the
        # record's own fields so a rescan rebuilds exactly what the journal said.
        meta: dict[str, Any] = {**form, "distrib": record.project, "sha256": record.sha256}
        meta["pywharf"] = record.to_json()
        path = destination.with_name(destination.name + ".meta")
        write_atomically(path, tomli_w.dumps(meta).encode(), self._temporary_dir)

    # Paths are strings or Paths: `update_index` reads a sidecar per stored file, and the Paths
    # and text-mode files of that were about a quarter of its CPU (100,000 files; issue 16).

    def read_meta(self, path: str | Path) -> dict[str, Any] | None:
        return _parsed(_meta_text(path), path)

    def record(self, path: str | Path, meta: dict[str, Any] | None) -> FileRecord | None:
        """The record our sidecar `meta` holds, if it still describes the file's bytes."""
        ours = (meta or {}).get("pywharf")
        try:
            record = FileRecord.from_json(ours) if isinstance(ours, dict) else None
            return record if record and record.size == os.stat(path).st_size else None
        except (OSError, PywharfError):
            return None

    def record_from_disk(self, path: str | Path) -> FileRecord | None:
        """The record a stored file's sidecars describe; rebuilt from the bytes if they lie."""
        text = _meta_text(path)
        # Our table is the sidecar's last (tomli_w writes tables after plain values), and
        # when its lines are plain it is read alone: the form before it (a licence can run to
        # pages, which the general parser reads) is parsed only if the record is not usable.
        ours = text.rfind(_OUR_TABLE) if text else -1
        if text and ours >= 0:
            record = self.record(path, parse_flat_toml(text[ours + 1 :]))
            if record is not None:
                return record
        meta = _parsed(text, path)
        record = self.record(path, meta)
        if record is not None:
            return record
        try:
            status = os.stat(path)
        except OSError:
            return None
        return self._record_from_bytes(Path(path), meta or {}, status.st_mtime, status.st_size)

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
        write_atomically(target, core.raw, self._temporary_dir)


_OUR_TABLE = "\n[pywharf]\n"


def _meta_text(path: str | Path) -> str | None:
    try:
        with open(f"{os.fspath(path)}.meta", "rb") as file:
            return file.read().decode()
    except (OSError, UnicodeDecodeError):
        return None


def _parsed(text: str | None, path: str | Path) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        return parse_flat_toml(text) or load_toml(text, f"{os.fspath(path)}.meta")
    except PywharfError:
        return None
