"""`github.init_pkg_repo` and `github.gen_gh_pages`: set up a package repository on GitHub.

The workflow `init_pkg_repo` installs runs `update_index` from a copy of the very pywharf.pyz
that created the repository, committed under `.github/pywharf/`: it needs nothing but the
runner's python3, no package registry and no container image, and it cannot drift from the
servers' version unless someone replaces the file.
"""

from __future__ import annotations

import sys
import time
import zipfile
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.parse import urlsplit

import tomli_w

from pywharf.backends.github_errors import storage_errors
from pywharf.backends.github_layout import IndexFile
from pywharf.backends.github_layout import empty_index
from pywharf.backends.github_layout import read_document
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.github import GitHubClient
from pywharf.clients.github_models import GitHubRepository
from pywharf.errors import ConfigError
from pywharf.index import Index
from pywharf.settings import GenGhPagesOptions
from pywharf.settings import InitPkgRepoOptions
from pywharf.simple import API_VERSION

__all__ = ["run_gen_gh_pages", "run_init_pkg_repo", "web_url", "workflow_yaml"]

PYZ_PATH = ".github/pywharf/pywharf.pyz"
WORKFLOW_PATH = ".github/workflows/update-index.yml"
PAGES_FOLDER = "_site"
# Hourly: the servers write the index themselves; the workflow repairs what they could not
# see (releases made by hand, by the original pywharf, or by an upload that was cut off).
SCHEDULE = "17 * * * *"
REF_WAITS = (0.5, 1.0, 2.0, 4.0)  # a new repository's first commit takes a moment to appear

_WORKFLOW = """\
# Written by `pywharf github.init_pkg_repo`. It rebuilds {index_filename} from the releases when
# a release changes, and every hour: pywharf servers update the index themselves on upload, so
# this only repairs what they could not see. It runs the pywharf.pyz committed next to it.
name: update-index

on:
  release:
    types: [published, edited, deleted, unpublished]
  schedule:
    - cron: "{schedule}"
  workflow_dispatch:

concurrency:
  group: update-index

jobs:
  update-index:
    runs-on: ubuntu-latest
    permissions:
      contents: write
    env:
      PYWHARF_GITHUB_TOKEN: ${{{{ secrets.GITHUB_TOKEN }}}}
      OWNER: ${{{{ github.repository_owner }}}}
    steps:
      - uses: actions/checkout@v4
        with:
          sparse-checkout: .github/pywharf
      - name: Rebuild the index from the releases
        run: >-
          python3 {pyz} update_index github {name}
          --secret_env PYWHARF_GITHUB_TOKEN --owner "$OWNER" --repo "${{GITHUB_REPOSITORY#*/}}"
          {branch}--index_filename {index_filename} --api_url "$GITHUB_API_URL"
"""
_PAGES_STEPS = """\
      - name: Write the static index pages
        run: >-
          python3 {pyz} github.gen_gh_pages {name} "$PYWHARF_GITHUB_TOKEN" "$OWNER"
          "${{GITHUB_REPOSITORY#*/}}" {folder} {branch}--index_filename {index_filename}
          --api_url "$GITHUB_API_URL"
      - uses: actions/upload-pages-artifact@v3
        with:
          path: {folder}

  deploy-pages:
    needs: update-index
    runs-on: ubuntu-latest
    permissions:
      pages: write
      id-token: write
    environment:
      name: github-pages
      url: ${{{{ steps.deployment.outputs.page_url }}}}
    steps:
      - id: deployment
        uses: actions/deploy-pages@v4
"""


def workflow_yaml(name: str, branch: str, index_filename: str, pages: bool) -> str:
    """The update-index workflow: current Actions syntax, the token only through `env`.

    Without a `branch` the index lives on the default branch, looked up at each run.
    """
    branch_flag = f"--branch {_shell_word(branch)} " if branch else ""
    values = {"name": _shell_word(name), "branch": branch_flag, "pyz": PYZ_PATH,
              "index_filename": _shell_word(index_filename), "schedule": SCHEDULE,
              "folder": PAGES_FOLDER}  # fmt: skip
    text = _WORKFLOW.format(**values)
    return text + _PAGES_STEPS.format(**values) if pages else text


