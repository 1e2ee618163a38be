"""Assembling the listeners, the shared event loop, signals and configuration reload.

Both the explicit port and the optional implicit port are served by one process and one event loop,
so limits (connections per IP, bans) are shared between them. Reloadable settings are class
attributes of the two handler classes: new connections read them, running sessions keep the
snapshot they took (their own TLS context, users and permissions), which is what lets SIGHUP swap
certificates and users without disturbing transfers in progress.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from ftpsd import systemd
from ftpsd.authorizer import ConfigAuthorizer
from ftpsd.bans import BanTracker
from ftpsd.certexpiry import CHECK_INTERVAL, warn_if_due
from ftpsd.config import Config, ConfigError, load_config
from ftpsd.control import FtpsControlHandler, FtpsDataHandler, ImplicitFtpsControlHandler
from ftpsd.logincache import LoginCache
from ftpsd.metrics import Metrics
from ftpsd.offload import LoopWaker, Offloader
from ftpsd.ownuploads import RecentUploads
from ftpsd.partials import sweep, sweep_interval
from ftpsd.passwords import keep_kdf_memory_off_the_heap
from ftpsd.proxied import HeaderWait, from_load_balancer, no_room_for
from ftpsd.quotas import QuotaBook
from ftpsd.sessions import ContextsByAddress, SessionOwners
from ftpsd.throttle import BandwidthLimits
from ftpsd.tls import TlsMaterial, load_material, offered_groups
from ftpsd.transferlog import TransferLog

logger = logging.getLogger("ftpsd")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_BANNED_REPLY = b"421 Too many failed logins from your address; try again later.\r\n"
_FULL_REPLY = b"421 Too many connections. Service temporarily unavailable.\r\n"  # pyftpdlib's max_cons reply


class StartupError(RuntimeError):
    """The server cannot start with this config (message is meant for the operator)."""


def configure_logging(level: str) -> None:
    """Log to stderr (journald captures it) with one format for ftpsd and pyftpdlib records."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    for name in ("ftpsd", "pyftpdlib"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level.upper())
        log.propagate = False


def check_homes(config: Config) -> None:
    """Fail early (at start and reload) instead of at the first login of a user without a home."""
    for index, user in enumerate(config.users):
        if not os.path.isdir(user.home):
            raise ConfigError(f"users[{index}].home: directory {user.home} does not exist")


@dataclass
class _Prepared:
    """Everything built from a config before it is applied, so a failure changes nothing."""

    config: Config
    material: TlsMaterial
    authorizer: ConfigAuthorizer
    transfer_log: TransferLog


def prepare(path: str) -> _Prepared:
    config = load_config(path)
    check_homes(config)
    material = load_material(config.tls)
    try:
        transfer_log = TransferLog(config.logging.transfer_log)
    except OSError as err:
        raise ConfigError(
            f"logging.transfer_log: cannot open {config.logging.transfer_log}: {err.strerror}"
        ) from err
    return _Prepared(config, material, ConfigAuthorizer(config.users), transfer_log)


