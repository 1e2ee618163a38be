"""Partial uploads kept for resuming: their names, opening one under a lock, and the sweep of old ones.

An interrupted upload (uploads.py) is kept per (user, final path) next to its final name, under a hidden
name derived from both: ``UPLOAD_PREFIX + "resume-" + sha256(user NUL basename)[:32] + ".partial"``. The
name is deterministic, so the partial survives a restart and its user finds it again; it contains the
user name (hashed), so no other user's commands ever reach it (and, like every ``UPLOAD_PREFIX`` name, no
client can address it: filesystem.SecureFS). Which user may learn what about a partial is decided in
permissions.py.

A partial is written only under ``flock(LOCK_EX | LOCK_NB)`` on its file descriptor, held from the upload
command until the commit (or the end of the transfer): two sessions never write one partial, and the
sweep never removes one that is being written. flock works across processes and, on Linux, on NFSv4
(as a whole-file lock), which a shared upload folder of several servers needs.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable

from ftpsd.filesystem import OPEN_NOFOLLOW, UPLOAD_PREFIX

logger = logging.getLogger("ftpsd")

PARTIAL_SUFFIX = ".partial"  # resumable partial uploads
TEMP_SUFFIX = ".part"  # uploads that are never resumed (STOU, or partial_upload_ttl = 0)
# With partial_upload_ttl = 0 nothing is kept on purpose; files left by a crashed process are swept once
# they are this old (an unlocked one is never in use, the age only guards the open-then-lock moment).
LEFTOVER_AGE = 3600
# The sweep runs at start-up, then every SWEEP_INTERVAL seconds (or every ttl seconds if that is shorter,
# but not more often than every MIN_SWEEP_INTERVAL).
SWEEP_INTERVAL = 3600
MIN_SWEEP_INTERVAL = 60
_OPEN_ATTEMPTS = 8


class PartialBusy(Exception):
    """Another session (or process) is writing this partial upload right now."""


def partial_path(final_path: str, user: str) -> str:
    """The hidden name of user's partial upload of final_path, in final_path's folder."""
    directory, base = os.path.split(final_path)
    digest = hashlib.sha256(f"{user}\0{base}".encode()).hexdigest()[:32]
    return os.path.join(directory, f"{UPLOAD_PREFIX}resume-{digest}{PARTIAL_SUFFIX}")


def partial_size(final_path: str, user: str) -> int | None:
    """Size of user's partial upload of final_path, or None if it has none."""
    try:
        info = os.lstat(partial_path(final_path, user))
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def lock(fd: int) -> None:
    """Take the writer's lock on an upload file; BlockingIOError if someone holds it."""
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _still_named(fd: int, path: str) -> bool:
    """Whether fd is still the file at path (a lock taken on a file just renamed or removed is worthless)."""
    try:
        named = os.lstat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def open_partial(final_path: str, user: str) -> tuple[str, int, bool]:
    """Open (or create) user's partial upload of final_path, locked: (path, fd, existed).

    Raises PartialBusy if it is being written, OSError if it cannot be opened (a symlink or another
    non-regular file planted under the name is refused, never followed).
    """
    path = partial_path(final_path, user)
    for _ in range(_OPEN_ATTEMPTS):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN_NOFOLLOW, 0o666)
            existed = False
        except FileExistsError:
            try:
                fd = os.open(path, os.O_RDWR | OPEN_NOFOLLOW | os.O_NONBLOCK)
            except FileNotFoundError:
                continue  # committed or swept between the two opens
            existed = True
        try:
            lock(fd)
        except BlockingIOError:
            os.close(fd)
            raise PartialBusy(path) from None
        if not _still_named(fd, path):
            os.close(fd)  # its holder committed or removed it before we got the lock: start again
            continue
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "Not a regular file")
        return path, fd, existed
    raise PartialBusy(path)


def _outermost(homes: Iterable[str]) -> list[str]:
    """The homes to walk: one that lies inside another is walked as part of it."""
    unique = sorted({os.path.realpath(home) for home in homes})
    kept: list[str] = []
    for home in unique:
        if not any(home == top or home.startswith(top.rstrip(os.sep) + os.sep) for top in kept):
            kept.append(home)
    return kept


def _remove_if_stale(path: str, cutoff: float) -> bool:
    """Remove path if it is a regular file last written before cutoff and nobody holds its lock."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_mtime >= cutoff:
            return False
        fd = os.open(path, os.O_RDONLY | OPEN_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        lock(fd)
        # Re-checked under the lock: a resumed upload may have written it (or committed it) meanwhile.
        if _still_named(fd, path) and os.fstat(fd).st_mtime < cutoff:
            os.unlink(path)
            return True
    except OSError:  # BlockingIOError: an upload is writing it now
        pass
    finally:
        os.close(fd)
    return False


def sweep(homes: Iterable[str], ttl: int, now: float | None = None) -> list[str]:
    """Remove partial uploads last written more than ttl seconds ago, below every home, and the temporary
    files of uploads a crashed process left behind; log and return what was removed.

    With ttl 0 (nothing is kept for resuming) both kinds are removed once LEFTOVER_AGE old.
    Runs off the event loop (server.py): a home with many files takes a while to walk.
    """
    max_age = ttl or LEFTOVER_AGE
    cutoff = (time.time() if now is None else now) - max_age
    removed: list[str] = []
    for home in _outermost(homes):
        for directory, _dirs, names in os.walk(home):  # symlinked folders are not followed
            for name in names:
                if not name.startswith(UPLOAD_PREFIX) or not name.endswith((PARTIAL_SUFFIX, TEMP_SUFFIX)):
                    continue
                path = os.path.join(directory, name)
                if _remove_if_stale(path, cutoff):
                    kind = "partial upload" if name.endswith(PARTIAL_SUFFIX) else "leftover upload file"
                    logger.info("removed %s %s (not written for more than %d s)", kind, path, max_age)
                    removed.append(path)
    return removed


def sweep_interval(ttl: int) -> int:
    """Seconds between sweeps: hourly, or every ttl seconds for a shorter ttl (at least a minute)."""
    return max(MIN_SWEEP_INTERVAL, min(SWEEP_INTERVAL, ttl or SWEEP_INTERVAL))
