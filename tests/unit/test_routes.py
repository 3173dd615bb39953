"""The route table: matching, 404 and 405 by the path alone, and the README's copy of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pywharf.app import ROUTES
from pywharf.auth import Permission
from pywharf.errors import MethodNotAllowed
from pywharf.errors import NotFound
from pywharf.routes import Route
from pywharf.routes import RouteTable

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TABLE = RouteTable(
    [
        Route("/simple/", ("GET", "HEAD"), "root", Permission.READ),
        Route("/simple/", ("POST",), "upload", Permission.WRITE),
        Route("/simple/{project}/", ("GET", "HEAD"), "project", Permission.READ),
        Route("/simple/{project}/{filename}", ("GET", "HEAD"), "file", Permission.READ),
        Route("/api/files/{project}/{filename}", ("DELETE",), "delete", Permission.WRITE),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "handler", "params"),
    [
        ("GET", "/simple/", "root", {}),
        ("POST", "/simple/", "upload", {}),
        ("HEAD", "/simple/Demo.Pkg/", "project", {"project": "Demo.Pkg"}),
        ("GET", "/simple/a/a-1.0.tar.gz", "file", {"project": "a", "filename": "a-1.0.tar.gz"}),
        ("DELETE", "/api/files/a/b.whl", "delete", {"project": "a", "filename": "b.whl"}),
        # A segment is anything but a slash, percent-decoded already: no pattern syntax leaks.
        ("GET", "/simple/.*/", "project", {"project": ".*"}),
    ],
)
def test_a_match_names_the_handler_and_the_segments(
    method: str, path: str, handler: str, params: dict[str, str]
) -> None:
    found = TABLE.match(method, path)
    assert found.route.handler == handler
    assert dict(found.params) == params


@pytest.mark.parametrize(
    "path", ["/simple", "/simple//", "/simple/a/b/c", "/simple/a", "/api/files/a", "", "/x"]
)
def test_no_pattern_is_404(path: str) -> None:
    with pytest.raises(NotFound):
        TABLE.match("GET", path)


def test_a_known_path_with_another_method_is_405_listing_every_allowed_method() -> None:
    with pytest.raises(MethodNotAllowed) as caught:
        TABLE.match("PUT", "/simple/")
    assert caught.value.status == 405
    assert dict(caught.value.headers)["Allow"] == "GET, HEAD, POST"


def _readme_rows() -> set[tuple[tuple[str, ...], str, str]]:
    rows = set()
    for line in README.splitlines():
        found = re.match(r"^\| `([A-Z, ]+)` \| `(/[^`]*)` \| ([a-z ()]+?) \|", line)
        if found:
            methods = tuple(m.strip() for m in found[1].split(","))
            rows.add((methods, found[2], found[3].split()[0]))
    return rows


def test_the_readme_route_table_is_the_route_table() -> None:
    words = {Permission.READ: "read", Permission.WRITE: "write", None: "none"}
    ours = {(r.methods, r.pattern, words[r.permission]) for r in ROUTES.routes}
    # /initialize/ authorizes itself (an initialize secret, not a repository's): the README
    # says "own".
    documented = {(m, p, "none" if w == "own" else w) for m, p, w in _readme_rows()}
    assert documented == ours


def test_every_route_pattern_is_reachable() -> None:
    """No row is shadowed by an earlier one with the same pattern and method."""
    seen = set()
    for route in ROUTES.routes:
        for method in route.methods:
            assert (route.pattern, method) not in seen, route
            seen.add((route.pattern, method))
