"""TLS sessions of data connections: which sessions a data connection may resume, and no tickets on them.

The reuse rule (RFC 4217 section 10.2, vsftpd's ``require_ssl_reuse``): a data connection must resume a
TLS session that the server issued on a control connection, so that whoever reaches a passive port first
cannot take over another client's transfer. The session may come from the data connection's own control
connection or from another control connection that is, at that moment, logged in as the same user from the
same address. Clients that keep one TLS session per host (rclone and Go's FTP library with more than one
connection) resume whichever control connection got the latest ticket. The threat model is in README.md
("TLS session reuse"): someone who can resume such a session already holds that user's password and
address, so the relaxation gives nothing away that a login of their own would not.

How it is enforced:

* one TLS context per client address (``ContextsByAddress``), shared by that address's control and data
  connections, so their tickets and cached sessions can be resumed among them and nowhere else (OpenSSL
  refuses sessions of another context: other ticket keys, other session id context);
* every session issued on a control connection is recorded with its connection (``SessionOwners``), by a
  SHA-256 of its master secret (a TLS 1.3 ticket's PSK, a TLS 1.2 session's master secret), which a
  resumption carries over unchanged; the info callback sees every ticket as it is written;
* a data connection's handshake is accepted only if it resumed a recorded session whose control connection
  passes the rule above (``SessionOwners.may_resume``); if that connection has not finished logging in,
  the data connection waits off the loop for its verdict and is judged then.

Data connections are sent no session ticket (``withhold_tickets``): nothing resumes from them, and a
TLS 1.3 NewSessionTicket that the client does not read before it closes (Go's TLS during an upload) makes
its kernel answer the close with a TCP reset that destroys the client's close_notify (upload discarded,
426). Control connections keep their tickets: data connections resume from those.
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from ftpsd.tls import TlsMaterial, session_reused

# App data of a server connection that must not send session tickets (see withhold_tickets).
_NO_TICKETS = "ftpsd: no session tickets"
_RECORD_AT = SSL.SSL_CB_LOOP | SSL.SSL_CB_HANDSHAKE_DONE


def session_fingerprint(connection: SSL.Connection) -> bytes | None:
    """SHA-256 of the master secret of the connection's current session; None before there is one."""
    session = _lib.SSL_get_session(connection._ssl)
    if session == _ffi.NULL:
        return None
    size = _lib.SSL_SESSION_get_master_key(session, _ffi.NULL, 0)
    if not size:
        return None
    secret = _ffi.new("unsigned char[]", size)
    _lib.SSL_SESSION_get_master_key(session, secret, size)
    fingerprint = hashlib.sha256(_ffi.buffer(secret, size)).digest()
    _ffi.memmove(secret, bytes(size), size)  # do not leave the secret in freed Python memory
    return fingerprint


def withhold_tickets(connection: SSL.Connection) -> None:
    """Let this server connection send no session ticket; call it before the handshake starts.

    pyOpenSSL has no SSL_set_num_tickets(). OpenSSL decides on resumption first and then runs the
    server-name callback (with or without SNI); SSL_OP_NO_TICKET set inside that callback cancels the
    ticket it was about to send (final_server_name in OpenSSL's extensions_srvr.c) while the session
    already resumed stays resumed. Set earlier, the option would make OpenSSL ignore the control
    connection's stateless ticket and every resumption would fail.
    """
    connection.set_app_data(_NO_TICKETS)


def _drop_ticket_if_withheld(connection: SSL.Connection) -> None:
    if connection.get_app_data() == _NO_TICKETS:
        _lib.SSL_set_options(connection._ssl, SSL.OP_NO_TICKET)


class SessionOwners:
    """The sessions issued on each open control connection, and the rule for resuming them."""

    def __init__(self) -> None:
        self._owners: dict[bytes, list[Any]] = {}
        self._issued: dict[int, list[bytes]] = {}

    def issued_to(self, connection: SSL.Connection, owner: Any) -> None:  # noqa: ANN401 - control handler
        """Mark connection as a control connection of owner, whose sessions are recorded from now on."""
        connection.set_app_data(owner)

    def forget(self, owner: Any) -> None:  # noqa: ANN401 - control handler
        """The control connection closed: its sessions can no longer be resumed."""
        for fingerprint in self._issued.pop(id(owner), []):
            owners = self._owners.get(fingerprint, [])
            if owner in owners:
                owners.remove(owner)
            if not owners:
                self._owners.pop(fingerprint, None)

    def may_resume(self, data: SSL.Connection, control: Any, wait: bool = True) -> bool | Any:  # noqa: ANN401
        """Whether the data connection of control resumed a session it may use (module docstring).

        Returns True or False, or the control connection to wait for: one from the same address that has
        not finished logging in yet, as nobody or as the same user (a client that opens several
        connections at once resumes the session of whichever got the latest ticket). Ask again once that
        connection has a verdict (ordering.OrderedReplies.after_verdict), with wait=False: a data
        connection waits once, and waiting never lets a session through that the rule would refuse.
        """
        if not session_reused(data):
            return False
        owners = [
            owner
            for owner in self._owners.get(session_fingerprint(data) or b"", [])
            if not owner._closed and owner.remote_ip == control.remote_ip
        ]
        if any(
            owner is control or (owner.authenticated and owner.username == control.username)
            for owner in owners
        ):
            return True
        undecided = (o for o in owners if not o.authenticated and o.username in {"", control.username})
        return next(undecided, False) if wait else False

    def record_issued(self, connection: SSL.Connection, where: int, _ret: int) -> None:
        """Info callback: remember each session (every TLS 1.3 ticket) issued on a control connection."""
        owner = connection.get_app_data()
        if not where & _RECORD_AT or owner is None or owner == _NO_TICKETS:
            return
        fingerprint = session_fingerprint(connection)
        if fingerprint is None:
            return
        owners = self._owners.setdefault(fingerprint, [])
        if owner not in owners:
            owners.append(owner)
            self._issued.setdefault(id(owner), []).append(fingerprint)


class ContextsByAddress:
    """One TLS context per client address, alive while a connection from that address uses it."""

    def __init__(self, material: TlsMaterial, owners: SessionOwners) -> None:
        self.material = material
        self.owners = owners
        self._contexts: weakref.WeakValueDictionary[str, SSL.Context] = weakref.WeakValueDictionary()
        # For pyftpdlib, which asks the handler class for "the" context; no connection uses it. Its callbacks
        # make a process that cannot create them (cffi closures need write+execute memory, which systemd's
        # MemoryDenyWriteExecute= forbids) fail at start-up with MemoryError, not on every connection.
        self.template = self._with_callbacks(material.new_context())

    def for_address(self, address: str) -> SSL.Context:
        context = self._contexts.get(address)
        if context is None:
            context = self._with_callbacks(self.material.new_context())
            self._contexts[address] = context
        return context

    def _with_callbacks(self, context: SSL.Context) -> SSL.Context:
        context.set_tlsext_servername_callback(_drop_ticket_if_withheld)
        context.set_info_callback(self.owners.record_issued)
        return context
