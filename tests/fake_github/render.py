"""GitHub's JSON shapes for the fake's state, complete enough to pass the OpenAPI schemas.

Every URL is absolute and built from the origin that serves it, as GitHub's are.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .state import Account
from .state import Asset
from .state import Budget
from .state import Commit
from .state import Release
from .state import Repo
from .state import blob_sha
from .state import timestamp

DOCS = "https://docs.github.com/rest"
CREATED = "2020-01-01T00:00:00Z"
# The templated *_url fields of a repository: (field, suffix after the repository URL).
_REPO_LINKS = {
    "archive_url": "/{archive_format}{/ref}",
    "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}",
    "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}",
    "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}",
    "compare_url": "/compare/{base}...{head}",
    "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors",
    "deployments_url": "/deployments",
    "downloads_url": "/downloads",
    "events_url": "/events",
    "forks_url": "/forks",
    "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}",
    "git_tags_url": "/git/tags{/sha}",
    "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}",
    "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}",
    "keys_url": "/keys{/key_id}",
    "labels_url": "/labels{/name}",
    "languages_url": "/languages",
    "merges_url": "/merges",
    "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}",
    "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}",
    "stargazers_url": "/stargazers",
    "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers",
    "subscription_url": "/subscription",
    "tags_url": "/tags",
    "teams_url": "/teams",
    "trees_url": "/git/trees{/sha}",
}


def error(message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCS, **extra}


def validation(message: str, resource: str, field: str, code: str) -> dict[str, Any]:
    return error(message, errors=[{"resource": resource, "field": field, "code": code}])


def simple_user(account: Account, api: str) -> dict[str, Any]:
    url = f"{api}/users/{account.login}"
    return {
        "login": account.login,
        "id": account.id,
        "node_id": f"U_{account.id}",
        "avatar_url": f"https://avatars.example/u/{account.id}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"https://github.example/{account.login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": account.type,
        "site_admin": False,
    }


def private_user(account: Account, api: str, repos: int) -> dict[str, Any]:
    counts = (
        "followers",
        "following",
        "public_gists",
        "collaborators",
        "disk_usage",
        "private_gists",
    )
    return {
        **simple_user(account, api),
        "user_view_type": "private",
        **dict.fromkeys(("name", "company", "blog", "location", "email", "hireable", "bio")),
        **dict.fromkeys(counts, 0),
        "public_repos": 0,
        "owned_private_repos": repos,
        "total_private_repos": repos,
        "created_at": CREATED,
        "updated_at": CREATED,
        "two_factor_authentication": True,
    }


def repository(repo: Repo, owner: Account, api: str, level: int | None) -> dict[str, Any]:
    """A full-repository; `permissions` only for an authenticated caller (level not None)."""
    url = f"{api}/repos/{repo.full_name}"
    html = f"https://github.example/{repo.full_name}"
    body: dict[str, Any] = {
        "id": repo.id,
        "node_id": f"R_{repo.id}",
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": simple_user(owner, api),
        "private": repo.private,
        "visibility": "private" if repo.private else "public",
        "html_url": html,
        "description": None,
        "fork": False,
        "url": url,
        **{key: url + suffix for key, suffix in _REPO_LINKS.items()},
        "git_url": f"git://github.example/{repo.full_name}.git",
        "ssh_url": f"git@github.example:{repo.full_name}.git",
        "clone_url": f"{html}.git",
        "svn_url": html,
        "homepage": None,
        "language": None,
        "mirror_url": None,
        "license": None,
        "default_branch": repo.default_branch,
        "archived": repo.archived,
        "disabled": False,
        **dict.fromkeys(
            ("has_issues", "has_projects", "has_wiki", "has_pages", "has_discussions"), False
        ),
        **dict.fromkeys(
            (
                "forks",
                "forks_count",
                "open_issues",
                "open_issues_count",
                "size",
                "stargazers_count",
                "watchers",
                "watchers_count",
                "network_count",
                "subscribers_count",
            ),
            0,
        ),
        "pushed_at": repo.created_at,
        "created_at": repo.created_at,
        "updated_at": repo.created_at,
    }
    if level is not None:
        body["permissions"] = {
            "admin": level >= 3,
            "maintain": level >= 3,
            "push": level >= 2,
            "triage": level >= 2,
            "pull": level >= 1,
        }
    return body


def asset(a: Asset, release: Release, repo: Repo, uploader: Account, api: str) -> dict[str, Any]:
    return {
        "url": f"{api}/repos/{repo.full_name}/releases/assets/{a.id}",
        "id": a.id,
        "node_id": f"RA_{a.id}",
        "name": a.name,
        "label": a.label,
        "uploader": simple_user(uploader, api),
        "content_type": a.content_type,
        "state": a.state,
        "size": len(a.data),
        "digest": "sha256:" + hashlib.sha256(a.data).hexdigest(),
        "download_count": a.download_count,
        "created_at": a.created_at,
        "updated_at": a.created_at,
        "browser_download_url": (
            f"https://github.example/{repo.full_name}/releases/download/{release.tag_name}/{a.name}"
        ),
    }


def release(
    r: Release, repo: Repo, accounts: dict[str, Account], api: str, uploads: str
) -> dict[str, Any]:
    url = f"{api}/repos/{repo.full_name}/releases/{r.id}"
    author = accounts[r.author.lower()]
    return {
        "url": url,
        "html_url": f"https://github.example/{repo.full_name}/releases/tag/{r.tag_name}",
        "assets_url": f"{url}/assets",
        "upload_url": f"{uploads}/repos/{repo.full_name}/releases/{r.id}/assets{{?name,label}}",
        "tarball_url": f"{api}/repos/{repo.full_name}/tarball/{r.tag_name}",
        "zipball_url": f"{api}/repos/{repo.full_name}/zipball/{r.tag_name}",
        "id": r.id,
        "node_id": f"RE_{r.id}",
        "tag_name": r.tag_name,
        "target_commitish": r.target_commitish,
        "name": r.name,
        "body": r.body,
        "draft": r.draft,
        "prerelease": r.prerelease,
        "created_at": r.created_at,
        "published_at": r.published_at,
        "author": simple_user(author, api),
        "assets": [asset(a, r, repo, accounts[a.uploader.lower()], api) for a in r.assets],
    }


def _content_links(repo: Repo, path: str, ref: str, sha: str, api: str) -> dict[str, Any]:
    url = f"{api}/repos/{repo.full_name}/contents/{path}?ref={ref}"
    git = f"{api}/repos/{repo.full_name}/git/blobs/{sha}"
    html = f"https://github.example/{repo.full_name}/blob/{ref}/{path}"
    return {
        "url": url,
        "git_url": git,
        "html_url": html,
        "download_url": f"https://raw.github.example/{repo.full_name}/{ref}/{path}",
        "_links": {"self": url, "git": git, "html": html},
    }


def content_entry(repo: Repo, path: str, data: bytes | None, ref: str, api: str) -> dict[str, Any]:
    """A file (data given) or directory entry of a listing."""
    sha = blob_sha(data) if data is not None else blob_sha(path.encode())
    return {
        "type": "file" if data is not None else "dir",
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "size": len(data) if data is not None else 0,
        **_content_links(repo, path, ref, sha, api),
    }


def content_file(
    repo: Repo, path: str, data: bytes, ref: str, api: str, with_content: bool
) -> dict[str, Any]:
    """GitHub's file object; over 1 MB the content is left out ("none")."""
    encoded = base64.encodebytes(data).decode() if with_content else ""
    return {
        **content_entry(repo, path, data, ref, api),
        "content": encoded,
        "encoding": "base64" if with_content else "none",
    }


