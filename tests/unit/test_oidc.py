"""Identity tokens verified with the standard library, every refusal, and publisher matching."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from oidc_issuer import REPOSITORY
from oidc_issuer import WORKFLOW
from oidc_issuer import Issuer
from oidc_issuer import b64

from pywharf.errors import AuthenticationRequired
from pywharf.errors import IdentityRefused
from pywharf.oidc import TrustedPublisher
from pywharf.oidc import check_claims
from pywharf.oidc import parse_jwks
from pywharf.oidc import parse_token
from pywharf.oidc import verify_rs256
from pywharf.trusted import KeyCache
from pywharf.trusted import TrustedPublishing

ISSUER_URL = "https://issuer.test"


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    made = Issuer()
    made.url = ISSUER_URL
    return made


def _verifies(issuer: Issuer, token: str) -> bool:
    parsed = parse_token(token)
    keys = parse_jwks(json.dumps(issuer.jwks()).encode())
    return verify_rs256(keys[parsed.kid], parsed.signing_input, parsed.signature)


def test_a_token_signed_by_the_issuer_verifies(issuer: Issuer) -> None:
    token = issuer.token()
    assert _verifies(issuer, token)
    check_claims(parse_token(token).claims, ISSUER_URL, "pywharf", time.time())


def test_a_changed_claim_breaks_the_signature(issuer: Issuer) -> None:
    head, claims, signature = issuer.token().split(".")
    forged = b64(json.dumps(issuer.claims(repository="evil/repo")).encode())
    assert not _verifies(issuer, f"{head}.{forged}.{signature}")
    assert not _verifies(issuer, f"{head}.{claims}.{b64(b'x' * 256)}")
    assert not _verifies(issuer, f"{head}.{claims}.{b64(b'x' * 10)}")


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{b64(signature)}"


def test_alg_none_is_refused(issuer: Issuer) -> None:
    token = _unsigned({"alg": "none", "kid": issuer.kid}, issuer.claims())
    with pytest.raises(IdentityRefused, match="only RS256"):
        parse_token(token)


def test_hs256_keyed_with_the_public_key_is_refused(issuer: Issuer) -> None:
    """The classic key confusion: the public key, known to all, used as an HMAC secret."""
    header = {"alg": "HS256", "kid": issuer.kid}
    body = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(issuer.claims()).encode())}"
    public = json.dumps(issuer.public_jwk()).encode()
    mac = hmac.new(public, body.encode(), hashlib.sha256).digest()
    with pytest.raises(IdentityRefused, match="only RS256"):
        parse_token(f"{body}.{b64(mac)}")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "'nbf' is in the future"),
        ({"iat": int(time.time()) + 3600}, "'iat' is in the future"),
        ({"aud": "pypi"}, "audience"),
        ({"iss": "https://evil.test"}, "wrong issuer"),
        ({"exp": None}, "'exp' is missing"),
        ({"exp": "soon"}, "'exp' is missing or not a number"),
    ],
)
def test_claims_are_checked(issuer: Issuer, changes: dict[str, Any], reason: str) -> None:
    claims = issuer.claims(**changes)
    with pytest.raises(IdentityRefused, match=reason):
        check_claims(claims, ISSUER_URL, "pywharf", time.time())


def test_a_small_clock_skew_is_allowed(issuer: Issuer) -> None:
    now = time.time()
    claims = issuer.claims(exp=int(now) - 30, nbf=int(now) + 30, iat=int(now) + 30)
    check_claims(claims, ISSUER_URL, "pywharf", now)
    check_claims(issuer.claims(aud=["other", "pywharf"]), ISSUER_URL, "pywharf", now)


@pytest.mark.parametrize(
    "token",
    [
        "", "garbled", "a.b", "a.b.c.d", "!!!.???.***", "é.é.é",
        _unsigned({"alg": "RS256"}, {"x": 1}) + "=====",
        b64(b"[1,2]") + "." + b64(b"{}") + ".",
        b64(b"{not json") + "." + b64(b"{}") + ".",
        b64(json.dumps({"alg": "RS256"}).encode()) + "." + b64(b'"a string"') + ".",
        b64(json.dumps({"alg": "RS256"}).encode()) + "." + b64(b"[" * 100000) + ".",
    ],
)  # fmt: skip
def test_garbled_tokens_are_refused_cleanly(token: str) -> None:
    with pytest.raises(IdentityRefused):
        parsed = parse_token(token)
        parsed.kid  # noqa: B018  (a token without a kid is refused when it is asked for)


def test_ten_thousand_claims_and_a_megabyte_header_are_refused(issuer: Issuer) -> None:
    many = {f"c{i}": i for i in range(10_000)}
    with pytest.raises(IdentityRefused, match="longer than"):
        parse_token(issuer.sign(many))
    padded = _unsigned({"alg": "RS256", "pad": "x" * 1_000_000}, issuer.claims())
    with pytest.raises(IdentityRefused, match="longer than"):
        parse_token(padded)
    small_many = {f"c{i}": 0 for i in range(300)}
    with pytest.raises(IdentityRefused, match="more than 256 claims"):
        parse_token(issuer.sign(small_many))


def test_odd_jwks_keys_are_left_out(issuer: Issuer) -> None:
    good = issuer.public_jwk()
    odd = [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "small", "n": b64(b"\x01" * 64), "e": "AQAB"},
        {"kty": "RSA", "kid": "huge", "n": b64(b"\xff" * 2000), "e": "AQAB"},
        {"kty": "RSA", "kid": "even-e", "n": good["n"], "e": b64(b"\x02")},
        {"kty": "RSA", "kid": "no-n", "e": "AQAB"},
        {"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": 7, "n": good["n"], "e": "AQAB"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": good["n"], "e": "AQAB"},
        "not an object", None, [],
    ]  # fmt: skip
    keys = parse_jwks(json.dumps({"keys": [*odd, good]}).encode())
    assert set(keys) == {good["kid"]}
    for document in (b"{", b"[]", b'{"keys": 3}', b"\xff\xfe"):
        with pytest.raises(IdentityRefused):
            parse_jwks(document)


def _publisher(**changes: Any) -> TrustedPublisher:
    values: dict[str, Any] = {"issuer": ISSUER_URL, "repository": REPOSITORY,
                              "workflow": WORKFLOW, "projects": ("acme-*",)}  # fmt: skip
    values.update(changes)
    return TrustedPublisher(**values)


@pytest.mark.parametrize(
    ("publisher", "claims", "matches"),
    [
        (_publisher(), {}, True),
        (_publisher(workflow=f"{REPOSITORY}/.github/workflows/{WORKFLOW}"), {}, True),
        (_publisher(environment="pypi"), {}, True),
        (_publisher(environment="prod"), {}, False),
        (_publisher(workflow="other.yml"), {}, False),
        (_publisher(repository="acme/other"), {}, False),
        # A reusable workflow of another repository with the same file name does not match.
        (_publisher(), {"job_workflow_ref": f"evil/x/.github/workflows/{WORKFLOW}@main"}, False),
        (_publisher(), {"job_workflow_ref": None}, False),
        # GitLab CI's claim names.
        (_publisher(repository="group/app", workflow=".gitlab-ci.yml"),
         {"repository": None, "job_workflow_ref": None, "project_path": "group/app",
          "ci_config_ref_uri": "gitlab.com/group/app//.gitlab-ci.yml@refs/heads/main"}, True),
        # Forgejo keeps GitHub's names, its workflows under .forgejo/.
        (_publisher(), {"job_workflow_ref": f"{REPOSITORY}/.forgejo/workflows/{WORKFLOW}@main"},
         True),
    ],
)  # fmt: skip
def test_publishers_match_on_repository_workflow_and_environment(
    issuer: Issuer, publisher: TrustedPublisher, claims: dict[str, Any], matches: bool
) -> None:
    assert publisher.matches(issuer.claims(**claims)) is matches


class _Repo:
    def __init__(self, name: str, *publishers: TrustedPublisher) -> None:
        self.name = name
        self.publishers = publishers


def _trusted(issuer: Issuer, clock: Callable[[], float] = time.time) -> TrustedPublishing:
    fetched = {f"{ISSUER_URL}/.well-known/openid-configuration":
               json.dumps({"jwks_uri": f"{ISSUER_URL}/jwks"}).encode()}  # fmt: skip

    def get(url: str) -> bytes:
        return fetched.get(url) or json.dumps(issuer.jwks()).encode()

    sign = lambda text: hashlib.sha256(b"key" + text.encode()).hexdigest()  # noqa: E731
    return TrustedPublishing("pywharf", KeyCache(get), sign, clock)


def test_minting_costs_under_five_ms_of_cpu_with_the_keys_cached(issuer: Issuer) -> None:
    """The issue's budget: measured in process CPU time, best of 20 (not wall-clock)."""
    trusted = _trusted(issuer)
    body = json.dumps({"token": issuer.token()}).encode()
    repos = [_Repo("team", _publisher())]
    trusted.mint(body, repos)  # fetches and caches the keys
    costs = []
    for _ in range(20):
        started = time.process_time()
        trusted.mint(body, repos)
        costs.append(time.process_time() - started)
    assert min(costs) < 0.005


