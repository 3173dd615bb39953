"""A served repository: the façade the app talks to over a backend, an index and its pages.

The app never reaches the backend, the index or the renderer: every question a request asks of a
repository is a method here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.utils import NormalizedName

from pywharf.auth import AuthCache
from pywharf.auth import Permission
from pywharf.backends import ArrivingFile
from pywharf.backends import Backend
from pywharf.backends import EarlyStore
from pywharf.backends import StagedUpload
from pywharf.config import ProjectConfig
from pywharf.dists import same_version
from pywharf.downloads import FileDownload
from pywharf.downloads import stored_download
from pywharf.errors import AuthenticationRequired
from pywharf.errors import BadRequest
from pywharf.errors import DistributionExists
from pywharf.errors import NotFound
from pywharf.errors import ProjectStatusRefuses
from pywharf.errors import PywharfError
from pywharf.errors import StorageError
from pywharf.index import ARCHIVED
from pywharf.index import QUARANTINED
from pywharf.index import STATUSES
from pywharf.index import Add
from pywharf.index import Delete
from pywharf.index import Event
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Project
from pywharf.index import Status
from pywharf.index import Yank
from pywharf.oidc import TrustedPublisher
from pywharf.pages import Page
from pywharf.pages import Renderer
from pywharf.provenance import PROVENANCE_SUFFIX
from pywharf.tokens import ALL_RIGHTS
from pywharf.tokens import TOKEN_PREFIX
from pywharf.tokens import Grant
from pywharf.tokens import TokenTable
from pywharf.tokens import with_last_use
from pywharf.upstream import NO_UPSTREAM
from pywharf.upstream import UpstreamCache
from pywharf.upstream import UpstreamSettings
from pywharf.web_queries import Description
from pywharf.web_queries import IndexStats
from pywharf.web_queries import WebQueries

# FileDownload is pywharf.downloads', re-exported for the app.
__all__ = ["Description", "FileDownload", "IndexStats", "Repository", "SyncHealth", "UploadLimits"]

# What a repository secret grants: the read secret reads, the write secret does everything.
SECRET_GRANTS = {
    Permission.READ: Grant("secret:read", frozenset({"read"})),
    Permission.WRITE: Grant("secret:write", ALL_RIGHTS),
}

_NO_LINKS = ProjectConfig()


@dataclass(frozen=True)
class UploadLimits:
    spool_dir: Path  # on the storage's file system when it is local, so storing is a link
    max_file_bytes: int
    durable_spool: bool  # the spool file becomes the stored one: synced as it arrives


@dataclass
class SyncHealth:
    """How the last syncs went, for /readyz and /metrics."""

    last_success: float = 0.0  # time.time() of the last sync the store answered
    failing: bool = False  # the last sync failed
    errors: int = 0  # failed syncs since the start


class Repository(WebQueries):
    """One `[name]` of the configuration, as the server holds it."""

    def __init__(
        self,
        backend: Backend,
        read_expires: float,
        write_expires: float,
        epoch: str = "",
        upstream: UpstreamSettings = NO_UPSTREAM,
        upstream_dir: Path | None = None,  # where upstream pages and metadata are kept
        publishers: tuple[TrustedPublisher, ...] = (),
        clock: Any = time.time,
        projects: Mapping[str, ProjectConfig] = MappingProxyType({}),  # PEP 708, by name
    ) -> None:
        self.name = backend.name
        self.projects = projects
        self.epoch = epoch  # names this configuration of the repository (browser sessions)
        self.backend = backend
        self.index = Index()
        self.renderer = Renderer()
        self.upstream = UpstreamCache(upstream, upstream_dir, backend, self.index, self.renderer)
        self.auth = AuthCache(read_expires, write_expires, backend.auth_checks_per_second)
        self.index_mtime = 0
        self._cursor: Any = None
        self._sync_lock = threading.Lock()
        self.health = SyncHealth()
        self._derived: dict[str, tuple[int, Any]] = {}  # kind -> (index generation, value)
        self.publishers = publishers
        self.tokens = TokenTable()
        self._tokens_document = b""
        self._used: dict[str, float] = {}  # token label -> last use, stored at the next sync
        self._clock = clock

    @property
    def ready(self) -> bool:
        """The index was loaded and the store answered the last sync (/readyz)."""
        return self.health.last_success > 0 and not self.health.failing

    def answers_at_once(self, file: bool) -> bool:
        """Whether a page (or with `file`, a download) waits on no network: secrets are checked
        for free, no upstream is fetched from, and a file is opened locally."""
        if self.backend.auth_checks_per_second is not None or self.upstream.settings.url:
            return False
        return self.backend.reads_locally or not file

    def permission(self, secret: str, needed: Permission) -> Permission:
        return self.auth.permission(secret, needed, self.backend.authorize)

    def grant(self, secret: str, needed: Permission) -> Grant | None:
        """What a repository secret or a created token may do here (None: neither)."""
        if secret.startswith(TOKEN_PREFIX):
            record = self.tokens.check(secret)
            if record is None:
                return None
            now = self._clock()
            if record.expires is not None and record.expires <= now:
                raise AuthenticationRequired(f"token {record.label!r} expired")
            self._used[record.label] = now
            return self.tokens.grants[record.id]
        granted = self.permission(secret, needed)
        return SECRET_GRANTS.get(granted)

    def sync_tokens(self) -> None:
        """Reload the token document when it changed; store the last uses seen here."""
        used, self._used = self._used, {}
        if used:
            self.backend.update_tokens(lambda document: with_last_use(document, used))
        document = self.backend.read_tokens()
        if document != self._tokens_document:
            try:
                self.tokens = TokenTable.parse(document)
            except (ValueError, KeyError, TypeError) as error:
                raise StorageError(f"repository {self.name!r}: its token document is "
                                   f"malformed ({type(error).__name__})") from None  # fmt: skip
            self._tokens_document = document

    @property
    def upload_limits(self) -> UploadLimits:
        backend = self.backend
        return UploadLimits(backend.spool_dir, backend.max_file_bytes, backend.keeps_spool_file)

    def root_page(self, json: bool, scope: Grant | None = None) -> Page:
        """The project list; for a grant scoped to some projects, only those (cached per scope
        on the listing, so an unscoped request costs what it did)."""
        listing = self.index.listing
        if scope is None or scope.projects is None:
            return self.renderer.root(listing, json)
        return self.renderer.scoped_root(listing, json, scope.projects, scope.covers)

    def project_page(self, name: NormalizedName, json: bool) -> Page | None:
        """The project's page (ours, or else the upstream's), or None when neither has it."""
        if not self.index.holds(name):
            return self.upstream.project_page(name, json)
        project = self.index.project(name)
        if project is None:
            return None
        links = self.projects.get(name, _NO_LINKS)
        return self.renderer.project(
            project.hosted_only(), json, links.tracks, links.alternate_locations
        )

    def holds(self, name: NormalizedName) -> bool:
        """Whether the project is this repository's, even with every file deleted."""
        return self.index.holds(name)

    @property
    def pristine(self) -> bool:
        return self.index.pristine

    def download(self, name: NormalizedName, filename: str) -> FileDownload:
        """A stored file, or with `.metadata` a wheel's PEP 658 core metadata."""
        if not self.index.holds(name):
            return self.upstream.download(name, filename)
        project = self.index.project(name)
        if project is not None and project.state == QUARANTINED:  # PEP 792: nothing offered
            raise NotFound(f"project {name!a} is quarantined")
        metadata = filename.endswith(".metadata")
        record = self.index.file(name, filename)
        if record is None and metadata:
            record = self.index.file(name, filename.removesuffix(".metadata"))
        else:
            metadata = False
        if record is None or not record.hosted:
            raise NotFound(f"{filename!a} is not in project {name!a}")
        return stored_download(self.backend, record, metadata)

    def provenance(self, name: NormalizedName, filename: str) -> bytes:
        """PEP 740: the provenance object of a file uploaded with attestations."""
        stored = filename.removesuffix(PROVENANCE_SUFFIX)
        project = self.index.project(name) if self.index.holds(name) else None
        record = project.file(stored) if project and project.state != QUARANTINED else None
        if record is None or record.provenance is None:
            raise NotFound(f"{filename!a} is not in project {name!a}")
        return record.provenance.encode()

    def sync(self) -> bool:
        """Bring the index up to date with the backend; cheap when nothing changed."""
        with self._sync_lock:
            try:
                update = self.backend.read_index(self._cursor)
            except PywharfError:
                self.health.failing = True
                self.health.errors += 1
                raise
            self.health.last_success, self.health.failing = time.time(), False
            self.sync_tokens()
            if update is None:
                return False
            self._cursor = update.cursor
            self.index_mtime = update.mtime
            if update.replace:
                return self.index.replace_all(update.events, update.base)
            return self.index.apply(update.events)

    def store_early(self, arriving: ArrivingFile) -> EarlyStore | None:
        """Let the backend store a file while it arrives, unless it is stored already."""
        if self.index.file(arriving.project, arriving.filename) is not None:
            return None  # an identical re-upload stores nothing; other bytes answer 409
        return self.backend.store_early(arriving)

    def store(self, upload: StagedUpload, credential: str) -> FileRecord:
        """Store an upload and list it at once; an identical re-upload stores nothing."""
        record = upload.record
        project = self.index.project(record.project)
        if project is not None and project.state in (ARCHIVED, QUARANTINED):  # PEP 792
            raise ProjectStatusRefuses(
                f"project {record.project!a} is {project.state}: it takes no uploads"
            )
        known = self.index.file(record.project, record.filename)
        if known is None:
            deleted = self.index.deleted_sha256(record.filename)
            if deleted is not None and deleted != record.sha256:
                raise DistributionExists(record.filename)
            known = self.backend.put(upload, credential)
        if known.sha256 != record.sha256:
            raise DistributionExists(record.filename)
        self._show(Add(known))
        return known

    def change(self, event: Event, credential: str) -> None:
        """Persist a yank or delete, then show it."""
        self.backend.apply_change(event, credential)
        self._show(event)

    def _show(self, event: Event) -> None:
        """Apply a stored change to the index at once, under the sync's lock: a sync that read
        the store before the change was durable must not replace the index after it (a first
        load is a whole snapshot, which would hide the file until the next sync)."""
        with self._sync_lock:
            self.index.apply([event])

    def set_status(
        self, name: NormalizedName, status: str, reason: str | None, credential: str
    ) -> Status:
        """PEP 792: set a project's status (of a project this repository holds)."""
        if status not in STATUSES:
            raise BadRequest(f"unknown project status {status!a}; one of: {', '.join(STATUSES)}")
        if not self.index.holds(name):
            raise NotFound(f"project {name!a} is not in repository {self.name!r}")
        event = Status(name, status, reason or None)
        self.change(event, credential)
        return event

    def _project(self, name: NormalizedName) -> Project:
        project = self.index.project(name)
        if project is None:
            raise NotFound(f"project {name!a} is not in repository {self.name!r}")
        return project

    def yank(
        self, name: NormalizedName, target: str, reason: str | None, credential: str
    ) -> list[str]:
        """PEP 592: yank (or with `reason=None` un-yank) one file, or every file of a version."""
        project = self._project(name)
        record = project.file(target)
        records = (
            [record] if record else [r for r in project.files if same_version(r.version, target)]
        )
        if not records:
            raise NotFound(f"{target!a} is neither a file nor a version of {name!a}")
        for each in records:
            self.change(Yank(name, each.filename, reason), credential)
        return [r.filename for r in records]

    def delete(self, name: NormalizedName, filename: str, credential: str) -> list[str]:
        """Delete one file; its filename can never again hold other bytes.

        An upstream file (cached or not) of a project we do not hold is tombstoned too: it is
        never fetched again, and the project still comes from the upstream.
        """
        record = self.index.file(name, filename)
        if record is None and not self.index.holds(name):
            record = self.upstream.listed(name, filename)
        elif record is None:
            record = self._project(name).file(filename)
        if record is None:
            raise NotFound(f"{filename!a} is not a file of {name!a}")
        self.change(Delete(name, filename, record.sha256, record.origin), credential)
        return [filename]
