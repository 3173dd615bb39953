"""The S3 backend against direct SigV4 access to the same SeaweedFS, in the same run (issue 11).

    .venv/bin/python -m benchmarks.s3             # 1 GiB wheel, 100,000 files, 10 s wrk runs
    .venv/bin/python -m benchmarks.s3 --quick     # 64 MiB, 10,000 files, 3 s runs

Not CI. Starts its own `weed mini`, pywharf servers (the built pyz) and nginx (the suite's
harness: tests/s3_support.py, tests/balancer.py), prints the figures with the ratios and
targets, and writes them to benchmarks/results/YYYY-MM-DD-HHMM-s3[-quick].{json,md}. As root it
installs nginx and wrk with apt when they are missing.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import platform
import shutil
import statistics
import sys
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from balancer import running_nginx  # noqa: E402
from debian import apt_install  # noqa: E402
from s3_support import S3Bucket  # noqa: E402
from s3_support import SeaweedFS  # noqa: E402
from s3_support import new_bucket  # noqa: E402
from s3_support import running_seaweedfs  # noqa: E402
from s3_support import s3_admin_secret  # noqa: E402
from s3_support import s3_config  # noqa: E402
from s3_support import s3_gate  # noqa: E402
from s3_support import start_s3_pyz  # noqa: E402
from support import CONFIG  # noqa: E402
from support import PYZ  # noqa: E402
from support import READ  # noqa: E402
from support import WRITE  # noqa: E402
from support import ServerProcess  # noqa: E402
from support import start_pyz  # noqa: E402
from support import stop  # noqa: E402

from benchmarks.corpus import CorpusFile  # noqa: E402
from benchmarks.corpus import ensure_large_file  # noqa: E402
from benchmarks.generated import generate_repository  # noqa: E402
from benchmarks.generated import project_name  # noqa: E402
from benchmarks.load import Endpoint  # noqa: E402
from benchmarks.load import TransferResult  # noqa: E402
from benchmarks.load import basic_auth  # noqa: E402
from benchmarks.load import download  # noqa: E402
from benchmarks.load import legacy_upload  # noqa: E402
from benchmarks.load import run_wrk  # noqa: E402
from benchmarks.load import upload_one_large  # noqa: E402
from benchmarks.proc import PeakRss  # noqa: E402
from benchmarks.proc import cpu_seconds  # noqa: E402
from benchmarks.proc import process_tree  # noqa: E402
from benchmarks.proc import rss_bytes  # noqa: E402
from pywharf.backends.s3_layout import Layout  # noqa: E402
from pywharf.backends.s3_layout import Manifest  # noqa: E402
from pywharf.clients.s3 import S3Client  # noqa: E402
from pywharf.clients.s3_core import MULTIPART_THRESHOLD  # noqa: E402
from pywharf.clients.s3_multipart import EARLY_PART_BYTES  # noqa: E402
from pywharf.dists import normalize_project_name  # noqa: E402
from pywharf.index import FileRecord  # noqa: E402

WORK = HERE / "work" / "s3" / f"run-{os.getpid()}"  # fresh: no cached copy from a past run
RESULTS = HERE / "results"
READ_AUTH = basic_auth("local", READ)
WRITE_AUTH = basic_auth("local", WRITE)
MiB = 2**20


# --- helpers ---------------------------------------------------------------------------------


def server_pids(servers: list[ServerProcess]) -> list[int]:
    return [pid for server in servers for pid in process_tree(server.process.pid)]


def endpoint_of(url: str) -> Endpoint:
    parts = urllib.parse.urlsplit(url)
    return Endpoint(parts.hostname or "127.0.0.1", parts.port or 80)


def target_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def get_presigned(url: str) -> TransferResult:
    return download(endpoint_of(url), target_of(url), None)


def redirect_location(server: ServerProcess, path: str) -> str:
    connection = http.client.HTTPConnection(server.live.host, server.live.port, timeout=60)
    try:
        connection.request("GET", path, headers={"Authorization": READ_AUTH})
        response = connection.getresponse()
        response.read()
        assert response.status == 302, (response.status, path)
        return response.getheader("location") or ""
    finally:
        connection.close()


def judged(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []  # figure, value, target, verdict
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []

    def add(self, name: str, value: str, target: str = "", verdict: str = "") -> None:
        print(f"{name}: {value}" + (f"  (target {target}: {verdict})" if target else ""))
        self.rows.append((name, value, target, verdict))


# --- the servers -------------------------------------------------------------------------------


@contextmanager
def servers(
    pyz: Path, bucket: S3Bucket, count: int, name: str, endpoint_url: str = "", **settings: Any
) -> Iterator[list[ServerProcess]]:
    config = s3_config(bucket, endpoint_url=endpoint_url or bucket.endpoint_url, **settings)
    started: list[ServerProcess] = []
    try:
        for n in range(count):
            started.append(
                start_s3_pyz(
                    pyz,
                    WORK / f"{name}-{n}",
                    config,
                    s3_admin_secret(bucket),
                    "--extra_index_url",
                    "",
                )
            )
        yield started
    finally:
        for server in started:
            stop(server)


# --- 1. the large file: upload, redirect and proxy downloads ----------------------------------


@dataclass(frozen=True)
class Measured:
    """One transfer: its wall time and the CPU seconds the store and the server spent on it."""

    seconds: float
    store_cpu: float
    server_cpu: float = 0.0


def measured(action: Callable[[], object], store: int, server: Sequence[int] = ()) -> Measured:
    """Run `action`; its time, and the CPU of the store's process tree and of `server`."""
    store_pids = process_tree(store)
    started_store, started_server = cpu_seconds(store_pids), cpu_seconds(list(server))
    started = time.monotonic()
    action()
    seconds = time.monotonic() - started
    return Measured(
        seconds, cpu_seconds(store_pids) - started_store, cpu_seconds(list(server)) - started_server
    )


