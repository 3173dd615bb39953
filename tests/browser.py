"""Real headless Chromium for the browser tests, driven over W3C WebDriver with urllib.

Chromium and ChromeDriver come from Debian (`chromium`, `chromium-driver`); the `chromium`
fixture installs them with apt when they are missing. A dozen JSON calls: no Selenium.
The fixtures are registered for tests/e2e by its conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from debian import apt_install

__all__ = ["Browser", "WebDriverError", "browser", "chromium", "log_in"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DRIVER_START_SECONDS = 20
DRIVER_ATTEMPTS = 3
CALL_SECONDS = 60  # one WebDriver call, page loads included
WAIT_SECONDS = 15  # polling for a URL or a text to appear
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
# With --port=0, ChromeDriver prints the port it bound (checked with ChromeDriver 156).
DRIVER_PORT = re.compile(r"started successfully on port (\d+)")

# Root needs --no-sandbox; the rest keep Chromium off this machine's closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--password-store=basic",
    "--window-size=1000,800",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium and ChromeDriver, installed once per test session."""
    reason = apt_install(("chromium", "chromium-driver"), (CHROMIUM, CHROMEDRIVER))
    if reason is not None:
        pytest.skip(reason)
    return CHROMEDRIVER


class WebDriverError(AssertionError):
    """A WebDriver call answered with an error."""


class Browser:
    """One ChromeDriver session over the W3C WebDriver protocol."""

    # ChromeDriver on loopback: never through a proxy from the environment.
    _opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __init__(self, driver_url: str) -> None:
        self.driver_url = driver_url
        self.session_id: str | None = None

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        if data is None and method == "POST":
            data = b"{}"
        request = urllib.request.Request(
            self.driver_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        try:
            with self._opener.open(request, timeout=CALL_SECONDS) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                detail = error.read().decode("utf-8", "replace")
            raise WebDriverError(f"{method} {path}: {error.code} {detail[:800]}") from None
        return answer["value"]

    def _session(self, path: str) -> str:
        assert self.session_id is not None
        return f"/session/{self.session_id}{path}"

    def start(self, user_data_dir: Path) -> None:
        options = {
            "binary": str(CHROMIUM),
            "args": [*CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}"],
        }
        capabilities = {"browserName": "chrome", "goog:chromeOptions": options,
                        "pageLoadStrategy": "normal"}  # fmt: skip
        value = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session_id = value["sessionId"]
        timeouts = {"pageLoad": CALL_SECONDS * 1000 // 2, "script": 10_000, "implicit": 0}
        self.call("POST", self._session("/timeouts"), timeouts)

    def quit(self) -> None:
        if self.session_id is not None:
            try:
                self.call("DELETE", self._session(""))
            finally:
                self.session_id = None

    def go(self, url: str) -> None:
        self.call("POST", self._session("/url"), {"url": url})

    @property
    def url(self) -> str:
        value: str = self.call("GET", self._session("/url"))
        return value

    @property
    def source(self) -> str:
        value: str = self.call("GET", self._session("/source"))
        return value

    def find(self, css: str) -> str:
        found = self.call(
            "POST", self._session("/element"), {"using": "css selector", "value": css}
        )
        element: str = found[ELEMENT]
        return element

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        self.call("POST", self._session(f"/element/{element}/clear"))
        self.call("POST", self._session(f"/element/{element}/value"), {"text": text})

    def click(self, css: str) -> None:
        self.call("POST", self._session(f"/element/{self.find(css)}/click"))

    def script(self, source: str) -> Any:
        return self.call("POST", self._session("/execute/sync"), {"script": source, "args": []})

    def cookies(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.call("GET", self._session("/cookie"))
        return value

    def resize(self, width: int, height: int) -> None:
        self.call("POST", self._session("/window/rect"), {"width": width, "height": height})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("GET", self._session("/screenshot"))))

    def wait(self, what: str, condition: Callable[[], bool]) -> None:
        """Poll a condition, bounded by WAIT_SECONDS."""
        deadline = time.monotonic() + WAIT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; at {self.url}")
            time.sleep(0.1)


def _start_driver(driver: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """chromedriver on a port of its choosing, tried again when that port was taken. With
    `--port=0` it binds ::1, then 127.0.0.1 on the same port, and exits when another process
    holds that one ("IPv4 port not available", seen in CI with four workers)."""
    for _retry in range(DRIVER_ATTEMPTS - 1):
        with contextlib.suppress(_PortTaken):
            return _start_driver_once(driver, log)
    return _start_driver_once(driver, log)


class _PortTaken(AssertionError):
    """chromedriver's port was taken between its two binds."""


def _start_driver_once(driver: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(driver), "--port=0", f"--log-path={log.with_suffix('.verbose.log')}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Chromium is ended with it
        )
    url = ""
    deadline = time.monotonic() + DRIVER_START_SECONDS
    while True:
        if process.poll() is not None:
            said = log.read_text(errors="replace")
            failure = _PortTaken if "port not available" in said else AssertionError
            raise failure(f"chromedriver exited {process.returncode}: {said}")
        if not url and (match := DRIVER_PORT.search(log.read_text(errors="replace"))):
            url = f"http://127.0.0.1:{match[1]}"
        try:
            if url and Browser(url).call("GET", "/status").get("ready"):
                return process, url
        except (OSError, WebDriverError):
            pass
        if time.monotonic() > deadline:
            _end_group(process)
            raise AssertionError(f"chromedriver not ready in {DRIVER_START_SECONDS}s")
        time.sleep(0.1)


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """End the driver's own process group, the browser included: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            continue
    process.wait(5)


@pytest.fixture
def browser(chromium: Path, tmp_path: Path) -> Iterator[Browser]:
    process, url = _start_driver(chromium, tmp_path / "chromedriver.log")
    driver = Browser(url)
    try:
        driver.start(tmp_path / "chromium-profile")
        yield driver
    finally:
        try:
            driver.quit()
        except (OSError, WebDriverError):
            pass  # the process group is ended below either way
        finally:
            _end_group(process)


def log_in(browser: Browser, name: str, secret: str) -> None:
    """Fill in and submit the login form the browser shows."""
    browser.type('input[name="pkg_repo_name"]', name)
    browser.type('input[name="pkg_repo_secret_raw"]', secret)
    browser.click('button[type="submit"]')
