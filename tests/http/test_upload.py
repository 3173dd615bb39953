"""The legacy upload API against a real server: every refusal stores nothing, nothing leaks.

"Nothing stored" is checked on disk (no file under the storage, no line in the journal, no spool
file left in `.pywharf/tmp/`) and through the API (the project page is still 404).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from factory import make_sdist
from factory import make_wheel
from support import CONFIG
from support import READ
from support import WRITE
from support import Live
from support import build_app
from support import poll
from support_upload import basic
from support_upload import multipart_body
from support_upload import raw_connect
from support_upload import read_response
from support_upload import upload
from support_upload import upload_form
from support_upload import upload_head

from pywharf.http import Request

MAX_FILE_BYTES = 2_000_000  # tests/support.py CONFIG


def storage(live: Live) -> Path:
    return live.root / "cache" / "local" / "storage"


def spool_dir(live: Live) -> Path:
    return storage(live) / ".pywharf" / "tmp"


def journal(live: Live) -> list[dict[str, object]]:
    path = storage(live) / ".pywharf" / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stored(live: Live) -> set[str]:
    """Every file under the storage outside pywharf's private folder."""
    root = storage(live)
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
    }


def everything_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def spool_files(live: Live) -> list[str]:
    folder = spool_dir(live)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def wait_until_no_spool_files(live: Live, seconds: float = 5.0) -> list[str]:
    """The server cleans up as soon as it notices the failure; give it a moment, not a sleep."""
    deadline = time.monotonic() + seconds
    while True:
        left = spool_files(live)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def assert_nothing_stored(live: Live, before: set[str], project: str = "demo-pkg") -> None:
    assert wait_until_no_spool_files(live) == []
    assert everything_under(live.root) - before == set()
    assert live.request("GET", f"/simple/{project}/")[0] == 404


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "demo-pkg", "1.0", requires_python=">=3.8")


@pytest.fixture
def before(live_server: Live) -> set[str]:
    return everything_under(live_server.root)


# --- who may upload -----------------------------------------------------------------------------


def test_an_upload_is_stored_and_listed(live_server: Live, wheel: Path) -> None:
    status, _, body = upload(live_server, wheel)
    assert status == 200, body
    assert f"demo-pkg/{wheel.name}" in stored(live_server)
    status, _, page = live_server.request("GET", "/simple/demo-pkg/")
    assert status == 200
    assert wheel.name.encode() in page
    assert hashlib.sha256(wheel.read_bytes()).hexdigest().encode() in page
    assert [e["filename"] for e in journal(live_server) if e["op"] == "add"] == [wheel.name]
    assert wait_until_no_spool_files(live_server) == []


def test_anonymous_upload_is_401(live_server: Live, wheel: Path, before: set[str]) -> None:
    body, content_type = multipart_body(
        upload_form(wheel.name, wheel.read_bytes()), (wheel.name, wheel.read_bytes())
    )
    status, headers, _ = live_server.request(
        "POST", "/simple/", body, {"Content-Type": content_type}, auth=None
    )
    assert status == 401
    assert headers["www-authenticate"].lower().startswith("basic")
    assert_nothing_stored(live_server, before)


@pytest.mark.parametrize(
    ("user", "secret"), [("local", "wrong"), ("nosuchrepo", WRITE), ("local", "")]
)
def test_wrong_credentials_upload_is_401(
    live_server: Live, wheel: Path, before: set[str], user: str, secret: str
) -> None:
    status, headers, _ = upload(live_server, wheel, user=user, secret=secret)
    assert status == 401
    assert headers["www-authenticate"].lower().startswith("basic")
    assert_nothing_stored(live_server, before)


def test_the_read_secret_cannot_upload(live_server: Live, wheel: Path, before: set[str]) -> None:
    status, _, body = upload(live_server, wheel, secret=READ)
    assert status == 403
    assert b"Traceback" not in body
    assert_nothing_stored(live_server, before)


def test_the_repository_name_ignores_case_for_uploads(live_server: Live, wheel: Path) -> None:
    status, _, body = upload(live_server, wheel, user="LoCaL")
    assert status == 200, body


@pytest.mark.parametrize("path", ["/simple/", "/simple", "/legacy/", "/legacy"])
def test_every_upload_url_takes_the_post_without_a_redirect(
    live_server: Live, wheel: Path, path: str
) -> None:
    status, _, body = upload(live_server, wheel, path=path)
    assert status == 200, body  # twine treats any 3xx as a failure


# --- sizes and framing --------------------------------------------------------------------------


