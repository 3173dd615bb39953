"""/healthz, /readyz and /metrics over a real socket; the metrics read by Prometheus's parser."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from factory import make_wheel
from prometheus_client.parser import text_string_to_metric_families
from support import PIP
from support import Live
from support_upload import upload

from pywharf.errors import StorageError
from pywharf.metrics import LATENCY_BUCKETS

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _metrics(
    live: Live, **headers: str
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    status, answer_headers, body = live.request("GET", "/metrics", headers=headers, auth=None)
    assert status == 200, body
    assert answer_headers["content-type"] == METRICS_TYPE
    families = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in family.samples
        }
    return families


def test_healthz_needs_no_auth(live_server: Live) -> None:
    status, headers, body = live_server.request("GET", "/healthz", auth=None)
    assert (status, body) == (200, b"ok\n")
    assert headers["cache-control"] == "no-store"


def _journal(live: Live) -> Path:
    (journal,) = live.root.rglob("journal.jsonl")
    return journal


def test_readyz_flips_to_503_when_the_store_breaks_and_back(live_server: Live) -> None:
    assert live_server.request("GET", "/readyz", auth=None)[:3:2] == (200, b"ready\n")
    assert live_server.app is not None
    repository = live_server.app.repositories["local"]
    journal = _journal(live_server)
    kept = journal.read_bytes()
    journal.unlink()
    journal.mkdir()  # the store cannot read its journal: the next sync fails
    with pytest.raises(StorageError):
        repository.sync()
    status, headers, body = live_server.request("GET", "/readyz", auth=None)
    assert (status, body) == (503, b"not ready: local\n")  # the name, no detail
    assert "journal" not in str(headers)
    families = _metrics(live_server)
    assert (
        families["pywharf_sync_errors"][("pywharf_sync_errors_total", (("repository", "local"),))]
        == 1
    )
    journal.rmdir()
    journal.write_bytes(kept)
    repository.sync()
    assert live_server.request("GET", "/readyz", auth=None)[0] == 200


def test_metrics_count_requests_uploads_downloads_and_failures(
    live_server: Live, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "secret-project-name", "1.0")
    assert upload(live_server, wheel)[0] == 200
    path = f"/simple/secret-project-name/{wheel.name}"
    assert live_server.request("GET", path)[0] == 200
    assert live_server.request("GET", "/simple/", headers={"Accept": PIP})[0] == 200
    assert live_server.request("GET", "/simple/", auth=("local", "bad-guess-77"))[0] == 401
    assert live_server.request("GET", "/nowhere")[0] == 404
    families = _metrics(live_server)
    requests = families["pywharf_requests"]
    assert requests[("pywharf_requests_total", (("route", "/simple/"), ("status", "200")))] == 2
    assert requests[("pywharf_requests_total", (("route", "/simple/"), ("status", "401")))] == 1
    assert requests[("pywharf_requests_total", (("route", "unmatched"), ("status", "404")))] == 1
    file_route = (("route", "/simple/{project}/{filename}"), ("status", "200"))
    assert requests[("pywharf_requests_total", file_route)] == 1
    assert families["pywharf_uploads"][("pywharf_uploads_total", ())] == 1
    assert (
        families["pywharf_upload_bytes"][("pywharf_upload_bytes_total", ())] == wheel.stat().st_size
    )
    assert families["pywharf_downloads"][("pywharf_downloads_total", ())] == 1
    assert (
        families["pywharf_download_bytes"][("pywharf_download_bytes_total", ())]
        == wheel.stat().st_size
    )
    assert families["pywharf_auth_failures"][("pywharf_auth_failures_total", ())] == 1
    local = (("repository", "local"),)
    assert families["pywharf_index_projects"][("pywharf_index_projects", local)] == 1
    assert families["pywharf_index_files"][("pywharf_index_files", local)] == 1
    assert families["pywharf_index_bytes"][("pywharf_index_bytes", local)] == wheel.stat().st_size
    assert 0 <= families["pywharf_sync_lag_seconds"][("pywharf_sync_lag_seconds", local)] < 3600
    assert families["pywharf_process_resident_memory_bytes"][
        ("pywharf_process_resident_memory_bytes", ())] > 1_000_000  # fmt: skip
    assert families["pywharf_process_threads"][("pywharf_process_threads", ())] >= 2
    assert families["pywharf_open_connections"][("pywharf_open_connections", ())] >= 1
    histogram = families["pywharf_request_duration_seconds"]
    buckets = [
        key for key in histogram if key[0].endswith("_bucket") and ("route", "/simple/") in key[1]
    ]
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    count = histogram[("pywharf_request_duration_seconds_count", (("route", "/simple/"),))]
    assert count == 3
    # Bounded labels: a project name, a path or a secret is never a label value.
    text = live_server.request("GET", "/metrics", auth=None)[2].decode()
    assert (
        "secret-project-name" not in text and "nowhere" not in text and "bad-guess-77" not in text
    )


@pytest.fixture
def guarded(live_server: Live) -> Live:
    assert live_server.app is not None
    live_server.app.metrics_secret = "m-secret"
    return live_server


def test_metrics_secret_takes_basic_or_bearer(guarded: Live) -> None:
    status, headers, _ = guarded.request("GET", "/metrics", auth=None)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert guarded.request("GET", "/metrics", auth=("prometheus", "nope"))[0] == 401
    assert (
        guarded.request("GET", "/metrics", headers={"Authorization": "Bearer nope"}, auth=None)[0]
        == 401
    )
    assert guarded.request("GET", "/metrics", auth=("prometheus", "m-secret"))[0] == 200
    bearer = {"Authorization": "Bearer m-secret"}
    assert guarded.request("GET", "/metrics", headers=bearer, auth=None)[0] == 200
    token = base64.b64encode(b"any:m-secret").decode()
    assert (
        guarded.request("GET", "/metrics", headers={"Authorization": f"Basic {token}"}, auth=None)[
            0
        ]
        == 200
    )
    assert guarded.request("GET", "/healthz", auth=None)[0] == 200  # only /metrics is guarded
