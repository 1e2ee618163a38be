"""What a user without the list permission sees: an empty listing, not a refusal.

Upload-only users may not learn what is in their home (not even their own uploads, which may share the
folder with other users' files). Refusing LIST/NLST/MLSD with 550 keeps that secret, but FileZilla shows
a red "Failed to retrieve directory listing" after every successful upload, and sync tools (rclone)
stop. An empty listing, whatever the path names, reveals exactly as little: it says neither what exists
nor whether the path exists. Everything else that reveals names or sizes (MLST, STAT with a path, SIZE,
MDTM) stays refused with 550. The data channel rules are unchanged (PROT P, session reuse).
"""

from __future__ import annotations

_LISTINGS = frozenset({"LIST", "NLST", "MLSD"})


class EmptyListingWithoutListRight:
    """Control-handler mixin: LIST, NLST and MLSD of a user without "l" send an empty listing."""

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if cmd in _LISTINGS and self.authenticated and not self._may_list():
            # pyftpdlib would refuse it in its permission check; the path is irrelevant to the answer.
            self.logline(f"<- {line}")
            self.process_command(cmd, self.fs.ftp2fs(self.fs.cwd))
            return
        super().pre_process_command(line, cmd, arg)

    def ftp_LIST(self, path: str) -> str | None:
        return super().ftp_LIST(path) if self._may_list() else self._empty_listing("LIST", path)

    def ftp_NLST(self, path: str) -> str | None:
        return super().ftp_NLST(path) if self._may_list() else self._empty_listing("NLST", path)

    def ftp_MLSD(self, path: str) -> str | None:
        return super().ftp_MLSD(path) if self._may_list() else self._empty_listing("MLSD", path)

    def _may_list(self) -> bool:
        return bool(self.authorizer.has_perm(self.username, "l"))

    def _empty_listing(self, cmd: str, path: str) -> str:
        self.push_dtp_data(b"", cmd=cmd)
        return path
