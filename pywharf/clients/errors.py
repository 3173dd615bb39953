"""The errors our REST clients raise: their own family, as urllib3 keeps its own.

A client knows HTTP and its service, not pywharf: each backend maps these to `pywharf.errors`
once, at its edge, where it also knows whose credential the call was made with. Messages name
the action and the service's reason; they never contain a token, a header value or a query.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ClientError",
    "Conflict",
    "Refused",
    "ResourceNotFound",
    "Unavailable",
]


class ClientError(Exception):
    """A call failed; `status` is the service's HTTP answer (None: no usable answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ResourceNotFound(ClientError):
    """It does not exist, or the credential may not see it (GitHub hides private ones: 404)."""


class Refused(ClientError):
    """The service refused the credential: 401 (not valid at all) or 403 (lacks a permission).

    A 403 that is a rate limit is an `Unavailable`, never a `Refused`.
    """


class Unavailable(ClientError):
    """Try again later: a 5xx, a broken connection, or a rate limit we will not sit out."""


class Conflict(ClientError):
    """A write lost a race (409, 412, or GitHub's 422 for a stale sha): re-read, then retry."""


class AlreadyExists(Conflict):
    """A create named something that exists (GitHub's 422 "already_exists"); `name` is it."""

    def __init__(self, message: str, name: str, status: int | None = None) -> None:
        super().__init__(message, status)
        self.name = name
