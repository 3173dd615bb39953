"""The application: routes a `Request` to a `Response`. It does not know the server.

Handlers raise; `error_response` is the one place an exception becomes an HTTP answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote
from urllib.parse import urlencode

from pywharf.auth import Permission
from pywharf.backends import LocalFile
from pywharf.backends import Redirect
from pywharf.dists import canonicalize_name
from pywharf.errors import AuthenticationRequired
from pywharf.errors import BadRequest
from pywharf.errors import Forbidden
from pywharf.errors import MethodNotAllowed
from pywharf.errors import NotFound
from pywharf.errors import PywharfError
from pywharf.errors import RequestError
from pywharf.errors import SeeOther
from pywharf.errors import StorageError
from pywharf.http import JSON
from pywharf.http import FileBody
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import accepts_gzip
from pywharf.http import http_date
from pywharf.http import negotiate
from pywharf.http import parse_basic_auth
from pywharf.http import parse_range
from pywharf.http import prefers_html
from pywharf.http import read_form
from pywharf.http import read_form_fields
from pywharf.index import FileRecord
from pywharf.login import login_form
from pywharf.login import login_redirect
from pywharf.login import logout
from pywharf.login import submit_login
from pywharf.pages import Page
from pywharf.repository import Repository
from pywharf.session import SESSION_COOKIE
from pywharf.session import SessionKeys
from pywharf.session import parse_cookies
from pywharf.upload import Spools
from pywharf.upload import receive_upload

__all__ = ["App", "error_response"]

log = logging.getLogger("pywharf")


class Initializer(Protocol):
    """Who may re-initialize the server, and how (the service implements it)."""

    def authorize_initialize(self, password: str | None) -> None: ...

    def initialize(self, config_text: str, admin_text: str | None) -> list[str]: ...


# Pages change with every upload: clients may keep them but must revalidate (a cheap 304).
PAGE_CACHE_CONTROL = "private, no-cache"
# Files are immutable: a filename is never reused with other bytes.
FILE_CACHE_CONTROL = "private, max-age=31536000, immutable"
_READ = ("GET", "HEAD")
_REALM = "pywharf"


def _text(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *headers],
        (message + "\n").encode(),
        reason=_reason(message),
    )


def _reason(message: str) -> str:
    """The message as a reason phrase: one Latin-1 line (twine prints it)."""
    line = message.splitlines()[0] if message else ""
    return line.encode("latin-1", "replace").decode("latin-1")[:200]


def error_response(error: BaseException) -> Response:
    """Turn an exception into the response that answers it; the only place that does."""
    if isinstance(error, RequestError):
        response = _text(error.status, str(error), error.headers)
        response.close = error.close_connection
        return response
    if isinstance(error, StorageError):
        return _text(error.status, str(error))
    if isinstance(error, PywharfError):
        return _text(400, str(error))
    log.error("internal error", exc_info=error)  # the traceback goes to the log, never out
    response = _text(500, "Internal server error; the server log has the details.")
    response.close = True
    return response


def _query(request: Request) -> str:
    """The query to carry over a redirect (`?format=` must survive it)."""
    return "?" + urlencode(request.query) if request.query else ""


def _redirect(location: str, status: int = 301) -> Response:
    return Response(status, [("Location", location), ("Content-Length", "0")], b"")


class App:
    """Routes requests for a set of repositories, chosen by the Basic-auth username."""

    def __init__(
        self,
        repositories: Mapping[str, Repository],
        extra_index_url: str = "",
        initializer: Initializer | None = None,
        sessions: SessionKeys | None = None,
    ) -> None:
        self.repositories = dict(repositories)  # replaced whole, never changed in place
        self.extra_index_url = extra_index_url.rstrip("/") + "/" if extra_index_url else ""
        self.initializer = initializer
        self.sessions = sessions
        self.spools = Spools()

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Exception as error:  # the one place a failure becomes an answer
            return error_response(error)

    # --- routing -----------------------------------------------------------------------------

    def _route(self, request: Request) -> Response:
        path = request.path
        if path in ("/simple", "/legacy"):
            if request.method == "POST":  # never redirect an upload: twine treats 3xx as failure
                return self._upload(request)
            return _redirect(path + "/" + _query(request))
        if path in ("/simple/", "/legacy/"):
            if request.method == "POST":
                return self._upload(request)
            return self._root(request)
        if path.startswith("/simple/"):
            return self._simple(request, path[len("/simple/") :].split("/"))
        if path in ("/login/", "/logout/", "/initialize/"):
            return self._session_route(request, path)
        if path.startswith("/api/"):
            return self._manage(request, path[len("/api/") :].split("/"))
        if path == "/index_mtime/":
            repository = self._authorized(request, Permission.READ, _READ)
            return _text(200, str(repository.index_mtime))
        if path == "/":
            return self._home(request)
        raise NotFound(f"no page at {path}")

    def _simple(self, request: Request, parts: list[str]) -> Response:
        name = parts[0]
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
            repository = self._authorized(request, Permission.READ, _READ)
            normalized = canonicalize_name(name)
            if len(parts) == 1 or normalized != name:  # one hop to the canonical URL
                return _redirect(f"/simple/{quote(normalized)}/{_query(request)}")
            return self._project(request, repository, normalized)
        if len(parts) == 2:
            repository = self._authorized(request, Permission.READ, _READ)
            return self._file(request, repository, canonicalize_name(name), parts[1])
        raise NotFound(f"no page at {request.path}")

    def _authorized(
        self, request: Request, needed: Permission, methods: tuple[str, ...]
    ) -> Repository:
        """The repository named by the credentials; 401 before any lookup, so nothing leaks."""
        credentials = parse_basic_auth(request.header("authorization"))
        if credentials is None:
            return self._from_session(request, needed, methods)
        user, secret = credentials
        repository = self.repositories.get(user.lower())
        granted = repository.permission(secret, needed) if repository else Permission.NONE
        if repository is None or granted < Permission.READ:
            raise AuthenticationRequired("Unknown repository or wrong secret", _REALM)
        if granted < needed:
            raise Forbidden(f"This secret of {repository.name!r} can read but not upload or change")
        if request.method not in methods:
            raise MethodNotAllowed(request.method, methods)
        return repository

    def _from_session(
        self, request: Request, needed: Permission, methods: tuple[str, ...]
    ) -> Repository:
        """A browser's session (read only); a browser without one goes to the login page."""
        cookie = parse_cookies(request.header("cookie")).get(SESSION_COOKIE)
        session = self.sessions.check(cookie) if self.sessions and cookie else None
        repository = self.repositories.get(session.repository) if session else None
        if repository is not None and session and session.epoch != repository.epoch:
            repository = None  # reconfigured since the login: its secrets may have changed
        if repository is not None and needed is Permission.READ and request.method in methods:
            return repository
        if self.sessions and request.method == "GET" and prefers_html(request.header("accept")):
            raise SeeOther(login_redirect(request))
        raise AuthenticationRequired(
            "Authentication required: the username is the repository name, the password its secret",
            _REALM,
        )

    # --- login and /initialize/ --------------------------------------------------------------

    def _check_secret(self, name: str, secret: str) -> tuple[Permission, str]:
        """The permission of a login, and the configuration it was granted under."""
        repository = self.repositories.get(name)
        if repository is None:
            return Permission.NONE, ""
        return repository.permission(secret, Permission.READ), repository.epoch

    def _session_route(self, request: Request, path: str) -> Response:
        if path == "/initialize/":
            return self._initialize(request)
        if self.sessions is None:
            raise NotFound("browser login is not enabled")
        if path == "/logout/":
            return logout(request)
        if request.method == "POST":
            return submit_login(request, self.sessions, self._check_secret)
        if request.method not in _READ:
            raise MethodNotAllowed(request.method, (*_READ, "POST"))
        return login_form(request, self.sessions)

    def _initialize(self, request: Request) -> Response:
        """The original's run-time reconfiguration, now authorized (see Service)."""
        if self.initializer is None:
            raise NotFound("this server cannot be re-initialized")
        if request.method != "POST":
            raise MethodNotAllowed(request.method, ("POST",))
        credentials = parse_basic_auth(request.header("authorization"))
        self.initializer.authorize_initialize(credentials[1] if credentials else None)
        fields = read_form_fields(request)
        if not fields.get("config"):
            raise BadRequest("the form needs a 'config' field (TOML text or a file part)")
        names = self.initializer.initialize(fields["config"], fields.get("admin_secret") or None)
        return _text(200, f"Done: serving {', '.join(names)}")

    # --- pages -------------------------------------------------------------------------------

    def _home(self, request: Request) -> Response:
        if request.method not in _READ:
            raise MethodNotAllowed(request.method, _READ)
        return _text(200, "pywharf: a private package index. The index is at /simple/.")

    def _root(self, request: Request) -> Response:
        repository = self._authorized(request, Permission.READ, _READ)
        media = negotiate(request.header("accept"), request.query.get("format"))
        page = repository.renderer.root(repository.index.listing, media == JSON)
        return _page_response(request, page, media, repository.name)

    def _project(self, request: Request, repository: Repository, name: str) -> Response:
        project = repository.index.project(name)  # type: ignore[arg-type]
        if project is None and self.extra_index_url:
            # Only for projects we lack: a local project is never shadowed by the extra index.
            # 302, not 301: pip caches a 301 forever, and the project may be uploaded later.
            return _redirect(f"{self.extra_index_url}{quote(name)}/", 302)
        if project is None:
            raise NotFound(f"project {name!r} is not in repository {repository.name!r}")
        media = negotiate(request.header("accept"), request.query.get("format"))
        page = repository.renderer.project(project, media == JSON)
        return _page_response(request, page, media, repository.name)

    # --- files -------------------------------------------------------------------------------

    def _file(
        self, request: Request, repository: Repository, project: str, filename: str
    ) -> Response:
        record = repository.index.file(project, filename)  # type: ignore[arg-type]
        opener: Callable[[FileRecord], LocalFile | Redirect] = repository.backend.open
        if record is None and filename.endswith(".metadata"):
            record = repository.index.file(project, filename.removesuffix(".metadata"))  # type: ignore[arg-type]
            if record is None or record.metadata_sha256 is None:
                raise NotFound(f"no metadata for {filename!r}")
            opener = repository.backend.open_metadata
            etag = f'"{record.metadata_sha256}"'
        elif record is None:
            raise NotFound(f"{filename!r} is not in project {project!r}")
        else:
            etag = f'"{record.sha256}"'
        target = opener(record)
        if isinstance(target, Redirect):
            return Response(
                302, [("Location", target.url), ("Content-Length", "0")], user=repository.name
            )
        return _file_response(request, target, etag, record.upload_time, repository.name)

    # --- management: yank, un-yank, delete ---------------------------------------------------

    def _manage(self, request: Request, parts: list[str]) -> Response:
        """`POST /api/yank|unyank/<project>/<version or filename>` (form field `reason`),
        `DELETE /api/files/<project>/<filename>`; all need the write secret."""
        if len(parts) != 3 or parts[0] not in ("yank", "unyank", "files"):
            raise NotFound(f"no page at {request.path}")
        action, project, target = parts
        method = "DELETE" if action == "files" else "POST"
        repository = self._authorized(request, Permission.WRITE, (method,))
        secret = _secret(request)
        if action == "files":
            changed = repository.delete(canonicalize_name(project), target, secret)
        else:
            reason = read_form(request).get("reason", "") if action == "yank" else None
            changed = repository.yank(canonicalize_name(project), target, reason, secret)
        response = _text(200, "\n".join(f"{action}: {name}" for name in changed))
        response.user = repository.name
        return response

    # --- uploads -----------------------------------------------------------------------------

    def _upload(self, request: Request) -> Response:
        repository = self._authorized(request, Permission.WRITE, ("POST",))
        backend = repository.backend
        with receive_upload(
            request, backend.spool_dir, backend.max_file_bytes, self.spools
        ) as upload:
            record = repository.store(upload, _secret(request))
        log.info("stored %s in %s", record.filename, repository.name)
        response = _text(200, f"OK: {record.filename}")
        response.user = repository.name
        return response


