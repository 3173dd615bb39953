"""The HTTP shell: sockets in, `App.handle`, bytes out. The only module that imports http.server.

Requests are parsed here with our own small reader instead of `BaseHTTPRequestHandler`: the
stdlib parses headers through the `email` package, which dominates the cost of a cached page,
and it cannot bound the time a client takes to send its headers.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import logging
import os
import re
import resource
import selectors
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING
from typing import Any
from typing import TextIO
from urllib.parse import parse_qsl
from urllib.parse import unquote

from pywharf.app import App
from pywharf.app import error_response
from pywharf.errors import ConfigError
from pywharf.errors import HeadersTooLarge
from pywharf.errors import MalformedRequest
from pywharf.errors import PywharfError
from pywharf.errors import RequestError
from pywharf.errors import ServerBusy
from pywharf.http import FileBody
from pywharf.http import Request
from pywharf.http import Response
from pywharf.http import StreamBody
from pywharf.http import parse_byte_count

if TYPE_CHECKING:
    import ssl

__all__ = ["IdleConnections", "Server", "TLSContext", "serve"]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; more is a 431
IDLE_TIMEOUT_SECONDS = 30.0  # a keep-alive connection waiting for its next request
BUSY_IDLE_TIMEOUT_SECONDS = 5.0  # the same, while over half of --max_connections are open
# A handler thread waits this long for a connection's next request before parking it in
# `IdleConnections`: back-to-back requests (wrk, a pip download burst) keep their thread and
# pay nothing; a pool connection left idle gives its thread back after a second.
LINGER_SECONDS = 1.0
SWEEP_SECONDS = 0.25  # how often parked connections are checked against their idle timeout
RETRY_AFTER_SECONDS = 5
REFUSED_LINGER_SECONDS = 2.0  # a refused connection's request is read and dropped this long
MAX_REFUSED_LINGERING = 128  # beyond that, refused connections are closed at once
# Descriptors kept out of the connection cap: files being sent, spools, the journal, the log.
FD_HEADROOM = 64
# Without a spare descriptor, accepting stops this long after EMFILE (nginx's default
# accept_mutex_delay, the pause ngx_event_accept.c takes before it accepts again).
ACCEPT_BACKOFF_SECONDS = 0.5
HEAD_TIMEOUT_SECONDS = 10.0  # from a request's first byte to the end of its headers
BODY_TIMEOUT_SECONDS = 60.0  # silence while a body is being sent
ACCESS_LOG_FLUSH_SECONDS = 0.2
RECV_BYTES = 256 * 1024  # one read of a body
# One read of a head. Most heads are under 1 KiB; asking the kernel for 256 KiB made every
# request allocate (and shrink) 256 KiB, which grew malloc's per-thread arenas by megabytes.
HEAD_RECV_BYTES = 16 * 1024
# The first byte of a TLS handshake record (RFC 8446 section 5.1: ContentType.handshake).
TLS_HANDSHAKE_BYTE = 0x16
TLS_FILE_CHUNK_BYTES = 256 * 1024  # a file sent over TLS is read and encrypted in these
# Modern ciphers for TLS 1.2 (forward secrecy, AEAD); TLS 1.3's suites are all modern already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
_PLAIN_HTTP_MESSAGE = b"This port speaks HTTPS: use an https:// URL.\n"
_PLAIN_HTTP_ON_TLS = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
    % (len(_PLAIN_HTTP_MESSAGE), _PLAIN_HTTP_MESSAGE)
)
_UNSAFE_IN_HEADER = re.compile(r"[\r\n\x00]")
# Escaped in access-log fields: everything outside printable ASCII, plus the quote and the
# backslash, as nginx escapes its log variables (`\xNN`).
_UNSAFE_IN_LOG = re.compile(r'[^\x20-\x7e]|["\\]')


def _reason_phrase(status: int) -> str:
    """The standard phrase (RFC 9110 section 15), never "Unknown": 303, 429, 507 included."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


class _Closed(Exception):
    """The peer went away or timed out: drop the connection without an answer."""


