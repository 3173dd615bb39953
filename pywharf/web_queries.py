"""What the web pages and /metrics ask of a repository: search, descriptions, index sizes.

`Repository` inherits these; they are kept apart from the package API's questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import Parser
from typing import Any

from packaging.utils import NormalizedName

from pywharf.backends import Backend
from pywharf.backends import LocalFile
from pywharf.errors import PywharfError
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Project
from pywharf.search import SearchCorpus

__all__ = ["Description", "IndexStats", "WebQueries"]

# A METADATA file bigger than this is not read for the web page's description.
MAX_DESCRIPTION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class IndexStats:
    """The size of the index, for /metrics."""

    projects: int
    files: int
    bytes: int


@dataclass(frozen=True)
class Description:
    """What a project says of itself: from the upload form, or its newest wheel's METADATA."""

    summary: str
    text: str  # the long description, shown as plain text; never HTML


class WebQueries:
    """Values derived from the whole index, recomputed once per index change."""

    index: Index
    backend: Backend
    _derived: dict[str, tuple[int, Any]]

    def _cached(self, kind: str, compute: Any) -> Any:
        """A value derived from the whole index, recomputed once per index change."""
        generation = self.index.generation
        cached = self._derived.get(kind)
        if cached is None or cached[0] != generation:
            cached = self._derived[kind] = (generation, compute())
        return cached[1]

    def project(self, name: NormalizedName) -> Project | None:
        """The project's files, for its web page."""
        return self.index.project(name)

    def search(self) -> SearchCorpus:
        """Every project's name and summary (its newest upload's), ready to search."""

        def build() -> SearchCorpus:
            pairs = []
            for name in self.index.listing.names:
                project = self.index.project(name)
                newest = max(project.files, key=lambda r: r.upload_time) if project else None
                pairs.append((name, (newest.summary if newest else None) or ""))
            return SearchCorpus(pairs)

        corpus: SearchCorpus = self._cached("search", build)
        return corpus

    def stats(self) -> IndexStats:
        def count() -> IndexStats:
            records = self.index.records()
            return IndexStats(len(self.index.listing.names), len(records),
                              sum(r.size for r in records))  # fmt: skip

        stats: IndexStats = self._cached("stats", count)
        return stats

    def description(self, project: Project) -> Description:
        """The summary and description of the newest file, read once per project value.

        The description lives in a wheel's METADATA (kept for PEP 658), not in the index: a
        README per file would multiply the index's memory.
        """
        cached = project.pages.get("description")
        if isinstance(cached, Description):
            return cached
        newest = max(project.files, key=lambda r: (r.upload_time, r.filename))
        summary, text = newest.summary or "", ""
        wheels = [r for r in project.files if r.metadata_sha256 and r.version == newest.version]
        if wheels:
            metadata = self._core_metadata(wheels[0])
            if metadata is not None:
                summary = summary or str(metadata.get("Summary", ""))
                text = str(metadata.get_payload() or metadata.get("Description", ""))
        description = project.pages["description"] = Description(summary, text)
        return description

    def _core_metadata(self, record: FileRecord) -> Any:
        try:
            target = self.backend.open_metadata(record)
            if not isinstance(target, LocalFile) or target.size > MAX_DESCRIPTION_BYTES:
                return None  # a redirect to GitHub: not fetched for a page
            with open(target.path, "rb") as file:
                raw = file.read(MAX_DESCRIPTION_BYTES)
        except (PywharfError, OSError):
            return None
        return Parser().parsestr(raw.decode("utf-8", "replace"))  # core metadata is UTF-8
