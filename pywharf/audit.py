"""The audit log: one JSON object a line for every change and every attempt at one.

Requests only put a small tuple on a queue; one writer thread formats and appends the lines, so
a slow disk never slows a request. Each batch of whole lines is one `write` to a file opened
with `O_APPEND`, so servers sharing a ROOT may share the file without tearing each other's
lines. It never
holds a secret or a token: actors are labels (`token:<label>`), never credentials.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

from pywharf.backends.atomic import write_all

__all__ = ["AuditLog", "client_address"]

log = logging.getLogger("pywharf")

_STOP = None
# Lines written per wake-up at most: one write call each, then the next batch.
_BATCH = 256


def _time_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def client_address(peer: str, forwarded_for: str | None, trusted_proxies: frozenset[str]) -> str:
    """The client's address: `X-Forwarded-For` counts only when the peer is a trusted proxy.

    The rightmost address that is not itself a trusted proxy: anything left of it was written
    by the client and proves nothing.
    """
    if peer not in trusted_proxies or not forwarded_for:
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if hop and hop not in trusted_proxies:
            return hop[:64]
    return peer


class AuditLog:
    """Appends audit lines to `path` from a writer thread; `record` never blocks on the disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        repository: str,
        actor: str,
        target: str,
        outcome: str,
        client: str = "-",
        **extra: Any,
    ) -> None:
        """One line to come: `outcome` is `ok`, or `refused` / `failed` with a `status`."""
        # Only the clock is read here: formatting is the writer thread's (3 us saved).
        self._queue.put((time.time(), repository, actor, action, target, outcome, client, extra))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in items
            lines = [_line(item) for item in items if item is not _STOP]
            self._append(lines)

    def _append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                write_all(descriptor, b"".join(lines))  # one append per batch, whole lines
            finally:
                os.close(descriptor)
        except OSError as error:  # the requests were answered: say so, keep serving
            log.error("audit log %s: cannot write %d lines: %s", self.path, len(lines), error)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)


def _line(item: tuple[Any, ...]) -> bytes:
    when, repository, actor, action, target, outcome, client, extra = item
    document = {
        "time": _time_text(when), "repository": repository, "actor": actor, "action": action,
        "target": target, "outcome": outcome, "client": client, **extra,
    }  # fmt: skip
    # ensure_ascii: one line is one line, whatever bytes a filename held.
    return (json.dumps(document, ensure_ascii=True) + "\n").encode()
