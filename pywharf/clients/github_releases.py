"""GitHub's releases and their assets: where the GitHub backend keeps the files."""

from __future__ import annotations

import json
from typing import IO
from typing import Any
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urljoin

from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.github_core import OCTET
from pywharf.clients.github_core import GitHubCore
from pywharf.clients.github_core import decode_json
from pywharf.clients.github_core import segment
from pywharf.clients.github_models import Asset
from pywharf.clients.github_models import Release
from pywharf.clients.http import LimitedReader
from pywharf.clients.http import Stream
from pywharf.clients.http import origin
from pywharf.clients.http import redact_url

__all__ = ["ReleaseCalls"]


def _already_exists(data: bytes, field: str) -> bool:
    """Whether a 422 says a release tag or asset name is taken."""
    try:
        errors = json.loads(data).get("errors") or ()
    except (ValueError, AttributeError):
        return False
    return any(
        isinstance(item, dict)
        and item.get("code") == "already_exists"
        and item.get("field") == field
        for item in errors
    )


def _releases(owner: str, repo: str) -> str:
    return f"/repos/{segment(owner)}/{segment(repo)}/releases"


class ReleaseCalls(GitHubCore):
    """Releases (one per file for pywharf) and the assets that hold the bytes."""

    def list_releases(self, owner: str, repo: str, *, per_page: int = 100) -> list[Release]:
        """All releases, all pages (drafts included when the token can push)."""
        items = self.paginate(_releases(owner, repo), {"per_page": per_page})
        return [Release.from_json(item) for item in items]

    def get_release(self, owner: str, repo: str, release_id: int) -> Release:
        path = f"{_releases(owner, repo)}/{release_id}"
        return Release.from_json(self._json("GET", path, f"read release {release_id}"))

    def get_release_by_tag(self, owner: str, repo: str, tag: str) -> Release:
        """The published release with this tag (GitHub hides drafts here: 404)."""
        path = f"{_releases(owner, repo)}/tags/{segment(tag)}"
        return Release.from_json(self._json("GET", path, f"read release {tag!r}"))

    def create_release(
        self,
        owner: str,
        repo: str,
        tag_name: str,
        *,
        name: str | None = None,
        body: str = "",
        draft: bool = True,
        prerelease: bool = False,
        target_commitish: str | None = None,
    ) -> Release:
        """Create a release; AlreadyExists if a release already has this tag."""
        payload: dict[str, Any] = {
            "tag_name": tag_name,
            "name": name or tag_name,
            "body": body,
            "draft": draft,
            "prerelease": prerelease,
        }
        if target_commitish:
            payload["target_commitish"] = target_commitish
        what = f"create release {tag_name!r} in {owner}/{repo}"
        response = self._send("POST", self._url(_releases(owner, repo)), json_body=payload)
        if response.status == 422 and _already_exists(response.data, "tag_name"):
            raise AlreadyExists(f"GitHub could not {what}: the tag exists", tag_name, 422)
        if response.status != 201:
            raise self._error(response, what)
        return Release.from_json(decode_json(response.data))

    def update_release(
        self,
        owner: str,
        repo: str,
        release_id: int,
        *,
        tag_name: str | None = None,
        name: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> Release:
        """Change a release; `draft=False` publishes it (and creates its tag)."""
        changes = {"tag_name": tag_name, "name": name, "body": body, "draft": draft}
        payload = {key: value for key, value in changes.items() if value is not None}
        path = f"{_releases(owner, repo)}/{release_id}"
        # Absolute values: a repeated PATCH is harmless, so it may be retried.
        data = self._json(
            "PATCH", path, f"update release {release_id}", json_body=payload, idempotent=True
        )
        return Release.from_json(data)

    def delete_release(self, owner: str, repo: str, release_id: int) -> None:
        """Delete a release and its assets (its git tag stays). A retried call may 404."""
        path = f"{_releases(owner, repo)}/{release_id}"
        self._json("DELETE", path, f"delete release {release_id}", ok=(204,))

    # -- assets ----------------------------------------------------------------------------

    def list_release_assets(self, owner: str, repo: str, release_id: int) -> list[Asset]:
        path = f"{_releases(owner, repo)}/{release_id}/assets"
        return [Asset.from_json(item) for item in self.paginate(path, {"per_page": 100})]

    def get_asset(self, owner: str, repo: str, asset_id: int) -> Asset:
        path = f"{_releases(owner, repo)}/assets/{asset_id}"
        return Asset.from_json(self._json("GET", path, f"read asset {asset_id}"))

    def upload_asset(
        self,
        upload_url: str,
        name: str,
        fileobj: IO[bytes],
        size: int,
        content_type: str = OCTET,
        *,
        label: str | None = None,
    ) -> Asset:
        """Stream `size` bytes from `fileobj` as a new asset; AlreadyExists on a taken name.

        `upload_url` is the release's own (GitHub says: do not build it). GitHub may rename
        the asset (special characters become "."): compare with the returned `name`.
        """
        base = upload_url.split("{", 1)[0]  # drop the RFC 6570 "{?name,label}" template
        if origin(base) not in (origin(self.uploads_url), origin(self.api_url)):
            raise ClientError(
                f"Refusing to upload to {redact_url(base)}: not the configured uploads_url"
            )
        query = {"name": name, **({"label": label} if label else {})}
        # quote, not quote_plus: a "+" must arrive as %2B or GitHub reads it as a space.
        url = f"{base}?{urlencode(query, quote_via=quote)}"
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        response = self._send("POST", url, body=LimitedReader(fileobj, size), headers=headers)
        if response.status == 422 and _already_exists(response.data, "name"):
            raise AlreadyExists(f"GitHub already holds an asset {name!r}", name, 422)
        if response.status != 201:
            raise self._error(response, f"upload asset {name!r}")
        return Asset.from_json(decode_json(response.data))

    def delete_asset(self, owner: str, repo: str, asset_id: int) -> None:
        path = f"{_releases(owner, repo)}/assets/{asset_id}"
        self._json("DELETE", path, f"delete asset {asset_id}", ok=(204,))

    def asset_download_url(self, owner: str, repo: str, asset_id: int) -> str | None:
        """The short-lived signed URL GitHub redirects to; None if GitHub serves bytes itself."""
        path = f"{_releases(owner, repo)}/assets/{asset_id}"
        response = self._send("GET", self._url(path), accept=OCTET, redirects=0, stream=True)
        if response.stream is not None:
            response.stream.close()  # a 200: the API streams the bytes (allowed by the spec)
            return None
        location = response.headers.get("location")
        if response.status in (301, 302, 307) and location:
            return urljoin(response.url, location)
        raise self._error(response, f"download asset {asset_id}")

    def stream_asset(self, owner: str, repo: str, asset_id: int) -> Stream:
        """An open download of the asset's bytes; the redirect is followed without our token."""
        return self.stream(f"{_releases(owner, repo)}/assets/{asset_id}", accept=OCTET)