def test_413_from_content_length_before_the_body_is_read(
    live_server: Live, before: set[str]
) -> None:
    """Only the head is sent: the answer must come without waiting for a gigabyte."""
    with raw_connect(live_server, timeout=5) as sock:
        sock.sendall(upload_head(live_server, "multipart/form-data; boundary=x", 10**10))
        # Answered at once: a server waiting for the body would hit the socket's 5 s timeout.
        status, _, body = read_response(sock)
    assert status == 413
    assert str(MAX_FILE_BYTES).encode() in body
    assert_nothing_stored(live_server, before)


def test_413_with_expect_continue_and_no_100(live_server: Live) -> None:
    with raw_connect(live_server, timeout=5) as sock:
        head = upload_head(
            live_server, "multipart/form-data; boundary=x", 10**10, Expect="100-continue"
        )
        sock.sendall(head)
        data = sock.recv(100)
    assert data.startswith(b"HTTP/1.1 413")  # refused at once: no 100 Continue first


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server answered and closed before reading it all
        sock.sendall(data)


def test_413_while_reading_a_file_part_over_the_limit(live_server: Live, before: set[str]) -> None:
    data = make_sdist_bytes(MAX_FILE_BYTES + 1)
    filename = "demo_pkg-1.0.tar.gz"
    body, content_type = multipart_body(upload_form(filename, data), (filename, data))
    assert len(body) < MAX_FILE_BYTES + 32 * 1024 * 1024  # honest and within the head's check
    with raw_connect(live_server, timeout=10) as sock:
        sock.sendall(upload_head(live_server, content_type, len(body)))
        sender = threading.Thread(target=_send_ignoring_reset, args=(sock, body))
        sender.start()
        status, _, answer = read_response(sock)
        sender.join(10)
    assert status == 413
    assert b"Traceback" not in answer
    assert_nothing_stored(live_server, before)


