"""The application: routes a `Request` to a `Response`. It does not know the server.

Handlers raise; `error_response` is the one place an exception becomes an HTTP answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Protocol
from urllib.parse import quote

from pywharf import ops
from pywharf import package_api
from pywharf import web
from pywharf.audit import AuditLog
from pywharf.audit import client_address
from pywharf.auth import FailureThrottle
from pywharf.auth import Permission
from pywharf.dists import NormalizedName
from pywharf.dists import canonicalize_name
from pywharf.errors import AuthenticationRequired
from pywharf.errors import BadRequest
from pywharf.errors import Forbidden
from pywharf.errors import NotFound
from pywharf.errors import PywharfError
from pywharf.errors import RequestError
from pywharf.errors import SeeOther
from pywharf.errors import StorageError
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import parse_basic_auth
from pywharf.http import prefers_html
from pywharf.http import read_body
from pywharf.http import read_form_fields
from pywharf.login import login_form
from pywharf.login import login_redirect
from pywharf.login import logout
from pywharf.login import submit_login
from pywharf.metrics import Metrics
from pywharf.provenance import Identity
from pywharf.repository import SECRET_GRANTS
from pywharf.repository import Repository
from pywharf.responses import json_response
from pywharf.responses import query_suffix
from pywharf.responses import redirect
from pywharf.responses import text_response
from pywharf.routes import Match
from pywharf.routes import Route
from pywharf.routes import RouteTable
from pywharf.session import SESSION_COOKIE
from pywharf.session import Session
from pywharf.session import SessionKeys
from pywharf.session import parse_cookies
from pywharf.tokens import MINTED_PREFIX
from pywharf.tokens import Grant
from pywharf.trusted import TrustedPublishing
from pywharf.upload import Spools

__all__ = ["ROUTES", "App", "Call", "error_response"]

log = logging.getLogger("pywharf")


class Initializer(Protocol):
    """Who may re-initialize the server, and how (the service implements it)."""

    def authorize_initialize(self, password: str | None) -> None: ...

    def initialize(self, config_text: str, admin_text: str | None) -> list[str]: ...


_READ = ("GET", "HEAD")
_REALM = "pywharf"


def error_response(error: BaseException, as_json: bool = False) -> Response:
    """Turn an exception into the response that answers it; the only place that does.

    `as_json`: the OIDC endpoints answer `{"message": ...}`, as PyPI's do (uv shows it).
    """
    if isinstance(error, RequestError) and as_json:
        response = json_response(error.status, {"message": str(error)})
        response.headers += list(error.headers)
        response.close = error.close_connection
        return response
    if isinstance(error, RequestError):
        response = text_response(error.status, str(error), error.headers)
        response.close = error.close_connection
        return response
    if isinstance(error, StorageError):
        return text_response(error.status, str(error))
    if isinstance(error, PywharfError):
        return text_response(400, str(error))
    log.error("internal error", exc_info=error)  # the traceback goes to the log, never out
    response = text_response(500, "Internal server error; the server log has the details.")
    response.close = True
    return response


@dataclass
class AuditNote:
    """What the audit line of a request says, filled in as authorization and handler learn it."""

    repository: str = ""
    actor: str = "anonymous"
    target: str = ""


@dataclass(frozen=True)
class Call:
    """A request as its handler sees it: path parameters and credentials, parsed once."""

    request: Request
    params: Mapping[str, str]
    credentials: tuple[str, str] | None  # RFC 7617 user and password
    authorized: Repository | None  # the repository the route's permission was granted on
    grant: Grant | None = None  # what the credentials may do there
    note: AuditNote = field(default_factory=AuditNote)

    @property
    def prefix(self) -> str:
        """`/<repo>` for a path URL, '' for the username-selects-repository form."""
        repo = self.params.get("repo")
        return f"/{quote(repo)}" if repo else ""

    def sees(self, project: str) -> bool:
        """Whether the grant's project scope shows `project` (outside it: as if absent)."""
        return self.grant is None or self.grant.covers(project)

    def require(self, action: str, project: str) -> None:
        """403 unless the grant may do `action` to `project` (a normalized name)."""
        grant = self.grant
        if grant is None or not grant.can(action):
            actor = grant.actor if grant else "this session"
            raise Forbidden(f"{actor} may not {action} in {self.repository.name!r}")
        if not grant.covers(project):
            raise Forbidden(f"{grant.actor} may not {action} {project!a}: outside its projects")

    @property
    def repository(self) -> Repository:
        assert self.authorized is not None, "only routes with a permission have a repository"
        return self.authorized

    @property
    def secret(self) -> str:
        """The Basic-auth password: backends such as GitHub act with the caller's own token."""
        return self.credentials[1] if self.credentials else ""

    def project(self) -> NormalizedName:
        return canonicalize_name(self.params["project"])

    @property
    def identity(self) -> Identity:
        """Who acts, as the audit log and PEP 740's publisher name them (the grant's actor:
        `secret:write`, `token:<label>`, `oidc:<repository>@<workflow>`)."""
        actor = self.grant.actor if self.grant is not None else "session"
        return Identity(self.repository.name, actor)


