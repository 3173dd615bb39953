#!/usr/bin/env python3
"""Benchmark pywharf against pypiserver and a static nginx copy of the same repository.

Usage: python3 benchmarks/run.py [--quick] [--projects N] [--servers pywharf nginx ...]

Prints one table and writes it as JSON and Markdown to benchmarks/results/. See the README.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import CorpusSpec
from benchmarks.corpus import ensure_corpus
from benchmarks.corpus import ensure_large_file
from benchmarks.peers import ALL_SERVERS
from benchmarks.peers import PYPISERVER_REQUIREMENTS
from benchmarks.peers import PypiServer
from benchmarks.peers import Pywharf
from benchmarks.peers import Server
from benchmarks.peers import Unavailable
from benchmarks.peers import ensure_debian_tools
from benchmarks.report import add_growth_ratio
from benchmarks.report import build_rows
from benchmarks.report import render_json
from benchmarks.report import render_markdown
from benchmarks.report import render_text
from benchmarks.suite import Measurement
from benchmarks.suite import Settings
from benchmarks.suite import measure

HERE = Path(__file__).resolve().parent
MIB = 1 << 20

# Defaults for a full run and for --quick; any flag given explicitly wins.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "projects": 2000,
        "versions": 5,
        "large_mib": 1024,
        "wrk_seconds": 15.0,
        "growth": [200, 2000, 20000],
        "upload_sample": 400,
        "upload_seconds": 60.0,
        "fill_seconds": 900.0,
    },
    "quick": {
        "projects": 200,
        "versions": 2,
        "large_mib": 64,
        "wrk_seconds": 5.0,
        "growth": [200, 2000],
        "upload_sample": 100,
        "upload_seconds": 15.0,
        "fill_seconds": 120.0,
    },
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    add = parser.add_argument
    add("--quick", action="store_true", help="small corpus, 64 MiB file, 5 s wrk runs")
    add("--projects", type=int, help="projects in the main corpus (2000; quick 200)")
    add("--versions", type=int, help="versions per project, each a wheel + sdist (5; quick 2)")
    add("--large-mib", type=int, help="size of the large file in MiB (1024; quick 64)")
    add("--wrk-seconds", type=float, help="duration of each wrk run (15; quick 5)")
    add(
        "--growth",
        type=int,
        nargs="+",
        help="project counts for the page-cost growth test (200 2000 20000; quick 200 2000)",
    )
    add("--growth-versions", type=int, default=1, help="versions per project there (1)")
    add("--upload-sample", type=int, help="uploads per measured phase (400; quick 100)")
    add("--upload-seconds", type=float, help="time limit per measured upload phase (60; 15)")
    add("--fill-seconds", type=float, help="time limit to fill a repository through the API")
    add("--clients", type=int, default=8, help="concurrent upload clients (8)")
    add("--connections", type=int, default=64, help="wrk connections (64)")
    add("--threads", type=int, default=2, help="wrk threads (2)")
    add("--servers", nargs="+", choices=sorted(ALL_SERVERS), default=list(ALL_SERVERS))
    add(
        "--pypiserver-hash",
        default="off",
        help="pypiserver's --hash-algo: off (its fastest, "
        "the default) or e.g. sha256 (hashes in links, as pywharf and nginx serve them)",
    )
    add(
        "--pyz",
        type=Path,
        default=HERE.parent / "dist" / "pywharf.pyz",
        help="the pywharf zipapp to measure (dist/pywharf.pyz)",
    )
    add(
        "--from-source",
        action="store_true",
        help="measure the working tree (python -m pywharf) instead of the zipapp",
    )
    add("--work", type=Path, default=HERE / "work", help="corpus, venvs, roots, logs")
    add("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    for key, value in PROFILES["quick" if args.quick else "full"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.growth = sorted(args.growth)
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` stops the servers it started."""
    raise KeyboardInterrupt


def _tool_version(argv: list[str]) -> str:
    """The first line a command prints (`wrk --version` exits 1), or "unknown"."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return ((done.stdout + done.stderr).strip().splitlines() or [""])[0]


def build_info(args: argparse.Namespace) -> dict[str, str]:
    """Which pywharf was measured: the commit, whether the tree was dirty, the pyz's hash."""

    def git(*argv: str) -> str:
        return _tool_version(["git", "-C", str(HERE.parent), *argv])

    build = {
        "commit": git("rev-parse", "--short", "HEAD"),
        "tree": "dirty"
        if git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")
        else "clean",
    }
    if args.from_source:
        build["pywharf"] = "working tree"
    elif args.pyz.is_file():
        digest = hashlib.sha256(args.pyz.read_bytes()).hexdigest()[:12]
        stamp = time.strftime("%Y-%m-%dT%H:%M", time.localtime(args.pyz.stat().st_mtime))
        build["pywharf"] = f"{args.pyz.name} sha256 {digest}, built {stamp}"
    return build