@dataclass(frozen=True)
class Upload:
    """One upload through pywharf: when its body's last byte was sent (the answer came at
    `measured.seconds`), and the server's RSS growth meanwhile."""

    measured: Measured
    body_sent: float
    rss_growth_mib: float

    @property
    def after_body(self) -> float:
        """Seconds from the body's last byte to the answer: what was left to send the store."""
        return self.measured.seconds - self.body_sent


def upload_through(pyz: Path, bucket: S3Bucket, large: CorpusFile, name: str) -> Upload:
    """Upload `large` through a fresh server into `bucket`, with its peak RSS."""
    with servers(pyz, bucket, 1, name, max_file_bytes=2 * large.size) as (server,):
        pids = process_tree(server.process.pid)
        before = rss_bytes(pids)
        # Twine's field order: sha256_digest (and name) before the file, so it can go early.
        request = legacy_upload("/simple/", large, WRITE_AUTH)
        endpoint = Endpoint(server.live.host, server.live.port)
        results: list[TransferResult] = []
        with PeakRss(pids) as peak:
            cost = measured(
                lambda: results.append(upload_one_large(endpoint, request, large)),
                bucket.server.process.pid,
                pids,
            )
    (result,) = results
    assert result.status == 200, result
    return Upload(cost, result.sent_seconds, (peak.peak - before) / MiB)


def large_file(pyz: Path, store: SeaweedFS, large: CorpusFile, report: Report, runs: int) -> None:
    """Each transfer `runs` times, the direct and the pywharf ones interleaved, so a change in
    the machine's load reaches both; every pywharf upload goes to a bucket of its own (an
    identical re-upload stores nothing) through a fresh server, and every first proxy download
    through a fresh server."""
    bucket = new_bucket(store)
    weed = store.process.pid
    # One PUT, as a client with the file would send it; and in parts of the size the server
    # sends while a file arrives (EARLY_PART_BYTES), one at a time (`put_file`'s way).
    client = S3Client(bucket.location(), bucket.server.credentials, multipart_threshold=2**62)
    multipart = S3Client(
        bucket.location(), bucket.server.credentials, multipart_threshold=1,
        part_bytes=EARLY_PART_BYTES,
    )  # fmt: skip
    puts, multiparts, uploads = [], [], []
    try:
        for n in range(runs):
            key = f"direct/large-{n}.whl"
            put = functools.partial(client.put_file, key, large.path, sha256=large.sha256)
            puts.append(measured(put, weed))
            put = functools.partial(multipart.put_file, f"{key}.parts", large.path,
                                    sha256=large.sha256)  # fmt: skip
            multiparts.append(measured(put, weed))
            target = bucket if n == 0 else new_bucket(store)
            uploads.append(upload_through(pyz, target, large, f"large-{n}"))
        url = client.presign("direct/large-0.whl", 3600)
    finally:
        client.close()
        multipart.close()
    size = large.size
    path = f"/simple/{large.project}/{large.filename}"
    direct = functools.partial(get_presigned, url)
    gets, redirects, colds, warms = [], [], [], []
    with servers(pyz, bucket, 1, "redirect") as (server,):
        redirected = functools.partial(redirect_download, server, path)
        for _ in range(runs):
            gets.append(measured(direct, weed))
            redirects.append(measured(redirected, weed))
    for n in range(runs):
        gets.append(measured(direct, weed))
        cold, warm = proxy_downloads(pyz, bucket, path, size, f"proxy-{n}")
        colds.append(cold)
        warms.append(warm)
    report_large(report, size, puts, multiparts, uploads, gets, redirects, colds, warms)


