"""The backend contract: one suite every backend must pass.

A backend's test module provides the fixtures below and subclasses `BackendContract` in one line:

* `backend`: a fresh, empty backend whose repository secrets are `secrets`;
* `twin`: a second backend instance on the same store (a second server sharing it);
* `secrets`: (read secret, write secret) as the backend will check them;
* `credential`: what an upload presents to `put` and `record` (the write secret);
* `tamper`: a `Tamper` that changes the store behind the index's back, for `rebuild_index`.

Nothing here knows how a backend stores anything; downloads go through `fetch`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import pytest
from factory import make_sdist
from factory import make_wheel

from pywharf.auth import Permission
from pywharf.backends import ArrivingFile
from pywharf.backends import Backend
from pywharf.backends import Download
from pywharf.backends import LocalFile
from pywharf.backends import StagedUpload
from pywharf.backends import Streamed
from pywharf.dists import parse_filename
from pywharf.errors import ConfigError
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Status
from pywharf.index import Yank
from pywharf.metadata import read_wheel_metadata

__all__ = ["BackendContract", "Tamper", "fetch", "stage"]


class Tamper(Protocol):
    """Changes made to a store by hand, behind the index (what `rebuild_index` must find)."""

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        """Put a file into the store the way a person copying it by hand would."""

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        """Take a stored file away without telling the index."""

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        """Make what the store says of a file disagree with what the index says."""


def stage(backend: Backend, path: Path, **form: str) -> StagedUpload:
    """A verified upload of `path`, spooled where the backend wants it, as `upload.py` makes it."""
    distribution = parse_filename(path.name)
    spool = Path(backend.spool_dir) / f"upload-{os.getpid()}-{uuid.uuid4().hex}"
    shutil.copyfile(path, spool)
    data = path.read_bytes()
    metadata = None
    requires_python = form.get("requires_python")
    if distribution.kind == "wheel":
        core = read_wheel_metadata(spool, distribution)
        metadata, requires_python = core.raw, core.requires_python
    record = FileRecord(
        filename=path.name,
        project=distribution.project,
        version=distribution.version,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        upload_time=time.time(),
        requires_python=requires_python,
        metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata is not None else None,
    )
    fields = {"name": str(distribution.project), "version": distribution.version, **form}
    return StagedUpload(spool, record, metadata, fields)


def fetch(download: Download) -> bytes:
    """The bytes a download points at, wherever they are."""
    if isinstance(download, Streamed):
        try:
            data = b"".join(download.chunks)
        finally:
            download.close()
        assert len(data) == download.size
        return data
    if isinstance(download, LocalFile):
        with open(download.path, "rb") as file:
            data = file.read()
        assert len(data) == download.size
        return data
    with urllib.request.urlopen(download.url, timeout=10) as response:
        body: bytes = response.read()
        return body


def index_of(backend: Backend) -> Index:
    """The index a server would build from scratch from this backend."""
    update = backend.read_index(None)
    assert update is not None, "read_index(None) must always answer"
    assert update.replace, "read_index(None) is the whole index"
    index = Index()
    index.replace_all(update.events, update.base)
    return index


class BackendContract:
    """Every backend passes these. Subclass it and provide the fixtures in the module doc."""

    # Whether the backend keeps pywharf tokens (GitHub does not: its own tokens decide).
    keeps_tokens = True

    @pytest.fixture
    def dists(self, tmp_path: Path) -> dict[str, Path]:
        folder = tmp_path / "contract-dists"
        folder.mkdir()
        return {
            "wheel": make_wheel(folder, "demo-pkg", "1.0", requires_python=">=3.8"),
            "wheel2": make_wheel(folder, "demo-pkg", "2.0"),
            "sdist": make_sdist(folder, "demo-pkg", "1.0"),
            "other": make_wheel(folder, "other-pkg", "0.1"),
        }

    def impostor(self, tmp_path: Path) -> Path:
        """The name of `dists["wheel"]` with other bytes."""
        folder = tmp_path / "impostor"
        folder.mkdir()
        return make_wheel(folder, "demo-pkg", "1.0", payload_bytes=64)

    def put(self, backend: Backend, credential: str, path: Path, **form: str) -> FileRecord:
        upload = stage(backend, path, **form)
        try:
            return backend.put(upload, credential)
        finally:
            upload.path.unlink(missing_ok=True)

    # --- auth ----------------------------------------------------------------------------------

    def test_authorize_by_secret(self, backend: Backend, secrets: tuple[str, str]) -> None:
        read, write = secrets
        assert backend.authorize(write) == Permission.WRITE
        assert backend.authorize(read) == Permission.READ
        assert backend.authorize("wrong") == Permission.NONE
        assert backend.authorize("") == Permission.NONE
        assert backend.authorize(write + "x") == Permission.NONE

    # --- the index -----------------------------------------------------------------------------

    def test_a_new_backend_has_an_empty_index(self, backend: Backend) -> None:
        update = backend.read_index(None)
        assert update is not None
        assert update.replace
        assert update.events == ()
        assert backend.read_index(update.cursor) is None

    def test_put_then_read_index_round_trip(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        start = backend.read_index(None)
        assert start is not None
        stored = self.put(backend, credential, dists["wheel"])
        assert stored.sha256 == hashlib.sha256(dists["wheel"].read_bytes()).hexdigest()
        assert stored.size == dists["wheel"].stat().st_size
        assert stored.requires_python == ">=3.8"
        assert stored.metadata_sha256 is not None
        since = backend.read_index(start.cursor)
        assert since is not None
        assert since.events == (Add(stored),)  # new events, or (replace) the whole index
        assert backend.read_index(since.cursor) is None  # unchanged: None, cheaply
        assert index_of(backend).records() == [stored]

    def test_a_file_begun_early_then_aborted_leaves_nothing(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        """`store_early` (None, or a store the pipeline feeds and always aborts at the end)."""
        upload = stage(backend, dists["wheel"])
        record = upload.record
        arriving = ArrivingFile(upload.path, record.project, record.filename, record.sha256,
                                record.size)  # fmt: skip
        early = backend.store_early(arriving)
        if early is not None:
            early.ended(record.size)
            early.abort()
        upload.path.unlink()
        assert index_of(backend).records() == []
        assert self.put(backend, credential, dists["wheel"]) == index_of(backend).records()[0]

    def test_events_since_a_cursor_are_only_the_new_ones(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        first = self.put(backend, credential, dists["wheel"])
        middle = backend.read_index(None)
        assert middle is not None
        second = self.put(backend, credential, dists["sdist"])
        third = self.put(backend, credential, dists["other"])
        since = backend.read_index(middle.cursor)
        assert since is not None
        assert not since.replace  # a reader that is up to date gets only what is new
        assert since.events == (Add(second), Add(third))
        assert {r.filename for r in index_of(backend).records()} == {
            first.filename,
            second.filename,
            third.filename,
        }

    def test_an_identical_put_returns_the_stored_record(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        stored = self.put(backend, credential, dists["sdist"])
        before = backend.read_index(None)
        assert before is not None
        again = self.put(backend, credential, dists["sdist"])
        assert again == stored  # the stored record, upload time included
        assert backend.read_index(before.cursor) is None  # and no new event

    def test_other_bytes_under_a_stored_filename_raise_distribution_exists(
        self, backend: Backend, credential: str, dists: dict[str, Path], tmp_path: Path
    ) -> None:
        stored = self.put(backend, credential, dists["wheel"])
        impostor = self.impostor(tmp_path)
        assert impostor.name == stored.filename
        with pytest.raises(DistributionExists) as caught:
            self.put(backend, credential, impostor)
        assert caught.value.status == 409
        assert str(caught.value).startswith("File already exists")
        assert fetch(backend.open(stored)) == dists["wheel"].read_bytes()
        assert index_of(backend).records() == [stored]

    def test_concurrent_puts_of_one_filename_have_one_winner(
        self, backend: Backend, credential: str, tmp_path: Path
    ) -> None:
        variants = []
        for n in range(6):
            folder = tmp_path / f"variant-{n}"
            folder.mkdir()
            variants.append(make_wheel(folder, "demo-pkg", "1.0", payload_bytes=8 + n))
        barrier = threading.Barrier(len(variants))

        def attempt(path: Path) -> str:
            upload = stage(backend, path)
            barrier.wait(5)
            try:
                backend.put(upload, credential)
                return "stored"
            except DistributionExists:
                return "exists"
            finally:
                upload.path.unlink(missing_ok=True)

        with ThreadPoolExecutor(len(variants)) as pool:
            results = list(pool.map(attempt, variants))
        assert sorted(results) == ["exists"] * 5 + ["stored"]
        winner = variants[results.index("stored")]
        (record,) = index_of(backend).records()
        assert fetch(backend.open(record)) == winner.read_bytes()

    def test_concurrent_puts_of_many_files_lose_nothing(
        self, backend: Backend, credential: str, tmp_path: Path
    ) -> None:
        folder = tmp_path / "many"
        folder.mkdir()
        paths = [make_wheel(folder, f"proj-{n % 5}", f"1.{n}") for n in range(30)]
        with ThreadPoolExecutor(10) as pool:
            stored = list(pool.map(lambda p: self.put(backend, credential, p), paths))
        assert {r.filename for r in index_of(backend).records()} == {p.name for p in paths}
        assert len(index_of(backend)) == len(stored) == 30

    def test_put_many_stores_each_file_as_put_would_and_refuses_only_other_bytes(
        self, backend: Backend, credential: str, dists: dict[str, Path], tmp_path: Path
    ) -> None:
        stored = self.put(backend, credential, dists["wheel"])
        impostor = self.impostor(tmp_path)
        start = backend.read_index(None)
        assert start is not None
        paths = [dists["sdist"], dists["wheel"], impostor, dists["other"], dists["sdist"]]
        uploads = [stage(backend, path) for path in paths]
        try:
            results = backend.put_many(uploads, credential)
        finally:
            for upload in uploads:
                upload.path.unlink(missing_ok=True)
        sdist, wheel, refused, other, sdist_again = results
        assert isinstance(refused, DistributionExists) and refused.status == 409
        assert wheel == stored  # identical bytes: the stored record
        assert sdist_again == sdist  # twice in one batch: stored once
        assert isinstance(sdist, FileRecord) and isinstance(other, FileRecord)
        since = backend.read_index(start.cursor)
        assert since is not None
        assert {e.record.filename for e in since.events if isinstance(e, Add)} >= {
            sdist.filename,
            other.filename,
        }
        assert {r.filename for r in index_of(backend).records()} == {
            stored.filename,
            sdist.filename,
            other.filename,
        }
        assert fetch(backend.open(stored)) == dists["wheel"].read_bytes()
        assert fetch(backend.open(other)) == dists["other"].read_bytes()
        assert backend.put_many([], credential) == []

    # --- downloads -----------------------------------------------------------------------------

    def test_open_gives_the_stored_bytes(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        for path in dists.values():
            record = self.put(backend, credential, path)
            assert fetch(backend.open(record)) == path.read_bytes()

    def test_a_backend_that_reads_locally_never_streams_a_download(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        """`reads_locally` lets the connection loop answer downloads: a stream would make it
        wait on a network."""
        assert isinstance(backend.reads_locally, bool)
        record = self.put(backend, credential, dists["wheel"])
        for download in (backend.open(record), backend.open_metadata(record)):
            if isinstance(download, Streamed):
                download.close()
                assert not backend.reads_locally

    def test_open_metadata_gives_the_wheel_metadata(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = self.put(backend, credential, dists["wheel"])
        metadata = fetch(backend.open_metadata(record))
        assert hashlib.sha256(metadata).hexdigest() == record.metadata_sha256
        assert b"Name: demo-pkg" in metadata

    def test_open_of_a_missing_file_is_a_storage_error(
        self, backend: Backend, dists: dict[str, Path]
    ) -> None:
        record = stage(backend, dists["sdist"]).record
        with pytest.raises(StorageError) as caught:
            download = backend.open(record)
            fetch(download)  # a redirecting backend may only fail when the URL is followed
        assert caught.value.status == 404

    # --- yank and delete -----------------------------------------------------------------------

    def test_yank_and_unyank(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = self.put(backend, credential, dists["wheel"])
        before = backend.read_index(None)
        assert before is not None
        backend.apply_change(Yank(record.project, record.filename, "broken build"), credential)
        since = backend.read_index(before.cursor)
        assert since is not None and since.events
        assert index_of(backend).file(record.project, record.filename).yanked == "broken build"  # type: ignore[union-attr]
        backend.apply_change(Yank(record.project, record.filename, None), credential)
        assert index_of(backend).file(record.project, record.filename).yanked is None  # type: ignore[union-attr]
        assert fetch(backend.open(record)) == dists["wheel"].read_bytes()  # still served

    def test_a_yank_without_a_reason(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = self.put(backend, credential, dists["sdist"])
        backend.apply_change(Yank(record.project, record.filename, ""), credential)
        assert index_of(backend).file(record.project, record.filename).yanked == ""  # type: ignore[union-attr]

    def test_delete(self, backend: Backend, credential: str, dists: dict[str, Path]) -> None:
        record = self.put(backend, credential, dists["wheel"])
        kept = self.put(backend, credential, dists["wheel2"])
        backend.apply_change(Delete(record.project, record.filename), credential)
        index = index_of(backend)
        assert index.file(record.project, record.filename) is None
        assert index.deleted_sha256(record.filename) == record.sha256
        assert index.records() == [kept]
        with pytest.raises(StorageError):
            fetch(backend.open(record))

    def test_a_deleted_filename_can_take_the_same_bytes_again(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = self.put(backend, credential, dists["sdist"])
        backend.apply_change(Delete(record.project, record.filename), credential)
        again = self.put(backend, credential, dists["sdist"])
        assert again.sha256 == record.sha256
        assert index_of(backend).file(record.project, record.filename) is not None

    def test_yank_of_a_missing_file_is_a_storage_error(
        self, backend: Backend, credential: str
    ) -> None:
        with pytest.raises(StorageError):
            backend.apply_change(Yank("nope", "nope-1.0.tar.gz", "x"), credential)  # type: ignore[arg-type]

    def test_apply_change_refuses_an_add(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = stage(backend, dists["sdist"]).record
        with pytest.raises(StorageError):
            backend.apply_change(Add(record), credential)

    # --- PEP 792 status and PEP 740 provenance: kept with the index ---------------------------

    def test_a_project_status_survives_a_reload_a_twin_and_a_rebuild(
        self, backend: Backend, twin: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        record = self.put(backend, credential, dists["wheel"])
        theirs = twin.read_index(None)
        assert theirs is not None
        archived = Status(record.project, "archived", "moved to acme-tools")
        backend.apply_change(archived, credential)
        project = index_of(backend).project(record.project)
        assert project is not None and project.status == archived
        update = twin.read_index(theirs.cursor)  # a second server follows the change
        assert update is not None and archived in update.events
        backend.rebuild_index()  # a status is no file: a rescan must carry it over
        assert index_of(backend).statuses() == [archived]
        backend.apply_change(Status(record.project, "active"), credential)
        assert index_of(backend).statuses() == []
        backend.rebuild_index()
        assert index_of(backend).statuses() == []

    def test_provenance_is_kept_with_the_file_through_a_rebuild(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        upload = stage(backend, dists["wheel"])
        provenance = '{"version":1,"attestation_bundles":[]}'
        upload = StagedUpload(
            upload.path, upload.record._replace(provenance=provenance), upload.metadata, {}
        )
        try:
            record = backend.put(upload, credential)
        finally:
            upload.path.unlink(missing_ok=True)
        assert index_of(backend).file(record.project, record.filename) == record
        assert record.provenance == provenance
        backend.rebuild_index()
        found = index_of(backend).file(record.project, record.filename)
        assert found is not None and found.provenance == provenance

    # --- rebuild_index -------------------------------------------------------------------------

    def test_rebuild_of_a_consistent_store_changes_nothing(
        self, backend: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        stored = {self.put(backend, credential, p).filename for p in dists.values()}
        before = {r.filename: r for r in index_of(backend).records()}
        report = backend.rebuild_index()
        assert (report.added, report.removed, report.repaired) == ([], [], [])
        assert report.total == len(stored)
        assert {r.filename: r for r in index_of(backend).records()} == before
        assert report.lines()[-1].startswith(f"{len(stored)} files indexed, 0 changes")

    def test_rebuild_finds_added_removed_and_damaged_files(
        self,
        backend: Backend,
        credential: str,
        dists: dict[str, Path],
        tamper: Tamper,
        tmp_path: Path,
    ) -> None:
        kept = self.put(backend, credential, dists["wheel"])
        gone = self.put(backend, credential, dists["sdist"])
        damaged = self.put(backend, credential, dists["other"])
        folder = tmp_path / "by-hand"
        folder.mkdir()
        by_hand = make_wheel(folder, "hand-made", "3.0")
        tamper.add_behind(backend, by_hand.name, by_hand.read_bytes())
        tamper.remove_behind(backend, gone)
        tamper.damage_behind(backend, damaged)
        report = backend.rebuild_index()
        assert report.added == [by_hand.name]
        assert report.removed == [gone.filename]
        assert report.repaired == [damaged.filename]
        assert report.total == 3
        index = index_of(backend)
        assert {r.filename for r in index.records()} == {
            kept.filename,
            damaged.filename,
            by_hand.name,
        }
        found = index.file("hand-made", by_hand.name)  # type: ignore[arg-type]
        assert found is not None
        assert found.sha256 == hashlib.sha256(by_hand.read_bytes()).hexdigest()
        assert fetch(backend.open(found)) == by_hand.read_bytes()
        assert backend.rebuild_index().added == []  # a second rebuild finds nothing new

    def test_a_reader_following_a_rebuild_gets_the_whole_index(
        self, backend: Backend, credential: str, dists: dict[str, Path], tamper: Tamper
    ) -> None:
        self.put(backend, credential, dists["wheel"])
        cursor = backend.read_index(None)
        assert cursor is not None
        tamper.add_behind(backend, dists["sdist"].name, dists["sdist"].read_bytes())
        backend.rebuild_index()
        update = backend.read_index(cursor.cursor)
        assert update is not None
        index = Index()
        if update.replace:
            index.replace_all(update.events, update.base)
        else:
            index.replace_all(cursor.events, cursor.base)
            index.apply(update.events)
        assert {r.filename for r in index.records()} == {
            dists["wheel"].name,
            dists["sdist"].name,
        }

    # --- a shared store ------------------------------------------------------------------------

    def test_two_instances_on_one_store_see_each_other(
        self, backend: Backend, twin: Backend, credential: str, dists: dict[str, Path]
    ) -> None:
        mine = backend.read_index(None)
        theirs = twin.read_index(None)
        assert mine is not None and theirs is not None
        stored = self.put(backend, credential, dists["wheel"])
        update = twin.read_index(theirs.cursor)
        assert update is not None
        assert Add(stored) in update.events
        other = self.put(twin, credential, dists["sdist"])
        update = backend.read_index(mine.cursor)
        assert update is not None
        assert {e.record.filename for e in update.events if isinstance(e, Add)} == {
            stored.filename,
            other.filename,
        }
        self.put(twin, credential, dists["other"])
        with pytest.raises(DistributionExists):  # one store, one truth per filename
            self.put(backend, credential, _impostor_of(dists["other"]))
        assert fetch(twin.open(stored)) == dists["wheel"].read_bytes()


def _impostor_of(path: Path) -> Path:
    folder = path.parent / f"impostor-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    name, version = path.name.split("-")[:2]
    impostor = make_wheel(folder, name, version, payload_bytes=32)
    assert impostor.name == path.name
    return impostor

    # --- tokens (pywharf.tokens keeps its document through these) ------------------------------

    def test_the_token_document_is_shared_and_a_refused_change_writes_nothing(
        self, backend: Backend, twin: Backend
    ) -> None:
        assert backend.read_tokens() == b""
        if not self.keeps_tokens:
            with pytest.raises(ConfigError):
                backend.update_tokens(lambda document: document + b"x")
            return
        backend.update_tokens(lambda document: document + b'{"a": 1}')
        assert twin.read_tokens() == b'{"a": 1}'  # another server sees it

        def refuse(document: bytes) -> bytes:
            raise ConfigError("no such token")

        with pytest.raises(ConfigError):
            twin.update_tokens(refuse)
        assert backend.read_tokens() == b'{"a": 1}'

    def test_concurrent_token_changes_are_all_kept(self, backend: Backend, twin: Backend) -> None:
        if not self.keeps_tokens:
            return
        lines = [f"{n}\n".encode() for n in range(8)]
        with ThreadPoolExecutor(4) as pool:
            for n, line in enumerate(lines):
                target = backend if n % 2 else twin
                pool.submit(target.update_tokens, lambda document, line=line: document + line)
        assert sorted(backend.read_tokens().splitlines(keepends=True)) == sorted(lines)
