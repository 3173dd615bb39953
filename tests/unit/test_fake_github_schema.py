"""Keep the fake GitHub honest: every answer of a scripted session against GitHub's OpenAPI.

The session drives the real client (and a few raw calls) through every route the fake has,
successes and failures. Each answer must use a status the spec lists for its operation, carry
the headers the spec and the recordings promise, and validate against the response schema.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import urllib3
from fake_github import Exchange
from fake_github import FakeGitHub
from fake_github import routes
from urllib3.util import SKIP_HEADER

from pywharf.clients.errors import ClientError
from pywharf.clients.github import GitHubClient

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "github-rest-subset.openapi.json"
TOKEN = "ghp_schemaSessionToken0123456789abcdefABCD"
RATE_HEADERS = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-used",
)

# No skip when the spec is missing: the schema is what keeps the fake honest.


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema → JSON Schema: `nullable` and discriminated `oneOf` rewritten."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: to_json_schema(value) for key, value in node.items()}
    name = node.pop("x-discriminator-property", "type")
    mapping = node.pop("discriminator", {}).get("mapping")
    if mapping and "oneOf" in node:
        # A private user is also a valid public user: let the discriminator pick the branch.
        node["anyOf"] = node.pop("oneOf")
        node["allOf"] = [
            {
                "if": {"type": "object", "required": [name], "properties": {name: {"const": key}}},
                "then": {"$ref": ref},
            }
            for key, ref in mapping.items()
        ]
    elif "oneOf" in node:
        # Without a discriminator the spec's alternatives overlap (every basic-error is a
        # rule-violation error too), so "exactly one" can never hold: read it as "any".
        node["anyOf"] = node.pop("oneOf")
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


class Spec:
    """The OpenAPI document, with a validator per response schema."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        # Keep the discriminator's property name before the rewrite drops it.
        for schema in _walk(document):
            if isinstance(schema.get("discriminator"), dict):
                schema["x-discriminator-property"] = schema["discriminator"]["propertyName"]
        self.components = to_json_schema(document["components"])

    def operation(self, method: str, template: str) -> dict[str, Any]:
        return dict(self.document["paths"][template][method.lower()])

    def response(self, method: str, template: str, status: int) -> dict[str, Any] | None:
        responses = self.operation(method, template)["responses"]
        found = responses.get(str(status))
        if found is not None and "$ref" in found:
            found = self.document["components"]["responses"][found["$ref"].rsplit("/", 1)[1]]
        return dict(found) if found is not None else None

    def validate(self, schema: dict[str, Any], instance: Any) -> None:
        root = {"components": self.components, "allOf": [to_json_schema(schema)]}
        jsonschema.Draft7Validator(root).validate(instance)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec(copy.deepcopy(json.loads(SPEC_PATH.read_text())))


def scripted_session(github: FakeGitHub) -> None:
    """Every route of the fake, its successes and its refusals."""
    github.add_user("alice", TOKEN)
    github.add_user("bob", "ghp_bob")
    github.add_org("acme", {"alice": "admin"})
    github.add_repo("alice", "packages")
    github.add_repo("alice", "empty", empty=True)
    client = GitHubClient(TOKEN, github.api_url, github.uploads_url, retries=0)
    with client:
        _identity_and_repositories(client)
        _releases_and_assets(client, github)
        _contents_and_refs(client, github)
        _refusals(client)


def _identity_and_repositories(client: GitHubClient) -> None:
    client.get_user()
    client.call("GET", "/rate_limit")
    client.get_repo("alice", "packages")
    client.create_repo(None, "index")
    client.create_repo("acme", "wheels")
    client.update_repo("alice", "index", description="pywharf")


