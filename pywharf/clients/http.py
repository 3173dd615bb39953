"""The HTTP transport our REST clients share: one pool, timeouts, retries, redirects.

Service rules (GitHub's rate limits, S3's SlowDown) come in through an `Advisor`: given a
response, it says how long the server asked us to wait, or None. Everything here is
service-neutral; messages never contain header values or query strings, so neither a token
nor a signed URL can leak through them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO
from typing import Callable
from typing import Optional
from typing import Union
from typing import cast
from urllib.parse import urljoin
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError

from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Unavailable

__all__ = [
    "Advisor",
    "ClientResponse",
    "LimitedReader",
    "RequestPayload",
    "RetryPolicy",
    "Stream",
    "Transport",
    "Wait",
    "origin",
    "redact_url",
]

log = logging.getLogger(__name__)

# Runtime aliases: `X | Y` is evaluated here, so 3.9 needs typing.Union.
# An iterator body is sent as it comes (never retried: it cannot be sent twice).
RequestPayload = Union[bytes, "LimitedReader", IO[bytes], Iterator[bytes], None]

# Repeating a request is only safe if the first one cannot have taken effect twice;
# these are the answers after which an idempotent request may be sent again.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# Credentials must not follow a redirect to another origin: GitHub's asset storage answers
# 400 when it sees a second auth mechanism (urllib3's own rule, made explicit here).
CROSS_ORIGIN_DROP = frozenset({"authorization", "cookie", "proxy-authorization"})
# Reads of a streamed body: urllib3's per-read cost dominates small reads (a 128 MiB GET from
# SeaweedFS on loopback read at 630 MB/s in 64 KiB reads, 1,094 MB/s in 1 MiB ones; measured
# for benchmarks/s3.py's proxy download).
CHUNK_BYTES = 1024 * 1024
# We retry and redirect ourselves; urllib3 must do neither (and raise the first error).
_NO_RETRY = urllib3.Retry(total=False, redirect=False)


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try one call and how long to wait between tries."""

    attempts: int = 4
    backoff: float = 0.5  # seconds before the first retry, doubled after each
    backoff_max: float = 8.0
    max_wait: float = 10.0  # the longest server-requested pause we sit through

    def backoff_for(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (0-based)."""
        return float(min(self.backoff * 2**attempt, self.backoff_max))


@dataclass(frozen=True)
class Wait:
    """A server asked us to come back later; `reason` is the message if we do not wait."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class ClientResponse:
    """A finished exchange; `stream` is set (and `data` empty) only for an open 2xx body."""

    status: int
    headers: Mapping[str, str]
    url: str
    data: bytes
    stream: Stream | None = None


Advisor = Callable[[ClientResponse, int], Optional[Wait]]


def redact_url(url: str) -> str:
    """The URL without user info and query: safe to log even for a signed URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port: what decides whether credentials may be sent along."""
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class LimitedReader:
    """Exactly `size` bytes of a file object from its current position; rewinds to there."""

    def __init__(self, fileobj: IO[bytes], size: int) -> None:
        self._file = fileobj
        self._size = size
        self._pos = 0
        self._start = fileobj.tell() if self.seekable() else 0

    def read(self, amount: int = -1) -> bytes:
        left = self._size - self._pos
        if left <= 0:
            return b""
        data = self._file.read(left if amount < 0 else min(amount, left))
        if not data:
            raise ClientError(f"The file ended after {self._pos} of its {self._size} bytes")
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        return bool(getattr(self._file, "seekable", lambda: False)())

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int) -> int:
        self._file.seek(self._start + offset)
        self._pos = offset
        return offset


