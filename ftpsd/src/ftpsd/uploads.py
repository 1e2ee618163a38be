"""Atomic, resumable uploads, the whole feature: the file object and both channel sides of an upload.

An upload is written to a hidden file (``filesystem.UPLOAD_PREFIX``) and renamed to its final name only
when the client ended the data connection with a TLS close_notify. The hidden file is the user's partial
upload of that name (partials.py), which every other ending (error-free interruption: no close_notify,
timeout, ABOR, REIN, disconnect) keeps for resuming with APPE or REST+STOR, and which a failed write
(full disk, I/O error) removes. STOU, and every upload while ``partial_upload_ttl`` is 0, use a random
temporary file that every ending but the commit removes; APPE and REST+STOR are then refused.
Who may resume and see what of a partial is decided in permissions.py.

Three pieces, one per place pyftpdlib gives us:

* ``AtomicUpload``, the file object the data channel writes into;
* ``AtomicUploadDTP``, the data-channel side: fast reads, and commit, keep or discard at close;
* ``AtomicUploadCommands``, the control-channel side: STOR, APPE, REST+STOR, SIZE of one's own partial,
  STOU, ABOR, REIN and the transfer that waits for its data connection.

The MRO rules these depend on:

* ``AtomicUploadDTP`` must sit *below* pyftpdlib's ``SSLConnectionMixin`` and above ``DTPHandler``
  (``class FtpsDataHandler(TLS_DTPHandler, AtomicUploadDTP)``). The mixin reacts to a TLS EOF by calling
  ``super().handle_close()`` and hands reads to ``super().handle_read_event()`` once the handshake is
  done, so overrides placed above it would be skipped. Its ``handle_error`` on the other hand closes the
  connection without calling ``super()``, so a failed write is answered by ``discard_failed_write``,
  called from the data handler's own ``handle_error`` above the mixin.
* ``AtomicUploadCommands`` comes before ``TLS_FTPHandler``, whose ``ftp_STOR``, ``ftp_SIZE``,
  ``ftp_ABOR``, ``flush_account`` and ``pre_process_command`` it extends (pyftpdlib's ``ftp_APPE`` calls
  ``self.ftp_STOR``, so APPE reaches ours), and whose ``proto_cmds`` it replaces with a copy in which
  APPE needs "w" instead of "a". No mixin before it in the bases may define ``proto_cmds``; those that
  extend ``pre_process_command`` (listing.py, ownuploads.py) must pass SIZE on to ``super()``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from typing import Any, ClassVar

from OpenSSL import SSL
from pyftpdlib.exceptions import _FileReadWriteError
from pyftpdlib.handlers import DTPHandler, TLS_FTPHandler
from pyftpdlib.log import logger as ftp_logger
from pyftpdlib.utils import strerror

from ftpsd.filesystem import OPEN_NOFOLLOW, UPLOAD_PREFIX
from ftpsd.partials import TEMP_SUFFIX, PartialBusy, lock, open_partial, partial_size
from ftpsd.permissions import can_overwrite, may_resume_complete_file, may_resume_own_partial
from ftpsd.quotas import QuotaExceeded, UploadClaim, file_usage
from ftpsd.tls import read_available

logger = logging.getLogger("ftpsd")

# Per upload in progress; at most this much is read from the socket per loop iteration, so one fast
# upload cannot monopolise the event loop.
UPLOAD_BUFFER_SIZE = 1 << 20
# Storage exhausted: 452 (RFC 959, "insufficient storage space"); other write errors get 451.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class AtomicUpload:
    """The file object of an upload: data goes to a hidden file, renamed into place on commit.

    ``name`` is the final path (pyftpdlib logs it). The hidden file is either a random temporary file
    (``fresh``: STOU, and every upload with ``partial_upload_ttl = 0``), removed by close() without
    commit(), or the user's resumable partial upload (``keep=True``, opened by
    ``AtomicUploadCommands._resumable_upload``), which close() without commit() keeps for resuming unless
    ``discard()`` was called (write errors) or it is empty. Either is locked
    (partials.lock) until closed, so the sweep never removes a file in use.
    With ``replace=False`` the final name is created with link(2), which fails if the name exists,
    so a concurrent upload can never be overwritten (no check-then-rename race).
    ``quota`` (quotas.UploadClaim, None outside quota folders) is charged before every write, which raises
    QuotaExceeded instead; a resumed partial's bytes move from the folder's counted usage into the claim
    (``in_usage``), so that a rescan during the upload, which skips claimed files, counts them once.
    """

    def __init__(  # noqa: PLR0917 - a file object built in two places only
        self,
        final_path: str,
        replace: bool,
        temp_path: str,
        fd: int,
        keep: bool,
        offset: int,
        quota: UploadClaim | None = None,
        in_usage: int = 0,
    ) -> None:
        self.name = final_path
        self.replace = replace
        self.temp_path = temp_path
        self.keep = keep
        self.offset = offset  # where this upload's data starts in the hidden file
        self._quota = quota
        self._file = os.fdopen(fd, "wb", buffering=0)
        if offset:
            self._file.seek(offset)
        self._committed = False
        self._discard = False
        if quota is not None:
            quota.attach(temp_path, in_usage=in_usage, written=offset)

    @classmethod
    def fresh(cls, final_path: str, replace: bool, quota: UploadClaim | None = None) -> AtomicUpload:
        """A new upload into a random temporary file, never kept when interrupted."""
        directory = os.path.dirname(final_path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_NOFOLLOW
        while True:
            temp_path = os.path.join(directory, f"{UPLOAD_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}")
            try:
                fd = os.open(temp_path, flags, 0o666)
            except FileExistsError:
                continue
            break
        lock(fd)  # a fresh file: nobody else can hold it
        return cls(final_path, replace, temp_path, fd, keep=False, offset=0, quota=quota)

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

    def discard(self) -> None:
        """Remove the hidden file at close even if it is a resumable partial (its content is in doubt)."""
        self._discard = True

    def commit(self) -> None:
        """Publish the upload under its final name; raises FileExistsError if that is not allowed."""
        replaced = file_usage(self.name) if self._quota is not None and self.replace else None
        try:
            if self.keep:
                # Bytes beyond what this upload wrote are left over from before a REST into the partial.
                os.ftruncate(self._file.fileno(), self._file.tell())
            # Still holding the lock: no other session can open the partial between rename and close.
            if self.replace:
                os.replace(self.temp_path, self.name)
            else:
                os.link(self.temp_path, self.name)
                os.unlink(self.temp_path)
        except OSError:
            self.discard()
            self.close()
            raise
        self._committed = True
        self._file.close()
        if self._quota is not None:
            self._quota.committed(replaced)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if not self._committed:
                if self.keep and not self._discard:
                    kept = self._keep_for_resuming()
                    if self._quota is not None:
                        self._quota.kept(kept)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.temp_path)
                    if self._quota is not None:
                        self._quota.discarded()
        finally:
            self._file.close()  # releases the lock

    def _keep_for_resuming(self) -> int:
        """Cut the partial after what this upload wrote (a resumed one with nothing written stays as it
        was); an empty one has nothing to resume and goes. Returns the bytes left on disk."""
        fd = self._file.fileno()
        position = self._file.tell()
        try:
            if position != self.offset:
                os.ftruncate(fd, position)
            size = os.fstat(fd).st_size
            if size == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.temp_path)
        except OSError as err:
            logger.warning("cannot keep partial upload %s of %s: %s", self.temp_path, self.name, err)
            return position
        return size


class RestBeyondEnd(Exception):
    """REST n names an offset past the data there is to resume from (554)."""

    def __init__(self, offset: int, size: int, what: str) -> None:
        super().__init__(
            f"554 Requested action not taken: REST position {offset} is beyond the end of the {what} "
            f"({size} bytes); nothing was changed."
        )


def _copy_into(fd: int, source_path: str, length: int | None) -> int:
    """Copy the first length bytes (None: all) of the complete file source_path into fd; return the count.

    copy_file_range lets the kernel (or the file system, as a reflink) do it; the read/write loop is the
    fallback for file systems that refuse it.
    """
    source = os.open(source_path, os.O_RDONLY | OPEN_NOFOLLOW)
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Not a regular file")
        wanted = info.st_size if length is None else length
        if wanted > info.st_size:
            raise RestBeyondEnd(wanted, info.st_size, "file")
        os.ftruncate(fd, 0)
        copied = 0
        try:
            while copied < wanted:
                step = os.copy_file_range(source, fd, wanted - copied, copied, copied)
                if not step:
                    break
                copied += step
        except OSError as err:
            if err.errno not in {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}:
                raise
            while copied < wanted:
                chunk = os.pread(source, min(UPLOAD_BUFFER_SIZE, wanted - copied), copied)
                if not chunk:
                    break
                copied += os.pwrite(fd, chunk, copied)
        return copied
    finally:
        os.close(source)


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
    # Both set by throttle.ThrottledTransfer for an upload under a bandwidth limit: a smaller buffer, and
    # for one read at most this much.
    upload_buffer_size = UPLOAD_BUFFER_SIZE
    read_limit = 0

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
            self._upload_buffer = memoryview(bytearray(self.upload_buffer_size))
        buffer = self._upload_buffer
        if self.read_limit:
            buffer = buffer[: self.read_limit]
        filled, peer_closed = read_available(self.socket, buffer)
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
                fate = "kept for resuming" if upload.keep else "discarded"
                self._fail(f"426 Data connection closed without TLS close_notify; upload {fate}.")
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
        leaving the client waiting until it times out. close() removes the hidden file, also a
        resumable partial upload.
        """
        number = _errno_of(error)
        reason = os.strerror(number) if number else "write error"
        code = 452 if number in _NO_SPACE else 451
        if isinstance(error.__cause__, QuotaExceeded):  # 552, and never kept: not even for a resume
            reason, code = error.__cause__.strerror, 552
        logger.warning("upload of %s failed: %s", self.file_obj.name, reason)
        self._error = True  # no TLS shutdown exchange: the client may still be sending
        self.file_obj.discard()  # also a resumable partial: what reached the disk is in doubt
        self._fail(f"{code} {reason}; upload discarded.")

    def _fail(self, reply: str) -> None:
        self.transfer_finished = False
        self._resp = (reply, ftp_logger.warning)
        self.close()


