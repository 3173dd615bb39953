"""Rendered pages: rendered once per index change, served as bytes with their ETags.

A page is cached on the immutable `Project` (or `Listing`) it was rendered from, so an index
change, which replaces that value, is also the cache invalidation.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from pywharf import simple
from pywharf.index import Listing
from pywharf.index import Project

__all__ = ["Page", "Renderer"]

# Below this a gzip member costs more than it saves.
GZIP_MIN_BYTES = 1024
# Hosts a page keeps its own copy for (a few names of one server). A client sending ever new
# Host headers costs a substitution each, never memory: past the bound the copies are dropped.
MAX_BASES_PER_PAGE = 8
_MARK = simple.BASE_MARK.encode()


class Page:
    """A rendered page; its gzip form is made on the first request that accepts gzip.

    The plain form is kept: decompressing per request for clients without gzip (curl, wrk)
    cost more CPU than serving a cached page. The gzip form costs memory only once a client
    asked for it (pip and uv do).
    """

    __slots__ = ("_by_base", "_gzipped", "body", "etag")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag = hashlib.sha256(body).hexdigest()[:32]  # strong; representations add a suffix
        self._gzipped: bytes | None = None
        # A page with PEP 740 provenance URLs is a template: `for_base` serves a copy per host.
        self._by_base: dict[str, Page] | None = {} if _MARK in body else None

    def for_base(self, base: Callable[[], str]) -> Page:
        """The page as served to a request whose base URL (scheme://host) is `base()`: itself,
        unless it holds fully qualified URLs. The copy is made once per host, and its ETag is
        that of its own bytes, so servers sharing a store agree on it."""
        if self._by_base is None:
            return self
        key = base()
        page = self._by_base.get(key)
        if page is None:
            if len(self._by_base) >= MAX_BASES_PER_PAGE:
                self._by_base = {}  # replaced, not cleared: a reader may hold the old dict
            page = self._by_base[key] = Page(self.body.replace(_MARK, key.encode()))
        return page

    @property
    def compressible(self) -> bool:
        return len(self.body) >= GZIP_MIN_BYTES

    def gzipped(self) -> bytes:
        if self._gzipped is None:  # two threads may both compress: the results are identical
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


class Renderer:
    """Renders pages on first use after a change; `renders` counts them (a regression guard)."""

    def __init__(self) -> None:
        self.renders = 0

    def _cached(self, pages: dict[str, Any], kind: str, render: Callable[[], bytes]) -> Page:
        page = pages.get(kind)
        if page is None:
            # Two threads may render the same page at once; both results are identical.
            self.renders += 1
            page = pages[kind] = Page(render())
        assert isinstance(page, Page)
        return page

    def root(self, listing: Listing, json: bool) -> Page:
        if json:
            return self._cached(
                listing.pages, "json", lambda: simple.render_root_json(listing.names)
            )
        return self._cached(listing.pages, "html", lambda: simple.render_root_html(listing.names))

    def scoped_root(
        self, listing: Listing, json: bool, globs: tuple[str, ...], covers: Callable[[str], bool]
    ) -> Page:
        """The project list as a scoped token sees it, cached per scope on the listing."""
        kind = ("json:" if json else "html:") + ",".join(globs)
        render = simple.render_root_json if json else simple.render_root_html
        return self._cached(
            listing.pages, kind, lambda: render(n for n in listing.names if covers(n))
        )

    def project(
        self,
        project: Project,
        json: bool,
        tracks: Sequence[str] = (),
        alternate_locations: Sequence[str] = (),
    ) -> Page:
        """`tracks` and `alternate_locations` (PEP 708) are configuration: fixed for as long
        as the repository, and so its projects, live."""
        render = simple.render_project_json if json else simple.render_project_html
        kind = "json" if json else "html"
        return self._cached(
            project.pages, kind, lambda: render(project, tracks, alternate_locations)
        )
