"""Fetching an OIDC issuer's discovery document and JWKS (small public JSON documents)."""

from __future__ import annotations

from pywharf.clients.errors import ClientError
from pywharf.clients.http import RetryPolicy
from pywharf.clients.http import Transport
from pywharf.clients.http import redact_url

__all__ = ["IssuerClient"]

# A JWKS is a few KiB; anything far larger is not one.
MAX_DOCUMENT_BYTES = 1024 * 1024
# A mint waits for these fetches: fail soon rather than hold the CI job.
ISSUER_POLICY = RetryPolicy(attempts=2, backoff=0.2, backoff_max=1.0, max_wait=2.0)


class IssuerClient:
    """GETs JSON documents over one pool; errors name the URL without query or user info."""

    def __init__(self, transport: Transport | None = None) -> None:
        self._transport = transport or Transport(timeout=10.0, policy=ISSUER_POLICY)

    def get(self, url: str) -> bytes:
        response = self._transport.request(
            "GET", url, headers={"Accept": "application/json"}, idempotent=True
        )
        if response.status != 200:
            raise ClientError(f"{redact_url(url)} answered {response.status}", response.status)
        if len(response.data) > MAX_DOCUMENT_BYTES:
            raise ClientError(f"{redact_url(url)} answered more than {MAX_DOCUMENT_BYTES} bytes")
        return response.data

    def close(self) -> None:
        self._transport.close()
