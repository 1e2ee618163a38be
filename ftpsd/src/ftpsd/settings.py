"""The settings the server runs with: frozen, typed dataclasses with the deployment's defaults.

Kept apart from the parser so that code which only reads settings (TLS, login, the authorizer) does
not depend on how they are validated, and so that each default is written once: the parser takes
every key's type and default from these fields.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Mozilla server-side TLS guidelines 6.0, "intermediate": ECDHE key exchange only (no DHE suites).
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# The hybrid post-quantum group first (offered only where the TLS library has it, see tls.py), then
# the classical groups of the same profile.
POST_QUANTUM_GROUP = "X25519MLKEM768"
MOZILLA_INTERMEDIATE_GROUPS = f"{POST_QUANTUM_GROUP}:X25519:prime256v1:secp384r1"
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the server listens; the listening addresses need a restart to change."""

    # "::" is one dual-stack socket: every IPv6 and IPv4 address of the host (server._bind).
    listen_address: str = "::"
    explicit_port: int = 21
    implicit_port: int = 0
    passive_ports: tuple[int, int] = (50000, 60000)
    masquerade_address: str = ""
    banner: str = "Secure file server ready."


@dataclass(frozen=True)
class NetworkSettings:
    """Which peers are load balancers that send a PROXY protocol v2 header (proxied.py); none by default."""

    proxy_protocol_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Seconds a load balancer's connection may take to deliver its header before it is closed.
    proxy_header_timeout: int = 5


@dataclass(frozen=True)
class TlsSettings:
    """The TLS policy: only the key pair is required, the rest defaults to Mozilla's intermediate."""

    certificate: str
    private_key: str
    min_version: str = "TLSv1.2"
    ciphers: str = MOZILLA_INTERMEDIATE_CIPHERS
    groups: str = MOZILLA_INTERMEDIATE_GROUPS
    # The server logs a warning once a day while its certificate expires within this many days (the
    # deployment's renewal window, ftps_certificate_renew_before_days).
    renewal_warning_days: int = 30
    require_session_reuse: bool = True


@dataclass(frozen=True)
class LimitSettings:
    """Bounds that keep one client or one address from exhausting the server."""

    max_connections: int = 512
    max_connections_per_ip: int = 20
    idle_timeout: int = 300
    data_timeout: int = 300
    ban_after_failures: int = 5
    ban_window: int = 600
    ban_duration: int = 900
    # Seconds a successful password check is remembered so repeat logins skip the KDF (logincache.py);
    # 0 turns the cache off.
    login_cache_ttl: int = 600
    # Seconds an interrupted upload is kept for resuming (partials.py); 0 discards it, as before resuming.
    partial_upload_ttl: int = 86400
    # Bytes per second for all uploads / all downloads of the server together (throttle.py); 0 = no limit.
    upload_rate: int = 0
    download_rate: int = 0
    # Seconds between the re-counts of the quota folders from disk (quotas.py), which correct for files
    # changed by other processes or nodes.
    quota_rescan_interval: int = 60


@dataclass(frozen=True)
class LoggingSettings:
    """The service log (journal) and the optional JSON-lines transfer audit log."""

    level: str = "info"
    transfer_log: str = ""


@dataclass(frozen=True)
class MetricsSettings:
    """Where the Prometheus metrics are served over HTTP (metrics.py); a restart is needed to change it.

    Loopback by default: the metrics name no user, but they show an outsider how busy the server is and
    whether its bans bite, so exposing them to a monitoring network is a decision of the deployment.
    """

    listen_address: str = "127.0.0.1"
    port: int = 9821  # 0 serves no metrics (they are still counted, which costs next to nothing)


@dataclass(frozen=True)
class User:
    """A virtual user as the server checks it: letters resolved, the profile name kept for messages."""

    name: str
    password_hash: str
    home: str
    permissions: str  # resolved pyftpdlib letters
    profile: str  # as written in the config, for messages
    # Where this user may log in from (authorizer.admits); empty = anywhere.
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # Bytes per second for all of this user's uploads / downloads together, in all its sessions
    # (throttle.py); 0 = no limit of its own (the server's still applies).
    upload_rate: int = 0
    download_rate: int = 0


@dataclass(frozen=True)
class QuotaSettings:
    """A folder quota ([[quotas]]): every regular file below path counts; 0 = no limit for that dimension."""

    path: str
    max_bytes: int = 0
    max_files: int = 0


@dataclass(frozen=True)
class Config:
    server: ServerSettings
    tls: TlsSettings
    limits: LimitSettings
    logging: LoggingSettings
    metrics: MetricsSettings = MetricsSettings()
    network: NetworkSettings = NetworkSettings()
    users: tuple[User, ...] = field(default_factory=tuple)
    quotas: tuple[QuotaSettings, ...] = field(default_factory=tuple)

    def listen_signature(self) -> tuple[object, ...]:
        """The settings that are bound to listening sockets and therefore need a restart to change."""
        s, m = self.server, self.metrics
        return (s.listen_address, s.explicit_port, s.implicit_port, m.listen_address, m.port)
