"""HTTP values and header grammar: requests and responses as values, no sockets.

The server turns bytes into a `Request`; `App.handle` turns it into a `Response`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from datetime import timezone
from email.utils import formatdate
from email.utils import parsedate_to_datetime
from typing import Protocol
from typing import Union
from urllib.parse import parse_qsl

from pywharf import multipart
from pywharf.errors import BadRequest
from pywharf.errors import LengthRequired
from pywharf.errors import MalformedRequest
from pywharf.errors import PayloadTooLarge
from pywharf.errors import RangeNotSatisfiable
from pywharf.errors import UnsupportedMediaType

__all__ = [
    "HTML",
    "JSON",
    "TEXT_HTML",
    "ResponseBody",
    "BodyReader",
    "FileBody",
    "StreamBody",
    "Request",
    "Response",
    "base_url",
    "http_date",
    "scheme",
    "negotiate",
    "parse_basic_auth",
    "parse_byte_count",
    "parse_http_date",
    "accepts_gzip",
    "parse_range",
    "prefers_html",
    "read_form_fields",
    "read_body",
    "read_form",
]

JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
_LATEST = {
    "application/vnd.pypi.simple.latest+json": JSON,
    "application/vnd.pypi.simple.latest+html": HTML,
}
# Among explicit matches prefer the most capable; text/html is the universal fallback.
_OFFERS = (JSON, HTML, TEXT_HTML)


class BodyReader(Protocol):
    """A request body: `read` returns at most `size` bytes and b"" only at its end."""

    def read(self, size: int) -> bytes: ...


@dataclass(frozen=True)
class FileBody:
    """A response body sent from a file by `sendfile`: `length` bytes from `offset`."""

    path: str
    offset: int
    length: int


class StreamBody:
    """A response body produced while it is sent (a file relayed from an upstream index).

    `length` bytes in chunks; the server calls `close` when done, sent or not (a HEAD, a
    client gone), so whatever the chunks hold (a lock, an upstream connection) is let go.
    """

    def __init__(self, chunks: Iterator[bytes], length: int, close: Callable[[], None]) -> None:
        self.chunks = chunks
        self.length = length
        self.close = close


ResponseBody = Union[bytes, FileBody, StreamBody]


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: BodyReader
    content_length: int | None = None
    client: str = "-"
    secure: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: ResponseBody = b""
    reason: str | None = None  # the reason phrase: twine prints it, so errors put their line here
    close: bool = False
    user: str = "-"  # for the access log

    @property
    def length(self) -> int:
        if isinstance(self.body, (FileBody, StreamBody)):
            return self.body.length
        return len(self.body)


# A management or login form is a few fields; anything bigger is not one.
MAX_FORM_BYTES = 1024 * 1024


# RFC 3986 host (a name, IPv4, or a bracketed IPv6 literal) and an optional port: nothing that
# needs escaping in HTML or JSON, where the base URL goes into cached pages as it is.
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z"
)


def scheme(request: Request) -> str:
    """The scheme the client used: behind a TLS-terminating proxy, X-Forwarded-Proto says so."""
    return "https" if request.secure or request.header("x-forwarded-proto") == "https" else "http"


def base_url(request: Request) -> str:
    """`scheme://host` as the client addressed this server (PEP 740 wants absolute URLs)."""
    host = request.header("host") or ""
    if not _HOST.match(host):
        raise BadRequest("the Host header is not a host name (RFC 3986 host, optional port)")
    return f"{scheme(request)}://{host}"


def read_body(request: Request, limit: int) -> bytes:
    """The whole (small) body; over `limit` is a 413, a cut-off body a 400."""
    if request.content_length is None:
        raise LengthRequired("this request needs a Content-Length")
    if request.content_length > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    chunks, remaining = [], request.content_length
    while remaining:
        chunk = request.body.read(remaining)
        if not chunk:
            raise MalformedRequest("the body ended early")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _multipart_fields(request: Request, body: bytes) -> dict[str, str]:
    decoder = multipart.MultipartDecoder(multipart.parse_boundary(request.header("content-type")))
    decoder.feed(body)
    decoder.end()
    fields: dict[str, str] = {}
    current: str | None = None
    while not isinstance(event := decoder.next_event(), (multipart.End, multipart.NeedData)):
        if isinstance(event, multipart.Field):
            fields[event.name] = event.value
        elif isinstance(event, multipart.File):
            current = event.name
            fields[current] = ""
        elif current is not None:  # file parts are small text files here (TOML)
            try:
                fields[current] += event.data.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"the file part {current!r} is not UTF-8 text") from None
    return fields


def read_form_fields(request: Request) -> dict[str, str]:
    """A small form posted urlencoded or as multipart (file parts read as text)."""
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return _multipart_fields(request, read_body(request, MAX_FORM_BYTES))
    return read_form(request)


def read_form(request: Request) -> dict[str, str]:
    """Query and `application/x-www-form-urlencoded` fields (the body's win)."""
    fields = dict(request.query)
    body = read_body(request, MAX_FORM_BYTES)
    if not body:
        return fields
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("send the form as application/x-www-form-urlencoded")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the form is not UTF-8") from None
    fields.update(parse_qsl(text, keep_blank_values=True))
    return fields


@functools.lru_cache(maxsize=4096)  # a file's Last-Modified, on every download of it
def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    """An RFC 9110 HTTP-date as seconds since the epoch; None when absent or not a date.

    A recipient must ignore an invalid If-Modified-Since (RFC 9110 section 13.1.3).
    """
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:  # RFC 850 and asctime dates are GMT by definition
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def parse_basic_auth(value: str | None) -> tuple[str, str] | None:
    """RFC 7617 credentials (UTF-8), or None when absent or malformed."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token.isascii():  # b64decode raises on non-ASCII text
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


# RFC 9110 5.6.1 / 8.6 / 14.1.1: a byte count is 1*DIGIT, ASCII only (str.isdigit and int()
# also take '²' or Arabic-Indic digits).
_DIGITS = re.compile(r"[0-9]+")
# More significant digits than any size we handle; int() refuses over 4300 digits, so longer
# counts are capped here rather than converted.
_MAX_DIGITS = 18
_HUGE = 10**_MAX_DIGITS


def parse_byte_count(text: str) -> int | None:
    """An RFC 9110 `1*DIGIT` byte count, capped at 10**18; None when it is not one."""
    if not _DIGITS.fullmatch(text):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _HUGE


_MEDIA_RANGE = re.compile(r"^\s*([^\s;/]+)/([^\s;]+)\s*(.*)$")
_Q_PARAM = re.compile(r";\s*q\s*=\s*([0-9.]+)", re.IGNORECASE)


def _accept_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        match = _MEDIA_RANGE.match(item)
        if not match:
            continue
        media = f"{match.group(1)}/{match.group(2)}".lower()
        q_match = _Q_PARAM.search(match.group(3))
        try:
            q = float(q_match.group(1)) if q_match else 1.0
        except ValueError:
            continue
        ranges.append((_LATEST.get(media, media), q))
    return ranges


def _quality(offer: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The q of the most specific matching range, and 2/1/0 for exact/type/*."""
    best = (-1.0, -1)
    family = offer.split("/")[0]
    for media, q in ranges:
        specificity = 2 if media == offer else 1 if media == f"{family}/*" else 0
        if specificity == 0 and media != "*/*":
            continue
        if specificity > best[1]:
            best = (q, specificity)
    return best


def accepts_gzip(accept_encoding: str | None) -> bool:
    """RFC 9110 12.5.3: gzip (or *) listed with a q above zero."""
    for item in (accept_encoding or "").split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            match = _Q_PARAM.search(";" + parameters)
            try:
                return not match or float(match.group(1)) > 0
            except ValueError:
                return False
    return False


def prefers_html(accept: str | None) -> bool:
    """A browser: it names text/html explicitly and likes nothing better (pip and uv prefer
    JSON, curl and poetry send */*): content negotiation, not User-Agent sniffing."""
    ranges = _accept_ranges(accept or "")
    html_q = max((q for media, q in ranges if media == TEXT_HTML), default=0.0)
    return html_q > 0 and all(q <= html_q for media, q in ranges if media != "*/*")


def negotiate(accept: str | None, format_param: str | None = None) -> str:
    """PEP 691 content negotiation: the media type to answer with (HTML when in doubt)."""
    if format_param:
        chosen = _LATEST.get(format_param.replace(" ", "+"), format_param.replace(" ", "+"))
        if chosen in _OFFERS:  # parse_qs turned '+' into ' '; the spec says keep the '+'
            return chosen
    if not accept:
        return TEXT_HTML
    ranges = _accept_ranges(accept)
    scored = []
    for rank, offer in enumerate(_OFFERS):
        q, specificity = _quality(offer, ranges)
        if q > 0:
            # Wildcard-only matches prefer text/html, as PyPI does for */* (poetry <= 2.2, curl).
            preference = -rank if specificity == 2 else rank
            scored.append((q, specificity == 2, preference, offer))
    return max(scored)[3] if scored else TEXT_HTML


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range as (first, last) inclusive; None means send the whole file.

    Multiple ranges, unknown units and invalid ranges get the whole file (RFC 9110 14.2: an
    invalid Range is ignored); a range past the end raises `RangeNotSatisfiable`.
    """
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first_text, dash, last_text = value[6:].strip().partition("-")
    first = parse_byte_count(first_text) if first_text else None
    last = parse_byte_count(last_text) if last_text else None
    if not dash or (first_text and first is None) or (last_text and last is None):
        return None
    if first is None:
        if not last or size == 0:
            raise RangeNotSatisfiable(size)  # RFC 9110 14.1.2: a suffix needs some content
        return max(size - last, 0), size - 1  # a suffix range: the last N bytes
    last = size - 1 if last is None else min(last, size - 1)
    if first >= size or first > last:
        raise RangeNotSatisfiable(size)
    return first, last
