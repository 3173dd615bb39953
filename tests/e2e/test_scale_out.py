"""Scale out: nginx from Debian in front of three pywharf servers (the built pyz) on one bucket.

The servers reach SeaweedFS through one recording gate (`s3_gate`), so a test can see the
presigned GETs pip and uv make, and play a store that goes down. Through the balancer: twine
in, pip and uv out; 400 concurrent uploads split across the servers while one is killed with
SIGKILL and restarted, every server then listing all of them; and the outage cases.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from balancer import Balancer
from balancer import running_nginx
from balancer import site_config
from factory import make_wheel
from s3_support import S3Bucket
from s3_support import S3Gate
from s3_support import SeaweedFS
from s3_support import new_bucket
from s3_support import s3_admin_secret
from s3_support import s3_config
from s3_support import s3_gate
from s3_support import start_s3_pyz
from support import READ
from support import REPO
from support import Live
from support import ServerProcess
from support import fetch_json
from support import pip_install
from support import poll
from support import stop
from support import twine_upload
from support import uv_install
from support_upload import upload

from pywharf.clients.s3 import S3Client

pytestmark = pytest.mark.slow

INSTANCES = 3
SYNC_INDEX_INTERVAL = 0.5  # seconds; each idle sync is one LIST through the gate per server
UPLOADS = 400
PROJECTS = 8
CLIENTS = 16
KILL_AFTER = 100  # acknowledged uploads before one server is killed
ATTEMPTS = 20  # per upload: 502 (in flight to the killed server), 503, a cut connection
RETRYABLE = (502, 503)


@dataclass
class Cluster:
    """Three servers on one bucket behind nginx; `servers` changes when one is restarted."""

    pyz: Path
    base: Path
    bucket: S3Bucket
    gate: S3Gate
    servers: list[ServerProcess]
    balancer: Balancer

    def start_server(self, name: str) -> ServerProcess:
        return start_instance(self.pyz, self.base / name, self.bucket, self.gate)

    def upstreams(self) -> list[str]:
        return [f"{s.live.host}:{s.live.port}" for s in self.servers]


def start_instance(pyz: Path, root: Path, bucket: S3Bucket, gate: S3Gate) -> ServerProcess:
    """One server on the bucket, reaching the store through the gate."""
    config = s3_config(
        bucket, endpoint_url=gate.endpoint_url, sync_index_interval=SYNC_INDEX_INTERVAL
    )
    return start_s3_pyz(pyz, root, config, s3_admin_secret(bucket), "--extra_index_url", "")


@pytest.fixture(scope="module")
def cluster(
    pyz: Path, seaweedfs_server: SeaweedFS, nginx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("scale-out")
    bucket = new_bucket(seaweedfs_server)
    with s3_gate(bucket.endpoint_url) as gate:
        roots = [base / name for name in ("a", "b", "c")]
        with ThreadPoolExecutor(INSTANCES) as pool:  # about 1 s each: start them together
            servers = list(pool.map(lambda root: start_instance(pyz, root, bucket, gate), roots))
        try:
            upstreams = [f"{s.live.host}:{s.live.port}" for s in servers]
            with running_nginx(base, upstreams) as balancer:
                yield Cluster(pyz, base, bucket, gate, servers, balancer)
        finally:
            for server in servers:  # the list the cluster changes on a restart
                if server.process.poll() is None:
                    stop(server)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def listed_files(live: Live, project: str) -> dict[str, str]:
    """filename → sha256 of a project page in its JSON form; {} while it has none."""
    if live.request("GET", f"/simple/{project}/")[0] == 404:
        return {}
    page = fetch_json(live, f"/simple/{project}/")
    return {entry["filename"]: entry["hashes"]["sha256"] for entry in page["files"]}


def lists(live: Live, filename: str, project: str = "outage") -> bool | None:
    return True if filename in listed_files(live, project) else None


def test_readme_shows_the_site_config_the_test_runs() -> None:
    """README's "Scale out" example is `site_config` with the example's addresses."""
    example = site_config("0.0.0.0:80", [f"10.0.0.{n}:8080" for n in (11, 12, 13)])
    assert example in (REPO / "README.md").read_text()


def test_twine_in_pip_and_uv_out_through_the_balancer(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "dists"
    folder.mkdir()
    wheel = make_wheel(folder, "balanced", "1.0")
    home = tmp_path / "home"
    result = twine_upload(cluster.balancer.server, [wheel], home)
    assert result.returncode == 0, output(result)
    for server in cluster.servers:  # pip may reach any of them: each within one sync
        poll(functools.partial(lists, server.live, wheel.name, "balanced"), "every server")
    index_url = cluster.balancer.live.index_url(READ)
    for install, target in ((pip_install, tmp_path / "pip"), (uv_install, tmp_path / "uv")):
        before = len(cluster.gate.seen)
        result = install(index_url, "balanced==1.0", target, home)
        assert result.returncode == 0, output(result)
        assert (target / "balanced").is_dir()
        presigned = [s for s in cluster.gate.seen[before:] if "X-Amz-Signature=" in s.query]
        assert presigned, f"{install.__name__} did not follow a redirect to the store"
        assert all(s.authorization == "" for s in presigned), presigned  # no credentials


def upload_until_acknowledged(live: Live, wheel: Path) -> int:
    """POST until a 200, as twine does on 5xx (nginx never retries a POST it has sent);
    the number of retries it took."""
    for attempt in range(ATTEMPTS):
        try:
            status, _, body = upload(live, wheel)
        except (OSError, http.client.HTTPException):  # cut off by the kill
            continue
        if status in RETRYABLE:
            continue
        assert status == 200, (wheel.name, status, body)
        return attempt
    raise AssertionError(f"{wheel.name}: no 200 in {ATTEMPTS} attempts")


class Uploads:
    """Counts acknowledged uploads, so the test can act mid-run."""

    def __init__(self) -> None:
        self.acknowledged = 0
        self.retries = 0
        self._lock = threading.Lock()

    def one(self, live: Live, wheel: Path) -> None:
        retries = upload_until_acknowledged(live, wheel)
        with self._lock:
            self.acknowledged += 1
            self.retries += retries


def posts_by_upstream(balancer: Balancer) -> Counter[str]:
    """Acknowledged uploads per server, from nginx's log (`$upstream_addr` of each POST)."""
    counts: Counter[str] = Counter()
    for line in balancer.access_log():
        if re.match(r"POST /simple/ 200 ", line):
            counts[line.split()[-1]] += 1
    return counts


