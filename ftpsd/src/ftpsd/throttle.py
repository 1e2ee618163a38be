"""Bandwidth limits: token buckets for the whole server and per user, and the data channel's side of them.

Four kinds of bucket, each filled at its rate in bytes per second up to a small burst: server-wide
uploads, server-wide downloads (``[limits] upload_rate``/``download_rate``), and per user and direction
(``[[users]] upload_rate``/``download_rate``), shared by all data connections of that user in all its
sessions. A file transfer may move min(tokens of its user's bucket, tokens of the server's bucket) bytes
now and spends them from both, so every bucket holds: bytes moved in any interval of t seconds <=
burst + rate * t. When there are not enough tokens, the data connection is taken off the event loop
(no read interest for an upload, no write interest for a download) and put back with ``call_later`` when
the tokens will be there: nothing is buffered, nothing sleeps, the loop serves everybody else meanwhile,
and TCP flow control holds the client back.

Only file transfers (RETR, STOR, STOU) are limited; listings are not. A transfer gets a gate
(``TransferGate``) when it starts if a limit applies to it (its user's rate or the server's for its
direction); one without a limit has no gate and runs exactly as without this module (one attribute check
per read or write). A reload changes the rates of the buckets in place, so transfers that have a gate
follow new limits at once (also a limit lifted, set to 0); a transfer that started without any limit
keeps running unlimited, and new transfers get the new limits. The time transfers spend held back is
counted for the metrics (``ftpsd_transfer_held_back_seconds``).

Memory stays bounded: the two server buckets always exist, a user's bucket for a direction exists only
while at least one gate uses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from pyftpdlib.handlers.ftp.producers import FileProducer

if TYPE_CHECKING:
    from ftpsd.metrics import Metrics
    from ftpsd.settings import User

UPLOAD = "upload"
DOWNLOAD = "download"
# The smallest amount a transfer waits for: one TLS record (16 KiB of plaintext). Uploads are read in
# whole records (tls.read_available), so a bucket must be able to hold at least one.
MIN_CHUNK = 16384
# A bucket saves at most this many seconds of its rate (and at least MIN_CHUNK): the most a limit can be
# exceeded by over any interval.
BURST_SECONDS = 0.1
# Throttled transfers move data in smaller pieces: they last longer, so more of them run at once, and each
# piece is only what the tokens allow anyway. Downloads read the file in such pieces (asynchat copies what
# a partial send leaves over), uploads read the socket into a buffer of this size instead of 1 MiB.
THROTTLED_CHUNK = 65536
# A wait a little longer than computed, so the tokens are really there when the loop calls back.
_SLACK = 0.001
_UNLIMITED = 1 << 62


def burst_of(rate: int) -> int:
    return max(MIN_CHUNK, int(rate * BURST_SECONDS)) if rate else 0


class TokenBucket:
    """``rate`` bytes per second (0 = unlimited), saving up to ``burst`` bytes; starts full."""

    __slots__ = ("burst", "clock", "holders", "rate", "stamp", "tokens")

    def __init__(self, rate: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.holders = 0  # gates using it (per-user buckets only)
        self.rate = 0
        self.burst = 0
        self.tokens = 0.0
        self.stamp = clock()
        self.set_rate(rate)

    def set_rate(self, rate: int) -> None:
        """A new rate (reload): what was saved at the old rate stays, up to the new burst."""
        now = self.clock()
        if not self.rate:
            self.tokens = float(burst_of(rate))
        else:
            self._refill(now)
        self.rate = rate
        self.burst = burst_of(rate)
        self.tokens = min(self.tokens, float(self.burst))
        self.stamp = now

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self) -> float:
        if not self.rate:
            return float(_UNLIMITED)
        self._refill(self.clock())
        return self.tokens

    def spend(self, count: int) -> None:
        if self.rate:
            self.tokens -= count

    def seconds_until(self, count: int) -> float:
        """How long until ``count`` tokens are there (0 if they are, or if unlimited)."""
        if not self.rate:
            return 0.0
        return max(0.0, (count - self.available()) / self.rate)


class BandwidthLimits:
    """All buckets of the server; one instance for the server's life, reconfigured on every reload."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._server = {UPLOAD: TokenBucket(0, clock), DOWNLOAD: TokenBucket(0, clock)}
        self._user_rates: dict[tuple[str, str], int] = {}
        self._user_buckets: dict[tuple[str, str], TokenBucket] = {}

    def configure(self, upload_rate: int, download_rate: int, users: Iterable[User]) -> None:
        """Install the rates of a (re)loaded config; buckets in use change rate in place."""
        self._server[UPLOAD].set_rate(upload_rate)
        self._server[DOWNLOAD].set_rate(download_rate)
        self._user_rates = {}
        for user in users:
            for direction, rate in ((UPLOAD, user.upload_rate), (DOWNLOAD, user.download_rate)):
                if rate:
                    self._user_rates[user.name, direction] = rate
        for key, bucket in self._user_buckets.items():
            bucket.set_rate(self._user_rates.get(key, 0))

    def describe(self) -> str:
        """The limits in force, for the log at start and reload."""
        rates = [f"{d}s {self._server[d].rate or 'unlimited'}" for d in (UPLOAD, DOWNLOAD)]
        users = len({name for name, _ in self._user_rates})
        return f"server-wide {', '.join(rates)} (bytes/s); {users} users with limits of their own"

    def gate(self, user: str, direction: str) -> TransferGate | None:
        """The gate of a transfer starting now, or None if no limit applies to it."""
        key = (user, direction)
        rate = self._user_rates.get(key, 0)
        server = self._server[direction]
        if not rate and not server.rate:
            return None
        bucket = self._user_buckets.get(key)
        if bucket is None:
            bucket = self._user_buckets[key] = TokenBucket(rate, self._clock)
        bucket.holders += 1
        return TransferGate(self, key, server, bucket)

    def user_buckets(self) -> int:
        """How many per-user buckets exist now (each is used by a running transfer)."""
        return len(self._user_buckets)

    def _release(self, key: tuple[str, str], bucket: TokenBucket) -> None:
        bucket.holders -= 1
        if bucket.holders <= 0 and self._user_buckets.get(key) is bucket:
            del self._user_buckets[key]


