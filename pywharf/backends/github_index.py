"""The GitHub backend's index document: `index.toml` on the index branch.

Reads are conditional (a 304 costs no rate limit), recent versions are remembered so a reader
gets only what changed, and every write (an upload's entry, a yank, a delete, a rebuild) goes
through `commit`: write with the blob sha read, and on a lost race read again and redo.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tomli_w

from pywharf.backends import IndexUpdate
from pywharf.backends.events import diff_events
from pywharf.backends.events import status_changes
from pywharf.backends.events import tombstone_events
from pywharf.backends.github_layout import IndexFile
from pywharf.backends.github_layout import Location
from pywharf.backends.github_layout import empty_index
from pywharf.backends.github_layout import read_document
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.github import GitHubClient
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable
from pywharf.index import Add
from pywharf.index import Event

__all__ = ["INDEX_WRITE_ATTEMPTS", "IndexDocument", "RemoteIndex"]

INDEX_WRITE_ATTEMPTS = 5  # re-read and re-apply after a concurrent index write, this often
KEPT_SNAPSHOTS = 4  # index versions remembered to answer a cursor with only what changed
_MISSING = "missing"  # the cursor of an index file that does not exist yet


@dataclass(frozen=True)
class RemoteIndex:
    """The index file as last read or written: its TOML document and blob sha (None: absent).

    `listed` is what it lists, when it was just read (a write only keeps the document).
    """

    document: dict[str, Any]
    sha: str | None
    listed: IndexFile | None = None


class IndexDocument:
    """`owner/repo:path` on the index branch, read and written through the server's client."""

    def __init__(
        self,
        api: GitHubClient,
        owner: str,
        repo: str,
        path: str,
        branch: str,
        *,
        repository: str,
        clock: Callable[[], float],
        has_admin: bool,
    ) -> None:
        self._api = api
        self._repository = repository  # our name for it, for messages
        self.owner, self.repo, self.path = owner, repo, path
        self._configured_branch = branch
        self._branch: str | None = None
        self._clock = clock
        self._has_admin = has_admin
        self._lock = threading.Lock()  # guards the fields below
        self._write_lock = threading.Lock()  # one index write at a time from this server
        self._locations: dict[str, Location] = {}
        self._remote: RemoteIndex | None = None
        self._snapshots: OrderedDict[str, IndexFile] = OrderedDict()

    @property
    def source(self) -> str:
        return f"{self.owner}/{self.repo}:{self.path}"

    def branch(self) -> str:
        """The index branch: as configured, else the repository's default (looked up once)."""
        if self._branch is None:
            branch = self._configured_branch
            if not branch:
                try:
                    branch = self._api.get_repo(self.owner, self.repo).default_branch
                except ResourceNotFound as error:
                    hint = "" if self._has_admin else " (no admin secret is configured for it)"
                    raise StorageNotFound(
                        f"repository {self._repository!r}: {error}{hint}"
                    ) from None
            self._branch = branch
        return self._branch

    # --- where files are -----------------------------------------------------------------------

    def location(self, filename: str) -> Location | None:
        with self._lock:
            return self._locations.get(filename)

    def remember(self, filename: str, location: Location) -> None:
        with self._lock:
            self._locations[filename] = location

    def forget(self, filename: str) -> Location | None:
        with self._lock:
            return self._locations.pop(filename, None)

    # --- reads ---------------------------------------------------------------------------------

    def read(self, cursor: Any) -> IndexUpdate | None:
        """A conditional read of the index file: unchanged costs GitHub nothing (304)."""
        branch = self.branch()
        etag = cursor if isinstance(cursor, str) and cursor != _MISSING else None
        try:
            raw = self._api.get_contents_raw(self.owner, self.repo, self.path, branch, etag)
        except ResourceNotFound:  # no upload yet (or the branch is missing): an empty index
            if cursor == _MISSING:
                return None
            self._keep(RemoteIndex(empty_index().document, None))
            return self._update(cursor, _MISSING, empty_index())
        if raw is None:
            return None
        listed = read_document(raw.data, self.source)
        self._keep(RemoteIndex(listed.document, raw.sha))
        return self._update(cursor, raw.etag or raw.sha, listed)

    def _update(self, cursor: Any, new_cursor: str, listed: IndexFile) -> IndexUpdate:
        """The whole index, or only what changed when `cursor` is a version we remember."""
        records = listed.records
        with self._lock:
            self._locations = dict(listed.locations)
            old = self._snapshots.get(cursor) if isinstance(cursor, str) else None
            self._snapshots[new_cursor] = listed
            self._snapshots.move_to_end(new_cursor)
            while len(self._snapshots) > KEPT_SNAPSHOTS:
                self._snapshots.popitem(last=False)
        if old is not None:
            changes = [*diff_events(old.records, records),
                       *status_changes(old.statuses, listed.statuses)]  # fmt: skip
            return IndexUpdate(tuple(changes), False, new_cursor, listed.mtime)
        events: list[Event] = [Add(records[name]) for name in sorted(records)]
        events += tombstone_events(listed.tombstones)
        events += listed.statuses
        return IndexUpdate(tuple(events), True, new_cursor, listed.mtime)

    def _keep(self, remote: RemoteIndex) -> None:
        with self._lock:
            self._remote = remote

    def fetch(self, client: GitHubClient) -> RemoteIndex:
        """The index file as it is now (an empty one if it does not exist)."""
        try:
            raw = client.get_contents_raw(self.owner, self.repo, self.path, ref=self.branch())
        except ResourceNotFound:
            empty = empty_index()
            return RemoteIndex(empty.document, None, empty)
        assert raw is not None  # no etag was sent
        listed = read_document(raw.data, self.source)
        return RemoteIndex(listed.document, raw.sha, listed)

    # --- writes --------------------------------------------------------------------------------

    def change(
        self, client: GitHubClient, change: Callable[[dict[str, Any]], bool], message: str
    ) -> None:
        """Apply `change` to the document (False: nothing to do) and write it."""

        def attempt(remote: RemoteIndex) -> dict[str, Any] | None:
            document = copy.deepcopy(remote.document)
            if not change(document):
                return None
            document["mtime"] = int(self._clock())
            return document

        self.commit(client, attempt, message, fresh=False, again="try again")

    def commit(
        self,
        client: GitHubClient,
        attempt: Callable[[RemoteIndex], dict[str, Any] | None],
        message: str,
        *,
        fresh: bool,
        again: str,
    ) -> None:
        """Write the document `attempt` makes of the remote one (None: nothing to write) with
        its blob sha; on a lost race (someone wrote in between) read again and redo, a bounded
        number of times. `fresh`: read first, and give `attempt` what the file lists."""
        with self._write_lock:
            with self._lock:
                remote = None if fresh else self._remote
            for _ in range(INDEX_WRITE_ATTEMPTS):
                if remote is None:
                    remote = self.fetch(client)
                document = attempt(remote)
                if document is None:
                    return
                try:
                    commit = client.put_contents(
                        self.owner, self.repo, self.path, tomli_w.dumps(document).encode(),
                        message, branch=self.branch(), sha=remote.sha,
                    )  # fmt: skip
                except Conflict:
                    remote = None  # stale: read it again
                    continue
                self._keep(RemoteIndex(document, commit.sha))
                return
        raise StorageUnavailable(
            f"{self.path!r} in {self.owner}/{self.repo} kept changing under us "
            f"({INDEX_WRITE_ATTEMPTS} tries); {again}"
        )
