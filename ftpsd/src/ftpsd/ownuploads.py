"""MFMT on a file its own login has just uploaded, also for users without the "T" permission.

rclone (and other sync tools) set the modification time right after each upload. Upload-only users
("ew") may not change files, so MFMT was refused and rclone reported every upload as failed, retried
it and then hit "550 File exists". Setting the time of a file one has just created oneself changes
nothing anyone else owns, so it is allowed for the last ``REMEMBERED`` files that the same login stored
(STOR/STOU): the same user from the same address, on this control connection or another one (rclone
uploads on one connection of its pool and sets the time on the next free one; README.md, "TLS session
reuse", explains why the same user from the same address counts as one client). Each file must still be
the one uploaded: same device, inode and inode change time (an inode number alone is reused as soon as a
deleted file's successor is created), not a symlink, inside the home. Any other file, including one that
another user uploaded under the same name, stays refused (550).
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict

# Uploads per login whose time MFMT may set (the most recent ones; sync tools set it right away), and
# logins remembered (the least recently active is forgotten first).
REMEMBERED = 64
LOGINS = 1024

Login = tuple[str, str]  # (user name, client address)
Identity = tuple[int, int, int]


def _identity(info: os.stat_result) -> Identity:
    return info.st_dev, info.st_ino, info.st_ctime_ns


class RecentUploads:
    """The files each login stored recently, with the identity each had right after its upload."""

    def __init__(self) -> None:
        self._by_login: OrderedDict[Login, OrderedDict[str, Identity]] = OrderedDict()

    def remember(self, login: Login, path: str) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            return
        uploads = self._by_login.pop(login, None) or OrderedDict()
        self._by_login[login] = uploads
        uploads.pop(path, None)
        uploads[path] = _identity(info)
        if len(uploads) > REMEMBERED:
            uploads.popitem(last=False)
        if len(self._by_login) > LOGINS:
            self._by_login.popitem(last=False)

    def names_in(self, login: Login, directory: str) -> list[str]:
        """Sorted names of the files in directory that are still the ones login uploaded."""
        uploads = self._by_login.get(login, {})
        return sorted(
            os.path.basename(path)
            for path in list(uploads)
            if os.path.dirname(path) == directory and self.stored_by(login, path)
        )

    def stored_by(self, login: Login, path: str) -> bool:
        """Whether path is still the very file that login uploaded (see module docstring)."""
        identity = self._by_login.get(login, {}).get(path)
        if identity is None:
            return False
        try:
            info = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and _identity(info) == identity


class OwnUploadTimes:
    """Control-handler mixin: records this login's uploads and lets MFMT reach them."""

    recent_uploads: RecentUploads  # set by server.Server, shared by all connections

    def on_file_received(self, file: str) -> None:
        """Called by pyftpdlib right after an upload was committed under its final name."""
        super().on_file_received(file)
        self.recent_uploads.remember(self.own_login(), file)

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if (
            cmd == "MFMT"
            and self.authenticated
            and " " in arg
            and not self.authorizer.has_perm(self.username, "T")
        ):
            timeval, name = arg.split(" ", 1)
            path = self.fs.ftp2fs(name)
            if self.fs.validpath(path) and self.recent_uploads.stored_by(self.own_login(), path):
                # pyftpdlib's permission check would refuse it; the command itself is pyftpdlib's.
                self.logline(f"<- {line}")
                self.process_command(cmd, path, timeval=timeval)
                return
        super().pre_process_command(line, cmd, arg)

    def ftp_MFMT(self, path: str, timeval: str) -> tuple[str, str] | None:
        ours = self.recent_uploads.stored_by(self.own_login(), path)
        result = super().ftp_MFMT(path, timeval)
        if result is not None and ours:
            self.recent_uploads.remember(self.own_login(), path)  # our own change of the inode change time
        return result

    def own_login(self) -> Login:
        """Who counts as the same client: the user name and the address (README.md, "TLS session reuse")."""
        return self.username, self.remote_ip
