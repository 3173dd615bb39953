"""A connection's bytes: a bounded read of a request head and body, and an answer written back.

Requests are parsed here with our own small reader instead of `BaseHTTPRequestHandler`: the
stdlib parses headers through the `email` package, which dominates the cost of a cached page,
and it cannot bound the time a client takes to send its headers.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import threading
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl
from urllib.parse import unquote

from pywharf.errors import HeadersTooLarge
from pywharf.errors import MalformedRequest
from pywharf.errors import PywharfError
from pywharf.http import FileBody
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import StreamBody
from pywharf.http import parse_byte_count

__all__ = [
    "BODY_TIMEOUT_SECONDS",
    "HEAD_TIMEOUT_SECONDS",
    "IDLE_TIMEOUT_SECONDS",
    "Closed",
    "Connection",
    "Idle",
    "RequestBody",
    "head_bytes",
    "http_now",
    "parse_head",
    "payload",
    "send",
    "send_ready",
    "timeval",
]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; more is a 431
IDLE_TIMEOUT_SECONDS = 30.0  # a keep-alive connection waiting for its next request
# A handler thread waits this long for a connection's next request before parking it in
# `IdleConnections`: back-to-back requests (wrk, a pip download burst) keep their thread and
# pay nothing; a pool connection left idle gives its thread back after a second.
LINGER_SECONDS = 1.0
HEAD_TIMEOUT_SECONDS = 10.0  # from a request's first byte to the end of its headers
BODY_TIMEOUT_SECONDS = 60.0  # silence while a body is being sent
RECV_BYTES = 256 * 1024  # one read of a body
# One read of a head. Most heads are under 1 KiB; asking the kernel for 256 KiB made every
# request allocate (and shrink) 256 KiB, which grew malloc's per-thread arenas by megabytes.
HEAD_RECV_BYTES = 16 * 1024
TLS_FILE_CHUNK_BYTES = 256 * 1024  # a file sent over TLS is read and encrypted in these
# Files up to this size are kept in memory once sent and go out with their head in one
# gathered write: open, sendall, sendfile and close were four GIL hand-offs and a small
# download cost 2.5x a cached page under 64 connections (issue 16). Larger files use sendfile.
SMALL_FILE_BYTES = 64 * 1024
SMALL_FILES_CACHE_BYTES = 16 * 1024 * 1024  # what the cache of small files holds at most
_UNSAFE_IN_HEADER = re.compile(r"[\r\n\x00]")


def _reason_phrase(status: int) -> str:
    """The standard phrase (RFC 9110 section 15), never "Unknown": 303, 429, 507 included."""
    phrase = _PHRASES.get(status)
    if phrase is None:  # HTTPStatus(status) costs a microsecond: look it up once
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
    return phrase


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class Closed(Exception):
    """The peer went away or timed out: drop the connection without an answer."""


class TimedOut(Closed):
    """A read's time limit passed."""


class Idle(Exception):
    """No request came within the linger time: park the connection and free its thread."""

    def __init__(self, since: float) -> None:
        super().__init__()
        self.since = since


def timeval(seconds: float) -> bytes:
    """A `struct timeval` for SO_RCVTIMEO / SO_SNDTIMEO (at least 1 ms: 0 means forever)."""
    whole, fraction = divmod(max(seconds, 0.001), 1.0)
    return struct.pack("@ll", int(whole), int(fraction * 1_000_000))


