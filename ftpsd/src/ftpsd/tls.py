"""TLS context building (hardened settings, a fresh context on demand), record-level I/O, failed handshakes.

Why fresh contexts: pyftpdlib shares a single context between all clients, so client B could open its
data connection by resuming client A's TLS session and pass any "session reused?" check. Each context
gets its own random session id context and ticket keys; OpenSSL refuses to resume a session (cached or
ticket) created under another one. sessions.ContextsByAddress gives each client address its own context
and decides which of that context's sessions a data connection may resume. The certificate and key are
parsed once per (re)load and shared by all those contexts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib
from pyftpdlib.ioloop import _ERRNOS_DISCONNECTED

from ftpsd.config import POST_QUANTUM_GROUP, TlsSettings

if TYPE_CHECKING:
    from ftpsd.metrics import Metrics

_MIN_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}
# No compression (CRIME), no renegotiation (client-initiated renegotiation DoS); server cipher
# preference deliberately off as in Mozilla's intermediate profile (every offered suite is strong).
_OPTIONS = SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
_MAX_RECORD = 16384  # largest TLS plaintext record
# OpenSSL's reason strings (and pyOpenSSL's "Unexpected EOF") by the failure reason they count as; the
# first match wins, anything else is "other". Client alerts about our certificate ("unknown ca", "bad
# certificate") count as "certificate": a client that does not trust the chain, or a wrong certificate.
_HANDSHAKE_FAILURES = (
    (
        "protocol_version",
        ("unsupported protocol", "wrong version number", "protocol version", "version too low"),
    ),
    ("no_shared_cipher", ("no shared cipher", "no shared group", "no suitable")),
    ("certificate", ("certificate", "unknown ca")),
    ("eof", ("unexpected eof",)),
)


class TlsSetupError(ValueError):
    """The certificate, key or TLS parameters cannot be used; the message says which."""


@dataclass(frozen=True)
class TlsMaterial:
    """Parsed certificate chain and key plus the settings to apply to every context."""

    settings: TlsSettings
    leaf: crypto.X509
    chain: tuple[crypto.X509, ...]
    key: crypto.PKey

    def new_context(self) -> SSL.Context:
        """A fresh server context with its own session id context (see module docstring)."""
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_options(_OPTIONS)
        ctx.set_min_proto_version(_MIN_VERSIONS[self.settings.min_version])
        try:
            ctx.set_cipher_list(self.settings.ciphers.encode("ascii"))
        except (SSL.Error, UnicodeEncodeError) as err:
            raise TlsSetupError(f"tls.ciphers: no usable cipher in {self.settings.ciphers!r}") from err
        if not _set_groups(ctx, offered_groups(self.settings.groups)):
            raise TlsSetupError(f"tls.groups: unknown group in {self.settings.groups!r}")
        ctx.use_certificate(self.leaf)
        for extra in self.chain:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(self.key)
        ctx.set_session_id(os.urandom(16))
        return ctx


def handshake_failure_reason(error: BaseException | None) -> str:
    """The reason label (metrics.HANDSHAKE_FAILURES) of a failed handshake; None is a peer that went away."""
    if error is None:
        return "eof"
    text = str(error).lower()
    return next((reason for reason, marks in _HANDSHAKE_FAILURES if any(m in text for m in marks)), "other")


class HandshakeFailureCount:
    """Counts each failed TLS handshake of a connection once (ftpsd_tls_handshake_failures).

    A mixin for the control and the data handler, before pyftpdlib's TLS handlers in their bases.
    pyftpdlib's SSLConnectionMixin swallows the error: an SSL.Error reaches handle_failed_ssl_handshake
    while it is being handled (so sys.exc_info() has it), a peer that closes mid-handshake is only
    closed. Both leave the connection closed and not established after the handshake step, which is
    what is counted; a socket error it re-raises to handle_error is counted as it passes.
    """

    metrics: Metrics  # set by server.Server._apply
    _handshake_error: BaseException | None = None

    def handle_failed_ssl_handshake(self) -> None:
        self._handshake_error = sys.exc_info()[1]
        super().handle_failed_ssl_handshake()

    def _do_ssl_handshake(self) -> None:
        try:
            super()._do_ssl_handshake()
        except SSL.Error as err:
            self.metrics.handshake_failed(handshake_failure_reason(err))
            raise
        if self._closed and not self._ssl_established:
            self.metrics.handshake_failed(handshake_failure_reason(self._handshake_error))


def _set_groups(ctx: SSL.Context, groups: str) -> bool:
    """Set the key exchange groups (no public pyOpenSSL call for a list); False if one is unknown."""
    if _lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode("ascii", "replace")) == 1:
        return True
    _lib.ERR_clear_error()
    return False


def post_quantum_supported() -> bool:
    """Whether the OpenSSL linked here knows the hybrid post-quantum group (OpenSSL 3.5 and later)."""
    return _set_groups(SSL.Context(SSL.TLS_SERVER_METHOD), POST_QUANTUM_GROUP)


def offered_groups(groups: str) -> str:
    """The configured groups minus the post-quantum one where the TLS library lacks it.

    Only that group is dropped: it is in the default list on purpose, and an OpenSSL older than 3.5
    must still start with the classical groups. Any other unknown name stays and fails as a typo.
    """
    names = groups.split(":")
    if POST_QUANTUM_GROUP in names and not post_quantum_supported():
        names = [name for name in names if name != POST_QUANTUM_GROUP]
    return ":".join(names)


def negotiated_group(connection: SSL.Connection) -> str:
    """Name of the key exchange group of an established connection ("" if none), for logs and tests."""
    name = _lib.SSL_get0_group_name(connection._ssl)
    return _ffi.string(name).decode("ascii") if name != _ffi.NULL else ""


def session_reused(connection: SSL.Connection) -> bool:
    """Whether the handshake on this connection resumed an earlier session (no public pyOpenSSL API)."""
    return bool(_lib.SSL_session_reused(connection._ssl))


def release_idle_buffers(connection: SSL.Connection) -> None:
    """Let OpenSSL free this connection's 16 KiB record buffers whenever they are empty.

    Meant for control connections, which are idle nearly all the time: about 15 KiB less per idle
    session (measured). Not for data connections, where it would mean an alloc/free per record.
    """
    _lib.SSL_set_mode(connection._ssl, _lib.SSL_MODE_RELEASE_BUFFERS)


def read_available(connection: SSL.Connection, buffer: memoryview) -> tuple[int, bool]:
    """Read the TLS records already received into buffer; return (bytes read, peer closed).

    SSL_read straight into the caller's buffer: pyOpenSSL's recv() allocates a new buffer and
    copies the data out of it for every record. "Peer closed" covers both a TLS close_notify and
    a bare TCP EOF or reset; SSL_get_shutdown() tells them apart afterwards.
    """
    filled = 0
    while len(buffer) - filled >= _MAX_RECORD:
        space = buffer[filled:]
        result = _lib.SSL_read(connection._ssl, _ffi.from_buffer(space, require_writable=True), len(space))
        try:
            connection._raise_ssl_error(connection._ssl, result)
        except SSL.WantReadError:
            return filled, False
        except SSL.ZeroReturnError:
            return filled, True
        except SSL.SysCallError as err:
            if err.args[0] in _ERRNOS_DISCONNECTED or err.args[1] == "Unexpected EOF":
                return filled, True
            raise
        filled += result
    return filled, False


def write_available(connection: SSL.Connection, data: memoryview) -> tuple[int, bool, bool]:
    """Write as much of data as the socket takes now; return (bytes written, want read, peer closed).

    pyOpenSSL's send() goes through several wrapper layers per call, and OpenSSL returns after every
    16 KiB record (partial-write mode), so the loop runs here, without copies of the data.
    """
    sent = 0
    while sent < len(data):
        rest = data[sent:]
        result = _lib.SSL_write(connection._ssl, _ffi.from_buffer(rest), len(rest))
        try:
            connection._raise_ssl_error(connection._ssl, result)
        except SSL.WantWriteError:
            break
        except SSL.WantReadError:
            return sent, True, False
        except SSL.ZeroReturnError:
            return sent, False, True
        except SSL.SysCallError as err:
            if err.args[0] in _ERRNOS_DISCONNECTED or err.args[1] == "Unexpected EOF":
                return sent, False, True
            raise
        sent += result
    return sent, False, False


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise TlsSetupError(f"{key}: cannot read {path}: {err.strerror}") from err


def load_material(settings: TlsSettings) -> TlsMaterial:
    """Load and cross-check certificate chain and key, then build one context to prove they work."""
    cert_pem = _read(settings.certificate, "tls.certificate")
    key_pem = _read(settings.private_key, "tls.private_key")
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as err:
        raise TlsSetupError(f"tls.certificate: no PEM certificate in {settings.certificate}") from err
    try:
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise TlsSetupError(
            f"tls.private_key: no unencrypted PEM private key in {settings.private_key}"
        ) from err
    leaf, *chain = (crypto.X509.from_cryptography(c) for c in certs)
    key = crypto.PKey.from_cryptography_key(private_key)  # type: ignore[arg-type]
    material = TlsMaterial(settings, leaf, tuple(chain), key)
    try:
        material.new_context().check_privatekey()  # use_privatekey() already refuses a foreign key
    except SSL.Error as err:
        raise TlsSetupError(
            f"tls.private_key: {settings.private_key} does not match the certificate {settings.certificate}"
        ) from err
    return material
