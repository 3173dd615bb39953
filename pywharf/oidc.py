"""OpenID Connect identity tokens, verified with the standard library: trusted publishing.

RS256 only (RFC 7518 section 3.3): RSASSA-PKCS1-v1_5 with SHA-256, checked with `pow` (RFC 8017
section 8.2.2) against a key from the issuer's JWKS. Every other `alg` is refused, `none` and
HS256 included (HS256 with the public key as the HMAC secret is the classic key confusion).
Pure: bytes and dicts in, claims or `IdentityRefused` out; fetching keys is `pywharf.trusted`'s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pywharf.errors import IdentityRefused

__all__ = [
    "LEEWAY_SECONDS",
    "MAX_TOKEN_BYTES",
    "RSAKey",
    "TrustedPublisher",
    "UnverifiedToken",
    "check_claims",
    "parse_jwks",
    "parse_token",
    "verify_rs256",
]

# GitHub's ID tokens are about 1.2 KiB; no real one comes near this.
MAX_TOKEN_BYTES = 16 * 1024
MAX_CLAIMS = 256
# Clocks drift; PyPI allows a minute too.
LEEWAY_SECONDS = 60
# RFC 8017 section 9.2 note 1: the DER prefix of a SHA-256 DigestInfo.
_SHA256_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
_MIN_BITS, _MAX_BITS = 2048, 8192


@dataclass(frozen=True)
class TrustedPublisher:
    """One `[[NAME.trusted_publishers]]` table: which CI identity may upload which projects."""

    issuer: str
    repository: str  # the `repository` claim (GitLab: `project_path`)
    workflow: str  # the workflow file, matched against `job_workflow_ref` (`ci_config_ref_uri`)
    projects: tuple[str, ...]
    environment: str = ""  # '' : any
    jwks_file: str = ""  # '' : discovered from the issuer

    def matches(self, claims: Mapping[str, Any]) -> bool:
        repository = claims.get("repository", claims.get("project_path"))
        if repository != self.repository:
            return False
        if self.environment and claims.get("environment") != self.environment:
            return False
        reference = claims.get("job_workflow_ref", claims.get("ci_config_ref_uri"))
        return isinstance(reference, str) and self._workflow_matches(reference)

    def _workflow_matches(self, reference: str) -> bool:
        """`owner/repo/.github/workflows/release.yml@refs/...`: the path before `@` is the
        workflow, or ends with `/` + it, within this repository (not a reusable workflow of
        another repository that happens to share the file name)."""
        path = reference.partition("@")[0]
        if path == self.workflow:
            return True
        inside = path.startswith(self.repository + "/") or f"/{self.repository}/" in path
        return inside and path.endswith("/" + self.workflow)


@dataclass(frozen=True)
class RSAKey:
    kid: str
    n: int
    e: int

    @property
    def size(self) -> int:
        return (self.n.bit_length() + 7) // 8


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise IdentityRefused(f"identity token: {what} is not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise IdentityRefused(f"identity token: {what} is not base64url") from None


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise IdentityRefused(f"identity token: {what} is not JSON") from None
    if not isinstance(value, dict):
        raise IdentityRefused(f"identity token: {what} is not a JSON object")
    return value


def parse_jwks(document: bytes) -> dict[str, RSAKey]:
    """The usable RSA signing keys of a JWKS, by `kid`; odd keys (EC, no kid, tiny or huge
    moduli, even exponents) are left out rather than failing the whole set."""
    try:
        data = json.loads(document)
    except (ValueError, RecursionError):
        raise IdentityRefused("the issuer's JWKS is not JSON") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        raise IdentityRefused("the issuer's JWKS has no 'keys' list")
    found = {}
    for entry in keys[:100]:
        key = _rsa_key(entry)
        if key is not None:
            found[key.kid] = key
    return found


def _rsa_key(entry: Any) -> RSAKey | None:
    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
        return None
    if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
        return None
    kid = entry.get("kid")
    try:
        n = int.from_bytes(_b64(entry.get("n"), "n"), "big")
        e = int.from_bytes(_b64(entry.get("e"), "e"), "big")
    except IdentityRefused:
        return None
    if not isinstance(kid, str) or not _MIN_BITS <= n.bit_length() <= _MAX_BITS:
        return None
    if e < 3 or e % 2 == 0 or e.bit_length() > 32:
        return None
    return RSAKey(kid, n, e)


@dataclass(frozen=True)
class UnverifiedToken:
    """A JWT split and decoded, its signature not yet checked."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def kid(self) -> str:
        kid = self.header.get("kid")
        if not isinstance(kid, str):
            raise IdentityRefused("identity token: its header names no key ('kid')")
        return kid


def parse_token(token: Any) -> UnverifiedToken:
    """RFC 7519 compact form, RS256 only; bounded in size and in claims."""
    if not isinstance(token, str) or not token:
        raise IdentityRefused("the body needs 'token': the CI's OIDC identity token")
    if len(token) > MAX_TOKEN_BYTES:
        raise IdentityRefused(f"identity token: longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        raise IdentityRefused("identity token: not a JWT (three dot-separated parts)")
    header = _json_object(_b64(parts[0], "the header"), "the header")
    if header.get("alg") != "RS256":  # never `none`, never HS256 keyed with a public key
        raise IdentityRefused(f"identity token: algorithm {str(header.get('alg'))[:20]!r} is "
                              "not accepted; only RS256")  # fmt: skip
    claims = _json_object(_b64(parts[1], "the claims"), "the claims")
    if len(claims) > MAX_CLAIMS:
        raise IdentityRefused(f"identity token: more than {MAX_CLAIMS} claims")
    signature = _b64(parts[2], "the signature")
    return UnverifiedToken(header, claims, f"{parts[0]}.{parts[1]}".encode(), signature)


def verify_rs256(key: RSAKey, signing_input: bytes, signature: bytes) -> bool:
    """RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 section 8.2.2) with SHA-256."""
    if len(signature) != key.size:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    encoded = pow(s, key.e, key.n).to_bytes(key.size, "big")
    digest = _SHA256_PREFIX + hashlib.sha256(signing_input).digest()
    expected = b"\x00\x01" + b"\xff" * (key.size - len(digest) - 3) + b"\x00" + digest
    return hmac.compare_digest(encoded, expected)


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IdentityRefused(f"identity token: claim {name!r} is missing or not a number")
    return float(value)


def check_claims(claims: Mapping[str, Any], issuer: str, audience: str, now: float) -> None:
    """RFC 7519 section 4.1: `iss`, `aud`, `exp`, `nbf`, `iat`, with a small leeway."""
    if claims.get("iss") != issuer:
        raise IdentityRefused("identity token: wrong issuer")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise IdentityRefused(f"identity token: its audience is not {audience!r}")
    expires = _number(claims, "exp", True)
    if expires is not None and expires + LEEWAY_SECONDS < now:
        raise IdentityRefused("identity token: expired")
    for name in ("nbf", "iat"):
        moment = _number(claims, name, name == "iat")
        if moment is not None and moment - LEEWAY_SECONDS > now:
            raise IdentityRefused(f"identity token: {name!r} is in the future")
