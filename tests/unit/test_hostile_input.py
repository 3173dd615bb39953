"""Hostile input of issue 9: each case got a 500, a hang or unbounded memory before its fix.

Wheel archives are built here byte by byte (APPNOTE.TXT), since `zipfile` cannot write the
lies an attacker writes: sizes that do not match, 200,000 entries without 115 MiB of memory.
"""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from factory import make_sdist
from factory import make_wheel
from support import Live
from support_upload import app_get
from support_upload import app_upload
from support_upload import raw_connect
from support_upload import read_response

from pywharf.dists import MAX_STORED_FILENAME_BYTES
from pywharf.dists import normalize_project_name
from pywharf.dists import parse_filename
from pywharf.errors import BadRequest
from pywharf.errors import InvalidFilename
from pywharf.errors import RangeNotSatisfiable
from pywharf.http import parse_basic_auth
from pywharf.http import parse_byte_count
from pywharf.http import parse_range
from pywharf.metadata import MAX_CENTRAL_DIRECTORY_BYTES
from pywharf.metadata import MAX_METADATA_BYTES
from pywharf.metadata import MAX_WHEEL_ENTRIES
from pywharf.metadata import read_wheel_metadata

T = TypeVar("T")
MiB = 1024 * 1024
DEMO = parse_filename("demo-1.0-py3-none-any.whl")
META = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n\n"
# Reading METADATA may hold it once, plus a bytearray's growth and one read buffer.
METADATA_BUDGET = MAX_METADATA_BYTES + MAX_METADATA_BYTES // 4 + MiB
# Walking the central directory holds one record at a time, whatever the entry count.
DIRECTORY_BUDGET = MiB


def peak_allocation(function: Callable[[], T]) -> tuple[T | BaseException, int]:
    """What `function` returned or raised, and the peak bytes Python allocated meanwhile."""
    tracemalloc.start()
    try:
        result: T | BaseException = function()
    except Exception as error:
        result = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


# --- wheels built by hand ---------------------------------------------------------------------


