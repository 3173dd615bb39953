"""Threads, file descriptors and RSS of a pywharf server holding many idle keep-alive connections.

Not part of CI. Runs the working tree (`python -m pywharf`, or `--source DIR` for another
checkout, e.g. a `git worktree` of the commit to compare with):

    python3 benchmarks/idle_connections.py --connections 2000
    python3 benchmarks/idle_connections.py --source /tmp/old-tree --no-max-connections

Each connection makes one request (`GET /`), reads the answer and then stays open and silent,
as a pip or uv connection pool does between downloads. The figures are read from
`/proc/PID/status` (Threads, VmRSS) and `/proc/PID/fd` once they have settled.
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

REPO = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


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


def open_idle(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(REQUEST)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--source", type=Path, default=REPO, help="the tree to run")
    parser.add_argument(
        "--no-max-connections",
        action="store_true",
        help="for trees older than --max_connections",
    )
    options = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients' own sockets
    with tempfile.TemporaryDirectory(prefix="pywharf-idle-") as work:
        log = Path(work) / "server.log"
        command = [sys.executable, "-m", "pywharf", "server", f"{work}/root"]
        command += ["--host", "127.0.0.1", "--port", "0", "--extra_index_url", ""]
        if not options.no_max_connections:
            command += ["--max_connections", str(options.connections + 100)]
        env = {**os.environ, "PYTHONPATH": str(options.source)}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=work
            )
        try:
            port = wait_for_port(log, process)
            figures = {"before": settled(process.pid)}
            sockets = open_idle(port, options.connections)
            figures["idle"] = settled(process.pid)
            for sock in sockets:
                sock.close()
        finally:
            process.terminate()
            process.wait(15)
    before, idle = figures["before"], figures["idle"]
    figures["growth"] = {key: idle[key] - before[key] for key in before}
    print(json.dumps({"connections": options.connections, **figures}, indent=2))


if __name__ == "__main__":
    main()
