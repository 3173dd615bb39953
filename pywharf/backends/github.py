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

import copy
import functools
import hashlib
import io
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import tomli_w

from pywharf.auth import Permission
from pywharf.backends import BackendType
from pywharf.backends import IndexUpdate
from pywharf.backends import LocalFile
from pywharf.backends import Redirect
from pywharf.backends import RepairReport
from pywharf.backends import StagedUpload
from pywharf.backends.events import diff_events
from pywharf.backends.events import repair_report
from pywharf.backends.events import tombstone
from pywharf.backends.events import tombstone_events
from pywharf.backends.github_layout import IndexFile
from pywharf.backends.github_layout import Location
from pywharf.backends.github_layout import add_entry
from pywharf.backends.github_layout import build_document
from pywharf.backends.github_layout import content_type_of
from pywharf.backends.github_layout import empty_index
from pywharf.backends.github_layout import find_assets
from pywharf.backends.github_layout import parse_document
from pywharf.backends.github_layout import published_file
from pywharf.backends.github_layout import read_document
from pywharf.backends.github_layout import release_body
from pywharf.backends.github_layout import remove_entry
from pywharf.backends.github_layout import same_document
from pywharf.backends.github_layout import set_yank
from pywharf.backends.github_layout import with_yank
from pywharf.clients.github import GitHubClient
from pywharf.clients.github_models import Release
from pywharf.config import RepositoryConfig
from pywharf.config import Setting
from pywharf.errors import ConfigError
from pywharf.errors import ContentConflict
from pywharf.errors import CredentialRefused
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable
from pywharf.index import Add
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Yank

__all__ = ["GitHubBackend"]

log = logging.getLogger("pywharf.github")

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
            "file and keeps a verified copy in ROOT."),
)  # fmt: skip
# A wrong token costs one GitHub call; the auth cache allows this many per second in all.
AUTH_CHECKS_PER_SECOND = 2.0
INDEX_WRITE_ATTEMPTS = 5  # re-read and re-apply after a concurrent index write, this often
# A draft release holds the tag while another upload of the filename is under way: wait
# this long (seconds, in steps) for it to be published or dropped before answering 503.
DRAFT_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 5.0)
SIGNED_URL_REUSE_SECONDS = 60.0  # GitHub's signed URLs live about 5 minutes
MAX_SIGNED_URLS = 4096
KEPT_SNAPSHOTS = 4  # index versions remembered to answer a cursor with only what changed
_MISSING = "missing"  # the cursor of an index file that does not exist yet


def _usable_token(secret: str) -> bool:
    return bool(secret) and secret.isprintable() and " " not in secret


@dataclass(frozen=True)
class RemoteIndex:
    """The index file as last read or written: its TOML document and blob sha (None: absent)."""

    document: dict[str, Any]
    sha: str | None


