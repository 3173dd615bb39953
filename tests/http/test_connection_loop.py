"""The connection loop: reads answered from memory on the loop's own thread, everything else
handed to a handler thread (a body, a slow route, a partial head, a network-bound repository),
and an answer the socket cannot take at once finished on a thread."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factory import make_wheel
from support import Live
from support import build_app
from support import poll
from support import serving
from support_upload import app_upload
from support_upload import basic
from support_upload import raw_connect
from support_upload import read_response

import pywharf.connection
from pywharf.http import Request
from pywharf.server import Server
from pywharf.server import Unfinished

AUTH = basic("local", "read-secret")


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {AUTH}\r\n{extra}\r\n".encode()


class Served:
    """A server whose handler threads are counted, with what each was handed."""

    def __init__(self, server: Server, live: Live) -> None:
        self.server = server
        self.live = live
        self.threads: list[Unfinished | None] = []


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    root = tmp_path / "root"
    app = build_app(root)
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0", payload_bytes=40_000)  # a small file
    assert app_upload(app, wheel).status == 200
    start_thread = Server._thread

    def counted(
        self: Server, sock: Any, address: Any, connection: Any, unfinished: Any = None
    ) -> None:
        watched.threads.append(unfinished)
        start_thread(self, sock, address, connection, unfinished)

    monkeypatch.setattr(Server, "_thread", counted)
    with serving(app) as server:
        watched = Served(server, Live("127.0.0.1", server.server_address[1], root, app))
        yield watched


def wheel_path(live: Live) -> tuple[str, bytes]:
    stored = next((live.root / "cache" / "local").rglob("demo_pkg-1.0-*.whl"))
    return f"/simple/demo-pkg/{stored.name}", stored.read_bytes()


def stored_big_file(served: Served, tmp_path: Path) -> Path:
    """A wheel over the 64 KiB kept in memory, uploaded; its stored path."""
    (tmp_path / "big").mkdir()
    big = make_wheel(tmp_path / "big", "big-pkg", "1.0", payload_bytes=200_000)
    assert served.live.app is not None
    assert app_upload(served.live.app, big).status == 200
    return next((served.live.root / "cache" / "local").rglob("big_pkg-1.0-*.whl"))


def test_reads_from_memory_are_answered_on_the_loop_without_a_thread(served: Served) -> None:
    file_path, content = wheel_path(served.live)
    with raw_connect(served.live) as sock:
        for _ in range(20):
            sock.sendall(get("/simple/"))
            status, _, root_page = read_response(sock)
            assert status == 200 and b"demo-pkg" in root_page
            sock.sendall(get("/simple/demo-pkg/"))
            status, _, page = read_response(sock)
            assert status == 200 and file_path.rsplit("/", 1)[1].encode() in page
            sock.sendall(get(file_path))
            status, _, body = read_response(sock)
            assert status == 200 and body == content
            sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_response(sock, "HEAD")[0] == 200
    assert served.threads == []  # 80 answers, the first one included, and no thread


def test_a_request_the_loop_cannot_answer_gets_a_thread(served: Served) -> None:
    with raw_connect(served.live) as sock:
        sock.sendall(get("/login/"))  # not a read of the index: a thread's
        assert read_response(sock)[0] == 404  # browser login is not enabled here
        sock.sendall(get("/simple/"))  # the same thread lingers for the next request
        assert read_response(sock)[0] == 200
    assert served.threads == [None]


def test_a_head_that_arrives_in_pieces_is_read_on_a_thread(served: Served) -> None:
    request = get("/simple/")
    with raw_connect(served.live) as sock:
        sock.sendall(request[:20])
        poll(lambda: served.threads or None, "a thread for the partial head")
        sock.sendall(request[20:])
        status, _, body = read_response(sock)
    assert status == 200 and b"demo-pkg" in body


def test_pipelined_requests_leave_the_loop_and_are_answered_in_order(served: Served) -> None:
    with raw_connect(served.live) as sock:
        sock.sendall(get("/simple/demo-pkg/") + get("/nothing/") + get("/simple/"))
        answers = [read_response(sock)[0] for _ in range(3)]
    assert answers == [200, 404, 200]
    assert served.threads == [None]


def test_an_answer_the_socket_takes_in_part_is_finished_on_a_thread(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client slow to read: the loop sends what the socket's buffer takes, never waits,
    and a thread sends the rest (forced here: the socket takes 1,000 bytes)."""
    file_path, content = wheel_path(served.live)

    def takes_part(sock: socket.socket, head: bytes, body: bytes) -> bytes:
        whole = head + body
        sock.sendall(whole[:1000])
        return whole[1000:]

    monkeypatch.setattr(pywharf.connection, "send_ready", takes_part)
    with raw_connect(served.live) as sock:
        sock.sendall(get(file_path))
        status, _, body = read_response(sock)
        sock.sendall(get("/simple/"))  # the thread goes on serving the connection
        assert read_response(sock)[0] == 200
    assert status == 200 and body == content
    [unfinished] = served.threads
    assert unfinished is not None and unfinished.rest is not None
    assert content.endswith(unfinished.rest)  # the head and the body's start went out first


