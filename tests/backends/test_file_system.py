"""The file-system backend: the shared contract, plus compatibility with the original's layout.

The original pywharf (0.2) keeps `ROOT/cache/<repo>/storage/<project>/<filename>` next to a
`<filename>.meta` TOML sidecar holding the upload form fields plus `distrib` and `sha256`. A root
it wrote must keep working, and a root we write must keep that shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import tomli_w
from contract import BackendContract
from contract import fetch
from contract import stage
from factory import make_sdist
from factory import make_wheel
from support import CONFIG
from support import READ
from support import REPO
from support import WRITE
from support import build_app
from support_upload import app_get
from support_upload import app_upload

from pywharf.backends import Backend
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.file_system import FileSystemBackend
from pywharf.config import load_toml
from pywharf.config import parse_repositories
from pywharf.errors import DistributionExists
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import FileRecord
from pywharf.index import Index


def new_backend(root: Path, config: str = CONFIG) -> FileSystemBackend:
    (repository,) = parse_repositories(config, "test config", backend_settings)
    backend = create_backend(repository, root, None)
    assert isinstance(backend, FileSystemBackend)
    return backend


def storage_of(root: Path) -> Path:
    return root / "cache" / "local" / "storage"


class FileSystemTamper:
    """Hand edits of a file-system store."""

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        project = filename.split("-")[0].replace("_", "-").lower()
        folder = Path(backend.storage) / project  # type: ignore[attr-defined]
        folder.mkdir(exist_ok=True)
        (folder / filename).write_bytes(data)

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        path = Path(backend.storage) / record.project / record.filename  # type: ignore[attr-defined]
        path.unlink()

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        # The sidecar is lost: the record is rebuilt from the bytes, with the file's mtime.
        path = Path(backend.storage) / record.project / record.filename  # type: ignore[attr-defined]
        path.with_name(path.name + ".meta").unlink()
        os.utime(path, (1_000_000_000, 1_000_000_000))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def backend(root: Path) -> FileSystemBackend:
    return new_backend(root)


@pytest.fixture
def twin(root: Path, backend: FileSystemBackend) -> FileSystemBackend:
    return new_backend(root)


@pytest.fixture
def tamper() -> FileSystemTamper:
    return FileSystemTamper()


class TestFileSystemContract(BackendContract):
    pass


# --- our layout is the original's layout --------------------------------------------------------


def test_an_upload_lands_in_the_original_layout_with_its_sidecar(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "Demo.Pkg", "1.0", requires_python=">=3.8")
    upload = stage(backend, wheel, summary="A test package", requires_python=">=3.8")
    record = backend.put(upload, WRITE)
    path = storage_of(root) / "demo-pkg" / wheel.name
    assert path.read_bytes() == wheel.read_bytes()
    meta = load_toml(path.with_name(path.name + ".meta").read_text(), "sidecar")
    assert meta["distrib"] == "demo-pkg"  # the original reads these two keys
    assert meta["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest() == record.sha256
    assert meta["summary"] == "A test package"  # and the form fields, first value each
    assert path.with_name(path.name + ".metadata").read_bytes() == upload.metadata


def test_the_original_index_file_is_written_by_rebuild(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    record = backend.put(stage(backend, make_sdist(tmp_path, "demo-pkg", "1.0")), WRITE)
    backend.rebuild_index()
    index = load_toml((storage_of(root) / "index.toml").read_text(), "index.toml")
    (entry,) = index["pkgs"]
    assert entry["distrib"] == "demo-pkg"
    assert entry["sha256"] == record.sha256
    assert f"{entry['package']}.{entry['ext']}" == record.filename


def write_original_root(root: Path, files: dict[str, tuple[Path, dict[str, str]]]) -> None:
    """A root as pywharf 0.2 left it: files, `.meta` sidecars, its index, its lock folder."""
    storage = storage_of(root)
    for project, (path, meta) in files.items():
        folder = storage / project
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / path.name)
        (folder / (path.name + ".meta")).write_text(tomli_w.dumps(meta))
    (storage / "index.toml").write_text("mtime = 1594491762\npkgs = []\n")
    (root / "index" / "local").mkdir(parents=True)
    (root / "index" / "local" / "index.toml").write_text("mtime = 1594491762\npkgs = []\n")
    (root / "lock" / "local").mkdir(parents=True)
    (root / "cache" / "upload-5d7e1a3c-c3b8-11ea-87d0-0242ac130003").write_bytes(b"junk")


def test_a_root_made_by_hand_in_the_original_layout_is_served(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    wheel = make_wheel(source, "demo-pkg", "1.0", requires_python=">=3.7")
    sdist = make_sdist(source, "legacy-thing", "0.9")
    wheel_meta = {
        ":action": "file_upload", "name": "demo-pkg", "version": "1.0",
        "filetype": "bdist_wheel", "requires_python": ">=3.7", "distrib": "demo-pkg",
        # The original trusted a client's sha256 verbatim: the served hash must be the real one.
        "sha256": "deadbeef",
    }  # fmt: skip
    sdist_meta = {"name": "legacy-thing", "version": "0.9", "distrib": "legacy-thing",
                  "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}  # fmt: skip
    write_original_root(
        root, {"demo-pkg": (wheel, wheel_meta), "legacy-thing": (sdist, sdist_meta)}
    )
    app = build_app(root)
    response = app_get(app, "/simple/")
    assert response.status == 200
    assert b"demo-pkg" in response.body and b"legacy-thing" in response.body  # type: ignore[operator]
    page = app_get(app, "/simple/demo-pkg/").body
    real = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert f"{wheel.name}#sha256={real}".encode() in page  # type: ignore[operator]
    assert b"deadbeef" not in page  # type: ignore[operator]
    assert b'data-requires-python="&gt;=3.7"' in page  # type: ignore[operator]
    download = app_get(app, f"/simple/demo-pkg/{wheel.name}")
    assert download.status == 200
    assert Path(download.body.path).read_bytes() == wheel.read_bytes()  # type: ignore[union-attr]
    sdist_page = app_get(app, "/simple/legacy-thing/").body
    assert sdist.name.encode() in sdist_page  # type: ignore[operator]


def test_a_hand_copied_file_without_sidecar_is_picked_up_by_rebuild_index(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    existing = backend.put(stage(backend, make_sdist(tmp_path, "demo-pkg", "1.0")), WRITE)
    cursor = backend.read_index(None)
    assert cursor is not None
    copied = make_wheel(tmp_path, "demo-pkg", "2.0", requires_python=">=3.9")
    shutil.copyfile(copied, storage_of(root) / "demo-pkg" / copied.name)
    assert backend.read_index(cursor.cursor) is None  # not seen until a rebuild: no scans
    report = backend.rebuild_index()
    assert report.added == [copied.name]
    assert report.total == 2
    update = backend.read_index(cursor.cursor)
    assert update is not None
    records = {e.record.filename: e.record for e in update.events if isinstance(e, Add)}
    assert records[existing.filename] == existing
    found = records[copied.name]
    assert found.sha256 == hashlib.sha256(copied.read_bytes()).hexdigest()
    assert found.version == "2.0"
    assert fetch(backend.open(found)) == copied.read_bytes()


def test_a_sidecar_s_record_is_read_past_a_form_only_the_general_parser_reads(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    """A licence of many lines is escaped in the sidecar; the record after it still reads
    (a rescan reads our table alone when its lines are plain)."""
    stored = backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", "1.0")), WRITE)
    meta = storage_of(root) / "demo-pkg" / f"{stored.filename}.meta"
    document = load_toml(meta.read_text(), str(meta))
    meta.write_text(tomli_w.dumps({"license": "MIT\n\n[pywharf]\nsize = 1\n", **document}))
    report = backend.rebuild_index()
    assert (report.added, report.removed, report.total) == ([], [], 1)
    assert listed(new_backend(root))[stored.filename] == stored


@pytest.mark.parametrize("table", ["size = 1", 'size = "1"', "size = 1\nsize = 2"])
def test_a_sidecar_s_record_that_does_not_fit_the_bytes_is_rebuilt_from_them(
    backend: FileSystemBackend, root: Path, tmp_path: Path, table: str
) -> None:
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    stored = backend.put(stage(backend, wheel), WRITE)
    meta = storage_of(root) / "demo-pkg" / f"{stored.filename}.meta"
    text = meta.read_text()
    meta.write_text(text.replace(f"size = {stored.size}", table))
    backend.rebuild_index()
    rebuilt = listed(new_backend(root))[stored.filename]
    assert rebuilt.sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert rebuilt.size == stored.size


def test_update_index_command_picks_up_a_hand_copied_file(root: Path, tmp_path: Path) -> None:
    """The same through `pywharf update_index`, the command an operator runs."""
    backend = new_backend(root)
    copied = make_sdist(tmp_path, "demo-pkg", "1.0")
    (storage_of(root) / "demo-pkg").mkdir(parents=True)
    shutil.copyfile(copied, storage_of(root) / "demo-pkg" / copied.name)
    result = subprocess.run(
        [sys.executable, "-m", "pywharf", "update_index", "file_system", "local",
         "--root", str(root), "--read_secret", READ, "--write_secret", WRITE],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"added {copied.name}" in result.stdout
    update = backend.read_index(None)
    assert update is not None
    assert [e.record.filename for e in update.events if isinstance(e, Add)] == [copied.name]


def test_every_listed_file_can_be_downloaded_even_from_the_wrong_folder(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    """A file copied by hand into another project's folder is served, or not listed at all."""
    copied = make_wheel(tmp_path, "demo-pkg", "1.0")
    folder = storage_of(root) / "someone-else"
    folder.mkdir(parents=True)
    shutil.copyfile(copied, folder / copied.name)
    backend.rebuild_index()
    update = backend.read_index(None)
    assert update is not None
    for event in update.events:
        if isinstance(event, Add):
            assert fetch(backend.open(event.record)) == copied.read_bytes()