def zip_archive(
    name: bytes,
    packed: bytes,
    *,
    method: int = 8,
    crc: int,
    size: int,
    padding_entries: int = 0,
    directory_size: int | None = None,
) -> bytes:
    """One member (after `padding_entries` empty ones) with whatever sizes the caller claims."""
    out, directory = io.BytesIO(), io.BytesIO()

    def add(member: bytes, data: bytes, method: int, crc: int, size: int) -> None:
        offset = out.tell()
        out.write(struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, method, 0, 0x21,
                              crc, len(data), size, len(member), 0) + member + data)  # fmt: skip
        directory.write(struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, method,
                                    0, 0x21, crc, len(data), size, len(member), 0, 0, 0, 0, 0,
                                    offset) + member)  # fmt: skip

    for index in range(padding_entries):
        add(b"demo/m%06d.py" % index, b"", 0, 0, 0)
    add(name, packed, method, crc, size)
    start, count = out.tell(), padding_entries + 1
    out.write(directory.getvalue())
    declared = len(directory.getvalue()) if directory_size is None else directory_size
    if count >= 0xFFFF:  # zip64 end record and locator, as zipfile writes them
        record = out.tell()
        out.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count,
                              declared, start))  # fmt: skip
        out.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, record, 1))
    short = min(count, 0xFFFF)
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, short, short, declared, start, 0))
    return out.getvalue()


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def deflated_zeros(total: int) -> bytes:
    """A raw deflate stream of `total` zero bytes, made a MiB at a time (a few KiB a MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(total // MiB)]
    return b"".join([*parts, compressor.flush()])


def honest(metadata: bytes, **options: int) -> bytes:
    return zip_archive(
        b"demo-1.0.dist-info/METADATA",
        deflated(metadata),
        crc=zlib.crc32(metadata),
        size=len(metadata),
        **options,
    )


def read(tmp_path: Path, archive: bytes) -> tuple[object, int]:
    path = tmp_path / DEMO.filename
    path.write_bytes(archive)
    return peak_allocation(lambda: read_wheel_metadata(path, DEMO))


def test_a_hand_built_wheel_reads(tmp_path: Path) -> None:
    result, _ = read(tmp_path, honest(META))
    assert getattr(result, "raw", None) == META


def test_a_zip_bomb_with_lying_sizes_is_refused_within_the_budget(tmp_path: Path) -> None:
    # 128 MiB of zeros in 130 KiB, declared as the 47 bytes of a small METADATA.
    bomb = zip_archive(
        b"demo-1.0.dist-info/METADATA",
        deflated_zeros(128 * MiB),
        crc=zlib.crc32(META),
        size=len(META),
    )
    result, peak = read(tmp_path, bomb)
    assert isinstance(result, BadRequest), result
    assert "inflates past" in str(result)
    assert peak < METADATA_BUDGET, peak


def test_a_metadata_declared_over_the_limit_is_refused_before_inflating(tmp_path: Path) -> None:
    archive = zip_archive(
        b"demo-1.0.dist-info/METADATA", deflated(META), crc=0, size=MAX_METADATA_BYTES + 1
    )
    result, peak = read(tmp_path, archive)
    assert isinstance(result, BadRequest) and "declares" in str(result), result
    assert peak < DIRECTORY_BUDGET, peak


def test_a_stored_metadata_with_lying_size_is_refused(tmp_path: Path) -> None:
    archive = zip_archive(
        b"demo-1.0.dist-info/METADATA", META, method=0, crc=zlib.crc32(META), size=10
    )
    result, _ = read(tmp_path, archive)
    assert isinstance(result, BadRequest) and "declared size" in str(result), result


def test_a_wheel_with_200000_entries_is_refused_without_reading_them(tmp_path: Path) -> None:
    result, peak = read(tmp_path, honest(META, padding_entries=200_000))
    assert isinstance(result, BadRequest), result
    assert f"at most {MAX_WHEEL_ENTRIES}" in str(result)
    assert peak < DIRECTORY_BUDGET, peak


def test_entries_up_to_the_limit_are_walked_in_constant_memory(tmp_path: Path) -> None:
    result, peak = read(tmp_path, honest(META, padding_entries=MAX_WHEEL_ENTRIES - 1))
    assert getattr(result, "raw", None) == META, result
    assert peak < DIRECTORY_BUDGET, peak  # zipfile: about 600 bytes per entry (58 MiB here)


def test_a_central_directory_over_the_limit_is_refused_from_the_end_record(
    tmp_path: Path,
) -> None:
    result, _ = read(tmp_path, honest(META, directory_size=MAX_CENTRAL_DIRECTORY_BYTES + 1))
    assert isinstance(result, BadRequest) and "central directory" in str(result), result


def test_millions_of_header_lines_cost_no_more_than_the_metadata(tmp_path: Path) -> None:
    # email.parser made an object per line: these 15 MiB cost 540 MiB.
    metadata = META[:-1] + b"X: y\n" * (15 * MiB // 5) + b"\nbody\n"
    result, peak = read(tmp_path, honest(metadata))
    assert getattr(result, "name", None) == "demo", result
    assert peak < METADATA_BUDGET, peak


FIELDS = {
    "folded and padded": (
        b"Name:  demo\nVersion: 1.0\nRequires-Python: >=3.8,\n  <4\n\n", ">=3.8, <4"
    ),
    "case-insensitive, CRLF": (
        b"name: demo\r\nVERSION: 1.0\r\nrequires-python: >=3\r\n\r\n", ">=3"
    ),
    "first value wins": (b"Name: demo\nVersion: 1.0\nName: other\n\n", None),
    "the body is not read": (b"Name: demo\nVersion: 1.0\n\nRequires-Python: >=3\n", None),
}  # fmt: skip


@pytest.mark.parametrize(("metadata", "requires_python"), FIELDS.values(), ids=list(FIELDS))
def test_metadata_fields(tmp_path: Path, metadata: bytes, requires_python: str | None) -> None:
    result, _ = read(tmp_path, honest(metadata))
    assert getattr(result, "name", None) == "demo", result
    assert getattr(result, "requires_python", "missing") == requires_python


def test_non_utf8_metadata_is_a_400_naming_the_rule(live_server: Live) -> None:
    assert live_server.app is not None
    archive = honest(b"Metadata-Version: 2.1\nName: d\xffmo\nVersion: 1.0\n\n")
    response = app_upload(live_server.app, DEMO.filename, archive)
    assert response.status == 400, response.reason
    assert "UTF-8" in (response.reason or "")


# --- header and field parsing: ASCII digits only (RFC 9110 1*DIGIT) --------------------------

BYTE_COUNTS = {
    "12": 12,
    "007": 7,
    "0": 0,
    "9" * 5000: 10**18,  # int() refuses over 4300 digits; capped, never converted
    "\u00b2": None,  # SUPERSCRIPT TWO: isdigit() is True, int() raises
    "\u0661\u0662": None,  # Arabic-Indic digits: int() reads them as 12
    "1_000": None,  # int() reads 1000
    " 1": None,
    "+1": None,
    "": None,
}


@pytest.mark.parametrize(
    ("text", "count"), BYTE_COUNTS.items(), ids=[ascii(t[:8]) for t in BYTE_COUNTS]
)
def test_byte_counts_are_ascii_digits(text: str, count: int | None) -> None:
    assert parse_byte_count(text) == count


@pytest.mark.parametrize(
    "header", ["bytes=\u00b2-", "bytes=-\u00b2", "bytes=0-\u00b2", "bytes=\u0661-", "bytes=1_0-"]
)
def test_a_range_with_non_ascii_digits_is_ignored(header: str) -> None:
    assert parse_range(header, 10) is None  # RFC 9110 14.2: an invalid Range is ignored


def test_ranges_with_huge_numbers() -> None:
    assert parse_range("bytes=0-" + "9" * 5000, 10) == (0, 9)
    assert parse_range("bytes=-" + "9" * 5000, 10) == (0, 9)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=" + "9" * 5000 + "-", 10)


def test_a_range_with_non_ascii_digits_gets_the_whole_file(
    live_server: Live, tmp_path: Path
) -> None:
    assert live_server.app is not None
    sdist = make_sdist(tmp_path, "demo", "1.0")
    assert app_upload(live_server.app, sdist).status == 200
    response = app_get(
        live_server.app, f"/simple/demo/{sdist.name}", headers={"range": "bytes=\u00b2-"}
    )
    assert response.status == 200 and response.length == sdist.stat().st_size


# Heads are Latin-1: b"\xb2" arrives as '²', which str.isdigit() took for a digit.
@pytest.mark.parametrize("length", ["\u00b2", "1\u00b3", "1_0", "9" * 5000])
def test_an_odd_content_length_is_answered_not_dropped(live_server: Live, length: str) -> None:
    with raw_connect(live_server, timeout=5) as sock:
        head = f"POST /simple/ HTTP/1.1\r\nContent-Length: {length}\r\n\r\n"
        sock.sendall(head.encode("latin-1"))
        status, _, body = read_response(sock)
    # Not a digit: 400; 5000 digits: a length over any limit, refused before the body.
    assert status in (400, 401, 413), (status, body)
    assert b"Traceback" not in body


# --- Basic credentials that are not ASCII base64 or not UTF-8 are no credentials ---------------

BAD_CREDENTIALS = [
    "Basic \u00e9t\u00e9",
    "Basic \u00b2\u00b2\u00b2\u00b2",
    "Basic " + base64.b64encode(b"local:\xff\xfe").decode(),
    "Basic bG9j\u0430WwK",  # a Cyrillic 'a' inside otherwise valid base64
]


@pytest.mark.parametrize("header", BAD_CREDENTIALS, ids=[ascii(h) for h in BAD_CREDENTIALS])
def test_undecodable_basic_credentials_are_none(header: str) -> None:
    assert parse_basic_auth(header) is None


@pytest.mark.parametrize("header", BAD_CREDENTIALS, ids=[ascii(h) for h in BAD_CREDENTIALS])
def test_undecodable_basic_credentials_get_401(live_server: Live, header: str) -> None:
    assert live_server.app is not None
    response = app_get(live_server.app, "/simple/", headers={"authorization": header})
    assert response.status == 401


# --- names and filenames: ASCII, and short enough for our sidecar files ----------------------


@pytest.mark.parametrize("name", ["\u212aelvin", "\ufb01le", "\u01c5emo", "dem\u00f6"])
def test_non_ascii_project_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest, match="ASCII"):
        normalize_project_name(name)


@pytest.mark.parametrize(
    "filename",
    ["\u212aelvin-1.0.tar.gz", "\u212aelvin-1.0-py3-none-any.whl", "demo-1.0\u2024tar.gz",
     "demo-\u0661.0.tar.gz"],
)  # fmt: skip
def test_non_ascii_filenames_are_refused_naming_the_rule(filename: str) -> None:
    with pytest.raises(InvalidFilename, match="not ASCII") as caught:
        parse_filename(filename)
    assert str(caught.value).isascii()  # reason phrases are Latin-1: a '?' once hid the name


def test_a_kelvin_sign_upload_is_refused_and_nothing_stored(
    live_server: Live, tmp_path: Path
) -> None:
    assert live_server.app is not None
    sdist = make_sdist(tmp_path, "kelvin", "1.0")
    data = sdist.read_bytes()
    response = app_upload(live_server.app, "\u212aelvin-1.0.tar.gz", data)
    assert response.status == 400 and "ASCII" in (response.reason or ""), response.reason
    # The same bytes under an ASCII filename but a look-alike `name` field.
    response = app_upload(live_server.app, sdist.name, data, name="\u212aelvin")
    assert response.status == 400 and "ASCII" in (response.reason or ""), response.reason
    assert app_get(live_server.app, "/simple/kelvin/").status == 404


def _long_wheel(tmp_path: Path, total_bytes: int) -> Path:
    """A real wheel whose filename is exactly `total_bytes` long (the name pads it)."""
    base = len("-1.0-py3-none-any.whl")
    return make_wheel(tmp_path, "x" * (total_bytes - base), "1.0")


def test_the_longest_storable_filename_is_stored(live_server: Live, tmp_path: Path) -> None:
    assert live_server.app is not None
    wheel = _long_wheel(tmp_path, MAX_STORED_FILENAME_BYTES)
    assert len(wheel.name) == MAX_STORED_FILENAME_BYTES
    response = app_upload(live_server.app, wheel)
    assert response.status == 200, response.reason
    project = parse_filename(wheel.name).project
    assert app_get(live_server.app, f"/simple/{project}/{wheel.name}.metadata").status == 200


@pytest.mark.parametrize("extra", [1, 255 - MAX_STORED_FILENAME_BYTES - 15])
def test_an_overlong_filename_is_a_400_up_front(
    live_server: Live, tmp_path: Path, extra: int
) -> None:
    assert live_server.app is not None
    wheel = _long_wheel(tmp_path, MAX_STORED_FILENAME_BYTES + extra)  # 240 bytes got a 502
    response = app_upload(live_server.app, wheel)
    assert response.status == 400, response.reason
    assert f"at most {MAX_STORED_FILENAME_BYTES} bytes" in (response.reason or "")
