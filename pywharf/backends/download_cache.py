"""What a remote backend keeps to answer downloads cheaply: signed URLs and verified copies.

A backend whose files live behind an API (GitHub's release assets, S3 objects) either
redirects the client to a short-lived signed URL, reused for a while because each costs a
call, or serves a local copy: fetched once, checked against the index's sha256, then kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Hashable
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pywharf.backends import LocalFile
from pywharf.backends.hashing import copy_hashed
from pywharf.errors import StorageError

__all__ = ["DownloadCache", "Source"]

SIGNED_URL_REUSE_SECONDS = 60.0  # GitHub's signed URLs live about 5 minutes, S3's as asked
MAX_SIGNED_URLS = 4096


class Source(Protocol):
    """An open download: its bytes in chunks, then closed."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class DownloadCache:
    """Signed URLs reused for a while, and local copies under `folder`, each fetched once."""

    def __init__(
        self,
        folder: Path,
        *,
        reuse_seconds: float = SIGNED_URL_REUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self._reuse_seconds = reuse_seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards the dicts below
        self._signed: dict[Hashable, tuple[str, float]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def signed_url(self, key: Hashable, sign: Callable[[], str | None]) -> str | None:
        """The URL `sign` made for `key` less than `reuse_seconds` ago, else a new one."""
        now = self._clock()
        with self._lock:
            url, expires = self._signed.get(key, ("", 0.0))
        if url and expires > now:
            return url
        found = sign()
        if found is not None:
            with self._lock:
                if len(self._signed) >= MAX_SIGNED_URLS:
                    self._signed.clear()
                self._signed[key] = (found, now + self._reuse_seconds)
        return found

    def local_copy(self, name: str, sha256: str, fetch: Callable[[], Source]) -> LocalFile:
        """`folder/name`, fetched once by `fetch` and kept only if its sha256 matches."""
        path = self.folder / name
        with self._lock:
            lock = self._fetching.setdefault(name, threading.Lock())
        with lock:
            if not path.exists():
                self._fetch(path, sha256, fetch)
            try:
                return LocalFile(str(path), path.stat().st_size)
            except OSError as error:
                raise StorageError(f"cannot keep a copy of {name!r}: {error}") from None

    def _fetch(self, path: Path, sha256: str, fetch: Callable[[], Source]) -> None:
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(fetch()) as source, temporary.open("xb") as out:
                digest = copy_hashed(source, out)
            if digest != sha256:
                raise StorageError(
                    f"the stored {path.name!r} does not match its sha256; not served"
                )
            os.replace(temporary, path)
        except OSError as error:
            raise StorageError(f"cannot keep a copy of {path.name!r}: {error}") from None
        finally:
            temporary.unlink(missing_ok=True)

    def forget(self, name: str, *keys: Hashable) -> None:
        """Drop a deleted file's local copy and the signed URLs of `keys`."""
        with self._lock:
            for key in keys:
                self._signed.pop(key, None)
        (self.folder / name).unlink(missing_ok=True)
