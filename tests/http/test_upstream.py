"""The upstream cache (issue 12): pages, files, metadata, cooldown, credentials, deletes, faults.

A purpose-made upstream (tests/fake_upstream.py) runs in-process on port 0; the cache is the
app on a real server. No test reaches the internet.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from factory import make_sdist
from factory import make_wheel
from fake_upstream import FakeUpstream
from fake_upstream import UpstreamFile
from fake_upstream import running
from support import READ
from support import WRITE
from support import Live
from support import build_app
from support import check_simple_json
from support import poll
from support import serving
from support_upload import upload

JSON_ACCEPT = {"Accept": "application/vnd.pypi.simple.v1+json"}
OLD = 1_600_000_000.0  # 2020: long past any cooldown


def _config(upstream_url: str, **keys: object) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in {"upstream_url": upstream_url, **keys}.items()]
    return (
        f'[local]\ntype = "file_system"\nread_secret = "{READ}"\nwrite_secret = "{WRITE}"\n'
        "sync_index_interval = 0.1\n" + "\n".join(lines) + "\n"
    )


@contextmanager
def serving_config(root: Path, config: str) -> Iterator[Live]:
    app = build_app(root, config)
    with serving(app) as server:
        yield Live("127.0.0.1", server.server_address[1], root, app)


def _wheel(tmp_path: Path, name: str, version: str, **options: Any) -> UpstreamFile:
    path = make_wheel(tmp_path, name, version, requires_python=">=3.8")
    with zipfile.ZipFile(path) as archive:
        (metadata,) = (archive.read(n) for n in archive.namelist() if n.endswith("/METADATA"))
    options.setdefault("requires_python", ">=3.8")
    return UpstreamFile(path.name, path.read_bytes(), metadata=metadata, **options)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[FakeUpstream]:
    state = FakeUpstream()
    state.add("requests", _wheel(tmp_path, "requests", "2.0", upload_time=OLD))
    state.add("requests", _wheel(tmp_path, "requests", "2.1", upload_time=OLD, yanked="bad"))
    sdist = make_sdist(tmp_path, "requests", "2.1")
    state.add("requests", UpstreamFile(sdist.name, sdist.read_bytes(), upload_time=OLD))
    with running(state):
        yield state


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_json_page_links_here_and_keeps_every_file_attribute(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        status, _headers, body = live.request("GET", "/simple/requests/", headers=JSON_ACCEPT)
        assert status == 200, body
        document = check_simple_json(body, "project")
        files = {f["filename"]: f for f in document["files"]}
        wheel = upstream.projects["requests"][1]
        entry = files[wheel.filename]
        assert entry["url"] == wheel.filename  # relative: this server, never the upstream
        assert entry["hashes"] == {"sha256": _sha(wheel.data)}
        assert entry["size"] == len(wheel.data)
        assert entry["yanked"] == "bad"
        assert entry["requires-python"] == ">=3.8"
        assert entry["upload-time"].startswith("2020-09-13T12:26:40")
        assert entry["core-metadata"] == {"sha256": _sha(wheel.metadata or b"")}
        status, _, html = live.request("GET", "/simple/requests/")
        assert status == 200
        assert f'href="{wheel.filename}#sha256={_sha(wheel.data)}"' in html.decode()
        assert 'data-yanked="bad"' in html.decode()
        assert "127.0.0.1:" + str(upstream.port) not in html.decode() + body.decode()


def test_a_file_is_fetched_once_kept_in_storage_and_then_served_locally(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    wheel = upstream.projects["requests"][0]
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        for _ in range(3):
            status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
            assert status == 200 and data == wheel.data
        assert upstream.counts[f"/files/{wheel.filename}"] == 1
        stored = tmp_path / "root" / "cache" / "local" / "storage" / "requests" / wheel.filename
        assert stored.read_bytes() == wheel.data
        journal = (stored.parent.parent / ".pywharf" / "journal.jsonl").read_text()
        assert '"origin":"upstream"' in journal
        status, _, metadata = live.request("GET", f"/simple/requests/{wheel.filename}.metadata")
        assert status == 200 and metadata == wheel.metadata


def test_metadata_is_cached_before_its_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    wheel = upstream.projects["requests"][0]
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        for _ in range(2):
            status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}.metadata")
            assert status == 200 and data == wheel.metadata
        assert upstream.counts[f"/files/{wheel.filename}.metadata"] == 1
        assert upstream.counts[f"/files/{wheel.filename}"] == 0


def test_twenty_first_requests_make_one_page_fetch_and_one_fetch_per_file(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    wheel = upstream.projects["requests"][0]
    upstream.faults[wheel.filename] = "slow"
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:

        def get(_attempt: int) -> tuple[int, bytes]:
            status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
            return status, data

        with ThreadPoolExecutor(20) as pool:
            answers = pool.map(get, range(20))
            poll(lambda: upstream.counts[f"/files/{wheel.filename}"] or None, "the fetch")
            upstream.release.set()
            results = list(answers)
        assert all(r == (200, wheel.data) for r in results)
        assert upstream.counts["/simple/requests/"] == 1
        assert upstream.counts[f"/files/{wheel.filename}"] == 1


def test_the_root_lists_hosted_and_cached_upstream_projects(
    upstream: FakeUpstream, tmp_path: Path, dists: Path
) -> None:
    wheel = upstream.projects["requests"][0]
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        assert live.request("GET", f"/simple/requests/{wheel.filename}")[0] == 200
        _upload(live, dists / "demo_pkg-1.0-py3-none-any.whl")
        _status, _, body = live.request("GET", "/simple/", headers=JSON_ACCEPT)
        names = [p["name"] for p in json.loads(body)["projects"]]
        assert names == ["demo-pkg", "requests"]


def _upload(live: Live, path: Path) -> None:
    status, _, body = upload(live, path)
    assert status == 200, body


def test_upstream_down_stale_pages_and_cached_files_serve_a_new_project_is_502(
    tmp_path: Path,
) -> None:
    state = FakeUpstream()
    wheel = _wheel(tmp_path, "requests", "2.0", upload_time=OLD)
    state.add("requests", wheel)
    state.add("idna", _wheel(tmp_path, "idna", "3.0", upload_time=OLD))
    with running(state):
        config = _config(state.url, upstream_page_ttl=0)
        app_root = tmp_path / "root"
        with serving_config(app_root, config) as live:
            assert live.request("GET", f"/simple/requests/{wheel.filename}")[0] == 200
    with serving_config(app_root, config) as live:  # a restart, with the upstream gone
        status, _, body = live.request("GET", "/simple/requests/")
        assert status == 200 and wheel.filename in body.decode()
        status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
        assert status == 200 and data == wheel.data
        status, _headers, body = live.request("GET", "/simple/idna/")
        assert status == 502
        assert body.decode().count("\n") == 1 and "upstream" in body.decode().lower()


def test_cooldown_hides_young_files_from_both_pages_and_their_urls_404(tmp_path: Path) -> None:
    state = FakeUpstream()
    old = _wheel(tmp_path, "requests", "2.0", upload_time=OLD)
    young = _wheel(tmp_path, "requests", "2.1", upload_time=time.time() - 60)
    state.add("requests", old)
    state.add("requests", young)
    with (
        running(state),
        serving_config(tmp_path / "root", _config(state.url, upstream_min_age=3600)) as live,
    ):
        _, _, html = live.request("GET", "/simple/requests/")
        _, _, body = live.request("GET", "/simple/requests/", headers=JSON_ACCEPT)
        listed = [f["filename"] for f in json.loads(body)["files"]]
        assert listed == [old.filename]
        assert old.filename in html.decode() and young.filename not in html.decode()
        assert live.request("GET", f"/simple/requests/{young.filename}")[0] == 404
        assert live.request("GET", f"/simple/requests/{young.filename}.metadata")[0] == 404
        assert state.counts[f"/files/{young.filename}"] == 0


def test_with_a_cooldown_a_file_of_unknown_age_is_hidden(tmp_path: Path) -> None:
    state = FakeUpstream(html_only=True)  # HTML carries no upload time
    wheel = _wheel(tmp_path, "requests", "2.0", upload_time=OLD)
    state.add("requests", wheel)
    with running(state):
        with serving_config(tmp_path / "a", _config(state.url, upstream_min_age=1)) as live:
            assert live.request("GET", "/simple/requests/")[0] == 404
            assert live.request("GET", f"/simple/requests/{wheel.filename}")[0] == 404
        with serving_config(tmp_path / "b", _config(state.url)) as live:  # no cooldown: offered
            status, _, body = live.request("GET", "/simple/requests/", headers=JSON_ACCEPT)
            assert status == 200 and json.loads(body)["files"][0]["filename"] == wheel.filename
            status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
            assert status == 200 and data == wheel.data


def test_credentials_reach_the_upstream_for_files_too_and_appear_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = FakeUpstream(credentials=("token", "s3cr3t-upstream"))
    wheel = _wheel(tmp_path, "requests", "2.0", upload_time=OLD)
    state.add("requests", wheel)
    state.add("broken", _wheel(tmp_path, "broken", "1.0", upload_time=OLD))
    state.faults["broken"] = "500"
    with (
        running(state),
        serving_config(
            tmp_path / "root", _config(state.url_with("token", "s3cr3t-upstream"))
        ) as live,
    ):
        seen = b""
        for path in ("/simple/requests/", f"/simple/requests/{wheel.filename}", "/simple/broken/"):
            status, headers, body = live.request("GET", path)
            seen += body + json.dumps(headers).encode()
        assert status == 502
        assert state.counts[f"/files/{wheel.filename}"] == 1  # it was let in: credentials sent
        assert all(a is not None for a in state.authorizations)
    assert b"s3cr3t" not in seen
    assert "s3cr3t" not in caplog.text


def test_a_project_we_hold_never_consults_the_upstream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    folder = tmp_path / "ours"
    folder.mkdir()
    ours = make_wheel(folder, "requests", "0.1")  # our own "requests": dependency confusion
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        _upload(live, ours)
        _, _, body = live.request("GET", "/simple/requests/", headers=JSON_ACCEPT)
        assert [f["filename"] for f in json.loads(body)["files"]] == [ours.name]
        name = upstream.projects["requests"][0].filename
        assert live.request("GET", f"/simple/requests/{name}")[0] == 404
        status, _, _ = live.request(
            "DELETE", f"/api/files/requests/{ours.name}", auth=("local", WRITE)
        )
        assert status == 200
        assert live.request("GET", "/simple/requests/")[0] == 404  # still ours: a tombstone
    assert sum(upstream.counts.values()) == 0


def test_deleting_a_cached_file_tombstones_it_and_the_project_stays_upstream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    first, second = upstream.projects["requests"][:2]
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        assert live.request("GET", f"/simple/requests/{first.filename}")[0] == 200
        path = f"/api/files/requests/{first.filename}"
        assert live.request("DELETE", path, auth=("local", WRITE))[0] == 200
        _, _, body = live.request("GET", "/simple/requests/")
        assert first.filename not in body.decode() and second.filename in body.decode()
        assert live.request("GET", f"/simple/requests/{first.filename}")[0] == 404
        assert live.request("GET", f"/simple/requests/{second.filename}")[0] == 200
    assert upstream.counts[f"/files/{first.filename}"] == 1


def test_pages_are_revalidated_with_their_etag(upstream: FakeUpstream, tmp_path: Path) -> None:
    with serving_config(tmp_path / "root", _config(upstream.url, upstream_page_ttl=0)) as live:
        for _ in range(3):
            assert live.request("GET", "/simple/requests/")[0] == 200
    assert upstream.counts["/simple/requests/"] == 3
    assert upstream.not_modified == 2


def test_allow_and_deny_decide_what_comes_from_upstream(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = _config(upstream.url, upstream_allow=["req*"], upstream_deny=["requests"])
    with serving_config(tmp_path / "root", config) as live:
        assert live.request("GET", "/simple/requests/")[0] == 404
    assert sum(upstream.counts.values()) == 0


@pytest.mark.parametrize("fault", ["malformed", "500", "redirect"])
def test_a_bad_upstream_page_is_a_clear_502_and_nothing_is_kept(
    upstream: FakeUpstream, tmp_path: Path, fault: str
) -> None:
    upstream.faults["requests"] = fault
    with serving_config(tmp_path / "root", _config(upstream.url)) as live:
        status, _, body = live.request("GET", "/simple/requests/")
        assert status == 502
        text = body.decode()
        assert text.count("\n") == 1
        assert {"malformed": "malformed", "500": "500", "redirect": "redirect"}[fault] in text
        assert live.request("GET", "/simple/", headers=JSON_ACCEPT)[2].count(b"requests") == 0
    assert not (tmp_path / "root" / "cache" / "local" / "upstream" / "pages").exists()


@pytest.mark.parametrize("fault", ["truncate", "wrong", "500"])
def test_a_bad_upstream_file_is_never_served_whole_nor_kept(
    upstream: FakeUpstream, tmp_path: Path, fault: str
) -> None:
    wheel = upstream.projects["requests"][0]
    upstream.faults[wheel.filename] = fault
    root = tmp_path / "root"
    with serving_config(root, _config(upstream.url)) as live:
        try:
            status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
        except Exception:  # http.client: the body was cut short (IncompleteRead)
            status, data = 0, b""
        assert data != wheel.data
        if fault == "500":
            assert status == 502
        _, _, root_page = live.request("GET", "/simple/", headers=JSON_ACCEPT)
        assert b"requests" not in root_page
        storage = root / "cache" / "local" / "storage"
        assert not (storage / "requests" / wheel.filename).exists()
        assert list((storage / ".pywharf" / "tmp").iterdir()) == []
        del upstream.faults[wheel.filename]  # mended: the next request fetches it whole
        status, _, data = live.request("GET", f"/simple/requests/{wheel.filename}")
        assert status == 200 and data == wheel.data


def test_two_servers_on_one_root_share_the_cache(upstream: FakeUpstream, tmp_path: Path) -> None:
    wheel = upstream.projects["requests"][0]
    root = tmp_path / "root"
    config = _config(upstream.url)
    with serving_config(root, config) as first, serving_config(root, config) as second:
        assert first.request("GET", f"/simple/requests/{wheel.filename}")[0] == 200
        assert second.app is not None
        repository = second.app.repositories["local"]
        poll(lambda: repository.sync() or None, "the second server to sync")
        status, _, data = second.request("GET", f"/simple/requests/{wheel.filename}")
        assert status == 200 and data == wheel.data
    assert upstream.counts[f"/files/{wheel.filename}"] == 1
