"""The browser pages' handlers: the project list with search, a project, guarded changes.

Clients never see these: pip, uv and poetry read `/simple/`, which is unchanged. A change
(yank, unyank, delete) needs all of: a session logged in with a write secret, a confirmation
page, a signed token bound to that session, and a same-origin post.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from pywharf.auth import Permission
from pywharf.errors import BadRequest
from pywharf.errors import Forbidden
from pywharf.errors import NotFound
from pywharf.http import Response
from pywharf.http import prefers_html
from pywharf.http import read_form
from pywharf.http import scheme
from pywharf.login import same_origin
from pywharf.search import SearchResult
from pywharf.session import Session
from pywharf.web_pages import ACTIONS
from pywharf.web_pages import ConfirmView
from pywharf.web_pages import HomeView
from pywharf.web_pages import ProjectView
from pywharf.web_pages import render_confirm
from pywharf.web_pages import render_home
from pywharf.web_pages import render_project

if TYPE_CHECKING:
    from pywharf.app import App
    from pywharf.app import Call
    from pywharf.repository import Repository

__all__ = ["change", "home", "project", "to_project"]

# No script runs on these pages, so an escaping slip could not run one either; no framing.
_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),  # what a session may see is not for shared caches
    ("Content-Security-Policy",
     "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Vary", "Cookie, Authorization"),
]  # fmt: skip
HOME_TEXT = b"pywharf: a private package index. The index is at /simple/.\n"


def _html(body: bytes, user: str) -> Response:
    return Response(200, list(_HEADERS), body, user=user)


def _write_session(app: App, call: Call) -> Session | None:
    """The session, when it was logged in with a write secret and no Basic auth overrides it."""
    if call.credentials is not None:
        return None  # Basic auth is the API's: its changes go through /api/, not a form
    session = app.session(call.request)
    if session is None or session.permission < Permission.WRITE:
        return None
    return session if session.repository == call.repository.name else None


def home(app: App, call: Call) -> Response:
    """A browser gets the project list (and the login page first); anything else a text."""
    if not prefers_html(call.request.header("accept")):
        return Response(200, [("Content-Type", "text/plain; charset=utf-8")], HOME_TEXT)
    repository, grant = app.authorize(call.request, call.credentials, Permission.READ)
    query = call.request.query.get("q", "")
    corpus = repository.search()
    result = corpus.search(query)
    if grant.projects is not None:  # a scoped token sees its projects only
        seen = [[n for n in hits if grant.covers(n)] for hits in
                (result.exact, result.prefix, result.substring, result.summary)]  # fmt: skip
        result = SearchResult(*seen)
    view = HomeView(repository.name, query, result, len(corpus), corpus.summaries)
    return _html(render_home(view), repository.name)


def to_project(app: App, call: Call) -> Response:
    return Response(301, [("Location", f"/project/{quote(call.project())}/")], b"")


def _index_url(call: Call, repository: Repository) -> str:
    request = call.request
    host = request.header("host") or "localhost"
    return f"{scheme(request)}://{quote(repository.name)}:$PYWHARF_SECRET@{host}/simple/"


def project(app: App, call: Call) -> Response:
    name = call.project()
    if name != call.params["project"]:
        return to_project(app, call)
    repository = call.repository
    found = repository.project(name) if call.sees(name) else None
    if found is None:
        raise NotFound(f"project {name!r} is not in repository {repository.name!r}")
    description = repository.description(found)
    view = ProjectView(
        repository.name, name, found.files, description.summary, description.text,
        _index_url(call, repository), _write_session(app, call) is not None, time.time(),
        found.pages,
    )  # fmt: skip
    return _html(render_project(view), repository.name)


def _checked_post(app: App, call: Call, session: Session) -> dict[str, str]:
    """The form of a change, refused unless token, origin and confirmation all hold."""
    form = read_form(call.request)
    keys = app.sessions
    token = form.get("csrf", "")
    if keys is None or not keys.csrf_valid(token, session=session.id):
        raise Forbidden("the form expired or came from another page; reload it and confirm again")
    if not same_origin(call.request):
        raise Forbidden("a change must be posted from this server's own pages")
    if not hmac.compare_digest(form.get("confirm", "").encode(), b"yes"):
        raise BadRequest("a change needs its confirmation (confirm=yes)")
    return form


def change(app: App, call: Call) -> Response:
    """GET: the confirmation page; POST: the yank, unyank or delete, then back to the project."""
    action, filename, name = call.params["action"], call.params["filename"], call.project()
    if action not in ACTIONS:
        raise NotFound(f"no page at {call.request.path}")
    session = _write_session(app, call)
    if session is None:
        raise Forbidden("changes need a browser session logged in with a write secret")
    repository = call.repository
    found = repository.project(name)
    if found is None or found.file(filename) is None:
        raise NotFound(f"{filename!r} is not a file of {name!r}")
    if call.request.method != "POST":
        assert app.sessions is not None  # a session exists, so the keys do
        token = app.sessions.csrf_token(session=session.id)
        view = ConfirmView(repository.name, name, action, filename, token)
        return _html(render_confirm(view), repository.name)
    form = _checked_post(app, call, session)
    # The session carries no secret: the change acts with the server's own (file_system needs
    # none; GitHub needs the caller's token, so there the API is the way).
    if action == "delete":
        repository.delete(name, filename, "")
    else:
        reason = form.get("reason", "").strip() if action == "yank" else None
        repository.yank(name, filename, reason, "")
    location = f"/project/{quote(name)}/"
    return Response(303, [("Location", location), ("Cache-Control", "no-store")], b"",
                    user=repository.name)  # fmt: skip
