"""Client TLS contexts and the meaning of handshake failures.

The verifying context is what a careful client uses: certificate chain and name checked against
--ca or the system store, TLS 1.2 at least. The unverified context exists only so that, after a
certificate failure, the doctor can still read the certificate and say what is wrong with it.
"""

from __future__ import annotations

import ssl


class CaFileError(ValueError):
    """--ca names a file that holds no usable certificate."""


def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            ctx.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as err:
            raise CaFileError(f"--ca {ca_file}: no PEM certificate could be loaded ({err})") from err
        # Lets --ca be the server's own certificate (pinning) even when it is not a self-signed CA.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    else:
        ctx.load_default_certs()
    return ctx


def unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_session(tls: ssl.SSLSocket) -> dict[str, object]:
    name, _, bits = tls.cipher() or ("", "", 0)
    return {"tls_version": tls.version(), "cipher": name, "cipher_bits": bits}


# (markers in OpenSSL's error text, diagnosis, hint); the first matching row wins.
_HANDSHAKE_ERRORS = (
    (
        ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "NO_PROTOCOLS"),
        "no common TLS version ({error}): the server offers nothing at TLS 1.2 or above",
        "enable TLS 1.2/1.3 on the server (ftpsd: tls.min_version)",
    ),
    (
        ("HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", "NO CIPHERS"),
        "no common cipher or group ({error})",
        "check tls.ciphers and tls.groups on the server (ftpsd default: Mozilla intermediate)",
    ),
    (
        ("UNEXPECTED EOF", "EOF OCCURRED", "CONNECTION RESET", "BROKEN PIPE"),
        "the server closed the connection during the TLS handshake ({error})",
        "the server log says why (journalctl -u ftpsd); a banned address or a connection limit "
        "also looks like this",
    ),
)


def explain_handshake_error(err: Exception, implicit: bool) -> tuple[str, str]:
    """Diagnosis and hint for a TLS handshake that failed for a reason other than the certificate."""
    text = str(err) or type(err).__name__
    upper = text.upper().replace("_", " ")
    if "WRONG VERSION NUMBER" in upper:
        if implicit:
            return (
                f"the server answered in plain text instead of TLS ({text}): this port speaks explicit FTPS",
                "drop --implicit (explicit FTPS: AUTH TLS on port 21), or use the implicit port (990)",
            )
        return (f"the server's reply is not TLS ({text})", "check that the port belongs to an FTPS server")
    if isinstance(err, TimeoutError):
        return (
            "the TLS handshake timed out: the server accepted TCP but never answered the handshake",
            "if this is an implicit FTPS port, pass --implicit; otherwise check the server log",
        )
    for markers, diagnosis, hint in _HANDSHAKE_ERRORS:
        if any(m.replace("_", " ") in upper for m in markers):
            return diagnosis.format(error=text), hint
    return (f"TLS handshake failed: {text}", "check the server log (journalctl -u ftpsd)")