class App:
    """Routes requests for a set of repositories, chosen by the Basic-auth username."""

    def __init__(
        self,
        repositories: Mapping[str, Repository],
        extra_index_url: str = "",
        initializer: Initializer | None = None,
        sessions: SessionKeys | None = None,
        metrics_secret: str = "",
        audit: AuditLog | None = None,
        trusted: TrustedPublishing | None = None,
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self.repositories = dict(repositories)  # replaced whole, never changed in place
        self.extra_index_url = extra_index_url.rstrip("/") + "/" if extra_index_url else ""
        self.initializer = initializer
        self.sessions = sessions
        self.spools = Spools()
        self.throttle = FailureThrottle()  # shared by every repository: guessers move on
        self.metrics = Metrics()
        self.metrics_secret = metrics_secret
        self.audit = audit
        self.trusted = trusted
        self.trusted_proxies = trusted_proxies
        # The server tells how many connections it holds (the app does not know the server).
        self.open_connections: Callable[[], int] = lambda: 0

    def handle(self, request: Request, found: Match[RouteHandler] | None = None) -> Response:
        """The answer to `request` (`found`: its route, when the caller matched it already)."""
        started = time.perf_counter()
        route = "unmatched"  # a bounded label: the route's pattern, never the path
        try:
            found = found or ROUTES.match(request.method, request.path)
            route = found.route.pattern
            response = self._dispatch(request, found)
        except Exception as error:  # the one place a failure becomes an answer
            response = error_response(error, as_json=route.startswith("/_/oidc/"))
        self.metrics.request(route, response.status, time.perf_counter() - started)
        return response

    def answer_at_once(self, request: Request) -> Response | None:
        """The answer, when it comes from memory or a local file and waits on no network and no
        request body; else None (`handle` it on a thread).

        The server's connection loop answers these itself: handing each request to a thread
        and back cost more than the request (issue 16).
        """
        if request.method not in _READ or request.content_length != 0:
            return None
        try:
            found = ROUTES.match(request.method, request.path)
        except RequestError:
            return None  # 404 and 405 are a thread's: rare, and their answer is the same
        if found.route.handler not in _AT_ONCE or not self._at_once(request, found):
            return None
        return self.handle(request, found)

    def _at_once(self, request: Request, found: Match[RouteHandler]) -> bool:
        """Whether the repository the request names answers it without a network (a browser's
        session is left to a thread: telling its repository means checking the cookie twice)."""
        name = found.params.get("repo")
        if name is None:
            credentials = parse_basic_auth(request.header("authorization"))
            if credentials is None:
                return "cookie" not in request.headers  # no repository: a 401 at once
            name = credentials[0]
        repository = self.repositories.get(name.lower())
        if repository is None:
            return True  # a 401, at once
        return repository.answers_at_once(file=found.route.handler is package_api.file)

    def _dispatch(self, request: Request, found: Match[RouteHandler]) -> Response:
        credentials = parse_basic_auth(request.header("authorization"))
        route, note = found.route, AuditNote()
        action = _audited(route, found.params, request.method)
        try:
            repository = grant = None
            if route.permission is not None:
                repository, grant = self._authorize(
                    request, credentials, route.permission, found.params.get("repo"), note
                )
            call = Call(request, found.params, credentials, repository, grant, note)
            response = route.handler(self, call)
        except Exception as error:
            if action:
                self._audit(action, request, found.params, note, getattr(error, "status", 500))
            raise
        if action:
            self._audit(action, request, found.params, note, response.status)
        return response

    def _audit(
        self, action: str, request: Request, params: Mapping[str, str], note: AuditNote,
        status: int,
    ) -> None:  # fmt: skip
        if self.audit is None:
            return
        target = note.target or "/".join(
            params[k] for k in ("project", "target", "filename") if k in params
        )
        outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
        client = self.client_of(request)
        self.audit.record(action, note.repository, note.actor, target, outcome, client,
                          status=status)  # fmt: skip

    def client_of(self, request: Request) -> str:
        """The client's address; `X-Forwarded-For` only from a `--trusted_proxy`."""
        forwarded = request.header("x-forwarded-for") if self.trusted_proxies else None
        return client_address(request.client, forwarded, self.trusted_proxies)

    # --- authorization -----------------------------------------------------------------------

    def authorize(
        self, request: Request, credentials: tuple[str, str] | None, needed: Permission
    ) -> tuple[Repository, Grant]:
        """The repository named by the credentials and what they may do there; 401 before any
        lookup, so nothing leaks."""
        return self._authorize(request, credentials, needed, None, AuditNote())

    def _authorize(
        self,
        request: Request,
        credentials: tuple[str, str] | None,
        needed: Permission,
        path_repository: str | None,
        note: AuditNote,
    ) -> tuple[Repository, Grant]:
        """The repository (from the path, else the Basic username) and what the password may
        do there; 401 before any lookup, 403 for a valid credential without the right."""
        if credentials is None:
            own = self._from_session(request, needed, note)
            if path_repository is not None and path_repository.lower() != own.name:
                raise AuthenticationRequired("this session is for another repository", _REALM)
            return own, SECRET_GRANTS[Permission.READ]
        user, secret = credentials
        # A path URL names the repository, so the username is free: `__token__` works (twine,
        # uv, poetry and gh-action-pypi-publish send it with a token).
        repository = self.repositories.get((path_repository or user).lower())
        note.repository = repository.name if repository else ""
        note.actor = "unauthenticated"
        grant = self._grant(request.client, repository, secret, needed)
        if repository is None or grant is None:
            raise AuthenticationRequired("Unknown repository or wrong secret", _REALM)
        note.actor = grant.actor
        if needed is Permission.READ and not grant.can("read"):
            raise Forbidden(f"{grant.actor} of {repository.name!r} may not read")
        if needed is Permission.WRITE and not grant.rights - {"read"}:
            raise Forbidden(f"This secret of {repository.name!r} can read but not upload or change")
        return repository, grant

    def _grant(
        self, client: str, repository: Repository | None, secret: str, needed: Permission
    ) -> Grant | None:
        """The credential's grant; a failure counts against the client and the repository.

        The throttle comes first, so a guesser is refused before any token is looked up.
        """
        name = repository.name if repository else ""
        self.throttle.check(client, name)
        grant = None
        if repository is not None and secret.startswith(MINTED_PREFIX):
            grant = self.trusted.grant(secret, repository.name) if self.trusted else None
        elif repository is not None:
            grant = repository.grant(secret, needed)
        if grant is None:
            self.throttle.failed(client, name)
            self.metrics.auth_failed()
        return grant

    def session(self, request: Request) -> Session | None:
        """The browser's valid session, for a repository configured as when it was issued."""
        cookie = parse_cookies(request.header("cookie")).get(SESSION_COOKIE)
        session = self.sessions.check(cookie) if self.sessions and cookie else None
        repository = self.repositories.get(session.repository) if session else None
        if repository is None or session is None or session.epoch != repository.epoch:
            return None  # reconfigured since the login: its secrets may have changed
        return session

    def _from_session(
        self, request: Request, needed: Permission, note: AuditNote | None = None
    ) -> Repository:
        """A browser's session: it reads through every route, and changes only through the web
        pages' guarded forms (`pywharf.web`); a browser without one goes to the login page."""
        session = self.session(request)
        repository = self.repositories.get(session.repository) if session else None
        if note is not None and session is not None and repository is not None:
            note.repository = repository.name
            note.actor = SECRET_GRANTS[min(session.permission, Permission.WRITE)].actor
        if repository is not None and needed is Permission.READ:
            return repository
        if self.sessions and request.method == "GET" and prefers_html(request.header("accept")):
            raise SeeOther(login_redirect(request))
        raise AuthenticationRequired(
            "Authentication required: the username is the repository name, the password its secret",
            _REALM,
        )

    # --- login and /initialize/ --------------------------------------------------------------

    def _login_check(
        self, client: str, note: AuditNote
    ) -> Callable[[str, str], tuple[Permission, str]]:
        """The permission of a login, and the configuration it was granted under.

        Repository secrets only: a session carries no project scope, so a token cannot log in.
        """

        def check(name: str, secret: str) -> tuple[Permission, str]:
            repository = self.repositories.get(name)
            note.repository, note.target = (repository.name if repository else ""), name[:64]
            grant = self._grant(client, repository, secret, Permission.READ)
            if grant is None or repository is None or not grant.actor.startswith("secret:"):
                note.actor = "unauthenticated"
                return Permission.NONE, ""
            note.actor = grant.actor
            granted = Permission.WRITE if grant.can("upload") else Permission.READ
            return granted, repository.epoch

        return check

    def _session_keys(self) -> SessionKeys:
        if self.sessions is None:
            raise NotFound("browser login is not enabled")
        return self.sessions

    def login_page(self, call: Call) -> Response:
        keys = self._session_keys()
        if call.request.method == "POST":
            check = self._login_check(call.request.client, call.note)
            return submit_login(call.request, keys, check)
        return login_form(call.request, keys)

    def logout_page(self, call: Call) -> Response:
        return logout(call.request, self._session_keys())

    def initialize(self, call: Call) -> Response:
        """The original's run-time reconfiguration, now authorized (see Service)."""
        if self.initializer is None:
            raise NotFound("this server cannot be re-initialized")
        call.note.actor = "initialize-secret" if call.credentials else "anonymous"
        self.initializer.authorize_initialize(call.credentials[1] if call.credentials else None)
        fields = read_form_fields(call.request)
        if not fields.get("config"):
            raise BadRequest("the form needs a 'config' field (TOML text or a file part)")
        names = self.initializer.initialize(fields["config"], fields.get("admin_secret") or None)
        return text_response(200, f"Done: serving {', '.join(names)}")

    # --- pages -------------------------------------------------------------------------------

    # --- files -------------------------------------------------------------------------------

    # --- management: yank, un-yank, delete, project status -----------------------------------

    # --- uploads -----------------------------------------------------------------------------

    # --- trusted publishing ------------------------------------------------------------------

    def _trusted(self) -> TrustedPublishing:
        if self.trusted is None:
            raise NotFound("trusted publishing is not enabled on this server")
        return self.trusted

    def oidc_audience(self, call: Call) -> Response:
        return json_response(200, {"audience": self._trusted().audience})

    def mint_token(self, call: Call) -> Response:
        """PyPI's mint endpoint: an OIDC identity token in, a 15-minute upload token out."""
        trusted = self._trusted()
        client = call.request.client
        self.throttle.check(client, "")
        body = read_body(call.request, MAX_MINT_BODY_BYTES)
        try:
            minted = trusted.mint(body, self.repositories.values())
        except RequestError as error:
            if error.status == 422:
                self.throttle.failed(client, "")
                self.metrics.auth_failed()
            raise
        call.note.repository, call.note.actor = minted.repository, minted.actor
        return json_response(
            200, {"success": True, "token": minted.token, "expires": minted.expires}
        )


# A JWT is about 1.2 KiB; 64 KiB leaves room and keeps a 1 MB header out (413).
MAX_MINT_BODY_BYTES = 64 * 1024


def _audited(route: Route[RouteHandler], params: Mapping[str, str], method: str) -> str | None:
    """The audit action of a request, if its route changes something (reads are not logged)."""
    if route.audit is None or method in ("GET", "HEAD"):
        return None
    return params.get("action", route.audit) if route.audit == "{action}" else route.audit


def _to_slash(app: App, call: Call) -> Response:
    return redirect(call.request.path + "/" + query_suffix(call.request))


RouteHandler = Callable[[App, Call], Response]
# What `App.answer_at_once` answers: reads of the index in memory and of local files.
_AT_ONCE: frozenset[RouteHandler] = frozenset(
    {package_api.root_page, package_api.to_project_page, package_api.project_page,
     package_api.file, ops.healthz, ops.readyz}
)  # fmt: skip
_READ = ("GET", "HEAD")
_POST = ("POST",)
# A repository named in the path (`/<repo>/simple/`): the rows below the literal ones, so a
# literal first segment (`simple`, `api`, ...) always wins (config.RESERVED_NAMES).
_REPO = "/{repo}"
_W = Permission.WRITE


def _repository_routes(prefix: str) -> list[Route[RouteHandler]]:
    """The package API, under `prefix` ('' or `/{repo}`)."""
    return [
        Route(f"{prefix}/simple", _READ, _to_slash, None),
        # Never redirect an upload: twine treats a 3xx as a failure.
        Route(f"{prefix}/simple", _POST, package_api.upload, _W, "upload"),
        Route(f"{prefix}/simple/", _READ, package_api.root_page, Permission.READ),
        Route(f"{prefix}/simple/", _POST, package_api.upload, _W, "upload"),
        Route(f"{prefix}/simple/{{project}}", _READ, package_api.to_project_page, Permission.READ),
        Route(f"{prefix}/simple/{{project}}/", _READ, package_api.project_page, Permission.READ),
        Route(
            f"{prefix}/simple/{{project}}/{{filename}}", _READ, package_api.file, Permission.READ
        ),
        # `/legacy/` is PyPI's upload URL; twine and uv users often copy it.
        Route(f"{prefix}/legacy", _READ, _to_slash, None),
        Route(f"{prefix}/legacy", _POST, package_api.upload, _W, "upload"),
        Route(f"{prefix}/legacy/", _READ, package_api.root_page, Permission.READ),
        Route(f"{prefix}/legacy/", _POST, package_api.upload, _W, "upload"),
        Route(f"{prefix}/api/yank/{{project}}/{{target}}", _POST, package_api.yank, _W, "yank"),
        Route(
            f"{prefix}/api/unyank/{{project}}/{{target}}", _POST, package_api.unyank, _W, "unyank"
        ),
        Route(
            f"{prefix}/api/files/{{project}}/{{filename}}",
            ("DELETE",),
            package_api.delete,
            _W,
            "delete",
        ),
        Route(f"{prefix}/api/status/{{project}}", _POST, package_api.status_change, _W, "status"),
    ]


# The one route table: pattern, methods, handler, the permission the credentials must grant,
# and what the audit log calls a change. 404 and 405 depend on the path alone; every route that
# could reveal a project authenticates (401) before its handler looks anything up.
ROUTES: RouteTable[RouteHandler] = RouteTable(
    [
        # Browsers get the web pages; other clients (and health checks) a short text.
        Route("/", _READ, web.home, None),
        Route("/project/{project}", _READ, web.to_project, Permission.READ),
        Route("/project/{project}/", _READ, web.project, Permission.READ),
        # A write session's yank, unyank and delete: GET asks to confirm, POST acts.
        Route(
            "/project/{project}/{action}/{filename}/",
            (*_READ, "POST"),
            web.change,
            Permission.READ,
            "{action}",
        ),
        Route("/healthz", _READ, ops.healthz, None),
        Route("/readyz", _READ, ops.readyz, None),
        Route("/metrics", _READ, ops.metrics, None),
        *_repository_routes(""),
        Route("/index_mtime/", _READ, package_api.index_mtime, Permission.READ),
        Route("/login/", (*_READ, "POST"), App.login_page, None, "login"),
        Route("/logout/", (*_READ, "POST"), App.logout_page, None),
        Route("/initialize/", _POST, App.initialize, None, "initialize"),
        # Trusted publishing, at the root: uv asks there whatever the publish URL's path.
        Route("/_/oidc/audience", _READ, App.oidc_audience, None),
        Route("/_/oidc/mint-token", _POST, App.mint_token, None, "mint"),
        *_repository_routes(_REPO),
    ]
)
