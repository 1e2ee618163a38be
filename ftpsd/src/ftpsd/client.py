"""ftplib clients for servers that require TLS session reuse on data connections (RFC 4217, section 10.2).

Stock ftplib starts a fresh TLS session on every data connection. ftpsd refuses those, as vsftpd does with
``require_ssl_reuse`` and FileZilla Server does by default, because a data connection that resumes the
control connection's session proves it comes from the logged-in client, not from whoever reached the
passive port first. Scripts and the tests talk to ftpsd through these two classes.
"""

from __future__ import annotations

import ftplib
import socket
import ssl


class FTPS(ftplib.FTP_TLS):
    """Explicit FTPS (AUTH TLS) whose protected data connections resume the control connection's session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        plain, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - wrapped in TLS below
        if not self._prot_p:
            return plain, size
        session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
        return self.context.wrap_socket(plain, server_hostname=self.host, session=session), size


class ImplicitFTPS(FTPS):
    """Implicit FTPS (port 990): TLS from the first byte, data channels protected from the start.

    ftplib has no implicit mode, so the control socket is wrapped before the banner is read.
    """

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout, source_address=source_address)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        self._prot_p = True
        return self.welcome
