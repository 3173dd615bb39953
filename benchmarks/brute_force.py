"""A correct client's latency while another address guesses passwords (issue 9, finding 6).

Not part of CI. Runs the working tree (`python -m pywharf`) on a temporary ROOT:

    python3 benchmarks/brute_force.py --seconds 10 --attackers 3

Attacker processes send wrong Basic-auth passwords over keep-alive connections from
127.0.0.2 as fast as they can; one honest client on 127.0.0.1 fetches a project page with the
right secret, one request at a time. It reports the attack's rate and answers, and the honest
client's p50/p99 with and without the attack, in the same run (the machine is shared: compare
the ratio, not the figures).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READ, WRITE = "bench-read", "bench-write"
CONFIG = f'[local]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'


def basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"local:{secret}".encode()).decode()


def attack(port: int, seconds: float, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    answers: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    connection = http.client.HTTPConnection("127.0.0.1", port, source_address=("127.0.0.2", 0))
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            connection.request("GET", "/simple/", headers={"Authorization": basic(f"x{n}")})
            response = connection.getresponse()
            response.read()
            answers[response.status] += 1
            if response.getheader("connection", "").lower() == "close":
                connection.close()
        except (OSError, http.client.HTTPException):
            connection.close()
            answers[0] += 1
    results.put(dict(answers))


def honest(port: int, seconds: float) -> list[float]:
    latencies = []
    connection = http.client.HTTPConnection("127.0.0.1", port)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection.request("GET", "/simple/", headers={"Authorization": basic(READ)})
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        latencies.append(time.perf_counter() - started)
    connection.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def start_server(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    (root / "repos.toml").write_text(CONFIG)
    log = root / "server.log"
    command = [sys.executable, "-m", "pywharf", "server", str(root / "data"), "--config",
               str(root / "repos.toml"), "--host", "0.0.0.0", "--port", "0"]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "listening on" in line:
                return process, int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise SystemExit(log.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--attackers", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_server(Path(folder))
        try:
            quiet = honest(port, options.seconds)
            results: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            attackers = [
                multiprocessing.Process(target=attack, args=(port, options.seconds, results))
                for _ in range(options.attackers)
            ]
            for each in attackers:
                each.start()
            loud = honest(port, options.seconds)
            answers: Counter[int] = Counter()
            for _ in attackers:
                answers.update(results.get())
            for each in attackers:
                each.join()
        finally:
            process.terminate()
            process.wait(10)
    report = {
        "attack_requests_per_second": round(sum(answers.values()) / options.seconds),
        "attack_answers": dict(sorted(answers.items())),
        "honest_p50_ms": [round(percentile(v, 0.5) * 1000, 3) for v in (quiet, loud)],
        "honest_p99_ms": [round(percentile(v, 0.99) * 1000, 3) for v in (quiet, loud)],
        "honest_requests": [len(quiet), len(loud)],
        "p99_ratio_under_attack": round(percentile(loud, 0.99) / percentile(quiet, 0.99), 2),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
