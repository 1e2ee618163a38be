"""Control and data channel handlers: pyftpdlib's FTPS handlers with the security gaps closed.

Each override below exists because stock pyftpdlib 2.2.0 falls short (see README.md):
TLS is mandatory on both channels and PROT C is refused, data connections must resume the control
connection's own TLS session, uploads are atomic and an upload cut without TLS close_notify is
discarded, passwords are verified off the event loop, and paths can never leave the user's home.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import sys
from typing import Any, ClassVar

from OpenSSL import SSL
from pyftpdlib.exceptions import FilesystemError, _FileReadWriteError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.handlers.ftp.producers import FileProducer
from pyftpdlib.log import logger as ftp_logger
from pyftpdlib.utils import strerror

from ftpsd.authorizer import ConfigAuthorizer
from ftpsd.bans import BanTracker
from ftpsd.config import User
from ftpsd.offload import Offloader
from ftpsd.passwords import DUMMY_HASH, verify_password
from ftpsd.permissions import can_overwrite
from ftpsd.tls import TlsMaterial, read_available, release_idle_buffers, session_reused, write_available
from ftpsd.transferlog import TransferLog

logger = logging.getLogger("ftpsd")

# In-progress uploads live under this prefix next to their final name. Such names are hidden from
# listings and refused in every command, so nobody can see, fetch or tamper with a partial upload.
UPLOAD_PREFIX = ".ftpsd-upload-"
_OPEN_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
# Per upload in progress; at most this much is read from the socket per loop iteration, so one fast
# upload cannot monopolise the event loop.
UPLOAD_BUFFER_SIZE = 1 << 20


class SecureFS(AbstractedFS):
    """AbstractedFS that also hides upload temp files and symlinks leading out of the home."""

    def validpath(self, path: str) -> bool:
        if any(part.startswith(UPLOAD_PREFIX) for part in path.split(os.sep)):
            return False
        # The base class resolves symlinks (realpath) before comparing with the home directory.
        return bool(super().validpath(path))

    def listdir(self, path: str) -> list[str]:
        """List a directory without temp uploads and without symlinks pointing outside the home."""
        names = []
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if name.startswith(UPLOAD_PREFIX) or (os.path.islink(full) and not self.validpath(full)):
                continue
            names.append(name)
        return names

    def open(self, filename: str, mode: str) -> Any:  # noqa: ANN401 - a file object, as in the base class
        """Open for reading only, re-checking the resolved path at open time and not following links."""
        real = os.path.realpath(filename)
        if mode != "rb" or not self.validpath(real):
            raise FilesystemError("Permission denied")
        return open(real, "rb", opener=lambda p, flags: os.open(p, flags | _OPEN_NOFOLLOW))


class AtomicUpload:
    """The file object of an upload: data goes to a hidden temp file, renamed into place on commit.

    ``name`` is the final path (pyftpdlib logs it). Closing without commit() removes the temp file,
    so every failure path of the data channel (error, timeout, ABOR, disconnect) cleans up.
    With ``replace=False`` the final name is created with link(2), which fails if the name exists,
    so a concurrent upload can never be overwritten (no check-then-rename race).
    """

    def __init__(self, final_path: str, replace: bool) -> None:
        self.name = final_path
        self.replace = replace
        directory = os.path.dirname(final_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_NOFOLLOW
        while True:
            self.temp_path = os.path.join(directory, f"{UPLOAD_PREFIX}{secrets.token_hex(8)}.part")
            try:
                fd = os.open(self.temp_path, flags, 0o666)
            except FileExistsError:
                continue
            break
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._committed = False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes) -> int:
        return self._file.write(data) or 0

    def write_all(self, data: memoryview) -> None:
        while data:
            data = data[self._file.write(data) or 0 :]

    def commit(self) -> None:
        """Publish the upload under its final name; raises FileExistsError if that is not allowed."""
        self._file.close()
        try:
            if self.replace:
                os.replace(self.temp_path, self.name)
            else:
                os.link(self.temp_path, self.name)
                os.unlink(self.temp_path)
        except OSError:
            self.close()
            raise
        self._committed = True

    def close(self) -> None:
        self._file.close()
        if not self._committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)


# Storage exhausted: 452 (RFC 959, "insufficient storage space"); other write errors get 451.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def _errno_of(error: OSError) -> int | None:
    """pyftpdlib wraps the OSError of a file write as the single argument of its own error."""
    if error.errno is not None:
        return error.errno
    return getattr(error.args[0], "errno", None) if error.args else None


def _close_notify_received(sock: object) -> bool:
    return isinstance(sock, SSL.Connection) and bool(sock.get_shutdown() & SSL.RECEIVED_SHUTDOWN)


class _AtomicUploadDTP(DTPHandler):
    """Decides the fate of an upload when the client closes the data connection.

    It must sit *below* SSLConnectionMixin in the MRO: the mixin reacts to a TLS EOF by calling
    ``super().handle_close()``, which would skip an override placed above it.
    """

    _upload_buffer: memoryview | None = None

    def handle_read_event(self) -> None:
        """Binary uploads: drain all complete TLS records into one reusable buffer, one write().

        pyOpenSSL's recv() allocates and copies for every 16 KiB record and pyftpdlib handles one
        record per loop iteration; reading straight into a buffer roughly halves the CPU per MB.
        """
        upload = self.file_obj
        if not (
            self.receive
            and isinstance(upload, AtomicUpload)
            and self._data_wrapper is None
            and isinstance(self.socket, SSL.Connection)
        ):
            super().handle_read_event()
            return
        if self._upload_buffer is None:
            self._upload_buffer = memoryview(bytearray(UPLOAD_BUFFER_SIZE))
        filled, peer_closed = read_available(self.socket, self._upload_buffer)
        if filled:
            self.tot_bytes_received += filled
            try:
                upload.write_all(self._upload_buffer[:filled])
            except OSError as err:
                raise _FileReadWriteError(err.errno, err.strerror) from err
        if peer_closed:
            self.handle_close()

    def handle_close(self) -> None:
        upload = self.file_obj
        if not self._closed and self.receive and isinstance(upload, AtomicUpload):
            if not _close_notify_received(self.socket):
                # Like vsftpd's strict_ssl_read_eof: without close_notify we cannot tell a complete
                # upload from one truncated by an attacker or a broken network.
                self._fail("426 Data connection closed without TLS close_notify; upload discarded.")
                return
            try:
                upload.commit()
            except FileExistsError:
                self._fail("553 File exists; overwriting is not permitted.")
                return
            except OSError as err:
                self._fail(f"451 Cannot store file: {strerror(err)}.")
                return
        super().handle_close()

    def _fail(self, reply: str) -> None:
        self.transfer_finished = False
        self._resp = (reply, ftp_logger.warning)
        self.close()


class FtpsDataHandler(TLS_DTPHandler, _AtomicUploadDTP):
    """TLS data channel that insists on resuming the control connection's session."""

    # Downloads: bigger file reads and send buffers mean fewer loop iterations per megabyte.
    ac_out_buffer_size = 262144

    def push_with_producer(self, producer: Any) -> None:  # noqa: ANN401 - pyftpdlib producer
        if isinstance(producer, FileProducer):
            producer.buffer_size = self.ac_out_buffer_size
        super().push_with_producer(producer)

    def initiate_send(self) -> None:
        """Hold back data until our handshake check has run.

        pyftpdlib pushes a download into the channel right after accept; SSL_write would then
        complete the handshake implicitly and handle_ssl_established (the session check) would never
        be called. The pending WRITE interest makes the loop call us again after the handshake.
        """
        if self._ssl_accepting:
            return
        super().initiate_send()

    def send(self, data: bytes) -> int:
        """Write as many TLS records of data as the socket takes now (see tls.write_available).

        An empty buffer (empty listing) is not written at all: OpenSSL reports SSL_write() of zero
        bytes as an EOF, which would turn a successful empty NLST into "426 aborted".
        """
        if not data:
            return 0
        if not isinstance(self.socket, SSL.Connection):  # not reachable while PROT P is enforced
            return int(super().send(data))
        sent, want_read, peer_closed = write_available(self.socket, memoryview(data))
        self.tot_bytes_sent += sent
        self._ssl_want_read = self._ssl_want_read or want_read
        if peer_closed:
            self.handle_close()
        return sent

    def modify_ioloop_events(self, events: int, logdebug: bool = False) -> None:
        """During the handshake wait only for what OpenSSL asked for.

        Otherwise the WRITE interest registered by a queued download makes epoll report the idle
        socket as writable on every iteration and the loop spins until the client's next flight.
        """
        if self._ssl_accepting:
            events = self.ioloop.WRITE if self._ssl_want_write else self.ioloop.READ
        super().modify_ioloop_events(events, logdebug)

    def handle_error(self) -> None:
        """A failed write of an upload (disk full, quota, I/O error) is answered on the control channel.

        pyftpdlib's TLS mixin (which sits above DTPHandler, hence the override here) would close the data
        connection without any reply, leaving the client waiting until it times out. close() removes the
        temporary file.
        """
        error = sys.exc_info()[1]
        if not (self.receive and isinstance(error, _FileReadWriteError)):
            super().handle_error()
            return
        number = _errno_of(error)
        reason = os.strerror(number) if number else "write error"
        code = 452 if number in _NO_SPACE else 451
        logger.warning("upload of %s failed: %s", self.file_obj.name, reason)
        self._error = True  # no TLS shutdown exchange: the client may still be sending
        self._fail(f"{code} {reason}; upload discarded.")

    def handle_ssl_established(self) -> None:
        cmd = self.cmd_channel
        if cmd.require_session_reuse and not session_reused(self.socket):
            cmd.log(
                "data connection refused: TLS session of the control connection not resumed",
                logfun=logger.warning,
            )
            self._resp = (
                "522 Data connection must resume the TLS session of the control connection.",
                ftp_logger.warning,
            )
            self.transfer_finished = False
            self._error = True  # skip a TLS shutdown exchange with a client we do not trust
            self.close()
            return
        # The handshake may finish in its first step (client's whole flight already there); the
        # mixin then restores nothing, so re-arm the events the queued transfer is waiting for.
        self.modify_ioloop_events(self._wanted_io_events)


