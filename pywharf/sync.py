"""Index sync: a thread per repository keeps its index in step with its backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from pywharf.errors import PywharfError
from pywharf.repository import Repository

__all__ = ["Syncer"]

log = logging.getLogger("pywharf.sync")


class Syncer:
    """Syncs each repository every `backend.sync_index_interval` seconds until stopped."""

    def __init__(self, repositories: Iterable[Repository]) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(r,), name=f"sync-{r.name}", daemon=True)
            for r in repositories
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, repository: Repository) -> None:
        interval = max(repository.backend.sync_index_interval, 0.05)
        while not self._stop.wait(interval):
            try:
                if repository.sync():
                    log.info("index of %s changed", repository.name)
            except PywharfError as error:  # keep serving the last good index
                log.warning("index sync of %s failed: %s", repository.name, error)
