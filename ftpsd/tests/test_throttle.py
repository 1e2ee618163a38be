"""Token bucket arithmetic and the bookkeeping of bandwidth limits (throttle.py), with an injected clock."""

from __future__ import annotations

import random

import pytest
from ftpsd.settings import User
from ftpsd.throttle import DOWNLOAD, MIN_CHUNK, UPLOAD, BandwidthLimits, TokenBucket, burst_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def user(name: str, upload_rate: int = 0, download_rate: int = 0) -> User:
    return User(name, "", "/srv", "elr", "read_only", upload_rate=upload_rate, download_rate=download_rate)


def test_burst_is_a_tenth_of_a_second_but_at_least_one_tls_record() -> None:
    assert burst_of(0) == 0
    assert burst_of(1000) == MIN_CHUNK
    assert burst_of(10_000_000) == 1_000_000


def test_bucket_starts_full_refills_at_its_rate_and_saves_at_most_a_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(1_000_000, clock)
    assert bucket.available() == 100_000
    bucket.spend(100_000)
    assert bucket.available() == 0
    clock.now += 0.05
    assert bucket.available() == pytest.approx(50_000)
    assert bucket.seconds_until(80_000) == pytest.approx(0.03)
    clock.now += 60
    assert bucket.available() == 100_000  # a minute of idling saves no more than the burst


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(0, Clock())
    bucket.spend(10**12)
    assert bucket.available() > 10**15
    assert bucket.seconds_until(10**9) == 0


def test_new_rate_keeps_what_was_saved_up_to_the_new_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(1_000_000, clock)
    bucket.spend(100_000)
    clock.now += 0.02  # 20 000 saved at the old rate
    bucket.set_rate(200_000)
    assert bucket.burst == burst_of(200_000) == 20_000
    assert bucket.available() == pytest.approx(20_000)
    bucket.spend(20_000)
    clock.now += 0.05
    assert bucket.available() == pytest.approx(10_000)  # refilled at the new rate only
    bucket.set_rate(0)
    assert bucket.seconds_until(10**9) == 0
    bucket.set_rate(50_000)  # from unlimited: starts full again
    assert bucket.available() == MIN_CHUNK


def test_no_gate_without_a_limit() -> None:
    limits = BandwidthLimits(Clock())
    limits.configure(0, 0, [user("a")])
    assert limits.gate("a", UPLOAD) is None
    assert limits.gate("a", DOWNLOAD) is None
    assert limits.user_buckets() == 0


def test_gate_allows_the_smaller_of_user_and_server_tokens_and_waits_for_a_record() -> None:
    clock = Clock()
    limits = BandwidthLimits(clock)
    limits.configure(0, 5_000_000, [user("a", download_rate=300_000)])
    gate = limits.gate("a", DOWNLOAD)
    assert gate is not None
    assert limits.gate("a", UPLOAD) is None  # directions are separate
    assert gate.allowance() == 30_000  # the user's burst, smaller than the server's 500 000
    gate.spend(20_000)
    assert gate.allowance() == 0  # 10 000 left: less than one TLS record
    assert gate.seconds_to_wait() == pytest.approx((MIN_CHUNK - 10_000) / 300_000, abs=0.002)
    clock.now += gate.seconds_to_wait()
    assert gate.allowance() >= MIN_CHUNK


def test_sessions_of_one_user_share_its_bucket_which_goes_when_the_last_transfer_ends() -> None:
    limits = BandwidthLimits(Clock())
    limits.configure(0, 0, [user("a", upload_rate=100_000), user("b", upload_rate=100_000)])
    first, second, other = limits.gate("a", UPLOAD), limits.gate("a", UPLOAD), limits.gate("b", UPLOAD)
    assert first is not None and second is not None and other is not None
    assert first.buckets[1] is second.buckets[1]
    assert other.buckets[1] is not first.buckets[1]
    first.spend(MIN_CHUNK)
    assert second.allowance() == 0  # spent by the other session of the same user
    assert other.allowance() == MIN_CHUNK
    assert limits.user_buckets() == 2
    first.release()
    assert limits.user_buckets() == 2
    second.release()
    other.release()
    assert limits.user_buckets() == 0


def test_reload_changes_the_rate_of_buckets_in_use_and_of_the_server() -> None:
    clock = Clock()
    limits = BandwidthLimits(clock)
    limits.configure(1_000_000, 0, [user("a", upload_rate=500_000)])
    gate = limits.gate("a", UPLOAD)
    assert gate is not None
    limits.configure(200_000, 0, [user("a", upload_rate=0)])  # user limit lifted, server's lowered
    assert gate.buckets[1].rate == 0
    assert gate.buckets[0].rate == 200_000
    assert gate.allowance() == 20_000
    limits.configure(0, 0, [])  # every limit lifted: a running gate lets everything through
    gate.spend(10**9)
    assert gate.allowance() > 10**15
    assert limits.gate("a", UPLOAD) is None


@pytest.mark.parametrize("seed", range(5))
def test_greedy_transfers_never_exceed_rate_times_time_plus_one_burst(seed: int) -> None:
    """Three transfers of one user, each taking all it may whenever it is called, at random moments."""
    rng = random.Random(seed)
    clock = Clock()
    rate = rng.choice((50_000, 300_000, 2_000_000))
    limits = BandwidthLimits(clock)
    limits.configure(0, 4 * rate, [user("a", download_rate=rate)])
    gates = [limits.gate("a", DOWNLOAD) for _ in range(3)]
    start, moved = clock.now, 0
    for _ in range(2000):
        clock.now += rng.expovariate(1 / 0.01)
        for gate in gates:
            assert gate is not None
            allowed = gate.allowance()
            if allowed:
                count = rng.choice((allowed, rng.randint(1, allowed)))
                gate.spend(count)
                moved += count
            assert moved <= burst_of(rate) + rate * (clock.now - start) + 1e-6
    assert moved >= rate * (clock.now - start) * 0.8  # and the limit is not much below its rate either


def test_describe_names_the_limits_in_force() -> None:
    limits = BandwidthLimits(Clock())
    limits.configure(0, 1_000_000, [user("a", upload_rate=1), user("b", download_rate=1), user("c")])
    assert limits.describe() == (
        "server-wide uploads unlimited, downloads 1000000 (bytes/s); 2 users with limits of their own"
    )