class _Listener(FTPServer):
    """FTPServer that reads a load balancer's PROXY v2 header first (proxied.py), then turns away banned
    addresses (the client's, from the header) before any handler (or TLS) work is done."""

    bans: BanTracker
    metrics: Metrics
    send_refusal = True

    def handle_accepted(self, sock: Any, addr: Any) -> Any:  # noqa: ANN401
        handler = self.handler
        if not from_load_balancer(handler.proxy_protocol_from, addr[0]):
            return self._admit(sock, addr)
        if no_room_for(self.ioloop, self.max_cons):
            self.metrics.connection_refused("limit")
            logger.warning("refused connection from load balancer %s:%s: max_connections reached", *addr[:2])
            self._turn_away(sock, _FULL_REPLY)
            return None

        def refuse(reason: str) -> None:
            self.metrics.connection_refused("proxy_protocol")
            logger.warning(
                "refused connection from load balancer %s:%s without a valid PROXY v2 header: %s",
                addr[0],
                addr[1],
                reason,
            )

        HeaderWait(
            sock, addr, self.ioloop, timeout=handler.proxy_header_timeout, admit=self._admit, refuse=refuse
        )
        return None

    def _admit(self, sock: Any, addr: Any) -> Any:  # noqa: ANN401
        if self.bans.is_banned(addr[0]):
            self.metrics.connection_refused("banned")
            logger.warning("refused connection from banned address %s:%s", addr[0], addr[1])
            self._turn_away(sock, _BANNED_REPLY)
            return None
        return super().handle_accepted(sock, addr)

    def _turn_away(self, sock: Any, reply: bytes) -> None:  # noqa: ANN401
        """Close a connection before any session work; the explicit port first says why (TLS not begun)."""
        if self.send_refusal:
            with contextlib.suppress(OSError):
                sock.send(reply)
        sock.close()


def _bind(address: str, port: int) -> socket.socket | tuple[str, int]:
    """What a listener binds: "::" is one dual-stack socket (IPv6, and IPv4 as ::ffff:a.b.c.d).

    Made explicitly dual-stack rather than left to the net.ipv6.bindv6only sysctl, so that "::" means both
    families on every host; any other address is bound as given (one family).
    """
    if ipaddress.ip_address(address) == ipaddress.IPv6Address("::"):
        return socket.create_server(
            (address, port), family=socket.AF_INET6, backlog=511, reuse_port=False, dualstack_ipv6=True
        )
    return (address, port)


