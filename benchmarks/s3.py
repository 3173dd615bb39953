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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from balancer import running_nginx  # noqa: E402
from debian import apt_install  # noqa: E402
from s3_support import S3Bucket  # noqa: E402
from s3_support import new_bucket  # noqa: E402
from s3_support import running_seaweedfs  # noqa: E402
from s3_support import s3_admin_secret  # noqa: E402
from s3_support import s3_config  # noqa: E402
from s3_support import s3_gate  # noqa: E402
from s3_support import start_s3_pyz  # noqa: E402
from support import PYZ  # noqa: E402
from support import READ  # noqa: E402
from support import WRITE  # noqa: E402
from support import ServerProcess  # noqa: E402
from support import stop  # noqa: E402

from benchmarks.corpus import CorpusFile  # noqa: E402
from benchmarks.corpus import ensure_large_file  # noqa: E402
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


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


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


def large_file(pyz: Path, bucket: S3Bucket, large: CorpusFile, report: Report, runs: int) -> None:
    # One PUT, as a client with the file would send it; and in parts, as the server does.
    client = S3Client(bucket.location(), bucket.server.credentials, multipart_threshold=2**62)
    multipart = S3Client(bucket.location(), bucket.server.credentials)
    try:
        direct_put = median_of(
            runs,
            lambda: timed(
                lambda: client.put_file("direct/large.whl", large.path, sha256=large.sha256)
            ),
        )
        direct_multipart = median_of(
            runs,
            lambda: timed(
                lambda: multipart.put_file(
                    "direct/large-multipart.whl", large.path, sha256=large.sha256
                )
            ),
        )
        url = client.presign("direct/large.whl", 3600)
        direct_gets = [get_presigned(url).seconds for _ in range(runs)]
    finally:
        client.close()
        multipart.close()
    size = large.size
    mb = size / 1e6
    with servers(pyz, bucket, 1, "large", max_file_bytes=2 * size) as (server,):
        pids = process_tree(server.process.pid)
        before = rss_bytes(pids)
        request = legacy_upload("/simple/", large, WRITE_AUTH)
        with PeakRss(pids) as peak:
            result = upload_one_large(Endpoint(server.live.host, server.live.port), request, large)
        assert result.status == 200, result
        upload_seconds = result.seconds
        growth = (peak.peak - before) / MiB
        path = f"/simple/{large.project}/{large.filename}"

        def redirected() -> float:
            started = time.monotonic()
            fetched = get_presigned(redirect_location(server, path))
            assert fetched.size == size, fetched
            return time.monotonic() - started

        redirect = median_of(runs, redirected)
    with servers(pyz, bucket, 1, "proxy", download="proxy") as (server,):
        endpoint = Endpoint(server.live.host, server.live.port)
        cold = download(endpoint, path, READ_AUTH)
        assert cold.status == 200 and cold.size == size, cold
        warm = median_of(runs, lambda: download(endpoint, path, READ_AUTH).seconds)
    direct_gets += [get_presigned(url).seconds for _ in range(runs)]  # before and after: noise
    direct_get = statistics.median(direct_gets)
    report.figures["large"] = {
        "bytes": size,
        "direct_put_s": direct_put,
        "direct_multipart_put_s": direct_multipart,
        "server_upload_s": upload_seconds,
        "server_rss_growth_mib": growth,
        "direct_get_s": direct_get,
        "redirect_s": redirect,
        "proxy_cold_s": cold.seconds,
        "proxy_warm_s": warm,
    }
    ratio = direct_put / upload_seconds
    report.add(f"direct PUT of {mb:.0f} MB (one request)", f"{mb / direct_put:.0f} MB/s")
    report.add(
        "direct multipart PUT (64 MiB parts, as the server)", f"{mb / direct_multipart:.0f} MB/s"
    )
    report.add(
        "upload through pywharf",
        f"{mb / upload_seconds:.0f} MB/s = {ratio:.0%} of a direct PUT",
        "≥ 80 %",
        judged(ratio, 0.8, True),
    )
    report.add(
        "server RSS growth during the upload",
        f"{growth:.1f} MiB",
        "< 64 MiB",
        judged(growth, 64, False),
    )
    report.add("direct GET", f"{mb / direct_get:.0f} MB/s")
    ratio = direct_get / redirect
    report.add(
        "redirect download (302 + presigned GET)",
        f"{mb / redirect:.0f} MB/s = {ratio:.0%} of a direct GET",
        "the store's speed",
        judged(ratio, 0.9, True),
    )
    ratio = direct_get / cold.seconds
    report.add(
        "proxy download, first (streamed from the store)",
        f"{mb / cold.seconds:.0f} MB/s = {ratio:.0%} of a direct GET",
        "≥ 80 %",
        judged(ratio, 0.8, True),
    )
    report.add(
        "proxy download, later (the verified local copy)",
        f"{mb / warm:.0f} MB/s = {direct_get / warm:.0%} of a direct GET",
    )


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


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

    full = median_of(runs, lambda: once(bucket, projects))
    floor = median_of(runs, lambda: once(empty, 0))
    report.figures["start_up"] = {"full_s": full, "empty_s": floor}
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
    pyz: Path, bucket: S3Bucket, projects: int, report: Report, seconds: float, connections: int
) -> None:
    paths = [f"/simple/proj-{n:05d}/" for n in range(0, projects, max(1, projects // 500))]
    headers = {"Authorization": READ_AUTH}
    results: dict[str, dict[str, float]] = {}
    with servers(pyz, bucket, 3, "read", sync_index_interval=10.0) as started:
        direct = Endpoint(started[0].live.host, started[0].live.port)
        results["1 direct"] = wrk_cpu(direct, paths, headers, seconds, connections, started[:1])
        upstreams = [f"{s.live.host}:{s.live.port}" for s in started]
        with running_nginx(WORK / "nginx", upstreams[:1], workers=2) as balancer:
            endpoint = Endpoint(balancer.live.host, balancer.live.port)
            for count in (1, 2, 3):
                balancer.reload(upstreams[:count])
                time.sleep(1)  # old workers finish and exit
                run_wrk(endpoint, paths, headers, 1, 2, connections, WORK)  # warm up
                results[f"{count} behind nginx"] = wrk_cpu(
                    endpoint,
                    paths,
                    headers,
                    seconds,
                    connections,
                    started[:count],
                    nginx=balancer.server.process.pid,
                )
    report.figures["read_path"] = results
    for label, figures in results.items():
        report.add(
            f"project pages, {label}",
            f"{figures['per_second']:.0f} req/s, pywharf "
            f"{figures['server_us']:.0f} µs CPU/req, nginx {figures['nginx_us']:.0f} µs",
        )
    one, three = results["1 behind nginx"], results["3 behind nginx"]
    ratio = three["server_us"] / one["server_us"]
    report.add(
        "server CPU per page, 3 instances ÷ 1", f"{ratio:.2f}x", "≤ 1.2x", judged(ratio, 1.2, False)
    )
    for count in (2, 3):
        throughput = results[f"{count} behind nginx"]["per_second"] / one["per_second"]
        report.add(f"throughput, {count} instances ÷ 1", f"{throughput:.2f}x")


def wrk_cpu(
    endpoint: Endpoint,
    paths: list[str],
    headers: dict[str, str],
    seconds: float,
    connections: int,
    measured: list[ServerProcess],
    nginx: int = 0,
) -> dict[str, float]:
    pids = server_pids(measured)
    nginx_pids = process_tree(nginx) if nginx else []
    cpu, nginx_cpu = cpu_seconds(pids), cpu_seconds(nginx_pids)
    result = run_wrk(endpoint, paths, headers, seconds, 2, connections, WORK)
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
    parser.add_argument("--pyz", type=Path, default=PYZ)
    args = parser.parse_args(argv)
    args.large_mib = args.large_mib or (64 if args.quick else 1024)
    args.projects = args.projects or (100 if args.quick else 1000)
    args.wrk_seconds = args.wrk_seconds or (3 if args.quick else 10)
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
    stem = time.strftime("%Y-%m-%d-%H%M") + "-s3" + ("-quick" if args.quick else "")
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
        large_file(args.pyz, new_bucket(store), large, report, args.runs)
        bucket = new_bucket(store)
        started = time.monotonic()
        fill_manifests(bucket, args.projects, args.files_per_project)
        report.notes.append(
            f"{args.projects:,} manifests of {args.files_per_project} files "
            f"written in {time.monotonic() - started:.1f} s"
        )
        start_up(args.pyz, bucket, new_bucket(store), args.projects, report, args.runs)
        idle_sync(args.pyz, bucket, report, 10.0 if args.quick else 30.0)
        read_path(args.pyz, bucket, args.projects, report, args.wrk_seconds, args.connections)
    report.notes.append(
        "wrk, nginx, SeaweedFS and the servers share the same 2 cores, so "
        "more instances cannot add throughput here: the ratios show the cost "
        "of running several, not their scaling."
    )
    print(f"written: {write(report, args, before)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
