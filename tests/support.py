"""Test support: a real server on 127.0.0.1, isolated clients, the pyz as a subprocess."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from typing import TextIO
from typing import TypeVar
from urllib.parse import unquote
from urllib.parse import urlsplit

import jsonschema
from packaging.utils import parse_sdist_filename
from packaging.utils import parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


from pywharf.app import App  # noqa: E402
from pywharf.backends import backend_settings  # noqa: E402
from pywharf.backends import create_backend  # noqa: E402
from pywharf.config import parse_repositories  # noqa: E402
from pywharf.repository import Repository  # noqa: E402
from pywharf.server import Server  # noqa: E402
from pywharf.upstream import UpstreamSettings  # noqa: E402

PYZ = REPO / "dist" / "pywharf.pyz"
BIN = Path(sys.executable).parent
READ, WRITE = "read-secret", "write-secret"
CONFIG = f"""
[local]
type = "file_system"
read_secret = "{READ}"
write_secret = "{WRITE}"
max_file_bytes = 2000000
sync_index_interval = 0.2
"""


@dataclass
class Live:
    """A running server and the credentials of its `local` repository."""

    host: str
    port: int
    root: Path
    app: App | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def index_url(self, secret: str = READ, name: str = "local") -> str:
        return f"http://{name}:{secret}@{self.host}:{self.port}/simple/"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = ("local", READ),
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers.setdefault("Authorization", f"Basic {token}")
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()


def build_app(root: Path, config: str = CONFIG) -> App:
    repositories = {}
    for repository_config in parse_repositories(config, "test config", backend_settings):
        backend = create_backend(repository_config, root, None)
        upstream = UpstreamSettings.from_config(repository_config)
        upstream_dir = root / "cache" / repository_config.name / "upstream"
        repository = Repository(
            backend,
            3600,
            300,
            "",
            upstream,
            upstream_dir,
            publishers=repository_config.publishers,
            projects=repository_config.projects,
        )
        repository.sync()
        repositories[repository_config.name] = repository
    return App(repositories)


@contextmanager
def serving(app: App, access_log: TextIO | None = None, **options: Any) -> Iterator[Server]:
    """The app on a real `Server` (port 0) in a daemon thread, shut down afterwards."""
    server = Server(("127.0.0.1", 0), app, access_log, **options)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def client_env(home: Path) -> dict[str, str]:
    """An environment in which pip, uv and twine can only reach what the test names."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "TWINE_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        UV_NO_CONFIG="1",
        UV_CACHE_DIR=str(home / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        UV_KEYRING_PROVIDER="disabled",
        TWINE_NON_INTERACTIVE="1",
        PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring",
    )
    return env


