"""A server's own CPU time and memory, read from /proc (Linux only).

CPU time spent by the server process tree survives a noisy shared machine far better than
wall-clock rates do, so it is the figure to compare.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "PeakRss",
    "StatFields",
    "cpu_seconds",
    "parse_stat",
    "parse_status_kib",
    "process_tree",
    "reset_peak",
    "rss_bytes",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")
SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class StatFields:
    ppid: int
    cpu_ticks: int  # utime + stime, in clock ticks


def parse_stat(text: str) -> StatFields:
    """Parse /proc/<pid>/stat; comm (field 2) may hold spaces and parentheses.

    >>> parse_stat("42 (a b) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0")
    StatFields(ppid=1, cpu_ticks=10)
    """
    fields = text[text.rindex(")") + 2 :].split()
    # proc(5): fields[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    return StatFields(ppid=int(fields[1]), cpu_ticks=int(fields[11]) + int(fields[12]))


def parse_status_kib(text: str, key: str) -> int:
    """A `Key:   123 kB` line of /proc/<pid>/status, in KiB; 0 when absent (a zombie)."""
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return 0


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process ended between listing and reading
        return None


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (nginx's workers, a pre-forking server's children)."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (text := _read(entry / "stat")) is not None:
            parents.setdefault(parse_stat(text).ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far."""
    ticks = 0
    for pid in pids:
        if (text := _read(PROC / str(pid) / "stat")) is not None:
            ticks += parse_stat(text).cpu_ticks
    return ticks / CLOCK_TICKS


def rss_bytes(pids: list[int], key: str = "VmRSS") -> int:
    """Resident memory (or VmHWM, its peak) summed over the processes."""
    total = 0
    for pid in pids:
        if (text := _read(PROC / str(pid) / "status")) is not None:
            total += parse_status_kib(text, key) * 1024
    return total


def reset_peak(pids: list[int]) -> bool:
    """Reset VmHWM to the current RSS (proc(5) clear_refs "5", Linux 4.0+); False if refused."""
    try:
        for pid in pids:
            (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


class PeakRss:
    """The tree's peak memory while the `with` block runs: VmRSS sampled every 50 ms, and
    VmHWM (which catches shorter peaks) when it could be reset at the start."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._use_hwm = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, rss_bytes(self.pids))

    def __enter__(self) -> PeakRss:
        self._use_hwm = reset_peak(self.pids)
        self.peak = rss_bytes(self.pids)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        hwm = rss_bytes(self.pids, "VmHWM") if self._use_hwm else 0
        self.peak = max(self.peak, rss_bytes(self.pids), hwm)
