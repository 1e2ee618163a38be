"""The control channel: FtpsControlHandler composed of one mixin per policy, and implicit FTPS.

Stock pyftpdlib 2.2.0 falls short in ways each piece closes (see README.md): TLS is mandatory on
both channels and PROT C is refused (DataProtection), malformed command lines never reach the
filesystem (InputHygiene), passwords are checked off the event loop with bans (login.PasswordLogin),
uploads are atomic (uploads.AtomicUploadCommands), every transfer is logged (TransferLogging), and
paths never leave the home (filesystem.SecureFS), PASV and PORT are refused on IPv6 control connections
(families.AddressFamilies). Each mixin comes before TLS_FTPHandler in the bases,
so its ``super()`` calls reach pyftpdlib.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from OpenSSL import SSL
from pyftpdlib.handlers import TLS_FTPHandler

from ftpsd.authorizer import ConfigAuthorizer
from ftpsd.bans import BanTracker
from ftpsd.data import FtpsDataHandler
from ftpsd.families import AddressFamilies
from ftpsd.filesystem import SecureFS
from ftpsd.login import PasswordLogin
from ftpsd.offload import Offloader
from ftpsd.tls import TlsMaterial, release_idle_buffers
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


class TransferLogging:
    """One log line and one transfer-log record (transferlog.TransferLog) per transfer."""

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
        result = "ok" if completed else "failed"
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
    InputHygiene,
    DataProtection,
    AddressFamilies,
    PasswordLogin,
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
    abstracted_fs = SecureFS
    auth_failed_timeout = 1
    max_login_attempts = 3

    # Set by server.Server._apply on start and on every reload (see __init__ for what sessions keep).
    authorizer: ConfigAuthorizer
    tls_material: ClassVar[TlsMaterial]
    transfer_log: TransferLog
    bans: ClassVar[BanTracker]
    offload: ClassVar[Offloader]
    require_session_reuse = True

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:  # noqa: ANN401
        # Snapshot the users: a SIGHUP must not change the permissions of a running session.
        # (The TLS context is per connection anyway; the transfer log is always the current one,
        # because a reload closes the old file for logrotate.)
        self.authorizer = type(self).authorizer
        super().__init__(conn, server, ioloop)

    @classmethod
    def get_ssl_context(cls) -> SSL.Context:
        """A new context per connection, so sessions cannot be resumed across clients (see tls.py)."""
        return cls.tls_material.new_context()

    def secure_connection(self, ssl_context: SSL.Context) -> None:
        super().secure_connection(ssl_context)
        if isinstance(self.socket, SSL.Connection):
            release_idle_buffers(self.socket)


class ImplicitFtpsControlHandler(FtpsControlHandler):
    """Implicit FTPS (port 990 style): TLS from the first byte, data protection on by default."""

    def handle(self) -> None:
        self.on_connect()
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self) -> None:
        """Only now is there a secure channel to send the banner on."""
        self._pbsz = self._prot = True
        super().handle()

    def handle_max_cons(self) -> None:
        # A plaintext 421 would only confuse a client that starts with a TLS handshake.
        self.log("too many connections; closing", logfun=logger.warning)
        self.close()

    handle_max_cons_per_ip = handle_max_cons

    def flush_account(self) -> None:
        super().flush_account()
        self._pbsz = self._prot = True
