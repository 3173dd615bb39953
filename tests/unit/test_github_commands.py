"""`github.init_pkg_repo` and `github.gen_gh_pages` in-process against the fake GitHub."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from fake_github import FakeGitHub

from pywharf.cli import main
from pywharf.cli import run
from pywharf.config import load_toml
from pywharf.github_commands import web_url
from pywharf.github_commands import workflow_yaml

TOKEN = "ghp_aliceCreatesRepos0123456789abcdefABCD"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_user("alice", TOKEN)
        yield fake


@pytest.fixture
def pyz(tmp_path: Path) -> Path:
    path = tmp_path / "pywharf.pyz"
    path.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: what the workflow would run
    return path


def init(github: FakeGitHub, pyz: Path, *flags: str) -> list[str]:
    return ["github.init_pkg_repo", "team", TOKEN, "packages", "--api_url", github.api_url,
            "--pyz", str(pyz), *flags]  # fmt: skip


def printed_config(output: str) -> dict[str, object]:
    text = output[output.index("# The server's repository configuration") :]
    config_part = text.split("# Its admin-secret file")[0]
    return load_toml(config_part, "printed config")


def test_the_workflow_uses_current_actions_syntax() -> None:
    text = workflow_yaml("team", "", "index.toml", pages=True)
    assert "::set-env" not in text and "set-output" not in text
    assert "master" not in text  # the default branch is looked up, never assumed
    assert text.count("${{ secrets.GITHUB_TOKEN }}") == 1
    assert "PYWHARF_GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}" in text  # through env only
    assert "${{ github.repository_owner }}" in text
    assert re.search(r"^  release:\n    types: \[published", text, re.M)
    assert re.search(r'^  schedule:\n    - cron: "', text, re.M)
    assert "--secret_env PYWHARF_GITHUB_TOKEN" in text
    assert "actions/deploy-pages@v4" in text and "id-token: write" in text


def test_a_strange_name_never_reaches_the_workflow_s_shell() -> None:
    with pytest.raises(ValueError):
        workflow_yaml("team; rm -rf /", "", "index.toml", pages=False)


def test_dry_run_creates_nothing(
    github: FakeGitHub, pyz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(init(github, pyz, "--dry_run", "--sync_index_interval", "30")) == 0
    output = capsys.readouterr().out
    assert "name: update-index" in output
    assert printed_config(output)["team"] == {
        "type": "github", "owner": "<the token's user>", "repo": "packages",
        "index_filename": "index.toml", "sync_index_interval": 30, "api_url": github.api_url,
    }  # fmt: skip
    assert github.calls == []


def test_init_makes_a_private_repository_with_the_workflow_and_an_empty_index(
    github: FakeGitHub, pyz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(init(github, pyz, "--sync_index_interval", "120")) == 0
    output = capsys.readouterr().out
    repo = github.world.repo("alice", "packages")
    assert repo is not None and repo.private
    workflow = github.file("alice", "packages", ".github/workflows/update-index.yml")
    assert workflow is not None and b"update_index github team" in workflow
    assert github.file("alice", "packages", ".github/pywharf/pywharf.pyz") == pyz.read_bytes()
    index = github.file("alice", "packages", "index.toml")
    assert index is not None and load_toml(index.decode(), "index")["pkgs"] == []
    config = printed_config(output)["team"]
    assert config == {"type": "github", "owner": "alice", "repo": "packages",
                      "index_filename": "index.toml", "sync_index_interval": 120,
                      "api_url": github.api_url}  # fmt: skip
    assert TOKEN not in output
    assert repo.pages is None


def test_init_in_an_organization_with_its_own_index_branch(
    github: FakeGitHub, pyz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_org("team-org", {"alice": "admin"})
    assert run(init(github, pyz, "--owner", "team-org", "--branch", "index")) == 0
    repo = github.world.repo("team-org", "packages")
    assert repo is not None and repo.private and repo.default_branch == "main"
    assert "index" in repo.branches
    assert github.file("team-org", "packages", "index.toml", branch="index") is not None
    workflow = github.file("team-org", "packages", ".github/workflows/update-index.yml")
    assert workflow is not None and b"--branch index" in workflow
    assert printed_config(capsys.readouterr().out)["team"]["branch"] == "index"  # type: ignore[index]


def test_init_with_pages(github: FakeGitHub, pyz: Path) -> None:
    assert run(init(github, pyz, "--enable_gh_pages")) == 0
    repo = github.world.repo("alice", "packages")
    assert repo is not None and repo.pages == "workflow"
    workflow = github.file("alice", "packages", ".github/workflows/update-index.yml")
    assert workflow is not None and b"github.gen_gh_pages team" in workflow


def test_pages_that_github_refuses_are_a_warning(
    github: FakeGitHub, pyz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.inject("POST", r"/pages$", 422)
    assert run(init(github, pyz, "--enable_gh_pages")) == 0
    captured = capsys.readouterr()
    assert "warning: GitHub Pages not enabled" in captured.err
    assert "[team]" in captured.out


def test_an_existing_repository_is_one_error_line(
    github: FakeGitHub, pyz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_repo("alice", "packages")
    with pytest.raises(SystemExit) as caught:
        main(init(github, pyz))
    assert caught.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "name already exists" in err
    assert TOKEN not in err


def test_without_a_pyz_nothing_is_created(
    github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["github.init_pkg_repo", "team", TOKEN, "packages", "--api_url", github.api_url]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "--pyz" in capsys.readouterr().err
    assert github.calls == []


@pytest.mark.parametrize(
    ("api", "web"),
    [
        ("https://api.github.com", "https://github.com"),
        ("https://ghe.example/api/v3", "https://ghe.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_web_url(api: str, web: str) -> None:
    assert web_url(api) == web


def test_gen_gh_pages_writes_pep_503_pages_and_no_metadata(
    github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_repo("alice", "public-packages", private=False)
    data = b"sdist bytes"
    release = github.add_release("alice", "public-packages", "demo_pkg-1.0.tar.gz",
                                 assets={"demo_pkg-1.0.tar.gz": data})  # fmt: skip
    sha256 = hashlib.sha256(data).hexdigest()
    entry = {
        "type": "github", "distrib": "demo-pkg", "package": "demo_pkg-1.0", "ext": "tar.gz",
        "sha256": sha256, "asset_id": release.assets[0].id, "asset_name": "demo_pkg-1.0.tar.gz",
        "url": f"{github.api_url}/repos/alice/public-packages/releases/assets/1",
        "meta": {"requires_python": ">=3.8", "yanked": "bad", "summary": "secret plans"},
    }  # fmt: skip
    index = tomli_w.dumps({"mtime": 1, "pkgs": [entry]}).encode()
    github.put_file("alice", "public-packages", "index.toml", index)
    out = tmp_path / "site" / "nested"
    argv = ["github.gen_gh_pages", "team", TOKEN, "alice", "public-packages", str(out),
            "--api_url", github.api_url]  # fmt: skip
    assert run(argv) == 0
    assert "1 files" in capsys.readouterr().out
    root = (out / "index.html").read_text()
    assert '<a href="demo-pkg/">demo-pkg</a>' in root
    page = (out / "demo-pkg" / "index.html").read_text()
    link = (f"{github.api_url}/alice/public-packages/releases/download/demo_pkg-1.0.tar.gz/"
            f"demo_pkg-1.0.tar.gz#sha256={sha256}")  # fmt: skip
    assert f'href="{link}"' in page
    assert 'data-requires-python="&gt;=3.8"' in page and 'data-yanked="bad"' in page
    assert sorted(p.name for p in out.rglob("*")) == ["demo-pkg", "index.html", "index.html"]
    assert "secret plans" not in page + root
