"""Unit tests for permission profiles, the ban tracker and sd_notify."""

import os
import socket
from pathlib import Path

import pytest
from ftpsd.bans import BanTracker
from ftpsd.permissions import PROFILES, can_overwrite, capabilities, resolve_permissions

from ftpsd import systemd


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


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("full", {"list": True, "read": True, "write": True, "overwrite": True, "delete": True}),
        ("read_only", {"list": True, "read": True, "write": False, "overwrite": False, "delete": False}),
        ("upload_only", {"list": False, "read": False, "write": True, "overwrite": False, "delete": False}),
        ("elrw", {"list": True, "read": True, "write": True, "overwrite": False, "delete": False}),
        ("eT", {"list": False, "read": False, "write": True, "overwrite": False, "delete": False}),
    ],
)
def test_capabilities(spec: str, expected: dict[str, bool]) -> None:
    assert capabilities(spec) == expected


def test_capabilities_follow_the_letters_of_every_profile() -> None:
    for name, letters in PROFILES.items():
        assert capabilities(name) == capabilities(letters)
        assert capabilities(name)["overwrite"] == can_overwrite(letters)


def test_capabilities_refuse_unknown_profiles() -> None:
    with pytest.raises(ValueError, match="unknown profile 'admin'"):
        capabilities("admin")


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


def test_sd_notify_abstract_and_path_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ftpsd-test-{os.getpid()}"
    for address, bind_to in ((f"@{name}", f"\0{name}"), (str(tmp_path / "notify"), str(tmp_path / "notify"))):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(bind_to)
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            assert systemd.notify("READY=1", "STATUS=ok")
            assert listener.recv(100) == b"READY=1\nSTATUS=ok"
            assert systemd.reloading()
            states = listener.recv(100).decode().split("\n")
            assert states[0] == "RELOADING=1"
            assert states[1].startswith("MONOTONIC_USEC=")
            assert int(states[1].split("=")[1]) > 0


def test_sd_notify_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify("READY=1")
