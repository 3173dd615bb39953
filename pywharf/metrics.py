"""Request metrics, counted in memory and written in the Prometheus text format 0.0.4.

Labels take bounded values only: a route's pattern (`/simple/{project}/`, never a project
name), a status code, a repository name from the configuration. Nothing a client sends.

>>> metrics = Metrics()
>>> metrics.request("/simple/", 200, 0.002)
>>> text = render([metrics.counters_family(), *metrics.families()])
>>> 'pywharf_requests_total{route="/simple/",status="200"} 1' in text
True
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field

__all__ = ["CONTENT_TYPE", "Family", "Metrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds: a cached page is answered in well under a millisecond, an upload in seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0)  # fmt: skip


@dataclass(frozen=True)
class Family:
    """One metric family: its samples are (suffix, labels, value)."""

    name: str
    kind: str  # counter, gauge, histogram
    help: str
    samples: Sequence[tuple[str, tuple[tuple[str, str], ...], float]] = field(default=())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for suffix, labels, value in family.samples:
            shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            braced = f"{{{shown}}}" if labels else ""
            lines.append(f"{family.name}{suffix}{braced} {_number(value)}")
    return "\n".join(lines) + "\n"


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0


class Metrics:
    """The counters one server keeps; `request` runs once per request, under one short lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self.uploads = 0
        self.upload_bytes = 0
        self.downloads = 0
        self.download_bytes = 0
        self.auth_failures = 0

    def request(self, route: str, status: int, seconds: float) -> None:
        slot = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            key = (route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            histogram = self._latency.get(route)
            if histogram is None:
                histogram = self._latency[route] = _Histogram()
            histogram.buckets[slot] += 1
            histogram.count += 1
            histogram.sum += seconds

    def uploaded(self, size: int) -> None:
        with self._lock:
            self.uploads += 1
            self.upload_bytes += size

    def downloaded(self, size: int) -> None:
        with self._lock:
            self.downloads += 1
            self.download_bytes += size

    def auth_failed(self) -> None:
        with self._lock:
            self.auth_failures += 1

    def counters_family(self) -> Family:
        with self._lock:
            requests = sorted(self._requests.items())
        return Family(
            "pywharf_requests_total", "counter", "Requests answered, by route and status.",
            [("", (("route", route), ("status", str(status))), count)
             for (route, status), count in requests],
        )  # fmt: skip

    def families(self) -> list[Family]:
        with self._lock:
            latency = {
                route: (list(h.buckets), h.count, h.sum) for route, h in self._latency.items()
            }
            totals = (self.uploads, self.upload_bytes, self.downloads, self.download_bytes,
                      self.auth_failures)  # fmt: skip
        samples: list[tuple[str, tuple[tuple[str, str], ...], float]] = []
        for route, (buckets, count, total) in sorted(latency.items()):
            cumulative = 0
            for bound, hits in zip((*LATENCY_BUCKETS, float("inf")), buckets):
                cumulative += hits
                samples.append(("_bucket", (("route", route), ("le", _number(bound))), cumulative))
            samples.append(("_sum", (("route", route),), total))
            samples.append(("_count", (("route", route),), count))
        uploads, upload_bytes, downloads, download_bytes, failures = totals
        return [
            Family("pywharf_request_duration_seconds", "histogram",
                   "Time from the parsed request to the response handed to the server.", samples),
            Family("pywharf_uploads_total", "counter", "Files stored.", [("", (), uploads)]),
            Family("pywharf_upload_bytes_total", "counter", "Bytes of files stored.",
                   [("", (), upload_bytes)]),
            Family("pywharf_downloads_total", "counter", "Files served (200 or 206).",
                   [("", (), downloads)]),
            Family("pywharf_download_bytes_total", "counter", "Bytes of files served.",
                   [("", (), download_bytes)]),
            Family("pywharf_auth_failures_total", "counter",
                   "Credentials refused (wrong secret or unknown repository).",
                   [("", (), failures)]),
        ]  # fmt: skip
