"""What the GitHub client returns: frozen values parsed from GitHub's JSON.

Parsers read only the fields the backend needs and tolerate missing optional ones, since
GitHub adds fields over time (`digest` on assets is from 2025) and trims none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from pywharf.clients.errors import ClientError

__all__ = [
    "Asset",
    "FileCommit",
    "GitHubRepository",
    "Permissions",
    "RawContents",
    "Ref",
    "Release",
    "User",
    "git_blob_sha",
]


def git_blob_sha(data: bytes) -> str:
    """Git's blob id: what the contents API calls a file's `sha`.

    >>> git_blob_sha(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _field(data: Any, key: str, kind: type) -> Any:
    """One required field of a GitHub object, checked for its type."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise ClientError(f"GitHub answered without a valid {key!r} field")
    return value


@dataclass(frozen=True)
class User:
    """The account a token belongs to."""

    login: str
    id: int
    type: str

    @classmethod
    def from_json(cls, data: Any) -> User:
        return cls(_field(data, "login", str), _field(data, "id", int), data.get("type", "User"))


@dataclass(frozen=True)
class Permissions:
    """What the token may do in a repository (GitHub sends these only to authenticated calls)."""

    admin: bool = False
    maintain: bool = False
    push: bool = False
    triage: bool = False
    pull: bool = False

    @classmethod
    def from_json(cls, data: Any) -> Permissions:
        if not isinstance(data, dict):
            return cls()
        return cls(**{key: data.get(key) is True for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class GitHubRepository:
    """The parts of a repository the backend decides on."""

    id: int
    owner: str
    name: str
    full_name: str
    private: bool
    default_branch: str
    archived: bool
    permissions: Permissions

    @classmethod
    def from_json(cls, data: Any) -> GitHubRepository:
        return cls(
            id=_field(data, "id", int),
            owner=_field(_field(data, "owner", dict), "login", str),
            name=_field(data, "name", str),
            full_name=_field(data, "full_name", str),
            private=data.get("private") is True,
            default_branch=_field(data, "default_branch", str),
            archived=data.get("archived") is True,
            permissions=Permissions.from_json(data.get("permissions")),
        )


@dataclass(frozen=True)
class Asset:
    """One file attached to a release; `url` is its API address (download with octet-stream)."""

    id: int
    name: str
    label: str | None
    content_type: str
    size: int
    state: str
    digest: str | None  # "sha256:<hex>", absent in answers before 2025
    url: str
    browser_download_url: str

    @classmethod
    def from_json(cls, data: Any) -> Asset:
        return cls(
            id=_field(data, "id", int),
            name=_field(data, "name", str),
            label=data.get("label"),
            content_type=data.get("content_type") or "application/octet-stream",
            size=_field(data, "size", int),
            state=data.get("state") or "uploaded",
            digest=data.get("digest"),
            url=_field(data, "url", str),
            browser_download_url=data.get("browser_download_url") or "",
        )


@dataclass(frozen=True)
class Release:
    """A release: pywharf keeps one per file, tag = asset name = filename."""

    id: int
    tag_name: str
    name: str | None
    body: str
    draft: bool
    prerelease: bool
    url: str
    upload_url: str  # an RFC 6570 template: ".../assets{?name,label}"
    assets: tuple[Asset, ...]
    published_at: str | None = None  # ISO 8601; None for a draft

    @classmethod
    def from_json(cls, data: Any) -> Release:
        return cls(
            id=_field(data, "id", int),
            tag_name=_field(data, "tag_name", str),
            name=data.get("name"),
            body=data.get("body") or "",
            draft=data.get("draft") is True,
            prerelease=data.get("prerelease") is True,
            url=_field(data, "url", str),
            upload_url=_field(data, "upload_url", str),
            assets=tuple(Asset.from_json(item) for item in data.get("assets") or ()),
            published_at=data.get("published_at"),
        )

    def asset_named(self, name: str) -> Asset | None:
        """The asset GitHub stored under `name` (compare with GitHub's name, never ours)."""
        return next((asset for asset in self.assets if asset.name == name), None)


@dataclass(frozen=True)
class RawContents:
    """A file's bytes from the contents API, with the ETag for the next conditional read."""

    data: bytes
    etag: str | None
    sha: str  # the git blob sha, computed from the bytes: what put_contents needs


@dataclass(frozen=True)
class FileCommit:
    """The outcome of a contents write."""

    path: str
    sha: str  # the new blob sha
    commit_sha: str
    created: bool  # 201 (new file) rather than 200 (update)

    @classmethod
    def from_json(cls, data: Any, created: bool) -> FileCommit:
        content = _field(data, "content", dict)
        commit = _field(data, "commit", dict)
        return cls(
            _field(content, "path", str),
            _field(content, "sha", str),
            _field(commit, "sha", str),
            created,
        )


@dataclass(frozen=True)
class Ref:
    """A git reference such as refs/heads/main and the commit it points at."""

    ref: str
    sha: str

    @classmethod
    def from_json(cls, data: Any) -> Ref:
        return cls(_field(data, "ref", str), _field(_field(data, "object", dict), "sha", str))
