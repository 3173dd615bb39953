"""nginx from Debian as the load balancer in front of several pywharf servers.

A private instance: `nginx -p DIR -c DIR/nginx.conf` in the foreground (`daemon off`), its pid
file, logs and temp folders under DIR, listening on 127.0.0.1. `site_config` is the part a
deployment copies (README, "Scale out"); `nginx_config` wraps it for a private run. The
`nginx` fixture installs the package with apt when it is missing (tests/debian.py).
"""

from __future__ import annotations

import getpass
import signal
import socket
import subprocess
from collections.abc import Iterator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from debian import apt_install
from s3_support import free_ports
from support import Live
from support import ServerProcess
from support import poll

__all__ = ["NGINX", "Balancer", "nginx", "nginx_config", "running_nginx", "site_config"]

NGINX = Path("/usr/sbin/nginx")
START_ATTEMPTS = 3
READY_SECONDS = 20.0  # up in 0.04 s idle (measured); far slower on a loaded 2-core runner
STOP_SECONDS = 10.0
# nginx cannot bind port 0, so the harness picks a free port; another process may take it
# before nginx binds it, and then nginx exits at once with this in its error log.
BIND_FAILED = "Address already in use"


def site_config(listen: str, upstreams: Sequence[str]) -> str:
    """The upstream and server blocks: what goes into /etc/nginx/conf.d/ in a deployment."""
    servers = "".join(f"    server {address};\n" for address in upstreams)
    return f"""\
upstream pywharf {{
{servers}    keepalive 32;                       # reused connections to the servers
    # pywharf closes idle connections after 30 s, so nginx must drop its pooled upstream
    # connections first, or a POST reused on a just-closed connection can get a 502.
    keepalive_timeout 20s;
}}

server {{
    listen {listen};
    client_max_body_size 0;             # no cap here: each repository has max_file_bytes
    proxy_request_buffering off;        # stream uploads: pywharf spools and checks them

    location / {{
        proxy_pass http://pywharf;
        proxy_http_version 1.1;         # needed for keepalive
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_max_temp_file_size 0;     # pass large proxied downloads through, not via disk
        proxy_read_timeout 300s;        # an upload answers once the store holds the file
        proxy_send_timeout 300s;
    }}
}}
"""


def nginx_config(directory: Path, site: str, workers: int = 1) -> str:
    """A private instance: everything it writes lives under `directory`. `user` makes its
    workers run as we do (as root, nginx would switch them to `nobody`, who cannot reach a
    pytest folder); an unprivileged nginx ignores it with a warning."""
    return f"""\
daemon off;
worker_processes {workers};
user {getpass.getuser()};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {directory}/access.log upstreams;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

{site}}}
"""


@dataclass
class Balancer:
    """A running nginx: `server` for the suite's client helpers, `reload` for new upstreams."""

    server: ServerProcess
    directory: Path
    workers: int

    @property
    def live(self) -> Live:
        return self.server.live

    @property
    def listen(self) -> str:
        return f"{self.live.host}:{self.live.port}"

    def reload(self, upstreams: Sequence[str]) -> None:
        """Point it at other servers: a graceful reload (SIGHUP), requests in flight finish."""
        write_config(self.directory, self.listen, upstreams, self.workers)
        self.server.process.send_signal(signal.SIGHUP)

    def access_log(self) -> list[str]:
        path = self.directory / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []


def write_config(directory: Path, listen: str, upstreams: Sequence[str], workers: int) -> Path:
    config = directory / "nginx.conf"
    config.write_text(nginx_config(directory, site_config(listen, upstreams), workers))
    return config


def _accepts(address: tuple[str, int], process: subprocess.Popen[bytes]) -> bool | None:
    if process.poll() is not None:
        return False
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return None
    return True


def _start(directory: Path, upstreams: Sequence[str], workers: int) -> Balancer | None:
    """One try on a free port; None if nginx lost the port to another process."""
    directory.mkdir(parents=True)
    (port,) = free_ports(1)
    config = write_config(directory, f"127.0.0.1:{port}", upstreams, workers)
    log = directory / "nginx.out"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(NGINX), "-p", str(directory), "-c", str(config)],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    address = ("127.0.0.1", port)
    if poll(lambda: _accepts(address, process), "nginx to listen", READY_SECONDS):
        return Balancer(ServerProcess(process, Live(*address, directory), log), directory, workers)
    error_log = directory / "error.log"
    errors = log.read_text(errors="replace") + error_log.read_text(errors="replace")
    if BIND_FAILED in errors:
        return None
    raise AssertionError(f"nginx exited {process.returncode}: {errors}")


def stop(balancer: Balancer) -> None:
    """SIGQUIT: a graceful stop, workers finish their requests; SIGKILL if it hangs."""
    process = balancer.server.process
    if process.poll() is None:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_nginx(
    directory: Path, upstreams: Sequence[str], workers: int = 1
) -> Iterator[Balancer]:
    """nginx on a free port of 127.0.0.1 in front of `upstreams` (host:port), stopped on exit."""
    for attempt in range(START_ATTEMPTS):
        balancer = _start(directory / f"nginx-{attempt}", upstreams, workers)
        if balancer is None:
            continue
        try:
            yield balancer
        finally:
            stop(balancer)
        return
    raise AssertionError(f"nginx lost its port {START_ATTEMPTS} times in a row")


@pytest.fixture(scope="session")
def nginx() -> Path:
    """Debian's nginx, installed once per session when missing."""
    reason = apt_install(("nginx",), (NGINX,))
    if reason is not None:
        pytest.skip(reason)
    return NGINX