class TransferGate:
    """One transfer's view of its two buckets, and whether it is being held back."""

    __slots__ = ("_key", "_limits", "buckets", "held", "held_at", "held_since_check", "timer")

    def __init__(
        self, limits: BandwidthLimits, key: tuple[str, str], server: TokenBucket, user: TokenBucket
    ) -> None:
        self._limits = limits
        self._key = key
        self.buckets = (server, user)
        self.held = False  # off the loop now, waiting for tokens
        self.held_at = 0.0
        self.held_since_check = False  # held back since the data timeout last looked
        self.timer: Any = None  # the loop's call that puts the connection back

    @property
    def direction(self) -> str:
        return self._key[1]

    def hold(self) -> None:
        if not self.held:
            self.held, self.held_at = True, self.buckets[0].clock()
        self.held_since_check = True

    def let_go(self) -> float:
        """No longer held back; returns for how many seconds it was (0 if it was not)."""
        if not self.held:
            return 0.0
        self.held = False
        return self.buckets[0].clock() - self.held_at

    def allowance(self) -> int:
        """Bytes the transfer may move now; 0 if it must wait for at least MIN_CHUNK tokens."""
        allowed = min(bucket.available() for bucket in self.buckets)
        return int(allowed) if allowed >= MIN_CHUNK else 0

    def seconds_to_wait(self) -> float:
        return max(bucket.seconds_until(MIN_CHUNK) for bucket in self.buckets) + _SLACK

    def spend(self, count: int) -> None:
        for bucket in self.buckets:
            bucket.spend(count)

    def release(self) -> float:
        """The transfer ended: stop any pending call back, let go of the user's bucket; returns let_go()."""
        if self.timer is not None and not self.timer.cancelled:
            self.timer.cancel()
        self.timer = None
        self._limits._release(self._key, self.buckets[1])
        return self.let_go()