def _shell_word(value: str) -> str:
    """A value the workflow passes on a command line; anything unusual is refused."""
    if not value or not all(c.isalnum() or c in "._-/" for c in value):
        raise ConfigError(f"{value!r}: use letters, digits and . _ - / only")
    return value


def web_url(api_url: str) -> str:
    """The web host of an API: github.com for api.github.com, https://HOST for GHES."""
    parts = urlsplit(api_url.rstrip("/"))
    host = parts.netloc.removeprefix("api.") if parts.netloc.startswith("api.") else parts.netloc
    return f"{parts.scheme}://{host}{parts.path.removesuffix('/api/v3')}"


def _running_pyz() -> Path | None:
    """The zipapp this process runs from, if any (shiv keeps argv[0] pointing at it)."""
    candidate = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if candidate is not None and candidate.is_file() and zipfile.is_zipfile(candidate):
        return candidate.resolve()
    return None


def _pyz_bytes(option: str) -> bytes:
    path = Path(option) if option else _running_pyz()
    if path is None:
        raise ConfigError(
            "github.init_pkg_repo: the workflow runs a copy of pywharf.pyz; run this command "
            "from the pyz, or pass --pyz PATH"
        )
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"--pyz: cannot read {path}: {error}") from None


# --- init_pkg_repo --------------------------------------------------------------------------------


def _create(client: GitHubClient, options: InitPkgRepoOptions) -> GitHubRepository:
    """A private repository with a first commit, for the token's user or an organization."""
    login = client.get_user().login
    owner = options.owner or login
    description = f"Python packages served by pywharf (created by {login})."
    in_org = owner.lower() != login.lower()
    return client.create_repo(
        owner if in_org else None, options.repo, private=True, description=description
    )


def _head(client: GitHubClient, repository: GitHubRepository) -> str:
    """The default branch's commit; GitHub may need a moment after creating the repository."""
    for pause in (*REF_WAITS, None):
        try:
            branch = f"heads/{repository.default_branch}"
            return client.get_ref(repository.owner, repository.name, branch).sha
        except ResourceNotFound:
            if pause is None:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def _config_text(options: InitPkgRepoOptions, owner: str, branch: str) -> str:
    section: dict[str, Any] = {"type": "github", "owner": owner, "repo": options.repo}
    section.update({"branch": branch} if branch else {})
    section["index_filename"] = options.index_filename
    section["sync_index_interval"] = options.sync_index_interval
    if options.api_url != "https://api.github.com":
        section["api_url"] = options.api_url
    secret = {"type": "github", "env": "PYWHARF_GITHUB_TOKEN"}
    return (
        "# The server's repository configuration (--config):\n"
        + tomli_w.dumps({options.name: section})
        + "\n# Its admin-secret file (--admin_secret): the server's own token, read access is\n"
        "# enough (it syncs the index and asks GitHub for download URLs):\n"
        + tomli_w.dumps({options.name: secret})
    )


