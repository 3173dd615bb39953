"""The core of our GitHub client: one token, our headers, rate limits, errors and pages.

Rules from GitHub's docs (REST API "Best practices" and "Rate limits"): follow the URLs GitHub
hands out instead of building them, page through `Link: rel="next"`, send `If-None-Match` (a
304 costs no rate limit), wait as the rate-limit headers say, and never send the token to the
signed download host. The token never appears in a log, repr or error message.
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import re
import time
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import Callable
from typing import TypeVar
from urllib.parse import quote
from urllib.parse import urlencode

import urllib3

from pywharf import __version__
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.clients.http import ClientResponse
from pywharf.clients.http import RequestPayload
from pywharf.clients.http import RetryPolicy
from pywharf.clients.http import Stream
from pywharf.clients.http import Transport
from pywharf.clients.http import Wait
from pywharf.clients.http import origin
from pywharf.clients.http import redact_url

__all__ = [
    "JSON",
    "OCTET",
    "GitHubCore",
    "decode_json",
    "github_message",
    "rate_limit_wait",
    "segment",
]

log = logging.getLogger("pywharf.clients.github")

JSON = "application/vnd.github+json"
OCTET = "application/octet-stream"
API_VERSION = "2022-11-28"
SECONDARY_LIMIT_PAUSE = 60.0  # GitHub: "wait at least one minute" without other advice
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
_Core = TypeVar("_Core", bound="GitHubCore")


def rate_limit_wait(response: ClientResponse, attempt: int, now: float) -> Wait | None:
    """How long GitHub asks us to wait, in its order of precedence; None if not throttled."""
    if response.status not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after", "")
    if retry_after.strip().isdigit():
        seconds = float(retry_after)
        return Wait(seconds, f"GitHub's secondary rate limit: retry after {seconds:.0f} s")
    if headers.get("x-ratelimit-remaining") == "0":
        reset = _int(headers.get("x-ratelimit-reset"))
        seconds = max(reset - now, 0.0) + 1.0  # the reset second itself may still be limited
        return Wait(seconds, f"GitHub's rate limit is used up until {_when(reset)}")
    if response.status == 429 or b"secondary rate limit" in response.data.lower():
        seconds = SECONDARY_LIMIT_PAUSE * 2**attempt
        return Wait(seconds, f"GitHub's secondary rate limit: retry after {seconds:.0f} s")
    return None


def _int(value: str | None) -> int:
    return int(value) if value and value.strip().isdigit() else 0


def _when(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _checked(token: str | None) -> str | None:
    """The token, if it can go into a header (a newline would split the request)."""
    if token is not None and (not token or not token.isprintable() or " " in token):
        raise Refused("The GitHub token is empty or contains invalid characters", 401)
    return token


def segment(value: str | int) -> str:
    """One path segment, percent-encoded (GitHub's spec requires it)."""
    return quote(str(value), safe="")


def decode_json(data: bytes, kind: type = object) -> Any:
    """A 2xx answer's JSON body; a body that is not JSON (of `kind`) is GitHub failing us,
    not a bug of ours: `Unavailable`, so the caller answers 503 and never a traceback."""
    try:
        value = json.loads(data)
    except ValueError:
        raise Unavailable("GitHub answered with a body that is not JSON", 502) from None
    if not isinstance(value, kind):
        raise Unavailable(f"GitHub answered with JSON that is not a {kind.__name__}", 502)
    return value


def github_message(data: bytes) -> str:
    """GitHub's error message with its validation details, shortened for one log line."""
    try:
        body = json.loads(data)
    except ValueError:
        return data[:200].decode("utf-8", "replace").strip() or "(no message)"
    if not isinstance(body, dict):
        return "(no message)"
    parts = [str(body.get("message", "(no message)")).replace("\n", " ")]
    for item in body.get("errors") or ():
        if isinstance(item, dict):
            text = f"{item.get('resource')}.{item.get('field')} {item.get('code')}"
            parts.append(f"{text}: {item['message']}" if item.get("message") else text)
    return "; ".join(parts)[:300]


class GitHubCore:
    """GitHub's REST API for one token over one pooled transport: the calls, not the resources."""

    def __init__(
        self,
        token: str | None,
        api_url: str = "https://api.github.com",
        uploads_url: str = "https://uploads.github.com",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_rate_limit_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self._token = _checked(token)
        self.api_url = api_url.rstrip("/")
        self.uploads_url = uploads_url.rstrip("/")
        policy = RetryPolicy(attempts=retries + 1, backoff=backoff, max_wait=max_rate_limit_wait)
        self._transport = Transport(timeout=timeout, policy=policy, sleep=sleep, pool=pool)
        self._clock = clock
        self._owns_transport = True
        self._blocked_until = 0.0  # primary limit used up: fail fast until it resets

    def with_token(self: _Core, token: str | None) -> _Core:
        """A client for another token sharing this one's connection pool (and not closing it)."""
        other = copy.copy(self)
        other._token = _checked(token)
        other._owns_transport = False
        other._blocked_until = 0.0  # GitHub's primary limit is per user
        return other

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()

    def __enter__(self: _Core) -> _Core:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "<set>" if self._token else "None"
        return f"{type(self).__name__}(api_url={self.api_url!r}, token={token})"

    # -- one call --------------------------------------------------------------------------

    def _headers(self, accept: str, etag: str | None = None) -> dict[str, str]:
        headers = {
            "Accept": accept,
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": f"pywharf/{__version__}",
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if etag:
            headers["If-None-Match"] = etag
        return headers

    def _url(self, path: str, params: Mapping[str, str | int] | None = None) -> str:
        url = path if path.startswith(("https://", "http://")) else self.api_url + path
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, quote_via=quote)
        return url

    def _send(
        self,
        method: str,
        url: str,
        *,
        accept: str = JSON,
        json_body: Any = None,
        body: RequestPayload = None,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        idempotent: bool | None = None,
        redirects: int = 5,
        stream: bool = False,
    ) -> ClientResponse:
        """One API call with our headers; returns whatever status GitHub answered."""
        if self._blocked_until > self._clock():
            raise Unavailable(f"GitHub's rate limit is used up until {_when(self._blocked_until)}")
        sent = {**self._headers(accept, etag), **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json; charset=utf-8"
        if idempotent is None:
            # RFC 9110 idempotent methods; POST and PATCH only when the caller says so.
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        response = self._transport.request(
            method, url, headers=sent, body=body, idempotent=idempotent, redirects=redirects,
            stream=stream, advisor=self._advise,
        )  # fmt: skip
        remaining = response.headers.get("x-ratelimit-remaining", "?")
        log.debug("GitHub %s %s -> %d (%s calls left)", method, redact_url(url),
                  response.status, remaining)  # fmt: skip
        return response

    def _advise(self, response: ClientResponse, attempt: int) -> Wait | None:
        now = self._clock()
        if response.headers.get("x-ratelimit-remaining") == "0":
            self._blocked_until = float(_int(response.headers.get("x-ratelimit-reset")))
        return rate_limit_wait(response, attempt, now)

    def _json(
        self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Any:
        """Call and decode the JSON answer, or raise the error that fits GitHub's answer."""
        response = self._send(method, self._url(path), **kwargs)
        if response.status not in ok:
            raise self._error(response, what)
        return decode_json(response.data) if response.data else None

    def _error(self, response: ClientResponse, what: str) -> ClientError:
        """Our exception for a GitHub answer we did not expect; `what` names the action."""
        status = response.status
        detail = self._scrub(f"{status} {github_message(response.data)}")
        if status == 401:
            return Refused(f"GitHub rejected the token ({detail}) to {what}", status)
        if status == 403:
            return Refused(
                f"GitHub refused to {what} ({detail}): the token lacks a permission or scope",
                status,
            )
        if status == 404:
            return ResourceNotFound(
                f"GitHub could not {what} ({detail}): it does not exist or the token cannot see it",
                status,
            )
        if status in (409, 412):
            return Conflict(f"GitHub could not {what} ({detail})", status)
        if status >= 500:
            return Unavailable(f"GitHub failed to {what} ({detail})", status)
        return ClientError(f"GitHub could not {what} ({detail})", status)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

    # -- generic calls ---------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        accept: str = JSON,
        etag: str | None = None,
    ) -> Any:
        """Any JSON API call: the decoded answer, or None for 204 and 304 (unchanged)."""
        return self._json(
            method, self._url(path, params), f"{method} {path}", ok=(200, 201, 204, 304),
            json_body=json_body, accept=accept, etag=etag,
        )  # fmt: skip

    def paginate(self, path: str, params: Mapping[str, str | int] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, page after page, following `Link: rel="next"`."""
        url: str | None = self._url(path, params)
        while url is not None:
            response = self._send("GET", url)
            if response.status != 200:
                raise self._error(response, f"list {redact_url(url)}")
            yield from decode_json(response.data, list)
            url = self._next_page(response)

    def _next_page(self, response: ClientResponse) -> str | None:
        match = _LINK_NEXT.search(response.headers.get("link", ""))
        if match is None:
            return None
        # Follow GitHub's link verbatim (it may change the path), but never off the API host.
        if origin(match.group(1)) != origin(self.api_url):
            raise ClientError(f"GitHub's next page is on another host: {redact_url(match[1])}")
        return match.group(1)

    def stream(self, path: str, *, accept: str = OCTET) -> Stream:
        """An open GET body, following redirects; off the API origin without the token."""
        response = self._send("GET", self._url(path), accept=accept, stream=True)
        if response.stream is None:
            raise self._error(response, f"download {redact_url(response.url)}")
        return response.stream
