"""The FTP control connection, kept small and explicit instead of ftplib.

ftplib raises on every 4xx/5xx reply and hides the socket; the doctor needs the opposite: every reply
as data (the diagnosis quotes it) and the TLS socket itself (version, certificate, session).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

MAX_LINE = 8192  # a hostile or broken server must not make us buffer without end
MAX_LINES = 200


class ProtocolError(OSError):
    """The server closed the connection or sent something that is not an FTP reply."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # the whole reply, lines joined with "\n"

    @property
    def kind(self) -> int:
        """The first digit: 1 preliminary, 2 done, 3 more needed, 4 transient, 5 permanent error."""
        return self.code // 100

    def __str__(self) -> str:
        return self.text


class ControlChannel:
    """One control connection. ``host`` is the name or address the user gave (used for SNI and the
    certificate name check); ``peer`` is the address actually connected to."""

    def __init__(self, sock: socket.socket, host: str) -> None:
        self.host = host
        self.sock: socket.socket = sock
        self.peer: str = sock.getpeername()[0]
        self._reader = sock.makefile("rb")

    @property
    def tls(self) -> ssl.SSLSocket | None:
        return self.sock if isinstance(self.sock, ssl.SSLSocket) else None

    @property
    def ipv6(self) -> bool:
        return self.sock.family == socket.AF_INET6

    def _line(self) -> str:
        raw = self._reader.readline(MAX_LINE)
        if not raw:
            raise ProtocolError("the server closed the control connection")
        if not raw.endswith(b"\n"):
            raise ProtocolError(f"reply line longer than {MAX_LINE} bytes")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def read_reply(self) -> Reply:
        first = self._line()
        if len(first) < 3 or not first[:3].isdigit():
            raise ProtocolError(f"not an FTP reply: {first[:80]!r}")
        lines = [first]
        if first[3:4] == "-":  # multi-line reply ends with "<code> "
            while not (lines[-1][:3] == first[:3] and lines[-1][3:4] == " "):
                if len(lines) > MAX_LINES:
                    raise ProtocolError(f"multi-line reply longer than {MAX_LINES} lines")
                lines.append(self._line())
        return Reply(int(first[:3]), "\n".join(lines))

    def send(self, command: str) -> None:
        if any(c in command for c in "\r\n"):
            raise ValueError("an FTP command is one line")
        self.sock.sendall(command.encode("utf-8") + b"\r\n")

    def command(self, command: str) -> Reply:
        self.send(command)
        return self.read_reply()

    def start_tls(self, context: ssl.SSLContext) -> ssl.SSLSocket:
        """Handshake on this connection (after 234 to AUTH TLS, or at once for implicit FTPS)."""
        self._reader.close()
        tls = context.wrap_socket(self.sock, server_hostname=self.host)
        self.sock = tls
        self._reader = tls.makefile("rb")
        return tls

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session that data connections resume (RFC 4217 style session reuse)."""
        tls = self.tls
        return tls.session if tls is not None else None

    def close(self) -> None:
        self._reader.close()
        self.sock.close()

    def quit(self) -> None:
        """Say goodbye politely if the connection still works, then close it in any case."""
        try:
            self.command("QUIT")
        except OSError:
            pass
        finally:
            self.close()
