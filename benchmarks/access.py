"""CPU cost of tokens, scoped pages, the audit log and minting, in process (no sockets).

    python3 -m benchmarks.access

Targets (issue 13): an authorized page request with a token within 10 % of one with a
repository secret; minting <= 5 ms CPU with the JWKS cached; the audit log must not slow the
requests it records.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.web import CONFIG
from benchmarks.web import PIP
from benchmarks.web import _app
from benchmarks.web import _records
from benchmarks.web import cpu_ms
from pywharf.audit import AuditLog
from pywharf.http import Request
from pywharf.oidc import TrustedPublisher
from pywharf.tokens import ALL_RIGHTS
from pywharf.tokens import new_token
from pywharf.tokens import with_token
from pywharf.trusted import KeyCache
from pywharf.trusted import TrustedPublishing
from tests.oidc_issuer import REPOSITORY
from tests.oidc_issuer import WORKFLOW
from tests.oidc_issuer import Issuer

assert "read_secret" in CONFIG


def _get(path: str, user: str, password: str, query: dict[str, str] | None = None) -> Request:
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    headers = {"authorization": auth, "accept": PIP, "host": "pywharf.example"}
    return Request("GET", path, query or {}, headers, io.BytesIO(b""))


def _post(path: str, password: str) -> Request:
    auth = "Basic " + base64.b64encode(f"__token__:{password}".encode()).decode()
    headers = {"authorization": auth, "content-length": "0"}
    return Request("POST", path, {}, headers, io.BytesIO(b""), content_length=0)


def main() -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        records = [r for i in range(2_000) for r in _records(f"proj-{i:04d}", 1, 1)]
        records += _records("acme-app", 5, 4)
        app = _app(root, records)
        repository = app.repositories["local"]
        now = time.time()
        token, record = new_token("bench", ALL_RIGHTS, None, None, now)
        scoped, scoped_record = new_token("scoped", frozenset({"read"}), ("acme-*",), None, now)
        repository.backend.update_tokens(lambda d: with_token(with_token(d, record), scoped_record))
        repository.sync()
        cases = {
            "project page, read secret, username form": _get("/simple/acme-app/", "local", "r"),
            "project page, read secret, path URL": _get("/local/simple/acme-app/", "x", "r"),
            "project page, token, username form": _get("/simple/acme-app/", "local", token),
            "project page, token, path URL": _get("/local/simple/acme-app/", "__token__", token),
            "root page (2,001 projects), read secret": _get("/simple/", "local", "r"),
            "root page, token scoped to acme-*": _get("/local/simple/", "__token__", scoped),
        }
        for name, request in cases.items():
            assert app.handle(request).status == 200, name
            # Alternate, best of five each: the machine is shared.
            print(f"{name}: {cpu_ms(lambda r=request: app.handle(r), 5_000) * 1000:.1f} us CPU")

        # The audit log: a refused yank (nothing changes, so only the logging differs). The
        # request thread's own CPU (thread_time) is what a client waits for; the writer thread
        # formats and writes beside it.
        yank = _post("/local/api/yank/acme-app/9.9", "w")
        app.handle(yank)
        without = _thread_us(lambda: app.handle(yank), 5_000)
        app.audit = AuditLog(root / "audit.log")
        with_audit = _thread_us(lambda: app.handle(yank), 5_000)
        app.audit.close()
        lines = len((root / "audit.log").read_bytes().splitlines())
        print(
            f"a yank request (404) in App.handle, request thread: {without:.1f} us CPU "
            f"without the audit log, {with_audit:.1f} us with it ({lines} lines written)"
        )

        issuer = Issuer()
        issuer.url = "https://issuer.example"
        jwks = json.dumps(issuer.jwks()).encode()
        keys = KeyCache(
            lambda url: (
                jwks if url.endswith("jwks") else b'{"jwks_uri": "https://issuer.example/jwks"}'
            )
        )
        trusted = TrustedPublishing("pywharf", keys, lambda text: text[:8])
        publisher = TrustedPublisher(issuer.url, REPOSITORY, WORKFLOW, ("acme-*",))

        class Repo:
            name = "local"
            publishers = (publisher,)

        body = json.dumps({"token": issuer.token()}).encode()
        trusted.mint(body, [Repo()])
        cost = cpu_ms(lambda: trusted.mint(body, [Repo()]), 500)
        print(f"minting with the JWKS cached: {cost:.3f} ms CPU")


def _thread_us(call: Callable[[], object], rounds: int) -> float:
    """The calling thread's CPU microseconds per call, best of five runs."""
    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        for _ in range(rounds):
            call()
        best = min(best, (time.thread_time() - started) / rounds * 1e6)
    return best


if __name__ == "__main__":
    main()
