"""MFMT on a file this session has just uploaded, also for users without the "T" permission.

rclone (and other sync tools) set the modification time right after each upload. Upload-only users
("ew") may not change files, so MFMT was refused and rclone reported every upload as failed, retried
it and then hit "550 File exists". Setting the time of a file one has just created oneself changes
nothing anyone else owns, so it is allowed for the last ``REMEMBERED`` files this session stored
(STOR/STOU) while each is still the same file: same device, inode and inode change time (an inode number
alone is reused as soon as a deleted file's successor is created), not a symlink, still inside the home.
Any other file, including one that another user or session uploaded under the same name, stays refused
(550).
"""

from __future__ import annotations

import os
import stat

# Uploads per session whose time MFMT may set (the most recent ones; sync tools set it right away).
REMEMBERED = 64


def _identity(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_dev, info.st_ino, info.st_ctime_ns


class OwnUploadTimes:
    """Control-handler mixin: remembers this session's uploads and lets MFMT reach them."""

    _own_uploads: dict[str, tuple[int, int, int]]

    def on_file_received(self, file: str) -> None:
        """Called by pyftpdlib right after an upload was committed under its final name."""
        super().on_file_received(file)
        self._remember(file)

    def ftp_MFMT(self, path: str, timeval: str) -> tuple[str, str] | None:
        result = super().ftp_MFMT(path, timeval)
        if result is not None and path in getattr(self, "_own_uploads", {}):
            self._remember(path)  # our own change of the inode change time
        return result

    def _remember(self, path: str) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            return
        if not hasattr(self, "_own_uploads"):
            self._own_uploads = {}
        self._own_uploads.pop(path, None)
        self._own_uploads[path] = _identity(info)
        if len(self._own_uploads) > REMEMBERED:
            del self._own_uploads[next(iter(self._own_uploads))]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if (
            cmd == "MFMT"
            and self.authenticated
            and " " in arg
            and not self.authorizer.has_perm(self.username, "T")
        ):
            timeval, name = arg.split(" ", 1)
            path = self.fs.ftp2fs(name)
            if self._is_own_upload(path):
                # pyftpdlib's permission check would refuse it; the command itself is pyftpdlib's.
                self.logline(f"<- {line}")
                self.process_command(cmd, path, timeval=timeval)
                return
        super().pre_process_command(line, cmd, arg)

    def _is_own_upload(self, path: str) -> bool:
        identity = getattr(self, "_own_uploads", {}).get(path)
        if identity is None or not self.fs.validpath(path):
            return False
        try:
            info = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and _identity(info) == identity
