"""Load generators: the concurrent legacy uploader, wrk runs, and single large transfers.

Every loop here is bounded twice: by a count (the files given, one wrk duration) and by a
deadline, so a stalled server cannot hold the benchmark.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from benchmarks.corpus import CorpusFile

__all__ = [
    "Endpoint",
    "TransferResult",
    "UploadRequest",
    "UploadStats",
    "WrkResult",
    "basic_auth",
    "download",
    "http_status",
    "legacy_upload",
    "parse_wrk_output",
    "percentile",
    "put_upload",
    "upload_many",
    "upload_one_large",
    "run_wrk",
    "wrk_script",
]

CHUNK_BYTES = 1 << 20
SMALL_FILE_BYTES = 1 << 20  # below this an upload is sent in one write
REQUEST_TIMEOUT_SECONDS = 120.0
WRK_MARKER = "WRK-JSON "


def basic_auth(username: str, password: str) -> str:
    """RFC 7617 header value.

    >>> basic_auth("bench", "r")
    'Basic YmVuY2g6cg=='
    """
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def connect(self, timeout: float = REQUEST_TIMEOUT_SECONDS) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.host, self.port, timeout=timeout, blocksize=CHUNK_BYTES
        )


@dataclass(frozen=True)
class UploadRequest:
    """A request whose body is `head`, then the file's bytes, then `tail`."""

    method: str
    path: str
    headers: dict[str, str]
    head: bytes = b""
    tail: bytes = b""


def _form_field(boundary: str, name: str, value: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
    ).encode()


def legacy_upload(path: str, file: CorpusFile, auth: str) -> UploadRequest:
    """The multipart/form-data request twine sends (the legacy upload API, protocol 1)."""
    boundary = uuid.uuid4().hex
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": file.project,
        "version": file.version,
        "filetype": file.filetype,
        "pyversion": file.pyversion,
        "metadata_version": "2.1",
        "sha256_digest": file.sha256,
    }
    head = b"".join(_form_field(boundary, k, v) for k, v in fields.items())
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
        f'filename="{file.filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": auth}
    return UploadRequest("POST", path, headers, head, f"\r\n--{boundary}--\r\n".encode())


def put_upload(path: str, auth: str | None = None) -> UploadRequest:
    """A plain PUT of the file's bytes (what nginx's dav module takes)."""
    headers = {"Content-Type": "application/octet-stream"}
    if auth:
        headers["Authorization"] = auth
    return UploadRequest("PUT", path, headers)


