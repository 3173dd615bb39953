"""Core metadata taken out of a wheel (PEP 658): the `METADATA` file, byte for byte.

The archive is read by hand, not with `zipfile`: `ZipFile` builds a `ZipInfo` for every entry
(a 200,000-entry wheel cost 115 MiB) and trusts the declared sizes (a METADATA that inflates
to gigabytes drove the server to 2 GiB). Here the central directory is walked one record at a
time after its size and entry count are checked in the end record, and METADATA is inflated
with a bounded decompressor: memory stays within MAX_METADATA_BYTES plus a read buffer.
"""

from __future__ import annotations

import codecs
import io
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from packaging.utils import canonicalize_name

from pywharf.dists import Distribution
from pywharf.dists import same_version
from pywharf.errors import BadRequest

__all__ = [
    "MAX_CENTRAL_DIRECTORY_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_WHEEL_ENTRIES",
    "CoreMetadata",
    "read_wheel_metadata",
    "wheel_metadata",
]

KiB, MiB = 1024, 1024 * 1024
# METADATA is a few KiB (a long README makes it a few hundred); a bigger one is a zip bomb.
MAX_METADATA_BYTES = 16 * MiB
# The largest wheels we know of hold tens of thousands of files; 200,000 was a memory attack.
MAX_WHEEL_ENTRIES = 100_000
# 46 bytes a record plus its name: 100,000 entries with 200-byte paths fit.
MAX_CENTRAL_DIRECTORY_BYTES = 32 * MiB
_READ_BYTES = 64 * KiB

# APPNOTE.TXT (the ZIP specification) 4.3.16, 4.3.15, 4.3.14, 4.3.12, 4.3.7 and 4.5.3.
_END = struct.Struct("<4s4H2LH")
_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ENTRY = struct.Struct("<4s4B4HL2L5H2L")
_ENTRY_SIGNATURE = b"PK\x01\x02"
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ZIP64_EXTRA_ID = 0x0001
_MAX_COMMENT = 0xFFFF
_STORED, _DEFLATED = 0, 8
_ENCRYPTED = 0x1
# Deflate adds at most 5 bytes per 16 KiB stored block: a packed METADATA beyond this is a lie.
_MAX_PACKED_METADATA_BYTES = MAX_METADATA_BYTES + 64 * KiB


class CoreMetadata:
    """The raw METADATA and the fields the index uses from it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        _check_utf8(raw)
        fields = _header_fields(raw)
        self.name = fields.get("name", "")
        self.version = fields.get("version", "")
        self.requires_python = fields.get("requires-python")


def _check_utf8(raw: bytes) -> None:
    """Core metadata spec: METADATA is UTF-8. Checked a piece at a time, never copied whole."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(raw)
    try:
        for start in range(0, len(raw), _READ_BYTES):
            decoder.decode(view[start : start + _READ_BYTES])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise BadRequest("METADATA is not UTF-8 text (core metadata spec)") from None


# Core metadata is RFC 822 headers; only these three are read, from the bytes. `email.parser`
# built an object per header line: 15 MiB of short lines cost 540 MiB. A folded value goes on
# over lines that start with whitespace; the header block ends at the first empty line.
_FIELD = re.compile(
    rb"^(name|version|requires-python):(.*(?:\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE
)
_HEADER_END = re.compile(rb"\n\r?\n")


def _header_fields(raw: bytes) -> dict[str, str]:
    """The first value of each field we use (lower-case keys), unfolded and stripped."""
    end = _HEADER_END.search(raw)
    fields: dict[str, str] = {}
    for match in _FIELD.finditer(raw, 0, end.start() if end else len(raw)):
        lines = match.group(2).decode("utf-8").split("\n")
        fields.setdefault(match.group(1).decode().lower(), " ".join(map(str.strip, lines)).strip())
    return fields


class _Member:
    """What the central directory says of METADATA (sizes from its zip64 extra if needed)."""

    def __init__(self, record: tuple[int, ...], extra: bytes) -> None:
        flags, method, crc, packed, size, offset = (record[i] for i in (5, 6, 9, 10, 11, 18))
        wide = iter(_zip64_values(extra))
        self.size = next(wide, size) if size == 0xFFFFFFFF else size  # APPNOTE 4.5.3 order
        self.packed = next(wide, packed) if packed == 0xFFFFFFFF else packed
        self.offset = next(wide, offset) if offset == 0xFFFFFFFF else offset
        self.flags, self.method, self.crc = flags, method, crc


