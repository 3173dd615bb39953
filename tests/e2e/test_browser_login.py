"""Browser login in real headless Chromium against the built pyz (helpers: tests/browser.py)."""

from __future__ import annotations

from pathlib import Path

from browser import Browser
from browser import log_in
from factory import make_wheel
from support import READ
from support import ServerProcess
from support_upload import upload


def test_login_flow_in_chromium(
    pyz_server: ServerProcess, browser: Browser, tmp_path: Path
) -> None:
    live = pyz_server.live
    wheel = make_wheel(tmp_path, "demo-pkg", "1.0")
    status, _, body = upload(live, wheel)
    assert status == 200, body
    base = live.url
    login_url = f"{base}/login/?next=/simple/"

    # A browser without a session is led to the login form, which is self-contained.
    browser.go(f"{base}/simple/")
    browser.wait("the login page", lambda: browser.url == login_url)
    assert 'name="pkg_repo_secret_raw"' in browser.source
    shot = tmp_path / "login.png"
    browser.screenshot(shot)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    print(f"screenshot of the login page: {shot}")

    # A wrong secret: the form again, with an error, and no session.
    log_in(browser, "local", "not-the-secret")
    browser.wait("the error", lambda: "wrong secret" in browser.source)
    assert browser.url == login_url
    assert not [c for c in browser.cookies() if c["name"] == "pywharf_session"]
    browser.screenshot(tmp_path / "login-error.png")

    # The right secret: back where the browser wanted to go, with the project listed.
    log_in(browser, "local", READ)
    browser.wait("the index", lambda: browser.url == f"{base}/simple/")
    assert "demo-pkg" in browser.source
    session = [c for c in browser.cookies() if c["name"] == "pywharf_session"]
    assert len(session) == 1, browser.cookies()
    assert session[0]["httpOnly"] is True
    assert session[0]["sameSite"] == "Lax"
    assert session[0]["path"] == "/"
    assert session[0].get("expiry"), "a session cookie that expires (Max-Age)"
    assert READ not in session[0]["value"]
    assert "pywharf_session" not in browser.script("return document.cookie;")

    # The session reads the project page too.
    browser.click('a[href="demo-pkg/"]')
    browser.wait("the project page", lambda: browser.url == f"{base}/simple/demo-pkg/")
    assert wheel.name in browser.source

    # Logout ends it: the login form, and /simple/ leads there again.
    browser.go(f"{base}/logout/")
    browser.wait("the login page after logout", lambda: browser.url == f"{base}/login/")
    assert not [c for c in browser.cookies() if c["name"] == "pywharf_session"]
    browser.go(f"{base}/simple/")
    browser.wait("the login page again", lambda: browser.url == login_url)
    assert "demo-pkg" not in browser.source
