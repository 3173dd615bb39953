"""Multipart uploads: a large file sent in parts from its spool, aborted on any failure."""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Iterator
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from pywharf.clients import sigv4
from pywharf.clients.errors import ClientError
from pywharf.clients.http import LimitedReader
from pywharf.clients.s3_core import LIST_PAGE
from pywharf.clients.s3_core import MAX_PARTS
from pywharf.clients.s3_core import MIN_PART_BYTES
from pywharf.clients.s3_core import MultipartUpload
from pywharf.clients.s3_core import S3Core
from pywharf.clients.s3_core import error_code
from pywharf.clients.s3_core import iso_time
from pywharf.clients.s3_core import parse_xml
from pywharf.clients.s3_core import xml_children
from pywharf.clients.s3_core import xml_text
from pywharf.clients.s3_growing import GrowingFile

__all__ = ["EARLY_PARTS_IN_FLIGHT", "EARLY_PART_BYTES", "GrowingUpload", "MultipartCalls"]

# Parts of a file still arriving: smaller than `PART_BYTES`, so less is left to send once the
# last byte arrived (16 MiB at 100 MB/s: 0.16 s after the body, against 0.6 s with 64 MiB).
EARLY_PART_BYTES = 16 * 1024**2
# Parts of a growing upload sent at once. One at a time, the store idles between a part's last
# byte and its answer (SeaweedFS, 1 GiB in 16 MiB parts, 5 interleaved pairs on 2 shared cores:
# one at a time 47 to 91 MB/s, median 72; three at once 72 to 120, median 88, never slower).
# Each streams from the file: no part is held in memory.
EARLY_PARTS_IN_FLIGHT = 3


