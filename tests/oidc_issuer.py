"""A local OIDC issuer of the suite's own, shaped like GitHub Actions' for trusted publishing.

It holds its own RSA keys (made with `cryptography`), serves the discovery document and the
JWKS, and the ID-token request endpoint that clients call through `ACTIONS_ID_TOKEN_REQUEST_URL`
with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` (GitHub's protocol: `?audience=`
in, `{"value": JWT}` out). `sign` makes any token, well-formed or not, for the refusal tests.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["Issuer", "b64", "running_issuer"]

REPOSITORY = "acme/acme-app"
WORKFLOW = "release.yml"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes(3, "big")
    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": b64(e)}


class Issuer:
    """Keys, claims and the served documents; `url` once started."""

    def __init__(self) -> None:
        self.url = ""
        self.request_token = secrets.token_urlsafe(16)
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate()
        self.extra_jwks: list[Any] = []  # odd keys served beside the real ones
        self.jwks_fetches = 0
        self.claims_override: dict[str, Any] = {}

    def rotate(self) -> str:
        """A new signing key, served beside the old ones (as issuers rotate)."""
        kid = secrets.token_hex(8)
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [*(_jwk(k, v) for k, v in self.keys.items()), *self.extra_jwks]}

    def claims(self, audience: str = "pywharf", **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url, "aud": audience, "iat": now, "nbf": now, "exp": now + 300,
            "sub": f"repo:{REPOSITORY}:environment:pypi", "repository": REPOSITORY,
            "repository_owner": "acme", "environment": "pypi", "ref": "refs/tags/v1.0",
            "job_workflow_ref": f"{REPOSITORY}/.github/workflows/{WORKFLOW}@refs/tags/v1.0",
            "workflow_ref": f"{REPOSITORY}/.github/workflows/{WORKFLOW}@refs/tags/v1.0",
        }  # fmt: skip
        claims.update(self.claims_override)
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(
        self, claims: dict[str, Any], header: dict[str, Any] | None = None, kid: str | None = None
    ) -> str:
        head = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid, **(header or {})}
        signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
        key = self.keys[kid or self.kid]
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def token(self, audience: str = "pywharf", **changes: Any) -> str:
        return self.sign(self.claims(audience, **changes))

    def public_jwk(self) -> dict[str, str]:
        return _jwk(self.kid, self.keys[self.kid])

    def request_url(self) -> str:
        """ACTIONS_ID_TOKEN_REQUEST_URL: clients append `&audience=...`."""
        return f"{self.url}/id-token?api-version=2.0"


class _Handler(BaseHTTPRequestHandler):
    issuer: Issuer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        issuer = self.issuer
        parts = urlsplit(self.path)
        if parts.path == "/.well-known/openid-configuration":
            self._json(200, {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks",
                             "id_token_signing_alg_values_supported": ["RS256"]})  # fmt: skip
        elif parts.path == "/jwks":
            issuer.jwks_fetches += 1
            self._json(200, issuer.jwks())
        elif parts.path == "/id-token":
            scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or credential != issuer.request_token:
                self._json(401, {"message": "bad request token"})
                return
            audience = parse_qs(parts.query).get("audience", ["pywharf"])[0]
            self._json(200, {"count": 1, "value": issuer.token(audience)})
        else:
            self._json(404, {"message": "not found"})


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    handler = type("Handler", (_Handler,), {"issuer": issuer})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
