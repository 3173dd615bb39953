"""The HTTP shell: sockets in, `App.handle`, bytes out. The only module that imports http.server.

A `ThreadingHTTPServer` (the product owner's choice) with our own connection handling
(`connection`), connections between requests parked in one thread that also answers reads
from memory (`idle`), handler threads for the rest, optional TLS (`tls`) and the access log
(`access_log`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import resource
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from types import FrameType
from typing import Any
from typing import TextIO

import pywharf.connection as wire
from pywharf.access_log import AccessLog
from pywharf.access_log import log_fields
from pywharf.app import App
from pywharf.app import error_response
from pywharf.connection import HEAD_TIMEOUT_SECONDS
from pywharf.connection import Closed
from pywharf.connection import Connection
from pywharf.connection import Idle
from pywharf.connection import RequestBody
from pywharf.connection import head_bytes
from pywharf.connection import http_now
from pywharf.connection import parse_head
from pywharf.connection import send
from pywharf.connection import timeval
from pywharf.errors import RequestError
from pywharf.http import Response
from pywharf.idle import IdleConnections
from pywharf.idle import refuse
from pywharf.tls import TLS_HANDSHAKE_BYTE
from pywharf.tls import TLSContext
from pywharf.tls import refuse_plain

__all__ = ["Handler", "Server", "serve"]

log = logging.getLogger(__name__)

BUSY_IDLE_TIMEOUT_SECONDS = 5.0  # the same, while over half of --max_connections are open
# Descriptors kept out of the connection cap: files being sent, spools, the journal, the log.
FD_HEADROOM = 64
# Without a spare descriptor, accepting stops this long after EMFILE (nginx's default
# accept_mutex_delay, the pause ngx_event_accept.c takes before it accepts again).
ACCEPT_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class Unfinished:
    """An answer the connection loop began and a thread finishes, then logs: one sent from a
    file or a stream (`rest` None: nothing of it is sent yet), or the `rest` of one that the
    socket's buffer could not take at once."""

    response: Response
    method: str
    path: str
    keep_alive: bool
    started: float
    rest: bytes | None


