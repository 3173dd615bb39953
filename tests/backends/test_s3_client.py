"""Our S3 client against SeaweedFS (a real server that checks signatures), then faults from a
tiny scripted server: a 500 then success, SlowDown, a closed port."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_support import S3Bucket
from s3_support import free_ports

from pywharf.clients import s3
from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.clients.http import RetryPolicy
from pywharf.clients.s3 import S3Client
from pywharf.clients.s3_core import MIN_PART_BYTES
from pywharf.clients.sigv4 import Credentials
from pywharf.clients.sigv4 import S3Location

AWKWARD_KEYS = ("plain.txt", "a b+c!~=&'()*.whl", "ünïcödé/ሴ.tar.gz", "deep/er/key-1.0.zip")


def client_for(bucket: S3Bucket, **kwargs: object) -> S3Client:
    credentials = Credentials(bucket.access_key, bucket.secret_key)
    return S3Client(bucket.location(), credentials, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def client(seaweedfs: S3Bucket) -> Iterator[S3Client]:
    with_client = client_for(seaweedfs)
    yield with_client
    with_client.close()


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_put_get_head_round_trip_with_metadata(client: S3Client, key: str) -> None:
    etag = client.put(key, b"hello", metadata={"sha256": "abc"}, create_only=True)
    assert etag == hashlib.md5(b"hello").hexdigest()  # S3's ETag is an MD5
    got = client.get(key)
    assert got is not None and got.data == b"hello"
    info = client.head(key)
    assert (info.size, info.etag, info.metadata["sha256"]) == (5, etag, "abc")
    assert info.last_modified > 0
    assert client.get(key, if_none_match=etag) is None  # 304: unchanged


def test_conditional_writes(client: S3Client) -> None:
    first = client.put("index/demo.json", b"1", create_only=True)
    with pytest.raises(AlreadyExists) as caught:
        client.put("index/demo.json", b"2", create_only=True)
    assert caught.value.name == "index/demo.json"
    second = client.put("index/demo.json", b"2", if_match=first)
    with pytest.raises(Conflict):
        client.put("index/demo.json", b"3", if_match=first)  # stale: someone else won
    with pytest.raises((Conflict, ResourceNotFound)):  # 412 on SeaweedFS, 404 on AWS
        client.put("index/missing.json", b"1", if_match=second)
    got = client.get("index/demo.json")
    assert got is not None and got.data == b"2"


def test_missing_objects(client: S3Client) -> None:
    with pytest.raises(ResourceNotFound):
        client.head("nope")
    with pytest.raises(ResourceNotFound):
        client.get("nope")
    with pytest.raises(ResourceNotFound):
        client.stream("nope")
    client.delete("nope")  # deleting what is gone is no error
    client.put("gone", b"x")
    client.delete("gone")
    with pytest.raises(ResourceNotFound):
        client.head("gone")


def test_list_pages_through_a_prefix(client: S3Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "LIST_PAGE", 3)
    keys = [f"files/p/{n:02d}-ü+ .whl" for n in range(7)]
    for key in keys:
        client.put(key, key.encode())
    client.put("files/q", b"outside the prefix")
    listed = list(client.list("files/p/"))
    assert [item.key for item in listed] == sorted(keys)
    assert all(item.size == len(item.key.encode()) for item in listed)
    assert listed[0].etag == hashlib.md5(keys[0].encode()).hexdigest()
    assert listed[0].last_modified > 0
    assert [item.key for item in client.list("nothing/")] == []


def test_stream_and_put_file(client: S3Client, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    client.put_file("files/big.bin", path, sha256=sha256, metadata={"sha256": sha256})
    with client.stream("files/big.bin") as stream:
        assert b"".join(stream) == path.read_bytes()


def test_multipart_upload_streams_parts_and_keeps_metadata(
    seaweedfs: S3Bucket, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    client = client_for(seaweedfs, multipart_threshold=MIN_PART_BYTES, part_bytes=MIN_PART_BYTES)
    request.addfinalizer(client.close)
    path = tmp_path / "parts.bin"
    path.write_bytes(b"a" * MIN_PART_BYTES + b"b" * MIN_PART_BYTES + b"c" * 1234)
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    client.put_file("files/parts.bin", path, sha256=sha256, metadata={"sha256": sha256},
                    create_only=True)  # fmt: skip
    got = client.get("files/parts.bin")
    assert got is not None and got.data == path.read_bytes()
    assert got.info.metadata["sha256"] == sha256
    with pytest.raises(AlreadyExists):  # If-None-Match: * holds on completion too
        client.put_file("files/parts.bin", path, sha256=sha256, create_only=True)
    assert list(client.list_multipart_uploads()) == []  # the refused one was aborted


def test_a_failed_multipart_upload_is_aborted_and_an_orphan_can_be_found(
    seaweedfs: S3Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    client = client_for(seaweedfs, multipart_threshold=MIN_PART_BYTES, part_bytes=MIN_PART_BYTES)
    request.addfinalizer(client.close)
    path = tmp_path / "parts.bin"
    path.write_bytes(b"x" * (MIN_PART_BYTES + 1))

    def broken(*args: object) -> list[str]:
        raise Unavailable("the network broke mid-upload")

    monkeypatch.setattr(client, "_send_parts", broken)
    with pytest.raises(Unavailable):
        client.put_file("files/a.bin", path, sha256="0" * 64)
    assert list(client.list_multipart_uploads()) == []
    monkeypatch.setattr(client, "abort_multipart", lambda key, upload_id: None)  # a crash
    with pytest.raises(Unavailable):
        client.put_file("files/b.bin", path, sha256="0" * 64)
    (orphan,) = client.list_multipart_uploads("files/")
    assert orphan.key == "files/b.bin" and orphan.initiated > 0
    assert list(client.list_multipart_uploads("other/")) == []
    monkeypatch.undo()
    client.abort_multipart(orphan.key, orphan.upload_id)
    assert list(client.list_multipart_uploads()) == []


def test_presigned_get_needs_no_credentials(client: S3Client) -> None:
    client.put("files/p/demo-1.0.tar.gz", b"sdist bytes")
    url = client.presign("files/p/demo-1.0.tar.gz", 60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"sdist bytes"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url.replace("demo-1.0", "demo-2.0"), timeout=10)
    caught.value.close()
    assert caught.value.code == 403


def test_a_wrong_secret_is_refused_without_showing_it(seaweedfs: S3Bucket) -> None:
    location = seaweedfs.location()
    wrong = S3Client(location, Credentials(seaweedfs.access_key, "not-the-secret-value"))
    unknown = S3Client(location, Credentials("nobody", "whatever"))
    with contextlib.closing(wrong), contextlib.closing(unknown):
        with pytest.raises(Refused) as caught:
            wrong.put("x", b"x")
        assert caught.value.status == 403
        assert "SignatureDoesNotMatch" in str(caught.value)
        assert "not-the-secret-value" not in str(caught.value) + repr(wrong)
        with pytest.raises(Refused, match="InvalidAccessKeyId"):
            list(unknown.list())


# --- faults, from a scripted server -----------------------------------------------------------


class Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's script."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        server: ScriptedServer = self.server  # type: ignore[assignment]
        server.seen.append(f"{self.command} {self.path.partition('?')[0]}")
        status, body = server.script.pop(0) if server.script else (200, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"e"')
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


class ScriptedServer(http.server.ThreadingHTTPServer):
    def __init__(self, script: list[tuple[int, bytes]]) -> None:
        super().__init__(("127.0.0.1", 0), Scripted)
        self.script = script
        self.seen: list[str] = []


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer([])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def scripted_client(endpoint: str, waits: list[float]) -> Iterator[S3Client]:
    location = S3Location("bucket", endpoint_url=endpoint)
    client = S3Client(location, Credentials("id", "secret"), sleep=waits.append,
                      policy=RetryPolicy(attempts=3, backoff=0.25))  # fmt: skip
    with contextlib.closing(client):
        yield client


SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
COMPLETE = b'<CompleteMultipartUploadResult><ETag>"e"</ETag></CompleteMultipartUploadResult>'


def test_a_500_then_success_is_retried_with_backoff(scripted: ScriptedServer) -> None:
    waits: list[float] = []
    scripted.script += [(500, b"<Error><Code>InternalError</Code></Error>"), (200, b"")]
    with scripted_client(f"http://127.0.0.1:{scripted.server_port}", waits) as client:
        assert client.put("k", b"data", create_only=True) == "e"
    assert scripted.seen == ["PUT /bucket/k", "PUT /bucket/k"]
    assert waits == [0.25]


def test_slow_down_is_waited_out_even_for_a_post(scripted: ScriptedServer) -> None:
    waits: list[float] = []
    scripted.script += [(503, SLOW_DOWN), (503, SLOW_DOWN), (200, COMPLETE)]
    with scripted_client(f"http://127.0.0.1:{scripted.server_port}", waits) as client:
        assert client._complete("k", "id", ["e"], {}, create=False) == "e"
        assert waits == [0.25, 0.5]
        scripted.script += [(503, SLOW_DOWN)] * 3
        with pytest.raises(Unavailable, match="SlowDown"):
            client._complete("k", "id", ["e"], {}, create=False)


def test_an_error_inside_a_200_is_an_error(scripted: ScriptedServer) -> None:
    scripted.script += [(200, b"<Error><Code>PreconditionFailed</Code></Error>")]
    endpoint = f"http://127.0.0.1:{scripted.server_port}"
    with scripted_client(endpoint, []) as client, pytest.raises(AlreadyExists):
        client._complete("k", "id", ["e"], {"If-None-Match": "*"}, create=True)


def test_a_closed_port_is_unavailable_after_the_retries() -> None:
    (port,) = free_ports(1)
    waits: list[float] = []
    with (
        scripted_client(f"http://127.0.0.1:{port}", waits) as client,
        pytest.raises(Unavailable) as caught,
    ):
        client.head("files/x")
    assert waits == [0.25, 0.5]
    assert "secret" not in str(caught.value)
