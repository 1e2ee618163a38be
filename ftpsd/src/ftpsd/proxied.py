"""Connections through a load balancer: its PROXY v2 header is read before pyftpdlib sees the connection.

Who may send a header is configured (``network.proxy_protocol_from``); the rules (README.md, "PROXY
protocol"):

* a connection from a listed address must start with a valid v2 header: ``HeaderWait`` reads it, on the
  event loop and bounded in time (``network.proxy_header_timeout``), before the greeting (explicit port),
  before the TLS handshake (implicit port, passive data connections). A connection without one is closed
  unanswered and logged: the load balancer's own address must never get a session, a ban or a reply;
* what then reaches pyftpdlib is a ``ProxiedSocket`` whose peer is the client the header names, so every
  place that asks for the client's address (bans, per-IP limits, allowed networks, the data connection's
  origin check, TLS contexts, logs, the transfer log) gets the client's without being changed;
* a connection from any other address that starts with a PROXY header (``ForgedHeaderRefusal``) is refused
  and logged instead of being taken for a garbage FTP command or a failed TLS handshake;
* a connection waiting for its header holds a socket like a session does, so ``limits.max_connections``
  bounds the waits too (``no_room_for``): without it a host of a listed network could hold any number of
  sockets open for ``proxy_header_timeout`` each.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from pyftpdlib.handlers.ftp.dispatchers import PassiveDTP

from ftpsd.authorizer import admits
from ftpsd.offload import ReadEventsOnly
from ftpsd.proxyprotocol import SIGNATURE, ProxyHeaderError, looks_like_header, missing, parse

logger = logging.getLogger("ftpsd")

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
Address = tuple[Any, ...]  # a socket address: (host, port) or (host, port, flowinfo, scope_id)


def from_load_balancer(networks: Networks, address: str) -> bool:
    """Whether a connection from address must bring a PROXY v2 header; no networks: none must."""
    return bool(networks) and admits(networks, address)


def no_room_for(ioloop: Any, max_connections: int) -> bool:  # noqa: ANN401 - pyftpdlib IOLoop
    """Whether a new connection from a load balancer would pass max_connections while it waits for its header.

    pyftpdlib counts every registered socket against max_cons, but only when a session starts, that is after
    the header: checked before the wait begins, the limit holds for the waits as well.
    """
    return bool(max_connections) and len(ioloop.socket_map) >= max_connections


class ProxiedSocket(socket.socket):
    """An accepted connection whose peer is the client named by the load balancer's header.

    It takes over the accepted socket's file descriptor; only getpeername() differs, which is where
    pyftpdlib (and so ftpsd) learns the client's address.
    """

    client: Address
    load_balancer: Address

    @classmethod
    def adopt(cls, sock: socket.socket, client: tuple[str, int], load_balancer: Address) -> ProxiedSocket:
        proxied = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        proxied.client = _as_peer(proxied.family, client)
        proxied.load_balancer = load_balancer
        return proxied

    def getpeername(self) -> Address:
        return self.client


def _as_peer(family: int, client: tuple[str, int]) -> Address:
    """The client as this socket family reports peers: IPv4 on the dual-stack socket as ::ffff:a.b.c.d."""
    host, port = client
    if family != socket.AF_INET6:
        return host, port
    if isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address):
        host = f"::ffff:{host}"
    return host, port, 0, 0


class HeaderWait(ReadEventsOnly):
    """Reads the PROXY v2 header of one new connection from a load balancer, then hands the connection on.

    Registered on the event loop like a handler, so other sessions are served meanwhile; it reads no byte
    past the header. ``admit`` gets the socket and the client's address (a ProxiedSocket for PROXY, the
    socket itself for LOCAL); ``refuse`` gets the reason after the connection was closed.
    """

    def __init__(
        self,
        sock: socket.socket,
        peer: Address,
        ioloop: Any,  # noqa: ANN401 - pyftpdlib IOLoop
        *,
        timeout: float,
        admit: Callable[[socket.socket, Address], object],
        refuse: Callable[[str], None],
    ) -> None:
        self._sock, self._peer, self._ioloop = sock, peer, ioloop
        self._admit, self._refuse = admit, refuse
        self._buffer = b""
        sock.setblocking(False)
        self._fileno = sock.fileno()
        ioloop.register(self._fileno, self, ioloop.READ)
        self._timer = ioloop.call_later(timeout, self._fail, f"no complete header within {timeout} s")

    def handle_read_event(self) -> None:
        try:
            chunk = self._sock.recv(missing(self._buffer))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._fail(f"reading the header failed: {err}")
            return
        if not chunk:
            self._fail("closed before sending a complete header")
            return
        self._buffer += chunk
        try:
            if missing(self._buffer):
                return
            header = parse(self._buffer)
        except ProxyHeaderError as err:
            self._fail(f"invalid PROXY protocol v2 header: {err}")
            return
        self._detach()
        if header.source is None:  # LOCAL: the load balancer's own health check
            self._admit(self._sock, self._peer)
            return
        proxied = ProxiedSocket.adopt(self._sock, header.source, self._peer)
        logger.debug("PROXY v2 header from %s: client %s", self._peer[0], header.source[0])
        self._admit(proxied, proxied.client)

    def handle_close(self) -> None:
        self._fail("closed before sending a complete header")

    def handle_error(self) -> None:
        logger.exception("reading a PROXY v2 header from %s failed", self._peer[0])
        self.close()

    def close(self) -> None:
        """Drop the connection (also called by the IOLoop when it closes at shutdown)."""
        self._detach()
        self._sock.close()

    def _detach(self) -> None:
        self._timer.cancel()
        self._ioloop.unregister(self._fileno)

    def _fail(self, reason: str) -> None:
        self.close()
        self._refuse(reason)


class ProxiedPassiveDTP(PassiveDTP):
    """The passive data listener: a load balancer's data connection brings its header before the origin
    check, which then compares the client's address from the header with the control connection's."""

    def handle_accepted(self, sock: socket.socket, addr: Address) -> None:
        cmd = self.cmd_channel
        if not from_load_balancer(cmd.proxy_protocol_from, addr[0]):
            super().handle_accepted(sock, addr)
            return
        if no_room_for(self.ioloop, cmd.server.max_cons):
            sock.close()
            cmd.metrics.connection_refused("limit")
            cmd.log(
                f"data connection from load balancer {addr[0]}:{addr[1]} refused: max_connections reached",
                logfun=logger.warning,
            )
            return

        def refuse(reason: str) -> None:
            cmd.metrics.connection_refused("proxy_protocol")
            cmd.log(
                f"data connection from load balancer {addr[0]}:{addr[1]} refused: {reason}",
                logfun=logger.warning,
            )

        HeaderWait(
            sock,
            addr,
            self.ioloop,
            timeout=cmd.proxy_header_timeout,
            admit=self._accept_proxied,
            refuse=refuse,
        )

    def _accept_proxied(self, sock: socket.socket, addr: Address) -> None:
        if self._closed:  # timed out, or another connection took the transfer, while the header came
            sock.close()
            return
        super().handle_accepted(sock, addr)


class ForgedHeaderRefusal:
    """Refuses a connection whose first bytes are a PROXY protocol header no trusted load balancer sent.

    A mixin for the control and the data handler, first in their bases. It peeks (MSG_PEEK, nothing is
    consumed) at the connection's first bytes when they are first read: before the first command on the
    explicit port, before the TLS handshake on the implicit port and on data connections. Connections that
    came through a load balancer are checked too: a second header behind the load balancer's is forged.
    """

    _first_bytes_checked = False

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        self._tcp_socket = sock  # the TCP socket even after TLS wraps it
        super().__init__(sock, *args, **kwargs)

    def handle_read(self) -> None:
        if not self._forged_header():
            super().handle_read()

    def _do_ssl_handshake(self) -> None:
        if not self._forged_header():
            super()._do_ssl_handshake()

    def refuse_forged_header(self) -> None:
        """Log and close; the control and the data handler say it each in their own way."""
        raise NotImplementedError

    def _forged_header(self) -> bool:
        if self._first_bytes_checked:
            return False
        try:
            first = self._tcp_socket.recv(len(SIGNATURE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False  # nothing there yet (a handshake step on a write event); look at the next read
        except OSError:
            first = b""  # the handler's own read reports the error
        self._first_bytes_checked = True
        if not looks_like_header(first):
            return False
        self.metrics.connection_refused("proxy_protocol")
        self.refuse_forged_header()
        return True
