"""The control channel: FtpsControlHandler composed of one mixin per policy, and implicit FTPS.

Stock pyftpdlib 2.2.0 falls short in ways each piece closes (see README.md): TLS is mandatory on
both channels and PROT C is refused (DataProtection), malformed command lines never reach the
filesystem (InputHygiene), commands pipelined behind PASS wait for its verdict (ordering.OrderedReplies),
passwords are checked off the event loop with bans (login.PasswordLogin),
users without list rights see only their own uploads (listing.OwnUploadsListing), a login may set
the time of files it uploaded itself (ownuploads.OwnUploadTimes), a missing path gets 550 everywhere
(PathReplyCodes), uploads are atomic and resumable (uploads.AtomicUploadCommands), folder quotas
hold for uploads, deletes and renames (quotas.QuotaCommands), every transfer is logged
(TransferLogging), paths never leave the home (filesystem.SecureFS), and PASV and PORT are refused on
IPv6 control connections (families.AddressFamilies). A PROXY protocol header from an address that is no
load balancer is refused (proxied.ForgedHeaderRefusal; a load balancer's is read before the handler
exists). Open sessions and refusals at the limits
(SessionCount), failed handshakes (tls.HandshakeFailureCount) and transfers (TransferLogging) are reported
to the metrics (metrics.py). Each mixin comes before TLS_FTPHandler in the bases, so its ``super()`` calls
reach pyftpdlib.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

from OpenSSL import SSL
from pyftpdlib.handlers import TLS_FTPHandler

from ftpsd.authorizer import ConfigAuthorizer
from ftpsd.bans import BanTracker
from ftpsd.data import FtpsDataHandler
from ftpsd.families import AddressFamilies
from ftpsd.filesystem import SecureFS
from ftpsd.listing import OwnUploadsListing
from ftpsd.login import PasswordLogin
from ftpsd.metrics import Metrics
from ftpsd.offload import Offloader
from ftpsd.ordering import OrderedReplies
from ftpsd.ownuploads import OwnUploadTimes
from ftpsd.proxied import ForgedHeaderRefusal, Networks, ProxiedPassiveDTP
from ftpsd.quotas import QuotaCommands
from ftpsd.sessions import ContextsByAddress, SessionOwners
from ftpsd.tls import HandshakeFailureCount, TlsMaterial, release_idle_buffers
from ftpsd.transferlog import TransferLog
from ftpsd.uploads import AtomicUploadCommands

logger = logging.getLogger("ftpsd")


class InputHygiene:
    """Refuse command lines with NUL bytes or invalid UTF-8 instead of letting them reach the filesystem."""

    def found_terminator(self) -> None:
        raw = b"".join(self._in_buffer)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reject_line("501 Invalid UTF-8 in command.")
            return
        if b"\0" in raw:
            self._reject_line("501 NUL byte in command.")
            return
        super().found_terminator()

    def _reject_line(self, reply: str) -> None:
        self._in_buffer = []
        self._in_buffer_len = 0
        self.respond_w_warning(reply)


class DataProtection:
    """The data channel is always TLS: transfers without PROT P are refused, and so is PROT C."""

    # pyftpdlib checks PROT P only at PASV/PORT time; a transfer command issued without them would
    # be queued (150) until a data connection that can never come. Refuse it right away instead.
    _DATA_COMMANDS = frozenset({"LIST", "NLST", "MLSD", "RETR", "STOR", "STOU", "APPE"})

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        if cmd in self._DATA_COMMANDS and not self._prot:
            self.respond("550 SSL/TLS required on the data channel (use PBSZ 0 and PROT P).")
            return
        super().process_command(cmd, *args, **kwargs)

    def ftp_PROT(self, line: str) -> None:
        if line.strip().upper() == "C":
            self.respond("534 PROT C refused: the data channel must stay protected (use PROT P).")
            return
        super().ftp_PROT(line)


class PathReplyCodes:
    """A missing or inaccessible path gets 550 from every command (RFC 959; RFC 3659 for MLSD).

    pyftpdlib answers MLSD of a missing directory with 501 ("syntax error"), and clients such as rclone
    take only 550/450 for "not found", so "rclone copy dir remote:newdir" failed before the folder existed.
    Every other path command already answers 550 (tests/test_live_files.py checks each one).
    """

    def ftp_MLSD(self, path: str) -> str | None:
        if not self.fs.isdir(path):
            self.respond("550 No such directory.")
            return None
        return super().ftp_MLSD(path)


class SessionCount:
    """Open sessions by port kind, and connections refused at the limits, for the metrics.

    A session counts from pyftpdlib's on_connect (it is accepted within the limits) until its
    on_disconnect. The implicit port refuses without a reply: a plaintext 421 would only confuse a client
    that starts with a TLS handshake.
    """

    metrics: ClassVar[Metrics]
    port_kind: ClassVar[str] = "explicit"
    reply_to_refused: ClassVar[bool] = True
    _counted = False

    def on_connect(self) -> None:
        if not self._counted:  # the implicit handler's handle() runs pyftpdlib's, which calls it again
            self._counted = True
            self.metrics.session_opened(self.port_kind)
        super().on_connect()

    def on_disconnect(self) -> None:
        if self._counted:
            self._counted = False
            self.metrics.session_closed(self.port_kind)
        super().on_disconnect()

    def handle_max_cons(self) -> None:
        self._refuse("limit", super().handle_max_cons)

    def handle_max_cons_per_ip(self) -> None:
        self._refuse("per_ip_limit", super().handle_max_cons_per_ip)

    def _refuse(self, reason: str, reply_and_close: Callable[[], None]) -> None:
        self.metrics.connection_refused(reason)
        if self.reply_to_refused:
            reply_and_close()
        else:
            self.log("too many connections; closing", logfun=logger.warning)
            self.close()


class TransferLogging:
    """One log line, one transfer-log record (transferlog.TransferLog) and the metrics of each transfer.

    The result: ``ok`` (complete), ``aborted`` (ended by the client's ABOR or by the end of its control
    connection) or ``failed`` (anything else: an error, a timeout, an upload without close_notify).
    """

    _aborting = False

    def ftp_ABOR(self, line: str) -> None:
        self._aborting = True  # pyftpdlib closes the data channel (and so logs the transfer) inside ABOR
        try:
            super().ftp_ABOR(line)
        finally:
            self._aborting = False

    def log_transfer(  # noqa: PLR0917 - signature fixed by pyftpdlib
        self,
        cmd: str,
        filename: str,
        receive: bool,
        completed: bool,
        elapsed: float,
        bytes: int,
    ) -> None:
        path = self.fs.fs2ftp(filename) if self.fs is not None else filename
        direction = "upload" if receive else "download"
        result = "ok" if completed else "aborted" if self._aborting or self._closed else "failed"
        self.metrics.transfer(direction, result, bytes, elapsed)
        self.log(
            f"transfer {cmd} {path!r} direction={direction} bytes={bytes} seconds={elapsed} result={result}"
        )
        self.transfer_log.write(
            {
                "client": f"{self.remote_ip}:{self.remote_port}",
                "user": self.username,
                "command": cmd,
                "path": path,
                "direction": direction,
                "bytes": bytes,
                "seconds": elapsed,
                "result": result,
                "reply": self._last_response,
            }
        )


class FtpsControlHandler(
    ForgedHeaderRefusal,
    SessionCount,
    HandshakeFailureCount,
    OrderedReplies,
    InputHygiene,
    DataProtection,
    AddressFamilies,
    OwnUploadsListing,
    OwnUploadTimes,
    PathReplyCodes,
    PasswordLogin,
    QuotaCommands,
    AtomicUploadCommands,
    TransferLogging,
    TLS_FTPHandler,
):
    """Explicit FTPS control channel (AUTH TLS on the plain port). Configured by server.py."""

    tls_control_required = True
    tls_data_required = True
    permit_foreign_addresses = False
    permit_privileged_ports = False
    dtp_handler = FtpsDataHandler
    passive_dtp = ProxiedPassiveDTP
    abstracted_fs = SecureFS
    auth_failed_timeout = 1
    max_login_attempts = 3

    # Set by server.Server._apply on start and on every reload (see __init__ for what sessions keep).
    authorizer: ConfigAuthorizer
    tls_material: ClassVar[TlsMaterial]
    tls_contexts: ClassVar[ContextsByAddress]
    tls_sessions: ClassVar[SessionOwners]
    transfer_log: TransferLog
    bans: ClassVar[BanTracker]
    offload: ClassVar[Offloader]
    require_session_reuse = True
    # The load balancers whose connections bring a PROXY v2 header (proxied.py), and how long to wait for it.
    proxy_protocol_from: ClassVar[Networks] = ()
    proxy_header_timeout: ClassVar[float] = 5

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:  # noqa: ANN401
        # Snapshot the users: a SIGHUP must not change the permissions of a running session.
        # (The TLS context is per connection anyway; the transfer log is always the current one,
        # because a reload closes the old file for logrotate.)
        self.authorizer = type(self).authorizer
        super().__init__(conn, server, ioloop)
        if self.connected:
            # The context of the client's address: sessions never resume across addresses (sessions.py).
            self.ssl_context = self.tls_contexts.for_address(self.remote_ip)

    @classmethod
    def get_ssl_context(cls) -> SSL.Context:
        """pyftpdlib's check at listen time and its call in __init__; __init__ then picks the real one."""
        return cls.tls_contexts.template

    def secure_connection(self, ssl_context: SSL.Context) -> None:
        super().secure_connection(ssl_context)
        if isinstance(self.socket, SSL.Connection):
            release_idle_buffers(self.socket)
            self.tls_sessions.issued_to(self.socket, self)

    def refuse_forged_header(self) -> None:
        self.log(
            "connection refused: it sent a PROXY protocol header but is not a load balancer "
            "(network.proxy_protocol_from)",
            logfun=logger.warning,
        )
        self.close()

    def on_disconnect(self) -> None:
        """pyftpdlib calls this after every close, also one forced by an error (close() is skipped then)."""
        self.tls_sessions.forget(self)
        super().on_disconnect()


class ImplicitFtpsControlHandler(FtpsControlHandler):
    """Implicit FTPS (port 990 style): TLS from the first byte, data protection on by default."""

    port_kind = "implicit"
    reply_to_refused = False

    def handle(self) -> None:
        self.on_connect()
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        """Only now is there a secure channel to send the banner on."""
        self._pbsz = self._prot = True
        super().handle()

    def flush_account(self) -> None:
        super().flush_account()
        self._pbsz = self._prot = True