class Stream:
    """An open response body: read or iterate it, then close it (or use `with`)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str) -> None:
        self._raw = raw
        self._url = url
        self._done = False
        self._closed = False

    @property
    def size(self) -> int | None:
        """The Content-Length the server announced, if any."""
        value = self._raw.headers.get("content-length")
        return int(value) if value and value.isdigit() else None

    @property
    def content_type(self) -> str:
        return str(self._raw.headers.get("content-type", "application/octet-stream"))

    def read(self, amount: int | None = None) -> bytes:
        try:
            data = self._raw.read(amount)
        except HTTPError as exc:
            self.close()
            raise Unavailable(f"Download of {redact_url(self._url)} broke off: {exc}") from exc
        if not data or amount is None:
            self._done = True
        return data

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._done:
            self._raw.close()  # drop the rest rather than download it to reuse the socket
        self._raw.release_conn()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _tell(body: RequestPayload) -> int | None:
    """Where a rewindable file body starts, or None when it cannot be sent twice."""
    if isinstance(body, (bytes, type(None))):
        return 0
    file = _seekable(body)
    return file.tell() if file is not None else None


def _rewind(body: RequestPayload, start: int | None) -> None:
    file = _seekable(body)
    if start is not None and file is not None:
        file.seek(start)


def _seekable(body: RequestPayload) -> LimitedReader | IO[bytes] | None:
    """A file body that can be rewound; None for bytes and iterators."""
    seekable = getattr(body, "seekable", None)
    return cast("LimitedReader | IO[bytes]", body) if seekable is not None and seekable() else None


class Transport:
    """One urllib3 pool with our retry, back-off and redirect rules around it."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy = RetryPolicy(),  # frozen: one shared default is safe
        sleep: Callable[[float], None] = time.sleep,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self.policy = policy
        self._timeout = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
        self._sleep = sleep
        self._pool = pool if pool is not None else urllib3.PoolManager(maxsize=4, block=False)

    def close(self) -> None:
        self._pool.clear()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: RequestPayload = None,
        idempotent: bool,
        redirects: int = MAX_REDIRECTS,
        stream: bool = False,
        advisor: Advisor | None = None,
    ) -> ClientResponse:
        """Send, retrying what is safe to retry; raise Unavailable when out of tries."""
        start = _tell(body)
        attempt = 0
        while True:
            _rewind(body, start)
            try:
                response = self._exchange(method, url, headers, body, start, redirects, stream)
            except HTTPError as exc:
                if not idempotent or start is None or attempt + 1 >= self.policy.attempts:
                    raise Unavailable(
                        f"{method} {redact_url(url)} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                self._pause(self.policy.backoff_for(attempt), method, url, type(exc).__name__)
            else:
                wait = self._wait_for(response, idempotent, start is not None, attempt, advisor)
                if wait is None:
                    return response
                self._pause(wait.seconds, method, url, f"HTTP {response.status}")
            attempt += 1

    def _wait_for(
        self,
        response: ClientResponse,
        idempotent: bool,
        rewindable: bool,
        attempt: int,
        advisor: Advisor | None,
    ) -> Wait | None:
        """How long to wait before trying again, or None to hand the response back."""
        last = attempt + 1 >= self.policy.attempts
        wait = advisor(response, attempt) if advisor is not None else None
        if wait is not None:
            # A throttled request was refused before it took effect: any method may repeat,
            # provided its body can be sent again.
            if wait.seconds > self.policy.max_wait or last or not rewindable:
                raise Unavailable(wait.reason, response.status)
            return wait
        if response.status in RETRY_STATUSES and idempotent and rewindable and not last:
            return Wait(self.policy.backoff_for(attempt), f"HTTP {response.status}")
        return None

    def _pause(self, seconds: float, method: str, url: str, why: str) -> None:
        log.warning("%s %s: %s; retrying in %.1f s", method, redact_url(url), why, seconds)
        self._sleep(seconds)

    def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: RequestPayload,
        start: int | None,
        redirects: int,
        stream: bool,
    ) -> ClientResponse:
        """One try, following up to `redirects` redirects by hand."""
        sent = dict(headers)
        for hop in range(redirects + 1):
            raw = self._pool.urlopen(
                method,
                url,
                body=body,
                headers=sent,
                redirect=False,
                retries=_NO_RETRY,
                timeout=self._timeout,
                preload_content=False,
            )
            log.debug("%s %s -> %d", method, redact_url(url), raw.status)
            location = raw.headers.get("location")
            if raw.status not in REDIRECT_STATUSES or not location or hop == redirects:
                return _finish(raw, url, stream)
            raw.drain_conn()
            raw.release_conn()
            target = urljoin(url, location)
            if origin(target) != origin(url):
                sent = {k: v for k, v in sent.items() if k.lower() not in CROSS_ORIGIN_DROP}
            if raw.status == 303:
                method, body = "GET", None
            elif body is not None and start is None:
                raise ClientError(f"{method} {redact_url(url)} was redirected; cannot resend")
            _rewind(body, start)
            url = target
        raise AssertionError("unreachable: the last hop returns")


def _finish(raw: urllib3.BaseHTTPResponse, url: str, stream: bool) -> ClientResponse:
    """Read the body (or keep it open for a successful stream) and free the connection."""
    headers = raw.headers  # case-insensitive; repeated headers are joined with ", "
    if stream and 200 <= raw.status < 300:
        return ClientResponse(raw.status, headers, url, b"", Stream(raw, url))
    try:
        data = raw.read()
    finally:
        raw.release_conn()
    return ClientResponse(raw.status, headers, url, data)
