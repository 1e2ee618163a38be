"""Unit tests for the login cache: only successes are remembered, for ttl seconds, at most max_entries."""

from __future__ import annotations

import argon2
import pytest
from ftpsd.logincache import LoginCache
from ftpsd.passwords import hash_password

# Cheap real argon2id hashes (the cache's rules do not depend on the cost).
_CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    """A clock the test moves by hand, so expiry is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_hit_after_a_successful_verification(clock: Clock) -> None:
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("s3cret")
    assert not cache.hit("alice", encoded, "s3cret")  # miss: never verified
    assert cache.verify("alice", encoded, "s3cret")
    assert cache.hit("alice", encoded, "s3cret")
    assert cache.hits == 1
    assert len(cache) == 1


def test_miss_for_another_password_user_or_hash(clock: Clock) -> None:
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("s3cret")
    assert cache.verify("alice", encoded, "s3cret")
    assert not cache.hit("alice", encoded, "s3cret ")
    assert not cache.hit("bob", encoded, "s3cret")
    assert not cache.hit("alice", encoded + "x", "s3cret")
    assert cache.hits == 0


def test_wrong_password_is_never_cached(clock: Clock) -> None:
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("s3cret")
    for _ in range(3):
        assert not cache.verify("alice", encoded, "guess")
        assert not cache.hit("alice", encoded, "guess")
    assert len(cache) == 0


def test_entry_expires_after_ttl(clock: Clock) -> None:
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("s3cret")
    cache.verify("alice", encoded, "s3cret")
    clock.now += 59.9
    assert cache.hit("alice", encoded, "s3cret")
    clock.now += 0.1
    assert not cache.hit("alice", encoded, "s3cret")
    assert len(cache) == 0  # an expired entry found on lookup is dropped


def test_a_hit_does_not_extend_the_lifetime(clock: Clock) -> None:
    """ttl counts from the verification that paid the KDF, however often the entry is used."""
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("s3cret")
    cache.verify("alice", encoded, "s3cret")
    for _ in range(5):
        clock.now += 11
        assert cache.hit("alice", encoded, "s3cret")
    clock.now += 5
    assert not cache.hit("alice", encoded, "s3cret")


def test_size_bound_drops_the_least_recently_used(clock: Clock) -> None:
    cache = LoginCache(ttl=60, max_entries=3, clock=clock)
    encoded = {name: _CHEAP.hash(f"pw-{name}") for name in ("a", "b", "c", "d")}
    for name in ("a", "b", "c"):
        assert cache.verify(name, encoded[name], f"pw-{name}")
    assert cache.hit("a", encoded["a"], "pw-a")  # a is now the most recently used
    assert cache.verify("d", encoded["d"], "pw-d")
    assert len(cache) == 3
    assert not cache.hit("b", encoded["b"], "pw-b")  # b was the least recently used
    for name in ("a", "c", "d"):
        assert cache.hit(name, encoded[name], f"pw-{name}")


def test_changed_hash_drops_the_entry(clock: Clock) -> None:
    """A password change or a reload gives the user another stored hash: the old entry no longer matches."""
    cache = LoginCache(ttl=60, clock=clock)
    old = hash_password("s3cret", salt=b"host-a:alice-old")
    cache.verify("alice", old, "s3cret")
    same_password_new_hash = hash_password("s3cret", salt=b"host-a:alice-new")
    assert not cache.hit("alice", same_password_new_hash, "s3cret")
    changed_password = hash_password("n3w", salt=b"host-a:alice-old")
    assert not cache.hit("alice", changed_password, "n3w")
    assert not cache.hit("alice", changed_password, "s3cret")


def test_ttl_zero_disables_and_reconfigure_clears(clock: Clock) -> None:
    encoded = _CHEAP.hash("s3cret")
    off = LoginCache(ttl=0, clock=clock)
    assert off.verify("alice", encoded, "s3cret")  # still a full, correct verification
    assert not off.hit("alice", encoded, "s3cret")
    assert len(off) == 0
    cache = LoginCache(ttl=60, clock=clock)
    cache.verify("alice", encoded, "s3cret")
    cache.configure(0)
    assert len(cache) == 0
    cache.configure(60)
    assert not cache.hit("alice", encoded, "s3cret")


def test_keys_are_per_process_secret() -> None:
    """Two caches (two server processes) key the same login differently: the HMAC secret is random."""
    encoded = _CHEAP.hash("s3cret")
    first, second = LoginCache(ttl=60), LoginCache(ttl=60)
    assert first._key("alice", encoded, "s3cret") == first._key("alice", encoded, "s3cret")
    assert first._key("alice", encoded, "s3cret") != second._key("alice", encoded, "s3cret")


def test_length_prefixed_fields_do_not_collide(clock: Clock) -> None:
    """("ab", hash, "c") and ("a", hash, "bc") must be different keys."""
    cache = LoginCache(ttl=60, clock=clock)
    encoded = _CHEAP.hash("x")
    assert cache._key("ab", encoded, "c") != cache._key("a", encoded, "bc")
