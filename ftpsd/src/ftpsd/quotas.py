"""Folder quotas: what counts, how usage is known, and the control-channel commands that change it.

A quota ([[quotas]] in the config) covers every regular file below its folder, whoever put it there.
Its usage has two parts:

* ``base``: the bytes of every regular file below the folder (hidden upload temp files of other
  processes included: they use disk) and the number of non-hidden ones. Counted from the filesystem by
  ``scan`` at start-up, after a reload and every ``limits.quota_rescan_interval`` seconds (off the event
  loop), and kept current in between by this server's own commits, DELE and RNTO;
* ``claims``: uploads of this server in progress (``UploadClaim``), each charged as it writes (and, after
  ``ALLO n``, for the n bytes it announced), so concurrent uploads can never fit together into room that
  only one of them has. A scan skips their temp files, which their claims already count.

A rescan replaces ``base`` only if none of this server's own changes (commit, discarded upload, DELE, RNTO)
touched the quota while it ran; otherwise the in-memory value stays until the next quiet rescan. That keeps
a scan from counting a change twice or losing it, and still corrects for files changed by other processes
on the host or by another node sharing the storage.

An upload that replaces a file (a user allowed to overwrite) is charged only with what it adds beyond the
old file's size: after the commit the old content is gone. Usage never counts symlinks or directories.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable, Iterable, Set
from dataclasses import dataclass
from typing import Any, ClassVar

from ftpsd.filesystem import UPLOAD_PREFIX
from ftpsd.settings import QuotaSettings

logger = logging.getLogger("ftpsd")


class QuotaExceeded(OSError):
    """An upload or a rename would exceed a folder quota: 552 (RFC 959), and nothing of the upload is kept.

    uploads.py maps it to "552" and discards the temporary file (never keeps it as a partial upload).
    """

    def __init__(self, quota: Quota, what: str) -> None:
        # The reply names the limit, never the server's own path of the folder.
        super().__init__(errno.EDQUOT, f"Folder quota of {what} exceeded (exceeded storage allocation)")
        self.quota = quota


@dataclass(frozen=True)
class Usage:
    bytes: int = 0
    files: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.files + other.files)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.bytes - other.bytes, self.files - other.files)


def _is_hidden(name: str) -> bool:
    return name.startswith(UPLOAD_PREFIX)


def scan(path: str, skip: Set[str] = frozenset()) -> Usage:
    """The usage below path, read from the filesystem, leaving out ``skip`` (our uploads' temp files).

    Symlinks are not followed; a folder that is missing or vanishes while it is read counts as empty.
    """
    total, files = 0, 0
    pending = [path]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False) and entry.path not in skip:
                        total += entry.stat(follow_symlinks=False).st_size
                        files += not _is_hidden(entry.name)
                except OSError:  # removed while we read
                    continue
    return Usage(total, files)


def file_usage(path: str) -> Usage | None:
    """A regular file's usage, or None for anything else (missing, a directory, a symlink)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return Usage(info.st_size, 0 if _is_hidden(os.path.basename(path)) else 1)


def _resolved(path: str) -> str:
    """path with its folder's symlinks resolved but not its last component (a link is its own entry)."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


class Quota:
    """One quota folder's limits and usage (only ever changed on the event loop thread).

    Kept across reloads while the folder stays in the config, so uploads in progress stay charged.
    """

    def __init__(self, settings: QuotaSettings) -> None:
        self.path = settings.path
        self.real_path = os.path.realpath(settings.path)
        self.max_bytes = settings.max_bytes
        self.max_files = settings.max_files
        self.base = Usage()
        self.claimed_bytes = 0
        self.claimed_files = 0
        # Temp files of this server's uploads in progress: their claims count them, a scan skips them.
        self.temp_paths: set[str] = set()
        # Bumped by every change of ours that a scan running at the same time may or may not have seen.
        self.generation = 0

    def configure(self, settings: QuotaSettings) -> None:
        self.max_bytes = settings.max_bytes
        self.max_files = settings.max_files

    @property
    def used_bytes(self) -> int:
        return self.base.bytes + self.claimed_bytes

    @property
    def used_files(self) -> int:
        return self.base.files + self.claimed_files

    def covers(self, real_path: str) -> bool:
        return real_path == self.real_path or real_path.startswith(self.real_path + os.sep)

    def fits(self, more_bytes: int, more_files: int) -> bool:
        return not (
            (self.max_bytes and more_bytes > 0 and self.used_bytes + more_bytes > self.max_bytes)
            or (self.max_files and more_files > 0 and self.used_files + more_files > self.max_files)
        )

    def changed(self, delta: Usage) -> None:
        """Our own change. Never below zero: a file this server has not counted yet (another node of a shared
        volume wrote it since the last rescan) may be deleted here, and a negative count would leave room
        for that much more than the quota until the next rescan."""
        total = self.base + delta
        self.base = Usage(max(total.bytes, 0), max(total.files, 0))
        self.generation += 1

    def describe(self) -> str:
        def limit(value: int) -> str:
            return str(value) if value else "no limit"

        return (
            f"quota {self.path}: {self.used_bytes} bytes of {limit(self.max_bytes)}, "
            f"{self.used_files} files of {limit(self.max_files)}"
        )


class UploadClaim:
    """One upload's charge on its quota, from the start of its data transfer until commit or discard.

    The upload is charged max(announced, written) bytes, less the size of the file it replaces, and one
    file if its name is new. ``charge`` raises QuotaExceeded *before* the bytes that would exceed are
    written.
    """

    __slots__ = ("_active", "_claim", "_credit", "_new_file", "_reserved", "_written", "quota", "temp_path")

    def __init__(self, quota: Quota, reserved: int, credit: int, new_file: bool) -> None:
        self.quota = quota
        self._reserved = reserved
        self._credit = credit
        self._new_file = new_file
        self._written = 0
        self._claim = 0
        self._active = False
        self.temp_path = ""

    def attach(self, temp_path: str, in_usage: int = 0, written: int = 0) -> None:
        """The upload's temp file exists: from now on its bytes are this claim's (AtomicUpload calls it).

        A resumed partial upload brings ``written`` bytes it continues after, and had ``in_usage`` bytes
        on disk that the folder's usage counted: they move into the claim (scans skip claimed files).
        """
        self.temp_path = temp_path
        self._active = True
        self.quota.temp_paths.add(temp_path)
        if in_usage:
            self.quota.changed(Usage(-in_usage, 0))
        self.quota.claimed_files += self._new_file
        self._written = written
        self._claim = max(0, max(self._reserved, written) - self._credit)
        self.quota.claimed_bytes += self._claim

    def charge(self, size: int) -> None:
        written = self._written + size
        claim = max(0, max(self._reserved, written) - self._credit)
        grow = claim - self._claim
        if grow > 0 and not self.quota.fits(grow, 0):
            raise QuotaExceeded(self.quota, f"{self.quota.max_bytes} bytes")
        self._written = written
        self._claim = claim
        self.quota.claimed_bytes += grow

    def committed(self, replaced: Usage | None) -> None:
        """Published under its final name, replacing ``replaced`` (None: the name was new)."""
        if self._release():
            self.quota.changed(Usage(self._written, 1) - (replaced or Usage()))

    def kept(self, size: int) -> None:
        """The temp file stays on disk with size bytes (a partial kept for resuming): they are the folder's,
        no file yet. Resuming it moves them into that upload's claim again (attach's in_usage)."""
        if self._release():
            self.quota.changed(Usage(size, 0))

    def discarded(self) -> None:
        """The temp file is gone (failure, ABOR, quota exceeded): the claim is given back."""
        if self._release():
            self.quota.generation += 1

    def _release(self) -> bool:
        if not self._active:
            return False
        self._active = False
        self.quota.claimed_bytes -= self._claim
        self.quota.claimed_files -= self._new_file
        self.quota.temp_paths.discard(self.temp_path)
        return True


class QuotaBook:
    """The quotas of one configuration, keyed by folder; reloads carry over the Quota objects they keep."""

    def __init__(self, settings: Iterable[QuotaSettings], previous: QuotaBook | None = None) -> None:
        kept = {quota.path: quota for quota in previous.quotas} if previous else {}
        quotas = []
        self.uncounted: list[Quota] = []  # new folders, counted before they are used (count_new)
        for item in settings:
            quota = kept.get(item.path)
            if quota is None:
                quota = Quota(item)
                self.uncounted.append(quota)
            else:
                quota.configure(item)
            quotas.append(quota)
        self.quotas: tuple[Quota, ...] = tuple(quotas)
        self._scanning = False

    def count_new(self) -> None:
        """Count the folders new in this book, synchronously (start-up, or a reload that adds a quota)."""
        for quota in self.uncounted:
            quota.base = scan(quota.real_path, quota.temp_paths)
        self.uncounted = []

    def find(self, path: str) -> Quota | None:
        """The quota covering path (nested quotas are refused by the config, so there is at most one)."""
        real = os.path.realpath(path)
        for quota in self.quotas:
            if quota.covers(real):
                return quota
        return None

    def holds_quota_folder(self, path: str) -> Quota | None:
        """The quota whose folder is path or lies below it (renaming or removing it would move the quota)."""
        target = _resolved(path)
        for quota in self.quotas:
            if quota.real_path == target or quota.real_path.startswith(target + os.sep):
                return quota
        return None

    def log_usage(self, prefix: str) -> None:
        for quota in self.quotas:
            logger.info("%s%s", prefix, quota.describe())

    def rescan(self, run: Callable[..., None]) -> None:
        """Re-count every quota off the loop (``run`` is Offloader.run); one scan at a time."""
        if self._scanning or not self.quotas:
            return
        self._scanning = True
        jobs = [(quota, quota.generation) for quota in self.quotas]
        args = ([(quota.real_path, quota.temp_paths) for quota in self.quotas],)
        run(_scan_all, args, self._scanned, jobs)

    def _scanned(self, result: list[Usage] | BaseException, jobs: list[tuple[Quota, int]]) -> None:
        self._scanning = False
        if isinstance(result, BaseException):
            logger.error("quota rescan failed: %s", result)
            return
        for (quota, generation), usage in zip(jobs, result, strict=True):
            if quota.generation != generation:
                logger.debug("quota %s changed during its rescan; counted again next time", quota.path)
            elif usage != quota.base:
                logger.info(
                    "quota %s corrected by its rescan: %d bytes, %d files (was %d bytes, %d files)",
                    quota.path,
                    usage.bytes,
                    usage.files,
                    quota.base.bytes,
                    quota.base.files,
                )
                quota.base = usage


def _scan_all(folders: list[tuple[str, Set[str]]]) -> list[Usage]:
    return [scan(path, skip) for path, skip in folders]


_UPLOAD_COMMANDS = frozenset({"STOR", "STOU", "APPE"})


class QuotaCommands:
    """Control-handler mixin: ALLO, the quota check at the start of an upload, and DELE/RNFR/RNTO/RMD.

    Comes before TLS_FTPHandler in the bases (control.py); uploads.AtomicUploadCommands asks
    ``quota_claim`` when it starts an upload.
    """

    quotas: ClassVar[QuotaBook]  # the current configuration's (server.py), never a session's snapshot
    _allo_size = 0

    def ftp_ALLO(self, line: str) -> None:
        """RFC 959 ALLO <n> [R <m>]: n is checked against the quota by the next upload command."""
        parts = line.split()
        valid = len(parts) in {1, 3} and all(part.isdigit() for part in parts[::2])
        if not valid or (len(parts) == 3 and parts[1].upper() != "R"):
            self.respond("501 Syntax: ALLO <SP> bytes.")
            return
        if not self.quotas.quotas:
            self.respond("202 No storage allocation necessary.")
            return
        self._allo_size = int(parts[0])
        self.respond(f"200 {self._allo_size} bytes noted for the next upload.")

    def flush_account(self) -> None:
        self._allo_size = 0
        super().flush_account()

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        """An ALLO size is for the next upload command only, also one that is refused before it starts."""
        try:
            super().process_command(cmd, *args, **kwargs)
        finally:
            if cmd in _UPLOAD_COMMANDS:
                self._allo_size = 0

    def quota_claim(self, path: str) -> UploadClaim | None:
        """The claim of an upload to path (None if no quota covers it); QuotaExceeded if it cannot fit.

        Refused at the start: an announced size (ALLO) that does not fit, or a new name while the file
        count is full. Replacing a file is charged only with the growth (module docstring).
        """
        announced, self._allo_size = self._allo_size, 0
        quota = self.quotas.find(os.path.dirname(path))
        if quota is None:
            return None
        existing = file_usage(path)
        credit = existing.bytes if existing else 0
        refusal = None
        if not quota.fits(0, 1 if existing is None else 0):
            refusal = QuotaExceeded(quota, f"{quota.max_files} files")
        elif not quota.fits(announced - credit, 0):
            refusal = QuotaExceeded(quota, f"{quota.max_bytes} bytes")
        if refusal is not None:
            self.log(f"upload of {path} refused at its start: {quota.describe()}", logfun=logger.warning)
            raise refusal
        return UploadClaim(quota, announced, credit, existing is None)

    def ftp_DELE(self, path: str) -> str | None:
        quota = self.quotas.find(os.path.dirname(path))
        before = file_usage(path) if quota else None
        result = super().ftp_DELE(path)
        if result is not None and quota is not None and before is not None:
            quota.changed(Usage() - before)
        return result

    def ftp_RNFR(self, path: str) -> None:
        if self._refuse_moving_quota_folder(path):
            return
        super().ftp_RNFR(path)

    def ftp_RMD(self, path: str) -> None:
        if self._refuse_moving_quota_folder(path):
            return
        super().ftp_RMD(path)

    def ftp_RNTO(self, path: str) -> tuple[str, str] | None:
        source = self._rnfr
        if not source:
            return super().ftp_RNTO(path)  # pyftpdlib's 503
        if self._refuse_moving_quota_folder(path):
            self._rnfr = None
            return None
        from_quota = self.quotas.find(os.path.dirname(source))
        to_quota = self.quotas.find(os.path.dirname(path))
        moved = Usage()
        if from_quota is not to_quota:
            if os.path.isdir(source) and not os.path.islink(source):
                moved = scan(source, from_quota.temp_paths if from_quota else frozenset())
            else:
                moved = file_usage(source) or Usage()
        replaced = file_usage(path) if to_quota else None
        if to_quota is not None and not self._rename_fits(to_quota, moved - (replaced or Usage())):
            self._rnfr = None
            return None
        result: tuple[str, str] | None = super().ftp_RNTO(path)
        if result is not None:
            if from_quota is not None and from_quota is not to_quota:
                from_quota.changed(Usage() - moved)
            if to_quota is not None:
                to_quota.changed(moved - (replaced or Usage()))
        return result

    def _rename_fits(self, quota: Quota, delta: Usage) -> bool:
        if quota.fits(delta.bytes, delta.files):
            return True
        self.respond("552 Folder quota exceeded (exceeded storage allocation).")
        return False

    def _refuse_moving_quota_folder(self, path: str) -> bool:
        quota = self.quotas.holds_quota_folder(path)
        if quota is None:
            return False
        self.log(f"refused to move or remove {path}: it holds the quota folder {quota.path}")
        self.respond("550 This folder has a quota (or holds one); it cannot be renamed or removed.")
        return True


def quota_report(settings: Iterable[QuotaSettings]) -> list[dict[str, Any]]:
    """Each quota's usage as on disk now (``ftpsd quota``): a scan, temp files of uploads included."""
    report = []
    for item in settings:
        usage = scan(os.path.realpath(item.path))
        report.append(
            {
                "path": item.path,
                "exists": os.path.isdir(item.path),
                "used_bytes": usage.bytes,
                "max_bytes": item.max_bytes,
                "used_files": usage.files,
                "max_files": item.max_files,
            }
        )
    return report