class ThrottledTransfer:
    """Data-channel side: gates file transfers, holds them back off the loop, keeps the timeout honest.

    A mixin for the data handler placed like uploads.AtomicUploadDTP, below pyftpdlib's
    SSLConnectionMixin (which hands reads, closes after the TLS shutdown and errors to ``super()``) and
    above AtomicUploadDTP (``class FtpsDataHandler(TLS_DTPHandler, ThrottledTransfer, AtomicUploadDTP)``).
    Uploads are limited through ``read_limit``, which AtomicUploadDTP honours for one read (and
    ``upload_buffer_size``); downloads by ``ac_out_buffer_size``, which asynchat uses to cut what it hands
    to ``send()``.
    """

    bandwidth: ClassVar[BandwidthLimits]  # set by server.Server._apply
    metrics: Metrics  # likewise
    throttle: TransferGate | None = None

    def enable_receiving(self, type: str, cmd: str) -> None:
        if self.file_obj is not None:
            self.throttle = self.bandwidth.gate(self.cmd_channel.username, UPLOAD)
            if self.throttle is not None:
                self.upload_buffer_size = THROTTLED_CHUNK
        super().enable_receiving(type, cmd)

    def push_with_producer(self, producer: Any) -> None:  # noqa: ANN401 - pyftpdlib producer
        if isinstance(producer, FileProducer):
            self.throttle = self.bandwidth.gate(self.cmd_channel.username, DOWNLOAD)
            if self.throttle is not None:
                producer.buffer_size = min(producer.buffer_size, THROTTLED_CHUNK)
        super().push_with_producer(producer)

    def handle_read_event(self) -> None:
        gate = self.throttle
        if gate is None:
            super().handle_read_event()
            return
        allowed = gate.allowance()
        if not allowed:
            self._hold_back(gate)
            return
        before = self.tot_bytes_received
        self.read_limit = allowed
        try:
            super().handle_read_event()
        finally:
            self.read_limit = 0
        gate.spend(self.tot_bytes_received - before)

    def initiate_send(self) -> None:
        gate = self.throttle
        if gate is None or not self.producer_fifo:
            super().initiate_send()
            return
        allowed = gate.allowance()
        if not allowed:
            self._hold_back(gate)
            return
        before = self.tot_bytes_sent
        chunk = self.ac_out_buffer_size
        self.ac_out_buffer_size = min(allowed, chunk)
        try:
            super().initiate_send()
        finally:
            self.ac_out_buffer_size = chunk
        gate.spend(self.tot_bytes_sent - before)

    def modify_ioloop_events(self, events: int, logdebug: bool = False) -> None:
        """A held-back connection stays off the loop (the TLS layer would put it back)."""
        if self.throttle is not None and self.throttle.held:
            return
        super().modify_ioloop_events(events, logdebug)

    def handle_timeout(self) -> None:
        """A transfer held back by a limit is not idle: the data timeout only judges the client."""
        gate = self.throttle
        if gate is not None and (gate.held or gate.held_since_check):
            gate.held_since_check = False
            return
        super().handle_timeout()

    def close(self) -> None:
        gate = self.throttle
        if gate is not None:
            self.throttle = None
            self._count_held(gate, gate.release())
        super().close()

    def _hold_back(self, gate: TransferGate) -> None:
        gate.hold()
        self.del_channel()
        if gate.timer is None:
            gate.timer = self.ioloop.call_later(
                gate.seconds_to_wait(), self._let_go, gate, _errback=self.handle_error
            )

    def _let_go(self, gate: TransferGate) -> None:
        gate.timer = None
        self._count_held(gate, gate.let_go())
        if not self._closed and self.throttle is gate:
            self.modify_ioloop_events(self._wanted_io_events)  # registers the connection again

    def _count_held(self, gate: TransferGate, seconds: float) -> None:
        if seconds:
            self.metrics.held_back(gate.direction, seconds)
