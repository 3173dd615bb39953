"""The HTTP shell under abuse: slow senders, huge heads, broken request lines, crashing handlers."""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from factory import make_wheel
from support import READ
from support import Live
from support import build_app
from support import poll
from support import serving
from support_upload import basic
from support_upload import raw_connect
from support_upload import read_response
from support_upload import upload

from pywharf.server import Server

AUTH = basic("local", READ)


def get_head(path: str = "/simple/", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: {AUTH}\r\n{extra}\r\n".encode()


class SlowClient(threading.Thread):
    """Sends a request head one byte a second; notes when the server drops it."""

    HEAD = b"GET /simple/ HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"x" * 200

    def __init__(self, live: Live, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.live = live
        self.stop = stop
        self.connected = threading.Event()
        self.sent = 0  # bytes of HEAD sent so far
        self.dropped_after: float | None = None

    def run(self) -> None:
        with socket.create_connection((self.live.host, self.live.port), timeout=5) as sock:
            self.connected.set()
            started = time.monotonic()
            sock.settimeout(1.0)  # the pause between bytes doubles as the watch for a close
            for byte in self.HEAD:
                if self.stop.is_set():
                    return
                try:
                    sock.sendall(bytes([byte]))
                    self.sent += 1
                    if sock.recv(1024) == b"":
                        self.dropped_after = time.monotonic() - started
                        return
                except socket.timeout:
                    continue
                except OSError:
                    self.dropped_after = time.monotonic() - started
                    return


@contextmanager
def slow_clients(live: Live, count: int = 20) -> Iterator[list[SlowClient]]:
    stop = threading.Event()
    clients = [SlowClient(live, stop) for _ in range(count)]
    for client in clients:
        client.start()
    for client in clients:
        assert client.connected.wait(5)
    try:
        yield clients
    finally:
        stop.set()
        for client in clients:
            client.join(5)


def mid_head(clients: list[SlowClient]) -> bool:
    """Every slow client has begun its head, not finished it, and has not been cut off."""
    return all(0 < c.sent < len(c.HEAD) and c.dropped_after is None for c in clients)


def test_twenty_slow_senders_do_not_delay_a_normal_request(live_server: Live) -> None:
    """Normal requests are answered while every slow head is still half sent.

    A server that served connections in turn would answer only once a slow head ended: by
    being cut at the head deadline (seen as a drop) or after ~200 s (past the 30 s timeout).
    """
    with slow_clients(live_server) as clients:
        poll(lambda: mid_head(clients) or None, "every slow client to start its head")
        for _ in range(5):
            assert live_server.request("GET", "/simple/")[0] == 200
        assert mid_head(clients)


def test_slow_senders_are_cut_off_at_the_head_deadline(
    live_server: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pywharf.connection.HEAD_TIMEOUT_SECONDS", 1.0)
    with slow_clients(live_server) as clients:
        deadline = time.monotonic() + 4
        while any(c.dropped_after is None for c in clients) and time.monotonic() < deadline:
            assert live_server.request("GET", "/simple/")[0] == 200
            time.sleep(0.1)
    dropped = [c.dropped_after for c in clients]
    assert all(d is not None and d < 3.5 for d in dropped), dropped


def test_an_idle_keep_alive_connection_is_closed(
    live_server: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pywharf.connection.IDLE_TIMEOUT_SECONDS", 0.5)
    with raw_connect(live_server, timeout=5) as sock:
        sock.sendall(get_head())
        assert read_response(sock)[0] == 200
        # The server hangs up on an idle connection: with the default 30 s idle timeout the
        # socket's 5 s timeout would raise instead.
        assert sock.recv(10) == b""


# --- heads --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        get_head(extra="X-Big: " + "a" * 70_000 + "\r\n"),
        get_head(extra="".join(f"X-H{n}: {'b' * 40}\r\n" for n in range(2000))),
        b"GET /simple/" + b"c" * 70_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Endless: " + b"d" * 200_000,  # never ends: still refused
    ],
    ids=["one big header", "many headers", "long request line", "unterminated"],
)
def test_oversized_heads_get_431(live_server: Live, head: bytes) -> None:
    with raw_connect(live_server, timeout=5) as sock:
        with contextlib.suppress(OSError):  # the server may answer before reading it all
            sock.sendall(head)
        status, headers, body = read_response(sock)
    assert status == 431 or (status == 414 and b"c" * 100 in head), status
    assert headers.get("connection", "").lower() == "close"
    assert b"Traceback" not in body
    assert live_server.request("GET", "/simple/")[0] == 200


def test_a_head_just_under_the_limit_is_fine(live_server: Live) -> None:
    with raw_connect(live_server) as sock:
        sock.sendall(get_head(extra="X-Big: " + "a" * 60_000 + "\r\n"))
        assert read_response(sock)[0] == 200


@pytest.mark.parametrize(
    "head",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.0\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name : x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
    ],
)
def test_a_malformed_request_gets_400(live_server: Live, head: bytes) -> None:
    with raw_connect(live_server, timeout=5) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 505 ")), data[:80]
    assert b"Traceback" not in data


# --- keep-alive ---------------------------------------------------------------------------------


def test_two_requests_on_one_connection(live_server: Live) -> None:
    connection = http.client.HTTPConnection(live_server.host, live_server.port, timeout=10)
    try:
        connection.request("GET", "/simple/", headers={"Authorization": AUTH})
        first = connection.getresponse()
        assert first.status == 200
        first.read()
        sock = connection.sock
        assert sock is not None, "the server closed a keep-alive connection"
        connection.request("GET", "/", headers={"Authorization": AUTH})
        second = connection.getresponse()
        assert second.status == 200
        second.read()
        assert connection.sock is sock  # the same socket: no reconnect
    finally:
        connection.close()


def test_pipelined_requests_are_answered_in_order(live_server: Live) -> None:
    with raw_connect(live_server) as sock:
        sock.sendall(get_head("/simple/") + get_head("/simple/missing/") + get_head("/"))
        assert [read_response(sock)[0] for _ in range(3)] == [200, 404, 200]


def test_keep_alive_after_an_upload_and_after_an_error(live_server: Live, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    assert upload(live_server, wheel)[0] == 200
    with raw_connect(live_server) as sock:
        sock.sendall(get_head("/simple/missing/"))
        assert read_response(sock)[0] == 404
        sock.sendall(get_head("/simple/demo-pkg/"))
        assert read_response(sock)[0] == 200
        sock.sendall(get_head(f"/simple/demo-pkg/{wheel.name}", "Range: bytes=0-3\r\n"))
        status, _, body = read_response(sock)
        assert (status, body) == (206, wheel.read_bytes()[:4])
        sock.sendall(get_head("/simple/"))
        assert read_response(sock)[0] == 200


def test_connection_close_is_honoured(live_server: Live) -> None:
    with raw_connect(live_server) as sock:
        sock.sendall(get_head("/simple/", "Connection: close\r\n"))
        status, headers, _ = read_response(sock)
        assert status == 200
        assert headers["connection"].lower() == "close"
        assert sock.recv(10) == b""


def test_http_1_0_closes_by_default(live_server: Live) -> None:
    with raw_connect(live_server) as sock:
        sock.sendall(f"GET /simple/ HTTP/1.0\r\nAuthorization: {AUTH}\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
        assert sock.recv(10) == b""


# --- server faults ------------------------------------------------------------------------------

SECRET_DETAIL = "internal detail /secret/path"


def _explode(*args: object, **kwargs: object) -> object:
    raise RuntimeError(SECRET_DETAIL)


def test_a_crashing_backend_is_a_500_without_a_traceback(
    live_server: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    assert upload(live_server, wheel)[0] == 200
    assert live_server.app is not None
    repository = live_server.app.repositories["local"]
    monkeypatch.setattr(repository.backend, "open", _explode)
    monkeypatch.setattr(repository.backend, "put", _explode)
    status, _, body = live_server.request("GET", f"/simple/demo-pkg/{wheel.name}")
    assert status == 500
    assert b"Traceback" not in body
    assert SECRET_DETAIL.encode() not in body
    other = make_wheel(tmp_path, "other", "1.0")
    status, _, body = upload(live_server, other)
    assert status == 500
    assert b"Traceback" not in body and SECRET_DETAIL.encode() not in body
    # the spool file of the failed upload is gone and the server still serves
    assert list((live_server.root / "cache/local/storage/.pywharf/tmp").iterdir()) == []
    assert live_server.request("GET", "/simple/demo-pkg/")[0] == 200


def test_a_crashing_index_is_a_500_without_a_traceback(
    live_server: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert live_server.app is not None
    monkeypatch.setattr(live_server.app.repositories["local"].index, "project", _explode)
    status, headers, body = live_server.request("GET", "/simple/anything/")
    assert status == 500
    assert b"Traceback" not in body and SECRET_DETAIL.encode() not in body
    assert headers["content-type"].startswith("text/plain")


HOSTILE_PATHS = [
    "/simple/%ff%fe/",
    "/simple/%00/",
    "/simple/%00",
    "/simple/demo-pkg/%00.whl",
    "/simple/..%2f..%2f..%2fetc%2fpasswd",
    "/simple/demo-pkg/..%2f.pywharf%2fjournal.jsonl",
    "/simple/demo-pkg/..%2F..%2Fembedded-secrets.toml",
    "/simple/.pywharf/journal.jsonl",
    "/simple/demo-pkg/../.pywharf/journal.jsonl",
    "//simple//",
    "/simple/a/b/c/d/",
    "/simple/?format=%zz",
    "/simple/?%%%=&&&",
    "/%",
    "*",
    "http://example.com/simple/",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_client_errors(live_server: Live, tmp_path: Path, path: str) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    assert upload(live_server, wheel)[0] == 200
    with raw_connect(live_server, timeout=5) as sock:
        sock.sendall(get_head(path))
        status, _, body = read_response(sock)
    assert status < 500, (status, body)
    assert b"Traceback" not in body
    assert b'"op"' not in body and b"write-secret" not in body and b"root:" not in body


def test_unknown_methods_are_405_or_501_not_500(live_server: Live) -> None:
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "BREW"):
        status, _, body = live_server.request(method, "/simple/")
        assert 400 <= status < 500 or status == 501, (method, status)
        assert b"Traceback" not in body


def test_the_server_is_a_threading_http_server() -> None:
    """One thread per connection, from the stdlib: no framework, no event loop to block."""
    assert issubclass(Server, ThreadingHTTPServer)
    assert Server.daemon_threads


# --- the access log -----------------------------------------------------------------------------


def test_every_request_gets_an_access_log_line(tmp_path: Path) -> None:
    log = io.StringIO()
    with serving(build_app(tmp_path / "root"), log) as server:
        live = Live("127.0.0.1", server.server_address[1], tmp_path / "root")
        live.request("GET", "/simple/")
        live.request("GET", "/simple/missing/")
        live.request("GET", "/simple/", auth=None)
        # A line is written after its answer is sent: the client can be faster than the log.
        poll(lambda: log.getvalue().count("\n") >= 3 or None, "three access log lines")
    # Each request's line comes from its own connection's thread, so the order of lines may
    # differ from the order of the requests (seen in CI): match each line to its request.
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    answers = sorted((line.split('"')[1], line.split('"')[2].split()[0]) for line in lines)
    assert answers == [("GET /simple/", "200"), ("GET /simple/", "401"),
                       ("GET /simple/missing/", "404")]  # fmt: skip
    assert READ not in log.getvalue()  # never the secret
