"""Render the simple repository API (PEP 503 HTML, PEP 691 JSON) from the index model.

Pure: values in, bytes out. Both forms come from the same `Project`, so they never disagree.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from collections.abc import Sequence
from datetime import datetime
from datetime import timezone
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion
from packaging.version import Version

from pywharf.index import QUARANTINED
from pywharf.index import FileRecord
from pywharf.index import Project

__all__ = [
    "API_VERSION",
    "BASE_MARK",
    "render_project_html",
    "render_project_json",
    "render_root_html",
    "provenance_url",
    "render_root_json",
    "upload_time_text",
]

# The highest version whose features are served: 1.1 (PEP 700: `versions`, `size`,
# `upload-time`), 1.2 (PEP 708: tracks, alternate locations), 1.3 (PEP 740: provenance) and 1.4
# (PEP 792: project status). HTML and JSON carry the same number (PEP 629).
API_VERSION = "1.4"
# PEP 740 wants the provenance URL fully qualified, so it depends on the request's host. Pages
# are rendered once with this mark where the base URL goes, and `pages.Page.for_base` puts the
# host's in. Random per process, so no uploaded string can contain it.
BASE_MARK = f"pywharf-base-{secrets.token_hex(16)}"
_HEAD = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" content="{version}">\n'
    "{meta}<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
)
_TAIL = "</body>\n</html>\n"


def upload_time_text(timestamp: float) -> str:
    """PEP 700: UTC, `yyyy-mm-ddThh:mm:ss.ffffffZ`; never `isoformat()` + Z (that gives +00:00Z)."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _head(title: str, meta: Sequence[tuple[str, str]] = ()) -> str:
    tags = "".join(f'<meta name="pypi:{name}" content="{escape(value)}">\n' for name, value in meta)
    return _HEAD.format(version=API_VERSION, meta=tags, title=escape(title))


def render_root_html(names: Iterable[str]) -> bytes:
    links = "".join(f'<a href="{quote(name)}/">{escape(name)}</a><br>\n' for name in names)
    return (_head("Simple index") + links + _TAIL).encode()


def render_root_json(names: Iterable[str]) -> bytes:
    document = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    return json.dumps(document, separators=(",", ":")).encode()


def provenance_url(record: FileRecord, base: str) -> str:
    """PEP 740: the file's URL plus `.provenance`, fully qualified (`base` is scheme://host)."""
    return f"{base}/simple/{quote(record.project)}/{quote(record.filename)}.provenance"


def _file_attributes(record: FileRecord) -> str:
    attributes = ""
    if record.requires_python:
        # The spec requires < and > as entities; pip's HTMLParser decodes them.
        attributes += f' data-requires-python="{escape(record.requires_python)}"'
    if record.yanked is not None:
        # PEP 592: always a value; a bare attribute parses to None and pip ignores the yank.
        attributes += f' data-yanked="{escape(record.yanked)}"'
    if record.metadata_sha256:
        # PEP 714 name, plus PEP 658's for pip 22.3 to 23.1.
        value = f"sha256={record.metadata_sha256}"
        attributes += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
    if record.provenance is not None:
        attributes += f' data-provenance="{escape(provenance_url(record, BASE_MARK))}"'
    return attributes


def _offered(project: Project) -> tuple[FileRecord, ...]:
    """PEP 792: a quarantined project offers no files."""
    return () if project.state == QUARANTINED else project.files


def render_project_html(
    project: Project, tracks: Sequence[str] = (), alternate_locations: Sequence[str] = ()
) -> bytes:
    """PEP 503 links; meta tags for PEP 708 (one per URL) and PEP 792."""
    meta = [("tracks", url) for url in tracks]
    meta += [("alternate-locations", url) for url in alternate_locations]
    meta.append(("project-status", project.state))
    if project.status and project.status.reason:
        meta.append(("project-status-reason", project.status.reason))
    links = "".join(
        f'<a href="{quote(r.filename)}#sha256={r.sha256}"{_file_attributes(r)}>'
        f"{escape(r.filename)}</a><br>\n"
        for r in _offered(project)
    )
    return (_head(f"Links for {project.name}", meta) + links + _TAIL).encode()


def _file_json(record: FileRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": record.filename,
        "url": quote(record.filename),
        "hashes": {"sha256": record.sha256},
    }
    # An upstream that served only HTML told us neither (pywharf.upstream_page): say nothing
    # rather than something false.
    if record.size >= 0:
        entry["size"] = record.size
    if record.upload_time > 0:
        entry["upload-time"] = upload_time_text(record.upload_time)
    if record.requires_python:
        entry["requires-python"] = record.requires_python
    if record.yanked is not None:
        entry["yanked"] = record.yanked or True  # PEP 691: a reason string, or true
    if record.metadata_sha256:
        entry["core-metadata"] = {"sha256": record.metadata_sha256}  # never `dist-info-metadata`
    if record.provenance is not None:
        entry["provenance"] = provenance_url(record, BASE_MARK)
    return entry


def _version_order(text: str) -> tuple[int, Any]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)  # legacy strings sort first


def render_project_json(
    project: Project, tracks: Sequence[str] = (), alternate_locations: Sequence[str] = ()
) -> bytes:
    """PEP 691 and 700; PEP 708 `meta.tracks` and `alternate-locations`; PEP 792 status."""
    files = _offered(project)
    meta: dict[str, Any] = {"api-version": API_VERSION}
    if tracks:
        meta["tracks"] = list(tracks)
    status: dict[str, Any] = {"status": project.state}
    if project.status and project.status.reason:
        status["reason"] = project.status.reason
    document: dict[str, Any] = {
        "meta": meta,
        "name": project.name,
        "versions": sorted({r.version for r in files}, key=_version_order),
        "files": [_file_json(r) for r in files],
        "project-status": status,
    }
    if alternate_locations:
        document["alternate-locations"] = list(alternate_locations)
    return json.dumps(document, separators=(",", ":")).encode()
