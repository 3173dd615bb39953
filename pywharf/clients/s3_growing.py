"""Objects sent to S3 while their file is still being written (an upload's spool file).

The writer reports each new size with `grew`, and the end with `ended`; a thread of the object
sends what the file holds. Two ways: `GrowingPut` (one PUT, when the file's length is known
before its end) and `GrowingUpload` in `s3_multipart.py` (parts, when it is not).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from pywharf.clients.errors import ClientError
from pywharf.clients.http import CHUNK_BYTES
from pywharf.clients.http import ClientResponse
from pywharf.clients.s3_core import S3Core

__all__ = ["MAX_PUT_BYTES", "GrowingFile", "GrowingPut"]

log = logging.getLogger(__name__)

MAX_PUT_BYTES = 5 * 1024**3  # S3 "PutObject": one request uploads at most 5 GB


class GrowingFile:
    """A file still being written, as its writer reports it: how far it is, and whether it
    ended; `_stopped` once the object is aborted or finished."""

    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self._path = path
        self._changed = threading.Condition()
        self._size = 0
        self._ended = False
        self._stopped = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread  # the sender, started by the subclass

    def grew(self, size: int) -> None:
        with self._changed:
            self._size = size
            self._changed.notify()

    def ended(self, size: int) -> None:
        with self._changed:
            self._size, self._ended = size, True
            self._changed.notify()

    def _stop(self) -> bool:
        """Stop the object's thread and wait for it; False when it was stopped already."""
        with self._changed:
            if self._stopped:
                return False
            self._stopped = True
            self._changed.notify()
        self._thread.join()
        return True

    def _ready_to_complete(self) -> None:
        if not self._ended or self._stopped:
            raise RuntimeError(f"the upload of {self.key!r} is not ready to complete")


class _Stopped(Exception):
    """Raised inside the request body: urllib3 then closes the connection short of its length."""


class GrowingPut(GrowingFile):
    """One PUT of a file still being written, whose length (`size`) is known before its end.

    S3 stores an object only once all of its Content-Length bytes arrived. Every byte but the
    last goes to the store as the file holds it; the last only in `complete`, which the caller
    calls once it verified the file. Until then, and after `abort` (which closes the connection
    short of the length), the store holds nothing of it. `size` may be a guess: if the file ends
    at another length, or the PUT fails, `complete` returns None and the caller stores the file
    itself. The payload is signed with the declared `sha256`, so S3 checks the bytes as well.

    Why one PUT: SeaweedFS takes a 1 GiB file in parts sent one at a time at 122 to 136 MB/s,
    in one PUT at 184 to 230 MB/s (`benchmarks/s3_parts.py`; results/2026-12-06-2158-s3 and
    -2302-s3). An upload through pywharf went from 38 % of a direct PUT (parts) to 75 %
    (2026-12-07-0124-s3).
    """

    def __init__(
        self, client: S3Core, key: str, path: Path, size: int, sha256: str, headers: dict[str, str]
    ) -> None:
        super().__init__(key, path)
        if size < 1:
            raise ValueError("a growing PUT holds back its last byte: it needs one")
        self.size = size
        self._client = client
        self._released = False
        self._response: ClientResponse | None = None
        self._thread = threading.Thread(
            target=self._run, args=(sha256, headers), name="s3-early-put", daemon=True
        )
        self._thread.start()

    def complete(self) -> str | None:
        """Send the last byte and wait for the answer: the object's ETag, or None when the file
        was not stored (another length, a failure); an existing key raises `AlreadyExists`."""
        with self._changed:
            self._ready_to_complete()
            whole = self._size == self.size
            self._released = whole
            self._changed.notify()
        if not whole:
            log.info("%r ended at another length than its form promised: stored whole", self.key)
            self.abort()
            return None
        self._thread.join()
        with self._changed:
            self._stopped = True  # finished: nothing left to abort
        response = self._response
        if response is None or response.status not in (200, 409, 412):
            why = response.status if response is not None else self._failure
            log.warning("sending %r while it arrived failed (%s): stored whole", self.key, why)
            return None
        return self._client._written(response, f"write {self.key!r}", self.key)

    def abort(self) -> None:
        """Close the connection short of the file's length; safe to call again."""
        self._stop()

    def _run(self, sha256: str, headers: dict[str, str]) -> None:
        try:
            self._response = self._client._send(
                "PUT", self.key, headers=headers, body=self._body(), size=self.size,
                payload=sha256, idempotent=False,
            )  # fmt: skip
        except BaseException as error:  # reported by `complete`, which then stores it whole
            self._failure = error

    def _body(self) -> Iterator[bytes]:
        with self._path.open("rb") as file:
            offset = 0
            while offset < self.size:
                end = self._sendable(offset)
                while offset < end:
                    chunk = file.read(min(CHUNK_BYTES, end - offset))
                    if not chunk:
                        raise ClientError(f"the spool file of {self.key!r} is shorter than told")
                    offset += len(chunk)
                    yield chunk

    def _sendable(self, offset: int) -> int:
        """How far the body may go once it holds more than `offset`: what the file holds, short
        of the last byte until released."""
        with self._changed:
            while not self._stopped:
                end = min(self._size, self.size if self._released else self.size - 1)
                if end > offset:
                    return end
                self._changed.wait()
        raise _Stopped(self.key)
