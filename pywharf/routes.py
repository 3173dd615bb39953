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
        # A path can match only the rows whose first segment is its own or a placeholder, and
        # that have as many slashes (a placeholder matches one segment, never a slash). Those
        # candidates, in the table's order, are looked up by (first segment, slashes): one dict
        # lookup and usually one regex, where a scan of every row's literal and slash count
        # was about a tenth of a cached page's CPU under 64 connections (issue 16).
        compiled = [
            (_first_segment(route.pattern), route.pattern.count("/"), _compile(route.pattern),
             route)
            for route in self.routes
        ]  # fmt: skip
        literals = {literal for literal, _, _, _ in compiled if literal is not None}
        self._candidates: dict[tuple[str | None, int], tuple[tuple[re.Pattern[str], Route[H]], ...]]
        self._candidates = {}
        for first in (*literals, None):
            for slashes in {count for _, count, _, _ in compiled}:
                rows = tuple(
                    (regex, route)
                    for literal, count, regex, route in compiled
                    if count == slashes and literal in (None, first)
                )
                if rows:
                    self._candidates[(first, slashes)] = rows

    def match(self, method: str, path: str) -> Match[H]:
        """The matching row; `NotFound` when no pattern fits, `MethodNotAllowed` with `Allow`.

        Neither depends on what the repositories hold, so deciding them before authentication
        reveals nothing but the shape of the API.
        """
        slashes = path.count("/")
        candidates = self._candidates.get((_first_segment(path), slashes))
        if candidates is None:  # no row has this first segment: only placeholders can match
            candidates = self._candidates.get((None, slashes), ())
        allowed: list[str] = []
        for regex, route in candidates:
            found = regex.match(path)
            if found is None:
                continue
            if method in route.methods:
                return Match(route, found.groupdict())
            allowed += [m for m in route.methods if m not in allowed]
        if allowed:
            raise MethodNotAllowed(method, tuple(allowed))
        raise NotFound(f"no page at {path}")
