"""The GitHub backend: packages as release assets of a repository the team already controls.

The original pywharf's layout, so a repository it filled is served unchanged:

    release     one per file: tag = name = the filename; body = TOML of the upload's metadata
    assets      <filename>, and for a wheel <filename>.metadata (PEP 658)
    index.toml  on `branch`: the original's `[[pkgs]]` entries (`url` = the asset's API URL);
                ours add the asset ids and a `[[deleted]]` list of tombstones, which the
                original ignores

GitHub's own permissions decide who may do what: a token that can pull the repository reads,
one that can push writes. Uploads, yanks and deletes act with the caller's token; sync,
downloads and proxy fetches with the server's own (the admin secret).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from pywharf.auth import Permission
from pywharf.backends import ArrivingFile
from pywharf.backends import BackendType
from pywharf.backends import IndexUpdate
from pywharf.backends import LocalFile
from pywharf.backends import Redirect
from pywharf.backends import RepairReport
from pywharf.backends import StagedUpload
from pywharf.backends import put_each
from pywharf.backends.atomic import local_directory
from pywharf.backends.download_cache import DownloadCache
from pywharf.backends.events import repair_report
from pywharf.backends.events import tombstone
from pywharf.backends.github_errors import storage_errors
from pywharf.backends.github_index import INDEX_WRITE_ATTEMPTS
from pywharf.backends.github_index import IndexDocument
from pywharf.backends.github_index import RemoteIndex
from pywharf.backends.github_layout import IndexFile
from pywharf.backends.github_layout import Location
from pywharf.backends.github_layout import build_document
from pywharf.backends.github_layout import find_assets
from pywharf.backends.github_layout import parse_document
from pywharf.backends.github_layout import published_file
from pywharf.backends.github_layout import remove_entry
from pywharf.backends.github_layout import same_document
from pywharf.backends.github_layout import set_status
from pywharf.backends.github_layout import set_yank
from pywharf.backends.github_layout import with_yank
from pywharf.backends.github_upload import UploadSaga
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.github import GitHubClient
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.config import typed_settings
from pywharf.errors import ConfigError
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.index import Add
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Status
from pywharf.index import Yank

__all__ = ["INDEX_WRITE_ATTEMPTS", "GitHubBackend", "GitHubSettings"]

MAX_ASSET_BYTES = 2 * 1024**3 - 1  # GitHub: each release asset must be under 2 GiB
DOWNLOAD_MODES = ("redirect", "proxy")
SETTINGS = (
    Setting("owner", str, None, "User or organization that owns the package repository.", True),
    Setting("repo", str, None, "Name of the GitHub repository holding the packages.", True),
    Setting("branch", str, "", "Branch of the index file ('': the repository's default)."),
    Setting("index_filename", str, "index.toml", "Path of the index file in the repository."),
    Setting("max_file_bytes", int, MAX_ASSET_BYTES, "Largest file accepted for upload, in bytes.",
            bounds=(1, MAX_ASSET_BYTES)),
    Setting("sync_index_interval", float, 60.0, "Seconds between index syncs with GitHub.",
            bounds=(0, 10**9)),
    Setting("api_url", str, "https://api.github.com",
            "GitHub's REST API (GitHub Enterprise Server: https://HOST/api/v3)."),
    Setting("uploads_url", str, "https://uploads.github.com",
            "GitHub's asset upload host (GitHub Enterprise Server: https://HOST/api/uploads)."),
    Setting("download", str, "redirect",
            "'redirect': clients fetch GitHub's signed URL; 'proxy': the server streams the "
            "file and keeps a verified copy in ROOT.", choices=DOWNLOAD_MODES),
)  # fmt: skip


@dataclass(frozen=True)
class GitHubSettings:
    """A `type = "github"` section, checked against `SETTINGS`."""

    owner: str
    repo: str
    branch: str
    index_filename: str
    max_file_bytes: int
    sync_index_interval: float
    api_url: str
    uploads_url: str
    download: str


# A wrong token costs one GitHub call; the auth cache allows this many per second in all.
AUTH_CHECKS_PER_SECOND = 2.0
_Files = dict[str, tuple[FileRecord, Location]]


def _usable_token(secret: str) -> bool:
    return bool(secret) and secret.isprintable() and " " not in secret


class GitHubBackend:
    """Packages as releases of `owner/repo` on GitHub (or GitHub Enterprise Server).

    `sleep` and `clock` are GitHub's waits (retries, backoff, a draft holding a tag) and the
    time written into the index; tests pass their own so that backoff costs no real time.
    """

    SETTINGS = SETTINGS
    auth_checks_per_second = AUTH_CHECKS_PER_SECOND
    reads_locally = False  # a file is fetched from GitHub's release assets
    keeps_spool_file = False  # its bytes go to a release asset

    @storage_errors(callers_token=False)
    def __init__(
        self,
        config: RepositoryConfig,
        root: Path,
        admin_secret: str | None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = typed_settings(config, GitHubSettings)
        self.name = config.name
        self.max_file_bytes = settings.max_file_bytes
        self.sync_index_interval = settings.sync_index_interval
        self.owner, self.repo, self.download = settings.owner, settings.repo, settings.download
        for key in ("owner", "repo", "index_filename", "api_url", "uploads_url"):
            if not getattr(settings, key):
                raise ConfigError(f"{config.source}: {key} must not be empty")
        self._clock = clock
        self._api = GitHubClient(
            admin_secret, settings.api_url, settings.uploads_url, sleep=sleep, clock=clock
        )
        self._index = IndexDocument(
            self._api, self.owner, self.repo, settings.index_filename, settings.branch,
            repository=self.name, clock=clock, has_admin=admin_secret is not None,
        )  # fmt: skip
        self._uploads = UploadSaga(self._index, self._api, sleep=sleep)
        self.spool_dir = local_directory(root / "cache" / config.name / "spool", self.name)
        self._downloads = DownloadCache(root / "cache" / config.name / "files")

    def __repr__(self) -> str:
        return f"GitHubBackend({self.owner}/{self.repo}, {self._api!r})"

    def _as(self, credential: str) -> GitHubClient:
        """The caller's own token; none given (an upstream cache fill, an `import`): the
        server's, which then needs push rights."""
        return self._api.with_token(credential) if credential else self._api

    # --- auth ----------------------------------------------------------------------------------

    @storage_errors(callers_token=True)
    def authorize(self, secret: str) -> Permission:
        """One `GET /repos/{owner}/{repo}` with the token: push writes, pull reads."""
        if not _usable_token(secret):
            return Permission.NONE
        try:
            repository = self._as(secret).get_repo(self.owner, self.repo)
        except (ResourceNotFound, Refused):
            # GitHub hides a private repository from tokens without access (404); a rate limit
            # or an outage stays a StorageUnavailable (503), never a wrong-secret 401.
            return Permission.NONE
        if repository.permissions.push and not repository.archived:
            return Permission.WRITE
        return Permission.READ if repository.permissions.pull else Permission.NONE

    # --- the index, uploads, yanks and deletes -------------------------------------------------

    @storage_errors(callers_token=False)
    def read_index(self, cursor: Any) -> IndexUpdate | None:
        return self._index.read(cursor)

    def store_early(self, arriving: ArrivingFile) -> None:
        return None  # a release asset is one request: it cannot be sent in parts

    @storage_errors(callers_token=True)
    def put_many(
        self, uploads: Sequence[StagedUpload], credential: str
    ) -> list[FileRecord | DistributionExists]:
        return put_each(self, uploads, credential)

    @storage_errors(callers_token=True)
    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        return self._uploads.put(self._as(credential), upload)

    @storage_errors(callers_token=True)
    def apply_change(self, event: Event, credential: str) -> None:
        """Yank: the release body and the index; delete: the release, its tag, the index;
        a project status: the index."""
        if isinstance(event, Add):
            raise StorageError("an Add is stored by put()")
        client = self._as(credential)
        if isinstance(event, Yank):
            self._yank(client, event)
        elif isinstance(event, Status):  # PEP 792: in the index file only, as `[[status]]`
            change = functools.partial(set_status, status=event)
            self._index.change(client, change, f"Set the status of {event.project}")
        else:
            self._delete(client, event.project, event.filename)

    def _yank(self, client: GitHubClient, event: Yank) -> None:
        filename = event.filename
        release = client.get_release_by_tag(self.owner, self.repo, filename)
        body = with_yank(release.body, event.reason)
        if body is not None:
            client.update_release(self.owner, self.repo, release.id, body=body)
        yank = functools.partial(set_yank, filename=filename, reason=event.reason)
        verb = "Yank" if event.reason is not None else "Un-yank"
        self._index.change(client, yank, f"{verb} {filename}")

    def _delete(self, client: GitHubClient, project: str, filename: str) -> None:
        try:
            release = client.get_release_by_tag(self.owner, self.repo, filename)
        except ResourceNotFound:
            pass  # already gone from GitHub: only the index still lists it
        else:
            client.delete_release(self.owner, self.repo, release.id)
            self._uploads.delete_tag(client, filename)
        remove = functools.partial(remove_entry, project=project, filename=filename)
        self._index.change(client, remove, f"Delete {filename}")
        gone = self._index.forget(filename)
        ids = (gone.asset_id, gone.metadata_asset_id) if gone is not None else ()
        self._downloads.forget(filename, *ids)  # no more redirects to it from this server
        self._downloads.forget(filename + ".metadata")

    # --- downloads -----------------------------------------------------------------------------

    def _location(self, filename: str) -> Location:
        """From the index; else (listed by another server, not synced yet) from its release."""
        known = self._index.location(filename)
        if known is not None:
            return known
        release = self._api.get_release_by_tag(self.owner, self.repo, filename)
        asset, metadata = find_assets(release, None)
        if asset is None:
            raise StorageNotFound(f"release {filename!r} has no asset for the file")
        location = Location(asset.id, asset.url, asset.name, metadata.id if metadata else None)
        self._index.remember(filename, location)
        return location

    @storage_errors(callers_token=False)
    def open(self, record: FileRecord) -> LocalFile | Redirect:
        location = self._location(record.filename)
        return self._open(record.filename, location.asset_id, record.sha256)

    @storage_errors(callers_token=False)
    def open_metadata(self, record: FileRecord) -> LocalFile | Redirect:
        location = self._location(record.filename)
        if location.metadata_asset_id is None or record.metadata_sha256 is None:
            raise StorageNotFound(f"{record.filename!r} has no metadata file")
        name = record.filename + ".metadata"
        return self._open(name, location.metadata_asset_id, record.metadata_sha256)

    def _open(self, name: str, asset_id: int, sha256: str) -> LocalFile | Redirect:
        if self.download == "redirect":
            sign = functools.partial(self._api.asset_download_url, self.owner, self.repo, asset_id)
            url = self._downloads.signed_url(asset_id, sign)
            if url is not None:
                return Redirect(url)
        # Proxy mode, or GitHub sent the bytes itself: a verified copy, fetched once.
        fetch = functools.partial(self._api.stream_asset, self.owner, self.repo, asset_id)
        return self._downloads.local_copy(name, sha256, fetch)

    # --- rebuild_index -------------------------------------------------------------------------

    @storage_errors(callers_token=False)
    def rebuild_index(self) -> RepairReport:
        """List the releases and write the index file they describe, if it changed."""
        reports: list[RepairReport] = []
        published: _Files = {}

        def attempt(remote: RemoteIndex) -> dict[str, Any] | None:
            current = remote.listed
            assert current is not None  # a fresh read lists what it holds
            if not reports:  # listed once: a retry only re-reads the index
                published.update(self._published(current.locations))
            files, tombstones = self._reconcile(published, current)
            reports.append(repair_report(current.records, {n: f[0] for n, f in files.items()}))
            document = build_document(files, tombstones, int(self._clock()), current.statuses)
            data = tomli_w.dumps(document).encode()
            unchanged = same_document(parse_document(data, "new index"), current.document)
            return None if unchanged else document

        message = "Index file updated by pywharf update_index."
        self._index.commit(self._api, attempt, message, fresh=True, again="run update_index again")
        return reports[-1]

    def _published(self, known: Mapping[str, Location]) -> _Files:
        """Every published release that holds a file: all pages, drafts skipped."""
        found = {}
        for release in self._api.list_releases(self.owner, self.repo):
            if release.draft:
                continue
            parsed = published_file(release, release.published_at, known.get(release.tag_name))
            if parsed is not None:
                found[release.tag_name] = parsed
        return found

    def _confirm(self, filename: str, known: Location | None) -> tuple[FileRecord, Location] | None:
        """A file the index lists but the listing lacked: published meanwhile, or gone?"""
        try:
            release = self._api.get_release_by_tag(self.owner, self.repo, filename)
        except ResourceNotFound:
            return None
        return published_file(release, None, known)

    def _reconcile(
        self, published: _Files, current: IndexFile
    ) -> tuple[_Files, dict[str, dict[str, Any]]]:
        """The listed releases, plus indexed files published after the listing; a file whose
        release is really gone leaves a tombstone."""
        files = dict(published)
        tombstones = dict(current.tombstones)
        for name in sorted(current.records.keys() - files.keys()):
            confirmed = self._confirm(name, current.locations.get(name))
            if confirmed is not None:
                files[name] = confirmed
                continue
            gone = current.records[name]
            tombstones[name] = tombstone(name, gone.project, gone.sha256, gone.origin)
        for name in files:
            tombstones.pop(name, None)
        return files, tombstones

    # --- tokens: GitHub's own decide ------------------------------------------------------------
    # Every upload, yank and delete acts on GitHub with the caller's own GitHub token, which
    # GitHub scopes and revokes itself (fine-grained tokens per repository). A pywharf token
    # carries no GitHub credential to act with, so it could at most read: not worth a second
    # way in. Trusted publishing does not apply here for the same reason.

    def read_tokens(self) -> bytes:
        return b""

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        raise ConfigError(
            f"repository {self.name!r} is on GitHub: GitHub's own tokens decide who may do what "
            "(a fine-grained token per repository); pywharf tokens do not apply"
        )

    def close(self) -> None:
        self._api.close()


_: BackendType = GitHubBackend  # mypy --strict checks the class against the contract
