"""Teams and CI through the built pyz with real clients: tokens made by `pywharf token create`,
twine with its default `__token__` username on a path URL, and `uv publish
--trusted-publishing always` against the suite's own OIDC issuer over HTTPS."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from factory import make_wheel
from oidc_issuer import REPOSITORY
from oidc_issuer import WORKFLOW
from oidc_issuer import Issuer
from oidc_issuer import running_issuer
from support import BIN
from support import ServerProcess
from support import poll
from support import run_pyz
from support import start_pyz
from support import stop
from test_tls import Authority
from test_tls import authority  # noqa: F401  (the module's throwaway CA fixture)
from test_tls import tls_env

pytestmark = pytest.mark.slow


@dataclass
class Team:
    server: ServerProcess
    issuer: Issuer
    ca: str
    root: Path
    audit: Path
    pyz: Path

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.live.port}"

    def get(self, path: str, user: str, secret: str) -> tuple[int, bytes]:
        live = self.server.live
        context = ssl.create_default_context(cafile=self.ca)
        connection = http.client.HTTPSConnection(live.host, live.port, timeout=30, context=context)
        auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
        try:
            connection.request("GET", path, headers={"Authorization": f"Basic {auth}"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def token(self, *flags: str) -> tuple[str, list[str]]:
        argv = ["token", "create", "file_system", "team", "--root", str(self.root), *flags]
        created = run_pyz(self.pyz, *argv)
        assert created.returncode == 0, created.stderr
        return created.stdout.splitlines()[-1], argv


@pytest.fixture
def team(pyz: Path, tmp_path: Path, authority: Authority) -> Iterator[Team]:  # noqa: F811
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    authority.issue(cert, key)
    root = tmp_path / "root"
    with running_issuer() as issuer:
        config = tmp_path / "repos.toml"
        config.write_text(f"""
[team]
type = "file_system"
read_secret = "team-read"
write_secret = "team-write"
sync_index_interval = 0.2

[[team.trusted_publishers]]
issuer = "{issuer.url}"
repository = "{REPOSITORY}"
workflow = "{WORKFLOW}"
environment = "pypi"
projects = ["acme-*"]
""")
        server = start_pyz(
            pyz, root, "--config", str(config), "--extra_index_url", "", "--certfile",
            str(cert), "--keyfile", str(key),
        )  # fmt: skip
        try:
            yield Team(server, issuer, str(authority.path), root, root / "audit.log", pyz)
        finally:
            if server.process.poll() is None:
                stop(server)


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _twine(team: Team, path: str, token: str, wheel: Path, home: Path) -> str:
    """twine with `__token__`, the username it defaults to for PyPI's tokens (for other
    URLs twine 7 asks for one, so it is given)."""
    result = _run(
        [str(BIN / "twine"), "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{team.base}{path}", "--cert", team.ca, "-u", "__token__",
         "-p", token, str(wheel)],
        tls_env(home),
    )  # fmt: skip
    return f"{result.returncode}\n{result.stdout}{result.stderr}"


def test_tokens_from_the_command_line_with_twine_and_pip(team: Team, tmp_path: Path) -> None:
    token, argv = team.token("--label", "ci", "--can", "upload,read", "--projects", "acme-*")
    assert token.startswith("pywharf_") and token not in " ".join(argv)  # nothing for `ps`
    poll(lambda: True if team.get("/team/simple/", "__token__", token)[0] == 200 else None,
         "the server to load the token at its sync")  # fmt: skip
    wheel = make_wheel(tmp_path, "acme-app", "1.0")
    assert _twine(team, "/team/legacy/", token, wheel, tmp_path / "t1").startswith("0\n")
    outside = _twine(team, "/team/legacy/", token, make_wheel(tmp_path, "other", "1.0"),
                     tmp_path / "t2")  # fmt: skip
    assert outside.startswith("1\n") and "403" in outside
    index = f"https://__token__:{token}@127.0.0.1:{team.server.live.port}/team/simple/"
    installed = _run(
        [str(BIN / "python"), "-m", "pip", "install", "--isolated", "--no-cache-dir", "--target",
         str(tmp_path / "target"), "--index-url", index, "--cert", team.ca, "acme-app"],
        tls_env(tmp_path / "pip-home"),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "target" / "acme_app").is_dir()
    # The token appears nowhere the server writes.
    assert token not in team.server.output() and token not in team.audit.read_text()
    listed = run_pyz(team.pyz, "token", "list", "file_system", "team", "--root", str(team.root))
    assert "ci\tread,upload\tacme-*" in listed.stdout and token[-20:] not in listed.stdout


def _actions_env(team: Team, home: Path) -> dict[str, str]:
    return tls_env(
        home, SSL_CERT_FILE=team.ca, GITHUB_ACTIONS="true",
        ACTIONS_ID_TOKEN_REQUEST_URL=team.issuer.request_url(),
        ACTIONS_ID_TOKEN_REQUEST_TOKEN=team.issuer.request_token,
    )  # fmt: skip


def _uv_publish(team: Team, wheel: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return _run(
        [str(BIN / "uv"), "publish", "--trusted-publishing", "always", "--publish-url",
         f"{team.base}/team/legacy/", "--keyring-provider", "disabled", str(wheel)],
        _actions_env(team, home),
    )  # fmt: skip


def _said(process: subprocess.CompletedProcess[str]) -> str:
    """What a client printed, on one line: uv wraps the server's reason at COLUMNS, which
    pytest-xdist's workers set to 80."""
    return " ".join((process.stdout + process.stderr).split())