class _TimedOut(_Closed):
    """A read's time limit passed."""


class _Idle(Exception):
    """No request came within the linger time: park the connection and free its thread."""

    def __init__(self, since: float) -> None:
        super().__init__()
        self.since = since


def _timeval(seconds: float) -> bytes:
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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(BODY_TIMEOUT_SECONDS))
        self.sock = sock
        self.tls = tls
        self.buffer = bytearray()
        self._timeout = -1.0
        # A TLS connection is never parked (its decrypted bytes may wait inside OpenSSL, out
        # of the selector's sight): it keeps its thread for the whole idle timeout.
        self.linger = IDLE_TIMEOUT_SECONDS if tls else LINGER_SECONDS

    def _receive(self, size: int, timeout: float) -> bytes:
        if timeout <= 0:
            raise _Closed
        if timeout != self._timeout:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
            self._timeout = timeout
        try:
            data = self.sock.recv(size)
        except BlockingIOError:  # SO_RCVTIMEO passed (EAGAIN)
            raise _TimedOut from None
        except OSError:
            raise _Closed from None
        if not data:
            raise _Closed
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

    def _await_request(self) -> None:
        """Wait a little for the next request; `_Idle` hands the rest of the wait over."""
        since = time.monotonic()
        try:
            self._fill(min(self.linger, IDLE_TIMEOUT_SECONDS))
        except _TimedOut:
            raise _Idle(since) from None

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


def _head_bytes(response: Response, method: str, keep_alive: bool) -> bytes:
    reason = response.reason or _reason_phrase(response.status)
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


def _send(connection: Connection, response: Response, method: str, keep_alive: bool) -> None:
    sock = connection.sock
    head = _head_bytes(response, method, keep_alive)
    body = response.body
    if isinstance(body, StreamBody):
        _send_stream(sock, head, body, send_body=method != "HEAD" and response.status != 304)
    elif method == "HEAD" or response.status == 304:
        sock.sendall(head)
    elif connection.tls:
        _send_encrypted(sock, head, body)
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


def _send_stream(sock: socket.socket, head: bytes, body: StreamBody, send_body: bool) -> None:
    """A body made while sent; if making it fails the client gets a short body, never a
    complete wrong one (the head has gone out: no error answer is possible any more)."""
    try:
        sock.sendall(head)
        for chunk in body.chunks if send_body else ():
            sock.sendall(chunk)
    except PywharfError as error:
        log.warning("response cut off: %s", error)
        raise _Closed from None
    finally:
        body.close()


def _send_encrypted(sock: socket.socket, head: bytes, body: bytes | FileBody) -> None:
    """Over TLS neither sendfile nor sendmsg applies: the bytes pass through OpenSSL."""
    if not isinstance(body, FileBody):
        sock.sendall(head + body)
        return
    sock.sendall(head)
    with open(body.path, "rb") as file:
        file.seek(body.offset)
        remaining = body.length
        while remaining:
            chunk = file.read(min(TLS_FILE_CHUNK_BYTES, remaining))
            if not chunk:  # the file shrank under us: the client sees a short body
                raise _Closed
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


