"""The read model: `Index` events, and the regression guard that keeps scans out of requests.

The guard is not a timing test: it counts. A page is rendered once per change of what it shows,
served from bytes afterwards, and no request lists or re-reads the backend (issue 6, item 3).
"""

from __future__ import annotations

import copy
import os
import pickle
import random
import sys
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from factory import make_sdist
from factory import make_wheel
from packaging.utils import NormalizedName
from support import build_app
from support_upload import app_get
from support_upload import app_upload

import pywharf.index
from pywharf.app import App
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Listing
from pywharf.index import Yank
from pywharf.index import event_from_json
from pywharf.index import event_to_json
from pywharf.repository import Repository


def record(filename: str, project: str = "foo", version: str = "1.0", sha: str = "a") -> FileRecord:
    return FileRecord(
        filename=filename,
        project=project,  # type: ignore[arg-type]
        version=version,
        sha256=sha * 64,
        size=10,
        upload_time=1_600_000_000.0,
    )


A1 = record("foo-1.0.tar.gz")
A2 = record("foo-2.0.tar.gz", version="2.0", sha="b")
B1 = record("bar-1.0.tar.gz", project="bar", sha="c")


# --- Index -------------------------------------------------------------------------------------


def test_an_index_built_from_records_lists_them_sorted() -> None:
    index = Index([A2, B1, A1])
    assert list(index.listing.names) == ["bar", "foo"]  # a tuple compare: mypy narrowed it
    project = index.project("foo")  # type: ignore[arg-type]
    assert project is not None
    assert [r.filename for r in project.files] == ["foo-1.0.tar.gz", "foo-2.0.tar.gz"]
    assert index.file("foo", "foo-2.0.tar.gz") == A2  # type: ignore[arg-type]
    assert index.file("foo", "nope.tar.gz") is None  # type: ignore[arg-type]
    assert index.file("nope", "foo-1.0.tar.gz") is None  # type: ignore[arg-type]
    assert len(index) == 3
    assert sorted(index.records(), key=lambda r: r.filename) == [B1, A1, A2]


def test_apply_says_whether_anything_changed() -> None:
    index = Index()
    assert index.apply([Add(A1)]) is True
    changed_at = index.changed_at
    assert changed_at > 0
    assert index.apply([Add(A1)]) is False  # the same record again: nothing visible changed
    assert index.apply([]) is False
    assert index.changed_at == changed_at
    assert index.apply([Yank("foo", "missing.tar.gz", "x")]) is False  # type: ignore[arg-type]
    assert index.apply([Delete("foo", "missing.tar.gz")]) is False  # type: ignore[arg-type]


def test_a_change_replaces_only_the_touched_project() -> None:
    index = Index([A1, B1])
    foo, bar, listing = index.project("foo"), index.project("bar"), index.listing  # type: ignore[arg-type]
    index.apply([Add(A2)])
    assert index.project("bar") is bar  # type: ignore[arg-type]  # untouched: same value, pages kept
    assert index.project("foo") is not foo  # type: ignore[arg-type]
    assert index.listing is listing  # no project came or went: the root page survives
    index.apply([Add(record("baz-1.0.tar.gz", project="baz"))])
    assert index.listing is not listing
    assert index.listing.names == ("bar", "baz", "foo")
    assert index.project("bar") is bar  # type: ignore[arg-type]


def test_the_listing_stays_sorted_as_projects_come_and_go_a_few_or_many_at_a_time() -> None:
    generator = random.Random(16)
    index = Index()
    for _ in range(200):
        names = [f"p{generator.randrange(300)}" for _ in range(generator.choice((1, 3, 100)))]
        events: list[Event] = []
        for name in names:
            filename = f"{name}-1.0.tar.gz"
            if index.file(name, filename) is None:  # type: ignore[arg-type]
                events.append(Add(record(filename, project=name)))
            else:
                events.append(Delete(name, filename))  # type: ignore[arg-type]
        index.apply(events)
        assert index.listing.names == tuple(sorted(p for p in {r.project for r in index.records()}))