def make_sdist_bytes(size: int) -> bytes:
    """Bytes of a given size for an sdist (sdist contents are not inspected)."""
    block = hashlib.sha256(b"seed").digest() * 2048
    return (block * (size // len(block) + 1))[:size]


def test_a_file_of_exactly_max_file_bytes_is_accepted(live_server: Live) -> None:
    data = make_sdist_bytes(MAX_FILE_BYTES)
    status, _, body = upload(live_server, "demo_pkg-1.0.tar.gz", data)
    assert status == 200, body


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/mixed"],
)
def test_415_when_not_multipart_form_data(
    live_server: Live, content_type: str, before: set[str]
) -> None:
    status, _, body = live_server.request(
        "POST", "/simple/", b'{"a": 1}', {"Content-Type": content_type}, auth=("local", WRITE)
    )
    assert status == 415
    assert b"Traceback" not in body
    assert_nothing_stored(live_server, before)


def test_411_for_a_chunked_upload(live_server: Live, before: set[str]) -> None:
    with raw_connect(live_server, timeout=5) as sock:
        sock.sendall(
            upload_head(
                live_server, "multipart/form-data; boundary=x", None, Transfer_Encoding="chunked"
            )
        )
        status, _, _ = read_response(sock)
    assert status == 411
    assert_nothing_stored(live_server, before)


# --- what is in the body ------------------------------------------------------------------------


@pytest.mark.parametrize("digest", ["sha256", "blake2_256", "md5"])
@pytest.mark.parametrize("order", ["fields first", "fields after the file"])
def test_a_digest_mismatch_is_400_and_stores_nothing(
    live_server: Live, wheel: Path, before: set[str], digest: str, order: str
) -> None:
    data = wheel.read_bytes()
    fields = upload_form(wheel.name, data, digests=("sha256", "blake2_256", "md5"))
    fields = [(k, "0" * len(v) if k == f"{digest}_digest" else v) for k, v in fields]
    if order == "fields first":
        body, content_type = multipart_body(fields, (wheel.name, data))
    else:  # the file part, then the fields (a client may send them in any order)
        file_body, content_type = multipart_body([], (wheel.name, data), terminate=False)
        boundary = content_type.split("boundary=")[1]
        rest, _ = multipart_body(fields, None, boundary=boundary)
        body = file_body + rest
    status, _, answer = live_server.request(
        "POST", "/simple/", body, {"Content-Type": content_type}, auth=("local", WRITE)
    )
    assert status == 400
    assert digest.encode() in answer
    assert_nothing_stored(live_server, before)


def test_upper_case_hex_digests_are_accepted(live_server: Live, wheel: Path) -> None:
    data = wheel.read_bytes()
    fields = [
        (k, v.upper() if k.endswith("_digest") else v)
        for k, v in upload_form(wheel.name, data, digests=("sha256", "blake2_256", "md5"))
    ]
    status, _, body = upload(live_server, wheel, fields=fields)
    assert status == 200, body


REFUSED = {
    # case: (filename, form overrides)
    "unknown extension": ("demo_pkg-1.0.exe", {}),
    "egg": ("demo_pkg-1.0-py3.11.egg", {"version": "1.0"}),
    "bad wheel name": ("demo_pkg-1.0.whl", {"version": "1.0"}),
    "no version in sdist": ("demo_pkg.tar.gz", {"name": "demo_pkg", "version": "1.0"}),
    "name mismatch": ("demo_pkg-1.0-py3-none-any.whl", {"name": "other-pkg"}),
    "version mismatch": ("demo_pkg-1.0-py3-none-any.whl", {"version": "1.1"}),
    "sdist name mismatch": ("demo_pkg-1.0.tar.gz", {"name": "other"}),
    "sdist version mismatch": ("demo_pkg-1.0.tar.gz", {"version": "2.0"}),
    "dot-dot": ("..", {"name": "demo-pkg", "version": "1.0"}),
    "parent path": ("../demo_pkg-1.0.tar.gz", {"name": "demo-pkg", "version": "1.0"}),
    "parent path, deeper": (
        "../../../../tmp/demo_pkg-1.0.tar.gz",
        {"name": "demo-pkg", "version": "1.0"},
    ),
    "slash": ("sub/demo_pkg-1.0.tar.gz", {"name": "demo-pkg", "version": "1.0"}),
    "absolute": ("/tmp/demo_pkg-1.0.tar.gz", {"name": "demo-pkg", "version": "1.0"}),
    "backslash": ("sub\\demo_pkg-1.0.tar.gz", {"name": "demo-pkg", "version": "1.0"}),
    "hidden": (".demo_pkg-1.0.tar.gz", {"name": "demo-pkg", "version": "1.0"}),
    "empty filename": ("", {"name": "demo-pkg", "version": "1.0"}),
}


@pytest.mark.parametrize(("filename", "form"), REFUSED.values(), ids=list(REFUSED))
def test_refused_filenames_are_400_and_store_nothing(
    live_server: Live, tmp_path: Path, before: set[str], filename: str, form: dict[str, str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    data = make_sdist(source, "demo-pkg", "1.0").read_bytes()
    if filename.endswith(".whl"):
        data = make_wheel(source, "demo-pkg", "1.0").read_bytes()
    status, _, body = upload(
        live_server, filename, data, fields=upload_form(filename, data, **form)
    )
    assert status == 400, body
    assert b"Traceback" not in body
    assert_nothing_stored(live_server, before)
    for project in ("other", "other-pkg"):
        assert live_server.request("GET", f"/simple/{project}/")[0] == 404
    assert not (live_server.root.parent / "demo_pkg-1.0.tar.gz").exists()


def test_a_malformed_wheel_is_400(live_server: Live, before: set[str]) -> None:
    status, _, body = upload(live_server, "demo_pkg-1.0-py3-none-any.whl", b"not a zip at all")
    assert status == 400
    assert b"wheel" in body
    assert_nothing_stored(live_server, before)


def test_a_wheel_whose_metadata_names_another_project_is_400(
    live_server: Live, tmp_path: Path, before: set[str]
) -> None:
    other = make_wheel(tmp_path, "other", "1.0").read_bytes()
    status, _, _ = upload(live_server, "demo_pkg-1.0-py3-none-any.whl", other)
    assert status == 400
    assert_nothing_stored(live_server, before)


def test_no_content_part_is_400(live_server: Live, before: set[str]) -> None:
    body, content_type = multipart_body(upload_form("demo_pkg-1.0.tar.gz", b"x"), None)
    status, _, _ = live_server.request(
        "POST", "/simple/", body, {"Content-Type": content_type}, auth=("local", WRITE)
    )
    assert status == 400
    assert_nothing_stored(live_server, before)


@pytest.mark.parametrize(("action", "expected"), [("submit", 410), ("doc_upload", 410), ("", 400)])
def test_other_actions_are_refused(
    live_server: Live, wheel: Path, before: set[str], action: str, expected: int
) -> None:
    data = wheel.read_bytes()
    fields = [
        (":action", action) if k == ":action" else (k, v) for k, v in upload_form(wheel.name, data)
    ]
    status, _, _ = upload(live_server, wheel, fields=fields)
    assert status == expected
    assert_nothing_stored(live_server, before)


# --- re-uploads ---------------------------------------------------------------------------------


def test_an_identical_re_upload_is_200_and_stores_nothing_new(
    live_server: Live, wheel: Path
) -> None:
    assert upload(live_server, wheel)[0] == 200
    files, lines = everything_under(live_server.root), journal(live_server)
    status, _, body = upload(live_server, wheel)
    assert status == 200, body
    assert everything_under(live_server.root) == files
    assert journal(live_server) == lines


def test_other_bytes_under_a_stored_filename_are_409(
    live_server: Live, wheel: Path, tmp_path: Path
) -> None:
    assert upload(live_server, wheel)[0] == 200
    original = wheel.read_bytes()
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = make_wheel(other_dir, "demo-pkg", "1.0", payload_bytes=100)
    assert other.name == wheel.name and other.read_bytes() != original
    with raw_connect(live_server) as sock:  # the reason phrase, as twine prints it
        data = other.read_bytes()
        body, content_type = multipart_body(upload_form(other.name, data), (other.name, data))
        sock.sendall(upload_head(live_server, content_type, len(body)) + body)
        head = b""
        while b"\r\n" not in head:
            head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 409 File already exists")
    status, _, answer = upload(live_server, other)
    assert status == 409
    assert answer.startswith(b"File already exists")
    status, _, served = live_server.request("GET", f"/simple/demo-pkg/{wheel.name}")
    assert served == original
    assert wait_until_no_spool_files(live_server) == []


# --- broken bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_a_cut_off_body_stores_nothing_and_leaves_no_spool_file(
    live_server: Live, before: set[str], fraction: float
) -> None:
    data = make_sdist_bytes(600_000)
    filename = "demo_pkg-1.0.tar.gz"
    body, content_type = multipart_body(upload_form(filename, data), (filename, data))
    with raw_connect(live_server) as sock:
        sock.sendall(upload_head(live_server, content_type, len(body)))
        sock.sendall(body[: int(len(body) * fraction)])
        if fraction:  # the client vanishes while the server spools
            poll(lambda: spool_files(live_server) or None, "the server to start spooling")
        # Its half-close ends the body; the server closing its side says it is done with the
        # request. (With no body sent, the check for spool files below could otherwise come
        # before the server made its spool file, and find it afterwards: seen in CI.)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):  # an answer then FIN, or a reset
            while sock.recv(65536):
                pass
    assert wait_until_no_spool_files(live_server) == []
    assert_nothing_stored(live_server, before)
    # and the server still serves
    assert upload(live_server, filename, data)[0] == 200


def test_a_client_that_stops_sending_is_dropped_and_cleaned_up(
    live_server: Live, before: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pywharf.connection.BODY_TIMEOUT_SECONDS", 0.5)
    data = make_sdist_bytes(300_000)
    filename = "demo_pkg-1.0.tar.gz"
    body, content_type = multipart_body(upload_form(filename, data), (filename, data))
    with raw_connect(live_server) as sock:
        sock.sendall(upload_head(live_server, content_type, len(body)) + body[: len(body) // 2])
        poll(lambda: spool_files(live_server) or None, "an upload to be in progress")
        assert live_server.request("GET", "/simple/demo-pkg/")[0] == 404  # not visible yet
        assert wait_until_no_spool_files(live_server, seconds=5) == []
    assert_nothing_stored(live_server, before)


def test_an_unterminated_multipart_body_stores_nothing(
    live_server: Live, wheel: Path, before: set[str]
) -> None:
    data = wheel.read_bytes()
    body, content_type = multipart_body(
        upload_form(wheel.name, data), (wheel.name, data), terminate=False
    )
    status, _, answer = live_server.request(
        "POST", "/simple/", body, {"Content-Type": content_type}, auth=("local", WRITE)
    )
    assert status == 400
    assert b"Traceback" not in answer
    assert_nothing_stored(live_server, before)


def test_a_body_longer_than_its_multipart_end_is_harmless(live_server: Live, wheel: Path) -> None:
    data = wheel.read_bytes()
    body, content_type = multipart_body(upload_form(wheel.name, data), (wheel.name, data))
    status, _, _ = live_server.request(
        "POST",
        "/simple/",
        body + b"epilogue bytes after the close delimiter\r\n",
        {"Content-Type": content_type},
        auth=("local", WRITE),
    )
    assert status == 200  # RFC 2046: an epilogue after the close delimiter is ignored


# --- visibility and concurrency -----------------------------------------------------------------


def test_a_file_is_listed_the_moment_its_upload_answers(live_server: Live, tmp_path: Path) -> None:
    for number in range(10):
        wheel = make_wheel(tmp_path, "demo-pkg", f"1.{number}")
        assert upload(live_server, wheel)[0] == 200
        _, _, page = live_server.request("GET", "/simple/demo-pkg/")  # no wait, no sync
        assert wheel.name.encode() in page
        status, _, data = live_server.request("GET", f"/simple/demo-pkg/{wheel.name}")
        assert (status, data) == (200, wheel.read_bytes())


def test_forty_concurrent_uploads_lose_nothing(live_server: Live, tmp_path: Path) -> None:
    paths = [make_wheel(tmp_path, f"proj-{n % 7}", f"1.{n}") for n in range(40)]

    def one(path: Path) -> tuple[int, bool]:
        status, _, _ = upload(live_server, path)
        project = path.name.split("-")[0].replace("_", "-")
        _, _, page = live_server.request("GET", f"/simple/{project}/")
        return status, path.name.encode() in page

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(one, paths))
    assert results == [(200, True)] * 40
    names = {p.name for p in paths}
    listed = set()
    for project in {p.name.split("-")[0].replace("_", "-") for p in paths}:
        _, _, page = live_server.request("GET", f"/simple/{project}/")
        listed |= {n for n in names if n.encode() in page}
    assert listed == names
    added = [str(e["filename"]) for e in journal(live_server) if e["op"] == "add"]
    assert sorted(added) == sorted(names)  # each exactly once
    assert wait_until_no_spool_files(live_server) == []
    # A new app on the same root (a restart) knows all forty.
    restarted = build_app(live_server.root).repositories["local"]
    assert {r.filename for r in restarted.index.records()} == names


def test_concurrent_uploads_of_one_filename_have_one_winner(
    live_server: Live, tmp_path: Path
) -> None:
    variants = []
    for n in range(8):
        folder = tmp_path / f"v{n}"
        folder.mkdir()
        variants.append(make_wheel(folder, "demo-pkg", "1.0", payload_bytes=10 + n))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda p: upload(live_server, p)[0], variants))
    assert sorted(statuses) == [200] + [409] * 7
    winner = variants[statuses.index(200)]
    _, _, data = live_server.request("GET", f"/simple/demo-pkg/{winner.name}")
    assert data == winner.read_bytes()
    assert [e["filename"] for e in journal(live_server) if e["op"] == "add"] == [winner.name]


# --- memory -------------------------------------------------------------------------------------


BLOCK = hashlib.sha256(b"block").digest() * 8192  # 256 KiB of file bytes, repeated


def file_chunks(size: int) -> Iterator[bytes]:
    for start in range(0, size, len(BLOCK)):
        yield BLOCK[: min(len(BLOCK), size - start)]


class StreamedBody:
    """A request body made on the fly, never whole in memory: head, `size` file bytes, tail."""

    def __init__(self, head: bytes, size: int, tail: bytes) -> None:
        self._chunks = itertools.chain([head], file_chunks(size), [tail])
        self._pending = b""

    def read(self, size: int) -> bytes:
        if not self._pending:
            self._pending = next(self._chunks, b"")
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def test_memory_stays_flat_whatever_the_file_size(tmp_path: Path) -> None:
    """A 96 MiB upload through `App.handle` allocates a few MiB at most, never the file."""
    size = 96 * 1024 * 1024
    app = build_app(tmp_path / "root", CONFIG.replace("2000000", str(200 * 1024 * 1024)))
    filename = "big_pkg-1.0.tar.gz"
    digest = hashlib.sha256()
    for chunk in file_chunks(size):
        digest.update(chunk)
    fields = upload_form(filename, b"", digests=())
    fields.append(("sha256_digest", digest.hexdigest()))
    boundary = "memoryboundary"
    head, content_type = multipart_body(fields, (filename, b""), boundary, terminate=False)
    head = head.removesuffix(b"\r\n")  # up to the file part's blank line: its bytes come next
    tail = f"\r\n--{boundary}--\r\n".encode()
    request = Request(
        method="POST",
        path="/simple/",
        query={},
        headers={"content-type": content_type, "authorization": basic("local", WRITE)},
        body=StreamedBody(head, size, tail),
        content_length=len(head) + size + len(tail),
    )
    tracemalloc.start()
    try:
        response = app.handle(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 200, response.body
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB for a 96 MiB upload"
    stored = tmp_path / "root" / "cache" / "local" / "storage" / "big-pkg" / filename
    assert stored.stat().st_size == size