def _releases_and_assets(client: GitHubClient, github: FakeGitHub) -> None:
    for number in range(5):
        github.add_release("alice", "packages", f"old-{number}.whl", assets={"a.whl": b"a"})
    client.list_releases("alice", "packages", per_page=2)  # three pages, with Link headers
    draft = client.create_release("alice", "packages", "demo-1.0.tar.gz")
    asset = client.upload_asset(
        draft.upload_url, "demo-1.0.tar.gz", io.BytesIO(b"sdist"), 5, "application/gzip"
    )
    client.list_release_assets("alice", "packages", draft.id)
    client.update_release("alice", "packages", draft.id, draft=False, body="x = 1")
    client.get_release("alice", "packages", draft.id)
    client.get_release_by_tag("alice", "packages", "demo-1.0.tar.gz")
    client.get_asset("alice", "packages", asset.id)
    client.asset_download_url("alice", "packages", asset.id)
    client.call(
        "PATCH", f"/repos/alice/packages/releases/assets/{asset.id}", json_body={"label": "sdist"}
    )
    for action in (
        lambda: client.create_release("alice", "packages", "demo-1.0.tar.gz"),
        lambda: client.upload_asset(draft.upload_url, "demo-1.0.tar.gz", io.BytesIO(b"x"), 1),
        lambda: client.get_release_by_tag("alice", "packages", "missing"),
        lambda: client.create_release("alice", "empty", "x"),
    ):
        with pytest.raises(ClientError):
            action()
    client.delete_asset("alice", "packages", asset.id)
    client.delete_release("alice", "packages", draft.id)
    with pytest.raises(ClientError):
        client.delete_asset("alice", "packages", asset.id)


def _contents_and_refs(client: GitHubClient, github: FakeGitHub) -> None:
    created = client.put_contents("alice", "packages", "index.toml", b"a = 1\n", "Create")
    client.put_contents("alice", "packages", "index.toml", b"a = 2\n", "Update", sha=created.sha)
    client.get_contents_raw("alice", "packages", "index.toml")
    client.get_content_sha("alice", "packages", "index.toml")
    client.call("GET", "/repos/alice/packages/contents/index.toml")
    client.call("GET", "/repos/alice/packages/contents/")
    github.put_file("alice", "packages", "big.toml", b"#" * (1024 * 1024 + 1))
    client.get_content_sha("alice", "packages", "big.toml")
    etag = github.calls[-1].response_headers["etag"]
    client.call("GET", "/repos/alice/packages/contents/big.toml", accept=_OBJECT, etag=etag)
    sha = client.get_ref("alice", "packages", "heads/main").sha
    client.create_ref("alice", "packages", "refs/heads/gh-pages", sha)
    for action in (
        lambda: client.call("GET", "/repos/alice/packages/contents/big.toml"),
        lambda: client.put_contents("alice", "packages", "index.toml", b"x", "m"),
        lambda: client.put_contents("alice", "packages", "index.toml", b"x", "m", sha="0" * 40),
        lambda: client.put_contents("alice", "packages", "x", b"x", "m", branch="nope"),
        lambda: client.get_contents_raw("alice", "packages", "missing.toml"),
        lambda: client.get_ref("alice", "empty", "heads/main"),
        lambda: client.get_ref("alice", "packages", "heads/nope"),
        lambda: client.create_ref("alice", "packages", "refs/heads/gh-pages", sha),
        lambda: client.create_ref("alice", "empty", "refs/heads/x", sha),
    ):
        with pytest.raises(ClientError):
            action()


_OBJECT = "application/vnd.github.object+json"


def _refusals(client: GitHubClient) -> None:
    stranger = client.with_token("ghp_bob")
    for action in (
        lambda: stranger.get_repo("alice", "packages"),
        lambda: stranger.list_releases("alice", "packages"),
        lambda: client.with_token("ghp_unknown").get_user(),
        lambda: client.create_repo(None, "index"),
    ):
        with pytest.raises(ClientError):
            action()


@pytest.fixture(scope="module")
def exchanges() -> list[Exchange]:
    with FakeGitHub() as github:
        scripted_session(github)
        return list(github.calls)


def test_every_route_of_the_fake_is_exercised(exchanges: list[Exchange]) -> None:
    served = {(e.method, e.operation) for e in exchanges}
    routed = {(r.method, r.operation) for r in routes.ROUTES if r.operation is not None}
    assert routed <= served, routed - served


def test_statuses_are_the_specs(spec: Spec, exchanges: list[Exchange]) -> None:
    for exchange in exchanges:
        if exchange.operation is None:
            continue
        listed = spec.operation(exchange.method, exchange.operation)["responses"]
        # 401 (bad token) can come from any operation; the spec lists it on a few only.
        assert str(exchange.status) in listed or exchange.status == 401, _name(exchange)


