"""Pre-rendered PEP 503 pages, so nginx can serve a static copy of a repository."""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from benchmarks.corpus import CorpusFile

__all__ = ["link_file", "render_project", "render_root", "write_static_tree"]

_HEAD = '<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0">'


def render_root(projects: Iterable[str]) -> str:
    """PEP 503 root page: one anchor per (already normalized) project."""
    anchors = "".join(f'<a href="{html.escape(p)}/">{html.escape(p)}</a>\n' for p in projects)
    return f"{_HEAD}<title>Simple index</title></head>\n<body>\n{anchors}</body></html>\n"


def render_project(project: str, files: Iterable[CorpusFile]) -> str:
    """PEP 503 project page: relative file links with a `#sha256=` fragment."""
    anchors = "".join(
        f'<a href="{html.escape(f.filename)}#sha256={f.sha256}">{html.escape(f.filename)}</a>\n'
        for f in files
    )
    title = html.escape(project)
    return f"{_HEAD}<title>Links for {title}</title></head>\n<body>\n{anchors}</body></html>\n"


def link_file(source: Path, target: Path) -> None:
    """Hard-link (cheap, same bytes), or copy when the link is refused."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except OSError:
        shutil.copyfile(source, target)


def write_static_tree(simple: Path, files: Iterable[CorpusFile]) -> None:
    """`simple/index.html` and `simple/<project>/index.html` for the files given."""
    by_project: dict[str, list[CorpusFile]] = {}
    for f in files:
        by_project.setdefault(f.project, []).append(f)
    simple.mkdir(parents=True, exist_ok=True)
    for project, project_files in by_project.items():
        (simple / project).mkdir(exist_ok=True)
        (simple / project / "index.html").write_text(render_project(project, project_files))
    (simple / "index.html").write_text(render_root(sorted(by_project)))
