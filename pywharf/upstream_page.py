"""Parse an upstream project page (PEP 691 JSON, or PEP 503 HTML) into file records.

Pure: bytes in, values out. A file without a sha256 is left out (it could not be verified), as
is one whose filename names another project; anything else malformed refuses the whole page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote
from urllib.parse import urljoin
from urllib.parse import urlsplit

from packaging.utils import NormalizedName

from pywharf.dists import parse_filename
from pywharf.errors import PywharfError
from pywharf.errors import UpstreamError
from pywharf.index import UPSTREAM
from pywharf.index import FileRecord

__all__ = ["UNKNOWN_SIZE", "UNKNOWN_TIME", "UpstreamFile", "parse_project_page"]

UNKNOWN_SIZE = -1  # an HTML page gives no size (PEP 700 added it to JSON only)
UNKNOWN_TIME = 0.0  # nor an upload time: with a cooldown such a file is never offered
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class UpstreamFile:
    """One file of an upstream page: what the index would record, and where to fetch it."""

    record: FileRecord
    url: str


class _Malformed(Exception):
    """Raised inside the parsers; `parse_project_page` names the page in its message."""


def parse_project_page(
    body: bytes, content_type: str, page_url: str, project: NormalizedName
) -> tuple[UpstreamFile, ...]:
    """The page's files, with absolute URLs; `UpstreamError` if the page is malformed."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media.endswith("json"):
            return _from_json(body, page_url, project)
        return _from_html(body, page_url, project)
    except (_Malformed, ValueError, TypeError, KeyError, AttributeError) as error:
        raise UpstreamError(f"the upstream page of {project!a} is malformed: {error}") from None


def _sha256(value: Any) -> str | None:
    if isinstance(value, str) and len(value) == 64 and set(value.lower()) <= _SHA256_HEX:
        return value.lower()
    return None


def _upload_time(value: Any) -> float:
    if value is None:
        return UNKNOWN_TIME
    if not isinstance(value, str):
        raise _Malformed(f"upload-time {value!r} is not a string")
    # PEP 700: ISO 8601 with a Z; fromisoformat takes the Z only from Python 3.11.
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _record(
    filename: str, project: NormalizedName, sha256: str | None, **fields: Any
) -> FileRecord | None:
    if sha256 is None:
        return None
    try:
        distribution = parse_filename(filename, project)
    except PywharfError:
        return None  # pip skips what it cannot parse; so do we
    if distribution.project != project:
        return None  # a file of another project: never served under this name
    return FileRecord(
        filename=filename,
        project=project,
        version=distribution.version,
        sha256=sha256,
        origin=UPSTREAM,
        **fields,
    )


def _from_json(body: bytes, page_url: str, project: NormalizedName) -> tuple[UpstreamFile, ...]:
    document = json.loads(body)
    version = document["meta"]["api-version"]
    if not isinstance(version, str) or not version.startswith("1."):
        raise _Malformed(f"api-version {version!r} is not 1.x (PEP 691)")
    files = []
    for entry in document["files"]:
        if not isinstance(entry, dict) or not isinstance(entry["filename"], str):
            raise _Malformed("a file entry is not an object with a filename")
        yanked = entry.get("yanked", False)
        metadata = entry.get("core-metadata", entry.get("dist-info-metadata"))
        size = entry.get("size", UNKNOWN_SIZE)
        if not isinstance(size, int) or isinstance(size, bool):
            raise _Malformed(f"size {size!r} is not an integer")
        requires_python = entry.get("requires-python")
        record = _record(
            entry["filename"],
            project,
            _sha256(entry.get("hashes", {}).get("sha256")),
            size=size,
            upload_time=_upload_time(entry.get("upload-time")),
            requires_python=requires_python if isinstance(requires_python, str) else None,
            metadata_sha256=_sha256(metadata.get("sha256")) if isinstance(metadata, dict) else None,
            yanked=None if yanked is False else (yanked if isinstance(yanked, str) else ""),
        )
        if record is not None:
            files.append(UpstreamFile(record, urljoin(page_url, entry["url"])))
    return tuple(files)


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append(dict(attrs))


def _hash_value(value: str | None) -> str | None:
    """`sha256=<hex>` (a URL fragment or a PEP 658 attribute), or None."""
    name, _, digest = (value or "").partition("=")
    return _sha256(digest) if name == "sha256" else None


def _from_html(body: bytes, page_url: str, project: NormalizedName) -> tuple[UpstreamFile, ...]:
    text = body.decode("utf-8")
    if "<" not in text:
        raise _Malformed("it is not HTML")
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    files = []
    for anchor in parser.anchors:
        href = anchor.get("href")
        if not href:
            continue
        url = urljoin(page_url, href)
        parts = urlsplit(url)
        filename = unquote(parts.path.rsplit("/", 1)[-1])  # PEP 503: the URL's last component
        metadata = anchor.get("data-core-metadata", anchor.get("data-dist-info-metadata"))
        record = _record(
            filename,
            project,
            _hash_value(parts.fragment),
            size=UNKNOWN_SIZE,
            upload_time=UNKNOWN_TIME,
            requires_python=anchor.get("data-requires-python") or None,
            metadata_sha256=_hash_value(metadata),
            # PEP 592: the attribute's presence yanks, even bare (a reason is optional).
            yanked=(anchor["data-yanked"] or "") if "data-yanked" in anchor else None,
        )
        if record is not None:
            files.append(UpstreamFile(record, url.split("#", 1)[0]))
    return tuple(files)
