"""The package API's handlers: the simple pages, files, uploads, yanks, deletes, statuses.

Each takes the app and the call, as the route table hands them over (`app.ROUTES`).
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from pywharf.backends import ArrivingFile
from pywharf.backends import EarlyStore
from pywharf.backends import Redirect
from pywharf.backends import Streamed
from pywharf.errors import NotFound
from pywharf.http import JSON
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import StreamBody
from pywharf.http import base_url
from pywharf.http import negotiate
from pywharf.http import read_form
from pywharf.provenance import PROVENANCE_SUFFIX
from pywharf.provenance import publisher
from pywharf.responses import FILE_CACHE_CONTROL
from pywharf.responses import JSON_CONTENT_TYPE
from pywharf.responses import file_response
from pywharf.responses import matches_etag
from pywharf.responses import page_response
from pywharf.responses import query_suffix
from pywharf.responses import redirect
from pywharf.responses import text_response
from pywharf.upload import receive_upload

if TYPE_CHECKING:
    from pywharf.app import App
    from pywharf.app import Call

__all__ = [
    "delete",
    "file",
    "index_mtime",
    "project_page",
    "provenance",
    "root_page",
    "status_change",
    "to_project_page",
    "unyank",
    "upload",
    "yank",
]

log = logging.getLogger("pywharf")


def index_mtime(app: App, call: Call) -> Response:
    return text_response(200, str(call.repository.index_mtime))


def root_page(app: App, call: Call) -> Response:
    media = _media(call.request)
    page = call.repository.root_page(media == JSON, call.grant)
    return page_response(call.request, page, media, call.repository.name)


def to_project_page(app: App, call: Call) -> Response:
    """One hop to the canonical URL: the trailing slash, the normalized name (PEP 503)."""
    return redirect(f"{call.prefix}/simple/{quote(call.project())}/{query_suffix(call.request)}")


def project_page(app: App, call: Call) -> Response:
    name = call.project()
    if name != call.params["project"]:
        return to_project_page(app, call)
    if not call.sees(name):  # outside a token's scope: as if it did not exist
        raise NotFound(f"project {name!a} is not in repository {call.repository.name!r}")
    media = _media(call.request)
    found = call.repository.project_page(name, media == JSON)
    # PEP 740 provenance URLs are fully qualified: the page as this client's host sees it.
    page = found and found.for_base(lambda: base_url(call.request))
    if page is None and app.extra_index_url and not call.repository.holds(name):
        # Only for projects we never held: a project whose files were all deleted is still
        # ours, or pip would install whatever the public index holds under its name.
        # 302, not 301: pip caches a 301 forever, and the project may be uploaded later.
        return redirect(f"{app.extra_index_url}{quote(name)}/", 302)
    if page is None:
        raise NotFound(f"project {name!a} is not in repository {call.repository.name!r}")
    return page_response(call.request, page, media, call.repository.name)


def file(app: App, call: Call) -> Response:
    project = call.project()
    if not call.sees(project):
        raise NotFound(f"{call.params['filename']!a} is not in project {project!a}")
    if call.params["filename"].endswith(PROVENANCE_SUFFIX):
        return provenance(app, call)
    download = call.repository.download(project, call.params["filename"])
    if isinstance(download.target, Redirect):
        headers = [("Location", download.target.url), ("Content-Length", "0")]
        return Response(302, headers, user=call.repository.name)
    if isinstance(download.target, Streamed):  # an upstream file, cached while relayed
        target = download.target
        body = StreamBody(target.chunks, target.size, target.close)
        headers = [("ETag", download.etag), ("Content-Type", "application/octet-stream")]
        response = Response(200, headers, body, user=call.repository.name)
    else:
        response = file_response(call.request, download, call.repository.name)
    if call.request.method == "GET" and response.status in (200, 206):
        app.metrics.downloaded(response.length)
    return response


def provenance(app: App, call: Call) -> Response:
    """PEP 740: `<file URL>.provenance`, immutable as the file is."""
    body = call.repository.provenance(call.project(), call.params["filename"])
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = [("ETag", etag), ("Cache-Control", FILE_CACHE_CONTROL)]
    if matches_etag(call.request.header("if-none-match"), etag):
        return Response(304, headers, user=call.repository.name)
    headers.append(("Content-Type", JSON_CONTENT_TYPE))
    return Response(200, headers, body, user=call.repository.name)


def yank(app: App, call: Call) -> Response:
    call.require("yank", call.project())
    reason = read_form(call.request).get("reason", "")
    changed = call.repository.yank(call.project(), call.params["target"], reason, call.secret)
    return _changed(call, "yank", changed)


def unyank(app: App, call: Call) -> Response:
    call.require("yank", call.project())
    changed = call.repository.yank(call.project(), call.params["target"], None, call.secret)
    return _changed(call, "unyank", changed)


def delete(app: App, call: Call) -> Response:
    call.require("delete", call.project())
    changed = call.repository.delete(call.project(), call.params["filename"], call.secret)
    return _changed(call, "files", changed)


def status_change(app: App, call: Call) -> Response:
    """PEP 792: form fields `status` (active, archived, quarantined, deprecated), `reason`."""
    # Quarantine hides every file of a project: as strong as deleting them.
    call.require("delete", call.project())
    form = read_form(call.request)
    status = call.repository.set_status(
        call.project(), form.get("status", ""), form.get("reason"), call.secret
    )
    return _changed(call, "status", [f"{status.project} {status.status}"])


def upload(app: App, call: Call) -> Response:
    repository = call.repository
    limits = repository.upload_limits

    def start_early(arriving: ArrivingFile) -> EarlyStore | None:
        # Before a byte goes to the store: a grant outside this project is refused at once.
        call.require("upload", arriving.project)
        return repository.store_early(arriving)

    with receive_upload(
        call.request,
        limits.spool_dir,
        limits.max_file_bytes,
        app.spools,
        publisher(call.identity),
        start_early,
        durable=limits.durable_spool,
    ) as upload:
        call.note.target = upload.record.filename
        call.require("upload", upload.record.project)
        record = repository.store(upload, call.secret)
    app.metrics.uploaded(record.size)
    log.info("stored %s in %s", record.filename, repository.name)
    response = text_response(200, f"OK: {record.filename}")
    response.user = repository.name
    return response


def _media(request: Request) -> str:
    return negotiate(request.header("accept"), request.query.get("format"))


def _changed(call: Call, action: str, changed: list[str]) -> Response:
    response = text_response(200, "\n".join(f"{action}: {name}" for name in changed))
    response.user = call.repository.name
    return response
