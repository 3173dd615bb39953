"""The servers under test: how to install, configure, start and stop each one.

pywharf runs from `dist/pywharf.pyz`; pypiserver 2.4 from its own venv under
`benchmarks/work/`, on waitress (threaded); nginx from Debian serves a pre-rendered static copy
of the same repository and takes PUTs (the physical limit).
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from benchmarks.corpus import CorpusFile
from benchmarks.load import Endpoint
from benchmarks.load import UploadRequest
from benchmarks.load import basic_auth
from benchmarks.load import http_status
from benchmarks.load import legacy_upload
from benchmarks.load import put_upload
from benchmarks.pages import link_file
from benchmarks.pages import write_static_tree
from benchmarks.proc import process_tree

__all__ = [
    "BenchmarkError",
    "Devpi",
    "Nginx",
    "PypiServer",
    "Pywharf",
    "RunningServer",
    "Server",
    "ServerFailed",
    "Unavailable",
    "ensure_debian_tools",
    "running",
]

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REPOSITORY = "bench"
READ_SECRET, WRITE_SECRET = "r", "w"
STARTUP_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.005
PYPISERVER_REQUIREMENTS = ["pypiserver[passlib,cache]==2.4.*", "waitress"]


class BenchmarkError(Exception):
    """A target cannot be measured; the run goes on with the others."""


class Unavailable(BenchmarkError):
    """A target is not installed and cannot be installed."""


class ServerFailed(BenchmarkError):
    """A server exited or did not answer 200 on /simple/ in time."""


def _pip_env() -> dict[str, str]:
    return {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore"}


def _install_venv(venv: Path, requirements: list[str], what: str) -> bool:
    """A venv with `requirements` from PyPI, kept while they are unchanged; True: made now."""
    stamp = venv / "installed.txt"
    if stamp.is_file() and stamp.read_text() == repr(requirements):
        return False
    print(f"installing {what} into {venv}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
        env=_pip_env(),
        check=False,
    )
    if pip.returncode:
        raise Unavailable(f"pip could not install {what}:\n{pip.stderr[-2000:]}")
    stamp.write_text(repr(requirements))
    return True


def ensure_debian_tools() -> None:
    """nginx and wrk from Debian's packages, installed when missing (we run as root)."""
    # Only what is missing: the tests' nginx (another package of the same binary) stays.
    missing = [package for package, tool in (("nginx-light", "nginx"), ("wrk", "wrk"))
               if not shutil.which(tool)]  # fmt: skip
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise Unavailable(f"{' and '.join(missing)} missing, and there is no apt-get to install")
    print(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


class Server:
    """What the harness needs to know about one server; subclasses fill it in."""

    name = ""
    read_auth: str | None = None
    write_auth: str | None = None
    simple = "/simple/"  # where its PEP 503 pages are
    ready_path = "/simple/"  # what answers 200 once it serves (the cold-start figure)

    def install(self, work: Path) -> None:
        """Make sure the server can run; raise Unavailable if it cannot."""

    def prepare(self, root: Path) -> None:
        """An empty repository in `root` (which does not exist yet)."""
        root.mkdir(parents=True)

    def command(self, root: Path, port: int) -> list[str]:
        raise NotImplementedError

    def env(self, work: Path) -> dict[str, str]:
        return dict(os.environ)

    def upload_request(self, file: CorpusFile) -> UploadRequest:
        raise NotImplementedError

    def file_path(self, file: CorpusFile) -> str:
        return f"/simple/{file.project}/{file.filename}"

    def started(self, endpoint: Endpoint) -> None:
        """Called once it answers: set up what needs its API (an index, a user)."""

    def seed(self, root: Path, files: Sequence[CorpusFile]) -> bool:
        """Add files straight to storage, without the API; False when the server can't."""
        return False

    def publish(self, root: Path, files: Sequence[CorpusFile]) -> None:
        """Make the files the repository holds visible (a static copy re-renders its pages)."""


class Pywharf(Server):
    name = "pywharf"
    read_auth = basic_auth(REPOSITORY, READ_SECRET)
    write_auth = basic_auth(REPOSITORY, WRITE_SECRET)
    config = (
        f'[{REPOSITORY}]\ntype = "file_system"\nread_secret = "{READ_SECRET}"\n'
        f'write_secret = "{WRITE_SECRET}"\n'
    )

    def __init__(self, pyz: Path | None = REPO / "dist" / "pywharf.pyz") -> None:
        """Run the built zipapp, or with `pyz=None` the working tree (`python -m pywharf`
        with the test venv's interpreter), to measure a change without rebuilding."""
        self.pyz = pyz
        venv_python = REPO / ".venv" / "bin" / "python"
        python = str(venv_python) if venv_python.exists() else sys.executable
        self.launcher = [sys.executable, str(pyz)] if pyz else [python, "-m", "pywharf"]

    def install(self, work: Path) -> None:
        if self.pyz and not self.pyz.is_file():
            raise Unavailable(f"{self.pyz} is missing: build it with `python3 build.py`")

    def prepare(self, root: Path) -> None:
        super().prepare(root)
        root.with_name(root.name + ".toml").write_text(self.config)

    def command(self, root: Path, port: int) -> list[str]:
        config = root.with_name(root.name + ".toml")
        return [
            *self.launcher,
            "server",
            str(root),
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
        ]

    def env(self, work: Path) -> dict[str, str]:
        env = {**os.environ, "SHIV_ROOT": str(work / "shiv")}
        # Only the working-tree launcher may import from it: a PYTHONPATH pointing there would
        # make the zipapp run the tree's modules instead of its own.
        if self.pyz is None:
            env["PYTHONPATH"] = str(REPO)
        else:
            env.pop("PYTHONPATH", None)
        return env

    def upload_request(self, file: CorpusFile) -> UploadRequest:
        assert self.write_auth is not None
        return legacy_upload("/simple/", file, self.write_auth)


class PypiServer(Server):
    """pypiserver 2.4 on waitress (see pypiserver_waitress.py), with its watchdog-cached
    backend (faster than `simple-dir` at every size) and htpasswd auth for uploads only:
    it reads anonymously, as it is usually deployed."""

    name = "pypiserver"
    write_auth = basic_auth(REPOSITORY, WRITE_SECRET)

    def __init__(self, hash_algo: str = "off") -> None:
        """`hash_algo="off"` is its fastest setting (and what peer-figures.md measured): with
        hashes in the links, every page opens files to hash them, its watchdog cache sees each
        open as a change, and the next request rescans the whole folder (about 10x the cost)."""
        self.venv = Path()
        self.hash_algo = hash_algo

    def install(self, work: Path) -> None:
        self.venv = work / "venvs" / "pypiserver"
        if _install_venv(self.venv, PYPISERVER_REQUIREMENTS, "pypiserver"):
            self._write_htpasswd()

    def _write_htpasswd(self) -> None:
        """Apache's default scheme (apr1 MD5), written by pypiserver's own passlib."""
        code = (
            "import sys; from passlib.apache import HtpasswdFile; h = HtpasswdFile(); "
            f"h.set_password({REPOSITORY!r}, {WRITE_SECRET!r}); "
            "open(sys.argv[1], 'wb').write(h.to_string())"
        )
        subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", code, str(self.venv / "htpasswd")], check=True
        )

    def command(self, root: Path, port: int) -> list[str]:
        launcher = Path(__file__).with_name("pypiserver_waitress.py")
        return [
            str(self.venv / "bin" / "python"),
            str(launcher),
            "--host",
            HOST,
            "--port",
            str(port),
            "--backend",
            "auto",
            "--authenticate",
            "update",
            "--passwords",
            str(self.venv / "htpasswd"),
            "--disable-fallback",
            "--hash-algo",
            self.hash_algo,
            str(root),
        ]

    def upload_request(self, file: CorpusFile) -> UploadRequest:
        assert self.write_auth is not None
        return legacy_upload("/", file, self.write_auth)

    def file_path(self, file: CorpusFile) -> str:
        return f"/packages/{file.filename}"

    def seed(self, root: Path, files: Sequence[CorpusFile]) -> bool:
        for file in files:  # pypiserver's storage is one flat folder
            link_file(file.path, root / file.filename)
        return True


