"""Render the simple repository API (PEP 503 HTML, PEP 691 JSON) from the index model.

Pure: values in, bytes out. Both forms come from the same `Project`, so they never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from datetime import timezone
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion
from packaging.version import Version

from pywharf.index import FileRecord
from pywharf.index import Project

__all__ = [
    "API_VERSION",
    "render_project_html",
    "render_project_json",
    "render_root_html",
    "render_root_json",
    "upload_time_text",
]

# PEP 700 (1.1): `versions`, `size` and `upload-time` are served, so claim 1.1; HTML and JSON
# carry the same number (PEP 629).
API_VERSION = "1.1"
_HEAD = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" content="{version}">\n'
    "<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n"
)
_TAIL = "</body>\n</html>\n"


def upload_time_text(timestamp: float) -> str:
    """PEP 700: UTC, `yyyy-mm-ddThh:mm:ss.ffffffZ`; never `isoformat()` + Z (that gives +00:00Z)."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _head(title: str) -> str:
    return _HEAD.format(version=API_VERSION, title=escape(title))


def render_root_html(names: Iterable[str]) -> bytes:
    links = "".join(f'<a href="{quote(name)}/">{escape(name)}</a><br>\n' for name in names)
    return (_head("Simple index") + links + _TAIL).encode()


def render_root_json(names: Iterable[str]) -> bytes:
    document = {"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in names]}
    return json.dumps(document, separators=(",", ":")).encode()


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
    return attributes


def render_project_html(project: Project) -> bytes:
    links = "".join(
        f'<a href="{quote(r.filename)}#sha256={r.sha256}"{_file_attributes(r)}>'
        f"{escape(r.filename)}</a><br>\n"
        for r in project.files
    )
    return (_head(f"Links for {project.name}") + links + _TAIL).encode()


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
    return entry


def _version_order(text: str) -> tuple[int, Any]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)  # legacy strings sort first


def render_project_json(project: Project) -> bytes:
    versions = sorted({r.version for r in project.files}, key=_version_order)
    document = {
        "meta": {"api-version": API_VERSION},
        "name": project.name,
        "versions": versions,
        "files": [_file_json(r) for r in project.files],
    }
    return json.dumps(document, separators=(",", ":")).encode()