def redirect_download(server: ServerProcess, path: str) -> TransferResult:
    return get_presigned(redirect_location(server, path))


def proxy_downloads(
    pyz: Path, bucket: S3Bucket, path: str, size: int, name: str
) -> tuple[Measured, Measured]:
    """The first download through a fresh proxy-mode server (a new connection to the store),
    then one more."""
    with servers(pyz, bucket, 1, name, download="proxy") as (server,):
        get = functools.partial(download, Endpoint(server.live.host, server.live.port), path,
                                READ_AUTH)  # fmt: skip
        pids = process_tree(server.process.pid)
        got: list[TransferResult] = []
        cold = measured(lambda: got.append(get()), bucket.server.process.pid, pids)
        assert got[0].status == 200 and got[0].size == size, got
        return cold, measured(get, bucket.server.process.pid, pids)


def median_seconds(runs: list[Measured]) -> float:
    return statistics.median(run.seconds for run in runs)


def report_large(
    report: Report,
    size: int,
    puts: list[Measured],
    multiparts: list[Measured],
    uploads: list[Upload],
    gets: list[Measured],
    redirects: list[Measured],
    colds: list[Measured],
    warms: list[Measured],
) -> None:
    mb = size / 1e6
    per_gb = 1e9 / size  # CPU seconds per GB moved

    def cpu(runs: list[Measured]) -> str:
        store = statistics.median(run.store_cpu for run in runs) * per_gb
        server = statistics.median(run.server_cpu for run in runs) * per_gb
        return f"store {store:.1f} s" + (f", pywharf {server:.1f} s" if server else "")

    report.figures["large"] = {
        "bytes": size,
        "direct_put": [asdict(m) for m in puts],
        "direct_multipart_put": [asdict(m) for m in multiparts],
        "server_upload": [asdict(u) for u in uploads],
        "direct_get": [asdict(m) for m in gets],
        "redirect": [asdict(m) for m in redirects],
        "proxy_cold": [asdict(m) for m in colds],
        "proxy_warm": [asdict(m) for m in warms],
    }
    put, upload = median_seconds(puts), median_seconds([u.measured for u in uploads])
    report.add(
        f"direct PUT of {mb:.0f} MB (one request; CPU per GB: {cpu(puts)})",
        f"{mb / put:.0f} MB/s",
    )
    report.add(
        f"direct multipart PUT, {EARLY_PART_BYTES // MiB} MiB parts one at a time "
        f"({cpu(multiparts)})",
        f"{mb / median_seconds(multiparts):.0f} MB/s",
    )
    ratios = ", ".join(f"{p.seconds / u.measured.seconds:.0%}" for p, u in zip(puts, uploads))
    report.add(
        f"upload through pywharf ({cpu([u.measured for u in uploads])}; each run ÷ the PUT "
        f"before it: {ratios})",
        f"{mb / upload:.0f} MB/s = {put / upload:.0%} of a direct PUT",
        "≥ 80 %",
        judged(put / upload, 0.8, True),
    )
    if size > MULTIPART_THRESHOLD:  # stored while it arrives: little is left after the body
        left = max(u.after_body for u in uploads)
        when = "; ".join(
            f"body sent at {u.body_sent:.1f} s, answered at {u.measured.seconds:.1f} s"
            for u in uploads
        )
        report.add(
            f"from the body's last byte to the answer, the longest ({when})",
            f"{left:.1f} s, a direct PUT takes {put:.1f} s",
            "< a direct PUT: sent while it arrives",
            judged(put - left, 0, True),
        )
    growth = max(u.rss_growth_mib for u in uploads)
    report.add(
        "server RSS growth during the upload (most of the runs)",
        f"{growth:.1f} MiB",
        "< 64 MiB",
        judged(growth, 64, False),
    )
    get = median_seconds(gets)
    report.add(f"direct GET ({cpu(gets)})", f"{mb / get:.0f} MB/s")
    ratio = get / median_seconds(redirects)
    report.add(
        "redirect download (302 + presigned GET)",
        f"{mb / median_seconds(redirects):.0f} MB/s = {ratio:.0%} of a direct GET",
        "the store's speed",
        judged(ratio, 0.9, True),
    )
    ratio = get / median_seconds(colds)
    report.add(
        f"proxy download, first through a fresh server (relayed from the store; {cpu(colds)})",
        f"{mb / median_seconds(colds):.0f} MB/s = {ratio:.0%} of a direct GET",
        "≥ 80 %",
        judged(ratio, 0.8, True),
    )
    report.add(
        f"proxy download, again (relayed again, on a pooled connection; {cpu(warms)})",
        f"{mb / median_seconds(warms):.0f} MB/s = {get / median_seconds(warms):.0%} of a "
        "direct GET",
    )


