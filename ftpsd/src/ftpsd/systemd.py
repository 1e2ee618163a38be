"""Minimal sd_notify(3) so the unit can be Type=notify without a libsystemd dependency.

systemd then knows when the listeners are really up (READY=1), when a reload is in progress
(RELOADING=1 with MONOTONIC_USEC, required by systemd >= 253 for Type=notify-reload semantics) and
when the service is stopping. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*states: str) -> bool:
    """Send newline-separated KEY=VALUE states; return False if there is nobody to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode("utf-8"))
    except OSError:
        return False
    return True


def reloading() -> bool:
    """Announce a reload; systemd wants the CLOCK_MONOTONIC time in microseconds with it."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=Reloading configuration")
