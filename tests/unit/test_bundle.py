"""Bundles for the air gap (issue 12): export, import, what import refuses, hostile tars."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from factory import make_sdist
from factory import make_wheel
from support import build_app
from support import poll
from support_upload import app_get

import pywharf.bundle as bundle_module
from pywharf.backends import StagedUpload
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.file_system import FileSystemBackend
from pywharf.bundle import MANIFEST
from pywharf.bundle import Progress
from pywharf.cli import main
from pywharf.config import parse_repositories
from pywharf.errors import DistributionExists
from pywharf.index import UPSTREAM
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.sync import Syncer

CONFIG = '[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'


def records(root: Path) -> dict[str, FileRecord]:
    (config,) = parse_repositories(CONFIG, "test", backend_settings)
    backend = create_backend(config, root, None)
    try:
        index = Index()
        update = backend.read_index(None)
        if update is not None:
            index.replace_all(update.events, update.base)
        return {r.filename: r for r in index.records()}
    finally:
        backend.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def _stored(root: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "import", "file_system", "local", str(folder), "--root", str(root))
    assert code == 0, out


@pytest.fixture
def source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A repository ROOT with two projects: a wheel and an sdist of one, a wheel of the other."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    make_wheel(folder, "alpha", "1.0", requires_python=">=3.8")
    make_sdist(folder, "alpha", "1.0")
    make_wheel(folder, "beta", "2.0")
    root = tmp_path / "source"
    _stored(root, folder, capsys)
    return root


def _export(
    capsys: pytest.CaptureFixture[str], root: Path, output: Path, *flags: str
) -> tuple[int, str, str]:
    return cli(capsys, "export", "file_system", "local", str(output), "--root", str(root), *flags)


def _import(capsys: pytest.CaptureFixture[str], root: Path, bundle: Path) -> tuple[int, str, str]:
    return cli(capsys, "import", "file_system", "local", str(bundle), "--root", str(root))


def test_a_directory_import_is_hosted_and_uploaded_now(source: Path) -> None:
    found = records(source)
    assert sorted(found) == ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz",
                             "beta-2.0-py3-none-any.whl"]  # fmt: skip
    wheel = found["alpha-1.0-py3-none-any.whl"]
    assert wheel.origin is None and wheel.requires_python == ">=3.8"
    assert wheel.metadata_sha256 is not None
    assert time.time() - wheel.upload_time < 600


def test_export_then_import_keeps_every_record_and_is_idempotent(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    code, out, _ = _export(capsys, source, bundle)
    assert code == 0 and "exported 3 files" in out
    target = tmp_path / "target"
    code, out, err = _import(capsys, target, bundle)
    assert code == 0 and "imported 3, skipped 0 (identical), refused 0" in out
    assert "3/3" in err  # progress on stderr, plain lines off a terminal
    before, after = records(source), records(target)
    for name, record in before.items():
        keep = ("sha256", "size", "upload_time", "requires_python", "metadata_sha256", "origin")
        assert [getattr(after[name], k) for k in keep] == [getattr(record, k) for k in keep]
    storage = target / "cache" / "local" / "storage"
    assert (storage / "alpha" / "alpha-1.0-py3-none-any.whl.metadata").exists()
    code, out, _ = _import(capsys, target, bundle)
    assert code == 0 and "imported 0, skipped 3 (identical), refused 0" in out


def test_a_bundle_keeps_each_files_origin(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    _rewrite(bundle, lambda files: [{**f, "origin": UPSTREAM} for f in files])
    target = tmp_path / "target"
    assert _import(capsys, target, bundle)[0] == 0
    assert {r.origin for r in records(target).values()} == {UPSTREAM}


def _rewrite(bundle: Path, change: object) -> None:
    """Rewrite the manifest (a tool of the test: the files stay as they are)."""
    with tarfile.open(bundle) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members:
            if member.name == MANIFEST:
                document = json.loads(data)
                document["files"] = change(document["files"])  # type: ignore[operator]
                data = json.dumps(document).encode()
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_projects_and_since_select_what_is_exported(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "alpha.tar"
    assert "exported 2 files" in _export(capsys, source, bundle, "--projects", "al*")[1]
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    assert "exported 0 files" in _export(capsys, source, bundle, "--since", tomorrow)[1]
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    assert "exported 3 files" in _export(capsys, source, bundle, "--since", yesterday)[1]
    code, _, err = _export(capsys, source, bundle, "--since", "last week")
    assert code == 2 and "YYYY-MM-DD" in err


def test_since_follows_the_stored_time_not_the_upload_time(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    _rewrite(bundle, lambda files: [{**f, "upload_time": 1_000_000_000.0} for f in files])
    target = tmp_path / "target"
    _import(capsys, target, bundle)
    assert {r.upload_time for r in records(target).values()} == {1_000_000_000.0}
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    assert "exported 3 files" in _export(capsys, target, bundle, "--since", yesterday)[1]


def test_other_bytes_under_a_stored_name_are_refused_by_name_and_the_rest_imported(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    target = tmp_path / "target"
    other = tmp_path / "other"
    other.mkdir()
    make_wheel(other, "beta", "2.0", payload_bytes=10)  # same name, other bytes
    _stored(target, other, capsys)
    code, out, _ = _import(capsys, target, bundle)
    assert code == 1
    assert "refused beta-2.0-py3-none-any.whl: other bytes are stored" in out
    assert "imported 2," in out
    assert records(target)["beta-2.0-py3-none-any.whl"].sha256 != (
        records(source)["beta-2.0-py3-none-any.whl"].sha256
    )


def test_a_tampered_file_is_refused_by_name_and_never_listed(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    data = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        member = tar.getmember("files/beta/beta-2.0-py3-none-any.whl")
    data[member.offset_data + 10] ^= 0xFF  # same size, other bytes
    bundle.write_bytes(bytes(data))
    target = tmp_path / "target"
    code, out, _ = _import(capsys, target, bundle)
    assert code == 1 and "refused beta-2.0-py3-none-any.whl: its bytes do not match" in out
    assert sorted(records(target)) == ["alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz"]
    storage = target / "cache" / "local" / "storage"
    assert not (storage / "beta").exists() or list((storage / "beta").iterdir()) == []
    assert list((storage / ".pywharf" / "tmp").iterdir()) == []


def _hostile(path: Path, kind: str) -> None:
    manifest = json.dumps({"format": 1, "files": []}).encode()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        if kind == "symlink":
            link = tarfile.TarInfo("files/evil/evil-1.0.tar.gz")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
            return
        name = {"absolute": "/etc/evil-1.0.tar.gz", "dotdot": "files/../../evil-1.0.tar.gz"}
        info = tarfile.TarInfo(name.get(kind, "files/evil/evil-1.0.tar.gz"))
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    if kind == "huge":  # a header declaring 1 GiB in an archive of a few KiB
        data = bytearray(path.read_bytes())
        header = data.find(b"files/evil/evil-1.0.tar.gz")
        size_field = f"{1 << 30:011o}\0".encode()
        data[header + 124 : header + 136] = size_field
        checksum = (
            sum(data[header : header + 148]) + 8 * 32 + sum(data[header + 156 : header + 512])
        )
        data[header + 148 : header + 156] = f"{checksum:06o}\0 ".encode()
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "huge"])
def test_a_hostile_tar_is_refused_whole_with_a_clear_error(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "hostile.tar"
    _hostile(bundle, kind)
    target = tmp_path / "target"
    code, _, err = _import(capsys, target, bundle)
    assert code == 1
    assert err.count("\n") == 1 and ("refused" in err or "damaged" in err), err
    assert records(target) == {}
    assert not (tmp_path / "etc").exists() and not (tmp_path / "evil-1.0.tar.gz").exists()


def test_the_progress_is_a_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(2, stream)
    progress.step("a.whl")
    progress.step("b.whl")
    assert stream.getvalue().startswith("\r[") and "2/2" in stream.getvalue()
    assert stream.getvalue().count("\n") == 1


def test_a_running_server_lists_imported_files_at_its_next_sync(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    target = tmp_path / "target"
    app = build_app(target, CONFIG + "sync_index_interval = 0.05\n")
    syncer = Syncer(app.repositories.values())
    syncer.start()
    try:
        assert app_get(app, "/simple/alpha/", "r").status == 404
        assert _import(capsys, target, bundle)[0] == 0
        poll(
            lambda: app_get(app, "/simple/alpha/", "r").status == 200 or None,
            "the server to list the imported files",
        )
    finally:
        syncer.stop()


def test_files_are_stored_in_batches_each_file_once(
    source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = tmp_path / "out.tar"
    _export(capsys, source, bundle)
    sizes: list[int] = []
    real = FileSystemBackend.put_many

    def spied(
        self: FileSystemBackend, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        sizes.append(len(uploads))
        return real(self, uploads, credential)

    monkeypatch.setattr(bundle_module, "BATCH_FILES", 2)
    monkeypatch.setattr(FileSystemBackend, "put_many", spied)
    target = tmp_path / "target"
    code, out, err = _import(capsys, target, bundle)
    assert sizes == [2, 1]
    assert code == 0 and "imported 3," in out and "3/3" in err
    assert records(target).keys() == records(source).keys()
    journal = target / "cache" / "local" / "storage" / ".pywharf" / "journal.jsonl"
    assert journal.read_bytes().count(b'"add"') == 3
    assert list((journal.parent / "tmp").iterdir()) == []
