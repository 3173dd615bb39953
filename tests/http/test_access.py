"""Access for teams over a socket: path URLs, scoped tokens, the audit log, trusted publishing."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factory import make_wheel
from oidc_issuer import REPOSITORY
from oidc_issuer import WORKFLOW
from oidc_issuer import Issuer
from oidc_issuer import b64
from oidc_issuer import running_issuer
from support import Live
from support import poll
from support_upload import raw_connect
from support_upload import read_response
from support_upload import upload

from pywharf import cli
from pywharf.app import App
from pywharf.audit import AuditLog
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.clients.oidc import IssuerClient
from pywharf.config import parse_repositories
from pywharf.errors import PywharfError
from pywharf.repository import Repository
from pywharf.server import Server
from pywharf.session import SessionKeys
from pywharf.trusted import KeyCache
from pywharf.trusted import TrustedPublishing

READ, WRITE = "team-read", "team-write"
KEY_CLOCK = [1000.0]  # the key cache's clock: the rotation test moves it


def _config(issuer: str, second_publisher: bool = False) -> str:
    publisher = f"""
issuer = "{issuer}"
repository = "{REPOSITORY}"
workflow = "{WORKFLOW}"
projects = ["acme-*"]
"""
    text = f"""
[team]
type = "file_system"
read_secret = "{READ}"
write_secret = "{WRITE}"
sync_index_interval = 0.1

