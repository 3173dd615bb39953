"""The streaming multipart/form-data decoder: tables fed whole, byte by byte, split everywhere."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pywharf.errors import MalformedRequest
from pywharf.errors import PayloadTooLarge
from pywharf.errors import PywharfError
from pywharf.errors import UnsupportedMediaType
from pywharf.multipart import END
from pywharf.multipart import NEED_DATA
from pywharf.multipart import UPLOAD_LIMITS
from pywharf.multipart import Data
from pywharf.multipart import Field
from pywharf.multipart import File
from pywharf.multipart import Limits
from pywharf.multipart import MultipartDecoder
from pywharf.multipart import MultipartEvent
from pywharf.multipart import parse_boundary

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "captures"
BOUNDARY = b"xYzZY"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def lines(*parts: str | bytes) -> bytes:
    """Join lines with CRLF, as every client does."""
    return b"\r\n".join(part.encode() if isinstance(part, str) else part for part in parts)


def decode(
    chunks: list[bytes], boundary: bytes = BOUNDARY, limits: Limits = UPLOAD_LIMITS
) -> list[MultipartEvent]:
    """All events of a body fed as `chunks`, with each file's Data joined into one."""
    decoder = MultipartDecoder(boundary, limits)
    events: list[MultipartEvent] = []
    for chunk in [*chunks, None]:
        if chunk is None:
            decoder.end()
        else:
            decoder.feed(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            events.append(event)
    assert decoder.next_event() is NEED_DATA
    return coalesce(events)


def coalesce(events: list[MultipartEvent]) -> list[MultipartEvent]:
    """Join each file part's Data events, checking `more` is False on exactly the last one."""
    joined: list[MultipartEvent] = []
    for event in events:
        previous = joined[-1] if joined else None
        if isinstance(previous, Data) and previous.more:
            assert isinstance(event, Data), f"{event!r} inside a file part"
            joined[-1] = Data(previous.data + event.data, event.more)
        else:
            assert isinstance(event, Data) == isinstance(previous, File), event
            joined.append(event)
    return joined


def splits(body: bytes) -> list[list[bytes]]:
    """The body whole, byte by byte, and in two chunks at every offset."""
    return [
        [body],
        [body[i : i + 1] for i in range(len(body))],
        *([body[:i], body[i:]] for i in range(1, len(body))),
    ]


def decode_every_way(
    body: bytes, boundary: bytes = BOUNDARY, limits: Limits = UPLOAD_LIMITS
) -> list[MultipartEvent]:
    """Decode every split of `body`; all must agree. Returns the events."""
    whole = decode([body], boundary, limits)
    for chunks in splits(body):
        assert decode(chunks, boundary, limits) == whole, [len(chunk) for chunk in chunks]
    return whole


def error_every_way(body: bytes, limits: Limits = UPLOAD_LIMITS) -> PywharfError:
    """The error every split of `body` raises; all must agree on type and message."""
    found: set[tuple[type[PywharfError], str]] = set()
    for chunks in splits(body):
        with pytest.raises(PywharfError) as info:
            decode(chunks, limits=limits)
        found.add((type(info.value), str(info.value)))
    assert len(found) == 1, found
    return info.value


def field(name: str, value: str, disposition: str | None = None) -> bytes:
    return lines(
        "--xYzZY", disposition or f'Content-Disposition: form-data; name="{name}"', "", value
    )


CLOSE = b"--xYzZY--"

VALID = {
    "one field": (lines(field("a", "1"), CLOSE), [Field("a", "1"), END]),
    "no parts": (lines(CLOSE, ""), [END]),
    "empty value": (lines(field("a", ""), CLOSE), [Field("a", ""), END]),
    "value with line breaks": (
        lines(field("d", "x\r\ny\n\r\n--xYz"), CLOSE),
        [Field("d", "x\r\ny\n\r\n--xYz"), END],
    ),
    "utf-8 value": (lines(field("s", "naïve ☃"), CLOSE), [Field("s", "naïve ☃"), END]),
    "repeated names each an event": (
        lines(field("classifiers", "A"), field("classifiers", "B"), CLOSE),
        [Field("classifiers", "A"), Field("classifiers", "B"), END],
    ),
    "preamble and epilogue ignored": (
        lines("preamble --xYzZ", "--xYzZ-Y", field("a", "1"), CLOSE, "epilogue", "--xYzZY"),
        [Field("a", "1"), END],
    ),
    "preamble starting with CRLF": (lines("", field("a", "1"), CLOSE), [Field("a", "1"), END]),
    "close without trailing CRLF or with padding": (
        lines(field("a", "1"), b"--xYzZY--  "),
        [Field("a", "1"), END],
    ),
    "transport padding after boundary": (
        lines(b"--xYzZY \t", 'Content-Disposition: form-data; name="a"', "", "1", CLOSE),
        [Field("a", "1"), END],
    ),
    "header names and type case-insensitive": (
        lines(field("a", "1", 'CONTENT-disposition: Form-Data; NAME="a"'), CLOSE),
        [Field("a", "1"), END],
    ),
    "unquoted token name, spaces, trailing semicolon": (
        lines(field("a", "1", "Content-Disposition:form-data ;name = a ;"), CLOSE),
        [Field("a", "1"), END],
    ),
    "extra part headers ignored": (
        lines(
            "--xYzZY",
            "Content-Type: text/plain; charset=utf-8",
            'Content-Disposition: form-data; name="a"',
            "Content-Transfer-Encoding: 8bit",
            "",
            "1",
            CLOSE,
        ),
        [Field("a", "1"), END],
    ),
    "folded header": (
        lines("--xYzZY", "Content-Disposition: form-data;", '\tname="a"', "", "1", CLOSE),
        [Field("a", "1"), END],
    ),
    "bare LF in part headers": (
        b'--xYzZY\nContent-Disposition: form-data; name="a"\n\n1\r\n' + CLOSE,
        [Field("a", "1"), END],
    ),
    "file with content type": (
        lines(
            "--xYzZY",
            'Content-Disposition: form-data; name="content"; filename="demo-1.0.tar.gz"',
            "Content-Type: Application/Gzip; x=1",
            "",
            b"\x1f\x8b\r\n\r\n-",
            CLOSE,
        ),
        [
            File("content", "demo-1.0.tar.gz", "application/gzip"),
            Data(b"\x1f\x8b\r\n\r\n-", False),
            END,
        ],
    ),
    "file without content type is octet-stream": (
        lines(field("c", "data", 'Content-Disposition: form-data; name="c"; filename="f"'), CLOSE),
        [File("c", "f", "application/octet-stream"), Data(b"data", False), END],
    ),
    "empty file and empty filename": (
        lines(field("c", "", 'Content-Disposition: form-data; name="c"; filename=""'), CLOSE),
        [File("c", "", "application/octet-stream"), Data(b"", False), END],
    ),
    "file bytes that nearly match the delimiter": (
        lines(
            field("c", "", 'Content-Disposition: form-data; name="c"; filename="f"'),
            b"\r\n--xYzZ\r\r\n--xYz--xYzZY\n--xYzZY\r",
            CLOSE,
        ),
        [
            File("c", "f", "application/octet-stream"),
            Data(b"\r\n\r\n--xYzZ\r\r\n--xYz--xYzZY\n--xYzZY\r", False),
            END,
        ],
    ),
    "quoted-pair escapes": (
        lines(
            field("c", "", r'Content-Disposition: form-data; name="a\"b"; filename="x\\y;z"'), CLOSE
        ),
        [File('a"b', "x\\y;z", "application/octet-stream"), Data(b"", False), END],
    ),
    "raw UTF-8 filename (RFC 7578 4.2)": (
        lines(field("c", "", 'Content-Disposition: form-data; name="c"; filename="ü.whl"'), CLOSE),
        [File("c", "ü.whl", "application/octet-stream"), Data(b"", False), END],
    ),
    "filename* wins over filename (RFC 6266 4.3)": (
        lines(
            field(
                "c",
                "",
                "Content-Disposition: form-data; name=c; filename*=UTF-8''na%C3%AFve%20x.whl;"
                ' filename="naive.whl"',
            ),
            CLOSE,
        ),
        [File("c", "naïve x.whl", "application/octet-stream"), Data(b"", False), END],
    ),
    "filename* in ISO-8859-1 with a language": (
        lines(
            field("c", "", "Content-Disposition: form-data; name=c; filename*=iso-8859-1'en'%E9"),
            CLOSE,
        ),
        [File("c", "é", "application/octet-stream"), Data(b"", False), END],
    ),
    "fields after a file": (
        lines(
            field("c", "PK", 'Content-Disposition: form-data; name="c"; filename="f.whl"'),
            field(
                "gpg_signature", "", 'Content-Disposition: form-data; name="g"; filename="f.asc"'
            ),
            field("a", "1"),
            CLOSE,
        ),
        [
            File("c", "f.whl", "application/octet-stream"),
            Data(b"PK", False),
            File("g", "f.asc", "application/octet-stream"),
            Data(b"", False),
            Field("a", "1"),
            END,
        ],
    ),
}


@pytest.mark.parametrize(("body", "expected"), VALID.values(), ids=VALID.keys())
def test_valid_bodies(body: bytes, expected: list[MultipartEvent]) -> None:
    assert decode_every_way(body) == expected


MALFORMED = {
    "empty body": (b"", "ends before the first boundary"),
    "no boundary at all": (b"hello\r\n--xYzZ", "ends before the first boundary"),
    "cut inside a field": (field("a", "12"), "ends inside text field 'a'"),
    "cut inside a file": (
        field("c", "PK\r\n--xYz", 'Content-Disposition: form-data; name="c"; filename="f"'),
        "ends inside file 'c'",
    ),
    "no closing --": (lines(field("a", "1"), b"--xYzZY"), "after a boundary, without the closing"),
    "cut in part headers": (lines(field("a", "1"), b"--xYzZY", b""), "ends inside part headers"),
    "cut before the blank line": (
        lines("--xYzZY", "Content-Disposition: form-data; name=a"),
        "inside part headers",
    ),
    "garbage after boundary": (
        lines(b"--xYzZYz", 'Content-Disposition: form-data; name="a"', "", "1", CLOSE),
        "Garbage after",
    ),
    "boundary-like line in the preamble": (
        lines("--xYzZY-not", field("a", "1"), CLOSE),
        "Garbage after",
    ),
    "garbage after padding": (lines(field("a", "1"), b"--xYzZY x", CLOSE), "Garbage after"),
    "no Content-Disposition": (
        lines("--xYzZY", "Content-Type: text/plain", "", "1", CLOSE),
        "no Content-Disposition",
    ),
    "no headers at all": (lines("--xYzZY", "", "1", CLOSE), "no Content-Disposition"),
    "no name": (
        lines(field("a", "1", "Content-Disposition: form-data; filename=x"), CLOSE),
        "no name",
    ),
    "not form-data": (
        lines(field("a", "1", 'Content-Disposition: attachment; name="a"'), CLOSE),
        "not form-data",
    ),
    "header line without colon": (
        lines(field("a", "1", "Content-Disposition form-data"), CLOSE),
        "Bad multipart part header",
    ),
    "space before colon": (
        lines(field("a", "1", 'Content-Disposition : form-data; name="a"'), CLOSE),
        "Bad multipart part header",
    ),
    "folded first line": (
        lines("--xYzZY", " x", 'Content-Disposition: form-data; name="a"', "", "1", CLOSE),
        "Bad multipart part header",
    ),
    "repeated header": (
        lines(
            "--xYzZY",
            'Content-Disposition: form-data; name="a"',
            'content-disposition: form-data; name="b"',
            "",
            "1",
            CLOSE,
        ),
        "Repeated multipart part header",
    ),
    "repeated parameter": (
        lines(field("a", "1", 'Content-Disposition: form-data; name="a"; NAME=b'), CLOSE),
        "Repeated parameter",
    ),
    "unterminated quoted string": (
        lines(field("a", "1", 'Content-Disposition: form-data; name="a'), CLOSE),
        "Bad parameters",
    ),
    "parameter without value": (
        lines(field("a", "1", "Content-Disposition: form-data; name"), CLOSE),
        "Bad parameters",
    ),
    "junk between parameters": (
        lines(field("a", "1", 'Content-Disposition: form-data; name="a" x; y=1'), CLOSE),
        "Bad parameters",
    ),
    "filename* unknown charset": (
        lines(field("a", "", "Content-Disposition: form-data; name=a; filename*=koi8-r''x"), CLOSE),
        "Bad extended",
    ),
    "filename* without quotes": (
        lines(field("a", "", "Content-Disposition: form-data; name=a; filename*=x.whl"), CLOSE),
        "Bad extended",
    ),
    "filename* bad percent": (
        lines(
            field("a", "", "Content-Disposition: form-data; name=a; filename*=UTF-8''%zz"), CLOSE
        ),
        "Bad extended",
    ),
    "filename* bad UTF-8": (
        lines(
            field("a", "", "Content-Disposition: form-data; name=a; filename*=UTF-8''%FF"), CLOSE
        ),
        "Bad utf-8",
    ),
    "bad UTF-8 in field": (
        lines(
            field("a", "1"),
            b"--xYzZY",
            b'Content-Disposition: form-data; name="b"',
            b"",
            b"\xff",
            CLOSE,
        ),
        "Text field 'b' is not valid UTF-8",
    ),
    "bad UTF-8 in headers": (
        lines(b"--xYzZY", b'Content-Disposition: form-data; name="\xff"', b"", b"1", CLOSE),
        "headers are not valid UTF-8",
    ),
    "transfer encoding": (
        lines(
            "--xYzZY",
            'Content-Disposition: form-data; name="a"',
            "Content-Transfer-Encoding: base64",
            "",
            "MQ==",
            CLOSE,
        ),
        "Content-Transfer-Encoding 'base64'",
    ),
}


@pytest.mark.parametrize(("body", "reason"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bodies(body: bytes, reason: str) -> None:
    error = error_every_way(body)
    assert type(error) is MalformedRequest
    assert reason in str(error)
    assert "\n" not in str(error)


SMALL = Limits(
    max_parts=3,
    max_part_header_bytes=100,
    max_field_bytes=5,
    max_fields_total_bytes=8,
    max_file_bytes=6,
)
FILE_HEADER = 'Content-Disposition: form-data; name="c"; filename="f"'

WITHIN_LIMITS = {
    "three parts": lines(field("a", "1"), field("b", "2"), field("c", "3"), CLOSE),
    "field of 5 bytes": lines(field("a", "12345"), CLOSE),
    "fields of 8 bytes in total": lines(field("a", "1234"), field("b", "5678"), CLOSE),
    "file of 6 bytes": lines(field("c", "123456", FILE_HEADER), CLOSE),
    "part headers of 100 bytes": lines(
        "--xYzZY", "Content-Disposition: form-data; name=a;" + " " * 55, "", "1", CLOSE
    ),
}


@pytest.mark.parametrize("body", WITHIN_LIMITS.values(), ids=WITHIN_LIMITS.keys())
def test_at_the_limits(body: bytes) -> None:
    assert decode_every_way(body, limits=SMALL)[-1] is END


OVER_LIMITS = {
    "four parts": (
        lines(field("a", "1"), field("b", "2"), field("c", "3"), field("d", "4"), CLOSE),
        "more than 3 parts",
    ),
    "field of 6 bytes": (lines(field("a", "123456"), CLOSE), "Text field 'a' is over 5 bytes"),
    "unterminated long field": (field("a", "123456"), "Text field 'a' is over 5 bytes"),
    "fields of 9 bytes": (
        lines(field("a", "1234"), field("b", "56789"), CLOSE),
        "Text fields are over 8 bytes in total",
    ),
    "file of 7 bytes": (lines(field("c", "1234567", FILE_HEADER), CLOSE), "File 'c' is over 6"),
    "file of 8 bytes, a delimiter's prefix at its end": (
        lines(field("c", "1\r\n--xYz", FILE_HEADER), CLOSE),
        "File 'c' is over 6",
    ),
    "part headers of 101 bytes": (
        lines("--xYzZY", "Content-Disposition: form-data; name=a;" + " " * 56, "", "1", CLOSE),
        "part headers are over 100 bytes",
    ),
    "endless part headers": (b"--xYzZY\r\n" + b"x" * 200, "part headers are over 100 bytes"),
}


@pytest.mark.parametrize(("body", "reason"), OVER_LIMITS.values(), ids=OVER_LIMITS.keys())
def test_over_the_limits(body: bytes, reason: str) -> None:
    error = error_every_way(body, limits=SMALL)
    assert type(error) is PayloadTooLarge
    assert reason in str(error)


def test_messages_quote_client_text_short_and_ascii() -> None:
    """Messages become HTTP reason phrases, which must be Latin-1 and short."""
    limits = dataclasses.replace(SMALL, max_part_header_bytes=1000)
    error = error_every_way(lines(field("ü" * 100, "123456"), CLOSE), limits=limits)
    assert str(error).startswith(r"Text field '\xfc\xfc")
    assert str(error).isascii()
    assert len(str(error)) < 100


def test_default_limit_message_names_field_and_size() -> None:
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(lines("--xYzZY", 'Content-Disposition: form-data; name="description"', "", ""))
    with pytest.raises(PayloadTooLarge, match=r"^Text field 'description' is over 4 MiB$"):
        for _ in range(5):
            decoder.feed(b"x" * (1 << 20))
            assert decoder.next_event() is NEED_DATA


def test_file_bytes_stream_out_with_flat_memory() -> None:
    """Every fed byte of a file is emitted before the next feed, but for a delimiter's worth."""
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(lines(field("c", "", FILE_HEADER)))
    assert decoder.next_event() == File("c", "f", "application/octet-stream")
    chunk = b"\r\n--xYz" + bytes(range(256)) * 1024 + b"\r\n--xYzZ"  # ends in a delimiter prefix
    fed = emitted = 0
    for _ in range(64):
        decoder.feed(chunk)
        fed += len(chunk)
        while (event := decoder.next_event()) is not NEED_DATA:
            assert isinstance(event, Data)
            assert event.more
            emitted += len(event.data)
        assert fed - emitted <= len(b"\r\n--xYzZY")
    decoder.feed(b"\r\n--xYzZY--")
    assert decoder.next_event() == Data(chunk[-8:], False)
    assert decoder.next_event() is END


def test_a_file_chunk_without_a_delimiter_leaves_as_fed() -> None:
    """Inside a file, a fed chunk that holds no delimiter is the event's very bytes object (no
    copy); bytes at its end that may begin a delimiter wait for the next chunk."""
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(b"--xYzZY\r\n" + FILE_HEADER.encode() + b"\r\n\r\n")
    assert decoder.next_event() == File("c", "f", "application/octet-stream")
    assert decoder.next_event() is NEED_DATA
    chunks = [bytes(range(256)) * 64, b"\r" + b"x" * 1000, b"x" * 999 + b"\r\n--xYz"]
    for chunk in chunks[:2]:
        decoder.feed(chunk)
        event = decoder.next_event()
        assert isinstance(event, Data)
        assert event.data is chunk
        assert decoder.next_event() is NEED_DATA
    decoder.feed(chunks[2])
    assert decoder.next_event() == Data(b"x" * 999, True)
    assert decoder.next_event() is NEED_DATA
    after = b"--xYzZ" + b"y" * 100  # with the bytes held back: no delimiter
    decoder.feed(after)
    assert decoder.next_event() == Data(b"\r\n--xYz", True)
    event = decoder.next_event()
    assert isinstance(event, Data)
    assert event.data is after
    decoder.feed(b"\r\n--xYz")
    assert decoder.next_event() is NEED_DATA
    decoder.feed(b"\r\n--xYzZY--\r\n")
    assert decoder.next_event() == Data(b"\r\n--xYz", False)
    assert decoder.next_event() is END


@pytest.mark.parametrize("size", [100, 101])
def test_bytes_held_back_then_passed_on_count_toward_the_file_limit(size: int) -> None:
    head = b"--xYzZY\r\n" + FILE_HEADER.encode() + b"\r\n\r\n"
    content = b"x" * 60 + b"\r\n--xY" + b"z" * (size - 66)  # the first chunk ends held back
    body = head + content + b"\r\n--xYzZY--\r\n"
    limits = dataclasses.replace(UPLOAD_LIMITS, max_file_bytes=100)
    chunks = [head, content[:66], body[len(head) + 66 :]]
    if size > 100:
        with pytest.raises(PayloadTooLarge, match="over 100 bytes"):
            decode(chunks, limits=limits)
    else:
        assert decode(chunks, limits=limits)[1] == Data(content, False)


def test_end_is_followed_by_need_data_and_epilogue_is_dropped() -> None:
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(lines(CLOSE, "epilogue"))
    assert decoder.next_event() is END
    decoder.feed(b"more epilogue \xff" * 100)
    decoder.end()
    assert [decoder.next_event() for _ in range(3)] == [NEED_DATA] * 3


def test_errors_are_sticky() -> None:
    decoder = MultipartDecoder(BOUNDARY)
    decoder.feed(b"--xYzZY!\r\n")
    with pytest.raises(MalformedRequest, match="Garbage"):
        decoder.next_event()
    decoder.feed(lines(field("a", "1"), CLOSE))
    with pytest.raises(MalformedRequest, match="Garbage"):
        decoder.next_event()


def test_repr_of_sentinels() -> None:
    assert (repr(END), repr(NEED_DATA)) == ("END", "NEED_DATA")


BOUNDARIES = {
    "twine": (
        "multipart/form-data; boundary=1c2d5061793b49d594c8c9d9346a6a4d",
        b"1c2d5061793b49d594c8c9d9346a6a4d",
    ),
    "uv": ("multipart/form-data; boundary=b991e034-0a41760f", b"b991e034-0a41760f"),
    "quoted with space": ('multipart/form-data; boundary="a b:c"', b"a b:c"),
    "quoted-pair": (r'multipart/form-data; boundary="a\"b"', None),
    "type case-insensitive, more parameters": (
        "Multipart/Form-Data ; charset=utf-8; BOUNDARY=x",
        b"x",
    ),
    "70 characters": ("multipart/form-data; boundary=" + "a" * 70, b"a" * 70),
    "all bchars": ('multipart/form-data; boundary="0aZ\'()+_,-./:=? ?"', b"0aZ'()+_,-./:=? ?"),
}


@pytest.mark.parametrize(("header", "boundary"), BOUNDARIES.values(), ids=BOUNDARIES.keys())
def test_parse_boundary(header: str, boundary: bytes | None) -> None:
    if boundary is None:
        with pytest.raises(MalformedRequest, match="Invalid multipart boundary"):
            parse_boundary(header)
    else:
        assert parse_boundary(header) == boundary


BAD_CONTENT_TYPES = {
    "missing": (None, UnsupportedMediaType),
    "json": ("application/json", UnsupportedMediaType),
    "urlencoded": ("application/x-www-form-urlencoded; boundary=x", UnsupportedMediaType),
    "mixed": ("multipart/mixed; boundary=x", UnsupportedMediaType),
    "no boundary": ("multipart/form-data", MalformedRequest),
    "empty boundary": ("multipart/form-data; boundary=", MalformedRequest),
    "empty quoted boundary": ('multipart/form-data; boundary=""', MalformedRequest),
    "71 characters": ("multipart/form-data; boundary=" + "a" * 71, MalformedRequest),
    "trailing space": ('multipart/form-data; boundary="ab "', MalformedRequest),
    "bad character": ("multipart/form-data; boundary=a*b", MalformedRequest),
    "non-ASCII": ("multipart/form-data; boundary=é", MalformedRequest),
    "unterminated quote": ('multipart/form-data; boundary="ab', MalformedRequest),
    "repeated boundary": ("multipart/form-data; boundary=a; boundary=b", MalformedRequest),
}


@pytest.mark.parametrize(
    ("header", "error"), BAD_CONTENT_TYPES.values(), ids=BAD_CONTENT_TYPES.keys()
)
def test_parse_boundary_rejects(header: str | None, error: type[PywharfError]) -> None:
    with pytest.raises(error) as info:
        parse_boundary(header)
    assert type(info.value) is error


# Golden bodies: real requests recorded by tests/data/captures/capture.py.
CAPTURED = {
    "twine-wheel": ("bdist_wheel", "py3", "capture_demo-1.0-py3-none-any.whl"),
    "twine-sdist": ("sdist", "source", "capture_demo-1.0.tar.gz"),
    "uv-wheel": ("bdist_wheel", "py3", "capture_demo-1.0-py3-none-any.whl"),
    "uv-sdist": ("sdist", "source", "capture_demo-1.0.tar.gz"),
}


@pytest.mark.parametrize(("stem", "expected"), CAPTURED.items(), ids=CAPTURED.keys())
def test_captured_uploads(stem: str, expected: tuple[str, str, str]) -> None:
    filetype, pyversion, filename = expected
    headers = dict(json.loads((CAPTURES / f"{stem}.json").read_text())["headers"])
    body = (CAPTURES / f"{stem}.body").read_bytes()
    assert int(headers["Content-Length"]) == len(body)
    events = decode_every_way(body, parse_boundary(headers["Content-Type"]))
    fields = {event.name: event.value for event in events if isinstance(event, Field)}
    files = [event for event in events if isinstance(event, File)]
    # twine labels the file; uv sends no Content-Type on it, so the RFC 7578 default applies.
    assert files == [File("content", filename, "application/octet-stream")]
    content = events[events.index(files[0]) + 1]
    assert isinstance(content, Data)
    assert events[-1] is END
    assert fields[":action"] == "file_upload"
    assert fields["protocol_version"] == "1"
    assert (fields["name"], fields["version"], fields["metadata_version"]) == (
        "capture-demo",
        "1.0",
        "2.1",
    )
    assert (fields["filetype"], fields["pyversion"]) == (filetype, pyversion)
    assert fields["requires_python"] == ">=3.9"
    assert fields["description"] == "Long description.\n"
    assert fields["sha256_digest"] == hashlib.sha256(content.data).hexdigest()
    assert fields["blake2_256_digest"] == hashlib.blake2b(content.data, digest_size=32).hexdigest()
    if filetype == "sdist":
        with tarfile.open(fileobj=io.BytesIO(content.data)) as archive:
            assert "capture_demo-1.0/PKG-INFO" in archive.getnames()
    else:
        with zipfile.ZipFile(io.BytesIO(content.data)) as archive:
            assert "capture_demo-1.0.dist-info/METADATA" in archive.namelist()


@pytest.mark.parametrize("stem", CAPTURED.keys())
def test_captured_uploads_cut_short(stem: str) -> None:
    """A body cut anywhere before its closing `--` is malformed, never silently short."""
    body = (CAPTURES / f"{stem}.body").read_bytes()
    boundary = parse_boundary(
        dict(json.loads((CAPTURES / f"{stem}.json").read_text())["headers"])["Content-Type"]
    )
    assert body.endswith(b"--\r\n")
    for cut in range(len(body) - 2):
        with pytest.raises(MalformedRequest, match=r"^Unterminated multipart body"):
            decode([body[:cut]], boundary)
    assert decode([body[:-2]], boundary)[-1] is END


def told_lengths(body: bytes, boundary: bytes, cut: int) -> list[int]:
    """`size_if_last` at each File event of `body`, fed in two pieces cut at `cut`."""
    decoder = MultipartDecoder(boundary)
    told = []
    for chunk, unread in ((body[:cut], len(body) - cut), (body[cut:], 0)):
        decoder.feed(chunk)
        while (event := decoder.next_event()) is not NEED_DATA and event is not END:
            if isinstance(event, File):
                told.append(decoder.size_if_last(unread))
    return told


@pytest.mark.parametrize("stem", CAPTURED.keys())
def test_the_file_length_is_told_at_its_start_for_twine_and_uv(stem: str) -> None:
    """twine and uv send the file last and end the body with `--` CRLF: its length is known at
    its first byte (an S3 upload sends it as one PUT), wherever the body was cut."""
    body = (CAPTURES / f"{stem}.body").read_bytes()
    boundary = boundary_of(body)
    content = next(e for e in decode([body], boundary) if isinstance(e, Data))
    for cut in range(0, len(body) + 1, 7):
        assert told_lengths(body, boundary, cut) == [len(content.data)], cut


def test_the_file_length_told_is_only_a_guess_when_a_part_follows() -> None:
    file = lines("--xYzZY", 'Content-Disposition: form-data; name="f"; filename="x"', "", "data")
    body = lines(file, field("b", "2"), CLOSE, "")
    assert told_lengths(body, BOUNDARY, len(body)) != [4]


GOLDEN = [(CAPTURES / f"{stem}.body").read_bytes() for stem in CAPTURED] + [
    body for body, _ in VALID.values()
]


def decode_anything(
    body: bytes, boundary: bytes, cuts: list[int], limits: Limits = UPLOAD_LIMITS
) -> None:
    """Decode `body` cut at `cuts`; only PywharfError may escape."""
    chunks = [body[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(body)])]
    with contextlib.suppress(PywharfError):
        decode(chunks, boundary, limits)


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_fuzz_random_bytes(body: bytes, cuts: list[int]) -> None:
    decode_anything(body, BOUNDARY, sorted(cut for cut in cuts if cut <= len(body)))


def boundary_of(body: bytes) -> bytes:
    return body[2 : body.index(b"\r\n")].strip() if body.startswith(b"--") else BOUNDARY


@FUZZ
@given(
    st.sampled_from(GOLDEN),
    st.lists(
        st.tuples(
            st.integers(0, 4000),
            st.sampled_from(["flip", "insert", "delete", "cut"]),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.integers(0, 4000), max_size=4),
)
def test_fuzz_mutated_bodies(
    body: bytes, mutations: list[tuple[int, str, bytes]], cuts: list[int]
) -> None:
    boundary = boundary_of(body)
    mutated = bytearray(body)
    for offset, kind, data in mutations:
        at = offset % (len(mutated) + 1)
        if kind == "flip":
            mutated[at : at + len(data)] = data
        elif kind == "insert":
            mutated[at:at] = data
        elif kind == "delete":
            del mutated[at : at + len(data)]
        else:
            del mutated[at:]
    tight = Limits(
        max_parts=8,
        max_part_header_bytes=120,
        max_field_bytes=64,
        max_fields_total_bytes=400,
        max_file_bytes=2000,
    )
    for limits in (UPLOAD_LIMITS, tight):
        decode_anything(
            bytes(mutated), boundary, sorted(cut for cut in cuts if cut <= len(mutated)), limits
        )


NAME_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
# File bytes rich in delimiter prefixes, the bytes a decoder must hold back and then release.
NEAR_DELIMITER = st.binary(max_size=60).map(lambda data: data.replace(b"Q", b"\r\n--xYzZ"))
PART = st.one_of(
    st.tuples(st.just("field"), NAME_TEXT, st.text(max_size=20)),
    st.tuples(st.just("file"), NAME_TEXT, NAME_TEXT, NEAR_DELIMITER),
)


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.slow
@FUZZ
@given(
    st.lists(PART, max_size=5), st.binary(max_size=20), st.lists(st.integers(0, 1000), max_size=4)
)
def test_fuzz_round_trip(parts: list[tuple[object, ...]], epilogue: bytes, cuts: list[int]) -> None:
    """Any body a correct client could send decodes to what it encodes, however it is cut."""
    body = bytearray(b"preamble\r\n")
    expected: list[MultipartEvent] = []
    for kind, name, *rest in parts:
        assert isinstance(name, str)
        disposition = f"Content-Disposition: form-data; name={quoted(name)}"
        if kind == "field":
            (value,) = rest
            assert isinstance(value, str)
            assume(b"\r\n--xYzZY" not in value.encode())
            body += lines(b"--xYzZY", disposition, "", value, b"")
            expected.append(Field(name, value))
        else:
            filename, data = rest
            assert isinstance(filename, str)
            assert isinstance(data, bytes)
            assume(b"\r\n--xYzZY" not in data)
            body += lines(b"--xYzZY", f"{disposition}; filename={quoted(filename)}", "", data, b"")
            expected += [File(name, filename, "application/octet-stream"), Data(data, False)]
    body += b"--xYzZY--\r\n" + epilogue
    cuts = sorted(cut for cut in cuts if cut <= len(body))
    chunks = [bytes(body[start:stop]) for start, stop in zip([0, *cuts], [*cuts, len(body)])]
    assert decode(chunks) == [*expected, END]