class FtpsControlHandler(TLS_FTPHandler):
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

    # --- input hygiene

    def found_terminator(self) -> None:
        """Refuse lines with NUL bytes or invalid UTF-8 instead of letting them reach the filesystem."""
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

    # --- TLS policy

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

    # --- authentication

    def ftp_PASS(self, line: str) -> None:
        """Verify the password in a worker thread; the session reads no commands until the verdict."""
        if self.authenticated:
            self.respond("503 User already authenticated.")
            return
        if not self.username:
            self.respond("503 Login with USER first.")
            return
        if self.bans.is_banned(self.remote_ip):
            self.respond("421 Too many failed logins; try again later.")
            self.close_when_done()
            return
        user = self.authorizer.lookup(self.username)
        encoded = user.password_hash if user is not None else DUMMY_HASH
        self.del_channel()
        self.offload.run(verify_password, (line, encoded), self._password_checked, user)

    def _password_checked(self, verdict: object, user: User | None) -> None:
        if self._closed:
            return
        self.add_channel()
        if verdict is True and user is not None:
            home = self.authorizer.get_home_dir(user.name)
            if os.path.isdir(home):
                # The plain password is not kept (pyftpdlib would store it in self.password).
                self.handle_auth_success(home, "", self.authorizer.get_msg_login(user.name))
                return
            self.logerror(f"home directory {home} of user {user.name!r} does not exist")
        elif isinstance(verdict, BaseException):
            self.logerror(f"password verification failed: {verdict!r}")
        if self.bans.record_failure(self.remote_ip):
            logger.warning(
                "banning %s for %ss after %d failed logins",
                self.remote_ip,
                self.bans.duration,
                self.bans.max_failures,
            )
        self.handle_auth_failed("Authentication failed.", "")

    # --- uploads

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        """Atomic STOR; APPE and REST+STOR are refused because they would expose partial files."""
        if "a" in mode:
            self.respond("550 APPE is not supported (uploads are atomic); send the whole file with STOR.")
            return None
        if self._restart_position:
            self._restart_position = 0
            self.respond("554 Resuming uploads is not supported (uploads are atomic); send the whole file.")
            return None
        if self.fs.isdir(file):
            self.respond("550 Is a directory.")
            return None
        replace = can_overwrite(self.authorizer.get_perms(self.username))
        if not replace and self.fs.lexists(file):
            self.respond("550 File exists; overwriting is not permitted.")
            return None
        return self._start_upload(file, replace, "STOR", "File status okay.")

    def ftp_STOU(self, line: str) -> str | None:
        """STOU with a random name, stored atomically and never replacing anything."""
        if self._restart_position:
            self.respond("450 Can't STOU while REST request is pending.")
            return None
        if line:
            directory, prefix = os.path.split(self.fs.ftp2fs(line))
        else:
            directory, prefix = self.fs.ftp2fs(self.fs.cwd), "file"
        if not self.fs.validpath(directory) or not self.fs.isdir(directory):
            self.respond("550 No such directory.")
            return None
        if not self.authorizer.has_perm(self.username, "w", directory):
            self.respond("550 Not enough privileges.")
            return None
        name = f"{prefix}.{secrets.token_hex(4)}"
        if not self.fs.validpath(os.path.join(directory, name)):  # e.g. a reserved temp-file prefix
            self.respond("550 Invalid file name.")
            return None
        return self._start_upload(os.path.join(directory, name), False, "STOU", f"FILE: {name}")

    def ftp_ABOR(self, line: str) -> None:
        """Also drop a transfer still waiting for its data connection (pyftpdlib keeps it queued)."""
        self._drop_queued_transfers()
        super().ftp_ABOR(line)

    def flush_account(self) -> None:
        """REIN: pyftpdlib forgets queued transfers without closing them, which would leave an
        upload's temporary file behind."""
        self._drop_queued_transfers()
        super().flush_account()

    def _drop_queued_transfers(self) -> None:
        """Close what waits for a data connection; an AtomicUpload removes its temporary file."""
        if self._in_dtp_queue is not None:
            self._in_dtp_queue[0].close()
            self._in_dtp_queue = None
        if self._out_dtp_queue is not None:
            file = self._out_dtp_queue[2]  # None for listings
            if file is not None:
                file.close()
            self._out_dtp_queue = None

    def _start_upload(self, path: str, replace: bool, cmd: str, text: str) -> str | None:
        try:
            upload = AtomicUpload(path, replace)
        except OSError as err:
            self.respond(f"550 {strerror(err)}.")
            return None
        if self.data_channel is not None:
            self.respond(f"125 {text}")
            self.data_channel.file_obj = upload
            self.data_channel.enable_receiving(self._current_type, cmd)
        else:
            # Only one transfer waits for the data connection: a new command replaces a queued one.
            self._drop_queued_transfers()
            self.respond(f"150 {text}")
            self._in_dtp_queue = (upload, cmd)
        return path

    # --- logging

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
