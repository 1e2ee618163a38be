"""Sessions for the suite, logged in with ftpsd.client (explicit or implicit FTPS), and transfer helpers."""

from __future__ import annotations

import hashlib
import io

from ftpsd.client import FTPS, ImplicitFTPS
from labhost import Deployment

TIMEOUT = 60


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
