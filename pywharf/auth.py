"""Who may read or write a repository: permissions and the bounded authorization cache."""

from __future__ import annotations

import enum
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AuthCache", "Permission", "secret_matches"]


class Permission(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


def secret_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison; an unset (empty) secret never matches."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


@dataclass(frozen=True)
class _Entry:
    permission: Permission
    checked_at: float


# A wrong secret is remembered this long, so retries with it cost the backend nothing.
NEGATIVE_TTL_SECONDS = 10.0
MAX_ENTRIES = 4096


class AuthCache:
    """One repository's backend decisions per secret digest, bounded in size and in rate.

    `checks_per_second` bounds the backend checks of secrets not in the cache (None: no bound,
    for backends whose check is free): a stream of distinct wrong secrets can neither grow
    memory nor hammer a backend such as GitHub. Over the bound a secret is refused unchecked.
    """

    def __init__(
        self,
        read_expires: float,
        write_expires: float,
        checks_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_expires = read_expires
        self._write_expires = write_expires
        self._rate = checks_per_second
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._tokens = (checks_per_second or 0.0, clock())  # (tokens, updated)
        self._lock = threading.Lock()

    def permission(
        self, secret: str, needed: Permission, check: Callable[[str], Permission]
    ) -> Permission:
        """The permission of `secret`, from the cache or from `check` (the backend)."""
        key = hashlib.sha256(secret.encode()).digest()
        now = self._clock()
        with self._lock:
            cached = self._fresh(key, needed, now)
            if cached is not None:
                return cached
            if not self._take_token(now):
                return Permission.NONE
        granted = check(secret)
        with self._lock:
            self._entries[key] = _Entry(granted, now)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return granted

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _fresh(self, key: bytes, needed: Permission, now: float) -> Permission | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = now - entry.checked_at
        if entry.permission is Permission.NONE:
            limit = NEGATIVE_TTL_SECONDS
        elif needed is Permission.WRITE:
            limit = self._write_expires
        else:
            limit = self._read_expires
        if age >= limit:
            return None
        self._entries.move_to_end(key)
        return entry.permission

    def _take_token(self, now: float) -> bool:
        if self._rate is None:
            return True
        tokens, updated = self._tokens
        tokens = min(self._rate, tokens + (now - updated) * self._rate)
        self._tokens = (tokens - 1 if tokens >= 1 else tokens, now)
        return tokens >= 1
