"""The GitHub backend's upload saga: draft release, assets, publish, index entry.

Each step that fails undoes the ones before it (the release, and the tag its publishing made),
so a failed upload leaves nothing behind and the same upload can simply be tried again.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable

from pywharf.backends import StagedUpload
from pywharf.backends.github_index import IndexDocument
from pywharf.backends.github_layout import Location
from pywharf.backends.github_layout import add_entry
from pywharf.backends.github_layout import content_type_of
from pywharf.backends.github_layout import published_file
from pywharf.backends.github_layout import release_body
from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.github import GitHubClient
from pywharf.clients.github_models import Release
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageUnavailable
from pywharf.index import FileRecord

__all__ = ["DRAFT_WAITS", "UploadSaga"]

log = logging.getLogger("pywharf.github")

# A draft release holds the tag while another upload of the filename is under way: wait
# this long (seconds, in steps) for it to be published or dropped before answering 503.
DRAFT_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 5.0)


class UploadSaga:
    """Stores uploads as releases of the index's repository, acting with the uploader's token."""

    def __init__(
        self, index: IndexDocument, server: GitHubClient, *, sleep: Callable[[float], None]
    ) -> None:
        self._index = index
        self._server = server  # the server's own client: cleans up what a refused token left
        self.owner, self.repo = index.owner, index.repo
        self._sleep = sleep

    def put(self, client: GitHubClient, upload: StagedUpload) -> FileRecord:
        """Draft release, assets, publish, index entry; any failure deletes the release."""
        record = upload.record
        release = self._create_release(client, record, release_body(upload.form, record))
        if isinstance(release, FileRecord):
            return release  # identical bytes were stored already
        try:
            location = self._upload_assets(client, release, upload)
        except BaseException:
            self.discard(client, release, published=False)
            raise
        try:
            client.update_release(self.owner, self.repo, release.id, draft=False)
        except ClientError:
            # Perhaps another server published this filename first: one release per tag.
            self.discard(client, release, published=False)
            found = self._published_record(client, record)
            if found is None:
                raise
            return found
        try:
            self._list(client, record, location)
        except BaseException:
            self.discard(client, release, published=True)
            raise
        return record

    def _list(self, client: GitHubClient, record: FileRecord, location: Location) -> None:
        add = functools.partial(add_entry, record=record, location=location)
        self._index.change(client, add, f"Add {record.filename}")
        self._index.remember(record.filename, location)

    def _create_release(
        self, client: GitHubClient, record: FileRecord, body: str
    ) -> Release | FileRecord:
        """A new draft release for the file, or the stored record of identical bytes."""
        for pause in (*DRAFT_WAITS, None):
            try:
                return client.create_release(
                    self.owner, self.repo, record.filename, body=body, draft=True,
                    target_commitish=self._index.branch(),
                )  # fmt: skip
            except AlreadyExists:
                found = self._published_record(client, record)
                if found is not None:
                    return found
            if pause is not None:
                self._sleep(pause)  # only a draft holds the tag: another upload is under way
        raise StorageUnavailable(
            f"{record.filename!r} is being uploaded by someone else (a draft release holds "
            "its tag); try again later"
        )

    def _published_record(self, client: GitHubClient, record: FileRecord) -> FileRecord | None:
        """The stored record if a published release holds identical bytes (and the index then
        lists it); DistributionExists for other bytes; None if no published release has it."""
        try:
            release = client.get_release_by_tag(self.owner, self.repo, record.filename)
        except ResourceNotFound:  # GitHub hides drafts here
            return None
        found = published_file(release, None, self._index.location(record.filename))
        if found is None or found[0].sha256 != record.sha256:
            raise DistributionExists(record.filename)
        stored, location = found
        self._list(client, stored, location)
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
        except AlreadyExists as error:  # in a release we just made: GitHub's own hiccup
            raise StorageUnavailable(
                f"GitHub refused asset {error.name!r} of the new release {filename!r} as a "
                "duplicate; try again"
            ) from None
        except OSError as error:
            raise StorageError(f"cannot read the upload of {filename!r}: {error}") from None
        return Location(asset.id, asset.url, asset.name, metadata.id if metadata else None)

    def discard(self, client: GitHubClient, release: Release, published: bool) -> None:
        """Delete a release we made (and the tag its publishing made); never raises."""
        self._as_anyone(
            client,
            lambda acting: acting.delete_release(self.owner, self.repo, release.id),
            f"delete release {release.tag_name!r}",
        )
        if published:
            self.delete_tag(client, release.tag_name)

    def delete_tag(self, client: GitHubClient, tag: str) -> None:
        """Deleting a release leaves its git tag; remove it too (best effort)."""
        self._as_anyone(
            client,
            lambda acting: acting.delete_tag(self.owner, self.repo, tag),
            f"delete tag {tag!r}",
        )

    def _as_anyone(
        self, client: GitHubClient, action: Callable[[GitHubClient], None], what: str
    ) -> None:
        """Clean up with the caller's token, else with the server's: a token refused or
        revoked mid-upload cannot undo what it made. Logs what neither could; never raises."""
        error: ClientError | None = None
        for acting in (client, self._server):
            try:
                action(acting)
                return
            except (Refused, ResourceNotFound) as refused:  # 404: gone, or hidden from it
                error = refused
            except ClientError as failed:
                error = failed
                break
        if not isinstance(error, ResourceNotFound):
            log.warning("could not %s: %s", what, error)
