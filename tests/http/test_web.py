"""The web pages over a real socket: who sees what, and every guard on a change.

A change (yank, unyank, delete) needs a session logged in with a write secret, the
confirmation page's token (bound to that session), a same-origin post and `confirm=yes`;
each test below takes one of them away. Clients keep their simple pages, byte for byte.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from factory import make_wheel
from support import JSON_TYPE
from support import PIP
from support import READ
from support import WRITE
from support_site import CHROME
from support_site import CLIENTS
from support_site import Reply
from support_site import Site
from support_site import running_site
from support_upload import upload

SUMMARY, DESCRIPTION = "Demo things", "Line one\nLine <two>"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with running_site(tmp_path / "root") as running:
        for version in ("1.0", "2.0"):
            wheel = make_wheel(
                tmp_path, "demo-pkg", version, ">=3.8", summary=SUMMARY, description=DESCRIPTION
            )
            status, _, body = upload(running.live, wheel, summary=SUMMARY)
            assert status == 200, body
        status, _, body = upload(running.live, make_wheel(tmp_path, "other", "1.0"))
        assert status == 200, body
        yield running


WHEEL = "demo_pkg-1.0-py3-none-any.whl"
YANK = f"/project/demo-pkg/yank/{WHEEL}/"


def _browse(site: Site, path: str, session: str | None, **headers: str) -> Reply:
    sent = {"Accept": CHROME, **headers}
    if session:
        sent["Cookie"] = f"pywharf_session={session}"
    return site.fetch("GET", path, sent)


def _token(page: Reply) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def _post(site: Site, path: str, session: str, fields: dict[str, str], **headers: str) -> Reply:
    sent = {"Accept": CHROME, "Cookie": f"pywharf_session={session}", "Origin": site.origin,
            "Content-Type": "application/x-www-form-urlencoded", **headers}  # fmt: skip
    return site.fetch("POST", path, sent, urlencode(fields).encode())


def _yanked(site: Site) -> bool:
    """Whether the wheel is yanked, as pip sees it (PEP 691 JSON)."""
    headers = {"Authorization": _basic(), "Accept": JSON_TYPE}
    files = json.loads(site.fetch("GET", "/simple/demo-pkg/", headers).body)["files"]
    (entry,) = [f for f in files if f["filename"] == WHEEL]
    return bool(entry.get("yanked"))


def _basic(secret: str = READ) -> str:
    return "Basic " + base64.b64encode(f"local:{secret}".encode()).decode()


@pytest.mark.parametrize("client", list(CLIENTS))
def test_clients_get_the_short_text_at_root(site: Site, client: str) -> None:
    accept = CLIENTS[client]
    reply = site.fetch("GET", "/", {"Accept": accept} if accept else {})
    assert reply.status == 200
    assert reply.text.startswith("pywharf: a private package index")


def test_a_browser_without_a_session_logs_in_first(site: Site) -> None:
    reply = _browse(site, "/", None)
    assert reply.status == 303 and reply.header("location") == "/login/?next=/"


def test_the_project_list_and_search(site: Site) -> None:
    session = site.session()
    listing = _browse(site, "/", session)
    assert listing.status == 200 and "2 projects." in listing.text
    assert "no-store" in (listing.header("cache-control") or "")
    found = _browse(site, "/?q=demo", session)
    assert "1 of 2 projects match <q>demo</q> (1 name prefix)" in found.text
    assert 'href="/project/demo-pkg/"' in found.text and "/project/other/" not in found.text
    by_summary = _browse(site, "/?q=things", session)
    assert "1 in the summary" in by_summary.text
    assert "Demo things" in by_summary.text


def test_basic_auth_reads_the_pages_too(site: Site) -> None:
    reply = _browse(site, "/project/demo-pkg/", None, Authorization=_basic())
    assert reply.status == 200 and "/yank/" not in reply.text


def test_the_project_page(site: Site) -> None:
    page = _browse(site, "/project/demo-pkg/", site.session())
    assert page.status == 200
    text = page.text
    assert "<h1>demo-pkg</h1>" in text and "Demo things" in text
    assert "Line one\nLine &lt;two&gt;" in text  # the description, as plain text
    assert text.index('id="v-2.0"') < text.index('id="v-1.0"')
    assert "&gt;=3.8" in text and " UTC</time>" in text and "just now" in text
    host = f"{site.live.host}:{site.live.port}"
    index = f"http://local:$PYWHARF_SECRET@{host}/simple/"
    assert f"pip install --index-url {index} demo-pkg" in text
    assert f"uv pip install --index-url {index} demo-pkg" in text
    assert "poetry add --source local demo-pkg" in text
    assert "/yank/" not in text and "/delete/" not in text  # a read session: no buttons


def test_project_names_are_normalized_with_one_redirect(site: Site) -> None:
    reply = _browse(site, "/project/Demo_Pkg/", site.session())
    assert reply.status == 301 and reply.header("location") == "/project/demo-pkg/"
    assert _browse(site, "/project/nope/", site.session()).status == 404


def test_a_write_session_yanks_after_confirming(site: Site) -> None:
    session = site.session(WRITE)
    page = _browse(site, "/project/demo-pkg/", session)
    assert f'href="{YANK}"' in page.text
    confirm = _browse(site, YANK, session)
    assert confirm.status == 200 and f"Yank {WHEEL}?" in confirm.text
    assert not _yanked(site)  # asking is not doing
    done = _post(site, YANK, session, {"csrf": _token(confirm), "confirm": "yes", "reason": "bad"})
    assert done.status == 303 and done.header("location") == "/project/demo-pkg/"
    assert _yanked(site)
    page = _browse(site, "/project/demo-pkg/", session)
    assert "yanked</span>: bad" in page.text
    assert f'href="/project/demo-pkg/unyank/{WHEEL}/"' in page.text


def test_a_write_session_deletes_after_confirming(site: Site) -> None:
    session = site.session(WRITE)
    path = f"/project/demo-pkg/delete/{WHEEL}/"
    confirm = _browse(site, path, session)
    assert "cannot be undone" in confirm.text
    assert _post(site, path, session, {"csrf": _token(confirm), "confirm": "yes"}).status == 303
    assert WHEEL not in site.fetch("GET", "/simple/demo-pkg/", {"Authorization": _basic()}).text


REFUSALS = {
    "no token": ({"confirm": "yes"}, {}, 403),
    "a forged token": ({"csrf": "csrf.x.9999999999.sig", "confirm": "yes"}, {}, 403),
    "another origin": ({"confirm": "yes"}, {"Origin": "http://evil.example"}, 403),
    "a cross-site fetch": ({"confirm": "yes"}, {"Sec-Fetch-Site": "cross-site"}, 403),
    "no confirmation": ({}, {}, 400),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_change_without_every_guard_is_refused(site: Site, case: str) -> None:
    session = site.session(WRITE)
    fields, headers, status = REFUSALS[case]
    if "csrf" not in fields and case != "no token":
        fields = {**fields, "csrf": _token(_browse(site, YANK, session))}
    reply = _post(site, YANK, session, fields, **headers)
    assert reply.status == status, reply.text
    assert not _yanked(site)


def test_a_token_of_another_session_is_refused(site: Site) -> None:
    mine, theirs = site.session(WRITE), site.session(WRITE)
    token = _token(_browse(site, YANK, theirs))
    reply = _post(site, YANK, mine, {"csrf": token, "confirm": "yes"})
    assert reply.status == 403
    assert not _yanked(site)


def test_read_sessions_and_basic_auth_cannot_change(site: Site) -> None:
    read = site.session(READ)
    assert _browse(site, YANK, read).status == 403
    token = site.keys.csrf_token(session="whatever")
    assert _post(site, YANK, read, {"csrf": token, "confirm": "yes"}).status == 403
    basic = site.fetch("GET", YANK, {"Accept": CHROME, "Authorization": _basic(WRITE)})
    assert basic.status == 403
    assert not _yanked(site)


def test_unknown_actions_and_files_are_404(site: Site) -> None:
    session = site.session(WRITE)
    assert _browse(site, f"/project/demo-pkg/burn/{WHEEL}/", session).status == 404
    assert _browse(site, "/project/demo-pkg/yank/nope.whl/", session).status == 404


def test_clients_still_get_the_simple_pages_unchanged(site: Site) -> None:
    headers = {"Authorization": _basic(), "Accept": PIP}
    before = site.fetch("GET", "/simple/demo-pkg/", headers)
    _browse(site, "/project/demo-pkg/", site.session())
    after = site.fetch("GET", "/simple/demo-pkg/", headers)
    assert before.status == after.status == 200
    assert before.body == after.body and "<html" not in after.text
    assert after.header("content-type") == "application/vnd.pypi.simple.v1+json"