def test_new_projects_are_sorted_into_the_listing_when_it_is_read_not_at_each_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = Index([A1])
    built: list[tuple[str, ...]] = []

    def counted(names: tuple[NormalizedName, ...]) -> Listing:
        built.append(names)
        return Listing(names)

    monkeypatch.setattr(pywharf.index, "Listing", counted)
    for number in range(50):  # an upload of a new project each
        index.apply([Add(record(f"p{number}-1.0.tar.gz", project=f"p{number}"))])
    index.apply([Add(record("foo-3.0.tar.gz", version="3.0"))])  # no new name
    assert built == []
    expected = tuple(sorted(["foo", *(f"p{n}" for n in range(50))]))
    assert index.listing.names == expected and index.listing.names == expected
    assert built == [expected]  # sorted once, at the first read


def test_yank_and_unyank() -> None:
    index = Index([A1])
    assert index.apply([Yank("foo", A1.filename, "broken")])  # type: ignore[arg-type]
    assert index.file("foo", A1.filename).yanked == "broken"  # type: ignore[arg-type,union-attr]
    assert index.apply([Yank("foo", A1.filename, None)])  # type: ignore[arg-type]
    assert index.file("foo", A1.filename).yanked is None  # type: ignore[arg-type,union-attr]


def test_delete_removes_the_file_the_empty_project_and_remembers_the_hash() -> None:
    index = Index([A1, B1])
    assert index.apply([Delete("bar", B1.filename)])  # type: ignore[arg-type]
    assert index.project("bar") is None  # type: ignore[arg-type]
    assert index.listing.names == ("foo",)
    assert index.deleted_sha256(B1.filename) == B1.sha256  # a filename is never reused
    index.apply([Add(B1)])
    assert index.deleted_sha256(B1.filename) is None
    assert list(index.listing.names) == ["bar", "foo"]  # a tuple compare: mypy narrowed it


def test_events_apply_in_order() -> None:
    index = Index()
    index.apply([Add(A1), Yank("foo", A1.filename, ""), Delete("foo", A1.filename), Add(A2)])  # type: ignore[arg-type]
    assert [r.filename for r in index.records()] == [A2.filename]


def test_replace_all_makes_the_index_hold_exactly_the_events() -> None:
    index = Index([A1, B1])
    bar = index.project("bar")  # type: ignore[arg-type]
    assert index.replace_all([Add(A2), Add(B1)]) is True
    assert sorted(r.filename for r in index.records()) == [B1.filename, A2.filename]
    assert index.project("bar") is bar  # type: ignore[arg-type]  # unchanged: same value, pages kept
    assert index.replace_all([Add(A2), Add(B1)]) is False
    assert index.replace_all([]) is True
    assert len(index) == 0
    assert index.listing.names == ()


def test_replace_all_from_an_image_keeps_unchanged_projects_and_applies_the_events() -> None:
    """A reload from a journal snapshot: the image, then the events after it."""
    source = Index([A1, B1])
    source.apply([Delete("foo", A1.filename)])  # type: ignore[arg-type]
    image = source.image()
    index = Index([A2, B1])
    foo, bar = index.project("foo"), index.project("bar")  # type: ignore[arg-type]
    generation = index.generation
    assert index.replace_all([Add(A2)], image) is False  # the same files: only a tombstone
    assert (index.project("foo"), index.project("bar")) == (foo, bar)  # type: ignore[arg-type]
    assert index.generation == generation  # so no page is rendered again
    assert sorted(r.filename for r in index.records()) == [B1.filename, A2.filename]
    assert index.deleted_sha256(A1.filename) == A1.sha256
    assert index.holds("foo")  # type: ignore[arg-type]  # a tombstone makes the project ours
    assert index.replace_all([], image) is True
    assert list(index.listing.names) == ["bar"]
    assert index.project("bar") is bar  # type: ignore[arg-type]  # unchanged: pages kept
    assert index.replace_all([Add(A2)], image) is True
    assert list(index.listing.names) == ["bar", "foo"]
    assert index.replace_all([], Index().image()) is True
    assert len(index) == 0 and not index.listing.names and index.pristine


def test_replace_all_forgets_old_tombstones() -> None:
    index = Index([A1])
    index.apply([Delete("foo", A1.filename)])  # type: ignore[arg-type]
    index.replace_all([Add(B1)])
    assert index.deleted_sha256(A1.filename) is None


