"""The browser pages, rendered from values: the project list with search, a project, a
confirmation. No JavaScript and no external asset; every uploaded string goes through `escape`.

>>> result = SearchResult([], [], [], ["x-b"])
>>> page = render_home(HomeView("local", "<b>", result, 1, {"x-b": "<b>bold</b>"})).decode()
>>> "<b>" in page, "&lt;b&gt;bold&lt;/b&gt;" in page
(False, True)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from html import escape
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion
from packaging.version import Version

from pywharf.index import FileRecord
from pywharf.search import SearchResult

__all__ = [
    "ACTIONS",
    "ConfirmView",
    "HomeView",
    "ProjectView",
    "render_confirm",
    "render_home",
    "render_project",
]

# Search results shown at most: the counts stay exact, the list asks for a narrower query.
MAX_RESULTS = 200
# The web pages' state-changing actions and the button each gets.
ACTIONS = {"yank": "Yank", "unyank": "Un-yank", "delete": "Delete"}

# Contrast: every text colour on its background is at least 4.5:1 (WCAG 2.1 AA).
_CSS = """
:root { color-scheme: light; --fg: #1a1a1a; --muted: #555; --line: #d0d4da; --accent: #0b57d0; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: #fff; margin: 0; }
header { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: baseline;
         padding: .75rem 1rem; background: #f4f5f7; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; margin-right: auto; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
a { color: var(--accent); }
a:focus, button:focus, input:focus, pre:focus, code:focus { outline: 3px solid #f9a825;
                                                         outline-offset: 2px; }
h1 { font-size: 1.6rem; margin: .5rem 0; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin: 1.5rem 0 .5rem; }
.muted { color: var(--muted); }
form.search { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; }
form.search label { flex-basis: 100%; }
input[type=search], input[type=text] { font: inherit; padding: .45rem; min-width: 0;
                                       flex: 1 1 14rem; border: 1px solid #767676; }
button, .button { font: inherit; padding: .4rem .9rem; border: 1px solid var(--accent);
                  background: var(--accent); color: #fff; border-radius: 4px;
                  text-decoration: none; display: inline-block; cursor: pointer; }
.button.secondary { background: #fff; color: var(--accent); }
.button.danger, button.danger { background: #b3261e; border-color: #b3261e; }
ol.results { padding-left: 1.25rem; }
ol.results li { margin: .4rem 0; overflow-wrap: anywhere; }
.rank { font-size: .8rem; color: var(--muted); }
pre { background: #f4f5f7; padding: .6rem; overflow-x: auto; margin: .25rem 0 .75rem; }
pre.copy { user-select: all; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.description { white-space: pre-wrap; overflow-wrap: anywhere; font: .95rem/1.5 ui-monospace,
                  monospace; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
td { overflow-wrap: anywhere; }
code.hash { user-select: all; font-size: .8rem; word-break: break-all; }
.yanked { color: #8a1c13; font-weight: 600; }
.badge { border: 1px solid #8a1c13; border-radius: 3px; padding: 0 .3rem; font-size: .8rem; }
.actions a { margin: 0 .3rem .3rem 0; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
@media (max-width: 640px) {
  thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border: 1px solid var(--line); margin-bottom: .75rem; padding: .25rem .5rem; }
  td { border: 0; padding: .2rem 0; }
  td::before { content: attr(data-label) ": "; font-weight: 600; }
}
"""


def _shell(title: str, repository: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · pywharf</title>\n<style>{_CSS}</style></head>\n<body>\n"
        f'<header><a class="brand" href="/">pywharf</a>'
        f"<span>repository <strong>{escape(repository)}</strong></span>"
        f'<a href="/logout/">Log out</a></header>\n<main id="main">\n{body}\n</main>\n'
        "</body></html>\n"
    ).encode()


def _project_href(name: str) -> str:
    return f"/project/{quote(name)}/"


# --- the project list and search ----------------------------------------------------------------


@dataclass(frozen=True)
class HomeView:
    repository: str
    query: str
    result: SearchResult
    projects: int  # in the repository
    summaries: dict[str, str] | None = None  # name -> summary, for the listed projects


_RANKS = ("exact", "prefix", "substring", "summary")
_RANK_WORDS = {"exact": "exact name", "prefix": "name prefix", "substring": "in the name",
               "summary": "in the summary"}  # fmt: skip


def _counts(view: HomeView) -> str:
    result = view.result
    if not view.query.strip():
        return f"<p>{view.projects} projects.</p>"
    parts = [
        f"{len(getattr(result, rank))} {_RANK_WORDS[rank]}"
        for rank in _RANKS
        if getattr(result, rank)
    ]
    detail = f" ({', '.join(parts)})" if parts else ""
    return (
        f'<p role="status">{result.total} of {view.projects} projects match '
        f"<q>{escape(view.query)}</q>{detail}.</p>"
    )


def render_home(view: HomeView) -> bytes:
    rows: list[str] = []
    summaries = view.summaries or {}
    for rank in _RANKS:
        for name in getattr(view.result, rank):
            if len(rows) == MAX_RESULTS:
                break
            summary = summaries.get(name, "")
            shown = f' <span class="muted">{escape(summary)}</span>' if summary else ""
            label = f' <span class="rank">{_RANK_WORDS[rank]}</span>' if view.query else ""
            rows.append(
                f'<li><a href="{escape(_project_href(name))}">{escape(name)}</a>{shown}{label}</li>'
            )
    more = (
        f'<p class="muted">Showing the first {MAX_RESULTS}; narrow the search to see the rest.</p>'
        if view.result.total > MAX_RESULTS
        else ""
    )
    listing = f'<ol class="results">{"".join(rows)}</ol>' if rows else "<p>No project found.</p>"
    body = (
        "<h1>Projects</h1>\n"
        '<form class="search" role="search" method="get" action="/">'
        '<label for="q">Search names and summaries</label>'
        f'<input id="q" name="q" type="search" value="{escape(view.query)}" '
        'autocomplete="off"><button type="submit">Search</button></form>\n'
        f"{_counts(view)}\n{listing}\n{more}"
    )
    return _shell("Projects", view.repository, body)


# --- a project ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectView:
    repository: str
    name: str
    files: Sequence[FileRecord]
    summary: str
    description: str
    index_url: str  # the /simple/ URL to install from, with the repository as its user
    can_write: bool
    now: float
    # Memo of the rows, kept on the immutable Project (which dies with any change): they are
    # 95 % of the page's cost (3.5 ms for 500 files); only the relative times are per request.
    cache: dict[str, Any] = field(default_factory=dict)


def _size(size: int) -> str:
    """A human size: `12 B`, `1.5 KiB`, `3.0 GiB`."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _ago(seconds: float) -> str:
    """How long ago, in the largest whole unit: `5 minutes ago`, `3 days ago`."""
    seconds = max(0, int(seconds))
    for unit, length in (("year", 31_536_000), ("month", 2_592_000), ("day", 86_400),
                         ("hour", 3_600), ("minute", 60)):  # fmt: skip
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def _version_key(version: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _install_lines(view: ProjectView) -> str:
    url, name = view.index_url, view.name
    lines = {
        "pip": f"pip install --index-url {url} {name}",
        "uv": f"uv pip install --index-url {url} {name}",
        "poetry": (
            f"poetry source add --priority=explicit {view.repository} {url}\n"
            f'poetry config http-basic.{view.repository} {view.repository} "$PYWHARF_SECRET"\n'
            f"poetry add --source {view.repository} {name}"
        ),
    }
    blocks = "".join(
        f'<h3 id="install-{tool}">{tool}</h3>'
        f'<pre class="copy" tabindex="0" aria-labelledby="install-{tool}"><code>'
        f"{escape(line)}</code></pre>"
        for tool, line in lines.items()
    )
    return (
        '<section aria-labelledby="install"><h2 id="install">Install</h2>'
        '<p class="muted">Set <code>PYWHARF_SECRET</code> to a read secret of '
        f"<strong>{escape(view.repository)}</strong> first.</p>{blocks}</section>"
    )


def _row(view: ProjectView, record: FileRecord, project_href: str) -> tuple[str, str]:
    """A file's table row, split where its relative upload time goes."""
    filename = escape(record.filename)
    uploaded = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.upload_time))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.upload_time))
    yanked = ""
    if record.yanked is not None:
        reason = f": {escape(record.yanked)}" if record.yanked else ""
        yanked = f'<br><span class="yanked"><span class="badge">yanked</span>{reason}</span>'
    actions = ""
    if view.can_write:
        target = quote(record.filename)
        links = [
            f'<a class="button secondary" href="{project_href}{action}/{escape(target)}/">'
            f'{label}<span class="sr-only"> {filename}</span></a>'
            for action, label in ACTIONS.items()
            if (action == "unyank") == (record.yanked is not None) or action == "delete"
        ]
        actions = f'<td class="actions" data-label="Actions">{"".join(links)}</td>'
    download = f"/simple/{quote(view.name)}/{quote(record.filename)}"
    before = (
        f'<tr><td data-label="File"><a href="{escape(download)}">{filename}</a>{yanked}</td>'
        f'<td data-label="Size">{_size(record.size)}</td>'
        f'<td data-label="Uploaded"><time datetime="{stamp}">{uploaded}</time> '
        '<span class="muted">('
    )
    after = (
        ")</span></td>"
        f'<td data-label="Requires-Python">{escape(record.requires_python or "any")}</td>'
        f'<td data-label="SHA-256"><code class="hash" tabindex="0">{record.sha256}</code></td>'
        f"{actions}</tr>"
    )
    return before, after


def _version_pieces(view: ProjectView) -> tuple[list[str], list[float]]:
    """The versions' HTML as pieces to interleave with each file's relative upload time."""
    by_version: dict[str, list[FileRecord]] = {}
    for record in view.files:
        by_version.setdefault(record.version, []).append(record)
    columns = ["File", "Size", "Uploaded", "Requires-Python", "SHA-256"]
    columns += ["Actions"] if view.can_write else []
    head = "".join(f'<th scope="col">{column}</th>' for column in columns)
    head = f"<thead><tr>{head}</tr></thead>"
    project_href = escape(_project_href(view.name))
    count = f'<p class="muted">{len(by_version)} versions, {len(view.files)} files.</p>'
    pieces, times = [f'<h2 id="versions">Versions</h2>{count}'], []
    for version in sorted(by_version, key=_version_key, reverse=True):
        records = by_version[version]
        shown = escape(version)
        state = (
            ' <span class="yanked">(yanked)</span>'
            if all(r.yanked is not None for r in records)
            else ""
        )
        pieces[-1] += (
            f'<section aria-labelledby="v-{shown}"><h3 id="v-{shown}">{shown}{state}</h3>'
            f'<table><caption class="sr-only">Files of version {shown}</caption>{head}<tbody>'
        )
        for record in records:
            before, after = _row(view, record, project_href)
            pieces[-1] += before
            pieces.append(after)
            times.append(record.upload_time)
        pieces[-1] += "</tbody></table></section>"
    return pieces, times


def _versions(view: ProjectView) -> str:
    key = f"web-versions-{view.can_write}"
    cached = view.cache.get(key)
    if cached is None:
        cached = view.cache[key] = _version_pieces(view)  # two threads may both: identical
    pieces, times = cached
    now = view.now
    out = [pieces[0]]
    for piece, uploaded in zip(pieces[1:], times):
        out.append(_ago(now - uploaded))
        out.append(piece)
    return "".join(out)


def render_project(view: ProjectView) -> bytes:
    summary = f'<p class="summary">{escape(view.summary)}</p>' if view.summary else ""
    description = (
        '<section aria-labelledby="description"><h2 id="description">Description</h2>'
        f'<pre class="description" tabindex="0">{escape(view.description)}</pre></section>'
        if view.description.strip()
        else ""
    )
    body = (
        f'<p><a href="/">All projects</a></p><h1>{escape(view.name)}</h1>{summary}'
        f"{_versions(view)}{_install_lines(view)}{description}"
    )
    return _shell(view.name, view.repository, body)


# --- confirming a change --------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfirmView:
    repository: str
    project: str
    action: str  # a key of ACTIONS
    filename: str
    csrf: str


def render_confirm(view: ConfirmView) -> bytes:
    filename, label = escape(view.filename), ACTIONS[view.action]
    project_href = escape(_project_href(view.project))
    target = f"{project_href}{view.action}/{escape(quote(view.filename))}/"
    reason = (
        '<p><label for="reason">Reason (shown to installers)</label><br>'
        '<input id="reason" name="reason" type="text" maxlength="500"></p>'
        if view.action == "yank"
        else ""
    )
    warning = (
        "<p><strong>Deleting cannot be undone</strong>, and this filename can never hold other "
        "bytes again.</p>"
        if view.action == "delete"
        else ""
    )
    danger = " danger" if view.action == "delete" else ""
    body = (
        f'<p><a href="{project_href}">Back to {escape(view.project)}</a></p>'
        f"<h1>{label} {filename}?</h1>{warning}"
        f'<form method="post" action="{target}">'
        f'<input type="hidden" name="csrf" value="{escape(view.csrf)}">'
        f'<input type="hidden" name="confirm" value="yes">{reason}'
        f'<button type="submit" class="{danger.strip()}">{label} {filename}</button> '
        f'<a class="button secondary" href="{project_href}">Cancel</a></form>'
    )
    return _shell(f"{label} {view.filename}", view.repository, body)