class Server:
    """The running daemon: listeners, loop, reload and shutdown."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        prepared = prepare(config_path)
        self.config = prepared.config
        configure_logging(self.config.logging.level)
        self.ioloop = IOLoop()
        self.waker = LoopWaker(self.ioloop)
        limits = self.config.limits
        self.bans = BanTracker(limits.ban_after_failures, limits.ban_window, limits.ban_duration)
        self.metrics = Metrics(self.bans.banned_now)
        keep_kdf_memory_off_the_heap()  # a login flood must not leave workers x 19 MiB resident
        self.offload = Offloader(self.waker, workers=min(4, os.cpu_count() or 1))
        self.login_cache = LoginCache(limits.login_cache_ttl)
        # Its own worker: walking every home must never hold up a password check.
        self.sweeper = Offloader(self.waker, workers=1)
        self._sweeping = False
        # Fresh subclasses so that class-level settings never leak between Server instances.
        self.explicit_cls: type[FtpsControlHandler] = type("ExplicitHandler", (FtpsControlHandler,), {})
        self.implicit_cls: type[FtpsControlHandler] = type(
            "ImplicitHandler", (ImplicitFtpsControlHandler,), {}
        )
        self.data_cls: type[FtpsDataHandler] = type("DataHandler", (FtpsDataHandler,), {})
        self._transfer_log: TransferLog | None = None
        # Both across reloads: running sessions keep their data connections and their uploads' MFMT.
        self.tls_sessions = SessionOwners()
        self.recent_uploads = RecentUploads()
        # Across reloads too: running transfers keep their buckets, which take the new rates in place.
        self.bandwidth = BandwidthLimits()
        self.quotas = QuotaBook(())
        self._rescan: Any = None  # the periodic quota rescan (ioloop call_every)
        try:
            self._apply(prepared)
        except MemoryError as err:
            raise StartupError(
                f"cannot create the TLS callbacks ({err}): ftpsd needs write+execute memory for them; "
                "remove MemoryDenyWriteExecute= from its systemd unit"
            ) from err
        self.listeners: list[_Listener] = []
        server = self.config.server
        try:
            self._listen(self.explicit_cls, server.explicit_port, send_refusal=True)
            if server.implicit_port:
                self._listen(self.implicit_cls, server.implicit_port, send_refusal=False)
        except OSError as err:
            self.close()
            hint = (
                " (a host without IPv6 needs listen_address 0.0.0.0)" if server.listen_address == "::" else ""
            )
            raise StartupError(f"cannot listen on {server.listen_address}: {err}{hint}") from err
        metrics = self.config.metrics
        try:
            self.metrics.serve(metrics.listen_address, metrics.port)
        except OSError as err:
            self.close()
            raise StartupError(
                f"metrics: cannot listen on {metrics.listen_address} port {metrics.port}: {err} "
                "([metrics] listen_address must be an address of this host and port a free port; "
                "port = 0 serves no metrics)"
            ) from err

    def _listen(self, handler: type[FtpsControlHandler], port: int, send_refusal: bool) -> None:
        listener = _Listener(
            _bind(self.config.server.listen_address, port), handler, ioloop=self.ioloop, backlog=511
        )
        listener.bans = self.bans
        listener.metrics = self.metrics
        listener.send_refusal = send_refusal
        listener.max_cons = self.config.limits.max_connections
        listener.max_cons_per_ip = self.config.limits.max_connections_per_ip
        if self.listeners:  # one per-IP count across both ports
            listener.ip_map = self.listeners[0].ip_map
        self.listeners.append(listener)
        logger.info(
            "listening on %s:%s (%s FTPS)",
            *listener.address[:2],
            "implicit" if send_refusal is False else "explicit",
        )

    def _apply(self, prepared: _Prepared) -> None:
        """Install settings for new connections; running sessions keep their snapshot."""
        config = prepared.config
        server, limits = config.server, config.limits
        first, last = server.passive_ports
        contexts = ContextsByAddress(prepared.material, self.tls_sessions)
        quotas = self._apply_quotas(config)
        for cls in (self.explicit_cls, self.implicit_cls):
            cls.authorizer = prepared.authorizer
            cls.tls_material = prepared.material
            cls.tls_contexts = contexts
            cls.tls_sessions = self.tls_sessions
            cls.recent_uploads = self.recent_uploads
            cls.quotas = quotas
            cls.transfer_log = prepared.transfer_log
            cls.bans = self.bans
            cls.metrics = self.metrics
            cls.offload = self.offload
            cls.login_cache = self.login_cache
            cls.partial_upload_ttl = limits.partial_upload_ttl
            cls.dtp_handler = self.data_cls
            cls.require_session_reuse = config.tls.require_session_reuse
            cls.banner = server.banner
            cls.timeout = limits.idle_timeout
            cls.passive_ports = list(range(first, last + 1))
            cls.masquerade_address = server.masquerade_address or None
            cls.proxy_protocol_from = config.network.proxy_protocol_from
            cls.proxy_header_timeout = config.network.proxy_header_timeout
        self.data_cls.timeout = limits.data_timeout
        self.data_cls.metrics = self.metrics
        self.data_cls.bandwidth = self.bandwidth
        self.bandwidth.configure(limits.upload_rate, limits.download_rate, config.users)
        self.metrics.bandwidth_limits(limits.upload_rate, limits.download_rate)
        logger.info("bandwidth limits: %s", self.bandwidth.describe())
        self.bans.configure(limits.ban_after_failures, limits.ban_window, limits.ban_duration)
        self.login_cache.configure(limits.login_cache_ttl)
        if self._transfer_log is not None:
            self._transfer_log.close()
        self._transfer_log = prepared.transfer_log
        for listener in getattr(self, "listeners", []):
            listener.max_cons = limits.max_connections
            listener.max_cons_per_ip = limits.max_connections_per_ip
        self.metrics.loaded(prepared.material)
        self.config = config

    def _apply_quotas(self, config: Config) -> QuotaBook:
        """Folders kept from the previous config keep their live usage and are re-counted in the background;
        new ones are counted now, before any upload can reach them (a pause as long as their scan)."""
        starting = self._rescan is None
        book = QuotaBook(config.quotas, previous=self.quotas)
        book.count_new()
        self.quotas = book
        self.metrics.quotas_loaded(book.quotas)
        book.log_usage("start-up: " if starting else "reload: ")
        if not starting:
            book.rescan(self.offload.run)
            self._rescan.cancel()
        self._rescan = self.ioloop.call_every(config.limits.quota_rescan_interval, self._rescan_quotas)
        return book

    def _rescan_quotas(self) -> None:
        self.quotas.rescan(self.offload.run)

    # --- signals (run as loop callbacks, never inside the interrupted code)

    def install_signal_handlers(self) -> None:
        def later(method: Any) -> Any:  # noqa: ANN401
            def handler(signum: int, frame: FrameType | None) -> None:
                self.waker.call_soon(method)

            return handler

        signal.signal(signal.SIGHUP, later(self.reload))
        signal.signal(signal.SIGTERM, later(self.shutdown))
        signal.signal(signal.SIGINT, later(self.shutdown))

    def reload(self) -> None:
        """Re-read config and certificate; on any error keep running with the old ones."""
        systemd.reloading()
        logger.info("reloading configuration from %s", self.config_path)
        try:
            prepared = prepare(self.config_path)
        except (ConfigError, ValueError) as err:
            logger.error("reload failed, keeping the previous configuration: %s", err)
            self.metrics.loaded(None)
            systemd.notify("READY=1", "STATUS=Reload failed; running with the previous configuration")
            return
        if prepared.config.listen_signature() != self.config.listen_signature():
            logger.warning("listen address/port changes (also [metrics]) need a restart; old listeners stay")
        if prepared.config.server.passive_ports != self.config.server.passive_ports:
            logger.info("new passive port range applies to new sessions")
        configure_logging(prepared.config.logging.level)
        self._apply(prepared)
        logger.info("configuration reloaded: %d users", len(prepared.config.users))
        systemd.notify("READY=1", f"STATUS=Serving {len(prepared.config.users)} users")

    def _check_certificate_expiry(self) -> None:
        warn_if_due(self.explicit_cls.tls_material)

    def _sweep_partial_uploads(self) -> None:
        """Remove old partial uploads and leftovers below every home (partials.sweep), off the loop; then
        schedule the next sweep (its interval follows the ttl of the configuration in force then)."""
        ttl = self.config.limits.partial_upload_ttl
        if not self._sweeping:
            self._sweeping = True
            homes = tuple(user.home for user in self.config.users)
            self.sweeper.run(sweep, (homes, ttl), self._swept)
        self.ioloop.call_later(sweep_interval(ttl), self._sweep_partial_uploads)

    def _swept(self, result: object) -> None:
        self._sweeping = False
        if isinstance(result, BaseException):
            logger.error("sweep of partial uploads failed: %s", result)

    def shutdown(self) -> None:
        """Stop listening and drop all sessions; the loop then ends because nothing is left in it."""
        systemd.notify("STOPPING=1", "STATUS=Shutting down")
        logger.info("shutting down")
        self.close()

    def close(self) -> None:
        self.metrics.close()
        self.offload.shutdown()
        self.sweeper.shutdown()
        self.ioloop.close()
        if self._transfer_log is not None:
            self._transfer_log.close()

    def serve_forever(self) -> None:
        self.install_signal_handlers()
        systemd.notify("READY=1", f"STATUS=Serving {len(self.config.users)} users")
        logger.info("ftpsd started, pid %d", os.getpid())
        logger.info("TLS key exchange groups offered: %s", offered_groups(self.config.tls.groups))
        self._check_certificate_expiry()
        self.ioloop.call_every(CHECK_INTERVAL, self._check_certificate_expiry)
        self._sweep_partial_uploads()
        # pyftpdlib's loop first waits for I/O without a timeout and only then asks its scheduler for the
        # next timer: one wake-up now, or the quota rescans would wait for the first client.
        self.waker.call_soon(lambda: None)
        self.ioloop.loop()
        logger.info("ftpsd stopped")