@pytest.mark.parametrize(
    "event",
    [
        Add(A1),
        Add(record("x-1.0-py3-none-any.whl", "x")),
        Yank("foo", "foo-1.0.tar.gz", "reason"),  # type: ignore[arg-type]
        Yank("foo", "foo-1.0.tar.gz", None),  # type: ignore[arg-type]
        Delete("foo", "foo-1.0.tar.gz"),  # type: ignore[arg-type]
    ],
)
def test_events_round_trip_through_json(event: Any) -> None:
    assert event_from_json(event_to_json(event)) == event


def test_a_record_with_every_field_round_trips() -> None:
    full = FileRecord("f-1.0.tar.gz", "f", "1.0", "d" * 64, 3, 1.5, ">=3.9", "e" * 64, "")  # type: ignore[arg-type]
    assert event_from_json(event_to_json(Add(full))) == Add(full)


# --- the record's storage ----------------------------------------------------------------------

DIGEST = "0123456789abcdef" * 4


def test_a_record_stores_sha256_digests_as_32_bytes_and_reads_them_as_hex() -> None:
    plain = FileRecord("f-1.0.tar.gz", "f", "1.0", DIGEST, 3, 1.5, ">=3.9", DIGEST[::-1])  # type: ignore[arg-type]
    assert plain[3] == bytes.fromhex(DIGEST) and plain[7] == bytes.fromhex(DIGEST[::-1])
    assert (plain.sha256, plain.metadata_sha256) == (DIGEST, DIGEST[::-1])
    assert sys.getsizeof(plain[3]) < sys.getsizeof(DIGEST)  # 65 bytes against 113


@pytest.mark.parametrize("given", ["a", DIGEST.upper(), "z" * 64, DIGEST + "0"])
def test_a_digest_that_is_not_64_lowercase_hex_digits_reads_back_exactly(given: str) -> None:
    assert FileRecord("f-1.0.tar.gz", "f", "1.0", given, 3, 1.5).sha256 == given  # type: ignore[arg-type]


def test_a_record_leaves_out_its_trailing_unset_fields() -> None:
    plain = FileRecord("f-1.0.tar.gz", "f", "1.0", DIGEST, 3, 1.5, ">=3.9")  # type: ignore[arg-type]
    assert len(plain) == 7 and sys.getsizeof(plain) == sys.getsizeof(tuple(range(7)))
    assert (plain.yanked, plain.origin, plain.stored_time, plain.provenance) == (None,) * 4
    assert (plain.metadata_sha256, plain.summary) == (None, None)
    yanked = plain._replace(yanked="broken")
    assert len(yanked) == 9 and yanked.yanked == "broken" and yanked.requires_python == ">=3.9"
    assert yanked._replace(yanked=None) == plain  # the same value, whichever way it was made
    bare = FileRecord("f-1.0.tar.gz", "f", "1.0", DIGEST, 3, 1.5)  # type: ignore[arg-type]
    assert len(bare) == 6 and bare.requires_python is None


def test_a_record_keeps_the_named_tuple_interface() -> None:
    name = NormalizedName("f")
    full = FileRecord("f-1.0.tar.gz", name, "1.0", DIGEST, 3, 1.5, ">=3.9", DIGEST, "", "upstream",
                      2.5, "A summary", "{}")  # fmt: skip
    assert list(full._asdict()) == list(FileRecord._fields) and len(FileRecord._fields) == 13
    assert full._asdict()["sha256"] == DIGEST and full.to_json()["summary"] == "A summary"
    assert FileRecord.from_json(full.to_json()) == full
    assert copy.deepcopy(full) == full and pickle.loads(pickle.dumps(full)) == full
    assert repr(full).startswith("FileRecord(filename='f-1.0.tar.gz', project='f',")


# --- the regression guard ----------------------------------------------------------------------


class Counted:
    """Wraps a callable and counts its calls."""

    def __init__(self, target: Callable[..., Any]) -> None:
        self.target = target
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.target(*args, **kwargs)


