"""TCP connections whose failures are classified, because each cause has a different fix.

"Refused" means a host answered but nothing listens (or a firewall rejects); "timed out" means
packets vanish (a firewall drops them, or the host is off); "unreachable" means there is no route.
"""

from __future__ import annotations

import errno
import socket
from enum import StrEnum

_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


class Failure(StrEnum):
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    UNRESOLVED = "unresolved"
    OTHER = "error"


class ConnectFailed(Exception):
    """A TCP connection could not be opened; ``kind`` says why in a way a fix can be chosen from."""

    def __init__(self, kind: Failure, host: str, port: int, detail: str) -> None:
        super().__init__(f"{host}:{port}: {detail}")
        self.kind = kind
        self.host = host
        self.port = port
        self.detail = detail


def classify(err: OSError) -> Failure:
    if isinstance(err, socket.gaierror):
        return Failure.UNRESOLVED
    if isinstance(err, TimeoutError):
        return Failure.TIMEOUT
    if isinstance(err, ConnectionRefusedError):
        return Failure.REFUSED
    if err.errno in _UNREACHABLE:
        return Failure.UNREACHABLE
    return Failure.OTHER


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Open a TCP connection or raise ConnectFailed; the socket keeps ``timeout`` for later I/O."""
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as err:
        detail = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConnectFailed(classify(err), host, port, detail) from err


def describe_control_failure(failure: ConnectFailed, timeout: float) -> tuple[str, str]:
    """Diagnosis and hint for a control connection that could not be opened."""
    where = f"{failure.host}:{failure.port}"
    if failure.kind is Failure.REFUSED:
        return (
            f"connection to {where} refused: the host answered but nothing listens on port "
            f"{failure.port} (server down, or wrong port), or a firewall rejects it",
            "on the server: `systemctl status ftpsd` and `ss -ltn`; check the port "
            "(explicit FTPS usually 21, implicit 990 with --implicit)",
        )
    if failure.kind is Failure.TIMEOUT:
        return (
            f"connection to {where} timed out after {timeout:g}s: a firewall drops the packets, "
            "or the host is down",
            f"open TCP port {failure.port} in the server's firewall (the firewall role) and in any "
            "network firewall or security group on the way; check that the host is up",
        )
    if failure.kind is Failure.UNREACHABLE:
        return (
            f"no route to {where} ({failure.detail}): the network path is broken or the host is down",
            "check the address, this machine's routes and VPN, and that the host is up",
        )
    if failure.kind is Failure.UNRESOLVED:
        return (
            f"cannot resolve {failure.host!r} ({failure.detail})",
            "check the host name, or connect by IP address",
        )
    return (f"cannot connect to {where}: {failure.detail}", "check the address and the port")
