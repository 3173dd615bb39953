"""The HTTP shell: sockets in, `App.handle`, bytes out. The only module that imports http.server.

Requests are parsed here with our own small reader instead of `BaseHTTPRequestHandler`: the
stdlib parses headers through the `email` package, which dominates the cost of a cached page,
and it cannot bound the time a client takes to send its headers.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import Any
from typing import TextIO
from urllib.parse import parse_qsl
from urllib.parse import unquote

from pywharf.app import App
from pywharf.app import error_response
from pywharf.errors import HeadersTooLarge
from pywharf.errors import MalformedRequest
from pywharf.errors import RequestError
from pywharf.http import FileBody
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import parse_byte_count

__all__ = ["Server", "serve"]

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; more is a 431
IDLE_TIMEOUT_SECONDS = 30.0  # a keep-alive connection waiting for its next request
HEAD_TIMEOUT_SECONDS = 10.0  # from a request's first byte to the end of its headers
BODY_TIMEOUT_SECONDS = 60.0  # silence while a body is being sent
ACCESS_LOG_FLUSH_SECONDS = 0.2
RECV_BYTES = 256 * 1024  # one read of a body
# One read of a head. Most heads are under 1 KiB; asking the kernel for 256 KiB made every
# request allocate (and shrink) 256 KiB, which grew malloc's per-thread arenas by megabytes.
HEAD_RECV_BYTES = 16 * 1024
_UNSAFE_IN_HEADER = re.compile(r"[\r\n\x00]")
_REASONS = {
    200: "OK", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
    411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
    416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip


class _Closed(Exception):
    """The peer went away or timed out: drop the connection without an answer."""


def _timeval(seconds: float) -> bytes:
    """A `struct timeval` for SO_RCVTIMEO / SO_SNDTIMEO (at least 1 ms: 0 means forever)."""
    whole, fraction = divmod(max(seconds, 0.001), 1.0)
    return struct.pack("@ll", int(whole), int(fraction * 1_000_000))


class Connection:
    """A buffered reader over one socket, with the head's size and time bounded."""

    def __init__(self, sock: socket.socket) -> None:
        # A blocking socket whose timeouts the kernel keeps (SO_RCVTIMEO / SO_SNDTIMEO):
        # socket.settimeout() makes every recv and send a poll() plus the call, two GIL
        # hand-offs instead of one, which doubled the CPU of a cached page under 64
        # connections.
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(BODY_TIMEOUT_SECONDS))
        self.sock = sock
        self.buffer = bytearray()
        self._timeout = -1.0

    def _receive(self, size: int, timeout: float) -> bytes:
        if timeout <= 0:
            raise _Closed
        if timeout != self._timeout:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._timeout = timeout
        try:
            data = self.sock.recv(size)
        except OSError:  # including socket.timeout
            raise _Closed from None
        if not data:
            raise _Closed
        return data

    def _fill(self, timeout: float) -> None:
        self.buffer += self._receive(HEAD_RECV_BYTES, timeout)

    def read_head(self) -> bytes:
        """The request line and headers; the clock starts at the first byte."""
        if not self.buffer:
            self._fill(IDLE_TIMEOUT_SECONDS)
        deadline = time.monotonic() + HEAD_TIMEOUT_SECONDS
        while True:
            end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
            if end >= 0:
                head = bytes(self.buffer[:end])
                del self.buffer[: end + 4]
                return head
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise HeadersTooLarge(f"the request headers are over {MAX_HEAD_BYTES} bytes")
            self._fill(deadline - time.monotonic())  # a slow sender is cut off at the deadline

    def read(self, size: int) -> bytes:
        if not self.buffer:
            return self._receive(min(size, RECV_BYTES), BODY_TIMEOUT_SECONDS)  # no extra copy
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


class Body:
    """The request body: exactly Content-Length bytes; sends `100 Continue` on first read."""

    def __init__(self, connection: Connection, length: int, expect_continue: bool) -> None:
        self._connection = connection
        self.remaining = length
        self._expect_continue = expect_continue

    def read(self, size: int) -> bytes:
        if self.remaining <= 0:
            return b""
        if self._expect_continue:
            self._expect_continue = False
            self._connection.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            data = self._connection.read(min(size, self.remaining))
        except _Closed:
            return b""  # the caller reports the cut-off body
        self.remaining -= len(data)
        return data


def parse_head(head: bytes, connection: Connection) -> tuple[Request, bool]:
    """A `Request` and whether the connection may be kept alive after it."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise MalformedRequest("the request line is not 'METHOD target HTTP/1.1'") from None
    if not version.startswith("HTTP/1."):
        raise MalformedRequest(f"unsupported protocol {version!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise MalformedRequest(f"malformed header line {line[:60]!r}")
        key = name.lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    path, _, query = target.partition("?")
    length = _content_length(headers)
    connection_header = headers.get("connection", "").lower()
    keep_alive = "close" not in connection_header and (
        version == "HTTP/1.1" or "keep-alive" in connection_header
    )
    expect = headers.get("expect", "").lower() == "100-continue"
    request = Request(
        method=method,
        path=unquote(path),
        query=dict(parse_qsl(query, keep_blank_values=True)),
        headers=headers,
        body=Body(connection, length or 0, expect),
        content_length=length,
    )
    return request, keep_alive and "transfer-encoding" not in headers


def _content_length(headers: dict[str, str]) -> int | None:
    if "transfer-encoding" in headers:
        return None  # chunked bodies are refused by the routes that take a body
    value = headers.get("content-length")
    if value is None:
        return 0
    length = parse_byte_count(value)
    if length is None:
        raise MalformedRequest(f"Content-Length {value[:60]!a} is not a byte count")
    return length


def _head_bytes(response: Response, method: str, keep_alive: bool) -> bytes:
    reason = response.reason or _REASONS.get(response.status, "Unknown")
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    # No header value may end its line early (response splitting); none is beyond Latin-1.
    lines += [f"{name}: {_UNSAFE_IN_HEADER.sub('', value)}" for name, value in response.headers]
    if response.status != 304 and not any(n == "Content-Length" for n, _ in response.headers):
        lines.append(f"Content-Length: {response.length}")
    lines.append(f"Date: {_http_now()}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


_date_cache: list[Any] = [0, ""]


def _http_now() -> str:
    """The Date header, formatted once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))]
    return str(_date_cache[1])