def _zip64_values(extra: bytes) -> list[int]:
    """The 8-byte fields of a zip64 extended-information extra field (APPNOTE 4.5.3)."""
    position = 0
    while position + 4 <= len(extra):
        header_id, length = struct.unpack_from("<2H", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if header_id == _ZIP64_EXTRA_ID:
            return [value for (value,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
        position += 4 + length
    return []


def _exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise BadRequest("the archive is truncated")
    return data


def _directory(file: BinaryIO) -> tuple[int, int, int]:
    """(entries, size, offset) of the central directory, checked against our limits."""
    archive_size = file.seek(0, 2)
    tail_size = min(archive_size, _END.size + _MAX_COMMENT)
    file.seek(archive_size - tail_size)
    tail = _exactly(file, tail_size)
    position = tail.rfind(_END_SIGNATURE)
    if position < 0 or position + _END.size > len(tail):
        raise BadRequest("no end of central directory record: not a zip archive")
    end = _END.unpack_from(tail, position)
    entries, size, offset = end[4], end[5], end[6]
    end_offset = archive_size - tail_size + position
    if entries == 0xFFFF or 0xFFFFFFFF in (size, offset):
        entries, size, offset, end_offset = _zip64_directory(file, end_offset)
    if entries > MAX_WHEEL_ENTRIES:
        raise BadRequest(f"the archive has {entries} entries; at most {MAX_WHEEL_ENTRIES} allowed")
    if size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise BadRequest(
            f"the central directory is {size} bytes; at most {MAX_CENTRAL_DIRECTORY_BYTES} allowed"
        )
    if offset + size != end_offset:  # the directory sits right before its end record
        raise BadRequest("the central directory is not where the end record puts it")
    return entries, size, offset


def _zip64_directory(file: BinaryIO, end_offset: int) -> tuple[int, int, int, int]:
    if end_offset < _ZIP64_LOCATOR.size:
        raise BadRequest("a zip64 archive without its zip64 end locator")
    file.seek(end_offset - _ZIP64_LOCATOR.size)  # APPNOTE 4.3.15: right before the end record
    signature, _disk, record_offset, _disks = _ZIP64_LOCATOR.unpack(
        _exactly(file, _ZIP64_LOCATOR.size)
    )
    if signature != _ZIP64_LOCATOR_SIGNATURE or record_offset >= end_offset:
        raise BadRequest("a zip64 archive without its zip64 end locator")
    file.seek(record_offset)
    record = _ZIP64_END.unpack(_exactly(file, _ZIP64_END.size))
    if record[0] != _ZIP64_END_SIGNATURE:
        raise BadRequest("the zip64 end of central directory record is missing")
    return record[7], record[8], record[9], record_offset


def _metadata_member(file: BinaryIO) -> _Member:
    """Binary distribution format: exactly one top-level `{name}-{version}.dist-info/METADATA`."""
    entries, size, offset = _directory(file)
    file.seek(offset)
    found: list[_Member] = []
    for _ in range(entries):
        record = _ENTRY.unpack(_exactly(file, _ENTRY.size))
        if record[0] != _ENTRY_SIGNATURE:
            raise BadRequest("a central directory record is corrupt")
        name = _exactly(file, record[12])
        extra = _exactly(file, record[13])
        file.seek(record[14], 1)  # the comment
        if name.endswith(b".dist-info/METADATA") and name.count(b"/") == 1:
            found.append(_Member(record, extra))
    if file.tell() != offset + size:
        raise BadRequest("the central directory's size does not match its records")
    if len(found) != 1:
        raise BadRequest(f"it must hold exactly one *.dist-info/METADATA, found {len(found)}")
    return found[0]


def _inflate(file: BinaryIO, member: _Member) -> bytes:
    """The member's bytes, never more than MAX_METADATA_BYTES whatever its headers claim."""
    if member.size > MAX_METADATA_BYTES or member.packed > _MAX_PACKED_METADATA_BYTES:
        raise BadRequest(f"METADATA declares {member.size} bytes; at most {MAX_METADATA_BYTES}")
    if member.flags & _ENCRYPTED or member.method not in (_STORED, _DEFLATED):
        raise BadRequest(f"METADATA is encrypted or compressed by method {member.method}")
    file.seek(member.offset)
    local = _LOCAL.unpack(_exactly(file, _LOCAL.size))
    if local[0] != _LOCAL_SIGNATURE:
        raise BadRequest("METADATA's local header is corrupt")
    file.seek(local[10] + local[11], 1)  # its name and extra field
    inflater = zlib.decompressobj(-zlib.MAX_WBITS) if member.method == _DEFLATED else None
    out = io.BytesIO()  # getvalue() hands over its buffer: no second copy of METADATA
    remaining = member.packed
    while remaining:
        chunk = _exactly(file, min(_READ_BYTES, remaining))
        remaining -= len(chunk)
        while chunk:
            # One byte over the limit proves a lie; a read buffer at a time bounds each step.
            budget = min(_READ_BYTES, MAX_METADATA_BYTES + 1 - out.tell())
            piece = inflater.decompress(chunk, budget) if inflater else chunk[:budget]
            chunk = inflater.unconsumed_tail if inflater else chunk[budget:]
            out.write(piece)
            if out.tell() > MAX_METADATA_BYTES:
                raise BadRequest(f"METADATA inflates past {MAX_METADATA_BYTES} bytes")
    raw = out.getvalue()
    if len(raw) != member.size or zlib.crc32(raw) != member.crc:
        raise BadRequest("METADATA does not match its declared size and CRC")
    return raw


def read_wheel_metadata(path: Path, distribution: Distribution) -> CoreMetadata:
    """Read and check a wheel's METADATA; a malformed archive is refused with the reason."""
    try:
        with path.open("rb") as file:
            return wheel_metadata(file, distribution)
    except OSError as error:
        raise BadRequest(f"{distribution.filename!r} is not a valid wheel: {error}") from None


def wheel_metadata(file: BinaryIO, distribution: Distribution) -> CoreMetadata:
    """The METADATA of the wheel in `file` (seekable), checked against its filename."""
    try:
        metadata = CoreMetadata(_inflate(file, _metadata_member(file)))
    except (OSError, zlib.error, struct.error, ValueError) as error:  # BadRequest included
        raise BadRequest(f"{distribution.filename!r} is not a valid wheel: {error}") from None
    if canonicalize_name(metadata.name) != distribution.project or not same_version(
        metadata.version, distribution.version
    ):
        raise BadRequest(  # !a: the names come from the archive, reason phrases are Latin-1
            f"{distribution.filename!r}: its METADATA names {metadata.name!a} "
            f"{metadata.version!a}, not the filename's project and version"
        )
    return metadata
