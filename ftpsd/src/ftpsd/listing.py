"""What a user without the list permission sees: only the files its own login has just uploaded.

Upload-only users may not learn what is in their home (other users' files may share the folder).
Refusing LIST/NLST/MLSD with 550 keeps that secret, but FileZilla shows a red "Failed to retrieve
directory listing" after every successful upload, and rclone, which looks for each file in the listing
of its folder after uploading it, reports the upload as failed. So such a user gets a listing of the
files that the same login (user and address) uploaded recently and that are unchanged since
(ownuploads.RecentUploads), and nothing else: an empty listing for every other folder, for a path
that does not exist, is a file or lies outside the home. It reveals nothing the client does not know
already. MLST, STAT with a path, SIZE and MDTM stay refused (550), except SIZE of the user's own partial
uploads (uploads.py, permissions.may_resume_own_partial); the data channel rules are unchanged.
"""

from __future__ import annotations

from pyftpdlib.handlers.ftp.producers import BufferedIteratorProducer

_LISTINGS = frozenset({"LIST", "NLST", "MLSD"})
_LS_OPTIONS = frozenset({"-a", "-l", "-al", "-la"})  # old clients' LIST arguments (as pyftpdlib)


class OwnUploadsListing:
    """Control-handler mixin: LIST, NLST and MLSD of a user without "l" list its login's own uploads."""

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if cmd in _LISTINGS and self.authenticated and not self._may_list():
            # pyftpdlib would refuse it in its permission check.
            self.logline(f"<- {line}")
            if cmd == "LIST" and arg.lower() in _LS_OPTIONS:
                arg = ""
            path = self.fs.ftp2fs(arg or self.fs.cwd)
            self.process_command(cmd, path)
            return
        super().pre_process_command(line, cmd, arg)

    def ftp_LIST(self, path: str) -> str | None:
        return super().ftp_LIST(path) if self._may_list() else self._own_uploads("LIST", path)

    def ftp_NLST(self, path: str) -> str | None:
        return super().ftp_NLST(path) if self._may_list() else self._own_uploads("NLST", path)

    def ftp_MLSD(self, path: str) -> str | None:
        return super().ftp_MLSD(path) if self._may_list() else self._own_uploads("MLSD", path)

    def _may_list(self) -> bool:
        return bool(self.authorizer.has_perm(self.username, "l"))

    def _own_uploads(self, cmd: str, path: str) -> str:
        """The listing in the command's format, built with pyftpdlib's own formatters."""
        names = self.recent_uploads.names_in(self.own_login(), path) if self.fs.validpath(path) else []
        if cmd == "NLST":
            self.push_dtp_data("".join(f"{name}\r\n" for name in names).encode(self.encoding), cmd=cmd)
            return path
        if cmd == "LIST":
            lines = self.fs.format_list(path, names)
        else:
            lines = self.fs.format_mlsx(
                path, names, self.authorizer.get_perms(self.username), self._current_facts
            )
        self.push_dtp_data(BufferedIteratorProducer(lines), isproducer=True, cmd=cmd)
        return path