DEVPI_REQUIREMENTS = ["devpi-server==6.*"]


class Devpi(Server):
    """devpi-server 6 in its own venv (waitress, its default 50 threads), offline, with one
    user and one index without bases (no PyPI mirror). It reads anonymously, as usually
    deployed; uploads take Basic auth as twine sends it. It cannot be seeded: its files and
    their records live in its own database, so it is filled through its upload API."""

    name = "devpi"
    write_auth = basic_auth(REPOSITORY, WRITE_SECRET)
    index = f"/{REPOSITORY}/dev/"
    simple = f"/{REPOSITORY}/dev/+simple/"
    ready_path = "/+api"

    def __init__(self) -> None:
        self.venv = Path()
        self.endpoint: Endpoint | None = None
        self._file_paths: dict[str, str] = {}

    def install(self, work: Path) -> None:
        self.venv = work / "venvs" / "devpi"
        _install_venv(self.venv, DEVPI_REQUIREMENTS, "devpi-server")

    def prepare(self, root: Path) -> None:
        super().prepare(root)
        subprocess.run(
            [str(self.venv / "bin" / "devpi-init"), "--serverdir", str(root / "server"),
             "--no-root-pypi"],
            check=True, capture_output=True,
        )  # fmt: skip

    def command(self, root: Path, port: int) -> list[str]:
        return [
            str(self.venv / "bin" / "devpi-server"), "--serverdir", str(root / "server"),
            "--host", HOST, "--port", str(port), "--offline-mode",
            "--max-request-body-size", str(8 << 30),
        ]  # fmt: skip

    def started(self, endpoint: Endpoint) -> None:
        """The user and its index (once per server directory: a 409 says they exist)."""
        self.endpoint = endpoint
        self._file_paths = {}
        root_auth = self._login(endpoint, "root", "")
        self._api(endpoint, "PUT", f"/{REPOSITORY}", {"password": WRITE_SECRET}, root_auth)
        own = self._login(endpoint, REPOSITORY, WRITE_SECRET)
        self._api(endpoint, "PUT", self.index.rstrip("/"), {"bases": [], "volatile": True}, own)

    @staticmethod
    def _api(
        endpoint: Endpoint, method: str, path: str, body: dict[str, object],
        auth: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        conn = endpoint.connect()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["X-Devpi-Auth"] = auth
        try:
            conn.request(method, path, json.dumps(body), headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400 and response.status != 409:
            raise BenchmarkError(f"devpi {method} {path}: {response.status} {data[:200]!r}")
        return json.loads(data) if data.startswith(b"{") else {}

    def _login(self, endpoint: Endpoint, user: str, password: str) -> str:
        answer = self._api(endpoint, "POST", "/+login", {"user": user, "password": password})
        token = answer["result"]["password"]
        return base64.b64encode(f"{user}:{token}".encode()).decode()

    def upload_request(self, file: CorpusFile) -> UploadRequest:
        assert self.write_auth is not None
        return legacy_upload(self.index, file, self.write_auth)

    def file_path(self, file: CorpusFile) -> str:
        """devpi serves a file under a path with its digest: read it off the project page."""
        path = self._file_paths.get(file.filename)
        if path is None and self.endpoint is not None:
            conn = self.endpoint.connect()
            try:
                conn.request("GET", f"{self.simple}{file.project}/")
                page = conn.getresponse().read().decode()
            finally:
                conn.close()
            for href in re.findall(r'href="([^"#]+)', page):
                self._file_paths[href.rsplit("/", 1)[-1]] = urljoin(
                    f"{self.simple}{file.project}/", href
                )
            path = self._file_paths.get(file.filename)
        return path or f"{self.index}+f/missing/{file.filename}"


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes auto;
user root;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  types {{ text/html html; application/octet-stream whl; application/gzip gz; }}
  default_type application/octet-stream;
  access_log {root}/access.log combined buffer=64k;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max={cached_files} inactive=60s;
  client_body_temp_path {root}/tmp/body;
  client_max_body_size 0;
  server {{
    listen {host}:{port};
    root {root}/html;
    location /simple/ {{
      index index.html;
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }}
  }}
}}
"""


def nginx_limits() -> dict[str, int]:
    """Descriptor budgets within our open-files limit: a cache of open files larger than
    it makes nginx answer 500 ("Too many open files") once the repository is large."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"cached_files": max(64, soft // 2), "connections": max(128, min(4096, soft // 4))}


