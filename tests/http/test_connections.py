"""Many connections: the cap and its 503, idle connections parked without a thread, the
shorter idle timeout when busy, and a server out of file descriptors that neither spins nor
hangs."""

from __future__ import annotations

import os
import resource
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import Live
from support import build_app
from support import poll
from support import serving as serving_app
from support import start_pyz
from support import stop
from support_upload import raw_connect
from support_upload import read_response

from pywharf.server import Server

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@contextmanager
def serving(tmp_path: Path, max_connections: int) -> Iterator[tuple[Server, Live]]:
    root = tmp_path / "root"
    with serving_app(build_app(root), max_connections=max_connections) as server:
        yield server, Live("127.0.0.1", server.server_address[1], root)


def keep_alive(live: Live, stack: ExitStack) -> socket.socket:
    """A connection that made one request and is now idle."""
    sock = stack.enter_context(raw_connect(live, timeout=10))
    sock.sendall(REQUEST)
    assert read_response(sock)[0] == 200
    return sock


@pytest.fixture
def quick_parking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Park after 50 ms of silence and check idle timeouts every 50 ms."""
    monkeypatch.setattr("pywharf.connection.LINGER_SECONDS", 0.05)
    monkeypatch.setattr("pywharf.idle.SWEEP_SECONDS", 0.05)


def test_a_connection_over_the_cap_gets_503_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, max_connections=4) as (_server, live), ExitStack() as stack:
        held = [keep_alive(live, stack) for _ in range(4)]
        with raw_connect(live, timeout=10) as extra:
            extra.sendall(REQUEST)
            status, headers, body = read_response(extra)
            assert extra.recv(10) == b""  # closed after the answer, never left hanging
        assert status == 503
        assert headers["retry-after"].isdigit()
        assert headers["connection"].lower() == "close"
        assert body.decode().strip() == "the server is at its limit of 4 connections"
        held[0].close()  # one slot frees up as soon as the server sees the close
        poll(lambda: live.request("GET", "/")[0] == 200 or None, "a slot after a close")
        for sock in held[1:]:  # the held connections still serve
            sock.sendall(REQUEST)
            assert read_response(sock)[0] == 200


@pytest.mark.usefixtures("quick_parking")
def test_idle_keep_alive_connections_hold_no_thread(tmp_path: Path) -> None:
    with serving(tmp_path, max_connections=100) as (server, live), ExitStack() as stack:
        threads = threading.active_count()
        held = [keep_alive(live, stack) for _ in range(20)]
        poll(lambda: len(server.idle) == 20 or None, "20 parked connections")
        poll(lambda: threading.active_count() <= threads or None, "the handler threads ended")
        assert server.connections == 20
        for sock in held:  # each is handed back to a thread when its next request comes
            sock.sendall(REQUEST)
            assert read_response(sock)[0] == 200
        poll(lambda: len(server.idle) == 20 or None, "parked again")


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False


@pytest.mark.usefixtures("quick_parking")
def test_idle_connections_close_sooner_when_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pywharf.connection.IDLE_TIMEOUT_SECONDS", 600.0)
    monkeypatch.setattr("pywharf.server.BUSY_IDLE_TIMEOUT_SECONDS", 0.3)
    with serving(tmp_path, max_connections=4) as (server, live), ExitStack() as stack:
        first = keep_alive(live, stack)
        poll(lambda: len(server.idle) == 1 or None, "the first connection parked")
        assert server.idle_timeout() == 600.0  # one of four: not busy
        held = [first, *(keep_alive(live, stack) for _ in range(3))]
        assert server.idle_timeout() == 0.3  # over half the cap: busy
        # The longest idle are closed until half the cap is open, then the 600 s hold again.
        poll(lambda: server.connections == 2 or None, "two idle connections closed")
        assert server.idle_timeout() == 600.0
        closed = [closed_by_server(sock) for sock in held]
        assert closed[0] and sum(closed) == 2, closed  # the oldest, and one other


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_out_of_file_descriptors_refuses_new_connections_and_recovers(
    pyz: Path, tmp_path: Path
) -> None:
    server = start_pyz(pyz, tmp_path / "root", "--extra_index_url", "")
    pid = server.process.pid
    try:
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        limit = open_fds(pid) + 5
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
        with ExitStack() as stack:
            while open_fds(pid) < limit:  # fill every descriptor the server has left
                keep_alive(server.live, stack)
            for _ in range(3):  # each is refused at once: no spin on accept, no hang
                with raw_connect(server.live, timeout=10) as extra:
                    status, headers, body = read_response(extra)
                    assert extra.recv(10) == b""
                assert status == 503, body
                assert "out of file descriptors" in body.decode()
                assert headers["retry-after"].isdigit()
        # the held connections are closed: the server serves again without a restart
        poll(lambda: server.live.request("GET", "/")[0] == 200 or None, "serving again")
    finally:
        stop(server)