def test_uv_publishes_by_trusted_publishing(team: Team, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "acme-app", "1.0")
    published = _uv_publish(team, wheel, tmp_path / "uv1")
    assert published.returncode == 0, published.stdout + published.stderr
    status, page = team.get("/team/simple/acme-app/", "x", "team-read")
    assert status == 200 and wheel.name.encode() in page
    actor = f"oidc:{REPOSITORY}@{WORKFLOW}"

    def audited() -> list[dict[str, object]] | None:
        lines = [json.loads(x) for x in team.audit.read_text().splitlines()]
        done = [x for x in lines if x["actor"] == actor and x["outcome"] == "ok"]
        return done if {x["action"] for x in done} >= {"mint", "upload"} else None

    poll(audited, "the mint and the upload in the audit log")
    # Outside the publisher's projects: refused with the server's reason.
    other = _uv_publish(team, make_wheel(tmp_path, "other", "1.0"), tmp_path / "uv2")
    assert other.returncode != 0 and "outside its projects" in _said(other)
    # Another environment: the mint is refused, and uv shows why.
    team.issuer.claims_override = {"environment": "staging"}
    refused = _uv_publish(team, make_wheel(tmp_path, "acme-lib", "1.0"), tmp_path / "uv3")
    assert refused.returncode != 0
    assert "no trusted publisher matches" in _said(refused)


def test_twine_with_a_token_minted_by_hand(team: Team, tmp_path: Path) -> None:
    """twine 7 does trusted publishing for PyPI only: the README's curl steps, in Python."""
    context = ssl.create_default_context(cafile=team.ca)
    request = urllib.request.Request(
        f"{team.issuer.request_url()}&audience=pywharf",
        headers={"Authorization": f"bearer {team.issuer.request_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        identity = json.loads(answer.read())["value"]
    mint = urllib.request.Request(
        f"{team.base}/_/oidc/mint-token", data=json.dumps({"token": identity}).encode()
    )
    with urllib.request.urlopen(mint, timeout=30, context=context) as answer:
        minted = json.loads(answer.read())
    assert minted["success"] is True
    wheel = make_wheel(tmp_path, "acme-tool", "1.0")
    assert _twine(team, "/team/legacy/", minted["token"], wheel, tmp_path / "tw").startswith("0\n")
    assert minted["token"] not in team.server.output()