def context(
    args: argparse.Namespace, settings: Settings, measurements: dict[str, Measurement]
) -> dict[str, Any]:
    """What a reader of the JSON needs to compare two runs."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(["python3", "benchmarks/run.py", *sys.argv[1:]]),
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "nginx": _tool_version(["nginx", "-v"]).removeprefix("nginx version: "),
            "wrk": _tool_version(["wrk", "--version"]).split(" Copyright")[0],
        },
        "build": build_info(args),
        "pypiserver": {"requirements": PYPISERVER_REQUIREMENTS, "hash_algo": args.pypiserver_hash},
        "corpus": {
            "projects": args.projects,
            "versions": args.versions,
            "files": args.projects * args.versions * 2,
            "large_mib": args.large_mib,
            "growth": args.growth,
            "growth_versions": args.growth_versions,
        },
        "settings": asdict(settings),
        "servers": {
            name: {"figures": m.figures, "notes": m.notes} for name, m in measurements.items()
        },
    }


def make_server(name: str, args: argparse.Namespace) -> Server:
    if name == "pywharf":
        return Pywharf(None if args.from_source else args.pyz)
    if name == "pypiserver":
        return PypiServer(args.pypiserver_hash)
    return ALL_SERVERS[name]()


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        args.wrk_seconds,
        args.threads,
        args.connections,
        args.clients,
        args.upload_sample,
        args.upload_seconds,
        args.fill_seconds,
    )


def run(args: argparse.Namespace) -> dict[str, Measurement]:
    work = args.work.resolve()
    settings = settings_from(args)
    ensure_debian_tools()  # wrk drives every read test
    corpus = ensure_corpus(work, CorpusSpec(args.projects, args.versions))
    large = ensure_large_file(work, args.large_mib * MIB)
    growth_corpus = ensure_corpus(work, CorpusSpec(args.growth[-1], args.growth_versions))
    measurements = {}
    for name in args.servers:
        print(f"== {name}")
        started, load_before = time.monotonic(), os.getloadavg()[0]
        result = measure(
            make_server(name, args), work, settings, corpus, large, growth_corpus, args.growth
        )
        add_growth_ratio(result.figures, args.growth)
        # The machine is shared: how busy it was says how far to trust the rates.
        result.figures["load_1m_start"], result.figures["load_1m_end"] = (
            load_before,
            os.getloadavg()[0],
        )
        measurements[name] = result
        print(f"== {name}: {time.monotonic() - started:.0f} s")
    return measurements


def write_results(args: argparse.Namespace, measurements: dict[str, Measurement]) -> None:
    servers = list(measurements)
    figures = {name: m.figures for name, m in measurements.items()}
    rows = build_rows(figures, servers, args.growth)
    print("\n" + render_text(rows, servers))
    for name, m in measurements.items():
        for note in m.notes:
            print(f"note [{name}]: {note}")
    ctx = context(args, settings_from(args), measurements)
    stem = time.strftime("%Y-%m-%d-%H%M") + ("-quick" if args.quick else "")
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{stem}.json").write_text(render_json(rows, ctx))
    (args.results / f"{stem}.md").write_text(markdown_report(ctx, rows, servers, measurements))
    print(f"\nwrote {args.results / stem}.json and .md")


def markdown_report(
    ctx: dict[str, Any], rows: list[Any], servers: list[str], measurements: dict[str, Measurement]
) -> str:
    corpus, machine, build = ctx["corpus"], ctx["machine"], ctx["build"]
    lines = [
        f"# Benchmark, {ctx['date']}",
        "",
        f"`{ctx['command']}`: {corpus['files']:,} files ({corpus['projects']:,} projects "
        f"x {corpus['versions']} versions x wheel + sdist), a {corpus['large_mib']} MiB "
        f"file; {machine['cores']} cores, Linux {machine['kernel']}, Python "
        f"{machine['python']}, {machine['nginx']}, {machine['wrk']}.",
        "",
        f"pywharf: {build.get('pywharf', '-')}, commit {build['commit']} "
        f"({build['tree']} tree); pypiserver --hash-algo "
        f"{ctx['pypiserver']['hash_algo']}.",
        "",
        "Ratios are pywharf's figure over the peer's. Server CPU per request is the "
        "figure to compare on a noisy machine.",
        "",
        "Load average (1 min) while each server was measured, start -> end: "
        + ", ".join(
            f"{name} {m.figures['load_1m_start']:.1f} -> {m.figures['load_1m_end']:.1f}"
            for name, m in measurements.items()
            if "load_1m_start" in m.figures
        )
        + ".",
        "",
        render_markdown(rows, servers),
    ]
    notes = [f"- {name}: {n}" for name, m in measurements.items() for n in m.notes]
    return "\n".join(lines + (["## Notes", "", *notes, ""] if notes else []))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows up through a pipe, too
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        measurements = run(args)
    except Unavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    write_results(args, measurements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
