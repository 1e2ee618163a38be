"""Failed-login tracking and temporary IP bans.

pyftpdlib only disconnects a client after a few wrong passwords; a brute-forcer simply reconnects.
This tracker counts failures per source IP in a sliding window and bans the IP for a while once the
threshold is reached. It lives in the event-loop thread (only banned_now is also read from the metrics
thread), so it needs no locking, and it prunes itself so that a scan from many addresses cannot grow it
without bound.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class BanTracker:
    """Sliding-window failure counter with timed bans; ``max_failures == 0`` disables it."""

    def __init__(
        self, max_failures: int, window: float, duration: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.configure(max_failures, window, duration)
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def configure(self, max_failures: int, window: float, duration: float) -> None:
        """Apply new limits (SIGHUP) without forgetting current bans."""
        self.max_failures, self.window, self.duration = max_failures, window, duration

    def is_banned(self, ip: str) -> bool:
        until = self._banned_until.get(ip)
        if until is None:
            return False
        if self._clock() >= until:
            del self._banned_until[ip]
            return False
        return True

    def banned_now(self) -> int:
        """How many addresses are banned now; called from the metrics thread at scrape time.

        So it never iterates the live dict (the event loop may change it meanwhile): list() copies the
        values in one step under the GIL. Expired bans not yet pruned are not counted.
        """
        now = self._clock()
        return sum(1 for until in list(self._banned_until.values()) if until > now)

    def record_failure(self, ip: str) -> bool:
        """Count one failed login; return True if this failure triggered a new ban."""
        if self.max_failures <= 0:
            return False
        now = self._clock()
        self._prune(now)
        times = self._failures.setdefault(ip, deque())
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) < self.max_failures or ip in self._banned_until:
            return False
        del self._failures[ip]
        self._banned_until[ip] = now + self.duration
        return True

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, times in self._failures.items() if times[-1] <= now - self.window]:
            del self._failures[ip]
        for ip in [ip for ip, until in self._banned_until.items() if until <= now]:
            del self._banned_until[ip]
