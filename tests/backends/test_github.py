"""The GitHub backend against the fake GitHub: the shared contract, then GitHub's own rules.

The repository `alice/packages` is private. alice (owner) pushes, bob may pull, carol sees
nothing; the server's own token (the admin secret) belongs to `ci-bot`, a push collaborator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from contract import BackendContract
from fake_github import FakeGitHub

from pywharf.backends import Backend
from pywharf.backends import backend_settings
from pywharf.backends import create_backend
from pywharf.backends.github import GitHubBackend
from pywharf.config import parse_repositories
from pywharf.index import FileRecord

OWNER, REPO = "alice", "packages"
WRITE_TOKEN = "ghp_aliceWritesPackages0123456789abcdefAB"
READ_TOKEN = "ghp_bobReadsPackages0123456789abcdefABCDE"
NO_ACCESS_TOKEN = "ghp_carolSeesNothing0123456789abcdefABCD"
SERVER_TOKEN = "ghp_ciBotServerToken0123456789abcdefABCDE"


def seed(github: FakeGitHub) -> None:
    github.add_user(OWNER, WRITE_TOKEN)
    github.add_user("bob", READ_TOKEN)
    github.add_user("carol", NO_ACCESS_TOKEN)
    github.add_user("ci-bot", SERVER_TOKEN)
    github.add_repo(OWNER, REPO, private=True)
    github.grant(OWNER, REPO, "bob", "pull")
    github.grant(OWNER, REPO, "ci-bot", "push")


def github_config(github: FakeGitHub, name: str = "local", **extra: object) -> str:
    section = {"type": "github", "owner": OWNER, "repo": REPO, "api_url": github.api_url,
               "uploads_url": github.uploads_url, "sync_index_interval": 0.2, **extra}  # fmt: skip
    return tomli_w.dumps({name: section})


def new_backend(
    github: FakeGitHub, root: Path, admin: str | None = SERVER_TOKEN, **extra: object
) -> GitHubBackend:
    (config,) = parse_repositories(github_config(github, **extra), "test", backend_settings)
    backend = create_backend(config, root, admin)
    assert isinstance(backend, GitHubBackend)
    return backend


class FakeGitHubTamper:
    """Changes made on GitHub by hand (the web UI, the original pywharf), behind the index."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github

    def add_behind(self, backend: Backend, filename: str, data: bytes) -> None:
        project = filename.split("-")[0].replace("_", "-").lower()
        body = {"name": project, "distrib": project, "sha256": hashlib.sha256(data).hexdigest()}
        self.github.add_release(
            OWNER, REPO, filename, body=tomli_w.dumps(body), assets={filename: data}
        )

    def remove_behind(self, backend: Backend, record: FileRecord) -> None:
        with self.github.world.lock:
            repo = self.github.world.repo(OWNER, REPO)
            assert repo is not None
            (found,) = [r for r in repo.releases.values() if r.tag_name == record.filename]
            del repo.releases[found.id]

    def damage_behind(self, backend: Backend, record: FileRecord) -> None:
        # Someone replaced the asset's bytes: GitHub's digest and size now disagree with us.
        with self.github.world.lock:
            repo = self.github.world.repo(OWNER, REPO)
            assert repo is not None
            (found,) = [r for r in repo.releases.values() if r.tag_name == record.filename]
            asset = next(a for a in found.assets if a.name == record.filename)
            asset.data += b"tampered"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        seed(fake)
        yield fake


@pytest.fixture
def backend(github: FakeGitHub, tmp_path: Path) -> Iterator[GitHubBackend]:
    backend = new_backend(github, tmp_path / "root")
    yield backend
    backend.close()


@pytest.fixture
def twin(github: FakeGitHub, tmp_path: Path) -> Iterator[GitHubBackend]:
    twin = new_backend(github, tmp_path / "twin-root")
    yield twin
    twin.close()


@pytest.fixture
def secrets() -> tuple[str, str]:
    return READ_TOKEN, WRITE_TOKEN


@pytest.fixture
def credential() -> str:
    return WRITE_TOKEN


@pytest.fixture
def tamper(github: FakeGitHub) -> FakeGitHubTamper:
    return FakeGitHubTamper(github)


class TestGitHubContract(BackendContract):
    pass
