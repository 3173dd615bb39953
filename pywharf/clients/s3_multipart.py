"""Multipart uploads: a large file sent in parts from its spool, aborted on any failure."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

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

__all__ = ["MultipartCalls"]


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
        # Initiating twice leaves one orphan that `list_multipart_uploads` finds: safe to retry.
        response = self._send("POST", key, query=(("uploads", ""),), headers=headers)
        root = parse_xml(response.data) if response.status == 200 else None
        upload_id = xml_text(root, "UploadId") if root is not None else ""
        if not upload_id:
            raise self._error(response, f"begin an upload of {key!r}")
        try:
            parts = self._send_parts(key, path, size, upload_id)
            return self._complete(key, upload_id, parts, conditional, create)
        except BaseException:
            self.abort_multipart(key, upload_id)
            raise

    def _send_parts(self, key: str, path: Path, size: int, upload_id: str) -> list[str]:
        part_size = self._part_size(size)
        etags = []
        with path.open("rb") as file:
            for number, offset in enumerate(range(0, size, part_size), start=1):
                file.seek(offset)
                length = min(part_size, size - offset)
                query = (("partNumber", str(number)), ("uploadId", upload_id))
                response = self._send(
                    "PUT", key, query=query, body=LimitedReader(file, length), size=length
                )
                etags.append(self._written(response, f"write part {number} of {key!r}", ""))
        return etags

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