[[team.trusted_publishers]]
{publisher}
[other]
type = "file_system"
read_secret = "other-read"
write_secret = "other-write"
"""
    if second_publisher:
        text += f"\n[[other.trusted_publishers]]\n{publisher}"
    return text


@dataclass
class Access:
    live: Live
    app: App
    root: Path
    issuer: Issuer
    audit_path: Path

    def get(self, path: str, secret: str, user: str = "__token__", **headers: str) -> Any:
        return self.live.request("GET", path, headers=headers or None, auth=(user, secret))

    def upload(self, name: str, secret: str, path: str = "/team/legacy/", **kw: Any) -> Any:
        dists = self.root.parent / "dists"
        dists.mkdir(exist_ok=True)
        wheel = make_wheel(dists, name, kw.pop("version", "1.0"))
        return upload(self.live, wheel, secret=secret, user="__token__", path=path, **kw)

    def token(self, *flags: str, capsys: pytest.CaptureFixture[str]) -> str:
        """`pywharf token create` in process: the token is the last line of stdout."""
        code = cli.run(["token", "create", "file_system", "team", "--root", str(self.root),
                        "--audit_log", str(self.audit_path), *flags])  # fmt: skip
        assert code == 0
        token = capsys.readouterr().out.splitlines()[-1]
        assert token.startswith("pywharf_")
        self.app.repositories["team"].sync()
        return token

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def audited(self, **expected: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for line in self.audit():
                if all(line.get(k) == v for k, v in expected.items()):
                    return line
            return None

        return poll(find, f"an audit line with {expected}")

    def mint(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """POST on a raw socket: a refused large body is answered before it is read."""
        head = (f"POST /_/oidc/mint-token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        with raw_connect(self.live) as sock:
            # A refused body is answered 413 and the connection closed before it is all taken.
            with contextlib.suppress(OSError):
                sock.sendall(head + body)
            status, headers, answer = read_response(sock)
        assert headers["content-type"] == "application/json"
        document: dict[str, Any] = json.loads(answer)
        return status, document


def _serve(root: Path, config: str, audit_path: Path) -> tuple[App, Server]:
    repositories = {}
    for repository_config in parse_repositories(config, "test config", backend_settings):
        backend = create_backend(repository_config, root, None)
        repository = Repository(backend, 3600, 300, publishers=repository_config.publishers)
        repository.sync()
        repositories[repository_config.name] = repository
    keys = SessionKeys.load(root, 3600)
    cache = KeyCache(IssuerClient().get, clock=lambda: KEY_CLOCK[0])
    trusted = TrustedPublishing("pywharf", cache, keys.signer("minted"))
    app = App(repositories, audit=AuditLog(audit_path), trusted=trusted, sessions=keys)
    server = Server(("127.0.0.1", 0), app, None)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return app, server


@pytest.fixture
def access(tmp_path: Path) -> Iterator[Access]:
    root = tmp_path / "root"
    audit_path = tmp_path / "audit.log"
    with running_issuer() as issuer:
        app, server = _serve(root, _config(issuer.url), audit_path)
        try:
            yield Access(Live("127.0.0.1", server.server_address[1], root, app), app, root,
                         issuer, audit_path)  # fmt: skip
        finally:
            server.shutdown()
            server.server_close()
            assert app.audit is not None
            app.audit.close()


# --- path URLs -----------------------------------------------------------------------------------


def test_path_urls_take_any_username_and_keep_links_relative(access: Access) -> None:
    status, _, body = access.upload("acme-app", WRITE)
    assert status == 200, body
    status, _, page = access.get("/team/simple/", READ)
    assert status == 200 and b'href="acme-app/"' in page
    status, _, page = access.get("/team/simple/acme-app/", READ)
    assert b'href="acme_app-1.0-py3-none-any.whl#sha256=' in page
    status, headers, _ = access.get("/team/simple/Acme_App", READ)
    assert (status, headers["location"]) == (301, "/team/simple/acme-app/")
    status, _, _ = access.get("/team/simple/acme-app/acme_app-1.0-py3-none-any.whl", READ)
    assert status == 200
    # The username form is unchanged, and a path names only its own repository's secrets.
    assert access.get("/simple/acme-app/", READ, user="team")[0] == 200
    assert access.get("/other/simple/", READ)[0] == 401
    assert access.get("/nobody/simple/", READ)[0] == 401
    assert access.upload("acme-app", READ, version="2.0")[0] == 403


def test_path_api_yanks_and_deletes(access: Access) -> None:
    assert access.upload("acme-app", WRITE)[0] == 200
    auth = ("__token__", WRITE)
    live = access.live
    assert live.request("POST", "/team/api/yank/acme-app/1.0", auth=auth)[0] == 200
    assert live.request("POST", "/team/api/unyank/acme-app/1.0", auth=auth)[0] == 200
    filename = "acme_app-1.0-py3-none-any.whl"
    assert live.request("DELETE", f"/team/api/files/acme-app/{filename}", auth=auth)[0] == 200
    for action in ("yank", "unyank", "delete"):
        line = access.audited(action=action)
        assert (line["repository"], line["actor"], line["outcome"]) == (
            "team",
            "secret:write",
            "ok",
        )


# --- tokens --------------------------------------------------------------------------------------


def _fill(access: Access) -> None:
    for name in ("acme-app", "acme-lib", "private-thing"):
        assert access.upload(name, WRITE)[0] == 200


def test_a_scoped_read_token_sees_only_its_projects(
    access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(access)
    token = access.token("--label", "reader", "--can", "read", "--projects", "acme-*",
                         capsys=capsys)  # fmt: skip
    status, _, page = access.get("/team/simple/", token)
    assert status == 200
    assert b"acme-app" in page and b"acme-lib" in page and b"private-thing" not in page
    status, _, page = access.get("/team/simple/?format=application/vnd.pypi.simple.v1+json", token)
    names = {p["name"] for p in json.loads(page)["projects"]}
    assert names == {"acme-app", "acme-lib"}
    assert access.get("/team/simple/private-thing/", token)[0] == 404
    assert (
        access.get("/team/simple/private-thing/private_thing-1.0-py3-none-any.whl", token)[0] == 404
    )
    assert access.get("/project/private-thing/", token, user="team")[0] == 404
    assert access.get("/team/simple/acme-lib/acme_lib-1.0-py3-none-any.whl", token)[0] == 200
    # The unscoped page is still the full one, and each scope's page is rendered once.
    assert b"private-thing" in access.get("/team/simple/", READ)[2]
    renders = access.app.repositories["team"].renderer.renders
    access.get("/team/simple/", token)
    assert access.app.repositories["team"].renderer.renders == renders
    # A read token writes nothing.
    assert access.upload("acme-app", token, version="3.0")[0] == 403


def test_an_upload_token_uploads_only_in_scope_and_does_not_read(
    access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(access)
    token = access.token("--label", "ci", "--can", "upload", "--projects", "acme-*",
                         capsys=capsys)  # fmt: skip
    assert access.upload("acme-app", token, version="2.0")[0] == 200
    status, _, body = access.upload("private-thing", token, version="2.0")
    assert status == 403 and b"outside its projects" in body
    assert access.get("/team/simple/", token)[0] == 403
    auth = ("__token__", token)
    assert access.live.request("POST", "/team/api/yank/acme-app/1.0", auth=auth)[0] == 403
    line = access.audited(action="upload", actor="token:ci", outcome="ok")
    assert line["target"] == "acme_app-2.0-py3-none-any.whl"
    access.audited(action="upload", actor="token:ci", outcome="refused", status=403)
    assert token not in access.audit_path.read_text()


def test_yank_and_delete_rights_are_separate(
    access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(access)
    token = access.token("--label", "yanker", "--can", "yank", capsys=capsys)
    auth, live = ("__token__", token), access.live
    assert live.request("POST", "/team/api/yank/private-thing/1.0", auth=auth)[0] == 200
    filename = "private_thing-1.0-py3-none-any.whl"
    assert live.request("DELETE", f"/team/api/files/private-thing/{filename}", auth=auth)[0] == 403


def test_expired_revoked_and_garbled_tokens_get_401(
    access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(access)
    brief = access.token("--label", "brief", "--can", "read", "--expires", "1", capsys=capsys)
    kept = access.token("--label", "kept", "--can", "read", capsys=capsys)
    assert access.get("/team/simple/", kept)[0] == 200
    poll(lambda: True if access.get("/team/simple/", brief)[0] == 401 else None, "expiry")
    status, _, body = access.get("/team/simple/", brief)
    assert b"expired" in body and brief.encode() not in body
    for garbled in ("pywharf_", "pywharf_zz", kept[:-1], kept + "x", "pywharf_\u00e9_x"):
        status, _, body = access.get("/team/simple/", garbled)
        assert status == 401 and garbled.encode("utf-8") not in body
    # Revoked on the command line: the server refuses it from its next sync.
    assert cli.run(["token", "revoke", "file_system", "team", "kept", "--root",
                    str(access.root), "--audit_log", str(access.audit_path)]) == 0  # fmt: skip
    syncing = threading.Thread(target=access.app.repositories["team"].sync)
    syncing.start()
    syncing.join()
    assert access.get("/team/simple/", kept)[0] == 401
    access.audited(action="token-revoke", target="kept", outcome="ok")


def test_token_list_shows_no_token_and_last_use(
    access: Access, capsys: pytest.CaptureFixture[str]
) -> None:
    token = access.token("--label", "listed", "--can", "read,upload", "--projects", "acme-*",
                         capsys=capsys)  # fmt: skip
    assert access.get("/team/simple/", token)[0] == 200
    access.app.repositories["team"].sync()  # stores the last use
    assert cli.run(["token", "list", "file_system", "team", "--root", str(access.root)]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("listed\t"))
    _label, can, projects, expires, last_used, _created = line.split("\t")
    assert (can, projects, expires) == ("read,upload", "acme-*", "never")
    assert last_used != "never"
    stored = (access.root / "cache/team/storage/.pywharf/tokens.json").read_text()
    # pywharf_<id>_<secret>: the secret is base64url and may hold "_" itself (its tail after
    # the last one was "4" once, found in a date: seen in CI).
    secret_part = token.split("_", 2)[2]
    assert len(secret_part) == 43
    assert secret_part not in out and secret_part not in stored and token not in stored
    access.audited(action="token-create", target="listed", outcome="ok")


def test_the_throttle_stands_in_front_of_token_checks(access: Access) -> None:
    statuses = [access.get("/team/simple/", f"pywharf_{i:012x}_guess")[0] for i in range(25)]
    assert statuses[0] == 401 and statuses[-1] == 429


def test_a_second_label_must_differ(access: Access, capsys: pytest.CaptureFixture[str]) -> None:
    access.token("--label", "same", "--can", "read", capsys=capsys)
    again = ["token", "create", "file_system", "team", "--root", str(access.root), "--label",
             "same", "--can", "read", "--audit_log", str(access.audit_path)]  # fmt: skip
    with pytest.raises(PywharfError, match="exists"):
        cli.run(again)
    access.audited(action="token-create", target="same", outcome="refused")


# --- the audit log -------------------------------------------------------------------------------


def test_refused_writes_and_logins_are_audited_without_secrets(access: Access) -> None:
    assert access.upload("acme-app", "wrong-secret")[0] == 401
    line = access.audited(action="upload", outcome="refused", status=401)
    assert set(line) >= {"time", "repository", "actor", "action", "target", "outcome", "client"}
    assert (line["actor"], line["client"]) == ("unauthenticated", "127.0.0.1")
    assert "wrong-secret" not in access.audit_path.read_text()
    assert WRITE not in access.audit_path.read_text()


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(access: Access) -> None:
    forwarded = {"X-Forwarded-For": "6.6.6.6, 10.1.2.3"}
    assert access.live.request("POST", "/team/api/yank/x/1", headers=forwarded,
                               auth=("__token__", WRITE))[0] == 404  # fmt: skip
    assert access.audited(action="yank", target="x/1")["client"] == "127.0.0.1"
    access.app.trusted_proxies = frozenset({"127.0.0.1"})
    access.live.request("POST", "/team/api/yank/y/1", headers=forwarded, auth=("__token__", WRITE))
    assert access.audited(action="yank", target="y/1")["client"] == "10.1.2.3"


# --- trusted publishing --------------------------------------------------------------------------


def test_the_audience_endpoint(access: Access) -> None:
    status, _, body = access.live.request("GET", "/_/oidc/audience", auth=None)
    assert (status, json.loads(body)) == (200, {"audience": "pywharf"})


def test_a_minted_token_uploads_only_its_publishers_projects(access: Access) -> None:
    status, answer = access.mint(json.dumps({"token": access.issuer.token()}).encode())
    assert status == 200 and answer["success"] is True
    token = answer["token"]
    assert token.startswith("pywharf_") and isinstance(answer["expires"], int)
    assert access.upload("acme-app", token)[0] == 200
    assert access.upload("private-thing", token)[0] == 403
    assert access.get("/team/simple/", token)[0] == 403  # upload only
    assert access.upload("acme-app", token, path="/other/legacy/", version="2.0")[0] == 401
    actor = f"oidc:{REPOSITORY}@{WORKFLOW}"
    access.audited(action="mint", actor=actor, repository="team", outcome="ok")
    access.audited(action="upload", actor=actor, outcome="ok")
    assert token not in access.audit_path.read_text()


def _forged(issuer: Issuer, header: dict[str, Any], claims: dict[str, Any], sig: bytes) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(sig)}"


def _body(token: str) -> bytes:
    return json.dumps({"token": token}).encode()


def test_every_refusal_is_a_clear_4xx(access: Access) -> None:
    issuer = access.issuer
    stranger = Issuer()  # a key the issuer never published
    stranger.url = issuer.url
    claims = issuer.claims()
    many = {**claims, **{f"c{i}": i for i in range(10_000)}}
    none = _forged(issuer, {"alg": "none", "kid": issuer.kid}, claims, b"")
    hs256 = _forged(issuer, {"alg": "HS256", "kid": issuer.kid}, claims, b"x" * 32)
    huge_header = _forged(issuer, {"alg": "RS256", "p": "x" * 10**6}, claims, b"")
    refusals = {
        "garbled": (_body("garbled"), 422, "not a JWT"),
        "not json": (b"{nope", 422, "must be JSON"),
        "no token": (b'{"other": 1}', 422, "needs 'token'"),
        "alg none": (_body(none), 422, "only RS256"),
        "hs256": (_body(hs256), 422, "only RS256"),
        "unknown kid": (_body(stranger.token()), 422, "not among the issuer's keys"),
        "expired": (_body(issuer.token(exp=1, iat=0, nbf=0)), 422, "expired"),
        "audience": (_body(issuer.token("pypi")), 422, "audience"),
        "no publisher": (_body(issuer.token(repository="a/b")), 422, "no trusted publisher ma"),
        "issuer": (_body(issuer.token(iss="https://x.test")), 422, "no trusted publisher has"),
        "10,000 claims": (_body(issuer.sign(many)), 413, "over"),
        "1 MB header": (_body(huge_header), 413, "over"),
    }
    for case, (body, status, reason) in refusals.items():
        got, answer = access.mint(body)
        assert (got, reason in answer.get("message", "")) == (status, True), (case, answer)
    access.audited(action="mint", outcome="refused", status=422)


def test_key_rotation_and_odd_keys(access: Access) -> None:
    issuer = access.issuer
    issuer.extra_jwks = [{"kty": "EC", "kid": "ec"}, {"kty": "RSA", "kid": "odd", "n": "!"}, 7]
    assert access.mint(json.dumps({"token": issuer.token()}).encode())[0] == 200
    fetches = issuer.jwks_fetches
    issuer.rotate()  # a new kid: refused while the keys are fresh (junk kids fetch nothing)...
    assert access.mint(json.dumps({"token": issuer.token()}).encode())[0] == 422
    assert issuer.jwks_fetches == fetches
    KEY_CLOCK[0] += 31  # ...then fetched again, once
    assert access.mint(json.dumps({"token": issuer.token()}).encode())[0] == 200
    assert issuer.jwks_fetches == fetches + 1
    assert access.mint(json.dumps({"token": issuer.token()}).encode())[0] == 200
    assert issuer.jwks_fetches == fetches + 1


def test_a_token_matching_two_repositories_is_refused(tmp_path: Path) -> None:
    with running_issuer() as issuer:
        app, server = _serve(tmp_path / "root", _config(issuer.url, True), tmp_path / "a.log")
        try:
            live = Live("127.0.0.1", server.server_address[1], tmp_path / "root", app)
            body = json.dumps({"token": issuer.token()}).encode()
            status, _, answer = live.request("POST", "/_/oidc/mint-token", body=body, auth=None)
            assert status == 422
            assert "several repositories (other, team)" in json.loads(answer)["message"]
        finally:
            server.shutdown()
            server.server_close()