def _send(
    conn: http.client.HTTPConnection,
    request: UploadRequest,
    file: CorpusFile,
    sent: Callable[[], None] | None = None,
) -> int:
    """Send one upload, the file through sendfile when large; return the status. `sent` is
    called once the body's last byte is written, before the answer is awaited."""
    length = len(request.head) + file.size + len(request.tail)
    headers = {**request.headers, "Content-Length": str(length)}
    if file.size < SMALL_FILE_BYTES:
        body = request.head + file.path.read_bytes() + request.tail
        conn.request(request.method, request.path, body, headers)
    else:
        conn.putrequest(request.method, request.path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(request.head)
        with file.path.open("rb") as stream:
            assert conn.sock is not None
            conn.sock.sendfile(stream)
        conn.send(request.tail)
    if sent is not None:
        sent()
    response = conn.getresponse()
    response.read()
    return response.status


def _send_or_fail(
    conn: http.client.HTTPConnection, request: UploadRequest, file: CorpusFile
) -> int:
    """The status, or 0 when the connection broke (it is closed, to reconnect next time)."""
    try:
        return _send(conn, request, file)
    except (OSError, http.client.HTTPException):
        conn.close()
        return 0


@dataclass
class UploadStats:
    attempted: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    uploaded: list[CorpusFile] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return len(self.uploaded)

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


class _Uploader:
    """Worker threads sharing one iterator of files; each keeps one keep-alive connection."""

    def __init__(
        self,
        endpoint: Endpoint,
        files: Sequence[CorpusFile],
        make_request: Callable[[CorpusFile], UploadRequest],
        deadline: float,
    ) -> None:
        self.endpoint, self.make_request, self.deadline = endpoint, make_request, deadline
        self.files: Iterator[CorpusFile] = iter(files)
        self.lock = threading.Lock()
        self.stats = UploadStats()

    def _next(self) -> CorpusFile | None:
        with self.lock:
            if time.monotonic() >= self.deadline:
                return None
            return next(self.files, None)

    def _record(self, file: CorpusFile, status: int, seconds: float) -> None:
        with self.lock:
            self.stats.attempted += 1
            self.stats.statuses[status] += 1
            if 200 <= status < 300:
                self.stats.uploaded.append(file)
                self.stats.latencies.append(seconds)

    def work(self) -> None:
        conn = self.endpoint.connect()
        try:
            while (file := self._next()) is not None:
                started = time.monotonic()
                status = _send_or_fail(conn, self.make_request(file), file)
                self._record(file, status, time.monotonic() - started)
        finally:
            conn.close()


def upload_many(
    endpoint: Endpoint,
    files: Sequence[CorpusFile],
    make_request: Callable[[CorpusFile], UploadRequest],
    clients: int,
    max_seconds: float,
) -> UploadStats:
    """Upload `files` with `clients` concurrent connections, stopping after `max_seconds`."""
    started = time.monotonic()
    uploader = _Uploader(endpoint, files, make_request, started + max_seconds)
    threads = [threading.Thread(target=uploader.work, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    # A request already sent may still take its full timeout; never wait past that.
    give_up = started + max_seconds + REQUEST_TIMEOUT_SECONDS
    for thread in threads:
        thread.join(max(0.0, give_up - time.monotonic()))
    uploader.stats.seconds = time.monotonic() - started
    return uploader.stats


@dataclass(frozen=True)
class TransferResult:
    status: int
    seconds: float
    size: int
    sent_seconds: float = 0.0  # an upload: when its body's last byte was written

    @property
    def mb_per_second(self) -> float:
        return self.size / self.seconds / 1e6 if self.seconds else 0.0


def upload_one_large(
    endpoint: Endpoint, request: UploadRequest, file: CorpusFile
) -> TransferResult:
    conn = endpoint.connect()
    sent: list[float] = []
    try:
        started = time.monotonic()
        status = _send(conn, request, file, lambda: sent.append(time.monotonic()))
        ended = time.monotonic()
        return TransferResult(status, ended - started, file.size, (sent or [ended])[0] - started)
    except (OSError, http.client.HTTPException):
        return TransferResult(0, time.monotonic() - started, file.size)
    finally:
        conn.close()


def download(endpoint: Endpoint, path: str, auth: str | None) -> TransferResult:
    """GET `path`, reading the body into one reused 1 MiB buffer."""
    conn = endpoint.connect()
    buffer = memoryview(bytearray(CHUNK_BYTES))
    received = 0
    try:
        started = time.monotonic()
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        while count := response.readinto(buffer):
            received += count
        return TransferResult(response.status, time.monotonic() - started, received)
    finally:
        conn.close()


def http_status(endpoint: Endpoint, path: str, auth: str | None, timeout: float = 5.0) -> int:
    """The status of one GET, or 0 when nothing answered."""
    conn = endpoint.connect(timeout)
    try:
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]  # by kind: connect, read, write, status (not 2xx/3xx), timeout

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('%s{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    "MARKER", summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def wrk_script(paths: Sequence[str], headers: dict[str, str], pause_ms: int = 0) -> str:
    """A wrk Lua script: one fixed path, or a random pick among `paths` per request; with
    `pause_ms`, each connection waits that long after an answer (wrk's `delay` hook), so `c`
    connections offer at most c / pause requests per second whatever the server's speed."""
    lines = [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    if pause_ms:
        lines.append(f"delay = function() return {int(pause_ms)} end")
    if len(paths) == 1:
        lines.append(f"wrk.path = {_lua_string(paths[0])}")
    else:
        lines.append("local paths = {" + ",".join(_lua_string(p) for p in paths) + "}")
        lines.append("local count = #paths")
        lines.append("math.randomseed(os.time())")
        lines.append("request = function() return wrk.format(nil, paths[math.random(count)]) end")
    return "\n".join(lines) + _DONE.replace("MARKER", WRK_MARKER)


def parse_wrk_output(stdout: str) -> WrkResult:
    """The figures our `done` hook printed; ValueError when wrk printed none."""
    for line in stdout.splitlines():
        if line.startswith(WRK_MARKER):
            data = json.loads(line.removeprefix(WRK_MARKER))
            return WrkResult(
                data["requests"],
                data["duration_us"] / 1e6,
                data["p50_us"] / 1000,
                data["p99_us"] / 1000,
                data["errors"],
            )
    raise ValueError(f"no {WRK_MARKER.strip()} line in wrk output: {stdout[-500:]!r}")


def run_wrk(
    endpoint: Endpoint,
    paths: Sequence[str],
    headers: dict[str, str],
    seconds: float,
    threads: int,
    connections: int,
    script_dir: Path,
    pause_ms: int = 0,
) -> WrkResult:
    """`wrk -t -c -d` against `paths`; requests still queued after `seconds` are dropped.
    `pause_ms`: a pause after each answer, per connection (see `wrk_script`)."""
    script = script_dir / "bench.lua"
    script.write_text(wrk_script(paths, headers, pause_ms))
    timeout = max(10, math.ceil(seconds) * 2)
    # wrk reads durations as whole seconds ("5.0s" is rejected).
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout}s",
        "-s",
        str(script),
        f"http://{endpoint.host}:{endpoint.port}{paths[0]}",
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=seconds + timeout + 30
    )
    return parse_wrk_output(done.stdout + done.stderr)
