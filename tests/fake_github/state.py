"""The fake GitHub's world: accounts, repositories with commits, releases and assets.

Plain mutable records guarded by `World.lock`; the routes and the seeding API change them.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from dataclasses import field

LEVELS = {"pull": 1, "push": 2, "admin": 3}
# GitHub keeps letters, digits and "._-+" in asset names; a run of other characters (with
# the dots around it) becomes one ".".
_SPECIAL_RUN = re.compile(r"[^A-Za-z0-9_+-]*[^A-Za-z0-9._+-][^A-Za-z0-9_+-]*")


def blob_sha(data: bytes) -> str:
    """Git's blob id, as the contents API reports it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def timestamp(epoch: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def mangle_asset_name(name: str) -> str:
    """GitHub's renaming of asset names: special-character runs to ".", no edge dots."""
    return _SPECIAL_RUN.sub(".", name).strip(".") or "default"


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"  # or "Organization"
    tokens: set[str] = field(default_factory=set)
    members: dict[str, str] = field(default_factory=dict)  # org: login -> "admin" | "member"


@dataclass
class Commit:
    sha: str
    tree: dict[str, bytes]
    parent: str | None
    message: str


@dataclass
class Asset:
    id: int
    name: str
    label: str | None
    content_type: str
    data: bytes
    uploader: str
    created_at: str
    state: str = "uploaded"
    download_count: int = 0


@dataclass
class Release:
    id: int
    tag_name: str
    name: str | None
    body: str
    draft: bool
    prerelease: bool
    target_commitish: str
    author: str
    created_at: str
    published_at: str | None = None
    assets: list[Asset] = field(default_factory=list)


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool
    default_branch: str
    created_at: str
    archived: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    tags: dict[str, str] = field(default_factory=dict)  # tag -> commit sha
    commits: dict[str, Commit] = field(default_factory=dict)
    releases: dict[int, Release] = field(default_factory=dict)
    collaborators: dict[str, str] = field(default_factory=dict)  # login -> level
    pages: str | None = None  # GitHub Pages build type once enabled ("workflow" or "legacy")

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def head(self, ref: str | None) -> Commit | None:
        """The commit a branch, tag or sha names (the default branch when None)."""
        name = ref or self.default_branch
        sha = self.branches.get(name) or self.tags.get(name) or name
        return self.commits.get(sha)

    def commit(self, branch: str, tree: dict[str, bytes], message: str) -> Commit:
        parent = self.branches.get(branch)
        seed = f"{parent}:{message}:{len(self.commits)}:{sorted(tree)}".encode()
        new = Commit(hashlib.sha1(seed).hexdigest(), tree, parent, message)
        self.commits[new.sha] = new
        self.branches[branch] = new.sha
        return new


@dataclass
class Budget:
    """One identity's primary rate limit."""

    limit: int = 5000
    remaining: int = 5000
    reset: int = field(default_factory=lambda: int(time.time()) + 3600)

    @property
    def used(self) -> int:
        return self.limit - self.remaining


class World:
    """Everything the fake GitHub knows."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.budgets: dict[str, Budget] = {}
        self.signed: dict[str, tuple[int, float]] = {}  # signature -> (asset id, expiry)
        self._next_id = 1000

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def account(self, login: str) -> Account | None:
        return self.accounts.get(login.lower())

    def by_token(self, token: str) -> Account | None:
        return next((a for a in self.accounts.values() if token in a.tokens), None)

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get((owner.lower(), name.lower()))

    def repo_by_id(self, repo_id: int) -> Repo | None:
        return next((r for r in self.repos.values() if r.id == repo_id), None)

    def budget(self, who: str) -> Budget:
        return self.budgets.setdefault(who, Budget())

    def level(self, user: Account | None, repo: Repo) -> int:
        """0 none, 1 pull, 2 push, 3 admin."""
        level = 0 if repo.private else LEVELS["pull"]
        if user is None:
            return level
        if user.login.lower() == repo.owner.lower():
            return LEVELS["admin"]
        owner = self.account(repo.owner)
        if owner is not None and user.login.lower() in owner.members:
            role = owner.members[user.login.lower()]
            level = max(level, LEVELS["admin"] if role == "admin" else LEVELS["pull"])
        return max(level, LEVELS.get(repo.collaborators.get(user.login.lower(), ""), 0))

    def find_asset(self, repo: Repo, asset_id: int) -> tuple[Release, Asset] | None:
        for release in repo.releases.values():
            for asset in release.assets:
                if asset.id == asset_id:
                    return release, asset
        return None
