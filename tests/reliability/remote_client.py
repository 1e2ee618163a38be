"""A second FTPS client with another address: run on the lab's second host with its own python3 (stdlib only).

    python3 - ACTION 'JSON ARGUMENTS' < remote_client.py

prints one JSON document. The lab hosts have no pinned certificate of the server, so this client does not
verify it: it stands for an attacker or another user, not for a careful client.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import os
import socket
import ssl
import sys

TIMEOUT = 30


def context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class FTPS(ftplib.FTP_TLS):
    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        plain, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        return self.context.wrap_socket(plain, server_hostname=self.host, session=self.sock.session), size


def greeting(host: str, port: int, implicit: bool = False) -> str:
    """The first thing the server says to a new connection, or how the connection ended."""
    try:
        with socket.create_connection((host, port), TIMEOUT) as raw:
            sock = context().wrap_socket(raw) if implicit else raw
            data = sock.recv(4096)
    except (OSError, ssl.SSLError) as err:
        return f"error: {type(err).__name__}: {err}"
    return data.decode(errors="replace").strip() if data else "closed"


def failed_logins(host: str, user: str, password: str, count: int) -> list[str]:
    """`count` wrong passwords, reconnecting whenever the server hangs up; the reply to each."""
    replies: list[str] = []
    ftp = None
    while len(replies) < count:
        try:
            if ftp is None:
                ftp = FTPS(context=context(), timeout=TIMEOUT)
                ftp.connect(host, 21)
            ftp.login(user, password)
            replies.append("230 unexpectedly logged in")
        except ftplib.error_perm as err:
            replies.append(str(err))
        except (ftplib.error_temp, EOFError, OSError) as err:
            replies.append(f"{type(err).__name__}: {err}")
            ftp = None
            continue
        if "Disconnecting" in replies[-1] or "Maximum login attempts" in replies[-1]:
            ftp.close()
            ftp = None
    if ftp is not None:
        ftp.close()
    return replies


def login(host: str, user: str, password: str) -> str:
    try:
        ftp = FTPS(context=context(), timeout=TIMEOUT)
        ftp.connect(host, 21)
        reply = ftp.login(user, password)
        ftp.quit()
    except (ftplib.Error, EOFError, OSError) as err:
        return f"{type(err).__name__}: {err}"
    return reply


def roundtrip(host: str, user: str, password: str, size: int) -> dict[str, object]:
    """Upload random bytes, download them again and compare their SHA-256."""
    data = os.urandom(size)
    name = f"remote-{os.getpid()}-{size}.bin"
    ftp = FTPS(context=context(), timeout=TIMEOUT)
    ftp.connect(host, 21)
    ftp.login(user, password)
    ftp.prot_p()
    ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {name}", digest.update)
    ftp.delete(name)
    ftp.quit()
    return {"sent": hashlib.sha256(data).hexdigest(), "received": digest.hexdigest()}


ACTIONS = {"greeting": greeting, "failed_logins": failed_logins, "login": login, "roundtrip": roundtrip}

if __name__ == "__main__":
    action, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(ACTIONS[action](**arguments)))