class MultipartCalls(S3Core):
    """S3 "Uploading and copying objects using multipart upload": parts streamed from the
    spool file; a failure aborts the upload, and `list_multipart_uploads` finds any a crash
    left behind (for `update_index`)."""

    def _part_size(self, size: int) -> int:
        return max(self.part_bytes, MIN_PART_BYTES, math.ceil(size / MAX_PARTS))

    def _multipart(
        self, key: str, path: Path, size: int, headers: dict[str, str], create: bool
    ) -> str:
        """Create, send the parts from the file, complete; abort on any failure."""
        conditional: dict[str, str] = {
            name: headers.pop(name) for name in ("If-None-Match", "If-Match") if name in headers
        }
        upload_id = self._begin(key, headers)
        try:
            parts = self._send_parts(key, path, size, upload_id)
            return self._complete(key, upload_id, parts, conditional, create)
        except BaseException:
            self.abort_multipart(key, upload_id)
            raise

    def _begin(self, key: str, headers: Mapping[str, str]) -> str:
        # Initiating twice leaves one orphan that `list_multipart_uploads` finds: safe to retry.
        response = self._send("POST", key, query=(("uploads", ""),), headers=headers)
        root = parse_xml(response.data) if response.status == 200 else None
        upload_id = xml_text(root, "UploadId") if root is not None else ""
        if not upload_id:
            raise self._error(response, f"begin an upload of {key!r}")
        return upload_id

    def _send_parts(self, key: str, path: Path, size: int, upload_id: str) -> list[str]:
        part_size = self._part_size(size)
        with path.open("rb") as file:
            return [
                self._send_part(key, upload_id, number, file, offset, min(part_size, size - offset))
                for number, offset in enumerate(range(0, size, part_size), start=1)
            ]

    def _send_part(
        self, key: str, upload_id: str, number: int, file: IO[bytes], offset: int, length: int
    ) -> str:
        file.seek(offset)
        query = (("partNumber", str(number)), ("uploadId", upload_id))
        response = self._send(
            "PUT", key, query=query, body=LimitedReader(file, length), size=length
        )
        return self._written(response, f"write part {number} of {key!r}", "")

    def growing_upload(
        self,
        key: str,
        path: Path,
        max_size: int,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> GrowingUpload:
        """A multipart upload of `path` while it is still being written (at most `max_size`
        bytes); started on its own thread at once."""
        headers = self._write_headers(content_type, metadata, False, "")
        smallest = max(min(EARLY_PART_BYTES, self.part_bytes), MIN_PART_BYTES)
        part_size = max(smallest, math.ceil(max_size / MAX_PARTS))
        return GrowingUpload(self, key, path, part_size, headers)

    def _complete(
        self, key: str, upload_id: str, etags: list[str], conditional: dict[str, str], create: bool
    ) -> str:
        parts = "".join(
            f'<Part><PartNumber>{n}</PartNumber><ETag>"{etag}"</ETag></Part>'
            for n, etag in enumerate(etags, start=1)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        response = self._send(
            "POST", key, query=(("uploadId", upload_id),), headers=conditional, body=body,
            payload=sigv4.payload_hash(body), idempotent=False,
        )  # fmt: skip
        what = f"complete the upload of {key!r}"
        if error_code(response.data):  # S3 may answer 200, then report a failure in the body
            raise self._error(response, what, create=key if create else "")
        return self._written(response, what, key if create else "")

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop an upload's parts; best effort (an orphan is cleaned by `update_index`)."""
        with contextlib.suppress(ClientError):
            self._send("DELETE", key, query=(("uploadId", upload_id),))

    def list_multipart_uploads(self, prefix: str = "") -> Iterator[MultipartUpload]:
        """Every unfinished multipart upload under `prefix`, page after page."""
        markers: tuple[tuple[str, str], ...] = ()
        while True:
            query = (("uploads", ""), ("prefix", prefix), ("max-uploads", str(LIST_PAGE)))
            root = self._list_page(query + markers, "list unfinished uploads")
            for upload in xml_children(root, "Upload"):
                yield MultipartUpload(
                    xml_text(upload, "Key"), xml_text(upload, "UploadId"),
                    iso_time(xml_text(upload, "Initiated")),
                )  # fmt: skip
            if xml_text(root, "IsTruncated") != "true":
                return
            markers = (
                ("key-marker", xml_text(root, "NextKeyMarker")),
                ("upload-id-marker", xml_text(root, "NextUploadIdMarker")),
            )


class GrowingUpload(GrowingFile):
    """A multipart upload fed from a file that is still being written.

    A thread sends every whole part as soon as the file holds it (`EARLY_PARTS_IN_FLIGHT` at
    once), and the rest once it ended. `complete` waits for the parts and completes the upload
    (with `conditional` headers such as `If-None-Match: *`); `abort` drops it. Exactly one of
    the two is final: after either, the store holds no part of this upload (unless the abort
    itself failed: an orphan, for `update_index`).
    """

    def __init__(
        self,
        client: MultipartCalls,
        key: str,
        path: Path,
        part_size: int,
        headers: dict[str, str],
    ) -> None:
        super().__init__(key, path)
        self._client = client
        self._part_size = part_size
        self._headers = headers
        self._upload_id = ""
        self._etags: list[str] = []
        self._thread = threading.Thread(target=self._run, name="s3-early-parts", daemon=True)
        self._thread.start()

    def complete(self, conditional: Mapping[str, str]) -> str:
        """Wait for the parts, then complete; the object's ETag. Aborts on any failure."""
        with self._changed:
            self._ready_to_complete()
        self._thread.join()
        try:
            if self._failure is not None:
                raise self._failure
            etag = self._client._complete(
                self.key, self._upload_id, self._etags, dict(conditional),
                "If-None-Match" in conditional,
            )  # fmt: skip
        except BaseException:
            self.abort()
            raise
        self._stopped, self._upload_id = True, ""  # completed: nothing left to abort
        return etag

    def abort(self) -> None:
        """Stop sending and drop the parts sent; safe to call again."""
        if self._stop() and self._upload_id:
            self._client.abort_multipart(self.key, self._upload_id)

    def _next(self, offset: int, parts: int) -> int | None:
        """The length of the next part from `offset`, once the file holds it (None: done);
        `parts` were sent or are being sent."""
        with self._changed:
            while not self._stopped:
                left = self._size - offset
                if left >= self._part_size:
                    return self._part_size
                if self._ended:  # the last part; an empty file is one empty part
                    return left if left or not parts else None
                self._changed.wait()
            return None

    def _run(self) -> None:
        try:
            self._upload_id = self._client._begin(self.key, self._headers)
            # Leaving the `with` waits for the parts in flight, also on failure: an abort
            # after this thread ended finds no part still arriving at the store.
            with ThreadPoolExecutor(EARLY_PARTS_IN_FLIGHT, "s3-early-part") as pool:
                self._send_all(pool)
        except BaseException as error:  # handed to `complete`, on the caller's thread
            self._failure = error

    def _send_all(self, pool: ThreadPoolExecutor) -> None:
        """Each whole part as soon as the file holds it, at most EARLY_PARTS_IN_FLIGHT at once;
        the ETags kept in part order."""
        in_flight: deque[Future[str]] = deque()
        offset = parts = 0
        while (length := self._next(offset, parts)) is not None:
            if len(in_flight) == EARLY_PARTS_IN_FLIGHT:
                self._etags.append(in_flight.popleft().result())
            parts += 1
            in_flight.append(pool.submit(self._send_part, parts, offset, length))
            offset += length
        while in_flight:
            self._etags.append(in_flight.popleft().result())

    def _send_part(self, number: int, offset: int, length: int) -> str:
        with self._path.open("rb") as file:  # its own: parts are read at once
            return self._client._send_part(self.key, self._upload_id, number, file, offset, length)
