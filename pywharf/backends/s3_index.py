"""The S3 backend's index: per-project manifests, changed by compare-and-swap, read by ETag.

Writers: GET the manifest, change it, PUT it back with `If-Match: <etag>` (or `If-None-Match:
*` for a new project). Losing the race is 409, 412, or 404 (If-Match on a key deleted meanwhile,
AWS's answer): re-read and try again after a jittered pause. Two uploads contend only when they
touch the same project; nothing is locked.

Readers: one ListObjectsV2 of `index/` gives every manifest's ETag (one request per 1,000
projects), so an idle sync costs one request, and only manifests whose ETag changed are fetched.
The same LIST carries the token document's ETag (`ListedDocument`): it is fetched only when that
changed, rather than by a GET each sync (two requests per idle sync, issue 11).
Start-up reads one manifest per project, however many uploads, yanks and deletes came before.
Client errors pass through: the backend maps them at its edge.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from packaging.utils import NormalizedName

from pywharf.backends import IndexUpdate
from pywharf.backends.s3_layout import Layout
from pywharf.backends.s3_layout import Manifest
from pywharf.backends.s3_layout import manifest_events
from pywharf.backends.s3_layout import whole_events
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.s3 import S3Client
from pywharf.errors import ContentConflict

__all__ = ["CAS_ATTEMPTS", "ListedDocument", "ManifestStore", "Snapshot"]

CAS_ATTEMPTS = 25  # a lost race costs a GET and a PUT; jittered pauses spread the writers
CAS_PAUSE = 0.02  # seconds: the first pause's ceiling, doubled per lost race...
CAS_PAUSE_MAX = 1.0  # ...up to this
FETCH_THREADS = 8  # manifests fetched at once at start-up (each is one small GET)
T = TypeVar("T")
D = TypeVar("D")


@dataclass(frozen=True)
class Snapshot:
    """What a reader last saw: each project's manifest and its ETag (the `read_index` cursor)."""

    manifests: Mapping[str, tuple[str, Manifest]]


def get_document(client: S3Client, key: str) -> tuple[bytes, str]:
    """A small JSON object and its ETag; b"" and "" when it does not exist yet."""
    try:
        found = client.get(key)
    except ResourceNotFound:
        return b"", ""
    assert found is not None  # no If-None-Match was sent, so no 304
    return found.data, found.info.etag


class ListedDocument:
    """A small object under `index/`, read again only when a LIST shows another ETag.

    `read` trusts the copy it holds only when the LIST just before it showed that copy's
    ETag; without a LIST since the last read (the commands, another caller) it GETs, so it is
    never staler than the caller's own last LIST. A write remembers what it wrote, so the next
    LIST showing it costs nothing; a write over the ETag just listed stands for that LIST (the
    last uses a sync stores, then reads). The copy is always an (ETag, bytes) pair that existed.
    """

    def __init__(self, client: S3Client, key: str) -> None:
        self.key = key
        self._client = client
        self._lock = threading.Lock()
        self._known = ("", b"")  # ETag ("": no object) and bytes of the last read or write
        self._listed: str | None = None  # the ETag the last LIST showed, until a read

    def listed(self, etag: str) -> None:
        """What a LIST of `index/` showed ("": no such object)."""
        with self._lock:
            self._listed = etag

    def remember(self, etag: str, data: bytes) -> None:
        with self._lock:
            self._known = (etag, data)

    def wrote(self, over: str, etag: str, data: bytes) -> None:
        """Written by compare-and-swap over the ETag `over` ("": created)."""
        with self._lock:
            self._known = (etag, data)
            if self._listed == over:
                self._listed = etag

    def read(self) -> bytes:
        with self._lock:
            listed, self._listed = self._listed, None
            etag, data = self._known
        if listed is not None and listed == etag:
            return data
        data, etag = self.fetch()
        self.remember(etag, data)
        return data

    def fetch(self) -> tuple[bytes, str]:
        return get_document(self._client, self.key)


