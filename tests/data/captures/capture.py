"""Capture real upload requests from twine and uv, as golden bodies for the multipart tests.

Re-run from the repository root whenever a client changes how it uploads:

    .venv/bin/python tests/data/captures/capture.py

It makes a tiny wheel and sdist with `tests/factory.py`, starts a throw-away `http.server` on
127.0.0.1:0 that records each request and answers 200, then runs `twine upload` and
`uv publish` from the venv once per file. Each request is written next to this script as
`{client}-{kind}.json` (method, path, headers in wire order) and `{client}-{kind}.body` (the raw
body bytes, de-chunked if the client sent `Transfer-Encoding: chunked`).

The clients are isolated: a temporary HOME and XDG dirs, no pip or uv config, no keyring,
non-interactive, credentials `local` / `secret` on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "tests"))

from factory import make_sdist  # noqa: E402
from factory import make_wheel  # noqa: E402

NAME = "capture-demo"
VERSION = "1.0"
RECORDS: list[tuple[dict[str, object], bytes]] = []  # (request line and headers, body)


class Recorder(BaseHTTPRequestHandler):
    """Record every POST in RECORDS; answer 200 with an empty body."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self._read_body()
        meta: dict[str, object] = {
            "method": self.command,
            "path": self.path,
            "headers": list(self.headers.items()),
        }
        RECORDS.append((meta, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.send_error(404)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def log_message(self, format: str, *args: object) -> None:
        pass


def isolated_env(home: Path) -> dict[str, str]:
    keep = {key: os.environ[key] for key in ("PATH", "LANG", "SYSTEMROOT") if key in os.environ}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_DATA_HOME": str(home / "data"),
        "PIP_CONFIG_FILE": os.devnull,
        "UV_NO_CONFIG": "1",
        "UV_CACHE_DIR": str(home / "uv-cache"),
        "TWINE_NON_INTERACTIVE": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "NO_COLOR": "1",
    }


def twine_argv(url: str, dist: Path) -> list[str]:
    return [
        str(BIN / "twine"), "upload", "--repository-url", url, "-u", "local", "-p", "secret",
        "--non-interactive", "--disable-progress-bar", str(dist),
    ]  # fmt: skip


def uv_argv(url: str, dist: Path) -> list[str]:
    return [
        str(BIN / "uv"), "publish", "--publish-url", url, "--username", "local",
        "--password", "secret", "--keyring-provider", "disabled",
        "--trusted-publishing", "never", str(dist),
    ]  # fmt: skip


def capture(client: str, argv: list[str], env: dict[str, str], stem: str) -> None:
    """Run one upload and write the one request it made."""
    RECORDS.clear()
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL)
    if len(RECORDS) != 1:
        raise SystemExit(f"{client} made {len(RECORDS)} POSTs, expected 1")
    meta, body = RECORDS[0]
    (HERE / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (HERE / f"{stem}.body").write_bytes(body)
    print(f"wrote {stem}.json and {stem}.body ({len(body)} bytes)")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    try:
        with tempfile.TemporaryDirectory() as temp:
            home = Path(temp)
            dists = {
                "wheel": make_wheel(home, NAME, VERSION, requires_python=">=3.9"),
                "sdist": make_sdist(home, NAME, VERSION, requires_python=">=3.9"),
            }
            env = isolated_env(home)
            for kind, dist in dists.items():
                capture("twine", twine_argv(url, dist), env, f"twine-{kind}")
                capture("uv", uv_argv(url, dist), env, f"uv-{kind}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