def test_files_that_are_not_distributions_are_ignored(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    folder = storage_of(root) / "demo-pkg"
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("hello")
    (folder / "notes.whl").write_text("not a wheel name")
    (folder / ".demo_pkg-1.0.tar.gz.123.tmp").write_bytes(b"half written")
    (storage_of(root) / "stray.tar.gz").write_bytes(b"not in a project folder")
    report = backend.rebuild_index()
    assert report.added == []
    assert report.total == 0


# --- two servers, one root ----------------------------------------------------------------------


def test_two_backends_on_one_root_see_each_others_uploads(root: Path, tmp_path: Path) -> None:
    first, second = new_backend(root), new_backend(root)
    cursors = [first.read_index(None), second.read_index(None)]
    assert all(c is not None for c in cursors)
    one = first.put(stage(first, make_wheel(tmp_path, "proj-a", "1.0")), WRITE)
    two = second.put(stage(second, make_wheel(tmp_path, "proj-b", "1.0")), WRITE)
    for backend, cursor in zip((first, second), cursors):
        update = backend.read_index(cursor.cursor)  # type: ignore[union-attr]
        assert update is not None
        assert [e.record for e in update.events if isinstance(e, Add)] == [one, two]


def test_two_apps_on_one_root_list_each_others_uploads_after_a_sync(
    root: Path, tmp_path: Path
) -> None:
    first, second = build_app(root), build_app(root)
    wheel = make_wheel(tmp_path, "proj-a", "1.0")
    assert app_upload(first, wheel).status == 200
    assert app_get(second, "/simple/proj-a/").status == 404  # not yet: the sync is periodic
    assert second.repositories["local"].sync() is True
    assert wheel.name.encode() in app_get(second, "/simple/proj-a/").body  # type: ignore[operator]


# --- the journal ---------------------------------------------------------------------------------


def journal_path(root: Path) -> Path:
    return storage_of(root) / ".pywharf" / "journal.jsonl"


def test_a_half_written_journal_line_is_read_once_complete(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    start = backend.read_index(None)
    assert start is not None
    record = FileRecord("x-1.0.tar.gz", "x", "1.0", "a" * 64, 1, 1.0)  # type: ignore[arg-type]
    line = json.dumps({"op": "add", **record.to_json()}).encode() + b"\n"
    with journal_path(root).open("ab") as journal:
        journal.write(line[:20])  # another process is mid-append
        journal.flush()
        torn = backend.read_index(start.cursor)
        assert torn is None or not torn.events
        journal.write(line[20:])
    update = backend.read_index(start.cursor)
    assert update is not None
    assert [e.record for e in update.events if isinstance(e, Add)] == [record]


def test_a_restart_reads_the_same_index(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    for n in range(5):
        backend.put(stage(backend, make_wheel(tmp_path, "proj", f"1.{n}")), WRITE)
    first = backend.read_index(None)
    again = new_backend(root).read_index(None)
    assert first is not None and again is not None
    assert again.events == first.events


# --- crashes: leases, orphans, torn journals ------------------------------------------------------

# A process that leases a spool file, says where, and holds it until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from pywharf.backends.atomic import leased_file
with leased_file(Path(sys.argv[1]), "upload") as (path, file):
    print(path, flush=True)
    sys.stdin.read()
"""


def test_a_sweep_removes_only_spool_files_no_live_process_holds(root: Path) -> None:
    """The owner is a lease, not a PID: a server that is PID 1 in a container has the same PID
    after a restart, and one in another PID namespace sees other PIDs (issue 9)."""
    spool = Path(new_backend(root).spool_dir)
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(spool)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as holder:  # fmt: skip
        assert holder.stdout is not None
        live = Path(holder.stdout.readline().decode().strip())
        same_pid = spool / f"upload-{os.getpid()}-abc"  # the old naming, of a restarted PID 1
        dead = spool / "upload-0123456789abcdef-feed"
        stale_temporary = spool / "tmp-0123456789abcdef-beef"
        for path in (same_pid, dead, stale_temporary):
            path.write_bytes(b"cut off by a crash")
        new_backend(root)
        assert live.exists()
        assert not same_pid.exists() and not dead.exists() and not stale_temporary.exists()
        holder.kill()  # kill -9: the lease dies with the process
    new_backend(root)
    assert list(spool.iterdir()) == []


# Stage and put one wheel in a process killed (SIGKILL) at `point` of the put.
KILLED_PUT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from contract import stage
from test_file_system import new_backend
from pywharf.backends import file_system, journal, sidecars
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
target = {"link": (file_system.os, "link"), "sidecars": (sidecars.Sidecars, "write"),
          "event": (journal.Journal, "append")}[sys.argv[3]]
backend = new_backend(Path(sys.argv[1]))
upload = stage(backend, Path(sys.argv[2]))
setattr(*target, die)
backend.put(upload, "write-secret")
"""


def killed_put(root: Path, wheel: Path, point: str) -> None:
    here = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-c", KILLED_PUT, str(root), str(wheel), point, str(here)],
        env={**os.environ, "PYTHONPATH": f"{REPO}:{here.parent}"}, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == -9, result.stderr.decode()


def listed(backend: FileSystemBackend) -> dict[str, FileRecord]:
    update = backend.read_index(None)
    assert update is not None
    index = Index()
    index.apply(update.events)
    return {record.filename: record for record in index.records()}


def leftovers(root: Path) -> list[str]:
    """Temporary files anywhere under the storage: spools, intents, temps, old `.tmp` names."""
    storage = storage_of(root)
    return [str(p.relative_to(storage)) for p in storage.rglob("*")
            if p.parent.name == "tmp" or p.name.endswith(".tmp")]  # fmt: skip


@pytest.mark.parametrize("point", ["link", "sidecars", "event"])
def test_a_put_killed_at_any_point_is_repaired_at_the_next_start(
    root: Path, tmp_path: Path, point: str
) -> None:
    """Killed before its link, nothing is stored; after it, the file is complete and verified,
    so the next start lists it with its full record (see file_system's docstring)."""
    new_backend(root)
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.8")
    killed_put(root, wheel, point)
    assert leftovers(root) != []  # the dead upload's spool and intent
    backend = new_backend(root)
    files = listed(backend)
    assert leftovers(root) == []
    if point == "link":
        assert files == {}
        return
    assert files[wheel.name].requires_python == ">=3.8"
    assert files[wheel.name].sha256 == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert fetch(backend.open(files[wheel.name])) == wheel.read_bytes()
    size = journal_path(root).stat().st_size
    new_backend(root)  # idempotent: a second start changes nothing
    assert journal_path(root).stat().st_size == size


def test_a_retry_to_a_live_server_journals_the_file_a_crash_left_unlisted(
    root: Path, tmp_path: Path
) -> None:
    """A second server on the root, not restarted: the retry answers 200 and lists the file;
    other bytes under the name answer a 409 for a file the index shows, never an invisible one."""
    live = new_backend(root)
    assert listed(live) == {}  # the journal exists: no rescan finds the orphan
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.8")
    sdist = make_sdist(tmp_path, "demo-pkg", "1.0")
    killed_put(root, wheel, "event")
    assert listed(live) == {}
    assert live.put(stage(live, wheel), WRITE).requires_python == ">=3.8"
    assert listed(live)[wheel.name].requires_python == ">=3.8"
    killed_put(root, sdist, "event")
    assert sdist.name not in listed(live)
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    (rebuilt / sdist.name).write_bytes(sdist.read_bytes() + b"\0")
    with pytest.raises(DistributionExists):
        live.put(stage(live, rebuilt / sdist.name), WRITE)
    assert listed(live)[sdist.name].sha256 == hashlib.sha256(sdist.read_bytes()).hexdigest()


def test_a_torn_journal_tail_is_backed_up_and_cut_at_start(
    backend: FileSystemBackend, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", "1.0")), WRITE)
    with journal_path(root).open("ab") as journal:
        journal.write(b'{"op":"add","filename":"half')  # a writer killed mid-record
    restarted = new_backend(root)
    assert journal_path(root).read_bytes().endswith(b"\n")
    (backup,) = journal_path(root).parent.glob("journal.jsonl.torn-*")
    assert backup.read_bytes() == b'{"op":"add","filename":"half'
    assert "torn" in caplog.text
    added = restarted.put(stage(restarted, make_sdist(tmp_path, "demo-pkg", "1.0")), WRITE)
    assert set(listed(new_backend(root))) == {kept.filename, added.filename}


def test_a_journal_corrupted_by_an_older_version_is_rebuilt_not_refused(
    backend: FileSystemBackend, root: Path, tmp_path: Path
) -> None:
    """The old append ignored short writes: a partial record, then the next one on its line.
    The server refused to start, and so did `update_index` (issue 9)."""
    first = backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", "1.0")), WRITE)
    backend.apply_change(Delete(first.project, first.filename, first.sha256), WRITE)
    second = backend.put(stage(backend, make_wheel(tmp_path, "demo-pkg", "2.0")), WRITE)
    *before, last = journal_path(root).read_bytes().splitlines(keepends=True)
    journal_path(root).write_bytes(b"".join(before) + b'{"op":"add","filen' + last)
    restarted = new_backend(root)
    assert set(listed(restarted)) == {second.filename}
    assert restarted.read_index(None) is not None
    index = Index()
    index.apply(restarted.read_index(None).events)  # type: ignore[union-attr]
    assert index.deleted_sha256(first.filename) == first.sha256  # the tombstone survived
    assert list(journal_path(root).parent.glob("journal.jsonl.corrupt-*"))


@pytest.mark.parametrize("round_", range(20))
def test_racing_identical_uploads_keep_the_full_record(
    root: Path, tmp_path: Path, round_: int
) -> None:
    """20 clients upload the same wheel at once: every answer and the live listing keep its
    Requires-Python (issue 9: 3 rounds in 15 lost it until a restart)."""
    app = build_app(root)
    wheel = make_wheel(tmp_path, "demo-pkg", f"1.{round_}", requires_python=">=3.8")
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: app_upload(app, wheel).status, range(20)))
    assert statuses == [200] * 20
    page = app_get(app, "/simple/demo-pkg/").body
    assert b'data-requires-python="&gt;=3.8"' in page  # type: ignore[operator]


# Stage three wheels and store them in one batch, in a process killed (SIGKILL) at the
# second file's sidecars, or at the batch's journal append.
KILLED_BATCH = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from contract import stage
from test_file_system import new_backend
from pywharf.backends import journal, sidecars
calls = []
def die(original):
    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 or original is None:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return dying
backend = new_backend(Path(sys.argv[1]))
uploads = [stage(backend, Path(p)) for p in sys.argv[2].split(os.pathsep)]
if sys.argv[3] == "sidecars":
    sidecars.Sidecars.write = die(sidecars.Sidecars.write)
else:
    journal.Journal.append = die(None)
backend.put_many(uploads, "write-secret")
"""


@pytest.mark.parametrize("point", ["sidecars", "event"])
def test_a_batch_killed_midway_lists_whole_files_only_and_can_be_run_again(
    root: Path, tmp_path: Path, point: str
) -> None:
    new_backend(root)
    wheels = [make_wheel(tmp_path, f"batch-{n}", "1.0", requires_python=">=3.8") for n in range(3)]
    here = Path(__file__).resolve().parent
    argv = [str(root), os.pathsep.join(map(str, wheels)), point, str(here)]
    result = subprocess.run(
        [sys.executable, "-c", KILLED_BATCH, *argv],
        env={**os.environ, "PYTHONPATH": f"{REPO}:{here.parent}"}, capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == -9, result.stderr.decode()
    backend = new_backend(root)  # start-up finishes what the batch's intent lists
    files = listed(backend)
    linked = 2 if point == "sidecars" else 3  # the third was never linked when killed early
    assert sorted(files) == sorted(w.name for w in wheels[:linked])
    for wheel in wheels[:linked]:
        assert files[wheel.name].requires_python == ">=3.8"
        assert fetch(backend.open(files[wheel.name])) == wheel.read_bytes()
    uploads = [stage(backend, wheel) for wheel in wheels]  # the import, run again
    results = backend.put_many(uploads, WRITE)
    assert [r.filename for r in results if isinstance(r, FileRecord)] == [w.name for w in wheels]
    assert len(listed(new_backend(root))) == 3
    assert journal_path(root).read_bytes().count(b'"add"') == 3
    assert [p for p in leftovers(root) if "intent" in p] == []
