"""The upload pipeline (legacy upload API): stream, hash, verify, then hand over to the backend.

The body is read in chunks and parsed as it arrives; the file goes straight to a spool file on
the backend's file system while being hashed, so memory stays flat whatever the file size.
Nothing becomes visible until the file is complete and verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import ExitStack
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from pathlib import Path
from typing import Any
from typing import BinaryIO
from typing import Optional

from pywharf import multipart
from pywharf.backends import ArrivingFile
from pywharf.backends import EarlyStore
from pywharf.backends import StagedUpload
from pywharf.backends.atomic import leased_file
from pywharf.backends.atomic import write_all
from pywharf.dists import Distribution
from pywharf.dists import check_storable_filename
from pywharf.dists import normalize_project_name
from pywharf.dists import parse_filename
from pywharf.dists import same_version
from pywharf.errors import BadRequest
from pywharf.errors import Gone
from pywharf.errors import InvalidFilename
from pywharf.errors import LengthRequired
from pywharf.errors import MalformedRequest
from pywharf.errors import PayloadTooLarge
from pywharf.errors import storage_error
from pywharf.http import Request
from pywharf.index import FileRecord
from pywharf.metadata import read_wheel_metadata
from pywharf.provenance import parse_attestations
from pywharf.provenance import provenance_json

__all__ = ["Spools", "receive_upload"]

READ_CHUNK_BYTES = 256 * 1024
# Above this, digests are updated on their own thread; below, a thread costs more than it saves.
THREADED_HASHING_BYTES = 8 * 1024 * 1024
FLUSH_BYTES = 64 * 1024 * 1024  # above THREADED_HASHING_BYTES, a large file is flushed this often
_HASH_QUEUE_CHUNKS = 2  # chunks of READ_CHUNK_BYTES waiting to be hashed: bounds the memory
# Room for the form fields around the file (a README description can be a few MiB).
FORM_ALLOWANCE_BYTES = 32 * 1024 * 1024
# Warehouse's digest fields; blake2_256 is blake2b with a 32-byte digest.
_DIGESTS: dict[str, Callable[[], Any]] = {
    "sha256_digest": hashlib.sha256,
    "blake2_256_digest": lambda: hashlib.blake2b(digest_size=32),
    "md5_digest": lambda: hashlib.md5(usedforsecurity=False),
}
_RETIRED_ACTIONS = {"submit", "submit_pkg_info", "doc_upload", "remove_pkg", "file_upload_legacy"}
# Lean metadata: the original kept every field, README bodies included, in its index.
_NOT_KEPT = {"content", "description", ":action", "protocol_version", "attestations"}
_HEX = frozenset("0123456789abcdef")
# What a repository offers to store a file while it arrives (`Repository.store_early`).
StartEarly = Callable[[ArrivingFile], Optional[EarlyStore]]  # a runtime alias: no `|` on 3.9


class Spools:
    """The spool files of uploads in progress, so a shutdown can discard them.

    Each is `upload-<instance>-<uuid>`, leased (`atomic.leased_file`) for as long as its upload
    runs: the backend's start-up sweep removes only spool files whose process is gone.
    """

    def __init__(self) -> None:
        self._active: set[Path] = set()
        self._lock = threading.Lock()

    @contextmanager
    def new(self, directory: Path) -> Iterator[tuple[Path, BinaryIO]]:
        with ExitStack() as stack:
            try:
                path, file = stack.enter_context(leased_file(directory, "upload"))
            except OSError as error:  # only here: an OSError of the block is the socket's
                raise storage_error("cannot spool the upload", error) from None
            with self._lock:
                self._active.add(path)
            try:
                yield path, file
            finally:
                with self._lock:
                    self._active.discard(path)

    def discard_all(self) -> None:
        with self._lock:
            for path in self._active:
                path.unlink(missing_ok=True)


class _Digests:
    """The digests of the file, updated as its bytes arrive.

    For a large file they are updated on a second thread: hashlib releases the GIL on large
    buffers, so hashing overlaps receiving and writing (inline, a 1 GiB upload is hash-bound).
    """

    def __init__(self, names: set[str], threaded: bool) -> None:
        self.by_name = {name: _DIGESTS[name]() for name in names}
        self._queue: queue.Queue[bytes | None] | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=_HASH_QUEUE_CHUNKS)
            self._thread = threading.Thread(target=self._run, name="upload-hash", daemon=True)
            self._thread.start()

    def update(self, data: bytes) -> None:
        if self._queue is not None:
            self._queue.put(data)
            return
        for digest in self.by_name.values():
            digest.update(data)

    def finish(self) -> None:
        """Wait for the hashing thread (also on failure: it must not outlive the upload)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None

    def _run(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            for digest in self.by_name.values():
                digest.update(data)


class _Flusher:
    """Starts the disk on a large file's bytes while the rest arrives: every `FLUSH_BYTES`
    written, a helper thread runs `fdatasync`, so the `fsync` before the answer finds little
    left to write. Measured here: a 1 GiB file's fsync alone took 0.29 to 0.36 s; a 1 GiB
    upload, in turns with the build before, three runs of 6 rounds: medians 693, 615 and 740
    MB/s before, 812, 820 and 777 after (faster in 11 of the 12 rounds of the last two)."""

    def __init__(self, descriptor: int) -> None:
        self._descriptor = descriptor
        self._next = FLUSH_BYTES
        self._due: queue.Queue[bool] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="upload-flush", daemon=True)
        self._thread.start()

    def written(self, size: int) -> None:
        if size >= self._next:
            self._next = size + FLUSH_BYTES
            with contextlib.suppress(queue.Full):  # one is running: it takes these bytes too
                self._due.put_nowait(True)

    def finish(self) -> None:
        self._due.put(False)
        self._thread.join()

    def _run(self) -> None:
        while self._due.get():
            with contextlib.suppress(OSError):  # the fsync before the answer reports it
                os.fdatasync(self._descriptor)


