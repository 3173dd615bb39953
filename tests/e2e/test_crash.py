"""kill -9 during 200 concurrent uploads, through the built pyz: nothing acknowledged is lost.

Each round starts the server, uploads what is still pending from a pool of clients, and kills
the server (SIGKILL) once a seeded number of uploads have answered; the uploads that did not
answer are retried in the next round. After the last round and one more restart (its sweep):
every upload that answered 200 is listed and byte-identical, nothing else is listed, and no
temporary file is left (issue 9: 7 acknowledged uploads were lost in three kills).
"""

from __future__ import annotations

import hashlib
import http.client
import random
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed
from pathlib import Path
from urllib.parse import urljoin
from urllib.parse import urlsplit

import pytest
from factory import make_wheel
from support import CONFIG
from support import Live
from support import ServerProcess
from support import fetch_json
from support import start_pyz
from support import stop
from support_upload import upload

SEED = 20261206  # the kill points are reproducible
UPLOADS = 200
PROJECTS = 20
KILLS = 3
CLIENTS = 16
STORAGE = Path("cache") / "local" / "storage"


def start(pyz: Path, root: Path, config: Path) -> ServerProcess:
    return start_pyz(pyz, root, "--config", str(config), "--extra_index_url", "")


def upload_round(server: ServerProcess, pending: list[Path], kill_after: int | None) -> set[Path]:
    """Upload `pending`; kill -9 once `kill_after` have answered 200. The acknowledged ones."""
    acknowledged: set[Path] = set()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures: dict[Future[tuple[int, dict[str, str], bytes]], Path] = {
            pool.submit(upload, server.live, wheel): wheel for wheel in pending
        }
        for future in as_completed(futures):
            try:
                status, _, body = future.result()
            except (OSError, http.client.HTTPException):
                continue  # cut off by the kill: the client does not know, so it retries
            assert status == 200, (futures[future].name, status, body)
            acknowledged.add(futures[future])
            if len(acknowledged) == kill_after:
                server.process.kill()
    if kill_after is None:
        stop(server)
    assert server.process.wait() in (0, -9), server.output()
    return acknowledged


def listed(live: Live) -> dict[str, bytes]:
    """Every listed file with its downloaded bytes, checked against its listed sha256."""
    files = {}
    for project in fetch_json(live, "/simple/")["projects"]:
        page = f"/simple/{project['name']}/"
        for entry in fetch_json(live, page)["files"]:
            assert entry["requires-python"] == ">=3.8", entry
            path = urlsplit(urljoin(page, entry["url"])).path
            status, _, data = live.request("GET", path)
            assert status == 200, entry
            assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"], entry
            files[entry["filename"]] = data
    return files


def temporary_files(root: Path) -> list[str]:
    storage = root / STORAGE
    return [str(p.relative_to(storage)) for p in storage.rglob("*")
            if p.parent.name == "tmp" or p.name.endswith((".tmp", ".new"))]  # fmt: skip


@pytest.mark.slow
def test_kill_9_during_concurrent_uploads_loses_nothing_acknowledged(
    pyz: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    dists = tmp_path / "dists"
    dists.mkdir()
    wheels = [make_wheel(dists, f"crash-{n % PROJECTS}", f"1.{n}", requires_python=">=3.8")
              for n in range(UPLOADS)]  # fmt: skip
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    root = tmp_path / "root"
    acknowledged: set[Path] = set()
    pending = list(wheels)
    figures = []
    for round_ in range(KILLS + 1):
        server = start(pyz, root, config)
        kill_after = rng.randint(10, len(pending) // 3) if round_ < KILLS else None
        answered = upload_round(server, pending, kill_after)
        acknowledged |= answered
        pending = [wheel for wheel in pending if wheel not in answered]
        repaired = server.output().count("cut off by a crash")  # orphans the start-up listed
        figures.append(f"round {round_}: {repaired} repaired at start, "
                       f"{len(answered)} acknowledged, {len(pending)} cut off")  # fmt: skip
        assert "Traceback" not in server.output()
    assert pending == [] and len(acknowledged) == UPLOADS, figures
    server = start(pyz, root, config)  # the restart after the last kill has swept; once more
    try:
        files = listed(server.live)
        lost = [w.name for w in acknowledged if files.get(w.name) != w.read_bytes()]
        print(f"crash test: {KILLS} kills, {UPLOADS} uploads acknowledged, {len(lost)} lost;",
              "; ".join(figures))  # fmt: skip
        assert lost == [], figures
        assert sorted(files) == sorted(w.name for w in wheels)  # nothing half-written listed
        assert temporary_files(root) == []
    finally:
        stop(server)
