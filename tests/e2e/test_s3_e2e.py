"""The s3 backend through the built pyz on SeaweedFS: twine in, pip and uv out by presigned
redirects (followed without our credentials) or through the server, the commands, two servers
on one bucket, and a store that is down, comes back, or refuses the server's credentials."""

from __future__ import annotations

import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from factory import make_sdist
from factory import make_wheel
from packaging.utils import canonicalize_name
from s3_support import S3Bucket
from s3_support import S3Gate
from s3_support import new_bucket
from s3_support import s3_admin_secret
from s3_support import s3_config
from s3_support import s3_gate
from s3_support import start_s3_pyz
from support import CONFIG
from support import READ
from support import WRITE
from support import Live
from support import ServerProcess
from support import pip_install
from support import poll
from support import run_pyz
from support import start_pyz
from support import stop
from support import twine_upload
from support import uv_install
from support_upload import upload

from pywharf.backends.hashing import sha256_of_file
from pywharf.backends.s3_layout import PARTIAL_RECORD
from pywharf.backends.s3_layout import Layout
from pywharf.clients.s3 import S3Client
from pywharf.clients.s3_core import MULTIPART_THRESHOLD
from pywharf.clients.sigv4 import Credentials

MiB = 1024**2


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def listed(live: Live, project: str = "demo-pkg") -> str:
    status, _, body = live.request("GET", f"/simple/{project}/")
    return body.decode() if status == 200 else ""


