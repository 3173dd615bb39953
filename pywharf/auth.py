"""Who may read or write a repository: permissions, the bounded authorization cache, and the
throttle on failed authentication."""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pywharf.errors import AuthorizationBusy
from pywharf.errors import TooManyFailures

__all__ = ["AuthCache", "FailureThrottle", "Permission", "permission_of_secret", "secret_matches"]


class Permission(enum.IntEnum):
    NONE = 0
    READ = 1
    WRITE = 2


def secret_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison; an unset (empty) secret never matches."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def permission_of_secret(presented: str, read_secret: str, write_secret: str) -> Permission:
    """A repository with its own two secrets: the write secret writes (and reads)."""
    if secret_matches(presented, write_secret):
        return Permission.WRITE
    if secret_matches(presented, read_secret):
        return Permission.READ
    return Permission.NONE


@dataclass(frozen=True)
class _Entry:
    permission: Permission
    checked_at: float


# A wrong secret is remembered this long, so retries with it cost the backend nothing.
NEGATIVE_TTL_SECONDS = 10.0
MAX_ENTRIES = 4096


# How long a request may wait for a rate-bound backend check before it gets a 503.
MAX_CHECK_WAIT_SECONDS = 2.0


class AuthCache:
    """One repository's backend decisions per secret digest, bounded in size and in rate.

    `checks_per_second` bounds the backend checks of secrets not in the cache (None: no bound,
    for backends whose check is free): a stream of distinct wrong secrets can neither grow
    memory nor hammer a backend such as GitHub. Over the bound a check waits its turn, up to
    `MAX_CHECK_WAIT_SECONDS`, then gets a 503: never a 401 for a token nobody checked.

    A hit, on every request, takes no lock: a dict lookup is atomic and an entry is immutable.
    (Under 64 connections the lock, and an LRU reorder under it, were contended: a thread that
    lost the GIL while holding it stalled the others.) So entries are dropped oldest-checked
    first, not least recently used: with one expiry per kind, the oldest is the next to expire
    anyway. Wrong secrets are kept apart, so a flood of them never evicts a valid one.
    """

    def __init__(
        self,
        read_expires: float,
        write_expires: float,
        checks_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._read_expires = read_expires
        self._write_expires = write_expires
        self._rate = checks_per_second
        self._clock = clock
        self._sleep = sleep
        self._entries: dict[bytes, _Entry] = {}  # granted; in the order they were checked
        self._refused: dict[bytes, _Entry] = {}  # Permission.NONE; the same
        self._tokens = (checks_per_second or 0.0, clock())  # (tokens, updated)
        self._lock = threading.Lock()  # writers only

    def permission(
        self, secret: str, needed: Permission, check: Callable[[str], Permission]
    ) -> Permission:
        """The permission of `secret`, from the cache or from `check` (the backend)."""
        key = hashlib.sha256(secret.encode()).digest()
        now = self._clock()
        entry = self._entries.get(key) or self._refused.get(key)
        if entry is not None and now - entry.checked_at < self._expiry(entry, needed):
            return entry.permission
        self._wait_for_turn(now)
        granted = check(secret)
        with self._lock:
            kept = self._refused if granted is Permission.NONE else self._entries
            self._entries.pop(key, None)  # re-inserted last: the order stays by check time
            self._refused.pop(key, None)
            kept[key] = _Entry(granted, now)
            while len(kept) > MAX_ENTRIES:
                del kept[next(iter(kept))]
        return granted

    def clear(self) -> None:
        with self._lock:
            self._entries = {}
            self._refused = {}

    def _expiry(self, entry: _Entry, needed: Permission) -> float:
        if entry.permission is Permission.NONE:
            return NEGATIVE_TTL_SECONDS
        return self._write_expires if needed is Permission.WRITE else self._read_expires

    def _wait_for_turn(self, now: float) -> None:
        """A token bucket that queues: a check reserves the next token and waits for it."""
        if self._rate is None:
            return
        with self._lock:
            tokens, updated = self._tokens
            tokens = min(self._rate, tokens + (now - updated) * self._rate)
            wait = max(0.0, (1 - tokens) / self._rate)
            if wait > MAX_CHECK_WAIT_SECONDS:
                raise AuthorizationBusy(math.ceil(wait))
            self._tokens = (tokens - 1, now)
        if wait:
            self._sleep(wait)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """Failed authentications per client address and per repository, as token buckets.

    A client that spent its failures is refused (429 with Retry-After) before its credentials
    are looked at, even ones some other client just used (or it could test guesses against
    the cache at full speed). A repository under attack from many addresses refuses, in the
    same way, only the addresses that have failed themselves: a client that never failed is
    never slowed.
    """

    def __init__(
        self,
        client_burst: float = 20,
        client_rate: float = 1.0,
        repository_burst: float = 100,
        repository_rate: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 65536,
    ) -> None:
        self._client = (client_burst, client_rate)
        self._repository = (repository_burst, repository_rate)
        self._clock = clock
        self._max_clients = max_clients
        self._clients: OrderedDict[str, _Bucket] = OrderedDict()
        self._repositories: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, client: str, repository: str) -> None:
        """Raise `TooManyFailures` if this client may not try credentials now."""
        if not self._clients:  # the common case, on every request: no lock, one truth test
            return
        now = self._clock()
        with self._lock:
            mine = self._refill(self._clients.get(client), self._client, now)
            if mine is None:
                return  # never failed (or long ago): never throttled
            if mine.tokens >= self._client[0]:
                del self._clients[client]
                return
            wait = self._wait(mine, self._client)
            shared = self._refill(self._repositories.get(repository), self._repository, now)
            if shared is not None:
                wait = max(wait, self._wait(shared, self._repository))
        if wait > 0:
            raise TooManyFailures(math.ceil(wait))

    def failed(self, client: str, repository: str) -> None:
        now = self._clock()
        with self._lock:
            mine = self._refill(self._clients.get(client), self._client, now)
            self._clients[client] = self._spend(mine, self._client, now)
            self._clients.move_to_end(client)
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            shared = self._refill(self._repositories.get(repository), self._repository, now)
            self._repositories[repository] = self._spend(shared, self._repository, now)

    @staticmethod
    def _refill(bucket: _Bucket | None, limits: tuple[float, float], now: float) -> _Bucket | None:
        if bucket is None:
            return None
        burst, rate = limits
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket

    @staticmethod
    def _spend(bucket: _Bucket | None, limits: tuple[float, float], now: float) -> _Bucket:
        if bucket is None:
            bucket = _Bucket(limits[0], now)
        bucket.tokens = max(bucket.tokens - 1, -1.0)
        return bucket

    @staticmethod
    def _wait(bucket: _Bucket, limits: tuple[float, float]) -> float:
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / limits[1]
