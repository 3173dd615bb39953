#!/usr/bin/env python3
"""run.py's large-file rows, measured in turns: rounds of one upload and three downloads per
server, each on a fresh, empty repository, the servers taking turns (A B A B ...).

Why apart from run.py: a 1 GiB transfer takes 1 to 2 s here, and a burst on this shared
2-core machine moves it by a third. run.py measures it once per server, minutes apart: the
same pywharf build measured 0.60x to 1.17x nginx's upload rate on different days. Taking
turns puts both servers under the same drift; the ratio is the median of each round's ratio.

Usage: python3 benchmarks/large.py [--rounds 7] [--large-mib 1024] [--servers pywharf nginx]

Writes benchmarks/results/YYYY-MM-DD-HHMM-large.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import CorpusFile
from benchmarks.corpus import ensure_large_file
from benchmarks.peers import ALL_SERVERS
from benchmarks.peers import running
from benchmarks.run import build_info
from benchmarks.run import make_server
from benchmarks.suite import IDLE_SETTLE_SECONDS
from benchmarks.suite import Measurement
from benchmarks.suite import large_transfers

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
PEER = "nginx"
# figure key, label, whether lower is better, the target for pywharf
ROWS = (
    ("large_upload_mb_s", "upload (MB/s)", False, ">= 1.0x nginx"),
    ("large_download_mb_s", "download, median of 3 (MB/s)", False, ">= 1.0x nginx"),
    ("large_upload_cpu_s", "upload: server CPU (s)", True, ""),
    ("large_upload_peak_rss_mib", "upload: server peak RSS (MiB)", True, "< 40 MiB"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--rounds", type=int, default=7, help="turns per server (7)")
    add("--large-mib", type=int, default=1024, help="size of the file in MiB (1024)")
    add("--servers", nargs="+", choices=sorted(ALL_SERVERS), default=["pywharf", PEER])
    add("--pyz", type=Path, default=HERE.parent / "dist" / "pywharf.pyz")
    add("--from-source", action="store_true", help="measure the working tree, not the pyz")
    add("--pypiserver-hash", default="off", help="pypiserver's --hash-algo")
    add("--work", type=Path, default=HERE / "work")
    add("--results", type=Path, default=HERE / "results")
    return parser.parse_args(argv)


def one_round(args: argparse.Namespace, name: str, large: CorpusFile) -> Measurement:
    server = make_server(name, args)
    server.install(args.work)
    result = Measurement(name)
    root = args.work / "roots" / f"{name}-large"
    shutil.rmtree(root, ignore_errors=True)
    server.prepare(root)
    try:
        with running(server, root, args.work) as live:
            time.sleep(IDLE_SETTLE_SECONDS)
            large_transfers(server, live, large, result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def paired_ratio(rounds: dict[str, list[Measurement]], name: str, key: str) -> float | None:
    """The median over rounds of the server's figure over the peer's in the same round."""
    ratios = [
        ours.figures[key] / peer.figures[key]
        for ours, peer in zip(rounds[name], rounds.get(PEER, []))
        if ours.figures.get(key) and peer.figures.get(key)
    ]
    return statistics.median(ratios) if ratios else None


def render(
    args: argparse.Namespace, rounds: dict[str, list[Measurement]], load: dict[str, Any]
) -> str:
    names = list(rounds)
    lines = [
        f"# Large file in turns, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        "",
        f"`python3 benchmarks/large.py {' '.join(sys.argv[1:])}`: {args.rounds} rounds of one "
        f"{args.large_mib} MiB upload and three downloads per server, on an empty repository, "
        f"the servers in turns; load average before {load['before']}, after {load['after']}.",
        "",
        "Cells: median (lowest to highest). Ratio: the median of each round's ratio to "
        f"{PEER} in the same round.",
        "",
        "| figure | "
        + " | ".join(names)
        + " | "
        + " | ".join(f"{n} ÷ {PEER}" for n in names if n != PEER)
        + " | target |",
        "|---" * (len(names) * 2 + 1) + "|",
    ]
    for key, label, _lower, target in ROWS:
        cells = []
        for name in names:
            values = [m.figures[key] for m in rounds[name] if key in m.figures]
            cells.append(
                f"{statistics.median(values):,.4g} ({min(values):,.4g} to {max(values):,.4g})"
                if values
                else "-"
            )
        for name in names:
            if name != PEER:
                ratio = paired_ratio(rounds, name, key)
                cells.append(f"{ratio:.2f}x" if ratio is not None else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    notes = [f"- {m.server}, round {i + 1}: {n}" for name in names
             for i, m in enumerate(rounds[name]) for n in m.notes]  # fmt: skip
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    large = ensure_large_file(args.work, args.large_mib * MIB)  # made before any turn
    load: dict[str, Any] = {"before": _load()}
    rounds: dict[str, list[Measurement]] = {name: [] for name in args.servers}
    for number in range(args.rounds):
        for name in args.servers:
            result = one_round(args, name, large)
            rounds[name].append(result)
            shown = {k: round(v, 1) for k, v in result.figures.items()}
            print(f"round {number + 1} {name}: {shown} {result.notes or ''}", flush=True)
    load["after"] = _load()
    text = render(args, rounds, load)
    print(text)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = args.results / time.strftime("%Y-%m-%d-%H%M-large")
    stem.with_suffix(".md").write_text(text)
    raw = {name: [m.figures | {"notes": m.notes} for m in found] for name, found in rounds.items()}
    context = {"command": sys.argv, "build": build_info(args), "load": load, "rounds": raw}
    stem.with_suffix(".json").write_text(json.dumps(context, indent=2))
    print(f"wrote {stem}.md and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