class Connection:
    """A buffered reader over one socket, with the head's size and time bounded."""

    def __init__(self, sock: socket.socket, tls: bool = False) -> None:
        # A blocking socket whose timeouts the kernel keeps (SO_RCVTIMEO / SO_SNDTIMEO):
        # socket.settimeout() makes every recv and send a poll() plus the call, two GIL
        # hand-offs instead of one, which doubled the CPU of a cached page under 64
        # connections.
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval(BODY_TIMEOUT_SECONDS))
        self.sock = sock
        self.tls = tls
        self.buffer = bytearray()
        self._timeout = -1.0
        # A TLS connection is never parked (its decrypted bytes may wait inside OpenSSL, out
        # of the selector's sight): it keeps its thread for the whole idle timeout.
        self.linger = IDLE_TIMEOUT_SECONDS if tls else LINGER_SECONDS

    def _receive(self, size: int, timeout: float) -> bytes:
        if timeout <= 0:
            raise Closed
        if timeout != self._timeout:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(timeout))
            self._timeout = timeout
        try:
            data = self.sock.recv(size)
        except BlockingIOError:  # SO_RCVTIMEO passed (EAGAIN)
            raise TimedOut from None
        except OSError:
            raise Closed from None
        if not data:
            raise Closed
        return data

    def _fill(self, timeout: float) -> None:
        self.buffer += self._receive(HEAD_RECV_BYTES, timeout)

    def read_head(self) -> bytes:
        """The request line and headers; the clock starts at the first byte."""
        if not self.buffer:
            self._await_request()
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

    def receive_ready(self) -> None:
        """Take what has arrived without waiting (the connection loop reads this way); a
        closed stream raises `Closed`."""
        try:
            data = self.sock.recv(HEAD_RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            raise Closed from None
        if not data:
            raise Closed
        self.buffer += data

    def whole_request(self) -> bytes | None:
        """The buffered request's head, if the buffer holds exactly one bodiless request's
        head and nothing more (anything else is read on a thread, with its time bounds)."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        return bytes(buffer[:end]) if 0 <= end == len(buffer) - 4 else None

    def _await_request(self) -> None:
        """Wait a little for the next request; `Idle` hands the rest of the wait over."""
        since = time.monotonic()
        try:
            self._fill(min(self.linger, IDLE_TIMEOUT_SECONDS))
        except TimedOut:
            raise Idle(since) from None

    def read(self, size: int) -> bytes:
        if not self.buffer:
            return self._receive(min(size, RECV_BYTES), BODY_TIMEOUT_SECONDS)  # no extra copy
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


class RequestBody:
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
        except Closed:
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
    # unquote and parse_qsl cost a few microseconds even on nothing: most requests need neither.
    query_items = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    connection_header = headers.get("connection", "").lower()
    keep_alive = "close" not in connection_header and (
        version == "HTTP/1.1" or "keep-alive" in connection_header
    )
    expect = headers.get("expect", "").lower() == "100-continue"
    request = Request(
        method=method,
        path=unquote(path) if "%" in path else path,
        query=query_items,
        headers=headers,
        body=RequestBody(connection, length or 0, expect),
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


def head_bytes(response: Response, method: str, keep_alive: bool) -> bytes:
    reason = response.reason or _reason_phrase(response.status)
    headers = response.headers
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    # No header value may end its line early (response splitting): one search over them all,
    # and only a value that would is cleaned. None is beyond Latin-1.
    if _UNSAFE_IN_HEADER.search(text.replace("\r\n", "")) is not None:
        text = "".join(
            [f"{name}: {_UNSAFE_IN_HEADER.sub('', value)}\r\n" for name, value in headers]
        )
    if response.status != 304 and "Content-Length" not in [name for name, _ in headers]:
        text += f"Content-Length: {response.length}\r\n"
    close = "" if keep_alive else "Connection: close\r\n"
    head = f"HTTP/1.1 {response.status} {reason}\r\n{text}Date: {http_now()}\r\n{close}\r\n"
    return head.encode("latin-1", "replace")


_date_cache: list[Any] = [0, ""]


def http_now() -> str:
    """The Date header, formatted once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))]
    return str(_date_cache[1])


def send(connection: Connection, response: Response, method: str, keep_alive: bool) -> None:
    sock = connection.sock
    head = head_bytes(response, method, keep_alive)
    body = response.body
    if isinstance(body, StreamBody):
        _send_stream(sock, head, body, send_body=method != "HEAD" and response.status != 304)
        return
    data = payload(response, method)
    if isinstance(body, FileBody) and data is None:  # a larger file, sent from disk
        if connection.tls:
            _send_encrypted(sock, head, body)
        else:
            _send_head_more(sock, head)
            _send_file(sock, body)
    elif connection.tls:  # OpenSSL takes no gathered write
        sock.sendall(head + (data or b""))
    else:
        _send_together(sock, head, data or b"")


def payload(response: Response, method: str) -> bytes | None:
    """The bytes that follow the head, when they are in memory (a page, an answer, a small
    file); None for a larger file, sent from disk, or a stream."""
    body = response.body
    if isinstance(body, StreamBody):
        return None
    if method == "HEAD" or response.status == 304:
        return b""
    if isinstance(body, FileBody):
        small = body.offset + body.length <= SMALL_FILE_BYTES
        return SMALL_FILES.get(body) if small else None
    return body


