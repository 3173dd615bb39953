"""Threads, file descriptors and RSS of a pywharf server holding many idle keep-alive connections.

Not part of CI. Runs the working tree (`python -m pywharf`, or `--source DIR` for another
checkout, e.g. a `git worktree` of the commit to compare with):

    python3 benchmarks/idle_connections.py --connections 2000
    python3 benchmarks/idle_connections.py --source /tmp/old-tree --no-max-connections

Each connection makes one request (`GET /`), reads the answer and then stays open and silent,
as a pip or uv connection pool does between downloads. The figures are read from
`/proc/PID/status` (Threads, VmRSS) and `/proc/PID/fd` once they have settled.

With `--active 64`, the server holds a generated repository (2,000 projects, `generated.py`)
and wrk's 64 connections read random project pages for `--seconds`, first alone, then beside
the idle connections: their p99 and the server's CPU per request, both times (issue 16).
`--max-connections` defaults to the idle connections plus the active ones plus 100 (the
server's own default, 1,000, is below 2,000 idle connections).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.generated import generate_repository
from benchmarks.generated import project_name

REPO = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# With a configured repository `/` wants credentials: the pages a pip connection pool reads.
REQUEST_WITH_AUTH = (
    b"GET /simple/ HTTP/1.1\r\nHost: bench\r\nAuthorization: Basic YmVuY2g6cg==\r\n\r\n"
)


def server_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "threads": int(fields["Threads"]),
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def settled(pid: int, seconds: float = 1.0, limit: float = 30.0) -> dict[str, int]:
    """The figures once the thread count has not changed for `seconds` (at most `limit`)."""
    deadline = time.monotonic() + limit
    last = server_figures(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = server_figures(pid)
        if now["threads"] != last["threads"] or now["fds"] != last["fds"]:
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            return now
        last = now
    return last


def wait_for_port(log: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "127.0.0.1:" in line:
                digits = line.split("127.0.0.1:", 1)[1].split("/", 1)[0]
                if digits.isdigit():
                    return int(digits)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"the server did not start:\n{log.read_text(errors='replace')}")


def open_idle(port: int, count: int, authorization: bool = False) -> list[socket.socket]:
    """`count` connections, each after one answered request; a refusal stops the run."""
    sockets = []
    request = REQUEST_WITH_AUTH if authorization else REQUEST
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise SystemExit(f"connection {len(sockets)} was closed: {answer[:80]!r}")
            answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"connection {len(sockets)} got {answer.splitlines()[0]!r}")
        sockets.append(sock)
    return sockets


def active_load(port: int, pid: int, active: int, seconds: float, work: Path) -> dict[str, float]:
    """wrk on random project pages: p99 and the server's CPU per request."""
    from benchmarks.load import Endpoint
    from benchmarks.load import basic_auth
    from benchmarks.load import run_wrk
    from benchmarks.proc import cpu_seconds

    pages = [f"/simple/{project_name(p)}/" for p in range(ACTIVE_PROJECTS)]
    auth = {"Authorization": basic_auth("bench", "r")}
    before = cpu_seconds([pid])
    result = run_wrk(Endpoint("127.0.0.1", port), pages, auth, seconds, 2, active, work)
    used = cpu_seconds([pid]) - before
    return {
        "requests": result.requests,
        "errors": result.error_count,
        "p99_ms": result.p99_ms,
        "cpu_us": used / max(1, result.requests) * 1e6,
    }


ACTIVE_PROJECTS = 2000
ACTIVE_CONFIG = '[bench]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--active", type=int, default=0, help="wrk connections beside them")
    parser.add_argument("--seconds", type=float, default=10.0, help="each wrk run")
    parser.add_argument("--max-connections", type=int, help="the server's --max_connections")
    parser.add_argument("--source", type=Path, default=REPO, help="the tree to run")
    parser.add_argument(
        "--no-max-connections",
        action="store_true",
        help="for trees older than --max_connections",
    )
    options = parser.parse_args()
    if options.active:
        from benchmarks.peers import ensure_debian_tools

        ensure_debian_tools()  # wrk is the active clients
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients' own sockets
    with tempfile.TemporaryDirectory(prefix="pywharf-idle-") as work:
        log = Path(work) / "server.log"
        command = [sys.executable, "-m", "pywharf", "server", f"{work}/root"]
        command += ["--host", "127.0.0.1", "--port", "0", "--extra_index_url", ""]
        if options.active:
            generate_repository(Path(work) / "root", "bench", ACTIVE_PROJECTS, 5, False)
            (Path(work) / "bench.toml").write_text(ACTIVE_CONFIG)
            command += ["--config", f"{work}/bench.toml"]
        if not options.no_max_connections:
            limit = options.max_connections or options.connections + options.active + 100
            command += ["--max_connections", str(limit)]
        env = {**os.environ, "PYTHONPATH": str(options.source)}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=work
            )
        figures: dict[str, Any] = {}
        try:
            port = wait_for_port(log, process)
            if options.active:
                figures["active_alone"] = active_load(
                    port, process.pid, options.active, options.seconds, Path(work)
                )
            figures["before"] = settled(process.pid)
            sockets = open_idle(port, options.connections, authorization=bool(options.active))
            figures["idle"] = settled(process.pid)
            if options.active:
                figures["active_beside_idle"] = active_load(
                    port, process.pid, options.active, options.seconds, Path(work)
                )
                figures["idle_after_active"] = settled(process.pid)
                figures["idle_still_open"] = sum(still_open(sock) for sock in sockets)
            for sock in sockets:
                sock.close()
        finally:
            process.terminate()
            process.wait(15)
    before, idle = figures["before"], figures["idle"]
    figures["growth"] = {key: idle[key] - before[key] for key in before}
    if options.active:
        alone, beside = figures["active_alone"], figures["active_beside_idle"]
        figures["p99_ratio"] = beside["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else None
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps({"connections": options.connections, "active": options.active,
                      "load": load, **figures}, indent=2))  # fmt: skip


def still_open(sock: socket.socket) -> bool:
    """Whether the server has kept an idle connection open (no EOF waiting on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
