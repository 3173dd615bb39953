"""Answers as values: text, JSON, redirects, cached pages and files with their validators.

Handlers build their answers here; `app.error_response` turns an error into one.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from pywharf.backends import LocalFile
from pywharf.http import JSON
from pywharf.http import FileBody
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import accepts_gzip
from pywharf.http import http_date
from pywharf.http import parse_http_date
from pywharf.http import parse_range
from pywharf.pages import Page
from pywharf.repository import FileDownload

__all__ = [
    "FILE_CACHE_CONTROL",
    "JSON_CONTENT_TYPE",
    "PAGE_CACHE_CONTROL",
    "file_response",
    "json_response",
    "matches_etag",
    "not_modified",
    "page_response",
    "query_suffix",
    "reason_phrase",
    "redirect",
    "text_response",
]

# Pages change with every upload: clients may keep them but must revalidate (a cheap 304).
PAGE_CACHE_CONTROL = "private, no-cache"


# Files are immutable: a filename is never reused with other bytes.
FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"


JSON_CONTENT_TYPE = "application/json"  # a provenance file is plain JSON, not a simple page


def text_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *headers],
        (message + "\n").encode(),
        reason=reason_phrase(message),
    )


def reason_phrase(message: str) -> str:
    """The message as a reason phrase: one Latin-1 line (twine prints it)."""
    line = message.splitlines()[0] if message else ""
    return line.encode("latin-1", "replace").decode("latin-1")[:200]


def json_response(status: int, document: dict[str, object]) -> Response:
    body = json.dumps(document).encode()
    return Response(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                    body)  # fmt: skip


def query_suffix(request: Request) -> str:
    """The query to carry over a redirect (`?format=` must survive it)."""
    return "?" + urlencode(request.query) if request.query else ""


def redirect(location: str, status: int = 301) -> Response:
    return Response(status, [("Location", location), ("Content-Length", "0")], b"")


def matches_etag(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or etag in (
        tag.strip().removeprefix("W/") for tag in header.split(",")
    )


def not_modified(request: Request, etag: str, last_modified: float) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request.header("if-none-match")
    if if_none_match is not None:
        return matches_etag(if_none_match, etag)
    since = parse_http_date(request.header("if-modified-since"))
    return since is not None and int(last_modified) <= since


def page_response(request: Request, page: Page, media: str, user: str) -> Response:
    packed = page.compressible and accepts_gzip(request.header("accept-encoding"))
    etag = f'"{page.etag}-{"j" if media == JSON else "h"}{"z" if packed else ""}"'
    headers = [
        ("ETag", etag),
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", PAGE_CACHE_CONTROL),
    ]
    if matches_etag(request.header("if-none-match"), etag):
        return Response(304, headers, user=user)
    content_type = media if media == JSON else f"{media}; charset=utf-8"
    headers.append(("Content-Type", content_type))
    if packed:
        headers.append(("Content-Encoding", "gzip"))
    body = page.gzipped() if packed else page.body
    return Response(200, headers, body, user=user)


def file_response(request: Request, download: FileDownload, user: str) -> Response:
    target, etag = download.target, download.etag
    assert isinstance(target, LocalFile)
    headers = [
        ("ETag", etag),
        ("Last-Modified", http_date(download.last_modified)),
        ("Cache-Control", FILE_CACHE_CONTROL),
        ("Accept-Ranges", "bytes"),
    ]
    if not_modified(request, etag, download.last_modified):
        return Response(304, headers, user=user)
    headers.append(("Content-Type", "application/octet-stream"))
    if_range = request.header("if-range")
    byte_range = parse_range(request.header("range"), target.size)
    if byte_range is None or (if_range is not None and if_range.strip() != etag):
        return Response(200, headers, FileBody(target.path, 0, target.size), user=user)
    first, last = byte_range
    headers.append(("Content-Range", f"bytes {first}-{last}/{target.size}"))
    return Response(206, headers, FileBody(target.path, first, last - first + 1), user=user)
