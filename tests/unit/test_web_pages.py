"""The web pages as values: every uploaded string escaped, buttons only for write sessions."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from pywharf.dists import NormalizedName
from pywharf.index import FileRecord
from pywharf.search import SearchCorpus
from pywharf.web_pages import ConfirmView
from pywharf.web_pages import HomeView
from pywharf.web_pages import ProjectView
from pywharf.web_pages import render_confirm
from pywharf.web_pages import render_home
from pywharf.web_pages import render_project

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</pre><script>alert(1)</script>",
    "javascript:alert(1)",
    "&lt;script&gt;",  # already an entity: shown as typed, not decoded into markup
]
NOW = 1_800_000_000.0


def _record(filename: str, version: str, **fields: object) -> FileRecord:
    values: dict[str, object] = {
        "filename": filename, "project": NormalizedName("demo"), "version": version,
        "sha256": "ab" * 32, "size": 1536, "upload_time": NOW - 3 * 86_400,
    }  # fmt: skip
    values.update(fields)
    return FileRecord(**values)  # type: ignore[arg-type]


class _Tags(HTMLParser):
    """Every tag and attribute the page really has (what a browser would build)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(page: bytes) -> _Tags:
    parser = _Tags()
    parser.feed(page.decode())
    return parser


def _project(payload: str, can_write: bool = False) -> bytes:
    files = [
        _record("demo-1.0-py3-none-any.whl", "1.0", requires_python=payload, yanked=payload),
        _record("demo-2.0.tar.gz", "2.0"),
    ]
    view = ProjectView("local", "demo", files, payload, payload, "http://h/simple/", can_write, NOW)
    return render_project(view)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_uploaded_strings_are_escaped_in_the_project_page(payload: str) -> None:
    parsed = _parsed(_project(payload, can_write=True))
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    # The text reads exactly as uploaded, in the summary, description, yank reason, Requires-Python.
    assert "".join(parsed.text).count(payload) >= 4


@pytest.mark.parametrize("payload", PAYLOADS)
def test_search_query_and_summaries_are_escaped(payload: str) -> None:
    corpus = SearchCorpus([("demo", payload)])
    view = HomeView("local", payload, corpus.search(payload), 1, corpus.summaries)
    parsed = _parsed(render_home(view))
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not [name for name, _ in parsed.attributes if name.startswith("on")]
    assert ("value", payload) in parsed.attributes  # the search box keeps the query


def test_the_project_page_shows_versions_newest_first_with_everything() -> None:
    page = _project("A summary").decode()
    assert page.index('id="v-2.0"') < page.index('id="v-1.0"')
    assert '1.0 <span class="yanked">(yanked)</span>' in page
    assert "1.5 KiB" in page and "3 days ago" in page and "UTC" in page
    assert 'datetime="2027-01-12T' in page  # NOW - 3 days, in UTC
    assert "ab" * 32 in page  # the whole hash, selectable
    assert "pip install --index-url http://h/simple/ demo" in page
    assert "uv pip install --index-url http://h/simple/ demo" in page
    assert "poetry add --source local demo" in page
    assert re.search(r"<h1>demo</h1>", page)


def test_read_views_have_no_buttons_write_views_do() -> None:
    read, write = _project("x").decode(), _project("x", can_write=True).decode()
    for action in ("yank", "unyank", "delete"):
        assert f"/{action}/" not in read
    assert "/project/demo/unyank/demo-1.0-py3-none-any.whl/" in write  # it is yanked
    assert "/project/demo/yank/demo-2.0.tar.gz/" in write
    assert "/project/demo/delete/demo-2.0.tar.gz/" in write
    assert "<form" not in write  # a change starts on its own confirmation page


def test_the_confirmation_carries_the_token_and_asks() -> None:
    page = render_confirm(ConfirmView("local", "demo", "yank", '"><x>.whl', "TOKEN")).decode()
    assert 'name="csrf" value="TOKEN"' in page and 'name="confirm" value="yes"' in page
    assert 'method="post"' in page and "<x>" not in page
    assert '<label for="reason">' in page


def test_pages_are_self_contained() -> None:
    for page in (_project("x", can_write=True), render_home(HomeView(
            "local", "", SearchCorpus([("a", "")]).search(""), 1))):  # fmt: skip
        text = page.decode()
        assert "<script" not in text
        assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing from elsewhere
        assert '<meta name="viewport"' in text and '<html lang="en">' in text
