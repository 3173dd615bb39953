"""The one exception tree: every failure pywharf reports is a `PywharfError`.

`RequestError` subclasses carry the HTTP status they are answered with; `app.error_response`
is the only place that turns an exception into a response.
"""

from __future__ import annotations

import errno

__all__ = [
    "AuthenticationRequired",
    "AuthorizationBusy",
    "BadRequest",
    "ConfigError",
    "ContentConflict",
    "CredentialInvalid",
    "CredentialRefused",
    "DistributionExists",
    "Forbidden",
    "Gone",
    "HeadersTooLarge",
    "IdentityRefused",
    "InsufficientStorage",
    "InvalidFilename",
    "LengthRequired",
    "MalformedRequest",
    "MethodNotAllowed",
    "NotFound",
    "NotReady",
    "PayloadTooLarge",
    "ProjectStatusRefuses",
    "PywharfError",
    "RangeNotSatisfiable",
    "RequestError",
    "SeeOther",
    "ServerBusy",
    "StorageError",
    "StorageNotFound",
    "StorageUnavailable",
    "TooManyFailures",
    "UnsupportedMediaType",
    "UpstreamError",
    "storage_error",
]


class PywharfError(Exception):
    """Root of every error pywharf raises on purpose."""


class ConfigError(PywharfError, ValueError):
    """A configuration file, flag or environment variable is wrong; names the file and key."""


class StorageError(PywharfError):
    """A backend failed; subclasses say how, and `status` is the HTTP answer for it."""

    status = 502


class StorageNotFound(StorageError):
    """The backend does not hold what was asked for."""

    status = 404


class StorageUnavailable(StorageError):
    """The backend could not be reached or refused us (rate limit, outage, bad credentials)."""

    status = 503


class UpstreamError(StorageError):
    """The upstream index failed us: down, a 5xx, a malformed page, bytes not matching (502)."""

    status = 502


class CredentialRefused(StorageError):
    """The storage refused the caller's own credential (GitHub: a 403 not a rate limit): 403.

    The server's own credential refused is a `StorageUnavailable` instead: not the caller's
    fault, and it may be mended without them.
    """

    status = 403


class ContentConflict(StorageUnavailable):
    """A remote write lost a race (GitHub: a stale or missing contents sha): re-read, retry.

    A StorageUnavailable, so a caller that gives up answers 503 (try again).
    """


class DistributionExists(StorageError):
    """Upload of a filename that is already stored with other bytes (answered 409)."""

    status = 409

    def __init__(self, filename: str) -> None:
        super().__init__(f"File already exists: {filename!r} is stored with other content")
        self.filename = filename


class InsufficientStorage(StorageError):
    """The storage is full or over its quota (507, RFC 4918 11.5); reads still work."""

    status = 507


# No space left on the device, or over the user's quota: both heal when space is freed.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def storage_error(what: str, error: OSError) -> StorageError:
    """The storage error an `OSError` is, with a one-line message that says `what` failed."""
    if error.errno in _FULL:
        return InsufficientStorage(f"{what}: the storage is full; try again once space is freed")
    return StorageError(f"{what}: {error.strerror or error}")


class RequestError(PywharfError):
    """A request we refuse; `status` is the HTTP answer, the message its one-line reason."""

    status = 400
    headers: tuple[tuple[str, str], ...] = ()
    close_connection = False


class BadRequest(RequestError, ValueError):
    """Invalid input from the client (400)."""


class ProjectStatusRefuses(RequestError):
    """PEP 792: an archived or quarantined project takes no upload (400, as PyPI answers)."""


class MalformedRequest(BadRequest):
    """The request's framing or body does not parse (400); the connection is closed after it."""

    close_connection = True


class InvalidFilename(BadRequest):
    """A distribution filename breaks a PEP 427 / 625 rule; the message names rule and value."""


class AuthenticationRequired(RequestError):
    """No or wrong credentials (401 with a Basic challenge)."""

    status = 401

    def __init__(self, message: str, realm: str = "pywharf") -> None:
        super().__init__(message)
        self.headers = (("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),)


class CredentialInvalid(CredentialRefused, AuthenticationRequired):
    """The storage says the caller's credential is not valid at all (GitHub: 401): a 401
    with the Basic challenge, as for a wrong secret."""

    status = 401


class Forbidden(RequestError):
    """Valid credentials that do not allow this (403)."""

    status = 403


class IdentityRefused(RequestError, ValueError):
    """An OIDC identity token that is malformed, unverifiable or matches no publisher (422,
    PyPI's status for a refused mint; the body says which check failed)."""

    status = 422


class NotFound(RequestError):
    """No such page, project or file (404)."""

    status = 404


class MethodNotAllowed(RequestError):
    """The route exists but not for this method (405 with `Allow`)."""

    status = 405

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"Method {method} is not allowed here; use {', '.join(allowed)}")
        self.headers = (("Allow", ", ".join(allowed)),)


class SeeOther(RequestError):
    """A browser without a session is led to the login page (303)."""

    status = 303

    def __init__(self, location: str) -> None:
        super().__init__(f"Log in first: {location}")
        self.headers = (("Location", location),)


class Gone(RequestError):
    """A legacy upload action PyPI retired (410)."""

    status = 410


class LengthRequired(RequestError):
    """A body without Content-Length (411): we do not decode chunked uploads."""

    status = 411
    close_connection = True


class PayloadTooLarge(RequestError, ValueError):
    """A body, file or multipart part is over its limit (413)."""

    status = 413
    close_connection = True


class UnsupportedMediaType(RequestError, ValueError):
    """An upload that is not multipart/form-data (415)."""

    status = 415


class RangeNotSatisfiable(RequestError):
    """A byte range outside the file (416 with `Content-Range: bytes */size`)."""

    status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"Requested range is outside the file of {size} bytes")
        self.headers = (("Content-Range", f"bytes */{size}"),)


class HeadersTooLarge(RequestError):
    """The request line or headers are over their limit (431)."""

    status = 431
    close_connection = True


class ServerBusy(RequestError):
    """The server is at its connection cap or out of file descriptors (503 with Retry-After)."""

    status = 503
    close_connection = True

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = (("Retry-After", str(retry_after)),)


class NotReady(RequestError):
    """/readyz: a repository's index is not loaded, or its store failed its last sync."""

    status = 503


class TooManyFailures(RequestError):
    """This client, or this repository, failed authentication too often (429 with Retry-After).

    Credentials are not even checked until then, so a guesser learns nothing from a retry.
    """

    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many failed logins; retry in {retry_after} s")
        self.headers = (("Retry-After", str(retry_after)),)


class AuthorizationBusy(RequestError):
    """Checking an unknown credential with the backend is rate-bound, and the queue is full."""

    status = 503

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many credentials to check right now; retry in {retry_after} s")
        self.headers = (("Retry-After", str(retry_after)),)
