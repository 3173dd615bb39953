"""The authorization cache and the failure throttle: expiries, bounds, and a backend spared
from wrong secrets."""

from __future__ import annotations

import pytest

from pywharf import auth
from pywharf.auth import AuthCache
from pywharf.auth import FailureThrottle
from pywharf.auth import Permission
from pywharf.errors import AuthorizationBusy
from pywharf.errors import TooManyFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:  # an injected sleep: time passes, nobody waits
        self.now += seconds


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
    cache = AuthCache(3600, 300, checks_per_second=5, clock=clock, sleep=clock.advance)
    for n in range(3 * auth.MAX_ENTRIES):
        clock.now += 0.01  # 100 attempts a second, each made to wait its turn
        cache.permission(f"guess-{n}", Permission.READ, backend.authorize)
    seconds = clock.now - 1000.0
    assert backend.calls <= 5 * seconds + 5  # the rate bound, not the attempt rate
    assert len(cache._refused) <= auth.MAX_ENTRIES


def test_a_flood_of_wrong_secrets_never_evicts_a_valid_one() -> None:
    clock, backend = Clock(), Backend()
    cache = AuthCache(3600, 300, clock=clock)
    assert cache.permission("reader", Permission.READ, backend.authorize) is Permission.READ
    for n in range(2 * auth.MAX_ENTRIES):
        cache.permission(f"guess-{n}", Permission.READ, backend.authorize)
    calls = backend.calls
    assert cache.permission("reader", Permission.READ, backend.authorize) is Permission.READ
    assert backend.calls == calls  # still cached


def test_the_oldest_check_is_dropped_first_and_a_recheck_moves_to_the_end() -> None:
    clock, checked = Clock(), []

    def check(secret: str) -> Permission:
        checked.append(secret)
        return Permission.WRITE

    cache = AuthCache(3600, 300, clock=clock)
    secrets = [f"writer-{n}" for n in range(auth.MAX_ENTRIES)]
    for secret in secrets:
        cache.permission(secret, Permission.READ, check)
    clock.now += 301  # the first one's write check is due again: it is re-inserted last
    cache.permission(secrets[0], Permission.WRITE, check)
    cache.permission("one-more", Permission.READ, check)  # over the bound
    assert len(cache._entries) == auth.MAX_ENTRIES
    checked.clear()
    cache.permission(secrets[0], Permission.READ, check)  # kept
    cache.permission(secrets[1], Permission.READ, check)  # dropped: checked again
    assert checked == [secrets[1]]


def test_checks_queued_beyond_the_longest_wait_get_a_503_with_retry_after() -> None:
    """Many requests at the same instant: each reserves the next token; past the bound, 503."""
    backend = Backend()
    cache = AuthCache(3600, 300, checks_per_second=5, clock=Clock(), sleep=lambda _: None)
    answered = busy = 0
    for n in range(40):
        try:
            cache.permission(f"guess-{n}", Permission.READ, backend.authorize)
            answered += 1
        except AuthorizationBusy as error:
            busy += 1
            assert error.status == 503 and dict(error.headers)["Retry-After"] == "3"
    assert answered == 5 + 5 * auth.MAX_CHECK_WAIT_SECONDS  # the bucket, then 2 s of turns
    assert busy == 40 - answered


def test_a_valid_token_waits_its_turn_during_a_flood_and_is_never_refused_unchecked() -> None:
    """Issue 9: a flood of junk tokens locked valid, uncached GitHub tokens out (401)."""
    clock, backend = Clock(), Backend()
    cache = AuthCache(3600, 300, checks_per_second=2, clock=clock, sleep=clock.advance)
    for n in range(2):  # the flood spent the bucket
        cache.permission(f"junk-{n}", Permission.READ, backend.authorize)
    before = clock.now
    assert cache.permission("reader", Permission.READ, backend.authorize) is Permission.READ
    assert 0 < clock.now - before <= auth.MAX_CHECK_WAIT_SECONDS  # it waited, then was checked


def test_a_client_that_keeps_failing_is_refused_before_its_credentials_are_checked() -> None:
    clock = Clock()
    throttle = FailureThrottle(client_burst=3, client_rate=0.5, clock=clock)
    throttle.check("10.0.0.1", "local")  # never failed: fine
    for _ in range(3):
        throttle.check("10.0.0.1", "local")
        throttle.failed("10.0.0.1", "local")
    with pytest.raises(TooManyFailures) as caught:
        throttle.check("10.0.0.1", "local")
    assert caught.value.status == 429
    assert dict(caught.value.headers)["Retry-After"] == "2"  # one token at 0.5 a second
    throttle.check("10.0.0.2", "local")  # another client is not slowed
    clock.now += 2
    throttle.check("10.0.0.1", "local")  # a token came back


def test_a_repository_under_a_spread_attack_slows_only_clients_that_failed() -> None:
    clock = Clock()
    throttle = FailureThrottle(client_burst=5, repository_burst=10, repository_rate=1, clock=clock)
    for n in range(10):
        throttle.failed(f"10.0.1.{n}", "local")
    with pytest.raises(TooManyFailures):
        throttle.check("10.0.1.0", "local")  # failed once, and the repository is spent
    throttle.check("10.0.2.1", "local")  # never failed: never slowed
    throttle.check("10.0.1.0", "other")  # another repository's budget is its own


def test_the_throttle_forgets_clients_beyond_its_bound() -> None:
    throttle = FailureThrottle(clock=Clock(), max_clients=100)
    for n in range(1000):
        throttle.failed(f"client-{n}", "local")
    assert len(throttle._clients) == 100


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