def file_commit(
    repo: Repo, path: str, commit: Commit, branch: str, api: str, author: Account
) -> dict[str, Any]:
    data = commit.tree[path]
    who = {
        "name": author.login,
        "email": f"{author.id}+{author.login}@users.noreply.example",
        "date": timestamp(),
    }
    base = f"{api}/repos/{repo.full_name}/git"
    parents = [commit.parent] if commit.parent else []
    return {
        "content": content_entry(repo, path, data, branch, api),
        "commit": {
            "sha": commit.sha,
            "node_id": f"C_{commit.sha[:8]}",
            "url": f"{base}/commits/{commit.sha}",
            "html_url": f"https://github.example/{repo.full_name}/commit/{commit.sha}",
            "author": who,
            "committer": who,
            "message": commit.message,
            "tree": {"sha": blob_sha(repr(sorted(commit.tree)).encode()), "url": f"{base}/trees"},
            "parents": [{"sha": p, "url": f"{base}/commits/{p}", "html_url": ""} for p in parents],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        },
    }


def git_ref(repo: Repo, ref: str, sha: str, api: str) -> dict[str, Any]:
    base = f"{api}/repos/{repo.full_name}/git"
    return {
        "ref": ref,
        "node_id": f"REF_{sha[:8]}",
        "url": f"{base}/{ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{base}/commits/{sha}"},
    }


def rate_limit(budget: Budget) -> dict[str, Any]:
    core = {
        "limit": budget.limit,
        "remaining": budget.remaining,
        "reset": budget.reset,
        "used": budget.used,
    }
    search = {"limit": 30, "remaining": 30, "reset": budget.reset, "used": 0}
    return {"resources": {"core": core, "search": search}, "rate": core}
