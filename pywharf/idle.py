"""Connections between requests, parked in one selector thread (the connection loop), which
also answers the requests the app answers at once."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import selectors
import socket
import threading
import time
from typing import TYPE_CHECKING
from typing import Any

from pywharf.app import error_response
from pywharf.connection import RECV_BYTES
from pywharf.connection import Connection
from pywharf.connection import head_bytes
from pywharf.errors import ServerBusy

if TYPE_CHECKING:
    from pywharf.server import Server

__all__ = ["IdleConnections", "refuse"]

log = logging.getLogger(__name__)

SWEEP_SECONDS = 0.25  # how often parked connections are checked against their idle timeout
RETRY_AFTER_SECONDS = 5
REFUSED_LINGER_SECONDS = 2.0  # a refused connection's request is read and dropped this long
MAX_REFUSED_LINGERING = 128  # beyond that, refused connections are closed at once


class _Parked:
    """A connection waiting for its next request."""

    __slots__ = ("client_address", "connection", "since", "sock")

    def __init__(self, connection: Connection, client_address: Any, since: float) -> None:
        self.connection = connection
        self.sock = connection.sock
        self.client_address = client_address
        self.since = since


class IdleConnections:
    """Connections between requests, watched by one selector thread instead of a thread each.

    A thread per idle connection cost 2,000 threads and +48 MiB of RSS at 2,000 connections;
    here one costs a selector entry. A plain connection starts here. When one turns readable,
    `Server.answer_ready` answers it on this thread if it can, or gives it a handler thread,
    which parks it again when it goes idle; one idle past `Server.idle_timeout()` is closed.
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

    def park(self, connection: Connection, client_address: Any, since: float) -> None:
        with self._lock:
            if not self._closed:
                self._arriving.append(_Parked(connection, client_address, since))
                self._wake()
                return
        self._server.shutdown_request(connection.sock)

    def refuse(self, sock: socket.socket, reason: str) -> None:
        """Answer an uncounted connection 503 and close it once its request is read."""
        refuse(sock, reason)
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
        parked = self._parked.get(fd)
        if parked is None:
            sock, _ = self._lingering[fd]
            if not _drained(sock):
                self._stop_lingering(fd)
            return
        try:
            leave = self._server.answer_ready(parked.connection, parked.client_address)
        except Exception:  # this thread serves every parked connection: it must go on
            log.exception("internal error on the connection loop")
            leave = functools.partial(self._server.shutdown_request, parked.sock)
        if leave is None:  # answered; it waits for its next request here
            parked.since = time.monotonic()
            return
        del self._parked[fd]
        self._selector.unregister(parked.sock)
        leave()

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


def refuse(sock: socket.socket, reason: str) -> None:
    """Send a whole 503 without blocking: a new socket's send buffer takes it at once."""
    response = error_response(ServerBusy(reason, RETRY_AFTER_SECONDS))
    body = response.body
    assert isinstance(body, bytes)  # error_response answers text
    try:
        sock.setblocking(False)
        sock.send(head_bytes(response, "GET", keep_alive=False) + body)
        # Whatever request already arrived is read, so that closing sends FIN, not a RST
        # that could discard the answer before the client reads it.
        sock.recv(RECV_BYTES)
    except OSError:
        pass
