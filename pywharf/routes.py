"""The route table's machinery: a path matched against patterns, deciding 404 and 405.

A pattern is a path whose `{name}` segments each match one non-empty segment:

>>> table = RouteTable([Route("/simple/{project}/", ("GET",), "page", None)])
>>> found = table.match("GET", "/simple/demo/")
>>> found.route.handler, dict(found.params)
('page', {'project': 'demo'})
>>> table.match("POST", "/simple/demo/")
Traceback (most recent call last):
pywharf.errors.MethodNotAllowed: Method POST is not allowed here; use GET
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic
from typing import TypeVar

from pywharf.auth import Permission
from pywharf.errors import MethodNotAllowed
from pywharf.errors import NotFound

__all__ = ["Match", "Route", "RouteTable"]

H = TypeVar("H")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route(Generic[H]):
    """One row: where, which methods, who answers, and what the credentials must grant.

    `permission` None: the route is public, or its handler checks credentials itself.
    `audit`: the audit log's action for its changing methods (`{action}`: the path's).
    """

    pattern: str
    methods: tuple[str, ...]
    handler: H
    permission: Permission | None
    audit: str | None = None


@dataclass(frozen=True)
class Match(Generic[H]):
    route: Route[H]
    params: Mapping[str, str]


def _compile(pattern: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(pattern)  # literal, name, literal, name, ...
    regex = "".join(
        f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(regex + r"\Z")


def _first_segment(path: str) -> str | None:
    """`simple` of `/simple/demo/`; None for a `{placeholder}`."""
    segment = path[1:].partition("/")[0]
    return None if segment.startswith("{") else segment


class RouteTable(Generic[H]):
    """The rows, tried in order; the first whose pattern and method match answers."""

    def __init__(self, routes: Sequence[Route[H]]) -> None:
        self.routes = tuple(routes)
        # A row's literal first segment (None: a placeholder) is compared before its regex is
        # tried: a path URL's rows come last, and trying every regex before them cost about
        # 2 us a request (benchmarks/access.py).
        # So is its count of slashes: a placeholder matches one segment, never a slash, so a
        # path can match only the patterns with as many (7 regexes tried per file download
        # before, 1 after).
        self._compiled = tuple(
            (_first_segment(route.pattern), route.pattern.count("/"), _compile(route.pattern),
             route)
            for route in self.routes
        )  # fmt: skip

    def match(self, method: str, path: str) -> Match[H]:
        """The matching row; `NotFound` when no pattern fits, `MethodNotAllowed` with `Allow`.

        Neither depends on what the repositories hold, so deciding them before authentication
        reveals nothing but the shape of the API.
        """
        allowed: list[str] = []
        first, slashes = _first_segment(path), path.count("/")
        for literal, pattern_slashes, regex, route in self._compiled:
            if pattern_slashes != slashes or (literal is not None and literal != first):
                continue
            found = regex.match(path)
            if found is None:
                continue
            if method in route.methods:
                return Match(route, found.groupdict())
            allowed += [m for m in route.methods if m not in allowed]
        if allowed:
            raise MethodNotAllowed(method, tuple(allowed))
        raise NotFound(f"no page at {path}")
