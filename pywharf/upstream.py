"""The pull-through cache of an upstream index, behind the repository façade.

Only projects the repository does not hold (no hosted file, no tombstone of one) come from the
upstream: a private name can never be shadowed by a public one (dependency confusion). Pages
are fetched as PEP 691 JSON (HTML as a fallback), kept `upstream_page_ttl` seconds, then
revalidated with If-None-Match; they are kept in `ROOT/cache/<name>/upstream/pages/` so an
upstream that is down still has them served, stale. Files are fetched on their first request,
relayed to that client while written and hashed, and stored in the repository's own storage
through the backend contract (`put`, with `origin = "upstream"`), so every backend caches,
and servers sharing a store serve each other's copies after their next sync.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from packaging.utils import NormalizedName

from pywharf.backends import Backend
from pywharf.backends import StagedUpload
from pywharf.backends import Streamed
from pywharf.backends.atomic import sweep
from pywharf.backends.atomic import write_atomically
from pywharf.backends.download_cache import FETCH_WAIT_SECONDS
from pywharf.backends.download_cache import DownloadCache
from pywharf.backends.download_cache import Relay
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import ResourceNotFound
from pywharf.config import RepositoryConfig
from pywharf.dists import parse_filename
from pywharf.downloads import FileDownload
from pywharf.downloads import stored_download
from pywharf.errors import ConfigError
from pywharf.errors import NotFound
from pywharf.errors import PywharfError
from pywharf.errors import UpstreamError
from pywharf.index import UPSTREAM
from pywharf.index import Add
from pywharf.index import FileRecord
from pywharf.index import Index
from pywharf.index import Project
from pywharf.metadata import read_wheel_metadata
from pywharf.pages import Page
from pywharf.pages import Renderer
from pywharf.upstream_page import UNKNOWN_TIME
from pywharf.upstream_page import UpstreamFile
from pywharf.upstream_page import parse_project_page

if TYPE_CHECKING:
    from pywharf.clients.upstream import UpstreamClient

__all__ = ["NO_UPSTREAM", "UpstreamCache", "UpstreamSettings"]

log = logging.getLogger("pywharf.upstream")


def _client(url: str) -> UpstreamClient:
    """Imported only for a repository with an upstream: urllib3 was 2.5 MiB of RSS and a
    fifth of the imports' time of every server, used or not (issue 16)."""
    from pywharf.clients.upstream import UpstreamClient

    return UpstreamClient(url)


@dataclass(frozen=True)
class UpstreamSettings:
    """The `upstream_*` keys of a repository section (pywharf.config.UPSTREAM_SETTINGS)."""

    url: str = ""
    min_age: int = 0
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    page_ttl: int = 600

    @classmethod
    def from_config(cls, config: RepositoryConfig) -> UpstreamSettings:
        url = config.values.get("upstream_url", "")
        parts = urlsplit(url)
        if url and (parts.scheme not in ("http", "https") or not parts.hostname):
            # The URL may hold a password: the message never shows it.
            raise ConfigError(f"{config.source}: upstream_url must be an http(s) URL of an index")
        return cls(
            url,
            config.values.get("upstream_min_age", 0),
            tuple(config.values.get("upstream_allow", ("*",))),
            tuple(config.values.get("upstream_deny", ())),
            config.values.get("upstream_page_ttl", 600),
        )

    def allows(self, name: str) -> bool:
        """Allow globs, then deny globs: deny wins."""
        allowed = any(fnmatch.fnmatchcase(name, glob) for glob in self.allow)
        return allowed and not any(fnmatch.fnmatchcase(name, glob) for glob in self.deny)


NO_UPSTREAM = UpstreamSettings()  # fetches nothing; copies in the storage are still served


@dataclass(frozen=True, eq=False)  # compared by identity: a new fetch is a new value
class CachedPage:
    """An upstream project page as parsed, with what revalidates it."""

    files: tuple[UpstreamFile, ...]
    etag: str | None
    fetched_at: float  # wall clock: it survives a restart in the page file
    by_filename: dict[str, UpstreamFile] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_filename", {f.record.filename: f for f in self.files})