@storage_errors(callers_token=True)
def run_init_pkg_repo(options: InitPkgRepoOptions) -> int:
    """Create the repository, commit the pyz, the workflow and an empty index; print config."""
    pages = options.enable_gh_pages
    workflow = workflow_yaml(options.name, options.branch, options.index_filename, pages)
    if options.dry_run:
        print(workflow)
        print(_config_text(options, options.owner or "<the token's user>", options.branch))
        return 0
    pyz = _pyz_bytes(options.pyz)  # checked before anything is created
    with GitHubClient(options.token, options.api_url) as client:
        repository = _create(client, options)
        owner, name = repository.owner, repository.name
        default = repository.default_branch  # GitHub's choice: main, master, or the org's
        branch = "" if options.branch in ("", default) else options.branch
        print(f"created private repository {repository.full_name} (default branch {default})")
        if branch:
            client.create_ref(owner, name, f"refs/heads/{branch}", _head(client, repository))
        client.put_contents(owner, name, PYZ_PATH, pyz, "Add pywharf.pyz for the workflow",
                            branch=default)  # fmt: skip
        workflow = workflow_yaml(options.name, branch, options.index_filename, pages)
        client.put_contents(owner, name, WORKFLOW_PATH, workflow.encode(),
                            "Add the update-index workflow", branch=default)  # fmt: skip
        empty = tomli_w.dumps(empty_index().document).encode()
        client.put_contents(owner, name, options.index_filename, empty,
                            "Index file created.", branch=branch or default)  # fmt: skip
        if pages:
            _enable_pages(client, owner, name)
    print()
    print(_config_text(options, owner, branch))
    return 0


def _enable_pages(client: GitHubClient, owner: str, name: str) -> None:
    """GitHub Pages built by the workflow; a plan without Pages only gets a warning."""
    try:
        client.enable_pages(owner, name)
    except ClientError as error:
        print(f"warning: GitHub Pages not enabled: {error}", file=sys.stderr)
        return
    print(
        "GitHub Pages enabled. The pages list your projects publicly; their download links "
        "work only for people who can read the repository (and not for pip if it is private)."
    )


# --- gen_gh_pages ---------------------------------------------------------------------------------

_PAGE = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" content="{version}">\n'
    "<title>{title}</title>\n</head>\n<body>\n<h1>{title}</h1>\n{links}</body>\n</html>\n"
)


def _page(title: str, links: list[str]) -> str:
    return _PAGE.format(version=API_VERSION, title=escape(title), links="".join(links))


def write_pages(listed: IndexFile, download_base: str, folder: Path) -> int:
    """PEP 503 pages linking each file to its release download; returns the file count."""
    index = Index(listed.records.values())
    folder.mkdir(parents=True, exist_ok=True)
    names = index.listing.names
    roots = [f'<a href="{quote(n)}/">{escape(n)}</a><br>\n' for n in names]
    (folder / "index.html").write_text(_page("Simple index", roots), encoding="utf-8")
    for name in names:
        project = index.project(name)
        assert project is not None
        links = []
        for record in project.files:
            asset = listed.locations[record.filename].name
            url = f"{download_base}/{quote(record.filename, safe='')}/{quote(asset, safe='')}"
            extra = ""
            if record.requires_python:
                extra += f' data-requires-python="{escape(record.requires_python)}"'
            if record.yanked is not None:
                extra += f' data-yanked="{escape(record.yanked)}"'
            links.append(f'<a href="{escape(url)}#sha256={record.sha256}"{extra}>'
                         f"{escape(record.filename)}</a><br>\n")  # fmt: skip
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "index.html").write_text(_page(f"Links for {name}", links), "utf-8")
    return len(index)


@storage_errors(callers_token=True)
def run_gen_gh_pages(options: GenGhPagesOptions) -> int:
    """Static pages for a repository's index (not the index itself: no metadata is published)."""
    owner, repo = options.owner, options.repo
    with GitHubClient(options.token, options.api_url) as client:
        branch = options.branch or client.get_repo(owner, repo).default_branch
        source = f"{owner}/{repo}:{options.index_filename}"
        try:
            raw = client.get_contents_raw(owner, repo, options.index_filename, ref=branch)
        except ResourceNotFound:
            raw = None
    listed = read_document(raw.data, source) if raw is not None else empty_index()
    base = f"{web_url(options.api_url)}/{quote(owner)}/{quote(repo)}/releases/download"
    count = write_pages(listed, base, Path(options.output_folder))
    print(f"wrote pages for {count} files to {options.output_folder}")
    return 0
