"""Passive data connections, with every stage observed separately.

A transfer can break at the TCP connect (firewall, wrong announced address), at the TLS handshake
(session reuse refused), while moving bytes, or in the server's final reply. ``Transfer`` records
which, so the steps can say which layer is broken instead of "transfer failed"; ``transfer_problem``
turns that record into a diagnosis and a hint, for every step that moves data.
"""

from __future__ import annotations

import ftplib
import ssl
from dataclasses import dataclass

from ftpsd.doctor.control import ControlChannel, Reply
from ftpsd.doctor.network import Advice, ConnectFailed, Failure, connect, explain

MAX_DOWNLOAD = 16 * 1024 * 1024  # listings and the probe file are small; never buffer without end


class PassiveRefused(Exception):
    """The server did not answer PASV/EPSV with a usable address."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


def request_passive(control: ControlChannel, command: str) -> tuple[str, int]:
    """Send PASV or EPSV and return the address and port the server announced.

    EPSV announces only a port; the address is by definition the one of the control connection.
    """
    reply = control.command(command)
    try:
        if command == "PASV" and reply.code == 227:
            return ftplib.parse227(reply.text)  # noqa: S321 - parses reply text, nothing more
        if command == "EPSV" and reply.code == 229:
            return ftplib.parse229(reply.text, (control.peer, 0))  # noqa: S321 - as above
    except ftplib.Error:
        pass
    raise PassiveRefused(reply)


@dataclass
class Transfer:
    """What happened to one data transfer, stage by stage."""

    target: tuple[str, int]
    connect_error: ConnectFailed | None = None
    preliminary: Reply | None = None
    tls_error: str = ""
    io_error: str = ""
    final: Reply | None = None
    data: bytes = b""
    session_reused: bool | None = None

    @property
    def ok(self) -> bool:
        return self.final is not None and self.final.code == 226 and not (self.tls_error or self.io_error)


def run_transfer(
    control: ControlChannel,
    context: ssl.SSLContext,
    target: tuple[str, int],
    command: str,
    *,
    timeout: float,
    upload: bytes | None = None,
    reuse_session: bool = True,
) -> Transfer:
    """Connect to an announced passive port, send ``command`` and move the data over TLS.

    ``reuse_session=False`` deliberately starts a fresh TLS session, to see whether the server
    insists on resumption (which stops another client from hijacking the data connection).
    """
    result = Transfer(target)
    try:
        raw = connect(*target, timeout)
    except ConnectFailed as err:
        result.connect_error = err
        return result
    with raw:  # closed on every path; after a handshake it is detached and this is a no-op
        result.preliminary = control.command(command)
        if result.preliminary.kind != 1:  # refused before any data moved: this is the final answer
            result.final = result.preliminary
            return result
        session = control.session if reuse_session else None
        try:
            data = context.wrap_socket(raw, server_hostname=control.host, session=session)
        except (ssl.SSLError, OSError) as err:
            result.tls_error = str(err) or type(err).__name__
        else:
            with data:
                result.session_reused = data.session_reused
                try:
                    if upload is None:
                        result.data = _receive(data)
                    else:
                        data.sendall(upload)
                        data.unwrap()  # TLS close_notify: ftpsd discards an upload that ends without it
                except (ssl.SSLError, OSError) as err:
                    result.io_error = str(err) or type(err).__name__
    result.final = control.read_reply()
    return result


def _receive(sock: ssl.SSLSocket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := sock.recv(65536):
        size += len(chunk)
        if size > MAX_DOWNLOAD:
            raise OSError(f"more than {MAX_DOWNLOAD} bytes received")
        chunks.append(chunk)
    return b"".join(chunks)


FIREWALL_HINT = (
    "open the server's passive port range (ftps_server passive ports, e.g. 50000-60000; port {port} is "
    "one of them) in the host firewall (firewall role) and in every network firewall or security "
    "group between client and server"
)
SESSION_REUSE_REFUSED = 522
LOG_HINT = "check the server log (journalctl -u ftpsd)"


_DATA_ADVICE: Advice = {
    Failure.TIMEOUT: (
        "the data connection to {where} timed out: the passive port range is not open in a "
        "firewall between you and the server (packets to it are dropped)",
        FIREWALL_HINT,
    ),
    Failure.REFUSED: (
        "the data connection to {where} was refused: nothing listens there (a NAT device "
        "forwarding other ports, or a wrong announced address), or a firewall rejects the "
        "passive port range",
        FIREWALL_HINT,
    ),
}
_DATA_OTHER = ("no data connection to {where}: {detail}", "check the routes to the server")


def transfer_problem(transfer: Transfer) -> tuple[str, str] | None:
    """Diagnosis and hint for a transfer that did not complete, or None if it did."""
    if transfer.connect_error is not None:
        return explain(transfer.connect_error, _DATA_ADVICE, _DATA_OTHER)
    final = transfer.final
    server_said = f" (server: «{final}»)" if final else ""
    if transfer.tls_error and final is not None and final.code == SESSION_REUSE_REFUSED:
        return (
            f"the server refused the data connection's TLS session: «{final}»",
            "the server requires data connections to resume a TLS session of a control connection of the "
            "same login (tls.require_session_reuse); use a client that does (FileZilla, lftp, curl and "
            "rclone do)",
        )
    if transfer.tls_error:
        return (f"TLS handshake on the data connection failed: {transfer.tls_error}{server_said}", LOG_HINT)
    if transfer.io_error:
        return (
            f"the data transfer broke: {transfer.io_error}{server_said}",
            f"{LOG_HINT}; a firewall or NAT cutting long transfers also looks like this",
        )
    if final is not None and final.code != 226:
        return (f"the server did not complete the transfer: «{final}»", LOG_HINT)
    return None