def test_bodies_validate_against_the_response_schemas(
    spec: Spec, exchanges: list[Exchange]
) -> None:
    checked = 0
    for exchange in exchanges:
        response = _documented(spec, exchange)
        if response is None:
            continue
        media = response.get("content", {})
        if not exchange.response_body:
            assert exchange.status in (204, 302, 304), _name(exchange)
            continue
        if not exchange.response_headers["content-type"].startswith("application/json"):
            assert ".raw" in exchange.request_headers["accept"], _name(exchange)
            continue
        if "application/json" not in media:
            continue  # documented without a schema (422 on upload): the error test checks it
        spec.validate(media["application/json"]["schema"], exchange.json())
        checked += 1
    assert checked > 40


def test_error_bodies_are_githubs_error_shapes(spec: Spec, exchanges: list[Exchange]) -> None:
    basic = {"$ref": "#/components/schemas/basic-error"}
    validation = {"$ref": "#/components/schemas/validation-error"}
    for exchange in exchanges:
        if exchange.status >= 400 and exchange.origin != "storage":
            spec.validate(validation if exchange.status == 422 else basic, exchange.json())


def test_headers_are_the_ones_github_sends(spec: Spec, exchanges: list[Exchange]) -> None:
    for exchange in exchanges:
        headers = exchange.response_headers
        if exchange.origin == "api":
            for name in RATE_HEADERS:
                assert headers[name].isdigit(), (_name(exchange), name)
            assert headers["x-ratelimit-resource"] == "core"
        if exchange.origin == "uploads":
            assert not any(name.startswith("x-ratelimit") for name in headers)
        if exchange.method == "GET" and exchange.status == 200 and exchange.origin == "api":
            assert headers["etag"].startswith('"'), _name(exchange)
        response = _documented(spec, exchange)
        for name in (response or {}).get("headers", {}):
            if name.lower() == "location":
                assert headers["location"].startswith("http://127.0.0.1:"), _name(exchange)
        if exchange.status == 302:
            assert headers["location"].startswith("http://127.0.0.1:")


def test_pagination_links_carry_only_the_rels_that_apply(exchanges: list[Exchange]) -> None:
    pages = [
        e
        for e in exchanges
        if e.operation == "/repos/{owner}/{repo}/releases"
        and e.method == "GET"
        and e.status == 200
        and "per_page" in e.query
    ]
    rels = [
        sorted(
            part.split('rel="')[1].rstrip('"') for part in e.response_headers["link"].split(", ")
        )
        for e in pages
    ]
    assert rels == [["last", "next"], ["first", "last", "next", "prev"], ["first", "prev"]]


def test_the_304_and_the_storage_refusal_are_real(exchanges: list[Exchange]) -> None:
    assert any(e.status == 304 and e.response_body == b"" for e in exchanges)
    with FakeGitHub() as github:
        github.add_user("alice", TOKEN)
        github.add_repo("alice", "packages")
        release = github.add_release("alice", "packages", "t", assets={"a": b"bytes"})
        with urllib3.PoolManager() as pool:
            url = f"{github.api_url}/repos/alice/packages/releases/assets/{release.assets[0].id}"
            headers = {
                "Authorization": f"token {TOKEN}",
                "User-Agent": "test",
                "Accept": "application/octet-stream",
            }
            found = pool.request("GET", url, headers=headers, redirect=False)
            assert found.status == 302
            signed = found.headers["location"]
            assert pool.request("GET", signed, headers=headers).status == 400  # token sent along
            assert pool.request("GET", signed).data == b"bytes"
            anonymous = {"Accept": "application/json", "User-Agent": SKIP_HEADER}
            assert pool.request("GET", url, headers=anonymous).status == 403  # no User-Agent


def _documented(spec: Spec, exchange: Exchange) -> dict[str, Any] | None:
    if exchange.operation is None or exchange.faulted:
        return None
    return spec.response(exchange.method, exchange.operation, exchange.status)


def _name(exchange: Exchange) -> str:
    return f"{exchange.method} {exchange.path} -> {exchange.status}"


def test_the_validator_bites(spec: Spec, exchanges: list[Exchange]) -> None:
    release = next(
        e
        for e in exchanges
        if e.operation == "/repos/{owner}/{repo}/releases"
        and e.method == "POST"
        and e.status == 201
    ).json()
    schema = {"$ref": "#/components/schemas/release"}
    spec.validate(schema, release)
    for broken in (
        {**release, "upload_url": None},
        {**release, "draft": "no"},
        {k: v for k, v in release.items() if k != "assets"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            spec.validate(schema, broken)
    user = {"$ref": "#/components/schemas/private-user"}
    with pytest.raises(jsonschema.ValidationError):
        spec.validate(user, {"login": "alice", "user_view_type": "private"})
