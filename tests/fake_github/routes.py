"""The fake GitHub's endpoints: one function per operation, over `World` state.

Each route names the OpenAPI operation it implements (path template), so the schema test
can look the response up in github-rest-subset.openapi.json.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from email.message import Message
from typing import Any
from typing import Callable
from typing import Union
from urllib.parse import unquote

from . import render
from .state import Account
from .state import Asset
from .state import Release
from .state import Repo
from .state import World
from .state import blob_sha
from .state import mangle_asset_name
from .state import timestamp

JSON_BLOB_LIMIT = 1024 * 1024  # the JSON contents API stops at 1 MB (raw goes to 100 MB)
SIGNED_URL_SECONDS = 300
PULL, PUSH, ADMIN = 1, 2, 3
# What http.server hands over (an email Message) or a plain mapping: both have get/items.
Headers = Union[Mapping[str, str], "Message[str, str]"]


@dataclass
class Request:
    origin: str  # "api", "uploads" or "storage"
    method: str
    path: str  # still percent-encoded
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    user: Account | None = None


@dataclass
class Reply:
    status: int
    body: Any = None  # JSON-able, raw bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


class Answer(Exception):
    """Stop handling and send this reply (404s, validation failures...)."""

    def __init__(self, status: int, body: Any = None, **headers: str) -> None:
        super().__init__(status)
        self.reply = Reply(status, body, dict(headers))


@dataclass
class Ctx:
    world: World
    request: Request
    api: str
    uploads: str
    storage: str

    def json(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise Answer(400, render.error("Problems parsing JSON")) from None
        if not isinstance(body, dict):
            raise Answer(400, render.error("Problems parsing JSON"))
        return body

    def query(self, name: str, default: str = "") -> str:
        return self.request.query.get(name, [default])[0]

    def require_user(self) -> Account:
        if self.request.user is None:
            raise Answer(401, render.error("Requires authentication"))
        return self.request.user

    def level(self, repo: Repo) -> int:
        return self.world.level(self.request.user, repo)

    def repo(self, params: Mapping[str, str], need: int = PULL) -> Repo:
        """The repository named by the path; 404 when missing, invisible or not writable."""
        if "repo_id" in params:
            repo = self.world.repo_by_id(_number(params["repo_id"]))
        else:
            repo = self.world.repo(params["owner"], params["repo"])
        if repo is None or self.level(repo) < need:
            raise Answer(404, render.error("Not Found"))
        return repo

    def release(self, repo: Repo, release_id: str) -> Release:
        release = repo.releases.get(_number(release_id))
        if release is None or (release.draft and self.level(repo) < PUSH):
            raise Answer(404, render.error("Not Found"))
        return release

    def asset(self, repo: Repo, asset_id: str) -> tuple[Release, Asset]:
        found = self.world.find_asset(repo, _number(asset_id))
        if found is None or (found[0].draft and self.level(repo) < PUSH):
            raise Answer(404, render.error("Not Found"))
        return found

    def render_release(self, repo: Repo, release: Release) -> dict[str, Any]:
        return render.release(release, repo, self.world.accounts, self.api, self.uploads)

    def render_asset(self, repo: Repo, release: Release, asset: Asset) -> dict[str, Any]:
        uploader = self.world.accounts[asset.uploader.lower()]
        return render.asset(asset, release, repo, uploader, self.api)


Handler = Callable[[Ctx, Mapping[str, str]], Reply]


@dataclass(frozen=True)
class Route:
    origin: str
    method: str
    pattern: re.Pattern[str]
    operation: str | None  # the OpenAPI path template, None when outside the spec
    handler: Handler


ROUTES: list[Route] = []


def route(
    origin: str, method: str, template: str, operation: str | None = ""
) -> Callable[[Handler], Handler]:
    """Register a handler for `template` ({path} and {ref} may span slashes)."""

    def compile_part(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"(?P<{name}>.*)" if name in ("path", "ref") else f"(?P<{name}>[^/]+)"

    pattern = re.compile(re.sub(r"\\\{(\w+)\\\}", compile_part, re.escape(template)) + "$")

    def register(handler: Handler) -> Handler:
        spec = template if operation == "" else operation
        ROUTES.append(Route(origin, method, pattern, spec, handler))
        return handler

    return register


def match(origin: str, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in ROUTES:
        if candidate.origin == origin and candidate.method == method:
            found = candidate.pattern.match(path)
            if found:
                return candidate, {k: unquote(v) for k, v in found.groupdict().items()}
    return None


def _number(text: str) -> int:
    if not text.isdigit():
        raise Answer(404, render.error("Not Found"))
    return int(text)


def _missing(resource: str, name: str) -> Answer:
    return Answer(422, render.validation("Validation Failed", resource, name, "missing_field"))


def paginate(ctx: Ctx, items: list[Any], base: str) -> Reply:
    """One page of `items` with GitHub's Link header (rels only where they apply)."""
    per_page = min(max(int(ctx.query("per_page", "30") or 30), 1), 100)
    page = max(int(ctx.query("page", "1") or 1), 1)
    last = max(math.ceil(len(items) / per_page), 1)
    links = []
    if page > 1:
        links += [(page - 1, "prev")]
    if page < last:
        links += [(page + 1, "next"), (last, "last")]
    if page > 1:
        links += [(1, "first")]
    header = ", ".join(f'<{base}?per_page={per_page}&page={n}>; rel="{rel}"' for n, rel in links)
    chunk = items[(page - 1) * per_page : page * per_page]
    return Reply(200, chunk, {"Link": header} if header else {})