@pytest.fixture
def app(tmp_path: Path) -> App:
    app = build_app(tmp_path / "root")
    dists = tmp_path / "dists"
    dists.mkdir()
    for path in (
        make_wheel(dists, "proj-a", "1.0", requires_python=">=3.8"),
        make_sdist(dists, "proj-a", "1.0"),
        make_wheel(dists, "proj-b", "1.0"),
    ):
        assert app_upload(app, path).status == 200
    return app


@pytest.fixture
def repository(app: App) -> Repository:
    return app.repositories["local"]


@pytest.fixture
def no_listing(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Count every directory listing in the process while a request runs."""
    counts = {"listdir": 0, "scandir": 0, "walk": 0}

    def counting(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "listdir", counting("listdir", os.listdir))
    monkeypatch.setattr(os, "scandir", counting("scandir", os.scandir))
    monkeypatch.setattr(os, "walk", counting("walk", os.walk))
    yield counts


def test_a_page_is_rendered_once_and_served_as_bytes_after(
    app: App, repository: Repository
) -> None:
    before = repository.renderer.renders
    bodies = {bytes(app_get(app, "/simple/proj-a/").body) for _ in range(100)}  # type: ignore[arg-type]
    assert repository.renderer.renders == before + 1
    assert len(bodies) == 1
    assert b"proj_a-1.0-py3-none-any.whl" in bodies.pop()


def test_each_representation_is_rendered_once(app: App, repository: Repository) -> None:
    before = repository.renderer.renders
    for _ in range(20):
        for accept in ("text/html", "application/vnd.pypi.simple.v1+json", "*/*"):
            assert app_get(app, "/simple/proj-a/", headers={"accept": accept}).status == 200
            assert app_get(app, "/simple/", headers={"accept": accept}).status == 200
    # HTML and JSON of one project page and of the root page: four renders, no more.
    assert repository.renderer.renders == before + 4


def test_an_upload_to_one_project_does_not_re_render_another(
    app: App, repository: Repository, tmp_path: Path
) -> None:
    for path in ("/simple/proj-a/", "/simple/proj-b/", "/simple/"):
        app_get(app, path)
    before = repository.renderer.renders
    assert app_upload(app, make_wheel(tmp_path, "proj-a", "2.0")).status == 200
    app_get(app, "/simple/proj-b/")
    app_get(app, "/simple/")  # no project came or went: the root page is still good
    assert repository.renderer.renders == before
    page = app_get(app, "/simple/proj-a/")
    assert b"proj_a-2.0-py3-none-any.whl" in page.body  # type: ignore[operator]
    assert repository.renderer.renders == before + 1
    for _ in range(10):
        app_get(app, "/simple/proj-a/")
    assert repository.renderer.renders == before + 1


def test_a_new_project_re_renders_the_root_page_once(
    app: App, repository: Repository, tmp_path: Path
) -> None:
    app_get(app, "/simple/")
    before = repository.renderer.renders
    assert app_upload(app, make_wheel(tmp_path, "proj-c", "1.0")).status == 200
    for _ in range(10):
        assert b"proj-c" in app_get(app, "/simple/").body  # type: ignore[operator]
    assert repository.renderer.renders == before + 1


def test_an_identical_re_upload_renders_nothing(app: App, repository: Repository) -> None:
    app_get(app, "/simple/proj-b/")
    project = repository.index.project("proj-b")  # type: ignore[arg-type]
    before = repository.renderer.renders
    stored = Path(repository.backend.storage) / "proj-b" / "proj_b-1.0-py3-none-any.whl"  # type: ignore[attr-defined]
    assert app_upload(app, stored.name, stored.read_bytes()).status == 200
    app_get(app, "/simple/proj-b/")
    assert repository.index.project("proj-b") is project  # type: ignore[arg-type]
    assert repository.renderer.renders == before


def test_requests_never_list_or_read_the_backend(
    app: App, repository: Repository, monkeypatch: pytest.MonkeyPatch, no_listing: dict[str, int]
) -> None:
    backend: Any = repository.backend
    read_index = Counted(backend.read_index)
    rebuild_index = Counted(backend.rebuild_index)
    monkeypatch.setattr(backend, "read_index", read_index)
    monkeypatch.setattr(backend, "rebuild_index", rebuild_index)
    no_listing.update(listdir=0, scandir=0, walk=0)
    for _ in range(5):
        for path in (
            "/simple/",
            "/simple/proj-a/",
            "/simple/proj-b/",
            "/simple/missing/",
            "/simple/proj-a/proj_a-1.0-py3-none-any.whl",
            "/simple/proj-a/proj_a-1.0.tar.gz",
            "/simple/proj-a/proj_a-1.0-py3-none-any.whl.metadata",
            "/simple/Proj_A/",
        ):
            app_get(app, path)
    assert read_index.calls == 0
    assert rebuild_index.calls == 0
    assert no_listing == {"listdir": 0, "scandir": 0, "walk": 0}


def test_an_upload_does_not_list_or_reread_the_backend(
    app: App,
    repository: Repository,
    monkeypatch: pytest.MonkeyPatch,
    no_listing: dict[str, int],
    tmp_path: Path,
) -> None:
    """An upload appends to the index; it never rescans, so the 100,000th costs the 1,000th's."""
    backend: Any = repository.backend
    read_index = Counted(backend.read_index)
    rebuild_index = Counted(backend.rebuild_index)
    monkeypatch.setattr(backend, "read_index", read_index)
    monkeypatch.setattr(backend, "rebuild_index", rebuild_index)
    wheel = make_wheel(tmp_path, "proj-d", "1.0")
    no_listing.update(listdir=0, scandir=0, walk=0)
    assert app_upload(app, wheel).status == 200
    assert read_index.calls == 0
    assert rebuild_index.calls == 0
    assert no_listing == {"listdir": 0, "scandir": 0, "walk": 0}
    assert repository.index.file("proj-d", wheel.name) is not None  # type: ignore[arg-type]


def test_a_sync_with_nothing_new_changes_nothing(repository: Repository) -> None:
    project = repository.index.project("proj-a")  # type: ignore[arg-type]
    listing = repository.index.listing
    assert repository.sync() is False
    assert repository.index.project("proj-a") is project  # type: ignore[arg-type]
    assert repository.index.listing is listing


def test_an_upload_during_a_first_load_is_not_hidden_by_its_stale_snapshot(
    tmp_path: Path,
) -> None:
    """A sync reads the whole store, an upload is stored, then the sync applies what it read:
    the upload stays listed (seen through S3 with the store down at start, issue 11)."""
    config = '[local]\ntype = "memory"\nread_secret = "r"\nwrite_secret = "w"\n'
    app = build_app(tmp_path / "root", config)
    repository = app.repositories["local"]
    backend: Any = repository.backend
    read, put = backend.read_index, backend.put
    stale_read, release, stored = threading.Event(), threading.Event(), threading.Event()

    def slow_first_load(cursor: Any) -> Any:
        snapshot = read(None)  # what the store held before the upload
        stale_read.set()
        release.wait(10)
        return snapshot

    def put_then_say_so(*args: Any) -> Any:
        record = put(*args)
        stored.set()
        return record

    backend.read_index, backend.put = slow_first_load, put_then_say_so
    wheel = make_wheel(tmp_path, "late-pkg", "1.0")
    syncing = threading.Thread(target=repository.sync)
    syncing.start()
    assert stale_read.wait(10)
    uploading = threading.Thread(target=lambda: app_upload(app, wheel, secret="w"))
    uploading.start()
    assert stored.wait(10)
    uploading.join(0.5)  # time for an upload that does not wait for the sync to show itself
    release.set()
    syncing.join(10)
    uploading.join(10)
    backend.read_index, backend.put = read, put
    assert repository.index.file("late-pkg", wheel.name) is not None  # type: ignore[arg-type]


def test_every_record_field_survives_the_journal() -> None:
    """`from_json` builds the tuple field by field (for speed): a new field must be read too."""
    values: dict[str, Any] = {name: f"v-{name}" for name in FileRecord._fields}
    values.update(project="foo", size=3, upload_time=1.5, stored_time=2.5)
    full = FileRecord(**values)
    assert FileRecord.from_json(full.to_json()) == full