@dataclass
class _Form:
    spool: Path
    start_early: StartEarly | None = None
    durable: bool = True  # the spool file is synced before it is stored
    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    size: int = 0
    hashes: _Digests = field(default_factory=lambda: _Digests(set(), threaded=False))
    threaded_hashing: bool = False
    length: int = 0  # the request's Content-Length: the most the file can be
    unread: int = 0  # the body's bytes not read yet
    early: EarlyStore | None = None  # the file, stored while it arrives
    flusher: _Flusher | None = None

    def first(self, name: str) -> str:
        values = self.fields.get(name)
        return values[0].strip() if values else ""


def _body_chunks(request: Request, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        chunk = request.body.read(min(READ_CHUNK_BYTES, remaining))
        if not chunk:
            raise MalformedRequest(f"the body ended after {length - remaining} of {length} bytes")
        remaining -= len(chunk)
        yield chunk


def _check_length(request: Request, max_file_bytes: int) -> int:
    if request.content_length is None:
        raise LengthRequired("an upload needs a Content-Length (chunked bodies are not accepted)")
    if request.content_length > max_file_bytes + FORM_ALLOWANCE_BYTES:
        raise PayloadTooLarge(f"the upload is over the limit of {max_file_bytes} bytes per file")
    return request.content_length


def _start_file(form: _Form, event: multipart.File, size_if_last: int) -> None:
    if form.filename is not None:
        raise BadRequest("the upload has more than one 'content' file")
    check_storable_filename(event.filename)  # before its bytes are received
    form.filename = event.filename
    # Hash in the same pass as the write; digests whose fields come after the file are
    # computed afterwards from the spool file (twine and uv send the fields first).
    names = {"sha256_digest"} | (form.fields.keys() & _DIGESTS.keys())
    form.hashes = _Digests(names, form.threaded_hashing)
    arriving = _arriving(form, event.filename, size_if_last)
    if arriving is not None and form.start_early is not None:
        form.early = form.start_early(arriving)


def _arriving(form: _Form, filename: str, size_if_last: int) -> ArrivingFile | None:
    """The file as far as the fields before it tell (None: too little to store it early).

    Only with a sha256 declared first (twine and uv send it first): the store must know the
    bytes it will hold; they are checked against it before the upload is completed."""
    sha256 = [value.strip().lower() for value in form.fields.get("sha256_digest", [])]
    name = form.first("name")
    if len(set(sha256)) != 1 or len(sha256[0]) != 64 or not _HEX.issuperset(sha256[0]):
        return None
    if not name:
        return None
    try:
        distribution = parse_filename(filename, project=name)
    except InvalidFilename:
        return None  # refused with its reason once the upload is checked
    if distribution.project != normalize_project_name(name):
        return None
    return ArrivingFile(
        form.spool, distribution.project, filename, sha256[0], form.length, size_if_last
    )


def _receive(request: Request, sink: BinaryIO, max_file_bytes: int, form: _Form) -> None:
    length = _check_length(request, max_file_bytes)
    boundary = multipart.parse_boundary(request.header("content-type"))
    limits = replace(multipart.UPLOAD_LIMITS, max_file_bytes=max_file_bytes)
    decoder = multipart.MultipartDecoder(boundary, limits)
    form.threaded_hashing = length >= THREADED_HASHING_BYTES
    form.length = form.unread = length
    if form.threaded_hashing and form.durable:
        form.flusher = _Flusher(sink.fileno())
    in_content = False
    try:
        for chunk in _body_chunks(request, length):
            form.unread -= len(chunk)
            decoder.feed(chunk)
            in_content = _drain(decoder, form, sink, in_content)
        decoder.end()
        _drain(decoder, form, sink, in_content)
        if form.durable:
            _spool(os.fsync, sink.fileno())  # the file is durable before anything points at it
        if form.early is not None:
            form.early.ended(form.size)
    finally:
        form.hashes.finish()
        if form.flusher is not None:
            form.flusher.finish()


def _drain(
    decoder: multipart.MultipartDecoder, form: _Form, sink: BinaryIO, in_content: bool
) -> bool:
    while True:
        event = decoder.next_event()
        if event is multipart.NEED_DATA or isinstance(event, multipart.End):
            return in_content
        if isinstance(event, multipart.Field):
            form.fields.setdefault(event.name, []).append(event.value)
        elif isinstance(event, multipart.File):
            in_content = event.name == "content"  # gpg_signature and others are not kept
            if in_content:
                _start_file(form, event, decoder.size_if_last(form.unread))
        elif in_content and isinstance(event, multipart.Data):
            _spool(write_all, sink, event.data)
            form.size += len(event.data)
            form.hashes.update(event.data)
            if form.flusher is not None:
                form.flusher.written(form.size)
            if form.early is not None:
                form.early.grew(form.size)


def _spool(write: Callable[..., None], *args: Any) -> None:
    """A write to the spool file: its `OSError` (a full disk: 507) is the storage's, while one
    from the socket is the client's going away."""
    try:
        write(*args)
    except OSError as error:
        raise storage_error("cannot spool the upload", error) from None


def _check_action(form: _Form) -> None:
    action = form.first(":action")
    if action in _RETIRED_ACTIONS:
        raise Gone(f":action={action} is no longer supported; upload with :action=file_upload")
    if action != "file_upload":
        raise BadRequest(f"expected :action=file_upload, got {action!r}")
    if form.first("protocol_version") not in ("", "1"):
        raise BadRequest("Unknown protocol version.")


def _check_distribution(form: _Form) -> Distribution:
    if form.filename is None:
        raise BadRequest("Upload payload does not have a file (no 'content' part).")
    name, version = form.first("name"), form.first("version")
    if not name or not version:
        raise BadRequest("the upload needs the 'name' and 'version' fields")
    distribution = parse_filename(form.filename, project=name)
    if distribution.project != normalize_project_name(name):
        raise BadRequest(f"{form.filename!r} is not a file of project {name!r}")
    if not same_version(distribution.version, version):
        raise BadRequest(f"{form.filename!r} is not version {version!r}")
    filetype = form.first("filetype")
    expected = "bdist_wheel" if distribution.kind == "wheel" else "sdist"
    if filetype and filetype != expected:
        raise BadRequest(f"filetype {filetype!r} does not fit {form.filename!r} ({expected})")
    return distribution


def _check_digests(form: _Form, spool: Path) -> str:
    """Verify every digest the client sent; returns our own sha256."""
    late = {
        n: _DIGESTS[n]()
        for n in form.fields.keys() & _DIGESTS.keys()
        if n not in form.hashes.by_name
    }
    if late:
        with spool.open("rb") as file:
            while chunk := file.read(READ_CHUNK_BYTES):
                for digest in late.values():
                    digest.update(chunk)
    computed = {**form.hashes.by_name, **late}
    for name in form.fields.keys() & _DIGESTS.keys():
        for sent in form.fields[name]:  # a field sent twice: every value must match
            if sent.strip() and sent.strip().lower() != computed[name].hexdigest():
                raise BadRequest(
                    f"The {name} supplied does not match the one calculated from the uploaded file."
                )
    sha256: str = computed["sha256_digest"].hexdigest()
    return sha256


def _provenance(form: _Form, filename: str, sha256: str, by: dict[str, Any]) -> str | None:
    """PEP 740: the provenance object of the upload's attestations (None: it sent none)."""
    text = form.first("attestations")
    attestations = parse_attestations(text, filename, sha256) if text else []
    return provenance_json(attestations, by) if attestations else None


def _stage(form: _Form, spool: Path, by: dict[str, Any]) -> StagedUpload:
    _check_action(form)
    distribution = _check_distribution(form)
    sha256 = _check_digests(form, spool)
    provenance = _provenance(form, distribution.filename, sha256, by)
    requires_python = form.first("requires_python")
    metadata = None
    if distribution.kind == "wheel":
        core = read_wheel_metadata(spool, distribution)
        metadata = core.raw
        requires_python = (core.requires_python or "").strip()  # the artifact beats the form
    record = FileRecord(
        filename=distribution.filename,
        project=distribution.project,
        version=distribution.version,
        sha256=sha256,
        size=form.size,
        upload_time=time.time(),
        requires_python=requires_python if requires_python not in ("", "UNKNOWN") else None,
        metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata is not None else None,
        summary=form.first("summary") or None,
        provenance=provenance,
    )
    kept = {k: v[0] for k, v in form.fields.items() if k not in _NOT_KEPT and v[0] != "UNKNOWN"}
    return StagedUpload(spool, record, metadata, kept, form.early)


@contextmanager
def receive_upload(
    request: Request,
    spool_dir: Path,
    max_file_bytes: int,
    spools: Spools,
    by: dict[str, Any],
    start_early: StartEarly | None = None,
    *,
    durable: bool = True,
) -> Iterator[StagedUpload]:
    """Receive and verify an upload; the spool file lives until the `with` block ends.

    `by` is the PEP 740 publisher its attestations are served with. `start_early` may begin
    storing the file while it arrives; whatever the block did not finish is aborted. A
    `durable` spool file is synced before the block: the backend keeps the file itself. Else
    it is only read, and its pages, never synced, need never reach the disk: the store's write
    is the durable one (measured, a 1 GiB upload to a local SeaweedFS: 2,055 MiB reached the
    disk with the sync, 1,102 without; the upload's speed was the same).
    """
    with spools.new(spool_dir) as (spool, sink):
        form = _Form(spool, start_early, durable)
        try:
            _receive(request, sink, max_file_bytes, form)
            yield _stage(form, spool, by)
        finally:
            if form.early is not None:
                form.early.abort()
