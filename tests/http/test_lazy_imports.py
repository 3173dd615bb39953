"""What a server with a file_system repository leaves unimported (issue 16).

urllib3 (with the clients built on it) and tarfile are for the S3 and GitHub backends, the
upstream cache, trusted publishing and the bundle commands: importing them anyway cost every
server about 2.5 MiB of RSS and a fifth of its imports' time. A fresh interpreter is needed, since
this one has imported them for other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support import REPO

NEVER_IMPORTED = ("urllib3", "tarfile", "pywharf.clients.http", "pywharf.bundle")

_PROBE = """
import json, sys
import pywharf.cli
from pywharf.server import Server
from pywharf.service import Service
from pywharf.settings import COMMANDS, parse_flags

options = parse_flags(COMMANDS["server"], [sys.argv[1], "--config", sys.argv[2], "--port", "0",
                                           "--host", "127.0.0.1", "--extra_index_url", ""])
service = Service(options)
server = Server(("127.0.0.1", 0), service.app, None)
service.start()
try:
    print(json.dumps(sorted(sys.modules)))
finally:
    server.server_close()
    service.stop()
"""


def _modules_of_a_started_server(tmp_path: Path, config: str) -> set[str]:
    (tmp_path / "repos.toml").write_text(config)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(tmp_path / "root"), str(tmp_path / "repos.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_a_file_system_server_imports_no_http_client(tmp_path: Path) -> None:
    config = '[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
    modules = _modules_of_a_started_server(tmp_path, config)
    assert "pywharf.backends.file_system" in modules  # the probe did start a repository
    assert {m for m in modules if m.startswith(NEVER_IMPORTED)} == set()


def test_an_upstream_brings_its_client(tmp_path: Path) -> None:
    config = (
        '[local]\ntype = "file_system"\nread_secret = "r"\nwrite_secret = "w"\n'
        'upstream_url = "http://127.0.0.1:9/simple/"\n'
    )
    assert "urllib3" in _modules_of_a_started_server(tmp_path, config)
