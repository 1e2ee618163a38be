"""FTPS clients for the suite: ftplib with TLS session reuse (ftpsd requires it), explicit and implicit."""

from __future__ import annotations

import ftplib
import hashlib
import io
import socket
import ssl

from labhost import Deployment

TIMEOUT = 60


class FTPS(ftplib.FTP_TLS):
    """Explicit FTPS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        plain, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if not self._prot_p:
            return plain, size
        session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
        return self.context.wrap_socket(plain, server_hostname=self.host, session=session), size


class ImplicitFTPS(FTPS):
    """Implicit FTPS: TLS from the first byte, then the usual FTP dialogue."""

    def connect(
        self, host: str = "", port: int = 0, timeout: float = -999, source_address: object = None
    ) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout, source_address=source_address)
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def login(deployment: Deployment, user: str, *, implicit: bool = False, timeout: float = TIMEOUT) -> FTPS:
    """A logged-in session with protected data connections (PROT P)."""
    cls = ImplicitFTPS if implicit else FTPS
    port = 990 if implicit else 21
    ftp = cls(context=deployment.client_context(), timeout=timeout)
    ftp.connect(deployment.server.address, port)
    ftp.login(user, deployment.users[user].password)
    ftp.prot_p()
    return ftp


def upload(ftp: FTPS, name: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data), blocksize=65536)


def download_sha256(ftp: FTPS, name: str) -> str:
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {name}", digest.update, blocksize=65536)
    return digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