def test_a_token_matching_two_repositories_is_refused(issuer: Issuer) -> None:
    trusted = _trusted(issuer)
    body = json.dumps({"token": issuer.token()}).encode()
    with pytest.raises(IdentityRefused, match="several repositories"):
        trusted.mint(body, [_Repo("one", _publisher()), _Repo("two", _publisher())])
    minted = trusted.mint(body, [_Repo("one", _publisher()), _Repo("two", _publisher(
        workflow="other.yml"))])  # fmt: skip
    assert minted.repository == "one"
    assert minted.actor == f"oidc:{REPOSITORY}@{WORKFLOW}"


def test_a_minted_token_lasts_fifteen_minutes_in_its_repository_only(issuer: Issuer) -> None:
    now = [time.time()]
    trusted = _trusted(issuer, lambda: now[0])
    body = json.dumps({"token": issuer.token()}).encode()
    minted = trusted.mint(body, [_Repo("team", _publisher())])
    assert minted.expires == int(now[0]) + 15 * 60
    grant = trusted.grant(minted.token, "team")
    assert grant is not None and grant.rights == {"upload"} and grant.projects == ("acme-*",)
    assert trusted.grant(minted.token, "other") is None
    assert trusted.grant(minted.token[:-2], "team") is None  # a forged signature
    now[0] += 15 * 60 + 1
    with pytest.raises(AuthenticationRequired, match="expired"):
        trusted.grant(minted.token, "team")


def test_no_repository_can_be_named_like_a_route_of_the_server() -> None:
    """In `/<repo>/simple/` a literal first segment wins: such a repository would be unreachable."""
    from pywharf.app import ROUTES
    from pywharf.config import RESERVED_NAMES

    literal = {r.pattern.split("/")[1] for r in ROUTES.routes if not r.pattern.startswith("/{")}
    assert literal - {""} <= RESERVED_NAMES
