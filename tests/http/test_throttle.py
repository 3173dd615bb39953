"""Failed-authentication throttling through a real server (issue 9, finding 6)."""

from __future__ import annotations

import base64
import http.client

from support import READ
from support import Live


def request_from(
    live: Live, source: str, auth: tuple[str, str], path: str = "/simple/"
) -> tuple[int, dict[str, str]]:
    """A GET from a chosen loopback address, so the server sees distinct clients."""
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    connection = http.client.HTTPConnection(
        live.host, live.port, timeout=30, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def test_a_guesser_is_throttled_and_a_correct_client_is_not(live_server: Live) -> None:
    attacker, honest, newcomer = "127.0.0.2", "127.0.0.3", "127.0.0.4"
    assert request_from(live_server, honest, ("local", READ))[0] == 200  # now cached
    statuses = [request_from(live_server, attacker, ("local", f"guess-{n}"))[0] for n in range(60)]
    assert statuses[:20] == [401] * 20  # the burst: plain refusals
    assert set(statuses[20:]) == {429}  # then refused before any check
    status, headers = request_from(live_server, attacker, ("local", "guess-x"))
    assert status == 429 and int(headers["retry-after"]) >= 1
    # Even the right secret from the throttled address waits: a guesser learns nothing.
    assert request_from(live_server, attacker, ("local", READ))[0] == 429
    # Another address with the right secret, cached or not, is never slowed.
    assert request_from(live_server, honest, ("local", READ))[0] == 200
    assert request_from(live_server, newcomer, ("local", READ))[0] == 200


def test_guessing_repository_names_is_throttled_too(live_server: Live) -> None:
    statuses = [request_from(live_server, "127.0.0.5", (f"repo-{n}", READ))[0] for n in range(30)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
