"""The Prometheus metrics: one registry of ftpsd's counters and gauges, and its HTTP exposition.

The handlers report events through the one ``Metrics`` object the server gives them (control.py, login.py,
tls.py, server.py); what each event means is decided there, where it happens, and this module only counts.

Every label has a small fixed set of values, all created at zero at start-up: no user name, address or
path ever becomes a label, because an attacker who can pick them (a login as "x1", "x2", ...) could grow
the registry, and with it the server's memory and every scrape, without bound. Zero series from the first
scrape on also let ``rate()`` and ``increase()`` see the first event, and let an alert rule compare with
zero instead of having to handle an absent series.

The HTTP server (prometheus_client's, in its own thread) answers scrapes off the FTP event loop: a slow
or stuck scraper never delays a session. Only the banned-addresses gauge reads live server state at
scrape time (``BanTracker.banned_now``, written for that thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from ftpsd.certexpiry import not_after
from ftpsd.quotas import Quota
from ftpsd.tls import TlsMaterial

PORT_KINDS = ("explicit", "implicit")
REFUSAL_REASONS = ("limit", "per_ip_limit", "banned", "proxy_protocol")
# "error": the password was right but the server could not log the user in (missing home directory) or
# could not check it at all; neither says anything about the client, so neither is a wrong password.
LOGIN_RESULTS = ("ok", "wrong_password_or_unknown_user", "not_allowed_network", "banned", "error")
HANDSHAKE_FAILURES = ("protocol_version", "no_shared_cipher", "certificate", "eof", "other")
DIRECTIONS = ("upload", "download")
TRANSFER_RESULTS = ("ok", "failed", "aborted")
RELOAD_RESULTS = ("ok", "failed")
_QUOTA_HELP = {
    "used": "usage the server counts now (uploads in progress included)",
    "limit": "the limit (0 = none)",
}
# Seconds: from a small file on a LAN to an hour-long upload over a slow line.
TRANSFER_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Metrics:
    """ftpsd's metrics on a registry of their own (nothing a library registers globally leaks in)."""

    def __init__(self, banned_now: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        reg = self.registry
        self.sessions = Gauge("ftpsd_sessions", "Control connections open now.", ["port_kind"], registry=reg)
        self.refused = Counter(
            "ftpsd_connections_refused",
            "Connections refused before a session began.",
            ["reason"],
            registry=reg,
        )
        self.logins = Counter("ftpsd_logins", "Login attempts (PASS) by result.", ["result"], registry=reg)
        self.banned = Gauge("ftpsd_banned_addresses", "Client addresses banned now.", registry=reg)
        self.banned.set_function(banned_now)
        self.handshake_failures = Counter(
            "ftpsd_tls_handshake_failures",
            "TLS handshakes that failed, control and data connections.",
            ["reason"],
            registry=reg,
        )
        self.transfers = Counter(
            "ftpsd_transfers", "Finished file transfers.", ["direction", "result"], registry=reg
        )
        self.transfer_bytes = Counter(
            "ftpsd_transfer_bytes", "Bytes moved by file transfers, any result.", ["direction"], registry=reg
        )
        self.transfer_seconds = Histogram(
            "ftpsd_transfer_duration_seconds",
            "Duration of file transfers, any result.",
            ["direction"],
            buckets=TRANSFER_BUCKETS,
            registry=reg,
        )
        self.held_back_seconds = Counter(
            "ftpsd_transfer_held_back_seconds",
            "Seconds file transfers spent held back by bandwidth limits, summed over transfers.",
            ["direction"],
            registry=reg,
        )
        self.bandwidth_limit = Gauge(
            "ftpsd_bandwidth_limit_bytes_per_second",
            "Server-wide bandwidth limit ([limits] upload_rate/download_rate); 0 is none.",
            ["direction"],
            registry=reg,
        )
        self.certificate_not_after = Gauge(
            "ftpsd_certificate_not_after_timestamp_seconds",
            "Expiry (notAfter) of the certificate served to new connections, seconds since the epoch.",
            registry=reg,
        )
        # The window as a metric of its own so that an alert rule compares not-after with it without
        # knowing the inventory (ftps_certificate_renew_before_days, which the role passes on).
        self.renewal_window = Gauge(
            "ftpsd_certificate_renewal_window_seconds",
            "Renewal window (tls.renewal_warning_days) in seconds: a certificate expiring within it is due.",
            registry=reg,
        )
        self.reload_time = Gauge(
            "ftpsd_last_reload_timestamp_seconds",
            "When the configuration was last loaded or a reload tried (start-up counts), since the epoch.",
            registry=reg,
        )
        self.reload_result = Gauge(
            "ftpsd_last_reload_result",
            "1 for the result of the last configuration load (start-up or reload), 0 for the other one.",
            ["result"],
            registry=reg,
        )
        # Labelled by the quota folders of the config: a set the operator fixes, never a client.
        self.quota_gauges = {
            (kind, dimension): Gauge(
                f"ftpsd_quota_{kind}_{dimension}",
                f"Folder quotas ([[quotas]]): {_QUOTA_HELP[kind]}, in {dimension}.",
                ["path"],
                registry=reg,
            )
            for kind in ("used", "limit")
            for dimension in ("bytes", "files")
        }
        for metric, values in (
            (self.sessions, PORT_KINDS),
            (self.refused, REFUSAL_REASONS),
            (self.logins, LOGIN_RESULTS),
            (self.handshake_failures, HANDSHAKE_FAILURES),
            (self.transfer_bytes, DIRECTIONS),
            (self.transfer_seconds, DIRECTIONS),
            (self.held_back_seconds, DIRECTIONS),
            (self.bandwidth_limit, DIRECTIONS),
            (self.reload_result, RELOAD_RESULTS),
        ):
            for value in values:
                metric.labels(value)
        for direction in DIRECTIONS:
            for result in TRANSFER_RESULTS:
                self.transfers.labels(direction, result)
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve(self, address: str, port: int) -> None:
        """Start answering scrapes on address:port (raises OSError if it cannot bind); port 0 serves none."""
        if port:
            self._http = start_http_server(port, address, registry=self.registry)

    def close(self) -> None:
        """Stop the HTTP server and release its port (waits for a scrape in progress)."""
        if self._http is not None:
            server, thread = self._http
            self._http = None
            server.shutdown()
            server.server_close()
            thread.join()

    # --- events, reported by the handlers

    def session_opened(self, port_kind: str) -> None:
        self.sessions.labels(port_kind).inc()

    def session_closed(self, port_kind: str) -> None:
        self.sessions.labels(port_kind).dec()

    def connection_refused(self, reason: str) -> None:
        self.refused.labels(reason).inc()

    def login(self, result: str) -> None:
        self.logins.labels(result).inc()

    def handshake_failed(self, reason: str) -> None:
        self.handshake_failures.labels(reason).inc()

    def transfer(self, direction: str, result: str, size: int, seconds: float) -> None:
        self.transfers.labels(direction, result).inc()
        self.transfer_bytes.labels(direction).inc(size)
        self.transfer_seconds.labels(direction).observe(seconds)

    def held_back(self, direction: str, seconds: float) -> None:
        self.held_back_seconds.labels(direction).inc(seconds)

    def bandwidth_limits(self, upload_rate: int, download_rate: int) -> None:
        self.bandwidth_limit.labels("upload").set(upload_rate)
        self.bandwidth_limit.labels("download").set(download_rate)

    def quotas_loaded(self, quotas: tuple[Quota, ...]) -> None:
        """The quota folders of the configuration now served: their gauges read the live Quota objects."""
        for gauge in self.quota_gauges.values():
            gauge.clear()
        for quota in quotas:
            values = {
                ("used", "bytes"): lambda q=quota: q.used_bytes,
                ("used", "files"): lambda q=quota: q.used_files,
                ("limit", "bytes"): lambda q=quota: q.max_bytes,
                ("limit", "files"): lambda q=quota: q.max_files,
            }
            for key, read in values.items():
                self.quota_gauges[key].labels(quota.path).set_function(read)

    def loaded(self, material: TlsMaterial | None) -> None:
        """A configuration load ended: with the material now served, or None if it failed (old one stays).

        A failed load keeps the certificate and window gauges at the old values: those are still served.
        """
        self.reload_time.set(time.time())
        self.reload_result.labels("ok").set(material is not None)
        self.reload_result.labels("failed").set(material is None)
        if material is not None:
            self.certificate_not_after.set(not_after(material).timestamp())
            self.renewal_window.set(material.settings.renewal_warning_days * 86400)
