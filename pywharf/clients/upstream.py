"""A client for an upstream simple index (PEP 503 / 691): project pages and file downloads.

Credentials may be written into the index URL, as pip takes them. They are sent as Basic auth to
the index's own origin only (its pages, and its files when they live there, as pip does), never
to another host, and no message carries them: messages name the redacted URL.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote
from urllib.parse import unquote
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from pywharf.clients.errors import ClientError
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.clients.http import REDIRECT_STATUSES
from pywharf.clients.http import ClientResponse
from pywharf.clients.http import RetryPolicy
from pywharf.clients.http import Stream
from pywharf.clients.http import Transport
from pywharf.clients.http import origin
from pywharf.clients.http import redact_url

__all__ = ["FetchedPage", "UpstreamClient", "split_credentials"]

# PEP 691 content negotiation: JSON first, the HTML forms as fallbacks for older indexes.
PAGE_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
# An upstream that is down must not hold a client for long: one retry, soon.
UPSTREAM_POLICY = RetryPolicy(attempts=2, backoff=0.2, backoff_max=1.0, max_wait=2.0)


@dataclass(frozen=True)
class FetchedPage:
    """A project page as the upstream answered it; `url` is where it was found (for links)."""

    body: bytes
    content_type: str
    etag: str | None
    url: str


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user info, and the Basic `Authorization` value it carried (if any)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, "Basic " + base64.b64encode(pair.encode()).decode()


class UpstreamClient:
    """Pages and files of one upstream index, over one connection pool."""

    def __init__(self, index_url: str, *, timeout: float = 30.0) -> None:
        base, self._authorization = split_credentials(index_url)
        self.base = base if base.endswith("/") else base + "/"
        self.shown = redact_url(self.base)
        self._transport = Transport(timeout=timeout, policy=UPSTREAM_POLICY)

    def close(self) -> None:
        self._transport.close()

    def _headers(self, url: str, **extra: str) -> dict[str, str]:
        headers = {"User-Agent": "pywharf", **extra}
        if self._authorization and origin(url) == origin(self.base):
            headers["Authorization"] = self._authorization
        return headers

    def page(self, project: str, etag: str | None) -> FetchedPage | None:
        """The project's page, or None when `etag` still holds (304)."""
        url = f"{self.base}{quote(project)}/"
        extra = {"Accept": PAGE_ACCEPT, "Accept-Encoding": "gzip"}
        if etag:
            extra["If-None-Match"] = etag
        response = self._transport.request(
            "GET", url, headers=self._headers(url, **extra), idempotent=True
        )
        if response.status == 304:
            return None
        self._check(response, f"page of {project!r}")
        content_type = response.headers.get("content-type", "")
        return FetchedPage(response.data, content_type, response.headers.get("etag"), response.url)

    def open(self, url: str, what: str) -> Stream:
        """A file (or its metadata) as an open stream; the caller closes it."""
        response = self._transport.request(
            "GET", url, headers=self._headers(url), idempotent=True, stream=True
        )
        self._check(response, what)
        assert response.stream is not None  # a 2xx with stream=True
        return response.stream

    def _check(self, response: ClientResponse, what: str) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        where = f"upstream {self.shown}"
        if status in REDIRECT_STATUSES:
            raise Unavailable(f"{where}: the {what} redirects in a loop", status)
        if status == 404:
            raise ResourceNotFound(f"{where} has no {what}", status)
        if status >= 500:
            raise Unavailable(f"{where} answered {status} for the {what}", status)
        raise ClientError(f"{where} answered {status} for the {what}", status)
