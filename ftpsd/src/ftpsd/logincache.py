"""Successful password checks remembered for a while, so that repeat logins skip the KDF.

A client that logs in again and again (a health gate, a sync job, a batch of parallel transfers)
would otherwise pay one argon2id per login. As SFTPGo's password caching does, a verification that
succeeded is remembered in memory under a keyed hash of the user name, the stored hash and the
password; the next login with the same three takes the fast path: one HMAC-SHA256 on the event loop
instead of a KDF in a worker thread.

What keeps this safe:

* Only successes are stored. A wrong password never matches an entry (its key differs) and always
  pays the full KDF, so a brute-forcer gains nothing, and failures still count towards bans.
* The key includes the stored hash, so a changed password, or a reload that gives the user another
  hash, makes the old entry unreachable at once (it then ages out); a user removed by a reload is
  never looked up at all.
* The HMAC secret is random per process and never leaves memory: entries are worthless outside it
  and gone after a restart. Someone who can read the process's memory could test guesses against an
  entry at HMAC speed, which is why entries expire (ttl) and ttl = 0 turns the cache off.
* Entries expire ttl seconds after the verification that made them, and the cache holds at most
  max_entries (least recently used dropped first), so its memory is bounded whatever clients do.

Lookups run on the event loop, insertions in the worker threads that verified: a lock guards both.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from ftpsd.passwords import verify_password

MAX_ENTRIES = 4096  # about 100 bytes each: well under 1 MiB


class LoginCache:
    """Remembered successful (user, stored hash, password) verifications, bounded in time and size."""

    def __init__(
        self, ttl: float, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.hits = 0  # logins that skipped the KDF, for the log and the tests
        self._clock = clock
        self._secret = os.urandom(32)
        self._expiry: OrderedDict[bytes, float] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def configure(self, ttl: float) -> None:
        """Apply a reloaded ttl; turning the cache off forgets what it holds."""
        with self._lock:
            self.ttl = ttl
            if ttl <= 0:
                self._expiry.clear()

    def __len__(self) -> int:
        return len(self._expiry)

    def _key(self, user: str, encoded: str, password: str) -> bytes:
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (user, encoded, password):
            data = part.encode("utf-8", "surrogatepass")
            mac.update(len(data).to_bytes(4, "big") + data)  # length-prefixed: no ambiguous joins
        return mac.digest()

    def hit(self, user: str, encoded: str, password: str) -> bool:
        """True if this exact password was verified against this stored hash less than ttl ago."""
        if self.ttl <= 0:
            return False
        key = self._key(user, encoded, password)
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[key]
                return False
            self._expiry.move_to_end(key)
            self.hits += 1
            return True

    def verify(self, user: str, encoded: str, password: str) -> bool:
        """The full check (passwords.verify_password); a success is remembered for ttl seconds."""
        if not verify_password(password, encoded):
            return False
        if self.ttl > 0:
            key = self._key(user, encoded, password)
            with self._lock:
                self._expiry[key] = self._clock() + self.ttl
                self._expiry.move_to_end(key)
                while len(self._expiry) > self.max_entries:
                    self._expiry.popitem(last=False)
        return True
