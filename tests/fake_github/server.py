"""The fake GitHub: three origins on 127.0.0.1 (API, uploads, signed-download storage).

    with FakeGitHub() as github:
        token = github.add_user("alice")
        github.add_repo("alice", "packages", private=True)
        client = GitHubClient(token, github.api_url, github.uploads_url)
        github.inject("POST", r"/releases$", 502)

Every exchange is kept in `github.calls` (request and response) for assertions and for the
schema test. State changes and fault matching happen under one lock.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from typing import Callable
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from . import render
from . import routes
from .faults import Fault
from .faults import Hook
from .faults import default_body
from .faults import rate_limit_fault
from .routes import Answer
from .routes import Ctx
from .routes import Headers
from .routes import Reply
from .routes import Request
from .state import Account
from .state import Asset
from .state import Release
from .state import Repo
from .state import World
from .state import blob_sha
from .state import timestamp

__all__ = ["Exchange", "FakeGitHub"]

ORIGINS = ("api", "uploads", "storage")
_AUTH = re.compile(r"(?i)^(bearer|token)\s+(\S+)$")


@dataclass(frozen=True)
class Exchange:
    """One request the fake answered, as the schema and call-count tests see it."""

    origin: str
    method: str
    path: str
    query: dict[str, list[str]]
    request_headers: dict[str, str]  # lower-case names
    request_body: bytes
    status: int
    response_headers: dict[str, str]  # lower-case names
    response_body: bytes
    operation: str | None  # OpenAPI path template; None for faults and off-spec routes
    faulted: bool

    def json(self) -> Any:
        return json.loads(self.response_body)


class FakeGitHub:
    """GitHub's releases, contents and refs API with real state and injectable faults."""

    def __init__(self) -> None:
        self.world = World()
        self.calls: list[Exchange] = []
        self._faults: list[Fault] = []
        self._hooks: list[Hook] = []
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        for name in ORIGINS:
            handler = type(f"{name.title()}Handler", (_Handler,), {"fake": self, "origin": name})
            server = _Server(("127.0.0.1", 0), handler)
            thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
            thread.start()
            self._servers[name] = server
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, origin: str) -> str:
        host, port = self._servers[origin].server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url("api")

    @property
    def uploads_url(self) -> str:
        return self.url("uploads")

    @property
    def storage_url(self) -> str:
        return self.url("storage")

    # -- seeding ---------------------------------------------------------------------------

    def add_user(self, login: str, token: str | None = None) -> str:
        """A user with a token (made up when not given); returns the token."""
        token = token or f"ghp_{hashlib.sha1(login.encode()).hexdigest()[:36]}"
        with self.world.lock:
            account = self.world.account(login)
            if account is None:
                account = Account(login, self.world.new_id())
                self.world.accounts[login.lower()] = account
            account.tokens.add(token)
        return token

    def revoke(self, token: str) -> None:
        """Forget a token, as its owner deleting it does: GitHub then answers 401."""
        with self.world.lock:
            for account in self.world.accounts.values():
                account.tokens.discard(token)

    def add_org(self, login: str, members: Mapping[str, str] | None = None) -> None:
        """An organization; `members` maps logins to "admin" or "member"."""
        with self.world.lock:
            org = Account(login, self.world.new_id(), "Organization")
            org.members = {k.lower(): v for k, v in (members or {}).items()}
            self.world.accounts[login.lower()] = org

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        private: bool = True,
        default_branch: str = "main",
        empty: bool = False,
        archived: bool = False,
    ) -> Repo:
        """A repository; unless `empty`, with a first commit holding README.md."""
        with self.world.lock:
            repo = Repo(
                self.world.new_id(),
                owner,
                name,
                private,
                default_branch,
                timestamp(),
                archived=archived,
            )
            if not empty:
                repo.commit(default_branch, {"README.md": f"# {name}\n".encode()}, "Initial")
            self.world.repos[(owner.lower(), name.lower())] = repo
            return repo

    def grant(self, owner: str, name: str, login: str, level: str) -> None:
        """Make `login` a collaborator with "pull", "push" or "admin"."""
        with self.world.lock:
            self._repo(owner, name).collaborators[login.lower()] = level

    def put_file(
        self, owner: str, name: str, path: str, data: bytes, branch: str | None = None
    ) -> str:
        """Commit a file directly (as another writer would); returns its blob sha."""
        with self.world.lock:
            repo = self._repo(owner, name)
            branch = branch or repo.default_branch
            head = repo.head(branch) if branch in repo.branches else None
            repo.commit(branch, {**(head.tree if head else {}), path: data}, f"Write {path}")
        return blob_sha(data)

    def file(self, owner: str, name: str, path: str, branch: str | None = None) -> bytes | None:
        with self.world.lock:
            head = self._repo(owner, name).head(branch)
            return head.tree.get(path) if head else None

    def add_release(
        self,
        owner: str,
        name: str,
        tag: str,
        *,
        body: str = "",
        draft: bool = False,
        assets: Mapping[str, bytes] | None = None,
        author: str | None = None,
    ) -> Release:
        """A release (published unless `draft`) with assets named as given."""
        with self.world.lock:
            repo = self._repo(owner, name)
            author = author or repo.owner
            release = Release(
                self.world.new_id(),
                tag,
                tag,
                body,
                draft,
                False,
                repo.default_branch,
                author,
                timestamp(),
            )
            for asset_name, data in (assets or {}).items():
                release.assets.append(
                    Asset(
                        self.world.new_id(),
                        asset_name,
                        None,
                        "application/octet-stream",
                        data,
                        author,
                        timestamp(),
                    )
                )
            if not draft:
                routes.publish(repo, release)
            repo.releases[release.id] = release
            return release

    def releases(self, owner: str, name: str) -> list[Release]:
        with self.world.lock:
            return sorted(self._repo(owner, name).releases.values(), key=lambda r: r.id)

    def set_rate_limit(
        self,
        login: str | None,
        *,
        remaining: int | None = None,
        reset: int | None = None,
        limit: int | None = None,
    ) -> None:
        """Set a user's (None: anonymous) primary budget; at 0 every call gets a 403."""
        with self.world.lock:
            budget = self.world.budget(login.lower() if login else "anonymous")
            budget.limit = limit if limit is not None else budget.limit
            budget.remaining = remaining if remaining is not None else budget.remaining
            budget.reset = reset if reset is not None else budget.reset

    def _repo(self, owner: str, name: str) -> Repo:
        repo = self.world.repo(owner, name)
        if repo is None:
            raise KeyError(f"no repository {owner}/{name} in the fake")
        return repo

    # -- faults ----------------------------------------------------------------------------

    def inject(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        origin: str = "api",
    ) -> None:
        """Answer the next `times` requests matching method ("*": any) and path regex."""
        fault = Fault(
            method,
            re.compile(path),
            status,
            times,
            dict(headers or {}),
            body if body is not None else default_body(status, path),
            origin,
        )
        with self.world.lock:
            self._faults.append(fault)

    def inject_rate_limit(
        self,
        method: str = "*",
        path: str = ".*",
        *,
        kind: str = "primary",
        status: int = 403,
        retry_after: int | None = None,
        reset: int | None = None,
        times: int = 1,
    ) -> None:
        """A primary (remaining 0 + reset) or secondary (message, maybe retry-after) limit."""
        status, headers, body = rate_limit_fault(
            kind, status=status, retry_after=retry_after, reset=reset
        )
        self.inject(method, path, status, times=times, headers=headers, body=body)

    def on_request(
        self, method: str, path: str, action: Callable[[], object], *, times: int = 1
    ) -> None:
        """Run `action` before handling the next matching request (say, a rival commit)."""
        with self.world.lock:
            self._hooks.append(Hook(method, re.compile(path), action, times))

    def requests(self, origin: str | None = "api") -> list[str]:
        """The calls made so far as "METHOD /path", for cost assertions."""
        return [f"{c.method} {c.path}" for c in self.calls if origin in (None, c.origin)]

    # -- handling --------------------------------------------------------------------------

    def handle(self, origin: str, method: str, target: str, headers: Headers, body: bytes) -> Reply:
        parts = urlsplit(target)
        request = Request(origin, method, parts.path, parse_qs(parts.query, True), headers, body)
        self._run_hooks(method, parts.path)
        with self.world.lock:
            fault = self._take_fault(origin, method, parts.path)
            operation = None
            if fault is not None:
                reply = Reply(fault.status, fault.body, dict(fault.headers))
            else:
                reply, operation = self._route(request)
            reply = self._decorate(request, reply)
            self._record(request, reply, operation, fault is not None)
        return reply

    def _run_hooks(self, method: str, path: str) -> None:
        with self.world.lock:
            hooks = [hook for hook in self._hooks if hook.matches(method, path)]
            for hook in hooks:
                hook.times -= 1
        for hook in hooks:
            hook.action()

    def _take_fault(self, origin: str, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.matches(origin, method, path):
                fault.times -= 1
                return fault
        return None

    def _route(self, request: Request) -> tuple[Reply, str | None]:
        found = routes.match(request.origin, request.method, request.path)
        try:
            self._authenticate(request)
            self._charge(request)
            if found is None:
                raise Answer(404, render.error("Not Found"))
            ctx = Ctx(self.world, request, self.api_url, self.uploads_url, self.storage_url)
            reply = found[0].handler(ctx, found[1])
        except Answer as answer:
            reply = answer.reply
        return reply, found[0].operation if found else None

    def _authenticate(self, request: Request) -> None:
        """GitHub's gate: a User-Agent, then a known token (Bearer or token) or none."""
        if request.origin == "storage":
            return
        if not request.headers.get("User-Agent"):
            raise Answer(
                403,
                render.error(
                    "Request forbidden by administrative rules. Please "
                    "make sure your request has a User-Agent header"
                ),
            )
        header = request.headers.get("Authorization")
        if header is None:
            return
        found = _AUTH.match(header)
        request.user = self.world.by_token(found.group(2)) if found else None
        if request.user is None:
            raise Answer(401, render.error("Bad credentials"))

    def _charge(self, request: Request) -> None:
        """The primary rate limit: every API call but /rate_limit costs one."""
        if request.origin != "api" or request.path == "/rate_limit":
            return
        budget = self.world.budget(request.user.login.lower() if request.user else "anonymous")
        if budget.remaining <= 0:
            status, headers, body = rate_limit_fault("primary", reset=budget.reset)
            raise Answer(status, body, **headers)
        budget.remaining -= 1

    def _decorate(self, request: Request, reply: Reply) -> Reply:
        """GitHub's standard headers, the ETag, and a 304 when If-None-Match matches."""
        data = _encode(reply.body)
        status = reply.status
        headers = {"x-github-request-id": f"FAKE:{len(self.calls)}"}
        if request.method == "GET" and status == 200 and request.origin == "api":
            headers["etag"] = f'"{hashlib.sha1(data).hexdigest()}"'
            if headers["etag"] in request.headers.get("If-None-Match", ""):
                status, data = 304, b""
                self._refund(request)  # a 304 costs no rate limit
        if data:
            headers["content-type"] = reply.content_type
        if request.origin == "api":
            headers.update(self._rate_headers(request))
            headers["x-github-media-type"] = "github.v3; format=json"
            headers["cache-control"] = "private, max-age=60, s-maxage=60"
        elif request.origin == "uploads":
            headers["cache-control"] = "no-cache"  # and no rate-limit headers, as recorded
        headers.update({k.lower(): v for k, v in reply.headers.items()})
        return Reply(status, data, headers)

    def _rate_headers(self, request: Request) -> dict[str, str]:
        budget = self.world.budget(request.user.login.lower() if request.user else "anonymous")
        return {
            "x-ratelimit-limit": str(budget.limit),
            "x-ratelimit-remaining": str(budget.remaining),
            "x-ratelimit-reset": str(budget.reset),
            "x-ratelimit-used": str(budget.used),
            "x-ratelimit-resource": "core",
        }

    def _refund(self, request: Request) -> None:
        budget = self.world.budget(request.user.login.lower() if request.user else "anonymous")
        budget.remaining += 1

    def _record(self, request: Request, reply: Reply, operation: str | None, faulted: bool) -> None:
        self.calls.append(
            Exchange(
                request.origin,
                request.method,
                request.path,
                request.query,
                {k.lower(): v for k, v in request.headers.items()},
                request.body,
                reply.status,
                dict(reply.headers),
                reply.body,
                operation,
                faulted,
            )
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (a test's timeout) are expected; anything else is loud."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _encode(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the fake, writes the reply; keeps connections alive."""

    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in two writes
    fake: FakeGitHub
    origin: str

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._write(Reply(411, b"Length Required", {"connection": "close"}))
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._write(self.fake.handle(self.origin, self.command, self.path, self.headers, body))

    def _write(self, reply: Reply) -> None:
        data = reply.body if isinstance(reply.body, bytes) else b""
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `FakeGitHub.calls` instead."""