class Nginx(Server):
    """Static files: pages rendered once from the file list, downloads by sendfile, uploads
    by WebDAV PUT to the download path."""

    name = "nginx"

    def install(self, work: Path) -> None:
        ensure_debian_tools()

    def prepare(self, root: Path) -> None:
        super().prepare(root)
        (root / "tmp").mkdir()
        write_static_tree(root / "html" / "simple", [])

    def command(self, root: Path, port: int) -> list[str]:
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=root, host=HOST, port=port, **nginx_limits()))
        return ["nginx", "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]

    def upload_request(self, file: CorpusFile) -> UploadRequest:
        return put_upload(self.file_path(file))

    def seed(self, root: Path, files: Sequence[CorpusFile]) -> bool:
        for file in files:
            link_file(file.path, root / "html" / self.file_path(file).lstrip("/"))
        return True

    def publish(self, root: Path, files: Sequence[CorpusFile]) -> None:
        write_static_tree(root / "html" / "simple", files)


ALL_SERVERS: dict[str, type[Server]] = {
    "pywharf": Pywharf,
    "nginx": Nginx,
    "pypiserver": PypiServer,
    "devpi": Devpi,
}


@dataclass(frozen=True)
class RunningServer:
    server: Server
    process: subprocess.Popen[bytes]
    endpoint: Endpoint
    ready_seconds: float  # from spawn to the first 200 on /simple/

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)


