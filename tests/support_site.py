"""A browser-like HTTP client for the login and web-page tests: every header and cookie kept."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from urllib.parse import urlencode

from support import PIP
from support import READ
from support import UV
from support import Live
from support import build_app
from support import serving

from pywharf.app import App
from pywharf.session import SessionKeys

LIFETIME = 900  # --auth_read_expires of the app under test: the cookie's Max-Age

# Real Accept headers of a top-level navigation, and of the package clients.
CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
    "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIREFOX_OLDER = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
BROWSERS = {"chrome": CHROME, "firefox": FIREFOX, "firefox older": FIREFOX_OLDER}
CLIENTS = {
    "pip": PIP,
    "uv": UV,
    "poetry >= 2.3": "application/vnd.pypi.simple.v1+json, */*;q=0.1",
    "poetry <= 2.2": "*/*",
    "curl": "*/*",
    "no Accept (urllib)": None,
}
# Each Accept is tried under every one of these: the answer must not change with them.
USER_AGENTS = {
    "chrome UA": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36"
    ),
    "pip UA": 'pip/25.0 {"installer":{"name":"pip","version":"25.0"},"python":"3.11.7"}',
    "curl UA": "curl/8.5.0",
}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def cookie(self, name: str) -> Cookie | None:
        found = [c for c in map(Cookie.parse, self.all("set-cookie")) if c.name == name]
        assert len(found) <= 1, f"{name} set twice: {self.all('set-cookie')}"
        return found[0] if found else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass
class Cookie:
    name: str
    value: str
    attributes: dict[str, str]  # lower-cased names; flags map to ""

    @classmethod
    def parse(cls, line: str) -> Cookie:
        first, *rest = (part.strip() for part in line.split(";"))
        name, _, value = first.partition("=")
        attributes = {}
        for item in rest:
            key, _, attribute = item.partition("=")
            attributes[key.lower()] = attribute
        return cls(name, value, attributes)


@dataclass
class Site:
    """The app with browser login enabled, served on a real socket."""

    live: Live
    keys: SessionKeys

    @property
    def host(self) -> str:
        return f"{self.live.host}:{self.live.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host}"

    def fetch(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        """One request with no credentials but the headers given; every header kept."""
        connection = http.client.HTTPConnection(self.live.host, self.live.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, response.getheaders(), response.read())
        finally:
            connection.close()

    def form(self, path: str = "/login/", headers: dict[str, str] | None = None) -> str:
        """GET the login form; its CSRF token (the hidden field equals the cookie)."""
        reply = self.fetch("GET", path, headers)
        assert reply.status == 200, reply.text
        cookie = reply.cookie("pywharf_csrf")
        assert cookie is not None
        field = re.search(r'name="csrf" value="([^"]*)"', reply.text)
        assert field is not None, reply.text
        assert field.group(1) == cookie.value
        return cookie.value

    def post_login(
        self,
        fields: dict[str, str],
        next_path: str | None = "/simple/",
        csrf_cookie: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        target = "/login/" if next_path is None else f"/login/?next={quote(next_path, safe='')}"
        all_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": self.origin,
            "Accept": CHROME,
        }
        if csrf_cookie is not None:
            all_headers["Cookie"] = f"pywharf_csrf={csrf_cookie}"
        all_headers.update(headers or {})
        return self.fetch("POST", target, all_headers, urlencode(fields).encode())

    def login(
        self, name: str = "local", secret: str = READ, next_path: str | None = "/simple/"
    ) -> Reply:
        token = self.form()
        fields = {"pkg_repo_name": name, "pkg_repo_secret_raw": secret, "csrf": token}
        return self.post_login(fields, next_path, csrf_cookie=token)

    def session(self, secret: str = READ) -> str:
        reply = self.login(secret=secret)
        assert reply.status == 303, reply.text
        cookie = reply.cookie("pywharf_session")
        assert cookie is not None and cookie.value
        return cookie.value


@contextmanager
def running_site(root: Path) -> Iterator[Site]:
    """The app with browser login enabled, on a real socket, shut down afterwards."""
    keys = SessionKeys.load(root, LIFETIME)
    app = App(build_app(root).repositories, sessions=keys)
    with serving(app) as server:
        yield Site(Live("127.0.0.1", server.server_address[1], root, app), keys)
