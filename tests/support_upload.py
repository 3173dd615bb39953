"""Legacy-upload bodies built by hand: exactly what a client (or an attacker) would send.

`upload_form` gives the fields twine sends for a file; `multipart_body` encodes any fields and
one file part; `upload` posts it to a live server and `app_upload` hands it to `App.handle`
with no socket at all.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import socket
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path

from support import WRITE
from support import Live

from pywharf.app import App
from pywharf.http import Request
from pywharf.http import Response

__all__ = [
    "app_get",
    "app_upload",
    "basic",
    "multipart_body",
    "name_and_version",
    "raw_connect",
    "read_response",
    "upload",
    "upload_form",
    "upload_head",
]

Fields = Sequence[tuple[str, str]]


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def name_and_version(filename: str) -> tuple[str, str]:
    """The name and version a well-formed filename spells (wheels: 1st and 2nd part)."""
    if filename.endswith(".whl"):
        name, version = filename.split("-")[:2]
        return name, version
    stem = filename
    for suffix in (".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar"):
        stem = stem.removesuffix(suffix)
    name, _, version = stem.rpartition("-")
    return name, version


def upload_form(
    filename: str,
    data: bytes,
    *,
    name: str | None = None,
    version: str | None = None,
    digests: Sequence[str] = ("sha256", "blake2_256"),
    requires_python: str | None = None,
    **extra: str,
) -> list[tuple[str, str]]:
    """The text fields twine sends before the file, digests of `data` included."""
    guessed_name, guessed_version = name_and_version(filename)
    fields = [(":action", "file_upload"), ("protocol_version", "1")]
    computed = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "blake2_256": hashlib.blake2b(data, digest_size=32).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }
    fields += [(f"{d}_digest", computed[d]) for d in digests]
    fields += [
        ("metadata_version", "2.1"),
        ("name", name if name is not None else guessed_name),
        ("version", version if version is not None else guessed_version),
        ("filetype", "bdist_wheel" if filename.endswith(".whl") else "sdist"),
        ("pyversion", "py3" if filename.endswith(".whl") else "source"),
    ]
    if requires_python is not None:
        fields.append(("requires_python", requires_python))
    fields += list(extra.items())
    return fields


def multipart_body(
    fields: Fields,
    file: tuple[str, bytes] | None,
    boundary: str | None = None,
    file_field: str = "content",
    terminate: bool = True,
) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data body: the fields, then the file part."""
    boundary = boundary or uuid.uuid4().hex
    out = io.BytesIO()
    for key, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode())
        out.write(value.encode() + b"\r\n")
    if file is not None:
        filename, data = file
        disposition = f'form-data; name="{file_field}"; filename="{filename}"'
        out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        out.write(b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    if terminate:
        out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def _file_of(path_or_name: Path | str, data: bytes | None) -> tuple[str, bytes]:
    if data is None:
        path = Path(path_or_name)
        return path.name, path.read_bytes()
    return str(path_or_name), data


def upload(
    live: Live,
    path_or_name: Path | str,
    data: bytes | None = None,
    *,
    secret: str = WRITE,
    user: str = "local",
    fields: Fields | None = None,
    path: str = "/simple/",
    **form: str,
) -> tuple[int, dict[str, str], bytes]:
    """POST one file the way twine does; returns (status, headers, body)."""
    filename, content = _file_of(path_or_name, data)
    if fields is None:
        fields = upload_form(filename, content, **form)
    body, content_type = multipart_body(fields, (filename, content))
    connection = http.client.HTTPConnection(live.host, live.port, timeout=30)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": content_type, "Authorization": basic(user, secret)},
        )
        response = connection.getresponse()
        answer = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, answer
    finally:
        connection.close()


def app_upload(
    app: App,
    path_or_name: Path | str,
    data: bytes | None = None,
    *,
    secret: str = WRITE,
    **form: str,
) -> Response:
    """The same upload handed straight to `App.handle`: no socket, no server."""
    filename, content = _file_of(path_or_name, data)
    fields = upload_form(filename, content, **form)
    body, content_type = multipart_body(fields, (filename, content))
    request = Request(
        method="POST",
        path="/simple/",
        query={},
        headers={"content-type": content_type, "authorization": basic("local", secret)},
        body=io.BytesIO(body),
        content_length=len(body),
    )
    return app.handle(request)


def app_get(
    app: App, path: str, secret: str = "read-secret", headers: dict[str, str] | None = None
) -> Response:
    """A GET handed straight to `App.handle`."""
    all_headers = {"authorization": basic("local", secret), **(headers or {})}
    return app.handle(Request("GET", path, {}, all_headers, io.BytesIO(b""), content_length=0))


# --- raw sockets: for what http.client will not send ----------------------------------------


def raw_connect(live: Live, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection((live.host, live.port), timeout=timeout)


# Bytes read past the end of one response (pipelining), kept for the next `read_response`.
_LEFTOVER: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length framed) from a socket; skips `100 Continue`."""
    buffer = _LEFTOVER.pop(sock, b"")
    while True:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"the server closed the connection; got {buffer!r}")
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        if status != 100:
            break
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if method == "HEAD" or status == 304 else int(headers.get("content-length", 0))
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    if buffer[length:]:
        _LEFTOVER[sock] = buffer[length:]
    return status, headers, buffer[:length]


def upload_head(
    live: Live, content_type: str, length: int | None, secret: str = WRITE, **extra: str
) -> bytes:
    """The request line and headers of an upload POST."""
    lines = [
        "POST /simple/ HTTP/1.1",
        f"Host: {live.host}:{live.port}",
        f"Authorization: {basic('local', secret)}",
        f"Content-Type: {content_type}",
    ]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
