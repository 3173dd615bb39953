"""The access log: one request is exactly one line, whatever bytes the client sends."""

from __future__ import annotations

import base64
import io
import re
import socket
from pathlib import Path

import pytest
from support import READ
from support import build_app
from support import poll
from support import serving
from support_upload import read_response

from pywharf.server import Server

FORGED = '1.2.3.4 admin [01/Jan/2030] "GET /forged" 200 0 0.1ms'


def logged(tmp_path: Path, heads: list[bytes]) -> list[str]:
    """Send each raw request head on its own connection; the access log's lines."""
    log = io.StringIO()
    with serving(build_app(tmp_path / "root"), log) as server:
        for head in heads:
            with server_socket(server) as sock:
                sock.sendall(head)
                read_response(sock)
        # A line is written after its answer is sent, by a writer thread: wait for them all.
        poll(lambda: log.getvalue().count("\n") >= len(heads) or None, "the access log lines")
    return log.getvalue().split("\n")[:-1]


def server_socket(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)


def head(target: bytes, user: str = "local") -> bytes:
    token = base64.b64encode(f"{user}:{READ}".encode()).decode()
    return b"GET " + target + b" HTTP/1.1\r\nAuthorization: Basic " + token.encode() + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        (b"/simple/x%0a" + FORGED.replace(" ", "%20").encode(), "/simple/x\\x0A1.2.3.4"),
        (b"/simple/x%0d%0a%1b[31m%00%7f", "/simple/x\\x0D\\x0A\\x1B[31m\\x00\\x7F"),
        (b"/simple/a%22b%5cc/", "/simple/a\\x22b\\x5Cc/"),
        (b"/simple/caf%C3%A9/", "/simple/caf\\xC3\\xA9/"),
        (b"/simple/raw\x1b\x7f\xff/", "/simple/raw\\x1B\\x7F\\xC3\\xBF/"),
    ],
    ids=["encoded newline", "control bytes", "quote and backslash", "utf-8", "raw bytes"],
)
def test_a_hostile_path_is_one_escaped_line(tmp_path: Path, target: bytes, shown: str) -> None:
    lines = logged(tmp_path, [head(target), head(b"/simple/")])
    assert len(lines) == 2, lines
    # Each connection's thread writes its line after its answer: the order may differ.
    assert sum(shown in line for line in lines) == 1, lines
    assert sum('"GET /simple/" 200 ' in line for line in lines) == 1, lines
    for line in lines:
        assert re.fullmatch(r"[\x20-\x7e]+", line), line  # printable ASCII only
        assert line.count('"') == 2  # the request stays one quoted field


def test_the_happy_path_is_logged_unchanged(tmp_path: Path) -> None:
    (line,) = logged(tmp_path, [head(b"/simple/?format=html")])
    assert re.fullmatch(r'127\.0\.0\.1 local \[[^]]+\] "GET /simple/" 200 \d+ [\d.]+ms', line)
