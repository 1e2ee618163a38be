"""TCP connections whose failures are classified, because each cause has a different fix.

"Refused" means a host answered but nothing listens (or a firewall rejects); "timed out" means
packets vanish (a firewall drops them, or the host is off); "unreachable" means there is no route.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
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


# Diagnosis and hint per kind of failure; explain() fills in where, host, port, detail and timeout.
Advice = Mapping[Failure, tuple[str, str]]

_CONTROL_ADVICE: Advice = {
    Failure.REFUSED: (
        "connection to {where} refused: the host answered but nothing listens on port "
        "{port} (server down, or wrong port), or a firewall rejects it",
        "on the server: `systemctl status ftpsd` and `ss -ltn`; check the port "
        "(explicit FTPS usually 21, implicit 990 with --implicit)",
    ),
    Failure.TIMEOUT: (
        "connection to {where} timed out after {timeout:g}s: a firewall drops the packets, "
        "or the host is down",
        "open TCP port {port} in the server's firewall (the firewall role) and in any "
        "network firewall or security group on the way; check that the host is up",
    ),
    Failure.UNREACHABLE: (
        "no route to {where} ({detail}): the network path is broken or the host is down",
        "check the address, this machine's routes and VPN, and that the host is up",
    ),
    Failure.UNRESOLVED: (
        "cannot resolve {host!r} ({detail})",
        "check the host name, or connect by IP address",
    ),
}
_CONTROL_OTHER = ("cannot connect to {where}: {detail}", "check the address and the port")


def explain(
    failure: ConnectFailed, advice: Advice, other: tuple[str, str], timeout: float = 0.0
) -> tuple[str, str]:
    """Diagnosis and hint for ``failure`` from ``advice`` (``other`` for a kind it does not list)."""
    values = {
        "where": f"{failure.host}:{failure.port}",
        "host": failure.host,
        "port": failure.port,
        "detail": failure.detail,
        "timeout": timeout,
    }
    diagnosis, hint = advice.get(failure.kind, other)
    return diagnosis.format(**values), hint.format(**values)


def describe_control_failure(failure: ConnectFailed, timeout: float) -> tuple[str, str]:
    """Diagnosis and hint for a control connection that could not be opened."""
    return explain(failure, _CONTROL_ADVICE, _CONTROL_OTHER, timeout)
