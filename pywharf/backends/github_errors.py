"""The GitHub backend's edge: the client's errors become storage errors here, and only here.

Whose token a call used decides what a refusal means. The caller's token refused (during an
upload, a yank, a delete) is their answer: 403, or 401 when GitHub does not know the token at
all. The server's own token refused (sync, downloads) is the operator's to mend: 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pywharf.clients.errors import AlreadyExists
from pywharf.clients.errors import ClientError
from pywharf.clients.errors import Conflict
from pywharf.clients.errors import Refused
from pywharf.clients.errors import ResourceNotFound
from pywharf.clients.errors import Unavailable
from pywharf.errors import ContentConflict
from pywharf.errors import CredentialInvalid
from pywharf.errors import CredentialRefused
from pywharf.errors import DistributionExists
from pywharf.errors import StorageError
from pywharf.errors import StorageNotFound
from pywharf.errors import StorageUnavailable

__all__ = ["github_storage_error", "storage_errors"]


def github_storage_error(error: ClientError, *, callers_token: bool) -> StorageError:
    """The storage error that answers a client error (see the module docstring)."""
    message = str(error)
    if isinstance(error, AlreadyExists):
        return DistributionExists(error.name)
    if isinstance(error, Conflict):
        return ContentConflict(message)
    if isinstance(error, ResourceNotFound):
        return StorageNotFound(message)
    if isinstance(error, Refused) and callers_token:
        return CredentialInvalid(message) if error.status == 401 else CredentialRefused(message)
    if isinstance(error, (Refused, Unavailable)):
        return StorageUnavailable(message)
    return StorageError(message)


@contextlib.contextmanager
def storage_errors(*, callers_token: bool) -> Iterator[None]:
    """Raise a client error as its storage error; also a decorator (`@storage_errors(...)`)."""
    try:
        yield
    except ClientError as error:
        raise github_storage_error(error, callers_token=callers_token) from error