def test_a_file_too_large_to_hold_in_memory_is_sent_by_a_thread(
    served: Served, tmp_path: Path
) -> None:
    """Over 64 KiB a file goes out by sendfile, which may wait: never on the loop."""
    stored = stored_big_file(served, tmp_path)
    with raw_connect(served.live) as sock:
        sock.sendall(get(f"/simple/big-pkg/{stored.name}"))
        status, _, body = read_response(sock)
    assert status == 200 and body == stored.read_bytes()
    [unfinished] = served.threads
    assert unfinished is not None and unfinished.rest is None  # nothing sent by the loop


def test_a_head_request_and_a_not_modified_answer_stay_on_the_loop(
    served: Served, tmp_path: Path
) -> None:
    """Neither sends a body: even a large file's HEAD and a 304 are the loop's."""
    stored = stored_big_file(served, tmp_path)
    with raw_connect(served.live) as sock:
        sock.sendall(get(f"/simple/big-pkg/{stored.name}").replace(b"GET", b"HEAD", 1))
        status, headers, _ = read_response(sock, "HEAD")
        assert status == 200 and int(headers["content-length"]) == stored.stat().st_size
        sock.sendall(get("/simple/big-pkg/"))
        status, headers, _ = read_response(sock)
        etag = headers["etag"]
        sock.sendall(get("/simple/big-pkg/", f"If-None-Match: {etag}\r\n"))
        assert read_response(sock)[0] == 304
    assert served.threads == []


def test_the_loop_answers_only_what_waits_on_nothing(tmp_path: Path) -> None:
    """`App.answer_at_once`: index reads that wait on no network; None for a body, another
    route, a browser's session, a repository with an upstream to fetch from, or a download
    from a backend that does not read locally."""
    config = """
[local]
type = "file_system"
read_secret = "read-secret"
write_secret = "write-secret"

[proxied]
type = "file_system"
read_secret = "read-secret"
write_secret = "write-secret"
upstream_url = "http://127.0.0.1:9/simple/"
"""
    app = build_app(tmp_path / "root", config)

    def at_once(method: str, path: str, user: str | None = "local", **headers: str) -> bool:
        all_headers = {"authorization": basic(user, "read-secret")} if user else {}
        all_headers.update(headers)
        length = int(headers.get("content-length", "0"))
        request = Request(method, path, {}, all_headers, io.BytesIO(b""), content_length=length)
        return app.answer_at_once(request) is not None

    assert at_once("GET", "/simple/")
    assert at_once("HEAD", "/simple/demo/")
    assert at_once("GET", "/simple/Demo")  # the redirect to the normalized name
    assert at_once("GET", "/local/simple/demo/a-1.0.tar.gz", user=None)  # a 401, at once
    assert at_once("GET", "/readyz", user=None)
    assert at_once("GET", "/simple/", user="nobody")  # a 401 for an unknown repository
    assert not at_once("GET", "/simple/", **{"content-length": "5"})
    assert not at_once("POST", "/simple/")
    assert not at_once("GET", "/metrics")
    assert not at_once("GET", "/")  # the web pages
    assert not at_once("GET", "/simple/", user=None, cookie="pywharf_session=x")
    assert not at_once("GET", "/simple/", user="proxied")  # its pages may be fetched upstream
    assert not at_once("GET", "/proxied/simple/demo/", user=None)
    assert not at_once("GET", "/no/such/route/")
    # A backend whose files come over a network (S3 proxying them): its pages only.
    app.repositories["local"].backend.reads_locally = False  # type: ignore[misc]
    assert at_once("GET", "/simple/demo/")
    assert not at_once("GET", "/simple/demo/demo-1.0.tar.gz")
