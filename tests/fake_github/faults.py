"""Injected faults and request hooks: how tests make the fake GitHub misbehave on purpose."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Callable

from . import render

_MESSAGES = {
    304: "",
    400: "Bad Request",
    401: "Bad credentials",
    403: "Forbidden",
    404: "Not Found",
    409: "index.toml does not match 0000000000000000000000000000000000000000",
    410: "Gone",
    500: "Server Error",
    502: "Server Error",
    503: "Service Unavailable",
    504: "We couldn't respond to your request in time.",
}
PRIMARY_MESSAGE = "API rate limit exceeded for user ID 1001."
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)


def default_body(status: int, path: str = "") -> Any:
    """GitHub's body for an error status; a 422 is a missing sha on contents paths, else a
    duplicate asset name."""
    if status == 304:
        return None
    if status == 422 and "contents" in path:
        return render.error('Invalid request.\n\n"sha" wasn\'t supplied.')
    if status == 422:
        return render.validation("Validation Failed", "ReleaseAsset", "name", "already_exists")
    return render.error(_MESSAGES.get(status, "Error"))


@dataclass
class Fault:
    """Answer the next `times` matching requests with this status instead of the real one."""

    method: str  # "*" for any
    path: re.Pattern[str]
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    origin: str = "api"

    def matches(self, origin: str, method: str, path: str) -> bool:
        return (
            self.times > 0
            and self.origin in (origin, "*")
            and self.method in (method, "*")
            and self.path.search(path) is not None
        )


@dataclass
class Hook:
    """Run `action` just before the next `times` matching requests (a concurrent writer)."""

    method: str
    path: re.Pattern[str]
    action: Callable[[], object]
    times: int = 1

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method in (method, "*") and bool(self.path.search(path))


def rate_limit_fault(
    kind: str,
    *,
    status: int = 403,
    retry_after: int | None = None,
    reset: int | None = None,
) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body of a primary ("primary") or secondary ("secondary") limit."""
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    if kind == "primary":
        headers["x-ratelimit-remaining"] = "0"
        headers["x-ratelimit-reset"] = str(reset if reset is not None else int(time.time()) + 60)
        return status, headers, render.error(PRIMARY_MESSAGE)
    return status, headers, render.error(SECONDARY_MESSAGE)
