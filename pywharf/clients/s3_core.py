"""The core of our S3 client: one bucket, one key pair, signed calls, errors and values.

`clients/s3_multipart.py` and `clients/s3.py` add the calls on top. No boto: SigV4 is
`clients/sigv4.py` (pure, vector-tested), transport and retries are the shared urllib3
`Transport`. Rules measured against real stores (../shared/reference/
s3-storage.md): header-name case varies (urllib3's headers are case-insensitive), `If-Match`
goes unquoted (Ceph RGW and DO Spaces match only that form; others accept both), XML is parsed
without namespaces (rclone omits the xmlns), and CompleteMultipartUpload may answer 200 with an
`<Error>` body. Messages carry the action, the key and S3's error code, never a credential, a
header value or a query string (a presigned URL's signature stays out of every log).
"""

from __future__ import annotations

import datetime
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable

import urllib3

from pywharf import __version__
from pywharf.clients import sigv4
from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.clients.http import ClientResponse
from pywharf.clients.http import RequestPayload
from pywharf.clients.http import RetryPolicy
from pywharf.clients.http import Transport
from pywharf.clients.http import Wait
from pywharf.clients.sigv4 import Credentials
from pywharf.clients.sigv4 import S3Location

__all__ = [
    "LIST_PAGE",
    "MAX_PARTS",
    "MIN_PART_BYTES",
    "MULTIPART_THRESHOLD",
    "PART_BYTES",
    "ListedObject",
    "MultipartUpload",
    "ObjectInfo",
    "S3Core",
    "S3Object",
    "error_code",
    "iso_time",
    "parse_xml",
    "unquoted_etag",
    "xml_children",
    "xml_text",
]

# S3 "Multipart upload limits": parts of 5 MiB to 5 GiB (the last may be smaller), at most
# 10,000 of them; a single PUT takes up to 5 GiB.
MIN_PART_BYTES = 5 * 1024**2
MAX_PARTS = 10_000
MULTIPART_THRESHOLD = 256 * 1024**2  # above this, parts: a failed part costs one part, not all
PART_BYTES = 64 * 1024**2
_DEFAULT_POLICY = RetryPolicy()
LIST_PAGE = 1000  # S3's own maximum for ListObjectsV2 and ListMultipartUploads
_META = "x-amz-meta-"
# The status an `<Error>` inside a 200 stands for (S3 "CompleteMultipartUpload": "the error
# is embedded in the 200 OK response").
_ERROR_STATUS = {"PreconditionFailed": 412, "ConditionalRequestConflict": 409, "SlowDown": 503}


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD (or GET) says of an object; `metadata` is x-amz-meta-*, names lower-cased."""

    key: str
    size: int
    etag: str  # unquoted
    last_modified: float  # seconds since the epoch
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class S3Object:
    info: ObjectInfo
    data: bytes


@dataclass(frozen=True)
class ListedObject:
    """One entry of ListObjectsV2 (it carries no user metadata)."""

    key: str
    size: int
    etag: str  # unquoted
    last_modified: float


@dataclass(frozen=True)
class MultipartUpload:
    """A multipart upload begun and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: float


