"""The authorization cache: expiries, bounds, and a backend spared from wrong secrets."""

from __future__ import annotations

from pywharf import auth
from pywharf.auth import AuthCache
from pywharf.auth import Permission


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """Counts checks; `token` writes, `reader` reads, anything else is refused."""

    def __init__(self) -> None:
        self.calls = 0

    def authorize(self, secret: str) -> Permission:
        self.calls += 1
        return {"token": Permission.WRITE, "reader": Permission.READ}.get(secret, Permission.NONE)


def test_reads_and_writes_are_cached_for_their_own_expiry() -> None:
    clock, backend = Clock(), Backend()
    cache = AuthCache(read_expires=3600, write_expires=300, clock=clock)
    assert cache.permission("token", Permission.WRITE, backend.authorize) is Permission.WRITE
    clock.now += 299
    assert cache.permission("token", Permission.WRITE, backend.authorize) is Permission.WRITE
    assert backend.calls == 1
    clock.now += 2  # past the write expiry: a write is checked again, a read is not
    assert cache.permission("token", Permission.READ, backend.authorize) is Permission.WRITE
    assert backend.calls == 1
    assert cache.permission("token", Permission.WRITE, backend.authorize) is Permission.WRITE
    assert backend.calls == 2
    clock.now += 3601
    assert cache.permission("token", Permission.READ, backend.authorize) is Permission.WRITE
    assert backend.calls == 3


def test_a_wrong_secret_costs_one_check_per_negative_interval() -> None:
    clock, backend = Clock(), Backend()
    cache = AuthCache(3600, 300, checks_per_second=5, clock=clock)
    for _ in range(1000):
        assert cache.permission("wrong", Permission.READ, backend.authorize) is Permission.NONE
    assert backend.calls == 1
    clock.now += auth.NEGATIVE_TTL_SECONDS
    cache.permission("wrong", Permission.READ, backend.authorize)
    assert backend.calls == 2


def test_a_stream_of_distinct_wrong_secrets_neither_grows_memory_nor_hammers_the_backend() -> None:
    clock, backend = Clock(), Backend()
    cache = AuthCache(3600, 300, checks_per_second=5, clock=clock)
    for n in range(3 * auth.MAX_ENTRIES):
        clock.now += 0.01  # 100 attempts a second
        cache.permission(f"guess-{n}", Permission.READ, backend.authorize)
    seconds = 3 * auth.MAX_ENTRIES * 0.01
    assert backend.calls <= 5 * seconds + 5  # the rate bound, not the attempt rate
    assert len(cache._entries) <= auth.MAX_ENTRIES


def test_a_free_backend_is_not_rate_bound() -> None:
    backend = Backend()
    cache = AuthCache(3600, 300, checks_per_second=None, clock=Clock())
    for n in range(100):
        cache.permission(f"guess-{n}", Permission.READ, backend.authorize)
    assert cache.permission("reader", Permission.READ, backend.authorize) is Permission.READ
    assert backend.calls == 101


def test_clear_drops_every_decision() -> None:
    backend = Backend()
    cache = AuthCache(3600, 300, clock=Clock())
    cache.permission("token", Permission.READ, backend.authorize)
    cache.clear()
    cache.permission("token", Permission.READ, backend.authorize)
    assert backend.calls == 2