class Handler(socketserver.BaseRequestHandler):
    """A connection's requests, in a loop while they come; `idle_since` set: it went idle."""

    server: Server
    request: socket.socket
    idle_since: float | None = None

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.tls is not None:
            self._handle_tls(self.server.tls)
            return
        self._serve(Connection(self.request))

    def _serve(self, connection: Connection) -> None:
        client = self.client_address[0]
        try:
            while self._one(connection, client):
                pass
        except _Idle as idle:
            self.idle_since = idle.since  # nothing is buffered: the connection may be parked
        except (_Closed, OSError):
            pass

    def _handle_tls(self, tls: TLSContext) -> None:
        """Handshake on this thread (a slow client never holds up accepting), then serve."""
        sock = self.request
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(HEAD_TIMEOUT_SECONDS))
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first[0] != TLS_HANDSHAKE_BYTE:
                # Plain HTTP on the TLS port: say so in plain HTTP and close (nginx answers
                # the same way); the server itself is untouched.
                _refuse_plain(sock)
                return
            if not first:
                return
            secured = tls.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:
            return
        try:
            secured.settimeout(HEAD_TIMEOUT_SECONDS)
            secured.do_handshake()
            self._serve(Connection(secured, tls=True))
        except OSError:
            pass  # a failed handshake (ssl.SSLError is an OSError) closes the connection
        finally:
            secured.close()  # wrap_socket took the descriptor: the original is detached

    def _one(self, connection: Connection, client: str) -> bool:
        started = time.monotonic()
        try:
            request, keep_alive = parse_head(connection.read_head(), connection)
        except RequestError as error:
            self._answer(connection, error_response(error), "-", "-", False, client, started)
            return False
        request.client = client
        request.secure = connection.tls
        response = self.server.app.handle(request)
        body = request.body
        leftover = (
            isinstance(body, RequestBody) and body.remaining > 0
        )  # an unread body: not reusable
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
            _send(connection, response, method, keep_alive)
        finally:
            self.server.log_access(client, response, method, path, started)


class Server(ThreadingHTTPServer):
    """A thread per busy connection; idle keep-alive connections wait in `IdleConnections`.

    At most `max_connections` are open at once (parked ones included); one more is answered
    503 with Retry-After and closed. The app and the access log hang off the server.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        access_log: TextIO | None,
        max_connections: int = 1000,
        tls: TLSContext | None = None,
        log_format: str = "text",
    ) -> None:
        self.app = app
        self.tls = tls
        self.log_json = log_format == "json"
        # Set before binding: a failed bind calls server_close(), which closes them.
        self.access_log = AccessLog(access_log) if access_log is not None else None
        self.max_connections = _within_fd_limit(max_connections)
        self.connections = 0  # accepted and not yet closed, parked ones included
        self._count_lock = threading.Lock()
        self._spare_fd = _open_spare()
        self.idle = IdleConnections(self)
        app.open_connections = lambda: self.connections
        super().__init__(address, Handler)

    def idle_timeout(self) -> float:
        """How long a keep-alive connection may wait for its next request, now."""
        busy = self.connections > self.max_connections // 2
        return BUSY_IDLE_TIMEOUT_SECONDS if busy else IDLE_TIMEOUT_SECONDS

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return self.socket.accept()
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                self._shed()
            raise  # socketserver drops a failed accept and selects again

    def _shed(self) -> None:
        """Out of descriptors: refuse the waiting connection through the spare descriptor.

        Otherwise the listening socket stays readable and serve_forever spins on a failing
        accept (90 % CPU, nothing answered). libuv keeps a spare descriptor for the same end
        (`uv__emfile_trick`, src/unix/stream.c). Without one (another thread took the freed
        number), accepting pauses, as nginx's does (src/event/ngx_event_accept.c).
        """
        if self._spare_fd is None:
            time.sleep(ACCEPT_BACKOFF_SECONDS)  # this thread only accepts: nothing else waits
            self._spare_fd = _open_spare()
            return
        os.close(self._spare_fd)
        try:
            sock, _ = self.socket.accept()
        except OSError:
            pass
        else:
            _refuse(sock, "the server is out of file descriptors; try again shortly")
            sock.close()
        finally:
            self._spare_fd = _open_spare()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection: a handler thread, or a 503 when `max_connections` are open."""
        with self._count_lock:
            admitted = self.connections < self.max_connections
            if admitted:
                self.connections += 1
        if admitted:
            self.resume(request, client_address)
        else:
            reason = f"the server is at its limit of {self.max_connections} connections"
            self.idle.refuse(request, reason)

    def resume(self, request: socket.socket, client_address: Any) -> None:
        """Give a counted connection a handler thread."""
        try:
            super().process_request(request, client_address)  # ThreadingMixIn: a new thread
        except RuntimeError:  # "can't start new thread": a thread limit or no memory
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """ThreadingMixIn's, except that a connection gone idle is parked, not closed."""
        idle_since = None
        try:
            idle_since = Handler(request, client_address, self).idle_since
        finally:
            if idle_since is None:
                self.shutdown_request(request)
            else:
                self.idle.park(request, client_address, idle_since)

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._count_lock:
            self.connections -= 1

    def log_access(
        self, client: str, response: Response, method: str, path: str, started: float
    ) -> None:
        if self.access_log is None:
            return
        milliseconds = (time.monotonic() - started) * 1000
        if self.log_json:  # json.dumps escapes every control character: one line each
            fields = {"time": _http_now(), "client": client, "user": response.user,
                      "method": method, "path": path, "status": response.status,
                      "bytes": response.length, "ms": round(milliseconds, 1)}  # fmt: skip
            self.access_log.add(json.dumps(fields) + "\n")
            return
        self.access_log.add(
            f"{client} {_log_field(response.user)} [{_http_now()}] "
            f'"{_log_field(method)} {_log_field(path)}" '
            f"{response.status} {response.length} {milliseconds:.1f}ms\n"
        )

    def server_close(self) -> None:
        super().server_close()
        self.idle.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
        if self.access_log is not None:
            self.access_log.close()


