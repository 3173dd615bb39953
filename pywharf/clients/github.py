"""Our GitHub REST client: the calls the GitHub backend makes, and nothing else.

Rules from GitHub's docs (see shared/reference/github-rest-subset.md): follow the URLs GitHub
hands out instead of building them, page through `Link: rel="next"`, send `If-None-Match`
(a 304 costs no rate limit), wait as the rate-limit headers say, and never send the token to
the signed download host. The token never appears in a log, repr or error message.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import re
import time
from collections.abc import Iterator
from collections.abc import Mapping
from typing import IO
from typing import Any
from typing import Callable
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urljoin

import urllib3

from pywharf import __version__
from pywharf.clients.github_models import Asset
from pywharf.clients.github_models import FileCommit
from pywharf.clients.github_models import RawContents
from pywharf.clients.github_models import Ref
from pywharf.clients.github_models import Release
from pywharf.clients.github_models import Repository
from pywharf.clients.github_models import User
from pywharf.clients.github_models import git_blob_sha
from pywharf.clients.http import Body
from pywharf.clients.http import LimitedReader
from pywharf.clients.http import Response
from pywharf.clients.http import RetryPolicy
from pywharf.clients.http import Stream
from pywharf.clients.http import Transport
from pywharf.clients.http import Wait
from pywharf.clients.http import origin
from pywharf.clients.http import redact_url
from pywharf.errors import ContentConflict
from pywharf.errors import CredentialRefused
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable

__all__ = ["GitHubClient", "rate_limit_wait"]

log = logging.getLogger(__name__)

JSON = "application/vnd.github+json"
RAW = "application/vnd.github.raw+json"  # file bytes, up to 100 MB (JSON stops at 1 MB)
OBJECT = "application/vnd.github.object+json"  # metadata without the content over 1 MB
OCTET = "application/octet-stream"
API_VERSION = "2022-11-28"
SECONDARY_LIMIT_PAUSE = 60.0  # GitHub: "wait at least one minute" without other advice
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


def rate_limit_wait(response: Response, attempt: int, now: float) -> Wait | None:
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
        raise StorageUnavailable("The GitHub token is empty or contains invalid characters")
    return token


def _q(segment: str | int) -> str:
    """One path segment, percent-encoded (GitHub's spec requires it)."""
    return quote(str(segment), safe="")


class GitHubClient:
    """GitHub's REST API for one token, over one pooled transport."""

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

    def with_token(self, token: str | None) -> GitHubClient:
        """A client for another token sharing this one's connection pool (and not closing it)."""
        other = copy.copy(self)
        other._token = _checked(token)
        other._owns_transport = False
        other._blocked_until = 0.0  # GitHub's primary limit is per user
        return other

    def close(self) -> None:
        if self._owns_transport:
            self._transport.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "<set>" if self._token else "None"
        return f"GitHubClient(api_url={self.api_url!r}, token={token})"

    # -- the low-level call ----------------------------------------------------------------

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
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        idempotent: bool | None = None,
        redirects: int = 5,
        stream: bool = False,
    ) -> Response:
        """One API call with our headers; returns whatever status GitHub answered."""
        if self._blocked_until > self._clock():
            raise StorageUnavailable(
                f"GitHub's rate limit is used up until {_when(self._blocked_until)}"
            )
        sent = {**self._headers(accept, etag), **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            sent["Content-Type"] = "application/json; charset=utf-8"
        if idempotent is None:
            # RFC 9110 idempotent methods; POST and PATCH only when the caller says so.
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        response = self._transport.request(
            method,
            url,
            headers=sent,
            body=body,
            idempotent=idempotent,
            redirects=redirects,
            stream=stream,
            advisor=self._advise,
        )
        remaining = response.headers.get("x-ratelimit-remaining", "?")
        log.debug(
            "GitHub %s %s -> %d (%s calls left)",
            method,
            redact_url(url),
            response.status,
            remaining,
        )
        return response

    def _advise(self, response: Response, attempt: int) -> Wait | None:
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
        return json.loads(response.data) if response.data else None

    def _error(self, response: Response, what: str) -> StorageError:
        """Our exception for a GitHub answer we did not expect; `what` names the action."""
        status = response.status
        detail = self._scrub(f"{status} {_message(response.data)}")
        if status == 401:
            return CredentialRefused(f"GitHub rejected the token ({detail}) to {what}")
        if status == 403:
            return CredentialRefused(
                f"GitHub refused to {what} ({detail}): the token lacks a permission or scope"
            )
        if status == 404:
            return StorageNotFound(
                f"GitHub could not {what} ({detail}): it does not exist or the token cannot see it"
            )
        if status >= 500:
            return StorageUnavailable(f"GitHub failed to {what} ({detail})")
        return StorageError(f"GitHub could not {what} ({detail})")

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<token>") if self._token else text

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
        what = f"{method} {path}"
        return self._json(
            method,
            self._url(path, params),
            what,
            ok=(200, 201, 204, 304),
            json_body=json_body,
            accept=accept,
            etag=etag,
        )

    def paginate(self, path: str, params: Mapping[str, str | int] | None = None) -> Iterator[Any]:
        """Every item of a list endpoint, page after page, following `Link: rel="next"`."""
        url: str | None = self._url(path, params)
        while url is not None:
            response = self._send("GET", url)
            if response.status != 200:
                raise self._error(response, f"list {redact_url(url)}")
            yield from json.loads(response.data)
            url = self._next_page(response)

    def _next_page(self, response: Response) -> str | None:
        match = _LINK_NEXT.search(response.headers.get("link", ""))
        if match is None:
            return None
        # Follow GitHub's link verbatim (it may change the path), but never off the API host.
        if origin(match.group(1)) != origin(self.api_url):
            raise StorageError(f"GitHub's next page is on another host: {redact_url(match[1])}")
        return match.group(1)

    # -- identity and repositories ---------------------------------------------------------

    def get_user(self) -> User:
        return User.from_json(self._json("GET", "/user", "identify the token's user"))

    def get_repo(self, owner: str, repo: str) -> Repository:
        data = self._json("GET", f"/repos/{_q(owner)}/{_q(repo)}", f"read {owner}/{repo}")
        return Repository.from_json(data)

    def create_repo(
        self,
        owner: str | None,
        name: str,
        *,
        private: bool = True,
        description: str = "",
        auto_init: bool = True,
    ) -> Repository:
        """Create a repository for the token's user (owner None) or for an organization."""
        path = "/user/repos" if owner is None else f"/orgs/{_q(owner)}/repos"
        body = {
            "name": name,
            "private": private,
            "description": description,
            "auto_init": auto_init,
            "has_issues": False,
            "has_wiki": False,
            "has_projects": False,
        }
        data = self._json("POST", path, f"create repository {name!r}", ok=(201,), json_body=body)
        return Repository.from_json(data)

    def update_repo(
        self,
        owner: str,
        repo: str,
        *,
        default_branch: str | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> Repository:
        changes = {"default_branch": default_branch, "name": name, "description": description}
        body = {key: value for key, value in changes.items() if value is not None}
        # Setting absolute values: repeating the PATCH changes nothing, so retrying is safe.
        data = self._json(
            "PATCH",
            f"/repos/{_q(owner)}/{_q(repo)}",
            f"update {owner}/{repo}",
            json_body=body,
            idempotent=True,
        )
        return Repository.from_json(data)

    def get_ref(self, owner: str, repo: str, ref: str) -> Ref:
        """A ref such as "heads/main"; StorageNotFound if missing or the repository is empty."""
        what = f"read ref {ref!r} of {owner}/{repo}"
        response = self._send(
            "GET", self._url(f"/repos/{_q(owner)}/{_q(repo)}/git/ref/{quote(ref, safe='/')}")
        )
        if response.status == 409:
            raise StorageNotFound(f"GitHub could not {what}: the repository is empty")
        if response.status != 200:
            raise self._error(response, what)
        return Ref.from_json(json.loads(response.data))

    def delete_tag(self, owner: str, repo: str, tag: str) -> None:
        """Delete a git tag (deleting its release leaves it)."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/git/refs/tags/{_q(tag)}"
        self._json("DELETE", path, f"delete tag {tag!r} of {owner}/{repo}", ok=(204,))

    def create_ref(self, owner: str, repo: str, ref: str, sha: str) -> Ref:
        """Create `ref` (a full name such as "refs/heads/gh-pages") at commit `sha`."""
        data = self._json(
            "POST",
            f"/repos/{_q(owner)}/{_q(repo)}/git/refs",
            f"create ref {ref!r} in {owner}/{repo}",
            ok=(201,),
            json_body={"ref": ref, "sha": sha},
        )
        return Ref.from_json(data)

    # -- releases --------------------------------------------------------------------------

    def list_releases(self, owner: str, repo: str, *, per_page: int = 100) -> list[Release]:
        """All releases, all pages (drafts included when the token can push)."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases"
        return [Release.from_json(item) for item in self.paginate(path, {"per_page": per_page})]

    def get_release(self, owner: str, repo: str, release_id: int) -> Release:
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/{release_id}"
        return Release.from_json(self._json("GET", path, f"read release {release_id}"))

    def get_release_by_tag(self, owner: str, repo: str, tag: str) -> Release:
        """The published release with this tag (GitHub hides drafts here: 404)."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/tags/{_q(tag)}"
        return Release.from_json(self._json("GET", path, f"read release {tag!r}"))

    def create_release(
        self,
        owner: str,
        repo: str,
        tag_name: str,
        *,
        name: str | None = None,
        body: str = "",
        draft: bool = True,
        prerelease: bool = False,
        target_commitish: str | None = None,
    ) -> Release:
        """Create a release; DistributionExists if a release already has this tag."""
        payload: dict[str, Any] = {
            "tag_name": tag_name,
            "name": name or tag_name,
            "body": body,
            "draft": draft,
            "prerelease": prerelease,
        }
        if target_commitish:
            payload["target_commitish"] = target_commitish
        what = f"create release {tag_name!r} in {owner}/{repo}"
        response = self._send(
            "POST", self._url(f"/repos/{_q(owner)}/{_q(repo)}/releases"), json_body=payload
        )
        if response.status == 422 and _already_exists(response.data, "tag_name"):
            raise DistributionExists(tag_name)
        if response.status != 201:
            raise self._error(response, what)
        return Release.from_json(json.loads(response.data))

    def update_release(
        self,
        owner: str,
        repo: str,
        release_id: int,
        *,
        tag_name: str | None = None,
        name: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> Release:
        """Change a release; `draft=False` publishes it (and creates its tag)."""
        changes = {"tag_name": tag_name, "name": name, "body": body, "draft": draft}
        payload = {key: value for key, value in changes.items() if value is not None}
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/{release_id}"
        # Absolute values again: a repeated PATCH is harmless, so it may be retried.
        data = self._json(
            "PATCH", path, f"update release {release_id}", json_body=payload, idempotent=True
        )
        return Release.from_json(data)

    def delete_release(self, owner: str, repo: str, release_id: int) -> None:
        """Delete a release and its assets (its git tag stays). A retried call may 404."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/{release_id}"
        self._json("DELETE", path, f"delete release {release_id}", ok=(204,))

    # -- assets ----------------------------------------------------------------------------

    def list_release_assets(self, owner: str, repo: str, release_id: int) -> list[Asset]:
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/{release_id}/assets"
        return [Asset.from_json(item) for item in self.paginate(path, {"per_page": 100})]

    def get_asset(self, owner: str, repo: str, asset_id: int) -> Asset:
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/assets/{asset_id}"
        return Asset.from_json(self._json("GET", path, f"read asset {asset_id}"))

    def upload_asset(
        self,
        upload_url: str,
        name: str,
        fileobj: IO[bytes],
        size: int,
        content_type: str = OCTET,
        *,
        label: str | None = None,
    ) -> Asset:
        """Stream `size` bytes from `fileobj` as a new asset; DistributionExists on a dup name.

        `upload_url` is the release's own (GitHub says: do not build it). GitHub may rename
        the asset (special characters become "."): compare with the returned `name`.
        """
        base = upload_url.split("{", 1)[0]  # drop the RFC 6570 "{?name,label}" template
        if origin(base) not in (origin(self.uploads_url), origin(self.api_url)):
            raise StorageError(
                f"Refusing to upload to {redact_url(base)}: not the configured uploads_url"
            )
        query = {"name": name, **({"label": label} if label else {})}
        # quote, not quote_plus: a "+" must arrive as %2B or GitHub reads it as a space.
        url = f"{base}?{urlencode(query, quote_via=quote)}"
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        response = self._send("POST", url, body=LimitedReader(fileobj, size), headers=headers)
        if response.status == 422 and _already_exists(response.data, "name"):
            raise DistributionExists(name)
        if response.status != 201:
            raise self._error(response, f"upload asset {name!r}")
        return Asset.from_json(json.loads(response.data))

    def delete_asset(self, owner: str, repo: str, asset_id: int) -> None:
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/assets/{asset_id}"
        self._json("DELETE", path, f"delete asset {asset_id}", ok=(204,))

    def asset_download_url(self, owner: str, repo: str, asset_id: int) -> str | None:
        """The short-lived signed URL GitHub redirects to; None if GitHub serves bytes itself."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/assets/{asset_id}"
        response = self._send("GET", self._url(path), accept=OCTET, redirects=0, stream=True)
        if response.stream is not None:
            response.stream.close()  # a 200: the API streams the bytes (allowed by the spec)
            return None
        location = response.headers.get("location")
        if response.status in (301, 302, 307) and location:
            return urljoin(response.url, location)
        raise self._error(response, f"download asset {asset_id}")

    def stream_asset(self, owner: str, repo: str, asset_id: int) -> Stream:
        """An open download of the asset's bytes; the redirect is followed without our token."""
        path = f"/repos/{_q(owner)}/{_q(repo)}/releases/assets/{asset_id}"
        return self.stream(path, accept=OCTET)

    def stream(self, path: str, *, accept: str = OCTET) -> Stream:
        """An open GET body, following redirects; off the API origin without the token."""
        response = self._send("GET", self._url(path), accept=accept, stream=True)
        if response.stream is None:
            raise self._error(response, f"download {redact_url(response.url)}")
        return response.stream

    # -- contents --------------------------------------------------------------------------

    def _contents_url(self, owner: str, repo: str, path: str, ref: str | None) -> str:
        url = f"/repos/{_q(owner)}/{_q(repo)}/contents/{quote(path, safe='/')}"
        return self._url(url, {"ref": ref} if ref else None)

    def get_contents_raw(
        self, owner: str, repo: str, path: str, ref: str | None = None, etag: str | None = None
    ) -> RawContents | None:
        """A file's bytes (up to GitHub's 100 MB), or None when `etag` still matches (304)."""
        url = self._contents_url(owner, repo, path, ref)
        response = self._send("GET", url, accept=RAW, etag=etag)
        if response.status == 304:
            return None
        if response.status != 200:
            raise self._error(response, f"read {path!r} of {owner}/{repo}")
        data = response.data
        return RawContents(data, response.headers.get("etag"), git_blob_sha(data))

    def get_content_sha(self, owner: str, repo: str, path: str, ref: str | None = None) -> str:
        """A file's blob sha without its bytes (the object media type omits big content)."""
        url = self._contents_url(owner, repo, path, ref)
        data = self._json("GET", url, f"read {path!r} of {owner}/{repo}", accept=OBJECT)
        if not isinstance(data, dict) or data.get("type") != "file":
            raise StorageError(f"GitHub: {path!r} in {owner}/{repo} is not a file")
        return str(data["sha"])

    def put_contents(
        self,
        owner: str,
        repo: str,
        path: str,
        content: bytes,
        message: str,
        *,
        branch: str | None = None,
        sha: str | None = None,
    ) -> FileCommit:
        """Create (sha None) or replace the file whose blob sha is `sha`.

        ContentConflict when someone else wrote first: re-read, merge, retry. A retried PUT
        whose first try went through also ends in ContentConflict, and the re-read shows it.
        """
        payload = {"message": message, "content": base64.b64encode(content).decode()}
        payload.update({"branch": branch} if branch else {})
        payload.update({"sha": sha} if sha else {})
        response = self._send("PUT", self._contents_url(owner, repo, path, None), json_body=payload)
        if response.status in (200, 201):
            return FileCommit.from_json(json.loads(response.data), response.status == 201)
        if response.status == 409 or (response.status == 422 and b"sha" in response.data):
            detail = self._scrub(_message(response.data))
            raise ContentConflict(f"{path!r} in {owner}/{repo} changed meanwhile ({detail})")
        raise self._error(response, f"write {path!r} of {owner}/{repo}")


def _message(data: bytes) -> str:
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


def _already_exists(data: bytes, field: str) -> bool:
    """Whether a 422 says a release tag or asset name is taken."""
    try:
        errors = json.loads(data).get("errors") or ()
    except (ValueError, AttributeError):
        return False
    return any(
        isinstance(item, dict)
        and item.get("code") == "already_exists"
        and item.get("field") == field
        for item in errors
    )
