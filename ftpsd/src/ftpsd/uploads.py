"""Atomic uploads, the whole feature: the file object and both channel sides of an upload.

An upload is written to a hidden temporary file (``filesystem.UPLOAD_PREFIX``) and renamed to its final
name only when the client ended the data connection with a TLS close_notify; every other ending
(error, timeout, ABOR, REIN, disconnect, full disk) removes the temporary file. APPE and REST+STOR
are refused because they would write into a visible file.

Three pieces, one per place pyftpdlib gives us:

* ``AtomicUpload``, the file object the data channel writes into;
* ``AtomicUploadDTP``, the data-channel side: fast reads, and commit or discard at close;
* ``AtomicUploadCommands``, the control-channel side: STOR, STOU, ABOR, REIN and the transfer that
  waits for its data connection.

The MRO rule the data-channel side depends on: ``AtomicUploadDTP`` must sit *below* pyftpdlib's
``SSLConnectionMixin`` and above ``DTPHandler`` (``class FtpsDataHandler(TLS_DTPHandler,
AtomicUploadDTP)``). The mixin reacts to a TLS EOF by calling ``super().handle_close()`` and hands
reads to ``super().handle_read_event()`` once the handshake is done, so overrides placed above it
would be skipped. Its ``handle_error`` on the other hand closes the connection without calling
``super()``, so a failed write is answered by ``discard_failed_write``, called from the data
handler's own ``handle_error`` above the mixin. ``AtomicUploadCommands`` comes before
``TLS_FTPHandler``, whose ``ftp_ABOR`` and ``flush_account`` it extends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets

from OpenSSL import SSL
from pyftpdlib.exceptions import _FileReadWriteError
from pyftpdlib.handlers import DTPHandler
from pyftpdlib.log import logger as ftp_logger
from pyftpdlib.utils import strerror

from ftpsd.filesystem import OPEN_NOFOLLOW, UPLOAD_PREFIX
from ftpsd.permissions import can_overwrite
from ftpsd.quotas import QuotaExceeded, UploadClaim, file_usage
from ftpsd.tls import read_available

logger = logging.getLogger("ftpsd")

# Per upload in progress; at most this much is read from the socket per loop iteration, so one fast
# upload cannot monopolise the event loop.
UPLOAD_BUFFER_SIZE = 1 << 20
# Storage exhausted: 452 (RFC 959, "insufficient storage space"); other write errors get 451.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class AtomicUpload:
    """The file object of an upload: data goes to a hidden temp file, renamed into place on commit.

    ``name`` is the final path (pyftpdlib logs it). Closing without commit() removes the temp file,
    so every failure path of the data channel (error, timeout, ABOR, disconnect) cleans up.
    With ``replace=False`` the final name is created with link(2), which fails if the name exists,
    so a concurrent upload can never be overwritten (no check-then-rename race).
    ``quota`` (quotas.UploadClaim) is charged before every write and raises QuotaExceeded instead.
    """

    def __init__(self, final_path: str, replace: bool, quota: UploadClaim | None = None) -> None:
        self.name = final_path
        self.replace = replace
        self._quota = quota
        directory = os.path.dirname(final_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_NOFOLLOW
        while True:
            self.temp_path = os.path.join(directory, f"{UPLOAD_PREFIX}{secrets.token_hex(8)}.part")
            try:
                fd = os.open(self.temp_path, flags, 0o666)
            except FileExistsError:
                continue
            break
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._committed = False
        if quota is not None:
            quota.attach(self.temp_path)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes) -> int:
        if self._quota is not None:
            self._quota.charge(len(data))
        return self._file.write(data) or 0

    def write_all(self, data: memoryview) -> None:
        if self._quota is not None:
            self._quota.charge(len(data))
        while data:
            data = data[self._file.write(data) or 0 :]

    def commit(self) -> None:
        """Publish the upload under its final name; raises FileExistsError if that is not allowed."""
        self._file.close()
        replaced = file_usage(self.name) if self._quota is not None and self.replace else None
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
        if self._quota is not None:
            self._quota.committed(replaced)

    def close(self) -> None:
        self._file.close()
        if not self._committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path)
            if self._quota is not None:
                self._quota.discarded()


def _errno_of(error: OSError) -> int | None:
    """pyftpdlib wraps the OSError of a file write as the single argument of its own error."""
    if error.errno is not None:
        return error.errno
    return getattr(error.args[0], "errno", None) if error.args else None


def _close_notify_received(sock: object) -> bool:
    return isinstance(sock, SSL.Connection) and bool(sock.get_shutdown() & SSL.RECEIVED_SHUTDOWN)


class AtomicUploadDTP(DTPHandler):
    """Data-channel side: reads an upload fast and decides its fate when the client closes.

    Its place in the MRO is the rule stated in this module's docstring.
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

    def discard_failed_write(self, error: OSError) -> None:
        """A failed write (disk full, quota, I/O error) is answered on the control channel.

        Without this, pyftpdlib's TLS mixin would close the data connection without any reply,
        leaving the client waiting until it times out. close() removes the temporary file.
        """
        number = _errno_of(error)
        reason = os.strerror(number) if number else "write error"
        code = 452 if number in _NO_SPACE else 451
        if isinstance(error.__cause__, QuotaExceeded):  # 552, and never kept: not even for a resume
            reason, code = error.__cause__.strerror, 552
        logger.warning("upload of %s failed: %s", self.file_obj.name, reason)
        self._error = True  # no TLS shutdown exchange: the client may still be sending
        self._fail(f"{code} {reason}; upload discarded.")

    def _fail(self, reply: str) -> None:
        self.transfer_finished = False
        self._resp = (reply, ftp_logger.warning)
        self.close()


class AtomicUploadCommands:
    """Control-channel side: STOR and STOU start atomic uploads; ABOR and REIN drop queued ones.

    A mixin for the control handler (before TLS_FTPHandler in its bases).
    """

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
            upload = AtomicUpload(path, replace, self.quota_claim(path))  # quotas.QuotaCommands
        except QuotaExceeded as err:
            self.respond(f"552 {err.strerror}.")
            return None
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
