"""Core metadata taken out of a wheel (PEP 658): the `METADATA` file, byte for byte."""

from __future__ import annotations

import zipfile
from email.parser import BytesHeaderParser
from pathlib import Path

from packaging.utils import canonicalize_name

from pywharf.dists import Distribution
from pywharf.dists import same_version
from pywharf.errors import BadRequest

__all__ = ["CoreMetadata", "read_wheel_metadata"]

# METADATA is a few KiB; a bigger one is a zip bomb or not a wheel.
MAX_METADATA_BYTES = 16 * 1024 * 1024


class CoreMetadata:
    """The raw METADATA and the fields the index uses from it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        headers = BytesHeaderParser().parsebytes(raw)
        self.name = headers.get("Name", "")
        self.version = headers.get("Version", "")
        self.requires_python = headers.get("Requires-Python")


def _metadata_member(archive: zipfile.ZipFile, distribution: Distribution) -> zipfile.ZipInfo:
    # Binary distribution format: exactly one top-level `{name}-{version}.dist-info/`.
    candidates = [
        info
        for info in archive.infolist()
        if info.filename.count("/") == 1 and info.filename.endswith(".dist-info/METADATA")
    ]
    if len(candidates) != 1:
        raise BadRequest(
            f"{distribution.filename!r} must hold exactly one *.dist-info/METADATA, "
            f"found {len(candidates)}"
        )
    return candidates[0]


def read_wheel_metadata(path: Path, distribution: Distribution) -> CoreMetadata:
    """Read and check a wheel's METADATA; a malformed archive is refused with the reason."""
    try:
        with zipfile.ZipFile(path) as archive:
            member = _metadata_member(archive, distribution)
            if member.file_size > MAX_METADATA_BYTES:
                raise BadRequest(f"{distribution.filename!r}: METADATA is implausibly large")
            raw = archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError) as error:
        raise BadRequest(f"{distribution.filename!r} is not a valid wheel: {error}") from None
    metadata = CoreMetadata(raw)
    if canonicalize_name(metadata.name) != distribution.project or not same_version(
        metadata.version, distribution.version
    ):
        raise BadRequest(
            f"{distribution.filename!r}: its METADATA names {metadata.name!r} "
            f"{metadata.version!r}, not the filename's project and version"
        )
    return metadata
