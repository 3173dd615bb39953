"""One table of every server's figures, the ratios to the peers, and issue 6's targets.

Pure: turns measurements (figures by key) into rows, then rows into text, Markdown or JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FIGURES",
    "Figure",
    "Row",
    "Target",
    "build_rows",
    "format_ratio",
    "format_value",
    "growth_figures",
    "render_json",
    "render_markdown",
    "render_text",
]

OURS = "pywharf"
LIMIT = "nginx"


@dataclass(frozen=True)
class Target:
    """Issue 6's goal for pywharf: an absolute bound, or a share of nginx's figure."""

    bound: float
    kind: str  # "max", "min", or "min_of_nginx" (bound is a fraction of nginx's figure)

    def describe(self) -> str:
        if self.kind == "min_of_nginx":
            return f">= {self.bound:.0%} of nginx"
        return f"{'<=' if self.kind == 'max' else '>='} {format_value(self.bound)}"

    def met(self, ours: float, nginx: float | None) -> bool | None:
        if self.kind == "max":
            return ours <= self.bound
        if self.kind == "min":
            return ours >= self.bound
        return None if nginx is None else ours >= self.bound * nginx


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    lower_is_better: bool
    target: Target | None = None


FIGURES: tuple[Figure, ...] = (
    Figure("project_page_cpu_us", "project page: server CPU", "µs/req", True, Target(80, "max")),
    Figure("project_page_rps", "project page", "req/s", False, Target(0.10, "min_of_nginx")),
    Figure("project_page_p99_ms", "project page p99", "ms", True),
    Figure("root_page_cpu_us", "root page: server CPU", "µs/req", True, Target(150, "max")),
    Figure("root_page_rps", "root page", "req/s", False),
    Figure("root_page_p99_ms", "root page p99", "ms", True),
    Figure("small_file_cpu_us", "small file: server CPU", "µs/req", True),
    Figure("small_file_rps", "small file", "req/s", False),
    Figure("small_file_p99_ms", "small file p99", "ms", True),
    Figure("upload_empty_per_s", "small uploads, empty, 8 clients", "/s", False),
    Figure("upload_empty_p99_ms", "small upload p99, empty", "ms", True),
    Figure("upload_empty_cpu_ms", "small upload: server CPU, empty", "ms", True),
    Figure("upload_full_per_s", "small uploads, full, 8 clients", "/s", False, Target(200, "min")),
    Figure("upload_full_p99_ms", "small upload p99, full", "ms", True),
    Figure("upload_full_cpu_ms", "small upload: server CPU, full", "ms", True, Target(3, "max")),
    Figure("large_upload_s", "large upload", "s", True),
    Figure("large_upload_mb_s", "large upload", "MB/s", False, Target(0.75, "min_of_nginx")),
    Figure(
        "large_upload_peak_rss_mib", "large upload: server peak RSS", "MiB", True, Target(48, "max")
    ),
    Figure("large_download_mb_s", "large download", "MB/s", False, Target(0.90, "min_of_nginx")),
    Figure("cold_start_s", "cold start to first 200, full", "s", True, Target(0.5, "max")),
    Figure("idle_rss_mib", "idle RSS, full", "MiB", True),
)


def growth_figures(growth: Sequence[int]) -> tuple[Figure, ...]:
    """Rows for the project-page cost and the cold start at each repository size."""
    rows = [
        Figure(f"growth_{p}_cpu_us", f"project page CPU, {p:,} projects", "µs/req", True)
        for p in growth
    ]
    if len(growth) > 1:
        label = f"project page CPU growth, {growth[0]:,} -> {growth[-1]:,}"
        rows.append(Figure("growth_cpu_ratio", label, "x", True, Target(1.2, "max")))
    rows += [
        Figure(f"growth_{p}_cold_start_s", f"cold start, {p:,} projects", "s", True) for p in growth
    ]
    return tuple(rows)


def add_growth_ratio(figures: dict[str, float], growth: Sequence[int]) -> None:
    """Cost at the largest size over cost at the smallest, when both were measured."""
    if len(growth) < 2:
        return
    low, high = (figures.get(f"growth_{p}_cpu_us") for p in (growth[0], growth[-1]))
    if low and high:
        figures["growth_cpu_ratio"] = high / low


def format_value(value: float | None) -> str:
    """Three significant digits at most, thousands separated; '-' when missing.

    >>> [format_value(v) for v in (None, 0.01234, 1.5, 123.4, 98765.4)]
    ['-', '0.0123', '1.5', '123', '98,765']
    """
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_ratio(ours: float | None, peer: float | None) -> str:
    """pywharf's figure over the peer's, e.g. '0.05x'; '-' when either is missing or zero."""
    if not ours or not peer:
        return "-"
    return f"{format_value(ours / peer)}x"


@dataclass(frozen=True)
class Row:
    figure: Figure
    values: dict[str, float | None]  # by server name
    ratios: dict[str, str]  # by peer name
    verdict: str  # "met", "MISSED", or "" when there is no target or no figure


def _verdict(figure: Figure, values: Mapping[str, float | None]) -> str:
    ours = values.get(OURS)
    if figure.target is None or ours is None:
        return ""
    met = figure.target.met(ours, values.get(LIMIT))
    return "" if met is None else ("met" if met else "MISSED")


def build_rows(
    figures: Mapping[str, Mapping[str, float]], servers: Sequence[str], growth: Sequence[int]
) -> list[Row]:
    """One row per figure that any server has; ratios are pywharf over each peer."""
    rows = []
    for figure in (*FIGURES, *growth_figures(growth)):
        values = {s: figures.get(s, {}).get(figure.key) for s in servers}
        if all(v is None for v in values.values()):
            continue
        ratios = {p: format_ratio(values.get(OURS), values[p]) for p in servers if p != OURS}
        rows.append(Row(figure, values, ratios, _verdict(figure, values)))
    return rows


def _cells(row: Row, servers: Sequence[str]) -> list[str]:
    cells = [
        f"{row.figure.label} ({row.figure.unit})",
        *(format_value(row.values[s]) for s in servers),
    ]
    if OURS not in servers:  # ratios and targets are about pywharf
        return cells
    target = row.figure.target.describe() if row.figure.target else ""
    return [*cells, *row.ratios.values(), target, row.verdict]


def _header(servers: Sequence[str]) -> list[str]:
    if OURS not in servers:
        return ["figure", *servers]
    peers = [f"{OURS} ÷ {s}" for s in servers if s != OURS]
    return ["figure", *servers, *peers, "target", ""]


def render_markdown(rows: Sequence[Row], servers: Sequence[str]) -> str:
    header = _header(servers)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(row, servers)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def render_text(rows: Sequence[Row], servers: Sequence[str]) -> str:
    """The same table, aligned for a terminal."""
    table = [_header(servers), *(_cells(row, servers) for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for r in table:
        first = r[0].ljust(widths[0])
        lines.append("  ".join([first, *(c.rjust(w) for c, w in zip(r[1:], widths[1:]))]))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_json(rows: Sequence[Row], context: Mapping[str, Any]) -> str:
    body = {
        **context,
        "table": [
            {
                "key": r.figure.key,
                "label": r.figure.label,
                "unit": r.figure.unit,
                "lower_is_better": r.figure.lower_is_better,
                "values": r.values,
                "target": r.figure.target.describe() if r.figure.target else None,
                "verdict": r.verdict or None,
            }
            for r in rows
        ],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"