def send_ready(sock: socket.socket, head: bytes, body: bytes) -> bytes:
    """Send head and body in one gathered write without waiting: what did not fit in the
    socket's buffer comes back, for a thread to send."""
    try:
        sent = sock.sendmsg([head, body], [], socket.MSG_DONTWAIT)
    except BlockingIOError:
        sent = 0
    except OSError:
        raise Closed from None
    if sent == len(head) + len(body):
        return b""
    return (head + body)[sent:]


class SmallFiles:
    """The bytes of small stored files, read once: stored files never change in place (a
    filename never holds other bytes), so a path keeps its bytes while it is cached.

    Readers take no lock (a dict lookup is atomic); a miss reads the file and, under the lock,
    inserts it, evicting the oldest entries beyond `capacity` bytes.
    """

    def __init__(self, capacity: int = SMALL_FILES_CACHE_BYTES) -> None:
        self._files: dict[str, bytes] = {}
        self._capacity = capacity
        self._held = 0
        self._lock = threading.Lock()

    def get(self, body: FileBody) -> bytes:
        """The `body`'s bytes (its range of the file)."""
        end = body.offset + body.length
        data = self._files.get(body.path)
        if data is None or len(data) < end:
            data = self._read(body.path)
            if len(data) < end:  # the file shrank under us: the client sees a short body
                raise Closed
        return data if body.offset == 0 and len(data) == end else data[body.offset : end]

    def _read(self, path: str) -> bytes:
        try:
            # O_NOFOLLOW: a symlink planted in storage is never sent, whatever it points to.
            with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb", buffering=0) as file:
                data = file.read(SMALL_FILE_BYTES + 1)  # a larger file's first bytes: a Range
        except OSError:
            raise Closed from None  # gone since the stat: the client sees no body
        if len(data) <= SMALL_FILE_BYTES:
            with self._lock:
                old = self._files.pop(path, b"")
                self._held += len(data) - len(old)
                self._files[path] = data
                while self._held > self._capacity:
                    self._held -= len(self._files.pop(next(iter(self._files))))
        return data


SMALL_FILES = SmallFiles()


def _send_head_more(sock: socket.socket, head: bytes) -> None:
    """The head with MSG_MORE: the kernel holds it for the file's first bytes (one packet for
    a small file, as nginx's `tcp_nopush` does), instead of a packet of its own."""
    sent = sock.send(head, socket.MSG_MORE)
    if sent < len(head):
        sock.sendall(head[sent:], socket.MSG_MORE)


def _send_file(sock: socket.socket, body: FileBody) -> None:
    """Zero-copy with os.sendfile. Not socket.sendfile(): it builds a poll selector per call,
    which cost more than a small wheel's whole transfer; our socket blocks (kernel timeouts)."""
    # O_NOFOLLOW: a symlink planted in storage is never sent, whatever it points to.
    descriptor = os.open(body.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        offset, remaining = body.offset, body.length
        while remaining:
            sent = os.sendfile(sock.fileno(), descriptor, offset, remaining)
            if sent == 0:  # the file shrank under us: the client sees a short body
                raise Closed
            offset += sent
            remaining -= sent
    finally:
        os.close(descriptor)


def _send_stream(sock: socket.socket, head: bytes, body: StreamBody, send_body: bool) -> None:
    """A body made while sent; if making it fails the client gets a short body, never a
    complete wrong one (the head has gone out: no error answer is possible any more)."""
    try:
        sock.sendall(head)
        for chunk in body.chunks if send_body else ():
            sock.sendall(chunk)
    except PywharfError as error:
        log.warning("response cut off: %s", error)
        raise Closed from None
    finally:
        body.close()


def _send_encrypted(sock: socket.socket, head: bytes, body: FileBody) -> None:
    """Over TLS neither sendfile nor sendmsg applies: the bytes pass through OpenSSL."""
    sock.sendall(head)
    with os.fdopen(os.open(body.path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
        file.seek(body.offset)
        remaining = body.length
        while remaining:
            chunk = file.read(min(TLS_FILE_CHUNK_BYTES, remaining))
            if not chunk:  # the file shrank under us: the client sees a short body
                raise Closed
            sock.sendall(chunk)
            remaining -= len(chunk)


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
