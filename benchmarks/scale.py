#!/usr/bin/env python3
"""pywharf at a million files (opt-in, not part of run.py): start-up, memory, pages, uploads and
`update_index` on a repository written directly (`generated.py`), beside the same figures on a
20,000-file one made the same way.

Usage: python3 benchmarks/scale.py [--projects 100000] [--versions 5] [--base-projects 2000]

The generated repositories stay in `benchmarks/work/scale/` (a million files take minutes to
write) and are reused; uploads go to other project names, and their folders are removed before
`update_index`, which puts the journal back as generated.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import CorpusSpec
from benchmarks.corpus import ensure_corpus
from benchmarks.generated import generate_repository
from benchmarks.load import run_wrk
from benchmarks.load import upload_many
from benchmarks.peers import REPOSITORY
from benchmarks.peers import Pywharf
from benchmarks.peers import RunningServer
from benchmarks.peers import ensure_debian_tools
from benchmarks.peers import running
from benchmarks.proc import cpu_seconds
from benchmarks.proc import rss_bytes

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


class ScaleServer(Pywharf):
    """pywharf on a ROOT whose configuration file sits beside it (`<root>.toml`)."""

    def prepare(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        root.with_name(root.name + ".toml").write_text(self.config)


def _cpu(live: RunningServer) -> float:
    return cpu_seconds(live.pids())


def measure_repository(
    server: ScaleServer, root: Path, work: Path, pages: list[str], uploads: list[Any],
    seconds: float, every_page: list[str] | None = None,
) -> dict[str, float]:  # fmt: skip
    figures: dict[str, float] = {}
    with running(server, root, work) as live:
        figures["start_s"] = live.ready_seconds
        figures["start_cpu_s"] = _cpu(live)  # hardly moved by the machine's load, unlike start_s
        time.sleep(1.0)
        figures["idle_rss_mib"] = rss_bytes(live.pids()) / MIB
        auth = {"Authorization": server.read_auth or ""}
        before = _cpu(live)
        result = run_wrk(live.endpoint, pages, auth, seconds, 2, 64, work)
        figures["page_cpu_us"] = (_cpu(live) - before) / max(1, result.requests) * 1e6
        figures["page_p99_ms"] = result.p99_ms
        figures["rss_after_pages_mib"] = rss_bytes(live.pids()) / MIB
        if every_page and len(every_page) > len(pages):
            before = _cpu(live)
            result = run_wrk(live.endpoint, every_page, auth, seconds, 2, 64, work)
            figures["every_page_cpu_us"] = (_cpu(live) - before) / max(1, result.requests) * 1e6
        if uploads:
            before = _cpu(live)
            stats = upload_many(live.endpoint, uploads, server.upload_request, 8, 120.0)
            figures["upload_cpu_ms"] = (_cpu(live) - before) / max(1, stats.ok) * 1000
            figures["uploads_ok"] = stats.ok
    return figures


def update_index(server: ScaleServer, root: Path, work: Path) -> float:
    argv = [*server.launcher, "update_index", "file_system", REPOSITORY, "--root", str(root)]
    started = time.monotonic()
    subprocess.run(argv, env=server.env(work), check=True, capture_output=True)
    return time.monotonic() - started


def ensure_generated(work: Path, projects: int, versions: int) -> tuple[Path, list[str]]:
    root = work / "scale" / f"p{projects}-v{versions}"
    stamp = root / "generated.json"
    if not stamp.is_file():
        shutil.rmtree(root, ignore_errors=True)
        print(f"writing {projects * versions * 2:,} files into {root}")
        generated = generate_repository(root, REPOSITORY, projects, versions)
        stamp.write_text(json.dumps({"files": generated.files}))
    ScaleServer().prepare(root)
    pages = [f"/simple/{p}/" for p in sorted(d.name for d in (root / "cache" / REPOSITORY /
                                                              "storage").iterdir()
                                             if d.name.startswith("scale-project-"))]  # fmt: skip
    return root, pages


def remove_uploaded(root: Path) -> None:
    for folder in (root / "cache" / REPOSITORY / "storage").glob("bench-project-*"):
        shutil.rmtree(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--base-projects", type=int, default=2000)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--wrk-seconds", type=float, default=10.0)
    parser.add_argument("--pyz", type=Path, default=HERE.parent / "dist" / "pywharf.pyz")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = args.work.resolve()
    ensure_debian_tools()  # wrk reads the pages
    server = ScaleServer(args.pyz)
    uploads = list(ensure_corpus(work, CorpusSpec(args.uploads // 2, 1)).files)
    figures: dict[str, dict[str, float]] = {}
    empty = work / "scale" / "empty"
    shutil.rmtree(empty, ignore_errors=True)
    server.prepare(empty)
    figures["empty"] = measure_repository(server, empty, work, ["/simple/"], uploads, 1.0)
    for projects in (args.base_projects, args.projects):
        root, pages = ensure_generated(work, projects, args.versions)
        # The same number of distinct pages in both runs: the rendered-page cache then holds
        # as much of each, and the ratio is the index's size, not cached against first renders
        # (all 100,000 pages in 10 s are nearly all first renders).
        sampled = random.Random(0).sample(pages, min(len(pages), args.base_projects))
        remove_uploaded(root)
        update_index(server, root, work)  # a previous run's uploads out of the journal
        label = f"{projects * args.versions * 2}"
        print(f"measuring {label} files")
        figures[label] = measure_repository(
            server, root, work, sampled, uploads, args.wrk_seconds, every_page=pages
        )
        remove_uploaded(root)
        figures[label]["update_index_s"] = update_index(server, root, work)
        print(f"  {figures[label]}")
    report(args, figures)
    return 0


def report(args: argparse.Namespace, figures: dict[str, dict[str, float]]) -> None:
    base = figures[f"{args.base_projects * args.versions * 2}"]
    big = figures[f"{args.projects * args.versions * 2}"]
    load = Path("/proc/loadavg").read_text().split()[:3]
    rows = [
        ("start-up to the first 200 (s)", base["start_s"], big["start_s"], "<= 3 s"),
        ("start-up CPU (s)", base.get("start_cpu_s", 0), big.get("start_cpu_s", 0), ""),
        ("idle RSS (MiB)", base["idle_rss_mib"], big["idle_rss_mib"], "<= 400 MiB"),
        ("RSS after the page test (MiB)", base["rss_after_pages_mib"],
         big["rss_after_pages_mib"], ""),
        ("project page CPU (us/req)", base["page_cpu_us"], big["page_cpu_us"],
         "<= 1.2x the 20,000-file figure"),
        ("project page p99 (ms)", base["page_p99_ms"], big["page_p99_ms"], ""),
        ("project page CPU, every page (us/req)", base["page_cpu_us"],
         big.get("every_page_cpu_us", 0), "(mostly first renders)"),
        ("upload CPU (ms/upload)", base.get("upload_cpu_ms", 0), big.get("upload_cpu_ms", 0),
         f"<= 1.2x empty ({figures['empty'].get('upload_cpu_ms', 0):.2f} ms)"),
        ("update_index (s)", base["update_index_s"], big["update_index_s"], "<= 60 s"),
    ]  # fmt: skip
    lines = [
        f"# Scale run, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"`python3 benchmarks/scale.py {' '.join(sys.argv[1:])}`; load average before "
        f"the report {' '.join(load)} (2 cores, shared).",
        "",
        f"| figure | {args.base_projects * args.versions * 2:,} files | "
        f"{args.projects * args.versions * 2:,} files | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for name, small, large, target in rows:
        ratio = f"{large / small:.2f}x" if small else "-"
        lines.append(f"| {name} | {small:,.3g} | {large:,.3g} | {ratio} | {target} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / time.strftime("%Y-%m-%d-%H%M-scale")
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"figures": figures, "load": load}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