class Handler(socketserver.BaseRequestHandler):
    """A connection's requests, in a loop while they come; `idle_since` set: it went idle.

    `connection`: a plain connection the connection loop hands over (None: a new TLS one),
    with what it read and perhaps an answer to finish.
    """

    server: Server
    request: socket.socket
    idle_since: float | None = None

    def __init__(
        self, request: socket.socket, client_address: Any, server: Server,
        connection: Connection | None = None, unfinished: Unfinished | None = None,
    ) -> None:  # fmt: skip
        self.connection = connection
        self.unfinished = unfinished
        super().__init__(request, client_address, server)

    def handle(self) -> None:
        if self.connection is None:
            assert self.server.tls is not None, "plain connections start in the connection loop"
            self._handle_tls(self.server.tls)
            return
        self._serve(self.connection)

    def _serve(self, connection: Connection) -> None:
        client = self.client_address[0]
        try:
            if self.unfinished is None or self._finish(connection, self.unfinished, client):
                while self._one(connection, client):
                    pass
        except Idle as idle:
            self.idle_since = idle.since  # nothing is buffered: the connection may be parked
        except (Closed, OSError):
            pass

    def _finish(self, connection: Connection, unfinished: Unfinished, client: str) -> bool:
        response, method = unfinished.response, unfinished.method
        try:
            if unfinished.rest is None:
                send(connection, response, method, unfinished.keep_alive)
            else:
                connection.sock.sendall(unfinished.rest)
        finally:
            self.server.log_access(client, response, method, unfinished.path, unfinished.started)
        return unfinished.keep_alive

    def _handle_tls(self, tls: TLSContext) -> None:
        """Handshake on this thread (a slow client never holds up accepting), then serve."""
        sock = self.request
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval(HEAD_TIMEOUT_SECONDS))
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if first and first[0] != TLS_HANDSHAKE_BYTE:
                # Plain HTTP on the TLS port: say so in plain HTTP and close (nginx answers
                # the same way); the server itself is untouched.
                refuse_plain(sock)
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
            self.idle_since = None  # never parked: closed at its idle timeout

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
            send(connection, response, method, keep_alive)
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
        return BUSY_IDLE_TIMEOUT_SECONDS if busy else wire.IDLE_TIMEOUT_SECONDS  # patched by tests

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
            refuse(sock, "the server is out of file descriptors; try again shortly")
            sock.close()
        finally:
            self._spare_fd = _open_spare()

    def process_request(self, request: Any, client_address: Any) -> None:
        """A new connection: to the connection loop (TLS: a handler thread), or a 503 when
        `max_connections` are open."""
        with self._count_lock:
            admitted = self.connections < self.max_connections
            if admitted:
                self.connections += 1
        if not admitted:
            reason = f"the server is at its limit of {self.max_connections} connections"
            self.idle.refuse(request, reason)
            return
        with contextlib.suppress(OSError):  # already reset: its first read will say so
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self._thread(request, client_address, None)
        else:
            self.idle.park(Connection(request), client_address, time.monotonic())

    def answer_ready(
        self, connection: Connection, client_address: Any
    ) -> Callable[[], None] | None:
        """A parked connection turned readable; on the connection loop's thread.

        A request the app answers at once, from memory, is answered here when the socket's
        buffer takes the whole answer, and the connection stays parked (None): no thread
        hand-off, which cost more than the request itself (issue 16). Anything else returns
        what to do once the connection has left the loop: give it a thread, or close it.
        """
        try:
            connection.receive_ready()
        except Closed:
            return functools.partial(self.shutdown_request, connection.sock)
        head = connection.whole_request()
        if head is None:  # None: woken for nothing
            return self._to_thread(connection, client_address) if connection.buffer else None
        started = time.monotonic()
        try:
            request, keep_alive = parse_head(head, connection)
        except RequestError:  # a thread answers the error, from its own parse
            return self._to_thread(connection, client_address)
        request.client = client_address[0]
        response = self.app.answer_at_once(request)
        if response is None:
            return self._to_thread(connection, client_address)
        connection.buffer.clear()
        keep_alive = keep_alive and not response.close
        method, path = request.method, request.path
        try:
            data = wire.payload(response, method)
            answer_head = head_bytes(response, method, keep_alive)
            rest = None if data is None else wire.send_ready(connection.sock, answer_head, data)
        except Closed:
            self.log_access(request.client, response, method, path, started)
            return functools.partial(self.shutdown_request, connection.sock)
        if rest != b"":  # a file, a stream, or more than the socket took: a thread sends it
            unfinished = Unfinished(response, method, path, keep_alive, started, rest)
            return self._to_thread(connection, client_address, unfinished)
        self.log_access(request.client, response, method, path, started)
        return None if keep_alive else functools.partial(self.shutdown_request, connection.sock)

    def _to_thread(
        self, connection: Connection, client_address: Any, unfinished: Unfinished | None = None
    ) -> Callable[[], None]:
        return functools.partial(
            self._thread, connection.sock, client_address, connection, unfinished
        )

    def _thread(
        self, sock: socket.socket, client_address: Any, connection: Connection | None,
        unfinished: Unfinished | None = None,
    ) -> None:  # fmt: skip
        """Give a counted connection a handler thread."""
        thread = threading.Thread(
            target=self._handle, args=(sock, client_address, connection, unfinished), daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": a thread limit or no memory
            self.shutdown_request(sock)

    def _handle(
        self, sock: socket.socket, client_address: Any, connection: Connection | None,
        unfinished: Unfinished | None,
    ) -> None:  # fmt: skip
        """A handler thread's life: the connection's requests, then it is parked or closed."""
        handler = None
        try:
            handler = Handler(sock, client_address, self, connection, unfinished)
        finally:
            if handler is None or handler.idle_since is None or handler.connection is None:
                self.shutdown_request(sock)
            else:
                self.idle.park(handler.connection, client_address, handler.idle_since)

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
            fields = {"time": http_now(), "client": client, "user": response.user,
                      "method": method, "path": path, "status": response.status,
                      "bytes": response.length, "ms": round(milliseconds, 1)}  # fmt: skip
            self.access_log.add(json.dumps(fields) + "\n")
            return
        user, method, path = log_fields(response.user, method, path)
        self.access_log.add(
            f'{client} {user} [{http_now()}] "{method} {path}" '
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
