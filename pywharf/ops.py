"""Operations endpoints: /healthz for liveness, /readyz for readiness, /metrics for Prometheus."""

from __future__ import annotations

import hmac
import os
import resource
import sys
import threading
import time
from typing import TYPE_CHECKING

from pywharf.errors import AuthenticationRequired
from pywharf.errors import NotReady
from pywharf.http import Response
from pywharf.metrics import CONTENT_TYPE
from pywharf.metrics import Family
from pywharf.metrics import render

if TYPE_CHECKING:
    from pywharf.app import App
    from pywharf.app import Call

__all__ = ["healthz", "metrics", "readyz"]

_NO_STORE = ("Cache-Control", "no-store")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _plain(status: int, text: str) -> Response:
    headers = [("Content-Type", "text/plain; charset=utf-8"), _NO_STORE]
    return Response(status, headers, (text + "\n").encode())


def healthz(app: App, call: Call) -> Response:
    """Alive: the process answers. Nothing is checked, so an orchestrator restarts only a hung
    server, never one whose storage is having a bad minute (that is what /readyz says)."""
    return _plain(200, "ok")


def readyz(app: App, call: Call) -> Response:
    """Ready when every repository's index is loaded and its store answered its last sync."""
    failing = [name for name, repository in app.repositories.items() if not repository.ready]
    if failing:
        raise NotReady(f"not ready: {', '.join(sorted(failing))}")  # names only, no detail
    return _plain(200, "ready")


def _check_metrics_secret(app: App, call: Call) -> None:
    """With --metrics_secret: Basic (any user) or `Authorization: Bearer SECRET`."""
    expected = app.metrics_secret
    if not expected:
        return
    header = call.request.header("authorization") or ""
    scheme, _, token = header.partition(" ")
    offered = call.secret if call.credentials else token.strip()
    bearer = scheme.lower() == "bearer" or call.credentials is not None
    if not (bearer and hmac.compare_digest(offered.encode(), expected.encode())):
        app.metrics.auth_failed()
        raise AuthenticationRequired("/metrics needs the metrics secret", "pywharf metrics")


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:  # Linux: the current resident set
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: the peak
        return peak if sys.platform == "darwin" else peak * 1024


def _repository_families(app: App) -> list[Family]:
    now = time.time()
    projects, files, sizes, lag, errors, ready = [], [], [], [], [], []
    for name, repository in sorted(app.repositories.items()):
        label = (("repository", name),)
        stats = repository.stats()
        projects.append(("", label, stats.projects))
        files.append(("", label, stats.files))
        sizes.append(("", label, stats.bytes))
        health = repository.health
        lag.append(("", label, max(0.0, now - health.last_success) if health.last_success else -1))
        errors.append(("", label, health.errors))
        ready.append(("", label, 1 if repository.ready else 0))
    return [
        Family("pywharf_index_projects", "gauge", "Projects in the index.", projects),
        Family("pywharf_index_files", "gauge", "Files in the index.", files),
        Family("pywharf_index_bytes", "gauge", "Bytes of the files in the index.", sizes),
        Family("pywharf_sync_lag_seconds", "gauge",
               "Seconds since the store last answered a sync (-1: never).", lag),
        Family("pywharf_sync_errors_total", "counter", "Failed index syncs.", errors),
        Family("pywharf_repository_ready", "gauge", "1 when /readyz counts it ready.", ready),
    ]  # fmt: skip


def _process_families(app: App) -> list[Family]:
    return [
        Family("pywharf_process_resident_memory_bytes", "gauge", "Resident set size.",
               [("", (), _rss_bytes())]),
        Family("pywharf_process_threads", "gauge", "Python threads alive.",
               [("", (), threading.active_count())]),
        Family("pywharf_open_connections", "gauge",
               "Client connections open, idle keep-alive ones included.",
               [("", (), app.open_connections())]),
    ]  # fmt: skip


def metrics(app: App, call: Call) -> Response:
    """Prometheus text exposition format 0.0.4."""
    _check_metrics_secret(app, call)
    families = [
        app.metrics.counters_family(),
        *app.metrics.families(),
        *_repository_families(app),
        *_process_families(app),
    ]
    headers = [("Content-Type", CONTENT_TYPE), _NO_STORE]
    return Response(200, headers, render(families).encode())
