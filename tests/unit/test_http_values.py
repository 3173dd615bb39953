"""Header values as pure functions: Basic credentials, content negotiation, byte ranges."""

from __future__ import annotations

import base64

import pytest
from support import PIP
from support import UV

from pywharf.errors import RangeNotSatisfiable
from pywharf.http import HTML
from pywharf.http import JSON
from pywharf.http import TEXT_HTML
from pywharf.http import negotiate
from pywharf.http import parse_basic_auth
from pywharf.http import parse_range


def basic(raw: bytes, scheme: str = "Basic") -> str:
    return f"{scheme} {base64.b64encode(raw).decode()}"


AUTH = {
    "plain": (basic(b"local:secret"), ("local", "secret")),
    "colon in password": (basic(b"local:se:cr:et"), ("local", "se:cr:et")),
    "empty password": (basic(b"local:"), ("local", "")),
    "empty user": (basic(b":secret"), ("", "secret")),
    "utf-8": (basic("l\u00f6kal:s\u00ebcret\u20ac".encode()), ("l\u00f6kal", "s\u00ebcret\u20ac")),
    "scheme is case-insensitive": (basic(b"a:b", "basic"), ("a", "b")),
    "scheme upper case": (basic(b"a:b", "BASIC"), ("a", "b")),
    "surrounding spaces": ("  " + basic(b"a:b") + "  ", ("a", "b")),
    # RFC 7617 with charset="UTF-8" (which our challenge sends): other bytes are refused.
    "not utf-8": (basic(b"local:caf\xe9"), None),
    "not utf-8 user": (basic(b"\xff\xfe:x"), None),
    "no colon": (basic(b"localsecret"), None),
    "bad base64": ("Basic !!!not-base64!!!", None),
    "truncated base64": ("Basic YTp", None),
    "no token": ("Basic", None),
    "empty token": ("Basic ", None),
    "bearer": ("Bearer " + base64.b64encode(b"a:b").decode(), None),
    "digest": ('Digest username="a", realm="r"', None),
    "token scheme": ("token abc", None),
    "empty": ("", None),
    "absent": (None, None),
}


@pytest.mark.parametrize(("header", "expected"), AUTH.values(), ids=list(AUTH))
def test_parse_basic_auth(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic_auth(header) == expected


# Accept headers from the standards digest (section 2.2) and what each client must get.
ACCEPT = {
    "pip": (PIP, JSON),
    "uv": (UV, JSON),
    "poetry >= 2.3": ("application/vnd.pypi.simple.v1+json, */*;q=0.1", JSON),
    "poetry <= 2.2 (requests default)": ("*/*", TEXT_HTML),
    "curl": ("*/*", TEXT_HTML),
    "browser": ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", TEXT_HTML),
    "uv publish": ("application/json;q=0.9, text/plain;q=0.8, text/html;q=0.7", TEXT_HTML),
    "no header": (None, TEXT_HTML),
    "empty header": ("", TEXT_HTML),
    "v1 html only": ("application/vnd.pypi.simple.v1+html", HTML),
    "latest json maps to v1": ("application/vnd.pypi.simple.latest+json", JSON),
    "latest html maps to v1": ("application/vnd.pypi.simple.latest+html", HTML),
    "q decides, not order": (
        "text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9",
        JSON,
    ),
    "html preferred by q": (
        "application/vnd.pypi.simple.v1+json;q=0.2, application/vnd.pypi.simple.v1+html",
        HTML,
    ),
    "json refused with q=0": ("application/vnd.pypi.simple.v1+json;q=0", TEXT_HTML),
    "json refused, wildcard": ("application/vnd.pypi.simple.v1+json;q=0, */*", TEXT_HTML),
    "text/html refused": ("text/html;q=0, */*", HTML),
    "q=0 on the specific beats the wildcard": (
        "application/vnd.pypi.simple.v1+json;q=0, application/*;q=0.5",
        HTML,
    ),
    "nothing acceptable falls back to text/html": ("image/png", TEXT_HTML),
    "garbage": ("this is not a media range", TEXT_HTML),
}


@pytest.mark.parametrize(("accept", "expected"), ACCEPT.values(), ids=list(ACCEPT))
def test_negotiate(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


FORMATS = {
    # parse_qs turns '+' into ' ': both spellings must work (digest, section 2.3).
    "json with +": ("application/vnd.pypi.simple.v1+json", JSON),
    "json with space": ("application/vnd.pypi.simple.v1 json", JSON),
    "html with space": ("application/vnd.pypi.simple.v1 html", HTML),
    "latest json with space": ("application/vnd.pypi.simple.latest json", JSON),
    "text/html": ("text/html", TEXT_HTML),
}


@pytest.mark.parametrize(("fmt", "expected"), FORMATS.values(), ids=list(FORMATS))
def test_format_parameter_overrides_accept(fmt: str, expected: str) -> None:
    for accept in (None, "*/*", PIP, "text/html"):
        assert negotiate(accept, fmt) == expected


@pytest.mark.parametrize("fmt", ["bogus", "*/*", "application/json", ""])
def test_an_unknown_format_parameter_falls_back_to_accept(fmt: str) -> None:
    assert negotiate(PIP, fmt) == JSON
    assert negotiate("*/*", fmt) == TEXT_HTML


RANGES = {
    # header -> (first, last) for a 10-byte file; None: send the whole file (200)
    "bytes=0-9": (0, 9),
    "bytes=0-0": (0, 0),
    "bytes=2-5": (2, 5),
    "bytes=9-9": (9, 9),
    "bytes=0-1000": (0, 9),  # a last-pos past the end is clipped (RFC 9110 14.1.2)
    "bytes=5-": (5, 9),
    "bytes=0-": (0, 9),
    "bytes=-3": (7, 9),  # the last three bytes, as poetry's lazy wheel asks first
    "bytes=-10": (0, 9),
    "bytes=-100": (0, 9),  # a suffix longer than the file is the whole file
    # Multiple ranges and other units may be answered with the whole file.
    "bytes=0-1,3-4": None,
    "bytes=0-1, 5-": None,
    "items=0-1": None,
    "bytes=a-b": None,
}


@pytest.mark.parametrize(("header", "expected"), RANGES.items(), ids=list(RANGES))
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", [None, ""])
def test_no_range_is_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=10-", 10),
        ("bytes=10-20", 10),
        ("bytes=100-", 10),
        ("bytes=-0", 10),
        ("bytes=0-", 0),
        ("bytes=-5", 0),  # RFC 9110 14.1.2: a suffix range needs a non-empty representation
    ],
)
def test_unsatisfiable_ranges_raise_416_with_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.status == 416
    assert ("Content-Range", f"bytes */{size}") in caught.value.headers