@dataclass(frozen=True)
class _View:
    """What a project page shows, and the inputs it was made from (checked by identity)."""

    page: CachedPage | None
    copies: Project | None
    deletions: int  # the index's count: a new tombstone may hide a listed file
    until: float  # when a file held back by the cooldown comes of age
    project: Project | None


def _mapped(error: ClientError) -> UpstreamError:
    """The one place an upstream client's error becomes pywharf's (a 502, one line)."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return UpstreamError(f"the upstream index failed: {reason}")


class _PageStore:
    """The upstream's project pages: held in memory and kept on disk (served stale while the
    upstream is down), fresh for `ttl` seconds, then revalidated with their ETag."""

    def __init__(
        self,
        ttl: float,
        folder: Path | None,
        client: UpstreamClient | None,
        clock: Callable[[], float],
    ) -> None:
        self._ttl = ttl
        self._folder = folder
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()  # guards `_pages`
        self._pages: dict[NormalizedName, CachedPage] = {}
        self._name_lock = _KeyedLocks()

    def held(self, name: NormalizedName) -> CachedPage | None:
        """The page as last fetched or loaded, fetching nothing."""
        return self._pages.get(name)

    def get(self, name: NormalizedName) -> CachedPage | None:
        """The upstream page, fresh within its TTL; stale if the upstream fails."""
        page = self._pages.get(name) or self._load(name)
        if self._client is None or (page and self._fresh(page)):
            return page
        with self._name_lock(f"page {name}"):
            page = self._pages.get(name, page)
            if page is not None and self._fresh(page):
                return page  # another request fetched it while this one waited
            try:
                page = self._fetch(self._client, name, page)
            except (ClientError, UpstreamError) as error:
                failure = _mapped(error) if isinstance(error, ClientError) else error
                if page is None:
                    raise failure from None
                log.warning("serving the stale page of %s: %s", name, failure)
                return page
            with self._lock:
                self._pages[name] = page
            self._save(name, page)
            return page

    def _fresh(self, page: CachedPage) -> bool:
        return self._clock() - page.fetched_at < self._ttl

    def _fetch(
        self, client: UpstreamClient, name: NormalizedName, page: CachedPage | None
    ) -> CachedPage:
        now = self._clock()
        try:
            fetched = client.page(name, page.etag if page else None)
        except ResourceNotFound:
            return CachedPage((), None, now)  # no such project upstream: remembered for the TTL
        if fetched is None:
            assert page is not None  # a 304 answers only our If-None-Match
            return CachedPage(page.files, page.etag, now)
        files = parse_project_page(fetched.body, fetched.content_type, fetched.url, name)
        return CachedPage(files, fetched.etag, now)

    def _path(self, name: str) -> Path | None:
        return self._folder / "pages" / f"{name}.json" if self._folder else None

    def _save(self, name: str, page: CachedPage) -> None:
        path = self._path(name)
        if path is None:
            return
        files = [{**f.record.to_json(), "url": f.url} for f in page.files]
        document = {"etag": page.etag, "fetched_at": page.fetched_at, "files": files}
        assert self._folder is not None  # a page path implies the folder
        temporary = self._folder / "tmp"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.mkdir(exist_ok=True)
            write_atomically(path, json.dumps(document).encode(), temporary)
        except OSError as error:
            log.warning("cannot keep the upstream page of %s: %s", name, error)

    def _load(self, name: NormalizedName) -> CachedPage | None:
        path = self._path(name)
        if path is None or not path.exists():
            return None
        try:
            document = json.loads(path.read_bytes())
            files = tuple(
                UpstreamFile(FileRecord.from_json(entry), entry["url"])
                for entry in document["files"]
            )
            page = CachedPage(files, document.get("etag"), float(document["fetched_at"]))
        except (OSError, ValueError, KeyError, TypeError, PywharfError) as error:
            log.warning("ignoring the kept upstream page of %s: %s", name, error)
            return None
        with self._lock:
            self._pages.setdefault(name, page)
        return page


class _KeyedLocks:
    """A lock per key (a page, a file): one fetch of each at a time, the others wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())


