"""Rendered pages: rendered once per index change, served as bytes with their ETags.

A page is cached on the immutable `Project` (or `Listing`) it was rendered from, so an index
change, which replaces that value, is also the cache invalidation.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pywharf import simple
from pywharf.index import Listing
from pywharf.index import Project

__all__ = ["Page", "Renderer"]

# Below this a gzip member costs more than it saves.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Page:
    """A rendered page. A large one is kept only gzipped: pip, uv and browsers take gzip, and
    the cache of every page of a repository shrinks to a third (the rest decompress, ~5 µs)."""

    small: bytes | None  # a body under GZIP_MIN_BYTES, as is
    gzipped: bytes | None  # otherwise the body, compressed
    etag: str  # strong ETag of the body; each representation adds a suffix

    @classmethod
    def of(cls, body: bytes) -> Page:
        etag = hashlib.sha256(body).hexdigest()[:32]
        if len(body) < GZIP_MIN_BYTES:
            return cls(body, None, etag)
        return cls(None, gzip.compress(body, compresslevel=6, mtime=0), etag)

    @property
    def body(self) -> bytes:
        if self.small is not None:
            return self.small
        assert self.gzipped is not None
        return zlib.decompress(self.gzipped, wbits=31)  # wbits=31: a gzip member


class Renderer:
    """Renders pages on first use after a change; `renders` counts them (a regression guard)."""

    def __init__(self) -> None:
        self.renders = 0

    def _cached(self, pages: dict[str, Any], kind: str, render: Callable[[], bytes]) -> Page:
        page = pages.get(kind)
        if page is None:
            # Two threads may render the same page at once; both results are identical.
            self.renders += 1
            page = pages[kind] = Page.of(render())
        assert isinstance(page, Page)
        return page

    def root(self, listing: Listing, json: bool) -> Page:
        if json:
            return self._cached(
                listing.pages, "json", lambda: simple.render_root_json(listing.names)
            )
        return self._cached(listing.pages, "html", lambda: simple.render_root_html(listing.names))

    def project(self, project: Project, json: bool) -> Page:
        if json:
            return self._cached(project.pages, "json", lambda: simple.render_project_json(project))
        return self._cached(project.pages, "html", lambda: simple.render_project_html(project))