class AtomicUploadCommands:
    """Control-channel side: STOR, APPE, REST+STOR and STOU start atomic uploads; SIZE tells a user the
    size of its own partial upload; ABOR and REIN drop queued uploads.

    A mixin for the control handler (before TLS_FTPHandler in its bases). With ``partial_upload_ttl``
    (set by server.py) 0, nothing is resumable: APPE and REST+STOR are refused as before resuming existed.
    """

    partial_upload_ttl: int = 0
    # APPE needs only "w" to reach ftp_STOR, which decides: appending to one's own partial upload or
    # starting a new file is a store; appending to a complete file needs "a" too (permissions.py).
    proto_cmds: ClassVar[dict[str, dict[str, Any]]] = {
        **TLS_FTPHandler.proto_cmds,
        "APPE": {**TLS_FTPHandler.proto_cmds["APPE"], "perm": "w"},
    }

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        """SIZE of a name with this user's partial upload, also for users without "l" (upload-only)."""
        if cmd == "SIZE" and self.authenticated and arg and not self.authorizer.has_perm(self.username, "l"):
            path = self.fs.ftp2fs(arg)
            if self._own_partial_size(path) is not None:
                # pyftpdlib's permission check would refuse it; anything else stays refused there.
                self.logline(f"<- {line}")
                self.process_command(cmd, path)
                return
        super().pre_process_command(line, cmd, arg)

    def ftp_SIZE(self, path: str) -> str | None:
        size = self._own_partial_size(path) if self._current_type != "a" else None
        if size is None:
            return super().ftp_SIZE(path)
        self.respond(f"213 {size}")
        return path

    def _own_partial_size(self, path: str) -> int | None:
        """The size of this user's partial upload of path, for its own SIZE only (permissions.py)."""
        if not (
            self.partial_upload_ttl
            and may_resume_own_partial(self.authorizer.get_perms(self.username))
            and self.fs.validpath(path)
        ):
            return None
        return partial_size(path, self.username)

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        """Atomic STOR; with partial_upload_ttl, APPE and REST+STOR continue an interrupted upload."""
        append = "a" in mode
        offset = self._restart_position
        self._restart_position = 0
        replace = can_overwrite(self.authorizer.get_perms(self.username))
        refusal = self._refusal(file, append, offset, replace)
        if refusal:
            self.respond(refusal)
            return None
        cmd = "APPE" if append else "STOR"
        if not self.partial_upload_ttl:
            return self._start_upload(file, replace, cmd, "File status okay.")
        upload = None
        try:
            upload = self._resumable_upload(file, replace, append, offset, self.quota_claim(file))
        except QuotaExceeded as err:  # quotas.QuotaCommands: refused at the start, nothing touched
            refusal = f"552 {err.strerror}."
        except PartialBusy:
            refusal = "450 Upload of this file is already in progress; try again later."
        except RestBeyondEnd as beyond:
            refusal = str(beyond)
        except OSError as err:
            refusal = f"550 {strerror(err)}."
        if refusal or upload is None:
            if refusal:
                self.respond(refusal)
            return None
        return self._start_upload(file, replace, cmd, "File status okay.", upload)

    def _refusal(self, file: str, append: bool, offset: int, replace: bool) -> str | None:
        """The reply refusing an upload before any file is touched, or None."""
        if not self.partial_upload_ttl and append:
            return "550 APPE is not supported (uploads are atomic); send the whole file with STOR."
        if not self.partial_upload_ttl and offset:
            return "554 Resuming uploads is not supported (uploads are atomic); send the whole file."
        if self.fs.isdir(file):
            return "550 Is a directory."
        if not replace and self.fs.lexists(file):
            return "550 File exists; overwriting is not permitted."
        return None

    def _resumable_upload(
        self, file: str, replace: bool, append: bool, offset: int, quota: UploadClaim | None
    ) -> AtomicUpload | None:
        """The upload into this user's partial of file, positioned where the command continues.

        This user's partial (if any) comes first; without one, APPE and REST n > 0 start from the complete
        file only for users who may replace it (permissions.may_resume_complete_file). None: refused and
        answered. Raises PartialBusy, RestBeyondEnd (nothing changed) or OSError.
        """
        path, fd, existed = open_partial(file, self.username)
        size = 0  # of the partial before this command: counted in its folder's usage already
        try:
            if existed:
                size = os.fstat(fd).st_size
                if append:
                    offset = size
                elif offset > size:
                    raise RestBeyondEnd(offset, size, "partial upload")
            elif append or offset:
                if self.fs.lexists(file):
                    if not may_resume_complete_file(self.authorizer.get_perms(self.username), append):
                        self.respond("550 Not enough privileges.")
                        self._drop_new_partial(path, fd)
                        return None
                    offset = _copy_into(fd, file, None if append else offset)
                elif offset:
                    raise RestBeyondEnd(offset, 0, "upload (there is nothing to resume)")
        except BaseException:
            if existed:
                os.close(fd)
            else:
                self._drop_new_partial(path, fd)
            raise
        return AtomicUpload(file, replace, path, fd, keep=True, offset=offset, quota=quota, in_usage=size)

    @staticmethod
    def _drop_new_partial(path: str, fd: int) -> None:
        """A partial created for a command that was then refused: remove it again (still locked)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)

    def ftp_STOU(self, line: str) -> str | None:
        """STOU with a random name, stored atomically and never replacing anything (never resumable)."""
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
        upload's temporary file behind (and a partial upload locked)."""
        self._drop_queued_transfers()
        super().flush_account()

    def _drop_queued_transfers(self) -> None:
        """Close what waits for a data connection; an AtomicUpload removes its temporary file (a partial
        upload stays as it was: no data was written)."""
        if self._in_dtp_queue is not None:
            self._in_dtp_queue[0].close()
            self._in_dtp_queue = None
        if self._out_dtp_queue is not None:
            file = self._out_dtp_queue[2]  # None for listings
            if file is not None:
                file.close()
            self._out_dtp_queue = None

    def _start_upload(
        self, path: str, replace: bool, cmd: str, text: str, upload: AtomicUpload | None = None
    ) -> str | None:
        if upload is None:
            try:
                upload = AtomicUpload.fresh(path, replace, self.quota_claim(path))  # quotas.QuotaCommands
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
