"""Our S3 client: the few object calls pywharf needs, signed with SigV4, over `clients/http.py`.

The core (signing, errors, values) is `clients/s3_core.py`, multipart uploads
`clients/s3_multipart.py`; this module adds the object calls and is what backends use.
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Mapping
from pathlib import Path

from pywharf.clients import sigv4
from pywharf.clients.http import Stream
from pywharf.clients.s3_core import LIST_PAGE
from pywharf.clients.s3_core import ListedObject
from pywharf.clients.s3_core import ObjectInfo
from pywharf.clients.s3_core import S3Object
from pywharf.clients.s3_core import iso_time
from pywharf.clients.s3_core import unquoted_etag
from pywharf.clients.s3_core import xml_children
from pywharf.clients.s3_core import xml_text
from pywharf.clients.s3_growing import GrowingPut
from pywharf.clients.s3_multipart import MultipartCalls

__all__ = ["S3Client"]


class S3Client(MultipartCalls):
    """One bucket (under one endpoint and region) and one key pair: the object calls."""

    def head(self, key: str) -> ObjectInfo:
        response = self._send("HEAD", key)
        if response.status != 200:
            raise self._error(response, f"read {key!r}")
        return self._info(key, response)

    def get(self, key: str, *, if_none_match: str = "") -> S3Object | None:
        """The object, or None when it still has the ETag `if_none_match` (304)."""
        headers = {"If-None-Match": f'"{if_none_match}"'} if if_none_match else None
        response = self._send("GET", key, headers=headers)
        if response.status == 304:
            return None
        if response.status != 200:
            raise self._error(response, f"read {key!r}")
        return S3Object(self._info(key, response), response.data)

    def stream(self, key: str) -> Stream:
        """An open GET body, for copying a large object without holding it."""
        return self.open(key)[1]

    def open(self, key: str) -> tuple[ObjectInfo, Stream]:
        """An open GET body, and what its headers say of the object (size, x-amz-meta-*)."""
        response = self._send("GET", key, stream=True)
        if response.stream is None:
            raise self._error(response, f"read {key!r}")
        return self._info(key, response), response.stream

    def put(
        self,
        key: str,
        data: bytes,
        *,
        create_only: bool = False,
        if_match: str = "",
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Write a small object; its ETag. `create_only`: If-None-Match: * (412 if it exists);
        `if_match`: only over that ETag (a compare-and-swap)."""
        headers = self._write_headers(content_type, metadata, create_only, if_match)
        response = self._send(
            "PUT", key, headers=headers, body=data, payload=sigv4.payload_hash(data)
        )
        return self._written(response, f"write {key!r}", key if create_only else "")

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        create_only: bool = False,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Write a file from disk, streamed; in parts above `multipart_threshold`.

        `sha256` is the file's: signed as the payload hash, so S3 checks the bytes it got.
        """
        size = path.stat().st_size
        headers = self._write_headers(content_type, metadata, create_only, "")
        if size > self.multipart_threshold:
            return self._multipart(key, path, size, headers, create_only)
        with path.open("rb") as body:
            response = self._send("PUT", key, headers=headers, body=body, size=size, payload=sha256)
        return self._written(response, f"write {key!r}", key if create_only else "")

    def growing_put(
        self,
        key: str,
        path: Path,
        size: int,
        *,
        sha256: str,
        create_only: bool = False,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> GrowingPut:
        """One PUT of `path` while it is still being written, `size` bytes once it ended, its
        last byte sent by `GrowingPut.complete`; `sha256` is the one the file must have."""
        headers = self._write_headers(content_type, metadata, create_only, "")
        return GrowingPut(self, key, path, size, sha256, headers)

    def delete(self, key: str) -> None:
        """Remove an object; a missing one is no error (S3 answers 204 either way)."""
        response = self._send("DELETE", key)
        if response.status not in (200, 204, 404):
            raise self._error(response, f"delete {key!r}")

    def list(self, prefix: str = "") -> Iterator[ListedObject]:
        """ListObjectsV2: every object under `prefix`, 1000 per request, in key order."""
        token: tuple[tuple[str, str], ...] = ()
        while True:
            query = (("list-type", "2"), ("prefix", prefix), ("max-keys", str(LIST_PAGE)))
            root = self._list_page(query + token, f"list {prefix!r}")
            for item in xml_children(root, "Contents"):
                size = xml_text(item, "Size")
                yield ListedObject(
                    xml_text(item, "Key"), int(size) if size.isdigit() else 0,
                    unquoted_etag(xml_text(item, "ETag")), iso_time(xml_text(item, "LastModified")),
                )  # fmt: skip
            next_token = xml_text(root, "NextContinuationToken")
            if xml_text(root, "IsTruncated") != "true" or not next_token:
                return
            token = (("continuation-token", next_token),)