_LIVE: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (it was started in a new session), then KILL."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
            process.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    _LIVE.discard(process)


@atexit.register
def _stop_all() -> None:
    for process in list(_LIVE):
        _stop(process)


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(
    process: subprocess.Popen[bytes], endpoint: Endpoint, auth: str | None, log: Path, path: str
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"exited with {process.returncode}:\n{_log_tail(log)}")
        status = http_status(endpoint, path, auth, timeout=STARTUP_TIMEOUT_SECONDS)
        if status == 200:
            return
        if status:
            raise ServerFailed(f"GET {path} answered {status}:\n{_log_tail(log)}")
        time.sleep(POLL_SECONDS)
    raise ServerFailed(f"no answer within {STARTUP_TIMEOUT_SECONDS:.0f} s:\n{_log_tail(log)}")


@contextmanager
def running(server: Server, root: Path, work: Path) -> Iterator[RunningServer]:
    """Start `server` on `root`, wait for its first 200, and always stop it afterwards."""
    port = free_port()
    log = work / "logs" / f"{server.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = server.command(root, port)
    with log.open("ab") as sink:
        sink.write(f"\n=== {time.ctime()} {' '.join(argv)}\n".encode())
        sink.flush()
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=server.env(work),
            start_new_session=True,
        )
    _LIVE.add(process)
    try:
        endpoint = Endpoint(HOST, port)
        _wait_ready(process, endpoint, server.read_auth, log, server.ready_path)
        ready = time.monotonic() - started
        server.started(endpoint)
        yield RunningServer(server, process, endpoint, ready)
    finally:
        _stop(process)