class ManifestStore:
    """The manifests of one repository in its bucket, and its token document beside them."""

    def __init__(
        self,
        client: S3Client,
        layout: Layout,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._client = client
        self._layout = layout
        self._sleep = sleep
        self._jitter = jitter
        self._tokens = ListedDocument(client, layout.tokens)

    def listing(self) -> dict[str, tuple[str, float]]:
        """Every manifest's project, ETag and last change: one LIST request per 1,000."""
        found = {}
        tokens = ""
        for item in self._client.list(self._layout.index):
            project = self._layout.project_of_manifest(item.key)
            if project is not None:
                found[project] = (item.etag, item.last_modified)
            elif item.key == self._tokens.key:
                tokens = item.etag
        self._tokens.listed(tokens)
        return found

    def read_tokens(self) -> bytes:
        """The token document (b"": none yet); a GET only when the last LIST saw it change."""
        return self._tokens.read()

    def update_tokens(self, change: Callable[[bytes], bytes]) -> None:
        """By compare-and-swap, as the manifests: every server sees it at its next sync."""
        tokens = self._tokens
        self.swap(tokens.key, "the token document", tokens.fetch,
                  lambda data: (change(data), None), written=tokens.wrote)  # fmt: skip

    def read(self, project: str) -> tuple[Manifest, str]:
        """The manifest and its ETag; an empty one and "" when the project has none yet."""
        data, etag = get_document(self._client, self._layout.manifest(project))
        manifest = Manifest.from_bytes(data, project) if etag else Manifest(NormalizedName(project))
        return manifest, etag

    def update(
        self,
        project: str,
        change: Callable[[Manifest], tuple[Manifest, T]],
        first: tuple[Manifest, str] | None = None,
    ) -> T:
        """Apply `change` to the latest manifest and write it back by compare-and-swap.

        `change` returns the new manifest (the same object: nothing to write) and a result;
        it may raise to refuse. `first` is a manifest just read, to save one GET.
        """

        def encoded(manifest: Manifest) -> tuple[bytes | None, T]:
            new, result = change(manifest)
            return (None if new is manifest else new.to_bytes()), result

        key, what = self._layout.manifest(project), f"the manifest of {project!r}"
        return self.swap(key, what, lambda: self.read(project), encoded, first)

    def swap(
        self,
        key: str,
        what: str,
        read: Callable[[], tuple[D, str]],
        change: Callable[[D], tuple[bytes | None, T]],
        first: tuple[D, str] | None = None,
        written: Callable[[str, str, bytes], None] | None = None,
    ) -> T:
        """Compare-and-swap of one object: read it, `change` it (None: nothing to write),
        write it only over the ETag read (`If-Match`, or `If-None-Match: *` when new).
        `written` is told the ETag written over, the new one and the bytes."""
        for attempt in range(CAS_ATTEMPTS):
            document, etag = first if first is not None else read()
            first = None
            data, result = change(document)
            if data is None:
                return result
            try:
                new_etag = self._client.put(
                    key, data, create_only=not etag, if_match=etag,
                    content_type="application/json",
                )  # fmt: skip
            except (Conflict, ResourceNotFound):  # lost the race (see the module docstring)
                self._sleep(self._jitter(0, min(CAS_PAUSE * 2**attempt, CAS_PAUSE_MAX)))
                continue
            if written is not None and new_etag:
                written(etag, new_etag, data)
            return result
        raise ContentConflict(f"{what} kept changing: {CAS_ATTEMPTS} writes lost the race")

    def read_index(self, cursor: Snapshot | None) -> IndexUpdate | None:
        """The events since `cursor`; None when no manifest's ETag changed."""
        listing = self.listing()
        seen = cursor.manifests if cursor is not None else {}
        changed = sorted(p for p, (etag, _) in listing.items() if seen.get(p, ("",))[0] != etag)
        gone = sorted(seen.keys() - listing.keys())
        if cursor is not None and not changed and not gone:
            return None
        fetched = self._fetch(changed)
        manifests = {p: v for p, v in seen.items() if p not in gone}
        manifests.update(fetched)
        mtime = int(max((when for _, when in listing.values()), default=0))
        if cursor is None:
            events = [e for p in sorted(manifests) for e in whole_events(manifests[p][1])]
            return IndexUpdate(tuple(events), True, Snapshot(manifests), mtime)
        events = []
        for project in sorted({*changed, *gone}):
            old = seen.get(project)
            new = manifests.get(project)
            events += manifest_events(old[1] if old else None, new[1] if new else None)
        return IndexUpdate(tuple(events), False, Snapshot(manifests), mtime)

    def _fetch(self, projects: list[str]) -> dict[str, tuple[str, Manifest]]:
        """The manifests of `projects`, several at once; one deleted meanwhile is left out."""

        def one(project: str) -> tuple[str, tuple[str, Manifest]] | None:
            manifest, etag = self.read(project)
            return (project, (etag, manifest)) if etag else None

        if len(projects) <= 1:
            results = [one(p) for p in projects]
        else:
            with ThreadPoolExecutor(min(FETCH_THREADS, len(projects))) as pool:
                results = list(pool.map(one, projects))
        return dict(r for r in results if r is not None)
