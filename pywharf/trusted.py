"""Trusted publishing: a CI's OIDC identity token exchanged for a short-lived upload token.

The repository is found from the token's claims, by matching every repository's publishers
(uv calls `/_/oidc/mint-token` at the server root, whatever the publish URL's path). Issuer keys
come from a publisher's `jwks_file`, or from the issuer's discovery document; they are cached,
and an unknown `kid` re-fetches them (key rotation), at most once per `REFRESH_SECONDS`.

A minted token is signed with the server's key (`ROOT/session-key`) and stored nowhere, so every
server sharing the ROOT accepts it, and it ends by itself after `MINTED_SECONDS`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from typing import Protocol

from pywharf.clients.errors import ClientError
from pywharf.errors import AuthenticationRequired
from pywharf.errors import IdentityRefused
from pywharf.errors import UpstreamError
from pywharf.oidc import RSAKey
from pywharf.oidc import TrustedPublisher
from pywharf.oidc import check_claims
from pywharf.oidc import parse_jwks
from pywharf.oidc import parse_token
from pywharf.oidc import verify_rs256
from pywharf.tokens import MINTED_PREFIX
from pywharf.tokens import Grant
from pywharf.tokens import decode_minted
from pywharf.tokens import encode_minted

__all__ = ["MINTED_SECONDS", "KeyCache", "Minted", "TrustedPublishing"]

MINTED_SECONDS = 15 * 60  # PyPI's lifetime for a minted token
KEYS_TTL_SECONDS = 3600.0
REFRESH_SECONDS = 30.0  # an unknown kid re-fetches at most this often (junk kids cost nothing)
DISCOVERY = "/.well-known/openid-configuration"


class Publishers(Protocol):
    """A repository as trusted publishing sees it."""

    @property
    def name(self) -> str: ...

    @property
    def publishers(self) -> tuple[TrustedPublisher, ...]: ...


@dataclass(frozen=True)
class Minted:
    repository: str
    actor: str
    token: str
    expires: int


@dataclass
class _KeySet:
    keys: dict[str, RSAKey]
    fetched: float


class KeyCache:
    """Signing keys per source (an issuer URL, or a local JWKS file), fetched on demand."""

    def __init__(self, get: Callable[[str], bytes], clock: Callable[[], float] = time.monotonic):
        self._get = get
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()

    def key(self, publisher: TrustedPublisher, kid: str) -> RSAKey:
        source = publisher.jwks_file or publisher.issuer
        now = self._clock()
        with self._lock:  # one fetch at a time: a burst of mints makes one request
            cached = self._sets.get(source)
            stale = cached is None or now - cached.fetched > KEYS_TTL_SECONDS
            unknown = cached is not None and kid not in cached.keys
            if stale or (unknown and now - cached.fetched > REFRESH_SECONDS):  # type: ignore[union-attr]
                cached = self._sets[source] = _KeySet(self._fetch(publisher), now)
        assert cached is not None
        key = cached.keys.get(kid)
        if key is None:
            raise IdentityRefused("identity token: its key ('kid') is not among the issuer's keys")
        return key

    def _fetch(self, publisher: TrustedPublisher) -> dict[str, RSAKey]:
        if publisher.jwks_file:
            try:
                return parse_jwks(Path(publisher.jwks_file).read_bytes())
            except OSError as error:
                raise UpstreamError(
                    f"cannot read {publisher.jwks_file}: {error.strerror}"
                ) from None
        try:
            discovery = json.loads(self._get(publisher.issuer.rstrip("/") + DISCOVERY))
            jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise UpstreamError(f"{publisher.issuer}: the discovery document has no jwks_uri")
            return parse_jwks(self._get(jwks_uri))
        except (ClientError, ValueError) as error:
            if isinstance(error, IdentityRefused):
                raise UpstreamError(f"{publisher.issuer}: {error}") from None
            raise UpstreamError(f"cannot fetch the keys of {publisher.issuer}: {error}") from None


class TrustedPublishing:
    """Mints upload tokens for identities that match a repository's trusted publishers."""

    def __init__(
        self,
        audience: str,
        keys: KeyCache,
        sign: Callable[[str], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self.keys = keys
        self._sign = sign
        self._clock = clock

    def mint(self, body: bytes, repositories: Iterable[Publishers]) -> Minted:
        try:
            request = json.loads(body)
        except (ValueError, RecursionError):
            raise IdentityRefused(
                'the body must be JSON: {"token": "<OIDC identity token>"}'
            ) from None
        token = parse_token(request.get("token") if isinstance(request, dict) else None)
        issuer = token.claims.get("iss")
        candidates = [
            (repository.name, publisher)
            for repository in repositories
            for publisher in repository.publishers
            if publisher.issuer == issuer
        ]
        if not candidates:
            raise IdentityRefused("identity token: no trusted publisher has its issuer")
        verified = self._verify(token.kid, token.signing_input, token.signature, candidates)
        check_claims(token.claims, verified[0][1].issuer, self.audience, self._clock())
        matching = [(name, p) for name, p in verified if p.matches(token.claims)]
        names = sorted({name for name, _ in matching})
        if not names:
            raise IdentityRefused(
                f"identity token: no trusted publisher matches {_who(token.claims)}"
            )
        if len(names) > 1:
            raise IdentityRefused(
                f"identity token: {_who(token.claims)} matches trusted publishers of several "
                f"repositories ({', '.join(names)}); make one of them narrower"
            )
        publishers = [p for _, p in matching]
        projects = sorted({glob for p in publishers for glob in p.projects})
        who = token.claims.get("repository", token.claims.get("project_path"))
        actor = f"oidc:{who}@{publishers[0].workflow}"
        expires = int(self._clock()) + MINTED_SECONDS
        payload = {"r": names[0], "a": actor, "p": projects, "x": expires}
        return Minted(names[0], actor, encode_minted(payload, self._sign), expires)

    def _verify(
        self, kid: str, signing_input: bytes, signature: bytes,
        candidates: list[tuple[str, TrustedPublisher]],
    ) -> list[tuple[str, TrustedPublisher]]:  # fmt: skip
        """The candidates whose key source verifies the signature (one check per source)."""
        results: dict[str, bool] = {}
        verified = []
        for name, publisher in candidates:
            source = publisher.jwks_file or publisher.issuer
            if source not in results:
                key = self.keys.key(publisher, kid)
                results[source] = verify_rs256(key, signing_input, signature)
            if results[source]:
                verified.append((name, publisher))
        if not verified:
            raise IdentityRefused("identity token: the signature does not verify")
        return verified

    def grant(self, token: str, repository: str) -> Grant | None:
        """The grant of a minted token for `repository`; expired: 401 with a reason."""
        try:
            payload = decode_minted(token, self._sign) if token.startswith(MINTED_PREFIX) else None
        except (ValueError, UnicodeDecodeError):
            return None
        if payload is None or payload.get("r") != repository:
            return None
        if float(payload.get("x", 0)) < self._clock():
            raise AuthenticationRequired("this minted token expired; mint a new one")
        return Grant(str(payload["a"]), frozenset({"upload"}), tuple(payload.get("p") or ()))


def _who(claims: dict[str, Any]) -> str:
    """The claims a publisher is matched on, shown in a refusal (never the token itself)."""
    shown = {k: claims.get(k) for k in ("repository", "job_workflow_ref", "environment")
             if isinstance(claims.get(k), str)}  # fmt: skip
    return ", ".join(f"{k}={str(v)[:200]!r}" for k, v in shown.items()) or "its claims"