def _log_field(value: str) -> str:
    """A client-controlled access-log field with every unsafe byte as `\\xNN` (nginx's escape):
    one request is always one line, and a `%0a` in a path cannot forge another."""
    if _UNSAFE_IN_LOG.search(value) is None:
        return value
    return _UNSAFE_IN_LOG.sub(
        lambda match: "".join(f"\\x{byte:02X}" for byte in match[0].encode("utf-8", "replace")),
        value,
    )


def _within_fd_limit(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; cap connections below what it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        # macOS reports an infinite hard limit that setrlimit refuses: keep what we have.
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    allowed = max(1, soft - FD_HEADROOM)
    if max_connections > allowed:
        log.warning(
            "max_connections %d lowered to %d: the file-descriptor limit is %d (ulimit -n)",
            max_connections, allowed, soft,
        )  # fmt: skip
        return allowed
    return max_connections


def _open_spare() -> int | None:
    """A descriptor held in reserve, given up to refuse a connection when none is left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _refuse(sock: socket.socket, reason: str) -> None:
    """Send a whole 503 without blocking: a new socket's send buffer takes it at once."""
    response = error_response(ServerBusy(reason, RETRY_AFTER_SECONDS))
    body = response.body
    assert isinstance(body, bytes)  # error_response answers text
    try:
        sock.setblocking(False)
        sock.send(_head_bytes(response, "GET", keep_alive=False) + body)
        # Whatever request already arrived is read, so that closing sends FIN, not a RST
        # that could discard the answer before the client reads it.
        sock.recv(RECV_BYTES)
    except OSError:
        pass


def _refuse_plain(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(_PLAIN_HTTP_ON_TLS)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(RECV_BYTES)  # read what the client sent, so closing sends FIN, not RST


class TLSContext:
    """The server's TLS settings; `reload` swaps in a rotated certificate for new connections.

    `ssl` is imported only here: a plain-HTTP server never pays its memory.
    """

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile, self.keyfile = certfile, keyfile
        self.context = self._load()

    def _load(self) -> ssl.SSLContext:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        try:
            context.load_cert_chain(self.certfile, self.keyfile or None)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"--certfile/--keyfile: cannot load them: {error}") from None
        return context

    def reload(self) -> None:
        """Re-read the files; a broken pair is logged and the current one stays."""
        try:
            self.context = self._load()  # one assignment: a handshake sees old or new
        except ConfigError as error:
            log.error("TLS certificate not reloaded: %s", error)
            return
        log.info("TLS certificate reloaded from %s", self.certfile)


class _Parked:
    """A keep-alive connection between requests."""

    __slots__ = ("client_address", "since", "sock")

    def __init__(self, sock: socket.socket, client_address: Any, since: float) -> None:
        self.sock = sock
        self.client_address = client_address
        self.since = since


class IdleConnections:
    """Idle keep-alive connections, watched by one selector thread instead of a thread each.

    A thread per idle connection cost 2,000 threads and +48 MiB of RSS at 2,000 connections;
    here one costs a selector entry. When a parked connection turns readable it gets a
    handler thread again (`Server.resume`); one idle past `Server.idle_timeout()` is closed.
    Refused connections linger here too, so that their request is read before they close.
    """

    def __init__(self, server: Server) -> None:
        self._server = server
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        # Other threads only append here; the selector is touched by its own thread alone.
        self._arriving: collections.deque[_Parked] = collections.deque()
        self._refused: collections.deque[socket.socket] = collections.deque()
        self._parked: dict[int, _Parked] = {}
        self._lingering: dict[int, tuple[socket.socket, float]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="idle-connections", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._parked)

    def park(self, sock: socket.socket, client_address: Any, since: float) -> None:
        with self._lock:
            if not self._closed:
                self._arriving.append(_Parked(sock, client_address, since))
                self._wake()
                return
        self._server.shutdown_request(sock)

    def refuse(self, sock: socket.socket, reason: str) -> None:
        """Answer an uncounted connection 503 and close it once its request is read."""
        _refuse(sock, reason)
        with self._lock:
            if not self._closed and len(self._lingering) < MAX_REFUSED_LINGERING:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                    self._refused.append(sock)
                    self._wake()
                    return
        sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is already pending
            self._wake_write.send(b"\0")

    def _run(self) -> None:
        swept = time.monotonic()
        while not self._closed:
            for key, _ in self._selector.select(SWEEP_SECONDS):
                if key.fileobj is self._wake_read:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(4096)
                else:
                    self._readable(key.fd)
            self._admit()
            now = time.monotonic()
            if now - swept >= SWEEP_SECONDS:
                self._sweep(now)
                swept = now
        self._close_all()

    def _admit(self) -> None:
        while self._arriving:
            parked = self._arriving.popleft()
            self._selector.register(parked.sock, selectors.EVENT_READ)
            self._parked[parked.sock.fileno()] = parked
        while self._refused:
            sock = self._refused.popleft()
            self._selector.register(sock, selectors.EVENT_READ)
            self._lingering[sock.fileno()] = (sock, time.monotonic() + REFUSED_LINGER_SECONDS)

    def _readable(self, fd: int) -> None:
        parked = self._parked.pop(fd, None)
        if parked is None:
            sock, _ = self._lingering[fd]
            if not _drained(sock):
                self._stop_lingering(fd)
            return
        self._selector.unregister(parked.sock)
        if _peer_closed(parked.sock):  # no thread just to read the end of the stream
            self._server.shutdown_request(parked.sock)
        else:
            self._server.resume(parked.sock, parked.client_address)

    def _sweep(self, now: float) -> None:
        for fd, parked in list(self._parked.items()):
            # Asked again after each close: once under half the cap, the longer timeout holds.
            if now - parked.since >= self._server.idle_timeout():
                del self._parked[fd]
                self._selector.unregister(parked.sock)
                self._server.shutdown_request(parked.sock)
        for fd, (_, deadline) in list(self._lingering.items()):
            if now >= deadline:
                self._stop_lingering(fd)

    def _stop_lingering(self, fd: int) -> None:
        sock, _ = self._lingering.pop(fd)
        self._selector.unregister(sock)
        sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _close_all(self) -> None:
        with self._lock:
            self._admit()
        for fd in list(self._lingering):
            self._stop_lingering(fd)
        for parked in self._parked.values():
            self._server.shutdown_request(parked.sock)
        self._parked.clear()
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()


def _drained(sock: socket.socket) -> bool:
    """Read and drop what a refused client sent; False once it is gone."""
    try:
        return bool(sock.recv(RECV_BYTES))
    except BlockingIOError:
        return True
    except OSError:
        return False


def _peer_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


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
    if server.tls is not None:
        tls = server.tls
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda signum, frame: tls.reload())
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.server_close()
        on_stop()


def default_access_log() -> TextIO:
    return os.fdopen(os.dup(sys.stderr.fileno()), "w")
