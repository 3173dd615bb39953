"""PEP 740, 792 and 708 over HTTP, in-process: attestations uploaded and served as provenance,
pages advertising it per host, project statuses and their effects, and `pypi-simple` (an
independent parser) reading every page."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from factory import make_attestation
from factory import make_wheel
from pypi_attestations import Attestation
from pypi_simple import ProjectStatus
from pypi_simple import PyPISimple
from support import CONFIG
from support import JSON_TYPE
from support import READ
from support import WRITE
from support import Live
from support import build_app
from support import check_simple_html
from support import check_simple_json
from support import fetch_html
from support import fetch_json
from support_upload import app_get
from support_upload import app_upload
from support_upload import multipart_body
from support_upload import raw_connect
from support_upload import read_response
from support_upload import upload
from support_upload import upload_form
from support_upload import upload_head

PAGE = "/simple/demo/"


def attested(live: Live, tmp_path: Path, version: str = "1.0") -> Path:
    wheel = make_wheel(tmp_path, "demo", version)
    status, _, body = upload(live, wheel, attestations=json.dumps([make_attestation(wheel)]))
    assert status == 200, body
    return wheel


def set_status(live: Live, status: str, reason: str = "", secret: str = WRITE) -> Any:
    form = f"status={status}&reason={reason}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return live.request("POST", "/api/status/Demo", form, headers, auth=("local", secret))


def json_page(live: Live, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, _, body = live.request("GET", PAGE, headers={"Accept": JSON_TYPE, **(headers or {})})
    assert status == 200, body
    return check_simple_json(body, "project")


# --- PEP 740 ------------------------------------------------------------------------------------


def test_an_attested_upload_is_served_as_provenance_and_advertised_per_host(
    live_server: Live, tmp_path: Path
) -> None:
    wheel = attested(live_server, tmp_path)
    (entry,) = fetch_json(live_server, PAGE)["files"]
    url = f"{live_server.url}/simple/demo/{wheel.name}.provenance"
    assert entry["provenance"] == url  # http.client's Host: the address it connected to
    (anchor,) = fetch_html(live_server, PAGE)
    assert anchor.attributes["data-provenance"] == url
    proxied = json_page(live_server, {"Host": "pkgs.example", "X-Forwarded-Proto": "https"})
    assert (
        proxied["files"][0]["provenance"]
        == f"https://pkgs.example/simple/demo/{wheel.name}.provenance"
    )
    status, headers, body = live_server.request("GET", f"{PAGE}{wheel.name}.provenance")
    assert status == 200 and headers["content-type"] == "application/json"
    provenance = json.loads(body)
    assert provenance["version"] == 1
    (bundle,) = provenance["attestation_bundles"]
    assert bundle["publisher"] == {
        "kind": "pywharf",
        "repository": "local",
        "actor": "secret:write",
    }
    assert bundle["attestations"] == [make_attestation(wheel)]
    Attestation.model_validate(bundle["attestations"][0])
    again = live_server.request("GET", f"{PAGE}{wheel.name}.provenance",
                                headers={"If-None-Match": headers["etag"]})  # fmt: skip
    assert again[0] == 304


def test_a_file_without_attestations_has_no_provenance(live_server: Live, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    assert upload(live_server, wheel)[0] == 200
    assert "provenance" not in fetch_json(live_server, PAGE)["files"][0]
    assert live_server.request("GET", f"{PAGE}{wheel.name}.provenance")[0] == 404


def test_a_page_with_provenance_refuses_a_host_that_is_no_host_name(
    live_server: Live, tmp_path: Path
) -> None:
    attested(live_server, tmp_path)
    status, _, body = live_server.request("GET", PAGE, headers={"Host": 'x"><script>'})
    assert status == 400 and b"Host" in body and b"<script>" not in body


@pytest.mark.parametrize(
    "field",
    ["{not json", '{"version": 1}', "[1]", '[{"version": 1}]'],
    ids=["malformed", "object", "number", "incomplete"],
)
def test_bad_attestations_are_400_and_store_nothing(
    live_server: Live, tmp_path: Path, field: str
) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    status, _, body = upload(live_server, wheel, attestations=field)
    assert status == 400 and b"attestations" in body, body
    assert live_server.request("GET", PAGE)[0] == 404
    assert live_server.request("GET", f"{PAGE}{wheel.name}")[0] == 404


def test_a_10_mb_attestations_field_is_413_and_stores_nothing(
    live_server: Live, tmp_path: Path
) -> None:
    wheel = make_wheel(tmp_path, "demo", "1.0")
    data = wheel.read_bytes()
    fields = upload_form(wheel.name, data, attestations="[" + " " * 10_000_000 + "]")
    body, content_type = multipart_body(fields, (wheel.name, data))

    def send() -> None:
        with contextlib.suppress(OSError):  # the server answers and closes before the end
            sock.sendall(body)

    with raw_connect(live_server) as sock:
        sock.sendall(upload_head(live_server, content_type, len(body)))
        sender = threading.Thread(target=send)
        sender.start()
        status, _, answer = read_response(sock)
        sender.join(10)
    assert status == 413 and b"attestations" in answer, answer
    assert live_server.request("GET", PAGE)[0] == 404


# --- PEP 792 ------------------------------------------------------------------------------------


def test_statuses_and_their_effects(live_server: Live, tmp_path: Path) -> None:
    wheel = attested(live_server, tmp_path)
    provenance = f"{PAGE}{wheel.name}.provenance"
    assert json_page(live_server)["project-status"] == {"status": "active"}

    assert set_status(live_server, "deprecated", "use demo2")[0] == 200
    assert json_page(live_server)["project-status"] == {
        "status": "deprecated",
        "reason": "use demo2",
    }
    assert upload(live_server, make_wheel(tmp_path, "demo", "1.1"))[0] == 200  # only informs

    assert set_status(live_server, "archived", "frozen")[0] == 200
    status, _, body = upload(live_server, make_wheel(tmp_path, "demo", "2.0"))
    assert status == 400 and b"archived" in body
    assert live_server.request("GET", f"{PAGE}{wheel.name}")[0] == 200  # still served

    assert set_status(live_server, "quarantined", "malware")[0] == 200
    document = json_page(live_server)
    assert document["files"] == [] and document["project-status"]["status"] == "quarantined"
    assert fetch_html(live_server, PAGE) == []
    for path in (f"{PAGE}{wheel.name}", f"{PAGE}{wheel.name}.metadata", provenance):
        assert live_server.request("GET", path)[0] == 404, path
    status, _, body = upload(live_server, make_wheel(tmp_path, "demo", "3.0"))
    assert status == 400 and b"quarantined" in body

    assert set_status(live_server, "active")[0] == 200  # nothing was deleted
    assert live_server.request("GET", provenance)[0] == 200
    assert {f["filename"] for f in json_page(live_server)["files"]} == {
        wheel.name, "demo-1.1-py3-none-any.whl"}  # fmt: skip


def test_a_hostile_reason_is_escaped(live_server: Live, tmp_path: Path) -> None:
    attested(live_server, tmp_path)
    reason = "%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E"  # "><script>alert(1)</script>
    assert set_status(live_server, "deprecated", reason)[0] == 200
    status, _, body = live_server.request("GET", PAGE, headers={"Accept": "text/html"})
    assert status == 200 and b"<script>" not in body
    check_simple_html(body, "project")
    assert json_page(live_server)["project-status"]["reason"] == '"><script>alert(1)</script>'


@pytest.mark.parametrize(
    ("status", "secret", "project", "expected", "says"),
    [
        ("frozen", WRITE, "Demo", 400, b"unknown project status"),
        ("", WRITE, "Demo", 400, b"unknown project status"),
        ("archived", READ, "Demo", 403, b""),
        ("archived", WRITE, "nope", 404, b"nope"),
    ],
)
def test_status_requests_that_are_refused(
    live_server: Live, tmp_path: Path, status: str, secret: str, project: str, expected: int,
    says: bytes,
) -> None:  # fmt: skip
    attested(live_server, tmp_path)
    form = f"status={status}".encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = live_server.request("POST", f"/api/status/{project}", form, headers, ("local", secret))
    assert answer[0] == expected and says in answer[2], answer
    assert json_page(live_server)["project-status"] == {"status": "active"}


# --- PEP 708 and an independent parser ----------------------------------------------------------

TRACKS = 'https://pypi.org/simple/demo/?x="1"&y=<2>'


def test_project_tables_give_tracks_and_alternate_locations(tmp_path: Path) -> None:
    config = CONFIG + (
        f"[local.projects.DEMO]\ntracks = [{json.dumps(TRACKS)}]\n"
        'alternate_locations = ["https://mirror.example/simple/demo/"]\n'
    )
    app = build_app(tmp_path / "root", config)
    assert app_upload(app, make_wheel(tmp_path, "demo", "1.0")).status == 200
    response = app_get(app, PAGE, headers={"accept": JSON_TYPE})
    document = check_simple_json(bytes(response.body), "project")  # type: ignore[arg-type]
    assert document["meta"]["tracks"] == [TRACKS]
    assert document["alternate-locations"] == ["https://mirror.example/simple/demo/"]
    html = bytes(app_get(app, PAGE, headers={"accept": "text/html"}).body)  # type: ignore[arg-type]
    check_simple_html(html, "project")
    assert b"<2>" not in html


@pytest.mark.parametrize("accept", ["application/vnd.pypi.simple.v1+json", "text/html"])
def test_pypi_simple_reads_every_page(live_server: Live, tmp_path: Path, accept: str) -> None:
    wheel = attested(live_server, tmp_path)
    assert set_status(live_server, "deprecated", "use demo2")[0] == 200
    with PyPISimple(live_server.url + "/simple/", accept=accept, auth=("local", READ)) as client:
        assert client.get_index_page().projects == ["demo"]
        page = client.get_project_page("demo")
        assert page.repository_version == "1.4"
        assert page.status is ProjectStatus.DEPRECATED and page.status_reason == "use demo2"
        (package,) = page.packages
        assert package.provenance_url == f"{live_server.url}/simple/demo/{wheel.name}.provenance"
        provenance = client.get_provenance(package)
    assert provenance["attestation_bundles"][0]["attestations"] == [make_attestation(wheel)]