@dataclass
class ServerProcess:
    """The pyz server as a subprocess."""

    process: subprocess.Popen[bytes]
    live: Live
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until_serving(live: Live, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {log.read_text()}")
        try:
            live.request("GET", "/", auth=None)
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server did not start: {log.read_text()}")


# `pywharf server` logs this once bound (service.announce): the real port, also for `--port 0`.
_ANNOUNCED = re.compile(r"listening on \S*:(\d+)$", re.MULTILINE)


def announced_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port a server started with `--port 0` bound, read from its log."""

    def port() -> int | None:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {log.read_text()}")
        match = _ANNOUNCED.search(log.read_text(errors="replace"))
        return int(match[1]) if match else None

    return poll(port, "the server to announce its port", timeout=30)


def start_pyz(
    pyz: Path,
    root: Path,
    *args: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    root.mkdir(parents=True, exist_ok=True)
    # Several servers may share root.parent (a second server on the same root, a restart).
    handle, name = tempfile.mkstemp(prefix="server-", suffix=".log", dir=root.parent)
    log = Path(name)
    command = [python, str(pyz), "server", str(root), "--host", "127.0.0.1", "--port", "0"]
    process_env = dict(env if env is not None else os.environ)
    process_env.setdefault("SHIV_ROOT", str(root.parent / "shiv"))
    with open(handle, "wb") as sink:
        process = subprocess.Popen(
            [*command, *args], stdout=sink, stderr=subprocess.STDOUT, env=process_env
        )
    live = Live("127.0.0.1", announced_port(process, log), root)
    wait_until_serving(live, process, log)
    return ServerProcess(process, live, log)


def stop(server: ServerProcess) -> int:
    server.process.terminate()
    try:
        return server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        raise AssertionError("the server ignored SIGTERM") from None


def run_pyz(
    pyz: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A one-shot pyz command (update_index, yank, github.*): `env` adds to os.environ."""
    merged = {**os.environ, **(env or {})}
    merged.setdefault("SHIV_ROOT", str(pyz.parent.parent / "build" / "shiv-test"))
    return subprocess.run(
        [sys.executable, str(pyz), *args], capture_output=True, text=True, timeout=60, env=merged
    )


# --- real clients: twine, uv and pip as subprocesses, isolated by `client_env` ---------------


def twine_upload(
    server: ServerProcess,
    files: list[Path],
    home: Path,
    password: str = WRITE,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
               "--repository-url", f"{server.live.url}/simple/", "-u", "local", "-p", password,
               *options, *map(str, files)]  # fmt: skip
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


def pip_install(
    index_url: str,
    requirement: str,
    target: Path,
    home: Path,
    *options: str,
    python: Path = BIN / "python",
) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "install", "--isolated", "--no-cache-dir",
               "--disable-pip-version-check", "--target", str(target), "--index-url", index_url,
               *options, requirement]  # fmt: skip
    return run_client(command, home)


def uv_install(
    index_url: str, requirement: str, target: Path, home: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "uv"), "pip", "install", "--no-cache", "--target", str(target),
               "--index-url", index_url, "--python", str(BIN / "python"), *options,
               requirement]  # fmt: skip
    return run_client(command, home)


