"""GitHub's users, repositories, git refs and file contents: where the index file lives."""

from __future__ import annotations

import base64
from urllib.parse import quote

from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.github_core import GitHubCore
from pywharf.clients.github_core import decode_json
from pywharf.clients.github_core import github_message
from pywharf.clients.github_core import segment
from pywharf.clients.github_models import FileCommit
from pywharf.clients.github_models import GitHubRepository
from pywharf.clients.github_models import RawContents
from pywharf.clients.github_models import Ref
from pywharf.clients.github_models import User
from pywharf.clients.github_models import git_blob_sha

__all__ = ["RepositoryCalls"]

RAW = "application/vnd.github.raw+json"  # file bytes, up to 100 MB (JSON stops at 1 MB)
OBJECT = "application/vnd.github.object+json"  # metadata without the content over 1 MB


def _repo(owner: str, repo: str) -> str:
    return f"/repos/{segment(owner)}/{segment(repo)}"


class RepositoryCalls(GitHubCore):
    """The token's user, repositories, git refs, and files read and written by path."""

    def get_user(self) -> User:
        return User.from_json(self._json("GET", "/user", "identify the token's user"))

    def get_repo(self, owner: str, repo: str) -> GitHubRepository:
        data = self._json("GET", _repo(owner, repo), f"read {owner}/{repo}")
        return GitHubRepository.from_json(data)

    def create_repo(
        self,
        owner: str | None,
        name: str,
        *,
        private: bool = True,
        description: str = "",
        auto_init: bool = True,
    ) -> GitHubRepository:
        """Create a repository for the token's user (owner None) or for an organization."""
        path = "/user/repos" if owner is None else f"/orgs/{segment(owner)}/repos"
        body = {
            "name": name,
            "private": private,
            "description": description,
            "auto_init": auto_init,
            "has_issues": False,
            "has_wiki": False,
            "has_projects": False,
        }
        data = self._json("POST", path, f"create repository {name!r}", ok=(201,), json_body=body)
        return GitHubRepository.from_json(data)

    def update_repo(
        self,
        owner: str,
        repo: str,
        *,
        default_branch: str | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> GitHubRepository:
        changes = {"default_branch": default_branch, "name": name, "description": description}
        body = {key: value for key, value in changes.items() if value is not None}
        # Setting absolute values: repeating the PATCH changes nothing, so retrying is safe.
        data = self._json(
            "PATCH", _repo(owner, repo), f"update {owner}/{repo}", json_body=body,
            idempotent=True,
        )  # fmt: skip
        return GitHubRepository.from_json(data)

    def enable_pages(self, owner: str, repo: str) -> None:
        """Turn GitHub Pages on, built by a workflow (not from a branch)."""
        self._json(
            "POST", f"{_repo(owner, repo)}/pages", f"enable GitHub Pages for {owner}/{repo}",
            ok=(201,), json_body={"build_type": "workflow"},
        )  # fmt: skip

    # -- git refs --------------------------------------------------------------------------

    def get_ref(self, owner: str, repo: str, ref: str) -> Ref:
        """A ref such as "heads/main"; ResourceNotFound if missing or the repository is empty."""
        what = f"read ref {ref!r} of {owner}/{repo}"
        url = self._url(f"{_repo(owner, repo)}/git/ref/{quote(ref, safe='/')}")
        response = self._send("GET", url)
        if response.status == 409:
            raise ResourceNotFound(f"GitHub could not {what}: the repository is empty", 409)
        if response.status != 200:
            raise self._error(response, what)
        return Ref.from_json(decode_json(response.data))

    def delete_tag(self, owner: str, repo: str, tag: str) -> None:
        """Delete a git tag (deleting its release leaves it)."""
        path = f"{_repo(owner, repo)}/git/refs/tags/{segment(tag)}"
        self._json("DELETE", path, f"delete tag {tag!r} of {owner}/{repo}", ok=(204,))

    def create_ref(self, owner: str, repo: str, ref: str, sha: str) -> Ref:
        """Create `ref` (a full name such as "refs/heads/gh-pages") at commit `sha`."""
        data = self._json(
            "POST", f"{_repo(owner, repo)}/git/refs", f"create ref {ref!r} in {owner}/{repo}",
            ok=(201,), json_body={"ref": ref, "sha": sha},
        )  # fmt: skip
        return Ref.from_json(data)

    # -- contents --------------------------------------------------------------------------

    def _contents_url(self, owner: str, repo: str, path: str, ref: str | None) -> str:
        url = f"{_repo(owner, repo)}/contents/{quote(path, safe='/')}"
        return self._url(url, {"ref": ref} if ref else None)

    def get_contents_raw(
        self, owner: str, repo: str, path: str, ref: str | None = None, etag: str | None = None
    ) -> RawContents | None:
        """A file's bytes (up to GitHub's 100 MB), or None when `etag` still matches (304)."""
        url = self._contents_url(owner, repo, path, ref)
        response = self._send("GET", url, accept=RAW, etag=etag)
        if response.status == 304:
            return None
        if response.status != 200:
            raise self._error(response, f"read {path!r} of {owner}/{repo}")
        data = response.data
        return RawContents(data, response.headers.get("etag"), git_blob_sha(data))

    def get_content_sha(self, owner: str, repo: str, path: str, ref: str | None = None) -> str:
        """A file's blob sha without its bytes (the object media type omits big content)."""
        url = self._contents_url(owner, repo, path, ref)
        data = self._json("GET", url, f"read {path!r} of {owner}/{repo}", accept=OBJECT)
        if not isinstance(data, dict) or data.get("type") != "file":
            raise ClientError(f"GitHub: {path!r} in {owner}/{repo} is not a file")
        return str(data["sha"])

    def put_contents(
        self,
        owner: str,
        repo: str,
        path: str,
        content: bytes,
        message: str,
        *,
        branch: str | None = None,
        sha: str | None = None,
    ) -> FileCommit:
        """Create (sha None) or replace the file whose blob sha is `sha`.

        Conflict when someone else wrote first: re-read, merge, retry. A retried PUT whose
        first try went through also ends in Conflict, and the re-read shows it.
        """
        payload = {"message": message, "content": base64.b64encode(content).decode()}
        payload.update({"branch": branch} if branch else {})
        payload.update({"sha": sha} if sha else {})
        response = self._send("PUT", self._contents_url(owner, repo, path, None), json_body=payload)
        if response.status in (200, 201):
            return FileCommit.from_json(decode_json(response.data), response.status == 201)
        if response.status == 409 or (response.status == 422 and b"sha" in response.data):
            detail = self._scrub(github_message(response.data))
            raise Conflict(
                f"{path!r} in {owner}/{repo} changed meanwhile ({detail})", response.status
            )
        raise self._error(response, f"write {path!r} of {owner}/{repo}")
