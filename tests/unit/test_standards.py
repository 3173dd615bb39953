"""PEP 740, 792 and 708 as pure values: attestations by their shape, provenance objects, status
events, per-project configuration, and pages that carry them (escaped, cached once per host)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from factory import make_attestation
from factory import make_wheel
from pypi_attestations import Attestation
from support import check_simple_html
from support import check_simple_json

from pywharf import simple
from pywharf.backends import backend_settings
from pywharf.backends.events import rescanned_events
from pywharf.backends.events import status_changes
from pywharf.backends.github_layout import empty_index
from pywharf.backends.github_layout import read_document
from pywharf.backends.github_layout import set_status
from pywharf.config import parse_repositories
from pywharf.dists import NormalizedName
from pywharf.errors import BadRequest
from pywharf.errors import ConfigError
from pywharf.errors import PayloadTooLarge
from pywharf.http import Request
from pywharf.http import base_url
from pywharf.index import Add
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Project
from pywharf.index import Status
from pywharf.index import event_from_json
from pywharf.index import event_to_json
from pywharf.pages import MAX_BASES_PER_PAGE
from pywharf.pages import Renderer
from pywharf.provenance import MAX_ATTESTATIONS_BYTES
from pywharf.provenance import Identity
from pywharf.provenance import parse_attestations
from pywharf.provenance import provenance_json
from pywharf.provenance import publisher

DEMO = NormalizedName("demo")
HOSTILE = '"><script>alert(1)</script>&amp;'


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, "demo", "1.0")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record(
    provenance: str | None = None, filename: str = "demo-1.0-py3-none-any.whl"
) -> FileRecord:
    return FileRecord(filename, DEMO, "1.0", "a" * 64, 10, 1.7e9, provenance=provenance)


# --- PEP 740: the upload field ------------------------------------------------------------------


def test_attestations_in_the_peps_format_are_accepted(wheel: Path) -> None:
    made = [make_attestation(wheel)]
    assert parse_attestations(json.dumps(made), wheel.name, sha256_of(wheel)) == made
    Attestation.model_validate(made[0])  # the reference parser agrees on the shape


def _broken(item: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(item))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


def _statement(**changes: Any) -> str:
    subject = {"name": "demo-1.0-py3-none-any.whl", "digest": {"sha256": "?"}}
    statement = {"_type": "https://in-toto.io/Statement/v1", "predicateType": "x",
                 "subject": [subject]}  # fmt: skip
    statement.update(changes)
    return base64.b64encode(json.dumps(statement).encode()).decode()


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("version",), 2, "version is not 1"),
        (("version",), True, "version is not 1"),
        (("envelope",), KeyError, "has no 'envelope'"),
        (("envelope", "signature"), "not base64!", "not base64"),
        (("envelope", "statement"), 7, "not a string"),
        (("verification_material", "certificate"), KeyError, "has no 'certificate'"),
        (("verification_material", "transparency_entries"), [], "non-empty array"),
        (("verification_material", "transparency_entries"), ["x"], "non-empty array"),
        (("envelope", "statement"), base64.b64encode(b"not json").decode(), "in-toto"),
        (("envelope", "statement"), _statement(_type="other"), "in-toto v1"),
        (("envelope", "statement"), _statement(subject=[]), "exactly one subject"),
        (("envelope", "statement"), _statement(), "subject digest is not"),
    ],
)
def test_a_malformed_attestation_is_refused_naming_what(
    wheel: Path, path: tuple[str, ...], value: Any, says: str
) -> None:
    bad = _broken(make_attestation(wheel), path, value)
    with pytest.raises(BadRequest, match=says):
        parse_attestations(json.dumps([bad]), wheel.name, sha256_of(wheel))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ('{"version": 1}', "not a JSON array"),
        ("[1]", "not a JSON object"),
    ],
)
def test_malformed_json_or_a_non_array_is_refused(wheel: Path, text: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says):
        parse_attestations(text, wheel.name, sha256_of(wheel))


def test_an_attestation_of_another_file_is_refused(wheel: Path, tmp_path: Path) -> None:
    other = make_wheel(tmp_path / "..", "other", "1.0")
    with pytest.raises(BadRequest, match="subject is not"):
        parse_attestations(json.dumps([make_attestation(other)]), wheel.name, sha256_of(wheel))


def test_an_oversized_field_is_413(wheel: Path) -> None:
    with pytest.raises(PayloadTooLarge):
        parse_attestations(" " * (MAX_ATTESTATIONS_BYTES + 1), wheel.name, sha256_of(wheel))


def test_the_provenance_object_names_the_publisher_from_the_identity(wheel: Path) -> None:
    by = publisher(Identity("team", "secret:write"))
    assert by == {"kind": "pywharf", "repository": "team", "actor": "secret:write"}
    document = json.loads(provenance_json([make_attestation(wheel)], by))
    assert document["version"] == 1
    (bundle,) = document["attestation_bundles"]
    assert bundle["publisher"] == by
    Attestation.model_validate(bundle["attestations"][0])


# --- PEP 792: the status event, persisted generically -------------------------------------------


def test_a_status_event_round_trips_through_json() -> None:
    for status in (Status(DEMO, "quarantined", HOSTILE), Status(DEMO, "active")):
        assert event_from_json(json.loads(json.dumps(event_to_json(status)))) == status


def test_an_index_shows_the_status_on_a_new_project_value() -> None:
    index = Index([record()])
    before = index.project(DEMO)
    assert before is not None and before.state == "active"
    assert index.apply([Status(DEMO, "archived", "moved")])
    after = index.project(DEMO)
    assert after is not before and after is not None and after.state == "archived"
    assert not index.apply([Status(DEMO, "archived", "moved")])  # unchanged: pages stay cached
    assert index.apply([Status(DEMO, "active")])
    assert index.statuses() == []


def test_a_rescan_keeps_the_statuses_of_the_history() -> None:
    history: list[Event] = [Add(record()), Status(DEMO, "deprecated", "use demo2")]
    events, _ = rescanned_events([record()], history)
    assert Status(DEMO, "deprecated", "use demo2") in events


def test_status_changes_between_two_documents() -> None:
    old = [Status(DEMO, "archived"), Status(NormalizedName("b"), "deprecated")]
    new = [Status(DEMO, "quarantined")]
    assert status_changes(old, new) == [
        Status(DEMO, "quarantined"),
        Status(NormalizedName("b"), "active"),
    ]


def test_github_index_documents_keep_statuses() -> None:
    document = empty_index().document
    assert set_status(document, Status(DEMO, "archived", "frozen"))
    assert not set_status(document, Status(DEMO, "archived", "frozen"))
    listed = read_document(tomli_w.dumps(document).encode(), "index.toml")
    assert listed.statuses == [Status(DEMO, "archived", "frozen")]
    assert set_status(document, Status(DEMO, "active"))
    assert "status" not in document


# --- pages ----------------------------------------------------------------------------------------


def pages(project: Project, **links: Any) -> tuple[dict[str, Any], bytes]:
    document = json.loads(simple.render_project_json(project, **links))
    html = simple.render_project_html(project, **links)
    return document, html


def test_pages_declare_1_4_and_the_status_with_hostile_strings_escaped() -> None:
    project = Project(DEMO, (record(),), Status(DEMO, "deprecated", HOSTILE))
    document, html = pages(project)
    assert document["meta"]["api-version"] == "1.4"
    assert document["project-status"] == {"status": "deprecated", "reason": HOSTILE}
    assert b"<script>" not in html
    version, anchors = check_simple_html(html, "project")
    assert version == "1.4" and len(anchors) == 1
    assert b'<meta name="pypi:project-status" content="deprecated">' in html
    assert b"&quot;&gt;&lt;script&gt;" in html  # the reason, escaped in its meta tag


def test_a_quarantined_project_lists_no_files() -> None:
    project = Project(DEMO, (record(),), Status(DEMO, "quarantined", "malware"))
    document, html = pages(project)
    assert document["files"] == [] and document["versions"] == []
    assert check_simple_html(html, "project")[1] == []


def test_tracks_and_alternate_locations_are_escaped_in_both_forms() -> None:
    url = 'https://pypi.org/simple/demo/?a=1&b="2"<x>'
    document, html = pages(Project(DEMO, (record(),)), tracks=[url], alternate_locations=[url])
    assert document["meta"]["tracks"] == [url] and document["alternate-locations"] == [url]
    check_simple_json(json.dumps(document).encode(), "project")
    check_simple_html(html, "project")
    escaped = b"https://pypi.org/simple/demo/?a=1&amp;b=&quot;2&quot;&lt;x&gt;"
    assert html.count(b'content="' + escaped + b'"') == 2


def test_provenance_urls_are_filled_in_per_host_and_rendered_once() -> None:
    renderer = Renderer()
    project = Project(DEMO, (record(provenance="{}"),))
    template = renderer.project(project, json=True)
    hosts: list[str] = []

    def base(host: str) -> Callable[[], str]:
        def called() -> str:
            hosts.append(host)
            return host

        return called

    one = template.for_base(base("https://a.example"))
    again = template.for_base(base("https://a.example"))
    other = template.for_base(base("http://b.example:8080"))
    assert one is again and one.etag == again.etag and one.etag != other.etag
    url = "/simple/demo/demo-1.0-py3-none-any.whl.provenance"
    assert json.loads(one.body)["files"][0]["provenance"] == "https://a.example" + url
    assert json.loads(other.body)["files"][0]["provenance"] == "http://b.example:8080" + url
    check_simple_json(one.body, "project")
    for n in range(MAX_BASES_PER_PAGE * 3):  # ever new hosts: bounded copies, no new render
        template.for_base(base(f"http://h{n}"))
    assert len(template._by_base or {}) <= MAX_BASES_PER_PAGE
    assert renderer.renders == 1
    plain = renderer.project(Project(DEMO, (record(),)), json=False)
    assert plain.for_base(base("never")) is plain and "never" not in hosts  # no Host needed


def test_html_provenance_attribute() -> None:
    html = simple.render_project_html(Project(DEMO, (record(provenance="{}"),)))
    filled = html.replace(simple.BASE_MARK.encode(), b"https://h")
    (anchor,) = check_simple_html(filled, "project")[1]
    assert anchor.attributes["data-provenance"] == (
        "https://h/simple/demo/demo-1.0-py3-none-any.whl.provenance"
    )


@pytest.mark.parametrize(
    ("host", "secure", "proto", "expected"),
    [
        ("pkgs.example:8443", False, "https", "https://pkgs.example:8443"),
        ("127.0.0.1:8888", False, None, "http://127.0.0.1:8888"),
        ("[::1]:8888", True, None, "https://[::1]:8888"),
    ],
)
def test_base_url_from_host_and_forwarded_proto(
    host: str, secure: bool, proto: str | None, expected: str
) -> None:
    headers = {"host": host, **({"x-forwarded-proto": proto} if proto else {})}
    request = Request("GET", "/", {}, headers, None, secure=secure)  # type: ignore[arg-type]
    assert base_url(request) == expected


@pytest.mark.parametrize("host", ["", 'a"b', "a/b", "a b", "evil.example/<x>", "a:b:c"])
def test_a_host_that_is_no_host_name_is_400(host: str) -> None:
    request = Request("GET", "/", {}, {"host": host}, None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        base_url(request)


# --- PEP 708: configuration -----------------------------------------------------------------------


def _config(extra: str) -> str:
    return f'[team]\ntype = "memory"\n{extra}'


def _settings(type_name: str, where: str) -> Any:
    return backend_settings(type_name, where)


def test_project_tables_are_parsed_by_normalized_name() -> None:
    text = _config(
        '[team.projects.Acme_Utils]\ntracks = ["https://pypi.org/simple/acme-utils/"]\n'
        'alternate_locations = ["http://mirror.example/simple/acme-utils/"]\n'
    )
    (config,) = parse_repositories(text, "repos.toml", _settings)
    links = config.projects["acme-utils"]
    assert links.tracks == ("https://pypi.org/simple/acme-utils/",)
    assert links.alternate_locations == ("http://mirror.example/simple/acme-utils/",)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('[team.projects.x]\ntracks = ["ftp://x/"]\n', "team.projects.x.tracks"),
        ('[team.projects.x]\ntracks = ["javascript:alert(1)"]\n', "not an http or https URL"),
        ("[team.projects.x]\nmirror = 1\n", "team.projects.x.mirror: unknown key"),
        ('[team.projects."bad name!"]\n', "not a valid project name"),
        ("projects = 1\n", "must be tables"),
        ("[team.projects.A]\n[team.projects.a]\n", "repeats project"),
    ],
)
def test_bad_project_tables_name_the_key(extra: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_repositories(_config(extra), "repos.toml", _settings)