def run_client(command: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Any client command, isolated by `client_env(home)`."""
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


def uv_publish(
    server: ServerProcess,
    files: list[Path],
    home: Path,
    password: str = WRITE,
    attestations: bool = False,  # uv sends the `<file>.<kind>.attestation` files beside each
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "uv"), "publish", "--publish-url", f"{server.live.url}/simple/",
               "-u", "local", "-p", password, "--trusted-publishing", "never",
               "--keyring-provider", "disabled", *([] if attestations else ["--no-attestations"]),
               *map(str, files)]  # fmt: skip
    return subprocess.run(
        command, env=client_env(home), capture_output=True, text=True, timeout=120
    )


# --- waiting -------------------------------------------------------------------------------------

T = TypeVar("T")


def poll(
    check: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Call `check` every `interval` seconds until it returns something other than None; fail
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- the simple API's two forms, checked against the spec ----------------------------------------

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
SCHEMA = json.loads((HERE / "data" / "simple-api.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(SCHEMA)


def check_simple_json(body: bytes, kind: str) -> dict[str, Any]:
    """Parse a JSON page and validate it against the schema's `root` or `project` definition."""
    document: dict[str, Any] = json.loads(body)
    schema = {"$schema": SCHEMA["$schema"], "$ref": f"#/$defs/{kind}", "$defs": SCHEMA["$defs"]}
    jsonschema.Draft202012Validator(schema).validate(document)
    if kind == "project":  # PEP 700: every file's version is in `versions`
        listed = {Version(v) for v in document["versions"]}
        for entry in document["files"]:
            assert file_version(entry["filename"]) in listed, entry["filename"]
    return document


def file_version(filename: str) -> Version:
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[1]
    return parse_sdist_filename(filename)[1]


@dataclass
class Anchor:
    href: str
    text: str
    attributes: dict[str, str | None]  # None: a bare attribute


class _SimplePage(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # as pip parses
        self.doctype = ""
        self.meta: dict[str, str | None] = {}
        self.metas: list[tuple[str, str | None]] = []  # every one: PEP 708 repeats its names
        self.anchors: list[Anchor] = []
        self._open: tuple[dict[str, str | None], list[str]] | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "meta" and attributes.get("name"):
            self.meta[str(attributes["name"])] = attributes.get("content")
            self.metas.append((str(attributes["name"]), attributes.get("content")))
        elif tag == "a":
            self._open = (attributes, [])
        elif self._open is not None:
            raise AssertionError(f"markup <{tag}> inside an anchor: its text must be bare")

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            attributes, text = self._open
            self.anchors.append(Anchor(attributes.get("href") or "", "".join(text), attributes))
            self._open = None


_HASH_FRAGMENT = re.compile(r"^sha256=[0-9a-f]{64}$")


def check_simple_html(body: bytes, kind: str) -> tuple[str, list[Anchor]]:
    """Parse an HTML page, check the living spec's rules; (repository-version, anchors)."""
    page = _SimplePage()
    page.feed(body.decode("utf-8"))
    page.close()
    assert page.doctype.lower() == "doctype html", page.doctype  # HTML5
    version = page.meta.get("pypi:repository-version")  # PEP 629, on every page
    assert version is not None and re.fullmatch(r"1\.[0-9]+", version), page.meta
    for anchor in page.anchors:
        assert anchor.text, anchor
        if kind == "root":
            assert anchor.href.endswith("/"), anchor
            continue
        url, _, fragment = anchor.href.partition("#")
        assert _HASH_FRAGMENT.match(fragment), anchor  # hashlib name, lowercase hex
        assert anchor.text == unquote(urlsplit(url).path.rsplit("/", 1)[-1]), anchor
        attributes = anchor.attributes
        assert "data-yanked" not in attributes or attributes["data-yanked"] is not None, anchor
        core = attributes.get("data-core-metadata")
        assert core == attributes.get("data-dist-info-metadata"), anchor  # PEP 714: same value
        assert core is None or core == "true" or _HASH_FRAGMENT.match(core), anchor
        assert attributes.get("data-requires-python", "") is not None, anchor
        provenance = attributes.get("data-provenance")  # PEP 740: fully qualified, 1.3
        if provenance is not None:
            assert re.fullmatch(r"https?://[^/\s]+/\S*\.provenance", provenance), anchor
            assert Version(version) >= Version("1.3"), version
    status = page.meta.get("pypi:project-status")  # PEP 792, 1.4
    if status is not None or "pypi:project-status-reason" in page.meta:
        assert status in ("active", "archived", "quarantined", "deprecated"), page.meta
        assert Version(version) >= Version("1.4"), version
    for name, content in page.metas:  # PEP 708, 1.2: one tag per URL
        if name in ("pypi:tracks", "pypi:alternate-locations"):
            assert content and re.match(r"https?://[^/\s]+", content), (name, content)
            assert Version(version) >= Version("1.2"), version
    # `<` and `>` in attribute values must be written as entities.
    for value in re.findall(rb'=\s*"([^"]*)"', body):
        assert b"<" not in value and b">" not in value, value
    return version, page.anchors


def fetch_json(live: Live, path: str) -> dict[str, Any]:
    """A simple page in its JSON form, validated against the schema."""
    status, headers, body = live.request("GET", path, headers={"Accept": JSON_TYPE})
    assert status == 200 and headers["content-type"] == JSON_TYPE, (status, headers, body)
    return check_simple_json(body, "root" if path == "/simple/" else "project")


def fetch_html(live: Live, path: str) -> list[Anchor]:
    """A simple page in its HTML form (as curl gets it), checked against the spec's rules."""
    status, headers, body = live.request("GET", path, headers={"Accept": "*/*"})
    assert status == 200 and headers["content-type"].startswith("text/html"), (status, headers)
    return check_simple_html(body, "root" if path == "/simple/" else "project")[1]


# Accept headers of real clients (standards digest, section 2.2).
PIP = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