class UpstreamCache:
    """Upstream pages and files for the projects a repository does not hold.

    Without an `upstream_url` it still serves the copies the storage holds (a bundle imported
    on an air-gapped host), and fetches nothing.
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        folder: Path | None,
        backend: Backend,
        index: Index,
        renderer: Renderer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        if folder is not None:  # what a killed server was writing: leased, so only the dead's
            for stale in sweep(folder / "tmp", "tmp"):
                stale.unlink()
        self._backend = backend
        self._index = index
        self._renderer = renderer
        self._clock = clock
        self._client = _client(settings.url) if settings.url else None
        self._pages = _PageStore(settings.page_ttl, folder, self._client, clock)
        self._lock = threading.Lock()  # guards `_views`
        self._views: dict[NormalizedName, _View] = {}
        self._name_lock = _KeyedLocks()
        self._metadata = DownloadCache((folder or backend.spool_dir) / "metadata")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # --- pages -------------------------------------------------------------------------------

    def project_page(self, name: NormalizedName, json: bool) -> Page | None:
        project = self._view(name) if self.settings.allows(name) else None
        return None if project is None else self._renderer.project(project, json)

    def listed(self, name: NormalizedName, filename: str) -> FileRecord | None:
        """A file the upstream page lists (fetched if need be), cached or not."""
        page = self._pages.get(name)
        found = page.by_filename.get(filename) if page is not None else None
        return found.record if found is not None else None

    def _visible(self, record: FileRecord, now: float) -> bool:
        """The cooldown: an upload time unknown counts as too young (fail closed)."""
        min_age = self.settings.min_age
        if min_age <= 0:
            return True
        return record.upload_time != UNKNOWN_TIME and now - record.upload_time >= min_age

    def _view(self, name: NormalizedName) -> Project | None:
        copies = self._index.project(name)
        try:
            page = self._pages.get(name)
        except UpstreamError:
            if copies is None:
                raise
            page = None  # the upstream failed: what the storage holds is still served
        now = self._clock()
        view = self._views.get(name)
        deletions = self._index.deletions
        if (
            view is not None
            and (view.page, view.copies, view.deletions) == (page, copies, deletions)
            and now < view.until
        ):
            return view.project
        view = self._make_view(name, page, copies, deletions, now)
        with self._lock:
            self._views[name] = view
        return view.project

    def _make_view(
        self,
        name: NormalizedName,
        page: CachedPage | None,
        copies: Project | None,
        deletions: int,
        now: float,
    ) -> _View:
        files = {f.record.filename: f.record for f in page.files} if page else {}
        for copy in copies.files if copies else ():
            listed = files.get(copy.filename)
            # A copy knows its real size and the metadata we hold; the upstream, its yank state.
            files[copy.filename] = copy if listed is None else copy._replace(yanked=listed.yanked)
        visible, until = [], math.inf
        for record in files.values():
            if self._index.deleted_sha256(record.filename) is not None:
                continue  # deleted here: never offered again
            if self._visible(record, now):
                visible.append(record)
            elif record.upload_time != UNKNOWN_TIME:
                until = min(until, record.upload_time + self.settings.min_age)
        if not visible:
            return _View(page, copies, deletions, until, None)
        ordered = tuple(sorted(visible, key=lambda r: r.filename))
        return _View(page, copies, deletions, until, Project(name, ordered))

    # --- files -------------------------------------------------------------------------------

    def download(self, name: NormalizedName, filename: str) -> FileDownload:
        """A cached copy, or the upstream file relayed while it is cached."""
        metadata = filename.endswith(".metadata")
        base = filename.removesuffix(".metadata") if metadata else filename
        if not self.settings.allows(name):
            raise NotFound(f"project {name!a} is not in this repository")
        copy = self._index.file(name, base)
        if copy is not None and self._visible(copy, self._clock()):
            return stored_download(self._backend, copy, metadata)  # no page needed: fast path
        view = self._view(name)
        record = view.file(base) if view is not None else None
        listed = self._pages.held(name)
        upstream = listed.by_filename.get(base) if listed is not None else None
        if record is None or upstream is None or self._client is None:
            raise NotFound(f"{filename!a} is not in project {name!a}")
        if metadata:
            return self._fetch_metadata(self._client, record, upstream.url + ".metadata")
        return self._fetch_file(self._client, record, upstream.url)

    def _fetch_metadata(self, client: UpstreamClient, record: FileRecord, url: str) -> FileDownload:
        """PEP 658: fetched once, checked against the page's hash, kept beside the pages."""
        if record.metadata_sha256 is None:
            raise NotFound(f"no metadata for {record.filename + '.metadata'!a}")
        what = f"metadata of {record.filename!a}"
        try:
            local = self._metadata.local_copy(
                record.filename + ".metadata",
                record.metadata_sha256,
                lambda: client.open(url, what),
            )
        except ClientError as error:
            raise _mapped(error) from None
        return FileDownload(local, f'"{record.metadata_sha256}"', self._clock())

    def _fetch_file(self, client: UpstreamClient, record: FileRecord, url: str) -> FileDownload:
        lock = self._name_lock(f"file {record.filename}")
        if not lock.acquire(timeout=FETCH_WAIT_SECONDS):
            raise UpstreamError(f"{record.filename!a} is still being fetched; retry later")
        try:
            stored = self._index.file(record.project, record.filename)
            if stored is not None:  # fetched by the request this one waited for
                lock.release()
                return stored_download(self._backend, stored, False)
            stream = client.open(url, f"file {record.filename!a}")
        except ClientError as error:
            lock.release()
            raise _mapped(error) from None
        except BaseException:
            lock.release()
            raise
        size = record.size if record.size >= 0 else stream.size
        spool = self._backend.spool_dir / f".upstream-{uuid.uuid4().hex}.part"
        keep = functools.partial(self._keep, record, spool, size)
        relay = Relay(stream, spool, size, keep, lock)
        streamed = Streamed(_relayed(relay.chunks()), -1 if size is None else size, relay.close)
        if size is None:  # neither the page nor the upstream said: fetch first, then serve
            streamed.drain()
            return self.download(record.project, record.filename)
        return FileDownload(streamed, f'"{record.sha256}"', self._clock())

    def _keep(
        self, record: FileRecord, spool: Path, size: int | None, sha256: str, total: int
    ) -> None:
        """Before the last chunk is relayed: the file matched, and is stored."""
        if (size is not None and total != size) or sha256 != record.sha256:
            raise UpstreamError(
                f"the upstream's {record.filename!a} does not match its sha256 and size; "
                "not served, not kept"
            )
        self.store(record, spool, total)

    def store(self, record: FileRecord, path: Path, size: int) -> None:
        """Keep a verified upstream file in the repository's storage, and list it."""
        distribution = parse_filename(record.filename, record.project)
        metadata = None
        if distribution.kind == "wheel":
            try:
                metadata = read_wheel_metadata(path, distribution).raw
            except PywharfError:
                metadata = None  # still cached and served, without PEP 658 metadata
        stored = record._replace(
            size=size,
            metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata else None,
            origin=UPSTREAM,
            stored_time=time.time(),
        )
        # No caller credential: caching is the server's own act (a reader may trigger it).
        known = self._backend.put(StagedUpload(path, stored, metadata, {}), "")
        self._index.apply([Add(known)])


def _relayed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """An upstream file's chunks, with the client's errors mapped (a 502, one line)."""
    try:
        yield from chunks
    except ClientError as error:
        raise _mapped(error) from None