class GitHubBackend:
    """Packages as releases of `owner/repo` on GitHub (or GitHub Enterprise Server)."""

    SETTINGS = SETTINGS
    auth_checks_per_second = AUTH_CHECKS_PER_SECOND

    def __init__(self, config: RepositoryConfig, root: Path, admin_secret: str | None) -> None:
        self.name = config.name
        self.max_file_bytes: int = config["max_file_bytes"]
        self.sync_index_interval: float = config["sync_index_interval"]
        self.owner: str = config["owner"]
        self.repo: str = config["repo"]
        self.index_filename: str = config["index_filename"]
        self.download: str = config["download"]
        for key in ("owner", "repo", "index_filename", "api_url", "uploads_url"):
            if not config[key]:
                raise ConfigError(f"{config.source}: {key} must not be empty")
        if self.download not in DOWNLOAD_MODES:
            raise ConfigError(
                f"{config.source}: download must be 'redirect' or 'proxy', not {self.download!r}"
            )
        self._configured_branch: str = config["branch"]
        self._branch: str | None = None
        self._has_admin = admin_secret is not None
        self._api = GitHubClient(admin_secret, config["api_url"], config["uploads_url"])
        self.spool_dir = root / "cache" / config.name / "spool"
        self._files = root / "cache" / config.name / "files"
        self._lock = threading.Lock()  # guards the dicts below
        self._index_lock = threading.Lock()  # one index write at a time from this server
        self._locations: dict[str, Location] = {}
        self._remote: RemoteIndex | None = None
        self._snapshots: OrderedDict[str, dict[str, FileRecord]] = OrderedDict()
        self._signed: dict[int, tuple[str, float]] = {}
        self._downloads: dict[str, threading.Lock] = {}
        self._make_directories()

    def __repr__(self) -> str:
        return f"GitHubBackend({self.owner}/{self.repo}, {self._api!r})"

    @property
    def _repo_path(self) -> str:
        return f"/repos/{quote(self.owner, safe='')}/{quote(self.repo, safe='')}"

    def _branch_name(self) -> str:
        """The index branch: as configured, else the repository's default (looked up once)."""
        if self._branch is None:
            branch = self._configured_branch
            if not branch:
                try:
                    branch = self._api.get_repo(self.owner, self.repo).default_branch
                except StorageNotFound as error:
                    hint = "" if self._has_admin else " (no admin secret is configured for it)"
                    raise StorageNotFound(f"repository {self.name!r}: {error}{hint}") from None
            self._branch = branch
        return self._branch

    def _as(self, credential: str) -> GitHubClient:
        return self._api.with_token(credential)

    # --- auth ----------------------------------------------------------------------------------

    def authorize(self, secret: str) -> Permission:
        """One `GET /repos/{owner}/{repo}` with the token: push writes, pull reads."""
        if not _usable_token(secret):
            return Permission.NONE
        try:
            repository = self._as(secret).get_repo(self.owner, self.repo)
        except (StorageNotFound, CredentialRefused):
            # GitHub hides a private repository from tokens without access (404); a rate limit
            # or an outage stays a StorageUnavailable (503), never a wrong-secret 401.
            return Permission.NONE
        if repository.permissions.push and not repository.archived:
            return Permission.WRITE
        return Permission.READ if repository.permissions.pull else Permission.NONE

    # --- the index -----------------------------------------------------------------------------

    def read_index(self, cursor: Any) -> IndexUpdate | None:
        """A conditional read of the index file: unchanged costs GitHub nothing (304)."""
        branch = self._branch_name()
        etag = cursor if isinstance(cursor, str) and cursor != _MISSING else None
        source = f"{self.owner}/{self.repo}:{self.index_filename}"
        try:
            raw = self._api.get_contents_raw(
                self.owner, self.repo, self.index_filename, ref=branch, etag=etag
            )
        except StorageNotFound:  # no upload yet (or the branch is missing): an empty index
            if cursor == _MISSING:
                return None
            self._remember_remote(RemoteIndex(empty_index().document, None))
            return self._update(cursor, _MISSING, empty_index())
        if raw is None:
            return None
        listed = read_document(raw.data, source)
        self._remember_remote(RemoteIndex(listed.document, raw.sha))
        return self._update(cursor, raw.etag or raw.sha, listed)

    def _update(self, cursor: Any, new_cursor: str, listed: IndexFile) -> IndexUpdate:
        """The whole index, or only what changed when `cursor` is a version we remember."""
        records = listed.records
        with self._lock:
            self._locations = dict(listed.locations)
            old = self._snapshots.get(cursor) if isinstance(cursor, str) else None
            self._snapshots[new_cursor] = records
            self._snapshots.move_to_end(new_cursor)
            while len(self._snapshots) > KEPT_SNAPSHOTS:
                self._snapshots.popitem(last=False)
        if old is not None:
            return IndexUpdate(tuple(diff_events(old, records)), False, new_cursor, listed.mtime)
        events: list[Event] = [Add(records[name]) for name in sorted(records)]
        events += tombstone_events(listed.tombstones)
        return IndexUpdate(tuple(events), True, new_cursor, listed.mtime)

    def _remember_remote(self, remote: RemoteIndex) -> None:
        with self._lock:
            self._remote = remote

    def _fetch_remote(self, client: GitHubClient) -> tuple[IndexFile, str | None]:
        """The index file as it is now, and its blob sha (None: it does not exist)."""
        try:
            raw = client.get_contents_raw(
                self.owner, self.repo, self.index_filename, ref=self._branch_name()
            )
        except StorageNotFound:
            return empty_index(), None
        assert raw is not None  # no etag was sent
        return read_document(raw.data, f"{self.owner}/{self.repo}:{self.index_filename}"), raw.sha

    def _write_index(
        self, client: GitHubClient, change: Callable[[dict[str, Any]], bool], message: str
    ) -> None:
        """Apply `change` to the remote index file and write it with its sha; on a lost race
        (someone wrote in between) re-read and apply again, a bounded number of times."""
        with self._index_lock:
            with self._lock:
                remote = self._remote
            for _ in range(INDEX_WRITE_ATTEMPTS):
                if remote is None:
                    listed, sha = self._fetch_remote(client)
                    remote = RemoteIndex(listed.document, sha)
                document = copy.deepcopy(remote.document)
                if not change(document):
                    return
                document["mtime"] = int(time.time())
                try:
                    commit = client.put_contents(
                        self.owner, self.repo, self.index_filename,
                        tomli_w.dumps(document).encode(), message,
                        branch=self._branch_name(), sha=remote.sha,
                    )  # fmt: skip
                except ContentConflict:
                    remote = None  # stale: read it again
                    continue
                self._remember_remote(RemoteIndex(document, commit.sha))
                return
        raise StorageUnavailable(
            f"{self.index_filename!r} in {self.owner}/{self.repo} kept changing under us "
            f"({INDEX_WRITE_ATTEMPTS} tries); try again"
        )

    # --- uploads -------------------------------------------------------------------------------

    def put(self, upload: StagedUpload, credential: str) -> FileRecord:
        """Draft release, assets, publish, index entry; any failure deletes the release."""
        client = self._as(credential)
        record = upload.record
        release = self._create_release(client, record, release_body(upload.form, record))
        if isinstance(release, FileRecord):
            return release  # identical bytes were stored already
        try:
            location = self._upload_assets(client, release, upload)
        except BaseException:
            self._discard(client, release, published=False)
            raise
        try:
            client.update_release(self.owner, self.repo, release.id, draft=False)
        except StorageError:
            # Perhaps another server published this filename first: one release per tag.
            self._discard(client, release, published=False)
            found = self._published_record(client, record)
            if found is None:
                raise
            return found
        try:
            add = functools.partial(add_entry, record=record, location=location)
            self._write_index(client, add, f"Add {record.filename}")
        except BaseException:
            self._discard(client, release, published=True)
            raise
        with self._lock:
            self._locations[record.filename] = location
        return record

    def _create_release(
        self, client: GitHubClient, record: FileRecord, body: str
    ) -> Release | FileRecord:
        """A new draft release for the file, or the stored record of identical bytes."""
        for pause in (*DRAFT_WAITS, None):
            try:
                return client.create_release(
                    self.owner, self.repo, record.filename, body=body, draft=True,
                    target_commitish=self._branch_name(),
                )  # fmt: skip
            except DistributionExists:
                found = self._published_record(client, record)
                if found is not None:
                    return found
            if pause is not None:
                time.sleep(pause)  # only a draft holds the tag: another upload is under way
        raise StorageUnavailable(
            f"{record.filename!r} is being uploaded by someone else (a draft release holds "
            "its tag); try again later"
        )

    def _published_record(self, client: GitHubClient, record: FileRecord) -> FileRecord | None:
        """The stored record if a published release holds identical bytes (and the index then
        lists it); DistributionExists for other bytes; None if no published release has it."""
        try:
            release = client.get_release_by_tag(self.owner, self.repo, record.filename)
        except StorageNotFound:  # GitHub hides drafts here
            return None
        with self._lock:
            known = self._locations.get(record.filename)
        found = published_file(release, None, known)
        if found is None or found[0].sha256 != record.sha256:
            raise DistributionExists(record.filename)
        stored, location = found
        add = functools.partial(add_entry, record=stored, location=location)
        self._write_index(client, add, f"Add {record.filename}")
        with self._lock:
            self._locations[stored.filename] = location
        return stored

    def _upload_assets(
        self, client: GitHubClient, release: Release, upload: StagedUpload
    ) -> Location:
        """The file, then (wheels) its PEP 658 metadata, streamed to the uploads host."""
        filename = upload.record.filename
        try:
            with upload.path.open("rb") as file:
                asset = client.upload_asset(
                    release.upload_url, filename, file, upload.record.size,
                    content_type_of(filename),
                )  # fmt: skip
            metadata = None
            if upload.metadata is not None:
                metadata = client.upload_asset(
                    release.upload_url, filename + ".metadata", io.BytesIO(upload.metadata),
                    len(upload.metadata), "text/plain",
                )  # fmt: skip
        except DistributionExists as error:  # in a release we just made: GitHub's own hiccup
            raise StorageUnavailable(
                f"GitHub refused asset {error.filename!r} of the new release {filename!r} as a "
                "duplicate; try again"
            ) from None
        except OSError as error:
            raise StorageError(f"cannot read the upload of {filename!r}: {error}") from None
        return Location(asset.id, asset.url, asset.name, metadata.id if metadata else None)

    def _discard(self, client: GitHubClient, release: Release, published: bool) -> None:
        """Delete a release we made (and the tag its publishing made); never raises."""
        try:
            client.delete_release(self.owner, self.repo, release.id)
        except StorageNotFound:
            pass
        except StorageError as error:
            log.warning("could not delete release %r: %s", release.tag_name, error)
        if published:
            self._delete_tag(client, release.tag_name)

    def _delete_tag(self, client: GitHubClient, tag: str) -> None:
        """Deleting a release leaves its git tag; remove it too (best effort)."""
        try:
            client.call("DELETE", f"{self._repo_path}/git/refs/tags/{quote(tag, safe='')}")
        except StorageError as error:
            log.info("could not delete tag %r: %s", tag, error)

    # --- yank and delete -----------------------------------------------------------------------

    def apply_change(self, event: Event, credential: str) -> None:
        """Yank: the release body and the index; delete: the release, its tag, the index."""
        if isinstance(event, Add):
            raise StorageError("an Add is stored by put()")
        client = self._as(credential)
        filename = event.filename
        if isinstance(event, Yank):
            release = client.get_release_by_tag(self.owner, self.repo, filename)
            body = with_yank(release.body, event.reason)
            if body is not None:
                client.update_release(self.owner, self.repo, release.id, body=body)
            yank = functools.partial(set_yank, filename=filename, reason=event.reason)
            self._write_index(client, yank, f"Yank {filename}" if event.reason is not None
                              else f"Un-yank {filename}")  # fmt: skip
            return
        try:
            release = client.get_release_by_tag(self.owner, self.repo, filename)
        except StorageNotFound:
            pass  # already gone from GitHub: only the index still lists it
        else:
            client.delete_release(self.owner, self.repo, release.id)
            self._delete_tag(client, filename)
        remove = functools.partial(remove_entry, project=event.project, filename=filename)
        self._write_index(client, remove, f"Delete {filename}")
        with self._lock:
            gone = self._locations.pop(filename, None)
            if gone is not None:  # no more redirects to it from this server
                self._signed.pop(gone.asset_id, None)
                self._signed.pop(gone.metadata_asset_id or 0, None)
        for name in (filename, filename + ".metadata"):
            (self._files / name).unlink(missing_ok=True)

    # --- downloads -----------------------------------------------------------------------------

    def _location(self, filename: str) -> Location:
        """From the index; else (listed by another server, not synced yet) from its release."""
        with self._lock:
            known = self._locations.get(filename)
        if known is not None:
            return known
        release = self._api.get_release_by_tag(self.owner, self.repo, filename)
        asset, metadata = find_assets(release, None)
        if asset is None:
            raise StorageNotFound(f"release {filename!r} has no asset for the file")
        location = Location(asset.id, asset.url, asset.name, metadata.id if metadata else None)
        with self._lock:
            self._locations[filename] = location
        return location

    def open(self, record: FileRecord) -> LocalFile | Redirect:
        location = self._location(record.filename)
        return self._open(record.filename, location.asset_id, record.sha256)

    def open_metadata(self, record: FileRecord) -> LocalFile | Redirect:
        location = self._location(record.filename)
        if location.metadata_asset_id is None or record.metadata_sha256 is None:
            raise StorageNotFound(f"{record.filename!r} has no metadata file")
        name = record.filename + ".metadata"
        return self._open(name, location.metadata_asset_id, record.metadata_sha256)

    def _open(self, name: str, asset_id: int, sha256: str) -> LocalFile | Redirect:
        if self.download == "redirect":
            url = self._signed_url(asset_id)
            if url is not None:
                return Redirect(url)
        return self._proxy(name, asset_id, sha256)  # proxy mode, or GitHub sent the bytes

    def _signed_url(self, asset_id: int) -> str | None:
        """GitHub's short-lived signed URL, reused for a minute (each costs one API call)."""
        now = time.monotonic()
        with self._lock:
            url, expires = self._signed.get(asset_id, ("", 0.0))
        if url and expires > now:
            return url
        found = self._api.asset_download_url(self.owner, self.repo, asset_id)
        if found is not None:
            with self._lock:
                if len(self._signed) >= MAX_SIGNED_URLS:
                    self._signed.clear()
                self._signed[asset_id] = (found, now + SIGNED_URL_REUSE_SECONDS)
        return found

    def _proxy(self, name: str, asset_id: int, sha256: str) -> LocalFile:
        """A verified local copy in ROOT/cache/<repo>/files/, fetched once."""
        path = self._files / name
        with self._lock:
            lock = self._downloads.setdefault(name, threading.Lock())
        with lock:
            try:
                return LocalFile(str(path), path.stat().st_size)
            except FileNotFoundError:
                pass
            self._fetch(path, asset_id, sha256)
            return LocalFile(str(path), path.stat().st_size)

    def _fetch(self, path: Path, asset_id: int, sha256: str) -> None:
        self._make_directories()
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        try:
            stream = self._api.stream_asset(self.owner, self.repo, asset_id)
            with stream, temporary.open("xb") as out:
                for chunk in stream:
                    out.write(chunk)
                    digest.update(chunk)
            if digest.hexdigest() != sha256:
                raise StorageError(
                    f"GitHub's copy of {path.name!r} does not match its sha256; not served"
                )
            os.replace(temporary, path)
        except OSError as error:
            raise StorageError(f"cannot keep a copy of {path.name!r}: {error}") from None
        finally:
            temporary.unlink(missing_ok=True)

    # --- rebuild_index -------------------------------------------------------------------------

    def _published(self, known: Mapping[str, Location]) -> dict[str, tuple[FileRecord, Location]]:
        """Every published release that holds a file: all pages, drafts skipped."""
        found = {}
        for item in self._api.paginate(f"{self._repo_path}/releases", {"per_page": 100}):
            release = Release.from_json(item)
            if release.draft:
                continue
            parsed = published_file(release, item.get("published_at"), known.get(release.tag_name))
            if parsed is not None:
                found[release.tag_name] = parsed
        return found

    def _confirm(self, filename: str, known: Location | None) -> tuple[FileRecord, Location] | None:
        """A file the index lists but the listing lacked: published meanwhile, or gone?"""
        try:
            release = self._api.get_release_by_tag(self.owner, self.repo, filename)
        except StorageNotFound:
            return None
        return published_file(release, None, known)

    def rebuild_index(self) -> RepairReport:
        """List the releases and write the index file they describe, if it changed."""
        current, sha = self._fetch_remote(self._api)
        published = self._published(current.locations)
        for _ in range(INDEX_WRITE_ATTEMPTS):
            files, tombstones = self._reconcile(published, current)
            report = repair_report(current.records, {name: pair[0] for name, pair in files.items()})
            document = build_document(files, tombstones, int(time.time()))
            data = tomli_w.dumps(document).encode()
            if same_document(parse_document(data, "new index"), current.document):
                return report
            try:
                commit = self._api.put_contents(
                    self.owner, self.repo, self.index_filename, data,
                    "Index file updated by pywharf update_index.", branch=self._branch_name(),
                    sha=sha,
                )  # fmt: skip
            except ContentConflict:
                current, sha = self._fetch_remote(self._api)
                continue
            self._remember_remote(RemoteIndex(document, commit.sha))
            return report
        raise StorageUnavailable(
            f"{self.index_filename!r} in {self.owner}/{self.repo} kept changing under us "
            f"({INDEX_WRITE_ATTEMPTS} tries); run update_index again"
        )

    def _reconcile(
        self, published: dict[str, tuple[FileRecord, Location]], current: IndexFile
    ) -> tuple[dict[str, tuple[FileRecord, Location]], dict[str, dict[str, Any]]]:
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
            tombstones[name] = tombstone(name, gone.project, gone.sha256)
        for name in files:
            tombstones.pop(name, None)
        return files, tombstones

    # --- housekeeping --------------------------------------------------------------------------

    def _make_directories(self) -> None:
        """The spool (uploads are staged there) and proxy folders in ROOT."""
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self._files.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"repository {self.name!r}: cannot create {error.filename}"
            ) from None

    def close(self) -> None:
        self._api.close()


_: BackendType = GitHubBackend  # mypy --strict checks the class against the contract
