"""The S3 backend: packages in an S3-compatible bucket, shared by any number of servers.

Design: **per-project manifests updated by compare-and-swap** (`s3_index.py`), chosen over an
event log plus snapshots. Both avoid a global lock, but the log needs a compaction protocol
(who writes the snapshot, when old events may go, how a reader that fell behind a compaction
recovers), and its readers still list the new events' keys; the manifests need none of that.
A project's manifest is small (about 200 bytes per file), only writers of the same project
contend, one LIST of `index/` tells a reader which manifests changed and whether the token
document beside them did (an idle sync is one request), and start-up reads one object per
project whatever the history. The measured peers and stores behind this choice:
../shared/reference/s3-storage.md.

An upload: GET the manifest (an identical re-upload ends here: 200 with the stored record);
PUT the file with `If-None-Match: *`, its sha256 and record in `x-amz-meta-*`; PUT the wheel's
METADATA likewise; then add the entry by compare-and-swap. The upload is acknowledged only
then. When the file is already stored (412), its HEAD decides: the same sha256 is our earlier
try, or another server's, and the entry is finished; other bytes never listed are listed now,
and the upload answers 409, so a 409 is never about a file nobody can see.

Downloads redirect to a presigned GET (after a HEAD, so a missing object is a 404 here, not at
the client; the URL is reused for a while), or are proxied: relayed from the store as read,
by every instance alike (no copy per instance to fill its disk), once the object's size and
stored sha256 are the index's. As with a redirect, the bytes are checked by the client against
the sha256 in the page's link (pip and uv always do), not hashed here: that halved the speed
(benchmarks/README.md, "Proxy downloads relayed"). A `.metadata` file, small and asked for
on every resolution, is fetched once, hashed and kept.
Every client error becomes a storage error in `s3_errors`:
the server's credentials refused, or the store down, is a 503 that names the repository.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import time
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pywharf.auth import Permission
from pywharf.auth import permission_of_secret
from pywharf.backends import ArrivingFile
from pywharf.backends import BackendType
from pywharf.backends import Download
from pywharf.backends import IndexUpdate
from pywharf.backends import Redirect
from pywharf.backends import RepairReport
from pywharf.backends import StagedUpload
from pywharf.backends import Streamed
from pywharf.backends import put_each
from pywharf.backends.atomic import local_directory
from pywharf.backends.download_cache import SIGNED_URL_REUSE_SECONDS
from pywharf.backends.download_cache import DownloadCache
from pywharf.backends.s3_index import ManifestStore
from pywharf.backends.s3_index import Snapshot
from pywharf.backends.s3_layout import PARTIAL_RECORD
from pywharf.backends.s3_layout import Layout
from pywharf.backends.s3_layout import Manifest
from pywharf.backends.s3_layout import object_metadata
from pywharf.backends.s3_layout import record_from_head
from pywharf.backends.s3_rescan import ORPHAN_UPLOAD_SECONDS
from pywharf.backends.s3_rescan import Rescan
from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.s3 import S3Client
from pywharf.clients.s3_core import MULTIPART_THRESHOLD
from pywharf.clients.s3_core import PART_BYTES
from pywharf.clients.s3_core import ListedObject
from pywharf.clients.s3_core import ObjectInfo
from pywharf.clients.s3_growing import MAX_PUT_BYTES
from pywharf.clients.s3_growing import GrowingPut
from pywharf.clients.s3_multipart import GrowingUpload
from pywharf.clients.sigv4 import MAX_PRESIGN_EXPIRES
from pywharf.clients.sigv4 import Credentials
from pywharf.clients.sigv4 import S3Location
from pywharf.clients.sigv4 import SigV4Error
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.config import typed_settings
from pywharf.errors import ConfigError
from pywharf.errors import ContentConflict
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Status
from pywharf.index import Yank

__all__ = ["S3Backend", "S3Settings", "s3_errors"]

log = logging.getLogger("pywharf.backends.s3")

DOWNLOAD_MODES = ("redirect", "proxy")
MAX_OBJECT_BYTES = 5 * 1024**4  # S3: an object (a multipart upload) holds at most 5 TiB
SETTINGS = (
    Setting("bucket", str, None, "Bucket holding the packages.", True),
    Setting("endpoint_url", str, "",
            "S3 endpoint, e.g. http://127.0.0.1:8333 ('': AWS's endpoint for the region)."),
    Setting("region", str, "us-east-1", "Region signed into each request (AWS checks it)."),
    Setting("prefix", str, "", "Key prefix: the repository's objects live under it."),
    Setting("addressing", str, "auto",
            "'auto' (path-style when endpoint_url is set, else virtual-hosted), 'path' or "
            "'virtual'.", choices=("auto", "path", "virtual")),
    Setting("read_secret", str, "", "Secret that allows downloads (the write secret does too)."),
    Setting("write_secret", str, "", "Secret that allows uploads, yanks and deletes."),
    Setting("download", str, "redirect",
            "'redirect': clients fetch a presigned URL from the store; 'proxy': the server "
            "streams the file and keeps a verified copy in ROOT.", choices=DOWNLOAD_MODES),
    Setting("presign_expires", int, 300, "Seconds a presigned download URL stays valid.",
            bounds=(1, MAX_PRESIGN_EXPIRES)),
    Setting("max_file_bytes", int, 5 * 1024**3 - 1, "Largest file accepted for upload, in bytes.",
            bounds=(1, MAX_OBJECT_BYTES)),
    Setting("sync_index_interval", float, 10.0,
            "Seconds between index syncs with the bucket (each costs one LIST request).",
            bounds=(0, 10**9)),
)  # fmt: skip
CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class S3Settings:
    """A `type = "s3"` section, checked against `SETTINGS`."""

    bucket: str
    endpoint_url: str
    region: str
    prefix: str
    addressing: str
    read_secret: str
    write_secret: str
    download: str
    presign_expires: int
    max_file_bytes: int
    sync_index_interval: float


def credentials_for(name: str, admin_secret: str | None, environ: Mapping[str, str]) -> Credentials:
    """The admin secret `ACCESS_KEY_ID:SECRET_ACCESS_KEY`, else AWS's environment variables."""
    if admin_secret is not None:
        key_id, colon, secret = admin_secret.partition(":")
        if not colon or not key_id or not secret:
            raise ConfigError(
                f"repository {name!r}: the admin secret of an s3 repository is "
                "ACCESS_KEY_ID:SECRET_ACCESS_KEY"
            )
        return Credentials(key_id.strip(), secret.strip())
    key_id = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not key_id or not secret:
        raise ConfigError(
            f"repository {name!r}: no S3 credentials: give it an admin secret "
            "(ACCESS_KEY_ID:SECRET_ACCESS_KEY) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    return Credentials(key_id, secret, environ.get("AWS_SESSION_TOKEN", ""))


def s3_storage_error(error: ClientError, repository: str) -> StorageError:
    """The storage error that answers a client error. Every S3 call uses the server's own
    credentials, so a refusal is the operator's to mend: 503, never the caller's 401/403."""
    message = f"repository {repository!r}: {error}"
    if isinstance(error, AlreadyExists):
        return DistributionExists(error.name.rpartition("/")[2])
    if isinstance(error, Conflict):
        return ContentConflict(message)
    if isinstance(error, ResourceNotFound):
        return StorageNotFound(message)
    if isinstance(error, Refused):
        return StorageUnavailable(f"{message}; check the server's S3 credentials")
    if error.status is None or error.status >= 500:
        return StorageUnavailable(message)
    return StorageError(message)


@contextlib.contextmanager
def s3_errors(repository: str) -> Iterator[None]:
    """Raise a client error as its storage error: the backend's one edge."""
    try:
        yield
    except ClientError as error:
        raise s3_storage_error(error, repository) from error


class S3Backend:
    """Packages in `bucket` (under `prefix`), on AWS or any S3-compatible store.

    `sleep`, `clock` and `jitter` are the waits, signing time and race back-off; tests pass
    their own. `orphan_upload_seconds`: how old an unfinished multipart upload must be before
    `rebuild_index` aborts it (younger ones may still be running on another server).
    `multipart_threshold` and `part_bytes`: when a file is sent in parts, and how large.
    """

    SETTINGS = SETTINGS
    auth_checks_per_second = None  # comparing two strings costs nothing
    keeps_spool_file = False  # its bytes go to an object

    def __init__(
        self,
        config: RepositoryConfig,
        root: Path,
        admin_secret: str | None,
        *,
        environ: Mapping[str, str] = os.environ,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[float, float], float] = random.uniform,
        orphan_upload_seconds: float = ORPHAN_UPLOAD_SECONDS,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self.settings = settings = typed_settings(config, S3Settings)
        self.name = config.name
        self.max_file_bytes = settings.max_file_bytes
        self.sync_index_interval = settings.sync_index_interval
        self.download = settings.download
        self.reads_locally = self.download != "proxy"  # a redirect is signed here
        try:
            self._layout = Layout(settings.prefix)
            location = S3Location(
                settings.bucket, endpoint_url=settings.endpoint_url, region=settings.region,
                addressing=settings.addressing,
            )  # fmt: skip
        except (ValueError, SigV4Error) as error:
            raise ConfigError(f"{config.source}: {error}") from None
        credentials = credentials_for(self.name, admin_secret, environ)
        self._client = S3Client(location, credentials, sleep=sleep, clock=clock,
                                multipart_threshold=multipart_threshold,
                                part_bytes=part_bytes)  # fmt: skip
        self._index = ManifestStore(self._client, self._layout, sleep=sleep, jitter=jitter)
        self._rescan = Rescan(self._client, self._layout, self._index, clock=clock,
                              orphan_upload_seconds=orphan_upload_seconds)  # fmt: skip
        cache = root / "cache" / config.name
        self.spool_dir = local_directory(cache / "spool", self.name)
        # A URL is reused for at most half its life, so a client always gets time to use it.
        reuse = min(SIGNED_URL_REUSE_SECONDS, settings.presign_expires / 2)
        self._downloads = DownloadCache(cache / "files", reuse_seconds=reuse)

    def __repr__(self) -> str:
        return f"S3Backend({self.name!r}, {self._client!r})"

    # --- auth ----------------------------------------------------------------------------------

    def authorize(self, secret: str) -> Permission:
        return permission_of_secret(secret, self.settings.read_secret, self.settings.write_secret)

    # --- the index -----------------------------------------------------------------------------

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        with s3_errors(self.name):
            return self._index.read_index(cursor if isinstance(cursor, Snapshot) else None)

    # --- uploads -------------------------------------------------------------------------------

    def put_many(
        self, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        return put_each(self, uploads, credential)

    def store_early(self, arriving: ArrivingFile) -> GrowingPut | GrowingUpload | None:
        """A large file is sent while it arrives, and finished by `put` only once verified
        (`If-None-Match: *`): its object carries the declared sha256 and is marked
        `PARTIAL_RECORD`, the rest of the record (from the wheel) being unknown yet. One PUT
        when its length is known (the form's last part), else parts."""
        if arriving.max_bytes <= self._client.multipart_threshold:
            return None  # one PUT after verification costs no more
        key = self._layout.file(arriving.project, arriving.filename)
        metadata = {"sha256": arriving.sha256, PARTIAL_RECORD: "1"}
        size = arriving.size_if_last
        if size is not None and 0 < size <= min(arriving.max_bytes, MAX_PUT_BYTES):
            return self._client.growing_put(
                key, arriving.path, size, sha256=arriving.sha256, create_only=True,
                metadata=metadata, content_type=CONTENT_TYPE,
            )  # fmt: skip
        return self._client.growing_upload(
            key, arriving.path, arriving.max_bytes, metadata=metadata, content_type=CONTENT_TYPE
        )

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        with s3_errors(self.name):
            return self._put(upload)

    def _put(self, upload: StagedUpload) -> FileRecord:
        """Store the file, then list it (see the module docstring for the steps)."""
        record = upload.record
        first = self._index.read(record.project)
        manifest = first[0]
        known = manifest.files.get(record.filename)
        deleted = manifest.deleted_sha256(record.filename)
        if known is None and deleted not in (None, record.sha256):
            raise DistributionExists(record.filename)  # a deleted name takes only its bytes
        if known is None:
            stored = self._store(upload)
            known = self._index.update(record.project, functools.partial(_listed, stored), first)
        if known.sha256 != record.sha256:
            raise DistributionExists(record.filename)
        return known

    def _store(self, upload: StagedUpload) -> FileRecord:
        """Write the file once; the record its object holds (ours, or one stored earlier)."""
        record = upload.record
        key = self._layout.file(record.project, record.filename)
        try:
            self._write_file(upload, key)
        except AlreadyExists:
            info = self._client.head(key)
            if info.metadata.get("sha256") != record.sha256:  # else our earlier try
                return self._stored_record(record, info)
        if upload.metadata is not None:
            metadata_key = self._layout.metadata(record.project, record.filename)
            with contextlib.suppress(AlreadyExists):  # our earlier try: the same bytes
                self._client.put(metadata_key, upload.metadata, create_only=True,
                                 content_type=CONTENT_TYPE)  # fmt: skip
        return record

    def _write_file(self, upload: StagedUpload, key: str) -> None:
        record = upload.record
        early = upload.early
        # Sent while the body arrived: the declared sha256 the object carries is the verified
        # one, or the pipeline would not have staged it.
        if isinstance(early, GrowingUpload) and early.key == key:
            early.complete({"If-None-Match": "*"})
            return
        if isinstance(early, GrowingPut) and early.key == key and early.complete() is not None:
            return  # else it was not sent whole (another length, a failure): sent now
        self._client.put_file(
            key, upload.path, sha256=record.sha256, create_only=True,
            metadata=object_metadata(record), content_type=CONTENT_TYPE,
        )  # fmt: skip

    def _stored_record(self, record: FileRecord, info: ObjectInfo) -> FileRecord:
        """Other bytes under the name, listed by the caller and then refused: a visible 409."""
        stored = record_from_head(
            record.filename, record.project, info.size, info.metadata, info.last_modified
        )
        if stored is not None:
            return stored
        if PARTIAL_RECORD not in info.metadata:  # stored by hand: update_index lists it
            raise DistributionExists(record.filename)
        # Stored early by an upload cut off before listing it: described from its bytes.
        item = ListedObject(info.key, info.size, info.etag, info.last_modified)
        described = self._rescan.describe(record.project, record.filename, item, self.spool_dir)
        if described is None:
            raise DistributionExists(record.filename)
        return described

    # --- yanks and deletes ---------------------------------------------------------------------

    def apply_change(self, event: Event, credential: str) -> None:
        with s3_errors(self.name):
            if isinstance(event, Add):
                raise StorageError("an Add is stored by put()")
            if isinstance(event, Yank):
                self._index.update(event.project, functools.partial(_yanked, event))
                return
            if isinstance(event, Status):  # PEP 792: kept in the project's manifest
                status = event
                self._index.update(event.project, lambda m: (m.with_status(status), None))
                return
            self._delete(event)

    def _delete(self, event: Delete) -> None:
        """Unlist first, then remove the objects: never a listed file without its bytes. An
        object left by a crash in between is finished by `update_index` (its tombstone)."""
        self._index.update(event.project, lambda m: (m.without_file(event.filename), None))
        key = self._layout.file(event.project, event.filename)
        metadata_key = self._layout.metadata(event.project, event.filename)
        self._client.delete(key)
        self._client.delete(metadata_key)
        self._downloads.forget(event.filename, key)
        self._downloads.forget(event.filename + ".metadata", metadata_key)

    # --- downloads -----------------------------------------------------------------------------

    def open(self, record: FileRecord) -> Download:
        with s3_errors(self.name):
            key = self._layout.file(record.project, record.filename)
            return self._open(record.filename, key, record.sha256, max(record.size, 0))

    def open_metadata(self, record: FileRecord) -> Download:
        with s3_errors(self.name):
            if record.metadata_sha256 is None:
                raise StorageNotFound(f"{record.filename!r} has no metadata file")
            key = self._layout.metadata(record.project, record.filename)
            return self._open(record.filename + ".metadata", key, record.metadata_sha256)

    def _open(self, name: str, key: str, sha256: str, size: int | None = None) -> Download:
        if self.download == "proxy":
            if size is None:  # a `.metadata` file: small, fetched whole
                fetch = functools.partial(self._client.stream, key)
                return self._downloads.local_copy(name, sha256, fetch)
            return self._relayed(name, key, sha256, size)
        url = self._downloads.signed_url(key, lambda: self._presign(key))
        assert url is not None  # _presign returns a URL or raises
        return Redirect(url)

    def _relayed(self, name: str, key: str, sha256: str, size: int) -> Streamed:
        """The object's GET, passed on as read, if it is the file the index lists."""
        info, stream = self._client.open(key)
        # No sha256 on an object stored by hand: `update_index` hashed it to list it.
        if info.size != size or info.metadata.get("sha256", sha256) != sha256:
            stream.close()
            raise StorageError(f"the stored {name!r} is not the file the index lists; not served")
        return Streamed(self._mapped(iter(stream)), size, stream.close)

    def _mapped(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """A download's chunks, with the store's errors mapped as every other call's."""
        with s3_errors(self.name):
            yield from chunks

    def _presign(self, key: str) -> str:
        self._client.head(key)  # a missing object is our 404, not a 403 at the client
        return self._client.presign(key, self.settings.presign_expires)

    # --- rebuild_index -------------------------------------------------------------------------

    def rebuild_index(self) -> RepairReport:
        """List the bucket, reconcile every manifest with it, abort orphan uploads."""
        with s3_errors(self.name):
            return self._rescan.run(self.spool_dir)

    # --- tokens ----------------------------------------------------------------------------

    def read_tokens(self) -> bytes:
        """Answered from the copy held when the last sync's LIST showed it unchanged."""
        with s3_errors(self.name):
            return self._index.read_tokens()

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        """By compare-and-swap, as the manifests: every server sees it at its next sync."""
        with s3_errors(self.name):
            self._index.update_tokens(change)

    def close(self) -> None:
        self._client.close()


def _listed(record: FileRecord, manifest: Manifest) -> tuple[Manifest, FileRecord]:
    """List `record`, unless the file is listed already (an earlier try, another server)."""
    known = manifest.files.get(record.filename)
    if known is not None:
        return manifest, known
    return manifest.with_file(record), record


def _yanked(event: Yank, manifest: Manifest) -> tuple[Manifest, None]:
    if event.filename not in manifest.files:
        raise StorageNotFound(f"{event.filename!r} is not stored")
    return manifest.with_yank(event.filename, event.reason), None


_: BackendType = S3Backend  # mypy --strict checks the class against the contract
