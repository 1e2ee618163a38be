"""Unit tests for permission profiles and the ban tracker."""

import pytest
from ftpsd.bans import BanTracker
from ftpsd.permissions import can_overwrite, resolve_permissions


@pytest.mark.parametrize(
    ("spec", "letters"),
    [("full", "elradfmwMT"), ("read_only", "elr"), ("upload_only", "ew"), ("elr", "elr"), ("ew", "ew")],
)
def test_profiles(spec: str, letters: str) -> None:
    assert resolve_permissions(spec) == letters


@pytest.mark.parametrize("bad", ["uplod_only", "", "elrx", "ee", "FULL"])
def test_bad_profiles(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        resolve_permissions(bad)


def test_overwrite_needs_write_and_delete() -> None:
    assert can_overwrite(resolve_permissions("full"))
    assert not can_overwrite(resolve_permissions("upload_only"))
    assert not can_overwrite(resolve_permissions("read_only"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ban_after_failures_in_window_then_expires() -> None:
    clock = Clock()
    bans = BanTracker(3, window=60, duration=100, clock=clock)
    assert not bans.record_failure("192.0.2.1")
    assert not bans.record_failure("192.0.2.1")
    assert not bans.is_banned("192.0.2.1")
    assert bans.record_failure("192.0.2.1")
    assert bans.is_banned("192.0.2.1")
    assert not bans.is_banned("192.0.2.2")
    clock.now += 101
    assert not bans.is_banned("192.0.2.1")


def test_failures_outside_window_do_not_count() -> None:
    clock = Clock()
    bans = BanTracker(2, window=10, duration=100, clock=clock)
    bans.record_failure("192.0.2.1")
    clock.now += 11
    assert not bans.record_failure("192.0.2.1")
    assert not bans.is_banned("192.0.2.1")


def test_zero_disables_banning() -> None:
    bans = BanTracker(0, window=10, duration=100)
    assert not any(bans.record_failure("192.0.2.1") for _ in range(50))
    assert not bans.is_banned("192.0.2.1")