def test_concurrent_uploads_with_a_server_killed_lose_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    folder = tmp_path / "dists"
    folder.mkdir()
    wheels = [make_wheel(folder, f"scale-{n % PROJECTS}", f"1.{n}") for n in range(UPLOADS)]
    expected = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    victim = cluster.servers[1]
    first_upstreams = cluster.upstreams()
    uploads = Uploads()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(uploads.one, cluster.balancer.live, w) for w in wheels]
        poll(lambda: True if uploads.acknowledged >= KILL_AFTER else None, "uploads", 60)
        victim.process.kill()  # SIGKILL, with uploads in flight to it
        assert victim.process.wait() == -9
        cluster.servers[1] = cluster.start_server("b-restarted")  # a fresh ROOT: stateless
        cluster.balancer.reload(cluster.upstreams())
        for future in futures:
            future.result()
    assert uploads.acknowledged == UPLOADS
    by_upstream = posts_by_upstream(cluster.balancer)
    assert all(by_upstream[address] for address in first_upstreams), by_upstream  # all shared

    def lists_all(live: Live) -> bool | None:
        found: dict[str, str] = {}
        for project in range(PROJECTS):
            found.update(listed_files(live, f"scale-{project}"))
        return True if found == expected else None  # nothing lost, nothing else listed

    for server in cluster.servers:  # the restarted one included: rebuilt from the bucket
        poll(functools.partial(lists_all, server.live), f"{server.live.url} to list all", 30)
    # Nothing half-listed: the bucket holds exactly the listed files, each with its bytes.
    client = S3Client(cluster.bucket.location(), cluster.bucket.server.credentials)
    try:
        stored = {o.key.rpartition("/")[2]: o.etag for o in client.list("files/scale-")
                  if not o.key.endswith(".metadata")}  # fmt: skip
    finally:
        client.close()
    md5 = {w.name: hashlib.md5(w.read_bytes(), usedforsecurity=False).hexdigest() for w in wheels}
    assert stored == md5
    print(f"scale-out: {UPLOADS} uploads through nginx, {uploads.retries} retries after the "
          f"kill; acknowledged per server: {dict(by_upstream)}")  # fmt: skip


def test_a_store_outage_through_the_balancer(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "dists"
    folder.mkdir()
    before = make_wheel(folder, "outage", "1.0")
    during = make_wheel(folder, "outage", "2.0")
    live = cluster.balancer.live
    assert upload_until_acknowledged(live, before) == 0
    for server in cluster.servers:
        poll(functools.partial(lists, server.live, before.name), "every server to list it")
    cluster.gate.open = False
    try:
        for server in cluster.servers:  # pages come from memory, through nginx and directly
            assert before.name in listed_files(server.live, "outage")
            assert before.name in listed_files(live, "outage")
        status, _, body = upload(live, during)
        assert status == 503, body
        assert body.decode().count("\n") <= 1 and "repository 'local'" in body.decode()
    finally:
        cluster.gate.open = True
    poll(lambda: True if upload(live, during)[0] == 200 else None, "the store again", 60)
    for server in cluster.servers:  # back without a restart
        poll(functools.partial(lists, server.live, during.name), "the sync")
        assert "Traceback" not in server.output()
