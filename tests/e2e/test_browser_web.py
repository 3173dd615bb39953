"""The web pages in real headless Chromium against the built pyz: login, search, the project
page, a yank by a write session, a refused forged token, XSS payloads, two screen widths.

Screenshots are saved under the test's tmp dir (390 px, a phone; 1280 px, a laptop).
"""

from __future__ import annotations

import json
from pathlib import Path

from browser import Browser
from browser import log_in
from factory import make_wheel
from support import JSON_TYPE
from support import WRITE
from support import ServerProcess
from support_upload import upload

XSS = (
    '<script>document.title="pwned"</script>'
    "<img src=x onerror=\"document.title='pwned'\">\"'><svg onload=alert(1)>"
)
WIDTHS = {"phone": (390, 844), "laptop": (1280, 900)}


def _publish(server: ServerProcess, tmp_path: Path) -> Path:
    live = server.live
    for version in ("1.0", "2.0"):
        wheel = make_wheel(tmp_path, "demo-pkg", version, ">=3.9", summary=f"A demo {XSS}",
                           description=f"Read me.\n\n{XSS}\nThe end.")  # fmt: skip
        status, _, body = upload(live, wheel, summary=f"A demo {XSS}")
        assert status == 200, body
    other = make_wheel(tmp_path, "other-tool", "0.1")
    assert upload(live, other)[0] == 200
    return tmp_path / "demo_pkg-1.0-py3-none-any.whl"


def _yank_reason(server: ServerProcess, filename: str) -> object:
    status, _, body = server.live.request("GET", "/simple/demo-pkg/", headers={"Accept": JSON_TYPE})
    assert status == 200
    (entry,) = [f for f in json.loads(body)["files"] if f["filename"] == filename]
    return entry.get("yanked")


def _no_injected_markup(browser: Browser) -> None:
    assert "pwned" not in browser.script("return document.title;")
    injected = "return document.querySelectorAll('main script, main img, main svg').length;"
    assert browser.script(injected) == 0


def test_web_pages_in_chromium(pyz_server: ServerProcess, browser: Browser, tmp_path: Path) -> None:
    wheel = _publish(pyz_server, tmp_path)
    base = pyz_server.live.url

    # A browser at / is led to the login form; a write secret's session lands on the list.
    browser.go(f"{base}/")
    browser.wait("the login page", lambda: browser.url == f"{base}/login/?next=/")
    log_in(browser, "local", WRITE)
    browser.wait("the project list", lambda: browser.url == f"{base}/")
    assert "2 projects." in browser.source
    _no_injected_markup(browser)

    # Search: the form, the ranked result and its counts.
    browser.type("#q", "demo")
    browser.click("form.search button")
    browser.wait("the results", lambda: browser.url == f"{base}/?q=demo")
    assert "1 of 2 projects match" in browser.source
    assert "other-tool" not in browser.source
    _no_injected_markup(browser)

    # The project page: the payloads are shown as text, nothing runs.
    browser.click('a[href="/project/demo-pkg/"]')
    browser.wait("the project page", lambda: browser.url == f"{base}/project/demo-pkg/")
    _no_injected_markup(browser)
    summary = browser.script("return document.querySelector('p.summary').innerText;")
    description = browser.script("return document.querySelector('pre.description').innerText;")
    assert summary == f"A demo {XSS}" and XSS in description
    assert "pip install --index-url" in browser.source and "2 versions, 2 files" in browser.source
    for label, (width, height) in WIDTHS.items():
        browser.resize(width, height)
        inner = browser.script("return window.innerWidth;")
        # Readable: nothing wider than the window but the tables' own scrolling.
        overflow = browser.script("return document.documentElement.scrollWidth;")
        assert overflow <= inner + 1, (label, overflow, inner)
        shot = tmp_path / f"project-page-{width}.png"
        browser.screenshot(shot)
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        print(f"screenshot at {width} px: {shot}")

    # A yank: the button, the confirmation with a reason, back on the page, yanked.
    browser.click(f'a[href="/project/demo-pkg/yank/{wheel.name}/"]')
    browser.wait("the confirmation", lambda: "/yank/" in browser.url)
    assert _yank_reason(pyz_server, wheel.name) is None  # asking is not doing
    browser.type("#reason", "broken build")
    browser.click("main form button[type=submit]")
    browser.wait("the yank", lambda: "broken build" in browser.source)
    assert browser.url == f"{base}/project/demo-pkg/"
    assert _yank_reason(pyz_server, wheel.name) == "broken build"

    # A forged token is refused, and nothing changes.
    browser.click(f'a[href="/project/demo-pkg/unyank/{wheel.name}/"]')
    browser.wait("the confirmation", lambda: "/unyank/" in browser.url)
    browser.script("document.querySelector('input[name=csrf]').value = 'csrf.x.9999999999.forged';")
    browser.click("main form button[type=submit]")
    browser.wait("the refusal", lambda: "came from another page" in browser.source)
    assert _yank_reason(pyz_server, wheel.name) == "broken build"
