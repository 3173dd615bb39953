"""Issue 5 proven with real clients against the built pyz: uv and pip read PEP 658 metadata files
(an old pip by the attribute's first name), skip yanked releases unless pinned, get 304s on a second
resolve, honour `--exclude-newer`; deletes guard the filename; upload times and metadata survive
a restart and an `update_index` rebuild.

What a client fetched is read from the server's access log. Every page fetched here is validated
(JSON against tests/data/simple-api.schema.json, HTML against the spec's rules).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import zipfile
from datetime import datetime
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
from factory import make_sdist
from factory import make_wheel
from support import BIN
from support import CONFIG
from support import WRITE
from support import ServerProcess
from support import fetch_html
from support import fetch_json
from support import pip_install
from support import poll
from support import run_client
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install
from support_upload import upload as upload_raw

PROJECT = "/simple/demo-pkg/"
WHEEL = "demo_pkg-{}-py3-none-any.whl"
# client user [date] "METHOD path" status length ms
ACCESS_LINE = re.compile(r'^\S+ \S+ \[[^\]]+\] "(\S+) (\S+)" (\d{3}) ', re.MULTILINE)

Seen = list[tuple[str, str, int]]


# --- helpers -------------------------------------------------------------------------------------


def log_mark(server: ServerProcess) -> int:
    return len(server.output())


def requests_since(server: ServerProcess, mark: int) -> Seen:
    return [(m, p, int(s)) for m, p, s in ACCESS_LINE.findall(server.output()[mark:])]


def wait_for_request(server: ServerProcess, mark: int, method: str, path: str, status: int) -> Seen:
    """The requests logged since `mark`, once the given one is among them (the server writes
    a line just after it answers, so the client may exit before the line is there)."""

    def check() -> Seen | None:
        seen = requests_since(server, mark)
        return seen if (method, path, status) in seen else None

    return poll(check, f"{method} {path} {status} in the access log", timeout=10)


def upload(server: ServerProcess, home: Path, *files: Path) -> None:
    result = twine_upload(server, list(files), home)
    assert result.returncode == 0, result.stdout + result.stderr


def run_pyz(pyz: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A pywharf command from the pyz, on a server's ROOT."""
    env = {**os.environ, "SHIV_ROOT": str(root.parent / "shiv")}
    command = [sys.executable, str(pyz), *args, "--root", str(root)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def installed_version(target: Path) -> str:
    text = (target / "demo_pkg" / "__init__.py").read_text()
    match = re.fullmatch(r"__version__ = '(.+)'\n", text)
    assert match, text
    return match.group(1)


def yanks(server: ServerProcess) -> dict[str, Any]:
    """filename -> JSON `yanked` (None when not yanked), once the HTML form agrees with it.

    A sync can land between the two reads (a yank by the command shows at the next one), so
    both are read again until they agree; forms that never agree time out and fail.
    """
    return poll(lambda: agreeing_yanks(server), "the JSON and HTML pages to agree on yanks")


def agreeing_yanks(server: ServerProcess) -> dict[str, Any] | None:
    from_json = {f["filename"]: f.get("yanked") for f in fetch_json(server.live, PROJECT)["files"]}
    from_html = {a.text: a.attributes.get("data-yanked") for a in fetch_html(server.live, PROJECT)}
    expected = {name: "" if reason is True else reason for name, reason in from_json.items()}
    return from_json if from_html == expected else None


def metadata_of(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(member)


# --- 2. PEP 658/714: metadata files instead of wheels --------------------------------------------


def test_uv_and_pip_fetch_metadata_not_wheels_of_rejected_versions(
    pyz_server: ServerProcess, tmp_path: Path
) -> None:
    """3.0 and 2.0 need a project the index lacks, so both resolvers must look at them and fall
    back to 1.0: they learn that from the `.metadata` files and download only 1.0's wheel."""
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    upload(
        pyz_server,
        home,
        make_wheel(folder, "demo-pkg", "1.0"),
        make_wheel(folder, "demo-pkg", "2.0", requires_dist=("missing-dep>=1",)),
        make_wheel(folder, "demo-pkg", "3.0", requires_dist=("missing-dep>=1",)),
    )
    fetch_json(pyz_server.live, PROJECT)
    fetch_html(pyz_server.live, PROJECT)
    index = pyz_server.live.index_url()
    for installer in (uv_install, pip_install):
        mark = log_mark(pyz_server)
        target = tmp_path / installer.__name__
        result = installer(index, "demo-pkg", target, home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert installed_version(target) == "1.0"
        seen = wait_for_request(pyz_server, mark, "GET", PROJECT + WHEEL.format("1.0"), 200)
        for rejected in ("2.0", "3.0"):
            wheel = PROJECT + WHEEL.format(rejected)
            assert ("GET", wheel + ".metadata", 200) in seen, (installer.__name__, seen)
            assert not [r for r in seen if r[1] == wheel], (installer.__name__, seen)


@pytest.mark.slow
def test_old_pip_reads_data_dist_info_metadata(
    pyz_server: ServerProcess, old_pip: Path, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    upload(
        pyz_server,
        home,
        make_wheel(folder, "demo-pkg", "1.0"),
        make_wheel(folder, "demo-pkg", "2.0", requires_dist=("missing-dep>=1",)),
    )
    index = pyz_server.live.index_url()
    rejected = PROJECT + WHEEL.format("2.0")
    # pip 23.0 asks for JSON first. PEP 714 allows only `core-metadata` there (the old JSON key
    # crashes pip 22.3-23.1), a name pip 23.0 does not know: it downloads whole wheels, and works.
    mark = log_mark(pyz_server)
    result = pip_install(index, "demo-pkg", tmp_path / "json", home, python=old_pip)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version(tmp_path / "json") == "1.0"
    seen = wait_for_request(pyz_server, mark, "GET", PROJECT + WHEEL.format("1.0"), 200)
    assert ("GET", rejected, 200) in seen
    assert not [r for r in seen if r[1].endswith(".metadata")], seen
    # Given HTML (here by the page's ?format= override, read as a find-links page) it reads
    # `data-dist-info-metadata` and fetches only the metadata of the release it rejects.
    mark = log_mark(pyz_server)
    html_page = f"{index}demo-pkg/?format=text/html"
    result = pip_install(
        index, "demo-pkg", tmp_path / "html", home, "--no-index", "--find-links", html_page,
        python=old_pip,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version(tmp_path / "html") == "1.0"
    seen = wait_for_request(pyz_server, mark, "GET", PROJECT + WHEEL.format("1.0"), 200)
    assert ("GET", rejected + ".metadata", 200) in seen, seen
    assert not [r for r in seen if r[1] == rejected], seen


# --- 3. yank and delete --------------------------------------------------------------------------


@pytest.mark.slow
def test_yanked_release_is_skipped_unless_pinned(
    pyz: Path, pyz_server: ServerProcess, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    upload(pyz_server, home, make_wheel(folder, "demo-pkg", "1.0"),
           make_wheel(folder, "demo-pkg", "2.0"))  # fmt: skip
    result = run_pyz(pyz, pyz_server.live.root, "yank", "file_system", "local", "demo-pkg", "2.0",
                     "--reason", "broken build")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"yank: {WHEEL.format('2.0')}\n"
    # The running server follows the journal every 0.2 s (sync_index_interval in CONFIG).
    poll(lambda: yanks(pyz_server)[WHEEL.format("2.0")], "the server to show the yank")
    assert yanks(pyz_server) == {WHEEL.format("1.0"): None, WHEEL.format("2.0"): "broken build"}
    index = pyz_server.live.index_url()
    for installer in (pip_install, uv_install):
        name = installer.__name__
        result = installer(index, "demo-pkg", tmp_path / name / "any", home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert installed_version(tmp_path / name / "any") == "1.0", name
        result = installer(index, "demo-pkg==2.0", tmp_path / name / "pinned", home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert installed_version(tmp_path / name / "pinned") == "2.0", name
        assert "broken build" in result.stdout + result.stderr, name  # the reason is shown
    status, _, _ = pyz_server.live.request(
        "POST", "/api/unyank/demo-pkg/2.0", auth=("local", WRITE)
    )
    assert status == 200
    assert yanks(pyz_server) == {WHEEL.format("1.0"): None, WHEEL.format("2.0"): None}
    for installer in (pip_install, uv_install):
        target = tmp_path / installer.__name__ / "restored"
        result = installer(index, "demo-pkg", target, home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert installed_version(target) == "2.0", installer.__name__
    # And the other way round: yanked over HTTP, un-yanked by the command.
    body = b"reason=again"
    status, _, _ = pyz_server.live.request(
        "POST", "/api/yank/demo-pkg/2.0", body=body, auth=("local", WRITE),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert (status, yanks(pyz_server)[WHEEL.format("2.0")]) == (200, "again")
    result = run_pyz(pyz, pyz_server.live.root, "unyank", "file_system", "local", "demo-pkg",
                     WHEEL.format("2.0"))  # fmt: skip
    assert (result.returncode, result.stdout) == (0, f"unyank: {WHEEL.format('2.0')}\n")
    poll(lambda: yanks(pyz_server)[WHEEL.format("2.0")] is None or None, "the un-yank to show")


def test_deleted_file_is_gone_and_its_name_keeps_its_bytes(
    pyz: Path, pyz_server: ServerProcess, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    wheel = make_wheel(folder, "demo-pkg", "2.0")
    sdist = make_sdist(folder, "demo-pkg", "2.0")
    upload(pyz_server, home, make_wheel(folder, "demo-pkg", "1.0"), wheel, sdist)
    live = pyz_server.live
    result = run_pyz(pyz, live.root, "delete", "file_system", "local", "demo-pkg", wheel.name)
    assert (result.returncode, result.stdout) == (0, f"delete: {wheel.name}\n"), result.stderr

    def gone() -> bool | None:
        return wheel.name not in {f["filename"] for f in fetch_json(live, PROJECT)["files"]} or None

    poll(gone, "the server to drop the deleted file")
    assert wheel.name not in {a.text for a in fetch_html(live, PROJECT)}
    assert live.request("GET", PROJECT + wheel.name)[0] == 404
    assert live.request("GET", PROJECT + wheel.name + ".metadata")[0] == 404
    # The name keeps its bytes: twine is refused other bytes, and the same bytes come back.
    other = make_wheel(tmp_path, "demo-pkg", "2.0", payload_bytes=64)
    result = twine_upload(pyz_server, [other], home)
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())  # twine wraps its lines
    assert "409" in output and "File already exists" in output, output
    upload(pyz_server, home, wheel)
    status, _, data = live.request("GET", PROJECT + wheel.name)
    assert (status, data) == (200, wheel.read_bytes())
    # The HTTP API deletes too, with the write secret only.
    path = f"/api/files/demo-pkg/{sdist.name}"
    assert live.request("DELETE", path)[0] == 403  # the read secret
    assert live.request("DELETE", path, auth=None)[0] == 401
    assert live.request("DELETE", path, auth=("local", WRITE))[0] == 200
    assert sdist.name not in {f["filename"] for f in fetch_json(live, PROJECT)["files"]}
    assert live.request("GET", PROJECT + sdist.name)[0] == 404


# --- 4. pip's second resolve revalidates ---------------------------------------------------------


@pytest.mark.slow
def test_pips_second_resolve_gets_304s(pyz_server: ServerProcess, tmp_path: Path) -> None:
    """pip caches only https and --trusted-host origins (digest 7.3): plain http on 127.0.0.1 is
    fetched through an adapter without a cache, so a shared --cache-dir alone is not enough."""
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    upload(pyz_server, home, make_wheel(folder, "demo-pkg", "1.0"),
           make_wheel(folder, "demo-pkg", "2.0"))  # fmt: skip
    latest = PROJECT + WHEEL.format("2.0")

    def pip_download(run: str, *options: str) -> None:
        command = [str(BIN / "python"), "-m", "pip", "download", "--isolated",
                   "--disable-pip-version-check", "--cache-dir", str(tmp_path / "pip-cache"),
                   "--dest", str(tmp_path / run), "--index-url", pyz_server.live.index_url(),
                   *options, "demo-pkg"]  # fmt: skip
        result = run_client(command, home)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (tmp_path / run / WHEEL.format("2.0")).exists()

    trusted = ("--trusted-host", "127.0.0.1")
    pip_download("first", *trusted)
    seen = wait_for_request(pyz_server, 0, "GET", latest, 200)
    assert ("GET", PROJECT, 200) in seen
    mark = log_mark(pyz_server)
    pip_download("second", *trusted)
    seen = wait_for_request(pyz_server, mark, "GET", PROJECT, 304)
    assert ("GET", PROJECT, 200) not in seen, seen
    assert not [r for r in seen if r[1].startswith(latest)], seen  # immutable: not asked again
    # Without --trusted-host the same cache is not used at all.
    mark = log_mark(pyz_server)
    pip_download("untrusted")
    seen = wait_for_request(pyz_server, mark, "GET", latest, 200)
    assert ("GET", PROJECT, 200) in seen, seen


# --- 5. uv --exclude-newer -----------------------------------------------------------------------


def _upload_time(server: ServerProcess, filename: str) -> datetime:
    (entry,) = [f for f in fetch_json(server.live, PROJECT)["files"] if f["filename"] == filename]
    moment = datetime.strptime(entry["upload-time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=timezone.utc)


def _wait_past(moment: float) -> None:
    poll(lambda: time.time() > moment or None, f"the clock to pass {moment}", timeout=5)


@pytest.mark.slow
def test_uv_exclude_newer_picks_what_was_current_then(
    pyz_server: ServerProcess, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    upload(pyz_server, home, make_wheel(folder, "demo-pkg", "1.0"))
    first = _upload_time(pyz_server, WHEEL.format("1.0"))
    _wait_past(first.timestamp() + 1)
    noted = datetime.now(timezone.utc).replace(microsecond=0)  # uv takes RFC 3339
    _wait_past(noted.timestamp() + 1)
    upload(pyz_server, home, make_wheel(folder, "demo-pkg", "2.0"))
    assert first < noted < _upload_time(pyz_server, WHEEL.format("2.0"))
    index = pyz_server.live.index_url()
    cutoff = noted.strftime("%Y-%m-%dT%H:%M:%SZ")
    result = uv_install(index, "demo-pkg", tmp_path / "then", home, "--exclude-newer", cutoff)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version(tmp_path / "then") == "1.0"
    result = uv_install(index, "demo-pkg", tmp_path / "now", home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert installed_version(tmp_path / "now") == "2.0"


# --- 6. upload time and metadata survive ---------------------------------------------------------


@pytest.fixture
def restartable(pyz: Path, tmp_path: Path) -> Any:
    """Start (and restart) the pyz on one ROOT; every server started is stopped at the end."""
    config = tmp_path / "repos.toml"
    config.write_text(CONFIG)
    started: list[ServerProcess] = []

    def start() -> ServerProcess:
        server = start_pyz(pyz, tmp_path / "root", "--config", str(config),
                           "--extra_index_url", "")  # fmt: skip
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.process.poll() is None:
                stop(server)


def _state(server: ServerProcess) -> tuple[dict[str, Any], list[Any], dict[str, bytes]]:
    """Both forms of the project page and every metadata file it advertises."""
    document = fetch_json(server.live, PROJECT)
    anchors = [(a.href, a.text, a.attributes) for a in fetch_html(server.live, PROJECT)]
    metadata = {}
    for entry in document["files"]:
        if "core-metadata" in entry:
            status, _, data = server.live.request("GET", PROJECT + entry["url"] + ".metadata")
            assert status == 200
            assert {"sha256": hashlib.sha256(data).hexdigest()} == entry["core-metadata"]
            metadata[entry["filename"]] = data
    return document, anchors, metadata


def test_upload_time_and_metadata_survive_restart_and_update_index(
    pyz: Path, restartable: Any, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    server = restartable()
    wheel = make_wheel(folder, "demo-pkg", "1.0", requires_python=">=3.8")
    upload(server, home, wheel, make_sdist(folder, "demo-pkg", "1.0"))
    yank = server.live.request(
        "POST", "/api/yank/demo-pkg/demo_pkg-1.0.tar.gz", auth=("local", WRITE)
    )
    assert yank[0] == 200
    before = _state(server)
    assert before[2] == {wheel.name: metadata_of(wheel)}
    assert {f["filename"]: f.get("yanked") for f in before[0]["files"]} == {
        wheel.name: None, "demo_pkg-1.0.tar.gz": True}  # fmt: skip
    stop(server)
    server = restartable()
    assert _state(server) == before, "after a restart"
    stop(server)
    result = run_pyz(pyz, server.live.root, "update_index", "file_system", "local")
    assert result.returncode == 0, result.stderr
    assert "0 changes" in result.stdout, result.stdout  # the rebuild found what the index said
    server = restartable()
    assert _state(server) == before, "after update_index"


@pytest.mark.slow
def test_deleted_name_keeps_its_bytes_after_restart_and_update_index(
    pyz: Path, restartable: Any, tmp_path: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "dists"
    folder.mkdir()
    server = restartable()
    doomed = make_wheel(folder, "demo-pkg", "2.0")
    upload(server, home, make_wheel(folder, "demo-pkg", "1.0"), doomed)
    delete = server.live.request(
        "DELETE", f"/api/files/demo-pkg/{doomed.name}", auth=("local", WRITE)
    )
    assert delete[0] == 200
    other = make_wheel(tmp_path, "demo-pkg", "2.0", payload_bytes=64)
    assert upload_raw(server.live, other)[0] == 409
    stop(server)
    server = restartable()
    assert upload_raw(server.live, other)[0] == 409, "after a restart"
    stop(server)
    result = run_pyz(pyz, server.live.root, "update_index", "file_system", "local")
    assert result.returncode == 0, result.stderr
    server = restartable()
    assert doomed.name not in {f["filename"] for f in fetch_json(server.live, PROJECT)["files"]}
    status, _, answer = upload_raw(server.live, other)
    assert status == 409, f"after update_index: {status} {answer!r}"


def test_update_index_gives_stored_wheels_their_metadata(
    pyz: Path, restartable: Any, tmp_path: Path
) -> None:
    """Issue 5, point 2: files stored without a metadata file (by the original pywharf, or
    before PEP 658 support) get it from `update_index`."""
    root = tmp_path / "root"
    storage = root / "cache" / "local" / "storage" / "demo-pkg"
    storage.mkdir(parents=True)
    wheel = make_wheel(storage, "demo-pkg", "1.0")  # the original's layout: the bare file
    result = run_pyz(pyz, root, "update_index", "file_system", "local")
    assert result.returncode == 0, result.stderr
    assert f"added {wheel.name}" in result.stdout
    server = restartable()
    expected = metadata_of(wheel)
    digest = hashlib.sha256(expected).hexdigest()
    (entry,) = fetch_json(server.live, PROJECT)["files"]
    assert entry.get("core-metadata") == {"sha256": digest}
    (anchor,) = fetch_html(server.live, PROJECT)
    assert anchor.attributes.get("data-core-metadata") == f"sha256={digest}"
    status, _, served = server.live.request("GET", PROJECT + wheel.name + ".metadata")
    assert (status, served) == (200, expected)
