"""Path confinement: every path a session names stays inside the user's home (SecureFS).

pyftpdlib's AbstractedFS already resolves ``..``, absolute paths and symlinks (realpath) before it
compares a path with the home directory. SecureFS adds what it lacks: names reserved for uploads in
progress are invisible and refused, symlinks leading out of the home are hidden from listings, and
downloads are opened by their resolved path without following links, so a link swapped in between the
check and the open cannot lead outside.
"""

from __future__ import annotations

import os
from typing import Any

from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.filesystems import AbstractedFS

# In-progress uploads (uploads.AtomicUpload) live under this prefix next to their final name. Such names
# are hidden from listings and refused in every command, so nobody can see, fetch or tamper with a
# partial upload.
UPLOAD_PREFIX = ".ftpsd-upload-"
OPEN_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


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
        return open(real, "rb", opener=lambda p, flags: os.open(p, flags | OPEN_NOFOLLOW))