# -- users and repositories ------------------------------------------------------------------


@route("api", "GET", "/user")
def get_user(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    user = ctx.require_user()
    owned = sum(1 for r in ctx.world.repos.values() if r.owner.lower() == user.login.lower())
    return Reply(200, render.private_user(user, ctx.api, owned))


@route("api", "GET", "/rate_limit")
def get_rate_limit(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    who = ctx.request.user.login if ctx.request.user else "anonymous"
    return Reply(200, render.rate_limit(ctx.world.budget(who)))


@route("api", "POST", "/user/repos")
def create_user_repo(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    return _create_repo(ctx, ctx.require_user())


@route("api", "POST", "/orgs/{org}/repos")
def create_org_repo(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    user = ctx.require_user()
    org = ctx.world.account(params["org"])
    if org is None or org.type != "Organization" or user.login.lower() not in org.members:
        raise Answer(404, render.error("Not Found"))
    if org.members[user.login.lower()] != "admin":
        raise Answer(403, render.error("You need admin access to the organization"))
    return _create_repo(ctx, org)


def _create_repo(ctx: Ctx, owner: Account) -> Reply:
    body = ctx.json()
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise _missing("Repository", "name")
    if ctx.world.repo(owner.login, name) is not None:
        raise Answer(
            422,
            render.error(
                "Repository creation failed.",
                errors=[
                    {
                        "resource": "Repository",
                        "code": "custom",
                        "field": "name",
                        "message": "name already exists on this account",
                    }
                ],
            ),
        )
    repo = Repo(
        ctx.world.new_id(), owner.login, name, bool(body.get("private", False)), "main", timestamp()
    )
    if body.get("auto_init"):
        repo.commit("main", {"README.md": f"# {name}\n".encode()}, "Initial commit")
    ctx.world.repos[(owner.login.lower(), name.lower())] = repo
    url = f"{ctx.api}/repos/{repo.full_name}"
    return Reply(201, render.repository(repo, owner, ctx.api, ADMIN), {"Location": url})


@route("api", "GET", "/repos/{owner}/{repo}")
@route("api", "GET", "/repositories/{repo_id}", "/repos/{owner}/{repo}")
def get_repo(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    owner = ctx.world.accounts[repo.owner.lower()]
    level = ctx.level(repo) if ctx.request.user else None
    return Reply(200, render.repository(repo, owner, ctx.api, level))


@route("api", "PATCH", "/repos/{owner}/{repo}", None)
def update_repo(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    if ctx.level(repo) < ADMIN:
        raise Answer(403, render.error("Must have admin rights to Repository."))
    body = ctx.json()
    branch = body.get("default_branch")
    if branch is not None:
        if branch not in repo.branches:
            raise Answer(
                422,
                render.validation("Validation Failed", "Repository", "default_branch", "invalid"),
            )
        repo.default_branch = branch
    owner = ctx.world.accounts[repo.owner.lower()]
    return Reply(200, render.repository(repo, owner, ctx.api, ctx.level(repo)))


# -- releases --------------------------------------------------------------------------------


@route("api", "GET", "/repos/{owner}/{repo}/releases")
@route("api", "GET", "/repositories/{repo_id}/releases", "/repos/{owner}/{repo}/releases")
def list_releases(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    drafts = ctx.level(repo) >= PUSH  # GitHub lists drafts only to those who can push
    releases = sorted(repo.releases.values(), key=lambda r: r.id, reverse=True)
    items = [ctx.render_release(repo, r) for r in releases if drafts or not r.draft]
    return paginate(ctx, items, f"{ctx.api}/repositories/{repo.id}/releases")


@route("api", "POST", "/repos/{owner}/{repo}/releases")
def create_release(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    body = ctx.json()
    tag = body.get("tag_name")
    if not isinstance(tag, str) or not tag:
        raise _missing("Release", "tag_name")
    if not repo.branches:
        raise Answer(
            422, render.validation("Repository is empty.", "Release", "target_commitish", "invalid")
        )
    if any(r.tag_name == tag for r in repo.releases.values()):
        raise Answer(
            422, render.validation("Validation Failed", "Release", "tag_name", "already_exists")
        )
    user = ctx.require_user()
    release = Release(
        ctx.world.new_id(),
        tag,
        body.get("name"),
        body.get("body") or "",
        bool(body.get("draft", False)),
        bool(body.get("prerelease", False)),
        body.get("target_commitish") or repo.default_branch,
        user.login,
        timestamp(),
    )
    if not release.draft:
        publish(repo, release)
    repo.releases[release.id] = release
    url = f"{ctx.api}/repos/{repo.full_name}/releases/{release.id}"
    return Reply(201, ctx.render_release(repo, release), {"Location": url})


def publish(repo: Repo, release: Release) -> None:
    """Publishing stamps the release and creates its git tag, as GitHub does."""
    release.draft = False
    release.published_at = timestamp()
    head = repo.head(release.target_commitish)
    if release.tag_name not in repo.tags and head is not None:
        repo.tags[release.tag_name] = head.sha


@route("api", "GET", "/repos/{owner}/{repo}/releases/tags/{tag}")
def get_release_by_tag(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    for release in repo.releases.values():
        if release.tag_name == params["tag"] and not release.draft:  # drafts: 404
            return Reply(200, ctx.render_release(repo, release))
    raise Answer(404, render.error("Not Found"))


@route("api", "GET", "/repos/{owner}/{repo}/releases/{release_id}")
def get_release(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    return Reply(200, ctx.render_release(repo, ctx.release(repo, params["release_id"])))


@route("api", "PATCH", "/repos/{owner}/{repo}/releases/{release_id}")
def update_release(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    release = ctx.release(repo, params["release_id"])
    body = ctx.json()
    tag = body.get("tag_name", release.tag_name)
    if any(r.tag_name == tag and r is not release for r in repo.releases.values()):
        raise Answer(
            422, render.validation("Validation Failed", "Release", "tag_name", "already_exists")
        )
    release.tag_name = tag
    release.name = body.get("name", release.name)
    release.body = body.get("body", release.body) or ""
    release.prerelease = bool(body.get("prerelease", release.prerelease))
    if body.get("draft") is False and release.draft:
        publish(repo, release)
    elif body.get("draft") is True:
        release.draft, release.published_at = True, None
    return Reply(200, ctx.render_release(repo, release))


@route("api", "DELETE", "/repos/{owner}/{repo}/releases/{release_id}")
def delete_release(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    release = ctx.release(repo, params["release_id"])
    del repo.releases[release.id]  # the git tag stays, as on GitHub
    return Reply(204)


# -- assets ----------------------------------------------------------------------------------


@route("api", "GET", "/repos/{owner}/{repo}/releases/{release_id}/assets")
def list_assets(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    release = ctx.release(repo, params["release_id"])
    items = [ctx.render_asset(repo, release, a) for a in release.assets]
    return paginate(ctx, items, f"{ctx.api}/repos/{repo.full_name}/releases/{release.id}/assets")


@route("uploads", "POST", "/repos/{owner}/{repo}/releases/{release_id}/assets")
def upload_asset(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    release = ctx.release(repo, params["release_id"])
    name = ctx.query("name")
    content_type = ctx.request.headers.get("Content-Type")
    if not name:
        raise _missing("ReleaseAsset", "name")
    if not content_type:
        raise _missing("ReleaseAsset", "content_type")
    name = mangle_asset_name(name)
    if any(a.name == name for a in release.assets):
        raise Answer(
            422, render.validation("Validation Failed", "ReleaseAsset", "name", "already_exists")
        )
    user = ctx.require_user()
    asset = Asset(
        ctx.world.new_id(),
        name,
        ctx.query("label") or None,
        content_type,
        ctx.request.body,
        user.login,
        timestamp(),
    )
    release.assets.append(asset)
    return Reply(201, ctx.render_asset(repo, release, asset))


@route("api", "GET", "/repos/{owner}/{repo}/releases/assets/{asset_id}")
def get_asset(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    release, asset = ctx.asset(repo, params["asset_id"])
    if "application/octet-stream" in ctx.request.headers.get("Accept", ""):
        signature = secrets.token_urlsafe(16)
        ctx.world.signed[signature] = (asset.id, time.time() + SIGNED_URL_SECONDS)
        location = f"{ctx.storage}/{signature}/{asset.name}?sig={signature}"
        return Reply(302, None, {"Location": location}, "text/html;charset=utf-8")
    return Reply(200, ctx.render_asset(repo, release, asset))


@route("api", "PATCH", "/repos/{owner}/{repo}/releases/assets/{asset_id}")
def update_asset(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    release, asset = ctx.asset(repo, params["asset_id"])
    body = ctx.json()
    asset.name = mangle_asset_name(body.get("name") or asset.name)
    asset.label = body.get("label", asset.label)
    return Reply(200, ctx.render_asset(repo, release, asset))


@route("api", "DELETE", "/repos/{owner}/{repo}/releases/assets/{asset_id}")
def delete_asset(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    release, asset = ctx.asset(repo, params["asset_id"])
    release.assets.remove(asset)
    return Reply(204)


@route("storage", "GET", "/{signature}/{name}", None)
def download(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    """The signed-URL host: refuses a second auth mechanism, like GitHub's object store."""
    if ctx.request.headers.get("Authorization"):
        raise Answer(
            400,
            b"<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism "
            b"allowed</Message></Error>",
        )
    asset_id, expiry = ctx.world.signed.get(params["signature"], (0, 0.0))
    if ctx.query("sig") != params["signature"] or expiry < time.time():
        raise Answer(403, b"<Error><Code>AccessDenied</Code></Error>")
    for repo in ctx.world.repos.values():
        found = ctx.world.find_asset(repo, asset_id)
        if found is not None:
            found[1].download_count += 1
            return Reply(200, found[1].data, {}, "application/octet-stream")
    raise Answer(404, b"<Error><Code>NoSuchKey</Code></Error>")


# -- contents and refs -----------------------------------------------------------------------


@route("api", "GET", "/repos/{owner}/{repo}/contents/{path}")
def get_contents(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    if not repo.branches:
        raise Answer(404, render.error("This repository is empty."))
    ref = ctx.query("ref") or repo.default_branch
    commit = repo.head(ref)
    if commit is None:
        raise Answer(404, render.error(f"No commit found for the ref {ref}"))
    path = params["path"].strip("/")
    data = commit.tree.get(path)
    if data is None:
        return _directory(ctx, repo, commit.tree, path, ref)
    accept = ctx.request.headers.get("Accept", "")
    if ".raw" in accept:
        return Reply(200, data, {}, "application/vnd.github.raw; charset=utf-8")
    small = len(data) <= JSON_BLOB_LIMIT
    if not small and ".object" not in accept:
        raise Answer(
            403,
            render.validation(
                "This API returns blobs up to 1 MB in size. The requested blob is too large to "
                "fetch via the API, but you can use the Git Data API to request blobs up to "
                "100 MB in size.",
                "Blob",
                "data",
                "too_large",
            ),
        )
    return Reply(200, render.content_file(repo, path, data, ref, ctx.api, small))


def _directory(ctx: Ctx, repo: Repo, tree: dict[str, bytes], path: str, ref: str) -> Reply:
    prefix = f"{path}/" if path else ""
    children: dict[str, bytes | None] = {}
    for name, data in tree.items():
        if name.startswith(prefix):
            head, _, rest = name[len(prefix) :].partition("/")
            children[prefix + head] = None if rest else data
    if not children:
        raise Answer(404, render.error("Not Found"))
    entries = [render.content_entry(repo, p, d, ref, ctx.api) for p, d in sorted(children.items())]
    return Reply(200, entries)


@route("api", "PUT", "/repos/{owner}/{repo}/contents/{path}")
def put_contents(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    body = ctx.json()
    path = params["path"].strip("/")
    for key in ("message", "content"):
        if not isinstance(body.get(key), str):
            raise _missing("Content", key)
    try:
        data = base64.b64decode(body["content"], validate=True)
    except binascii.Error:
        raise Answer(
            422, render.validation("content is not valid Base64", "Content", "content", "invalid")
        ) from None
    branch = body.get("branch") or repo.default_branch
    if repo.branches and branch not in repo.branches:  # the branch is checked before sha
        raise Answer(404, render.error(f"Branch {branch} not found"))
    head = repo.head(branch) if repo.branches else None
    tree = dict(head.tree) if head else {}
    current = tree.get(path)
    if current is not None:
        if not body.get("sha"):
            raise Answer(422, render.error('Invalid request.\n\n"sha" wasn\'t supplied.'))
        if body["sha"] != blob_sha(current):
            raise Answer(409, render.error(f"{path} does not match {body['sha']}"))
    tree[path] = data
    commit = repo.commit(branch, tree, body["message"])
    author = ctx.require_user()
    payload = render.file_commit(repo, path, commit, branch, ctx.api, author)
    return Reply(201 if current is None else 200, payload)


@route("api", "GET", "/repos/{owner}/{repo}/git/ref/{ref}")
def get_ref(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params)
    if not repo.branches:
        raise Answer(409, render.error("Git Repository is empty."))
    kind, _, name = params["ref"].partition("/")
    sha = {"heads": repo.branches, "tags": repo.tags}.get(kind, {}).get(name)
    if sha is None:
        raise Answer(404, render.error("Not Found"))
    return Reply(200, render.git_ref(repo, f"refs/{params['ref']}", sha, ctx.api))


@route("api", "POST", "/repos/{owner}/{repo}/git/refs")
def create_ref(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    repo = ctx.repo(params, PUSH)
    if not repo.branches:
        raise Answer(409, render.error("Git Repository is empty."))
    body = ctx.json()
    ref, sha = body.get("ref"), body.get("sha")
    if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
        raise Answer(422, render.error("Reference name is invalid"))
    if sha not in repo.commits:
        raise Answer(422, render.error("Object does not exist"))
    kind, _, name = ref[len("refs/") :].partition("/")
    refs = repo.branches if kind == "heads" else repo.tags
    if name in refs:
        raise Answer(422, render.error("Reference already exists"))
    refs[name] = sha
    url = f"{ctx.api}/repos/{repo.full_name}/git/{ref}"
    return Reply(201, render.git_ref(repo, ref, sha, ctx.api), {"Location": url})


@route("api", "DELETE", "/repos/{owner}/{repo}/git/refs/{ref}", None)
def delete_ref(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    """git/delete-ref (outside the subset): the GitHub backend drops a deleted release's tag."""
    repo = ctx.repo(params, PUSH)
    kind, _, name = params["ref"].partition("/")
    refs = {"heads": repo.branches, "tags": repo.tags}.get(kind)
    if refs is None or name not in refs:
        raise Answer(422, render.error("Reference does not exist"))
    del refs[name]
    return Reply(204)


@route("api", "POST", "/repos/{owner}/{repo}/pages", None)
def create_pages_site(ctx: Ctx, params: Mapping[str, str]) -> Reply:
    """repos/create-pages-site (outside the subset): `github.init_pkg_repo --enable_gh_pages`."""
    repo = ctx.repo(params)
    if ctx.level(repo) < ADMIN:
        raise Answer(403, render.error("Must have admin rights to Repository."))
    if repo.pages is not None:
        raise Answer(409, render.error("GitHub Pages is already enabled."))
    build_type = ctx.json().get("build_type") or "legacy"
    repo.pages = build_type
    url = f"{ctx.api}/repos/{repo.full_name}/pages"
    html = f"https://{repo.owner}.github.example/{repo.name}/"
    return Reply(201, {"url": url, "status": None, "html_url": html, "build_type": build_type})