def _secret(request: Request) -> str:
    """The Basic-auth password of a request that `_authorized` let write."""
    credentials = parse_basic_auth(request.header("authorization"))
    return credentials[1] if credentials else ""


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    return header.strip() == "*" or etag in (
        tag.strip().removeprefix("W/") for tag in header.split(",")
    )


def _page_response(request: Request, page: Page, media: str, user: str) -> Response:
    packed = page.compressible and accepts_gzip(request.header("accept-encoding"))
    etag = f'"{page.etag}-{"j" if media == JSON else "h"}{"z" if packed else ""}"'
    headers = [
        ("ETag", etag),
        ("Vary", "Accept, Accept-Encoding"),
        ("Cache-Control", PAGE_CACHE_CONTROL),
    ]
    if _matches(request.header("if-none-match"), etag):
        return Response(304, headers, user=user)
    content_type = media if media == JSON else f"{media}; charset=utf-8"
    headers.append(("Content-Type", content_type))
    if packed:
        headers.append(("Content-Encoding", "gzip"))
    body = page.gzipped() if packed else page.body
    return Response(200, headers, body, user=user)


def _file_response(
    request: Request, target: LocalFile, etag: str, mtime: float, user: str
) -> Response:
    headers = [
        ("ETag", etag),
        ("Last-Modified", http_date(mtime)),
        ("Cache-Control", FILE_CACHE_CONTROL),
        ("Accept-Ranges", "bytes"),
    ]
    if _matches(request.header("if-none-match"), etag):
        return Response(304, headers, user=user)
    headers.append(("Content-Type", "application/octet-stream"))
    if_range = request.header("if-range")
    byte_range = parse_range(request.header("range"), target.size)
    if byte_range is None or (if_range is not None and if_range.strip() != etag):
        return Response(200, headers, FileBody(target.path, 0, target.size), user=user)
    first, last = byte_range
    headers.append(("Content-Range", f"bytes {first}-{last}/{target.size}"))
    return Response(206, headers, FileBody(target.path, first, last - first + 1), user=user)
