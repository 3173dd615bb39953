"""A small upstream index for the cache's tests: PEP 691 JSON and PEP 503 HTML with upload
times, ETags, Basic auth, request counts, and the faults a real upstream shows.

Files are served from `/files/NAME` on the same host (so credentials go along, as pip sends
them), or from a second fake on another port to check they do not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from datetime import timezone
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from urllib.parse import quote
from urllib.parse import unquote

from packaging.utils import canonicalize_name

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class UpstreamFile:
    filename: str
    data: bytes
    upload_time: float | None
    requires_python: str | None = None
    yanked: str | bool = False
    metadata: bytes | None = None


@dataclass
class FakeUpstream:
    """State shared with the handler; tests change it between requests."""

    projects: dict[str, list[UpstreamFile]] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    html_only: bool = False
    # fault by project or filename: "500", "malformed", "redirect", "truncate", "wrong", "slow"
    faults: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    authorizations: list[str | None] = field(default_factory=list)
    not_modified: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def add(self, project: str, file: UpstreamFile) -> None:
        self.projects.setdefault(canonicalize_name(project), []).append(file)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple/"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}/simple/"

    def file(self, filename: str) -> UpstreamFile | None:
        for files in self.projects.values():
            for each in files:
                if each.filename == filename:
                    return each
        return None


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def render_json(project: str, files: list[UpstreamFile]) -> bytes:
    entries = []
    for each in files:
        entry: dict[str, object] = {
            "filename": each.filename,
            "url": f"/files/{quote(each.filename)}",
            "hashes": {"sha256": _sha(each.data)},
            "size": len(each.data),
            "yanked": each.yanked,
        }
        if each.upload_time is not None:
            entry["upload-time"] = _time(each.upload_time)
        if each.requires_python:
            entry["requires-python"] = each.requires_python
        if each.metadata is not None:
            entry["core-metadata"] = {"sha256": _sha(each.metadata)}
        entries.append(entry)
    document = {"meta": {"api-version": "1.1"}, "name": project, "files": entries}
    return json.dumps(document).encode()


def render_html(project: str, files: list[UpstreamFile]) -> bytes:
    links = []
    for each in files:
        attributes = ""
        if each.requires_python:
            attributes += f' data-requires-python="{each.requires_python.replace(">", "&gt;")}"'
        if each.yanked is not False:
            attributes += f' data-yanked="{each.yanked if isinstance(each.yanked, str) else ""}"'
        if each.metadata is not None:
            attributes += f' data-core-metadata="sha256={_sha(each.metadata)}"'
        href = f"/files/{quote(each.filename)}#sha256={_sha(each.data)}"
        links.append(f'<a href="{href}"{attributes}>{each.filename}</a><br>')
    return f"<!DOCTYPE html><html><body>{''.join(links)}</body></html>".encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        path = unquote(self.path.split("?")[0])
        state.counts[path] += 1
        state.authorizations.append(self.headers.get("Authorization"))
        if state.credentials is not None:
            expected = base64.b64encode(":".join(state.credentials).encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                self._send(401, b"no", {"WWW-Authenticate": 'Basic realm="x"'})
                return
        if path.startswith("/simple/"):
            self._page(state, path.removeprefix("/simple/").strip("/"))
        elif path.startswith("/files/"):
            self._file(state, path.removeprefix("/files/"))
        else:
            self._send(404, b"not here")

    def _fault(self, state: FakeUpstream, key: str) -> str | None:
        fault = state.faults.get(key)
        if fault == "500":
            self._send(500, b"broken")
        elif fault == "redirect":
            self._send(302, b"", {"Location": self.path})
        return fault

    def _page(self, state: FakeUpstream, project: str) -> None:
        if self._fault(state, project) in ("500", "redirect"):
            return
        files = state.projects.get(project)
        if files is None:
            self._send(404, b"no such project")
            return
        wants_json = JSON_TYPE in (self.headers.get("Accept") or "") and not state.html_only
        body = render_json(project, files) if wants_json else render_html(project, files)
        if state.faults.get(project) == "malformed":
            body = b'{"meta": {"api-version": "1.1"}, "files": [{"filename": 3}]}'
        etag = f'"{_sha(body)[:16]}"'
        if self.headers.get("If-None-Match") == etag:
            state.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        media = JSON_TYPE if wants_json else "text/html; charset=utf-8"
        self._send(200, body, {"Content-Type": media, "ETag": etag})

    def _file(self, state: FakeUpstream, filename: str) -> None:
        metadata = filename.endswith(".metadata")
        found = state.file(filename.removesuffix(".metadata"))
        if found is None or (metadata and found.metadata is None):
            self._send(404, b"no such file")
            return
        fault = self._fault(state, found.filename)
        if fault in ("500", "redirect"):
            return
        data = found.metadata if metadata and found.metadata is not None else found.data
        if fault == "slow":  # the test says when the body may go
            state.release.wait(30)
        if fault == "wrong" and not metadata:
            data = data[:-1] + bytes([data[-1] ^ 1])
        if fault == "truncate" and not metadata:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self._send(200, data, {"Content-Type": "application/octet-stream"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: FakeUpstream) -> None:
        self.state = state
        super().__init__(("127.0.0.1", state.port), _Handler)


@contextmanager
def running(state: FakeUpstream) -> Iterator[FakeUpstream]:
    server = _Server(state)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