def unquoted_etag(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


def _local(tag: str) -> str:
    """An element's name without its namespace (rclone's XML has none, AWS's has one)."""
    return tag.rpartition("}")[2]


def parse_xml(data: bytes) -> ElementTree.Element | None:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None


def xml_children(element: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    return (child for child in element if _local(child.tag) == name)


def xml_text(element: ElementTree.Element, name: str) -> str:
    for child in xml_children(element, name):
        return child.text or ""
    return ""


def iso_time(text: str) -> float:
    """ListObjectsV2's `2026-11-24T10:00:00.000Z`; 0 if a store sends something else."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _http_time(text: str | None) -> float:
    try:
        return parsedate_to_datetime(text).timestamp() if text else 0.0
    except (TypeError, ValueError):
        return 0.0


def error_code(data: bytes) -> str:
    """S3's `<Error><Code>`, or "" when the body is not an S3 error."""
    root = parse_xml(data) if data else None
    if root is None or _local(root.tag) != "Error":
        return ""
    return xml_text(root, "Code")


def slow_down(response: ClientResponse, attempt: int, policy: RetryPolicy) -> Wait | None:
    """S3 "Error responses": SlowDown (503) asks us to back off; the request did nothing, so
    even a POST may be repeated."""
    if response.status == 503 and error_code(response.data) == "SlowDown":
        return Wait(policy.backoff_for(attempt), "S3 asked us to slow down (SlowDown)")
    return None


class S3Core:
    """One bucket (under one endpoint and region) and one key pair over a pooled transport.

    `sleep` is the retry back-off and `clock` the signing time; tests pass their own."""

    def __init__(
        self,
        location: S3Location,
        credentials: Credentials,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy = _DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        pool: urllib3.PoolManager | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.location = location.at("")
        self._credentials = credentials
        self._policy = policy
        pool = pool if pool is not None else urllib3.PoolManager(maxsize=16, block=False)
        self._transport = Transport(timeout=timeout, policy=policy, sleep=sleep, pool=pool)
        self._clock = clock
        self.multipart_threshold = multipart_threshold
        self.part_bytes = part_bytes

    def __repr__(self) -> str:
        return f"S3Client(bucket={self.location.bucket!r}, host={self.location.host!r})"

    def close(self) -> None:
        self._transport.close()

    def _send(
        self,
        method: str,
        key: str,
        *,
        query: tuple[tuple[str, str], ...] = (),
        headers: Mapping[str, str] | None = None,
        body: RequestPayload = None,
        size: int | None = None,
        payload: str = sigv4.UNSIGNED_PAYLOAD,
        idempotent: bool = True,
        stream: bool = False,
    ) -> ClientResponse:
        """One signed request; every header in `headers` is signed (S3 wants x-amz-* signed)."""
        when = datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)
        signed = sigv4.sign_request(
            method, self.location.at(key), self._credentials, when, query=query,
            headers=tuple((headers or {}).items()), payload=payload,
        )  # fmt: skip
        sent = dict(signed.headers)
        sent["User-Agent"] = f"pywharf/{__version__}"
        if size is not None or isinstance(body, bytes):
            # An explicit length: urllib3 would send a file body chunked, which S3 refuses.
            sent["Content-Length"] = str(len(body) if isinstance(body, bytes) else size)
        return self._transport.request(
            method, signed.url, headers=sent, body=body, idempotent=idempotent, stream=stream,
            advisor=lambda response, attempt: slow_down(response, attempt, self._policy),
        )  # fmt: skip

    def _error(self, response: ClientResponse, what: str, *, create: str = "") -> ClientError:
        """Our error for an S3 answer we did not expect; `create` names a create-only key."""
        status = response.status
        code = error_code(response.data)
        if status == 200 and code:  # an `<Error>` in a 200 (CompleteMultipartUpload)
            status = _ERROR_STATUS.get(code, 500)
        reason = f"({status} {code or 'no error code'})"
        detail = f"S3 could not {what} {reason}"
        if status in (401, 403):
            return Refused(f"S3 refused to {what} {reason}", status)
        if status == 404:
            return ResourceNotFound(detail, status)
        if status in (409, 412):
            return AlreadyExists(detail, create, status) if create else Conflict(detail, status)
        if status >= 500:
            return Unavailable(detail, status)
        return ClientError(detail, status)

    def _info(self, key: str, response: ClientResponse) -> ObjectInfo:
        headers = response.headers
        length = headers.get("content-length", "")
        metadata = {
            name.lower().removeprefix(_META): value
            for name, value in headers.items()
            if name.lower().startswith(_META)
        }
        return ObjectInfo(
            key,
            int(length) if length.isdigit() else len(response.data),
            unquoted_etag(headers.get("etag", "")),
            _http_time(headers.get("last-modified")),
            metadata,
        )

    def _write_headers(
        self, content_type: str, metadata: Mapping[str, str] | None, create: bool, if_match: str
    ) -> dict[str, str]:
        headers = {"Content-Type": content_type}
        headers.update({_META + name: value for name, value in (metadata or {}).items()})
        if create:
            headers["If-None-Match"] = "*"
        if if_match:
            headers["If-Match"] = if_match  # unquoted: see the module docstring
        return headers

    def _written(self, response: ClientResponse, what: str, create: str) -> str:
        if response.status != 200:
            raise self._error(response, what, create=create)
        return unquoted_etag(response.headers.get("etag", ""))

    def _list_page(self, query: tuple[tuple[str, str], ...], what: str) -> ElementTree.Element:
        response = self._send("GET", "", query=query)
        root = parse_xml(response.data) if response.status == 200 else None
        if root is None:
            if response.status == 200:
                raise Unavailable(f"S3 answered a {what} with a body that is not XML", 502)
            raise self._error(response, what)
        return root

    def presign(self, key: str, expires: int) -> str:
        """A GET URL anyone may use for `expires` seconds (it carries its own signature)."""
        when = datetime.datetime.fromtimestamp(self._clock(), datetime.timezone.utc)
        return sigv4.presign_get(self.location.at(key), self._credentials, when, expires).url