def _send(sock: socket.socket, response: Response, method: str, keep_alive: bool) -> None:
    head = _head_bytes(response, method, keep_alive)
    body = response.body
    if method == "HEAD" or response.status == 304:
        sock.sendall(head)
    elif isinstance(body, FileBody):
        sock.sendall(head)
        _send_file(sock, body)
    else:
        _send_together(sock, head, body)


def _send_file(sock: socket.socket, body: FileBody) -> None:
    """Zero-copy with os.sendfile. Not socket.sendfile(): it builds a poll selector per call,
    which cost more than a small wheel's whole transfer; our socket blocks (kernel timeouts)."""
    descriptor = os.open(body.path, os.O_RDONLY)
    try:
        offset, remaining = body.offset, body.length
        while remaining:
            sent = os.sendfile(sock.fileno(), descriptor, offset, remaining)
            if sent == 0:  # the file shrank under us: the client sees a short body
                raise _Closed
            offset += sent
            remaining -= sent
    finally:
        os.close(descriptor)


def _send_together(sock: socket.socket, head: bytes, body: bytes) -> None:
    """Head and body in one gathered write: no Nagle/delayed-ACK stall between two sends,
    and no copy of a large page into a new `head + body`."""
    sent = sock.sendmsg([head, body])
    if sent < len(head):
        sock.sendall(head[sent:])
        sent = len(head)
    if sent - len(head) < len(body):
        with memoryview(body) as view:
            sock.sendall(view[sent - len(head) :])


class Handler(socketserver.BaseRequestHandler):
    """One connection: requests in a loop while the client keeps it alive."""

    server: Server
    request: socket.socket

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(self.request)
        client = self.client_address[0]
        try:
            while self._one(connection, client):
                pass
        except (_Closed, OSError):
            pass

    def _one(self, connection: Connection, client: str) -> bool:
        started = time.monotonic()
        try:
            request, keep_alive = parse_head(connection.read_head(), connection)
        except RequestError as error:
            self._answer(connection, error_response(error), "-", "-", False, client, started)
            return False
        request.client = client
        response = self.server.app.handle(request)
        body = request.body
        leftover = isinstance(body, Body) and body.remaining > 0  # an unread body: not reusable
        keep_alive = keep_alive and not response.close and not leftover
        self._answer(
            connection, response, request.method, request.path, keep_alive, client, started
        )
        return keep_alive

    def _answer(
        self, connection: Connection, response: Response, method: str, path: str,
        keep_alive: bool, client: str, started: float,
    ) -> None:  # fmt: skip
        try:
            _send(connection.sock, response, method, keep_alive)
        finally:
            self.server.log_access(client, response, method, path, started)


class Server(ThreadingHTTPServer):
    """A thread per connection; the app and the access log hang off the server."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, access_log: TextIO | None) -> None:
        self.app = app
        # Set before binding: a failed bind calls server_close(), which closes the log.
        self.access_log = AccessLog(access_log) if access_log is not None else None
        super().__init__(address, Handler)

    def log_access(
        self, client: str, response: Response, method: str, path: str, started: float
    ) -> None:
        if self.access_log is None:
            return
        milliseconds = (time.monotonic() - started) * 1000
        self.access_log.add(
            f'{client} {response.user} [{_http_now()}] "{method} {path}" '
            f"{response.status} {response.length} {milliseconds:.1f}ms\n"
        )

    def server_close(self) -> None:
        super().server_close()
        if self.access_log is not None:
            self.access_log.close()


class AccessLog:
    """Access-log lines, written by one thread a few times a second.

    A write per request, under the stream's lock, serialized every connection thread on it
    (the largest cost of a cached page under 64 connections); a deque's append needs no lock.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: collections.deque[str] = collections.deque()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def add(self, line: str) -> None:
        self._lines.append(line)

    def _run(self) -> None:
        while not self._closed.wait(ACCESS_LOG_FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        if lines:
            self._stream.write("".join(lines))
            self._stream.flush()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.flush()


def serve(server: Server, on_stop: Callable[[], None]) -> None:
    """Serve until SIGTERM or Ctrl-C, then stop cleanly: `on_stop` discards unfinished work."""

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever(), which runs on this thread: ask from another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.server_close()
        on_stop()


def default_access_log() -> TextIO:
    return os.fdopen(os.dup(sys.stderr.fileno()), "w")