@pytest.fixture
def dists(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "dists"
    folder.mkdir()
    return [make_wheel(folder, "demo-pkg", "1.0"), make_sdist(folder, "demo-pkg", "1.0")]


@pytest.fixture
def gate(seaweedfs: S3Bucket) -> Iterator[S3Gate]:
    with s3_gate(seaweedfs.endpoint_url) as gate:
        yield gate


@pytest.fixture
def gated_server(
    pyz: Path, seaweedfs: S3Bucket, gate: S3Gate, tmp_path: Path
) -> Iterator[ServerProcess]:
    """A server whose store is reached through `gate` (recorded, and closable)."""
    config = s3_config(seaweedfs, endpoint_url=gate.endpoint_url)
    server = start_s3_pyz(pyz, tmp_path / "root", config, s3_admin_secret(seaweedfs))
    try:
        yield server
    finally:
        stop(server)


def test_twine_in_pip_and_uv_out_by_presigned_redirects_without_our_credentials(
    gated_server: ServerProcess, gate: S3Gate, dists: list[Path], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = twine_upload(gated_server, dists, home)
    assert result.returncode == 0, output(result)
    index_url = gated_server.live.index_url(READ)
    for install, target in ((pip_install, tmp_path / "pip"), (uv_install, tmp_path / "uv")):
        before = len(gate.seen)
        result = install(index_url, "demo-pkg==1.0", target, home)
        assert result.returncode == 0, output(result)
        assert (target / "demo_pkg").is_dir()
        presigned = [s for s in gate.seen[before:] if "X-Amz-Signature=" in s.query]
        assert presigned, f"{install.__name__} did not follow a redirect to the store"
        # pip and uv drop the index's Basic credentials on the cross-origin redirect.
        assert all(s.authorization == "" for s in presigned), presigned
    assert all(s.authorization.startswith("AWS4-HMAC-SHA256 ") for s in gate.seen
               if "X-Amz-Signature=" not in s.query)  # fmt: skip


def test_proxy_mode_streams_the_file_through_the_server(
    pyz: Path, seaweedfs: S3Bucket, dists: list[Path], tmp_path: Path
) -> None:
    config = s3_config(seaweedfs, download="proxy")
    server = start_s3_pyz(pyz, tmp_path / "root", config, s3_admin_secret(seaweedfs))
    try:
        assert upload(server.live, dists[0])[0] == 200
        status, headers, body = server.live.request("GET", f"/simple/demo-pkg/{dists[0].name}")
        assert status == 200 and body == dists[0].read_bytes(), (status, headers)
        index_url = server.live.index_url(READ)
        for install in (pip_install, uv_install):  # each download relayed from the bucket
            target = tmp_path / install.__name__
            result = install(index_url, "demo-pkg", target, tmp_path / "home")
            assert result.returncode == 0, output(result)
            assert (target / "demo_pkg").is_dir()
        assert not list((tmp_path / "root").rglob(dists[0].name))  # nothing kept on the server
    finally:
        stop(server)


def test_twine_uploads_a_large_wheel_to_the_store_while_it_arrives_as_one_put(
    pyz: Path, seaweedfs: S3Bucket, tmp_path: Path
) -> None:
    """Over 256 MiB, the file goes to the store while twine sends it: one PUT, as twine's form
    tells the file's length at its first byte, completed only once the upload is verified."""
    wheel = make_wheel(tmp_path, "big-pkg", "1.0", payload_bytes=MULTIPART_THRESHOLD + MiB)
    server = start_s3_pyz(pyz, tmp_path / "root", s3_config(seaweedfs), s3_admin_secret(seaweedfs))
    client = S3Client(seaweedfs.location(), Credentials(seaweedfs.access_key, seaweedfs.secret_key))
    try:
        result = twine_upload(server, [wheel], tmp_path / "home")
        assert result.returncode == 0, output(result)
        info = client.head(Layout("").file(canonicalize_name("big-pkg"), wheel.name))
        # Stored early (the record's other fields were not known yet), and never in parts.
        assert info.metadata["sha256"] == sha256_of_file(wheel)
        assert PARTIAL_RECORD in info.metadata and info.size == wheel.stat().st_size
        assert "-" not in info.etag  # a multipart object's ETag ends in "-<parts>"
        assert list(client.list_multipart_uploads()) == []
        assert wheel.name in listed(server.live, "big-pkg")
    finally:
        client.close()
        stop(server)


def test_commands_take_the_bucket_as_flags(
    pyz: Path, s3_pyz_server: ServerProcess, seaweedfs: S3Bucket, dists: list[Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    live = s3_pyz_server.live
    assert upload(live, dists[0])[0] == 200
    flags = [
        "--bucket", seaweedfs.bucket, "--endpoint_url", seaweedfs.endpoint_url,
        "--region", seaweedfs.region, "--root", str(tmp_path / "command-root"),
    ]  # fmt: skip
    secret = f"{seaweedfs.access_key}:{seaweedfs.secret_key}"
    result = run_pyz(pyz, "update_index", "s3", "local", *flags, "--secret", secret)
    assert result.returncode == 0, output(result)
    assert result.stdout.splitlines()[-1] == "1 files indexed, 0 changes"
    yank = run_pyz(pyz, "yank", "s3", "local", "demo-pkg", "1.0", *flags, "--reason", "broken",
                   "--secret_env", "S3_SECRET", env={"S3_SECRET": secret})  # fmt: skip
    assert yank.returncode == 0, output(yank)
    poll(lambda: True if 'data-yanked="broken"' in listed(live) else None, "the yank")
    delete = run_pyz(pyz, "delete", "s3", "local", "demo-pkg", dists[0].name, *flags,
                     "--secret", secret)  # fmt: skip
    assert delete.returncode == 0, output(delete)
    poll(lambda: True if dists[0].name not in listed(live) else None, "the delete")
    wrong = run_pyz(pyz, "update_index", "s3", "local", *flags, "--secret", "id:wrong-secret")
    assert wrong.returncode == 1
    assert wrong.stderr.startswith("pywharf: repository 'local': S3 refused")
    assert "wrong-secret" not in output(wrong) and len(wrong.stderr.splitlines()) == 1


def test_a_bundle_exported_from_one_bucket_imports_into_another(
    pyz: Path, s3_pyz_server: ServerProcess, seaweedfs: S3Bucket, dists: list[Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    """Export reads each file through the server's own client (`download` is "proxy" for it
    unless given), whatever the repository's own configuration says."""
    assert upload(s3_pyz_server.live, dists[0])[0] == 200
    secret = f"{seaweedfs.access_key}:{seaweedfs.secret_key}"
    other = new_bucket(seaweedfs.server)

    def flags(bucket: S3Bucket, root: str) -> list[str]:
        return ["--bucket", bucket.bucket, "--endpoint_url", bucket.endpoint_url,
                "--root", str(tmp_path / root), "--secret", secret]  # fmt: skip

    bundle = tmp_path / "bundle.tar"
    result = run_pyz(pyz, "export", "s3", "local", str(bundle), *flags(seaweedfs, "out"))
    assert result.returncode == 0 and "exported 1 files" in result.stdout, output(result)
    with tarfile.open(bundle) as tar:
        member = tar.extractfile(f"files/demo-pkg/{dists[0].name}")
        assert member is not None and member.read() == dists[0].read_bytes()
        assert f"files/demo-pkg/{dists[0].name}.metadata" in tar.getnames()
    result = run_pyz(pyz, "import", "s3", "local", str(bundle), *flags(other, "in"))
    assert result.returncode == 0 and "imported 1" in result.stdout, output(result)
    client = S3Client(other.location(), Credentials(other.access_key, other.secret_key))
    try:
        info = client.head(Layout("").file(canonicalize_name("demo-pkg"), dists[0].name))
        assert info.metadata["sha256"] == sha256_of_file(dists[0])
    finally:
        client.close()


def test_two_servers_on_one_bucket_see_each_others_uploads(
    pyz: Path, s3_pyz_server: ServerProcess, seaweedfs: S3Bucket, dists: list[Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    second = start_s3_pyz(
        pyz, tmp_path / "second", s3_config(seaweedfs), s3_admin_secret(seaweedfs)
    )
    try:
        assert upload(s3_pyz_server.live, dists[0])[0] == 200
        assert dists[0].name in listed(s3_pyz_server.live)  # the receiving one: at once
        poll(lambda: True if dists[0].name in listed(second.live) else None, "the other server")
        assert upload(second.live, dists[1])[0] == 200
        poll(lambda: True if dists[1].name in listed(s3_pyz_server.live) else None, "sync back")
        assert upload(s3_pyz_server.live, dists[1])[0] == 200  # identical, through the other
        folder = tmp_path / "impostor"
        folder.mkdir()
        impostor = make_wheel(folder, "demo-pkg", "1.0", payload_bytes=77)
        assert upload(s3_pyz_server.live, impostor)[0] == 409
        assert upload(second.live, impostor)[0] == 409
    finally:
        stop(second)


def test_a_token_made_and_revoked_by_the_command_reaches_both_servers(
    pyz: Path, s3_pyz_server: ServerProcess, seaweedfs: S3Bucket, tmp_path: Path
) -> None:
    second = start_s3_pyz(
        pyz, tmp_path / "second", s3_config(seaweedfs), s3_admin_secret(seaweedfs)
    )
    flags = [
        "--bucket", seaweedfs.bucket, "--endpoint_url", seaweedfs.endpoint_url,
        "--region", seaweedfs.region, "--root", str(tmp_path / "command-root"),
        "--secret", f"{seaweedfs.access_key}:{seaweedfs.secret_key}",
    ]  # fmt: skip
    servers = (s3_pyz_server.live, second.live)

    def answers(status: int) -> bool | None:
        seen = {live.request("GET", "/simple/", auth=("local", token))[0] for live in servers}
        return True if seen == {status} else None

    try:
        created = run_pyz(pyz, "token", "create", "s3", "local", "--label", "ci", "--can",
                          "read", *flags)  # fmt: skip
        assert created.returncode == 0, output(created)
        token = created.stdout.splitlines()[-1]
        # Each 401 until a server's sync counts as a failed login, and 20 of them slow this
        # address to one try a second (auth.FailureThrottle): probe twice a second, with room
        # for a loaded machine's late syncs.
        poll(lambda: answers(200), "both servers to load the token", timeout=60, interval=0.5)
        revoked = run_pyz(pyz, "token", "revoke", "s3", "local", "ci", *flags)
        assert revoked.returncode == 0, output(revoked)
        poll(lambda: answers(401), "both servers to drop the token", timeout=60, interval=0.5)
    finally:
        stop(second)


def _fetched(live: Live, path: str) -> bytes:
    """A file's bytes from `live`, following a presigned redirect without our credentials."""
    status, headers, data = live.request("GET", path)
    if status == 302:
        with urllib.request.urlopen(headers["location"], timeout=30) as answer:
            return bytes(answer.read())
    assert status == 200, (status, data[:200])
    return data


def test_a_file_cached_through_one_server_is_served_by_another_from_the_bucket(
    pyz: Path, seaweedfs: S3Bucket, dists: list[Path], tmp_path: Path
) -> None:
    """Issue 12: two servers on one bucket share the upstream cache. The upstream (a second
    pywharf, on a file system) is stopped once one server fetched the file: the other serves
    it, and lists it, from the store alone."""
    upstream_config = tmp_path / "upstream.toml"
    upstream_config.write_text(CONFIG)
    upstream = start_pyz(pyz, tmp_path / "upstream", "--config", str(upstream_config),
                         "--extra_index_url", "")  # fmt: skip
    wheel = dists[0]
    path = f"/simple/demo-pkg/{wheel.name}"
    config = s3_config(seaweedfs, upstream_url=upstream.live.index_url())
    secret = s3_admin_secret(seaweedfs)
    first = start_s3_pyz(pyz, tmp_path / "first", config, secret, "--extra_index_url", "")
    second = start_s3_pyz(pyz, tmp_path / "second", config, secret, "--extra_index_url", "")
    try:
        assert upload(upstream.live, wheel)[0] == 200
        assert wheel.name in listed(first.live)  # the upstream's page, relinked here
        assert first.live.request("GET", path)[2] == wheel.read_bytes()  # relayed, and kept
        stop(upstream)  # from here on only the bucket has it
        poll(lambda: True if wheel.name in listed(second.live) else None, "the second server")
        assert _fetched(second.live, path) == wheel.read_bytes()
        assert _fetched(first.live, path) == wheel.read_bytes()  # later requests: the store
        assert upstream.live.index_url() not in first.output() + second.output()
    finally:
        for server in (first, second, upstream):
            if server.process.poll() is None:
                stop(server)


def test_a_store_down_at_start_then_back_needs_no_restart(
    pyz: Path, seaweedfs: S3Bucket, gate: S3Gate, dists: list[Path], tmp_path: Path
) -> None:
    gate.open = False
    config = s3_config(seaweedfs, endpoint_url=gate.endpoint_url, download="proxy")
    config += tomli_w.dumps({"files": {"type": "file_system", "read_secret": READ,
                                       "write_secret": WRITE}})  # fmt: skip
    server = start_s3_pyz(pyz, tmp_path / "root", config, s3_admin_secret(seaweedfs))
    try:
        live = server.live
        assert live.request("GET", "/simple/")[0] == 200  # up, and serving from memory
        status, _, body = upload(live, dists[0])
        assert status == 503, body
        assert body.decode().count("\n") <= 1 and "repository 'local'" in body.decode()
        assert upload(live, dists[0], user="files")[0] == 200  # another repository: unaffected
        gate.open = True
        poll(lambda: True if upload(live, dists[0])[0] == 200 else None, "the store again")
        gate.open = False
        status, _, body = live.request("GET", f"/simple/demo-pkg/{dists[0].name}")
        assert status == 503, body  # a proxied download needs the store
        assert listed(live) and dists[0].name in listed(live)  # pages still come from memory
        assert "Traceback" not in server.output()
    finally:
        stop(server)


def test_wrong_credentials_are_one_line_naming_the_repository(
    pyz: Path, seaweedfs: S3Bucket, dists: list[Path], tmp_path: Path
) -> None:
    admin = s3_admin_secret(seaweedfs, secret=f"{seaweedfs.access_key}:not-the-secret-42")
    server = start_s3_pyz(pyz, tmp_path / "root", s3_config(seaweedfs), admin)
    try:
        status, _, body = upload(server.live, dists[0])
        assert status == 503
        assert "repository 'local': S3 refused" in body.decode()
        log = server.output()
        (warning,) = [line for line in log.splitlines() if "S3 refused" in line][:1]
        assert "repository 'local'" in warning
        assert "not-the-secret-42" not in log + body.decode()
    finally:
        stop(server)
