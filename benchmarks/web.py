"""CPU cost of the web pages and of counting metrics, in process (no sockets, no client).

    python3 -m benchmarks.web

Targets (issue 14): a project page with 500 files <= 2 ms CPU; a search over 20,000 projects
<= 5 ms CPU; metrics add <= 3 % CPU to a cached simple page.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pywharf.app import App
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.config import parse_repositories
from pywharf.dists import NormalizedName
from pywharf.http import Request
from pywharf.index import Add
from pywharf.index import FileRecord
from pywharf.repository import Repository
from pywharf.server import Server

CONFIG = '[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
AUTH = "Basic " + base64.b64encode(b"local:r").decode()
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PIP = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1"


def _records(project: str, versions: int, per_version: int) -> list[FileRecord]:
    name = NormalizedName(project)
    records = []
    for v in range(versions):
        for f in range(per_version):
            filename = f"{project.replace('-', '_')}-1.{v}-cp3{f}-cp3{f}-manylinux_x86_64.whl"
            records.append(FileRecord(filename, name, f"1.{v}", f"{v:032x}{f:032x}", 123_456 + f,
                                      1.7e9 + v * 3600, ">=3.9", None, None,
                                      f"The {project} project"))  # fmt: skip
    return records


def _app(root: Path, records: list[FileRecord]) -> App:
    (config,) = parse_repositories(CONFIG, "benchmark", backend_settings)
    repository = Repository(create_backend(config, root, None), 3600, 300)
    repository.sync()
    repository.index.apply([Add(r) for r in records])
    return App({"local": repository})


def _request(path: str, query: dict[str, str], accept: str) -> Request:
    headers = {"authorization": AUTH, "accept": accept, "host": "pywharf.example"}
    return Request("GET", path, query, headers, io.BytesIO(b""))


def cpu_ms(call: Callable[[], object], rounds: int) -> float:
    """CPU milliseconds per call: the best of five runs of `rounds` calls (after a warm-up)."""
    call()
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(rounds):
            call()
        best = min(best, (time.process_time() - started) / rounds * 1000)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        app = _app(root / "a", _records("demo", 50, 10))  # 500 files
        page = _request("/project/demo/", {}, BROWSER)
        assert app.handle(page).status == 200
        print(f"project page, 500 files: {cpu_ms(lambda: app.handle(page), 200):.3f} ms CPU")

        many = [r for i in range(20_000) for r in _records(f"proj-{i:05d}", 1, 1)]
        app = _app(root / "b", many)
        for query in ("proj-12345", "proj-123", "project", "p"):
            search = _request("/", {"q": query}, BROWSER)
            assert app.handle(search).status == 200
            cost = cpu_ms(lambda search=search: app.handle(search), 20)
            print(f"search over 20,000 projects, q={query!r}: {cost:.3f} ms CPU")

        app = _app(root / "c", _records("demo", 5, 4))
        simple = _request("/simple/demo/", {}, PIP)
        assert app.handle(simple).status == 200
        counting = app.metrics.request
        counted = cpu_ms(lambda: app.handle(simple), 20_000)
        app.metrics.request = _not_counted  # type: ignore[method-assign]
        uncounted = cpu_ms(lambda: app.handle(simple), 20_000)
        print(f"simple page in App.handle alone: {uncounted * 1000:.1f} us CPU without metrics, "
              f"{counted * 1000:.1f} us with")  # fmt: skip
        served = {True: float("inf"), False: float("inf")}
        with _serving(app) as port:
            for _ in range(5):  # alternate, best of five each: the machine is shared
                for on in (True, False):
                    app.metrics.request = counting if on else _not_counted  # type: ignore[method-assign]
                    served[on] = min(served[on], _server_cpu_us(port, 5_000))
        overhead = (served[True] - served[False]) / served[False] * 100
        print(f"simple page over a socket (server CPU per request): {served[False]:.1f} us "
              f"without metrics, {served[True]:.1f} us with ({overhead:+.1f} %)")  # fmt: skip


def _not_counted(route: str, status: int, seconds: float) -> None:
    pass


@contextmanager
def _serving(app: App) -> Iterator[int]:
    server = Server(("127.0.0.1", 0), app, None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_CLIENT = """
import http.client, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
headers = {"Authorization": sys.argv[3], "Accept": sys.argv[4]}
for _ in range(int(sys.argv[2])):
    connection.request("GET", "/simple/demo/", headers=headers)
    connection.getresponse().read()
"""


def _server_cpu_us(port: int, requests: int) -> float:
    """This process's CPU (the server's threads) per request of a client in another process."""
    started = time.process_time()
    subprocess.run([sys.executable, "-c", _CLIENT, str(port), str(requests), AUTH, PIP],
                   check=True)  # fmt: skip
    return (time.process_time() - started) / requests * 1e6


if __name__ == "__main__":
    main()