# --- 2. a bucket with many files: start-up, idle sync, read path -------------------------------


def fill_manifests(bucket: S3Bucket, projects: int, files_per_project: int) -> None:
    """Write the manifests of `projects` x `files_per_project` wheels straight into the bucket
    (start-up and pages read only manifests; the file objects are never touched by them)."""
    layout = Layout("")
    now = time.time()

    def one(index: int) -> None:
        project = normalize_project_name(f"proj-{index:05d}")
        records = {}
        for n in range(files_per_project):
            name = f"proj_{index:05d}-1.{n}-py3-none-any.whl"
            records[name] = FileRecord(
                name, project, f"1.{n}", f"{index:05d}{n:059d}", 1000, now, ">=3.8", None
            )
        client.put(
            layout.manifest(project),
            Manifest(project, records).to_bytes(),
            content_type="application/json",
        )

    client = S3Client(bucket.location(), bucket.server.credentials)
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(projects)))
    finally:
        client.close()


def start_up(
    pyz: Path, bucket: S3Bucket, empty: S3Bucket, projects: int, report: Report, runs: int
) -> None:
    def once(target: S3Bucket, expected: int) -> float:
        started = time.monotonic()
        with servers(pyz, target, 1, "start") as (server,):
            seconds = time.monotonic() - started
            status, _, body = server.live.request(
                "GET", "/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            assert status == 200 and len(json.loads(body)["projects"]) == expected
        return seconds

    fulls, floors = [], []
    for _ in range(runs):  # interleaved: a change in the machine's load reaches both
        fulls.append(once(bucket, projects))
        floors.append(once(empty, 0))
    full, floor = statistics.median(fulls), statistics.median(floors)
    report.figures["start_up"] = {"full_s": fulls, "empty_s": floors}
    report.add("start-up, empty bucket (Python and the pyz)", f"{floor:.2f} s")
    report.add(
        f"start-up, {report.figures['files']:,} files in {projects:,} projects",
        f"{full:.2f} s",
        "≤ 3 s",
        judged(full, 3.0, False),
    )


def idle_sync(pyz: Path, bucket: S3Bucket, report: Report, seconds: float) -> None:
    interval = 1.0
    with (
        s3_gate(bucket.endpoint_url) as gate,
        servers(
            pyz, bucket, 1, "idle", endpoint_url=gate.endpoint_url, sync_index_interval=interval
        ),
    ):
        time.sleep(2 * interval)  # past the start-up's reads
        before = len(gate.seen)
        time.sleep(seconds)
        seen = gate.seen[before:]
    per_interval = len(seen) / (seconds / interval)
    kinds = sorted({f"{s.method} {s.query.split('&')[0]}" for s in seen})
    report.figures["idle_sync"] = {
        "requests": len(seen),
        "seconds": seconds,
        "interval": interval,
        "kinds": kinds,
    }
    report.add(
        f"idle sync, {len(seen)} requests in {seconds:.0f} s at a {interval:.0f} s "
        f"interval ({', '.join(kinds)})",
        f"{per_interval:.2f} per interval",
        "≤ 1",
        judged(per_interval, 1.0, False),
    )


def read_path(
    pyz: Path, bucket: S3Bucket, projects: int, report: Report, args: argparse.Namespace
) -> None:
    """Project pages through nginx to 1, 2 and 3 instances, in interleaved rounds (the order
    reversed every other round, so a change in the machine's load hits each count alike).

    Each round runs every count saturated (wrk as fast as it goes), and 1 and 3 paced (each
    connection pauses after an answer, so both are offered the same rate). Saturated, the
    servers share 2 cores with wrk, nginx and SeaweedFS, so CPU per request also measures
    their contention; paced, every count does the same work. 3 instances are also paced at
    three times the rate, so each sees what the single one sees. One instance without nginx,
    paced at the rate and at a third of it, shows what a sparser load alone costs. The
    control: the same 1 and 3, paced, of servers that share nothing (each on a local root of
    its own holding the same number of projects and files), so whatever their ratio holds
    is the machine's cost of spreading a load over more processes, not the bucket's. The
    figures are medians over the rounds."""
    step = max(1, projects // 500)
    paths = [f"/simple/proj-{n:05d}/" for n in range(0, projects, step)]
    local_paths = [f"/simple/{project_name(n)}/" for n in range(0, projects, step)]
    headers = {"Authorization": READ_AUTH}
    seconds, connections, rate = args.wrk_seconds, args.connections, args.paced_rate
    runs: dict[str, list[dict[str, float]]] = {}

    def run(label: str, endpoint: Endpoint, measured: list[ServerProcess], nginx: int = 0,
            offered: float = 0.0, pages: list[str] = paths) -> None:  # fmt: skip
        pause_ms = round(connections * 1000 / offered) if offered else 0
        figures = wrk_cpu(endpoint, pages, headers, seconds, connections, measured, nginx,
                          pause_ms)  # fmt: skip
        runs.setdefault(label, []).append(figures)

    with (
        servers(pyz, bucket, 3, "read", sync_index_interval=10.0) as started,
        local_servers(pyz, 3, projects, args.files_per_project) as control,
    ):
        direct = Endpoint(started[0].live.host, started[0].live.port)
        run("1 direct", direct, started[:1])
        run(f"1 direct, paced at {rate:.0f} req/s", direct, started[:1], offered=rate)
        run(f"1 direct, paced at {rate / 3:.0f} req/s", direct, started[:1], offered=rate / 3)
        upstreams = [f"{s.live.host}:{s.live.port}" for s in started]
        local_upstreams = [f"{s.live.host}:{s.live.port}" for s in control]
        with running_nginx(WORK / "nginx", upstreams[:1], workers=2) as balancer:
            endpoint = Endpoint(balancer.live.host, balancer.live.port)
            nginx = balancer.server.process.pid
            for round_number in range(args.rounds):
                counts = (1, 2, 3) if round_number % 2 == 0 else (3, 2, 1)
                for count in counts:
                    balancer.reload(upstreams[:count])
                    time.sleep(1)  # old workers finish and exit
                    run_wrk(endpoint, paths, headers, 1, 2, connections, WORK)  # warm up
                    label, measured = f"{count} behind nginx", started[:count]
                    run(label, endpoint, measured, nginx)
                    if count != 2:
                        run(f"{label}, paced at {rate:.0f} req/s", endpoint, measured, nginx, rate)
                    if count == 3:
                        run(f"{label}, paced at {3 * rate:.0f} req/s", endpoint, measured, nginx,
                            3 * rate)  # fmt: skip
                for count in counts[::2]:  # 1 and 3
                    balancer.reload(local_upstreams[:count])
                    time.sleep(1)
                    run_wrk(endpoint, local_paths, headers, 1, 2, connections, WORK)
                    label = f"{count} sharing nothing behind nginx, paced at {rate:.0f} req/s"
                    run(label, endpoint, control[:count], nginx, rate, local_paths)
    report_read_path(report, runs, args)


@contextmanager
def local_servers(
    pyz: Path, count: int, projects: int, files_per_project: int
) -> Iterator[list[ServerProcess]]:
    """`count` servers, each on a `file_system` root of its own holding `projects` projects of
    `files_per_project` files (a wheel and an sdist per version), as the bucket does."""
    config = WORK / "local.toml"
    config.write_text(CONFIG.replace("sync_index_interval = 0.2", "sync_index_interval = 10.0"))
    started: list[ServerProcess] = []
    try:
        for n in range(count):
            root = WORK / f"local-{n}"
            generate_repository(root, "local", projects, files_per_project // 2, with_files=False)
            started.append(start_pyz(pyz, root, "--config", str(config), "--extra_index_url", ""))
        yield started
    finally:
        for server in started:
            stop(server)


def ratios_of(runs: dict[str, list[dict[str, float]]], one: str, three: str) -> list[float]:
    """Server CPU per request of `three` over `one`, round by round."""
    return [b["server_us"] / a["server_us"] for a, b in zip(runs[one], runs[three])]


def listed(ratios: list[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in ratios)


def report_read_path(
    report: Report, runs: dict[str, list[dict[str, float]]], args: argparse.Namespace
) -> None:
    rate = args.paced_rate
    results = {label: medians(figures) for label, figures in runs.items()}
    one, three = (
        f"1 behind nginx, paced at {rate:.0f} req/s",
        f"3 behind nginx, paced at {rate:.0f} req/s",
    )
    ratios = {
        "paced": ratios_of(runs, one, three),
        "control": ratios_of(
            runs,
            f"1 sharing nothing behind nginx, paced at {rate:.0f} req/s",
            f"3 sharing nothing behind nginx, paced at {rate:.0f} req/s",
        ),
        "saturated": ratios_of(runs, "1 behind nginx", "3 behind nginx"),
        "same_rate_each": ratios_of(runs, one, f"3 behind nginx, paced at {3 * rate:.0f} req/s"),
    }
    report.figures["read_path"] = {
        "rounds": args.rounds,
        "paced_rate": rate,
        "connections": args.connections,
        "medians": results,
        "runs": runs,
        "ratios": ratios,
    }
    for label, figures in results.items():
        report.add(
            f"project pages, {label}",
            f"{figures['per_second']:.0f} req/s, pywharf "
            f"{figures['server_us']:.0f} µs CPU/req, nginx {figures['nginx_us']:.0f} µs",
        )
    ratio = statistics.median(ratios["paced"])
    report.add(
        f"server CPU per page, 3 instances ÷ 1, paced at {rate:.0f} req/s (median of "
        f"{len(ratios['paced'])} rounds: {listed(ratios['paced'])})",
        f"{ratio:.2f}x",
        "≤ 1.2x",
        judged(ratio, 1.2, False),
    )
    control = statistics.median(ratios["control"])
    report.add(
        f"the same, servers that share nothing (each on its own local root; rounds: "
        f"{listed(ratios['control'])})",
        f"{control:.2f}x: the bucket's own share {ratio / control:.2f}x",
        "no coordination cost on reads: the bucket's share ≤ 1.1x",
        judged(ratio / control, 1.1, False),
    )
    report.add(
        f"server CPU per page, 3 instances ÷ 1, saturated (rounds: {listed(ratios['saturated'])})",
        f"{statistics.median(ratios['saturated']):.2f}x",
    )
    report.add(
        f"server CPU per page, 3 instances at {3 * rate:.0f} req/s ÷ 1 at {rate:.0f} (each "
        f"offered the same rate; rounds: {listed(ratios['same_rate_each'])})",
        f"{statistics.median(ratios['same_rate_each']):.2f}x",
    )
    saturated = results["1 behind nginx"]
    for count in (2, 3):
        throughput = results[f"{count} behind nginx"]["per_second"] / saturated["per_second"]
        report.add(f"throughput, {count} instances ÷ 1 (saturated)", f"{throughput:.2f}x")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def wrk_cpu(
    endpoint: Endpoint,
    paths: list[str],
    headers: dict[str, str],
    seconds: float,
    connections: int,
    measured: list[ServerProcess],
    nginx: int = 0,
    pause_ms: int = 0,
) -> dict[str, float]:
    pids = server_pids(measured)
    nginx_pids = process_tree(nginx) if nginx else []
    cpu, nginx_cpu = cpu_seconds(pids), cpu_seconds(nginx_pids)
    result = run_wrk(endpoint, paths, headers, seconds, 2, connections, WORK, pause_ms)
    requests = max(result.requests, 1)
    return {
        "requests": result.requests,
        "per_second": result.per_second,
        "errors": result.error_count,
        "p99_ms": result.p99_ms,
        "server_us": (cpu_seconds(pids) - cpu) / requests * 1e6,
        "nginx_us": (cpu_seconds(nginx_pids) - nginx_cpu) / requests * 1e6,
    }


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--large-mib", type=int)
    parser.add_argument("--projects", type=int)
    parser.add_argument("--files-per-project", type=int, default=100)
    parser.add_argument("--wrk-seconds", type=float)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, help="read-path rounds (3 quick, 5 full)")
    parser.add_argument("--paced-rate", type=float, default=1000.0, help="req/s offered, paced")
    parser.add_argument("--pyz", type=Path, default=PYZ)
    parser.add_argument(
        "--only", choices=("large", "bucket"),
        help="only the large file's transfers, or only the many files' start-up, sync and pages",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.large_mib = args.large_mib or (64 if args.quick else 1024)
    args.projects = args.projects or (100 if args.quick else 1000)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
    args.rounds = args.rounds or (3 if args.quick else 5)
    return args


def machine() -> dict[str, Any]:
    return {
        "cores": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def write(report: Report, args: argparse.Namespace, before: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = "-".join([time.strftime("%Y-%m-%d-%H%M"), "s3", *(["quick"] if args.quick else []),
                     *([args.only] if args.only else [])])  # fmt: skip
    after = os.getloadavg()
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python -m benchmarks.s3", *sys.argv[1:]]),
        "machine": before,
        "load_average_after": after,
        "figures": report.figures,
        "rows": report.rows,
        "notes": report.notes,
    }
    (RESULTS / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"# S3 backend against direct S3 access, {document['date']}",
        "",
        f"`{document['command']}`; {before['cores']} cores, Python {before['python']}, "
        f"load average {before['load_average'][0]:.2f} before, {after[0]:.2f} after "
        "(the machine is shared).",
        "",
        "| figure | measured | target | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in report.rows]
    lines += ["", *[f"- {note}" for note in report.notes]]
    path = RESULTS / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for packages, needed in (
        (("nginx",), Path("/usr/sbin/nginx")),
        (("wrk",), Path("/usr/bin/wrk")),
    ):
        if (reason := apt_install(packages, (needed,))) is not None:
            raise SystemExit(reason)
    before = machine()
    report = Report()
    report.figures["files"] = args.projects * args.files_per_project
    WORK.mkdir(parents=True, exist_ok=True)
    large = ensure_large_file(HERE / "work", args.large_mib * MiB)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, WORK, ignore_errors=True)
        store = stack.enter_context(running_seaweedfs(WORK / "weed"))
        if args.only != "bucket":
            large_file(args.pyz, store, large, report, args.runs)
        if args.only == "large":
            return write_report(report, args, before)
        bucket = new_bucket(store)
        started = time.monotonic()
        fill_manifests(bucket, args.projects, args.files_per_project)
        report.notes.append(
            f"{args.projects:,} manifests of {args.files_per_project} files "
            f"written in {time.monotonic() - started:.1f} s"
        )
        start_up(args.pyz, bucket, new_bucket(store), args.projects, report, args.runs)
        idle_sync(args.pyz, bucket, report, 10.0 if args.quick else 30.0)
        read_path(args.pyz, bucket, args.projects, report, args)
    report.notes.append(
        "wrk, nginx, SeaweedFS and the servers share the same 2 cores, so "
        "more instances cannot add throughput here: the ratios show the cost "
        "of running several, not their scaling."
    )
    return write_report(report, args, before)


def write_report(report: Report, args: argparse.Namespace, before: dict[str, Any]) -> int:
    print(f"written: {write(report, args, before)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
