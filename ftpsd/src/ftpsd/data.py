"""The data channel (FtpsDataHandler): TLS session check, the TLS send path and transfer errors.

Every data connection must resume a TLS session of its own control connection or of another one logged
in as the same user from the same address (522 otherwise), and is sent no session ticket of its own
(sessions.py says why for both).
Downloads are written as many TLS records at a time as the socket takes; uploads are read and
committed by uploads.AtomicUploadDTP, which the bases' order below places where it must sit (the MRO
rule is in uploads.py); throttle.ThrottledTransfer, which holds file transfers to the bandwidth limits,
sits right above it for the same reason.
A PROXY protocol header that no load balancer sent is refused before the handshake (proxied.py).
Its failed handshakes are counted for the metrics like the control channel's (tls.HandshakeFailureCount).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from OpenSSL import SSL
from pyftpdlib.exceptions import _FileReadWriteError
from pyftpdlib.handlers import TLS_DTPHandler
from pyftpdlib.handlers.ftp.producers import FileProducer
from pyftpdlib.log import logger as ftp_logger

from ftpsd.proxied import ForgedHeaderRefusal
from ftpsd.sessions import withhold_tickets
from ftpsd.throttle import ThrottledTransfer
from ftpsd.tls import HandshakeFailureCount, write_available
from ftpsd.uploads import AtomicUploadDTP

logger = logging.getLogger("ftpsd")


class FtpsDataHandler(
    ForgedHeaderRefusal, HandshakeFailureCount, TLS_DTPHandler, ThrottledTransfer, AtomicUploadDTP
):
    """TLS data channel that insists on resuming a session of its user's control connections."""

    # Downloads: bigger file reads and send buffers mean fewer loop iterations per megabyte.
    ac_out_buffer_size = 262144
    # Off the loop, moving no data, until the login that issued the resumed session is decided.
    _awaiting_session_owner = False

    def secure_connection(self, ssl_context: SSL.Context) -> None:
        super().secure_connection(ssl_context)
        if isinstance(self.socket, SSL.Connection):
            withhold_tickets(self.socket)

    def push_with_producer(self, producer: Any) -> None:  # noqa: ANN401 - pyftpdlib producer
        if isinstance(producer, FileProducer):
            producer.buffer_size = self.ac_out_buffer_size
        super().push_with_producer(producer)

    def initiate_send(self) -> None:
        """Hold back data until our handshake check has run.

        pyftpdlib pushes a download into the channel right after accept; SSL_write would then
        complete the handshake implicitly and handle_ssl_established (the session check) would never
        be called. The pending WRITE interest makes the loop call us again after the handshake.
        """
        if self._ssl_accepting or self._awaiting_session_owner:
            return
        super().initiate_send()

    def send(self, data: bytes) -> int:
        """Write as many TLS records of data as the socket takes now (see tls.write_available).

        An empty buffer (empty listing) is not written at all: OpenSSL reports SSL_write() of zero
        bytes as an EOF, which would turn a successful empty NLST into "426 aborted".
        """
        if not data:
            return 0
        if not isinstance(self.socket, SSL.Connection):  # not reachable while PROT P is enforced
            return int(super().send(data))
        sent, want_read, peer_closed = write_available(self.socket, memoryview(data))
        self.tot_bytes_sent += sent
        self._ssl_want_read = self._ssl_want_read or want_read
        if peer_closed:
            self.handle_close()
        return sent

    def modify_ioloop_events(self, events: int, logdebug: bool = False) -> None:
        """During the handshake wait only for what OpenSSL asked for.

        Otherwise the WRITE interest registered by a queued download makes epoll report the idle
        socket as writable on every iteration and the loop spins until the client's next flight.
        """
        if self._awaiting_session_owner:
            return  # pyftpdlib's TLS mixin would put the connection back on the loop after the handshake
        if self._ssl_accepting:
            events = self.ioloop.WRITE if self._ssl_want_write else self.ioloop.READ
        super().modify_ioloop_events(events, logdebug)

    def handle_error(self) -> None:
        """A failed write of an upload gets its reply from the upload code (uploads.py says why here)."""
        error = sys.exc_info()[1]
        if not (self.receive and isinstance(error, _FileReadWriteError)):
            super().handle_error()
            return
        self.discard_failed_write(error)

    def handle_ssl_established(self) -> None:
        self._check_session(wait=True)

    def _check_session(self, wait: bool) -> None:
        cmd = self.cmd_channel
        verdict = cmd.tls_sessions.may_resume(self.socket, cmd, wait) if cmd.require_session_reuse else True
        if verdict is not True and verdict is not False:
            # The session came from a connection whose login is being checked: wait for its verdict.
            self._awaiting_session_owner = True
            self.del_channel()
            verdict.after_verdict(self._session_owner_decided)
            return
        if not verdict:
            cmd.log(
                "data connection refused: no TLS session of this user's control connections resumed",
                logfun=logger.warning,
            )
            self._resp = (
                "522 Data connection must resume the TLS session of a control connection of this login.",
                ftp_logger.warning,
            )
            self.transfer_finished = False
            self._error = True  # skip a TLS shutdown exchange with a client we do not trust
            self.close()
            return
        # The handshake may finish in its first step (client's whole flight already there); the
        # mixin then restores nothing, so re-arm the events the queued transfer is waiting for.
        # (This also puts a connection back on the loop after a wait for a login verdict.)
        self.modify_ioloop_events(self._wanted_io_events)

    def refuse_forged_header(self) -> None:
        self.cmd_channel.log(
            "data connection refused: it sent a PROXY protocol header but is not a load balancer "
            "(network.proxy_protocol_from)",
            logfun=logger.warning,
        )
        self._resp = ("425 Data connection refused: it began with a PROXY protocol header.", ftp_logger.info)
        self.transfer_finished = False
        self._error = True  # no TLS shutdown exchange: there is no TLS session
        self.close()

    def _session_owner_decided(self) -> None:
        self._awaiting_session_owner = False
        if not self._closed:
            self._check_session(wait=False)
