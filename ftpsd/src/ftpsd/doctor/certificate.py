"""Reading the server certificate and explaining why a client would reject it.

OpenSSL stops at the first verification error, so a certificate that is self-signed, expired and
issued for another name is reported as only one of those. The doctor therefore also checks name and
dates itself from the certificate and lists every problem, so one fix round is enough.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

EXPIRY_WARNING_DAYS = 30

# OpenSSL X509_V_ERR_* codes a client meets with FTPS servers.
_NOT_YET_VALID, _EXPIRED = 9, 10
_SELF_SIGNED, _SELF_SIGNED_IN_CHAIN = 18, 19
_UNKNOWN_ISSUER = {2, 20, 21}
_NAME_MISMATCH = {62, 64}


@dataclass(frozen=True)
class CertificateInfo:
    subject: str
    issuer: str
    san: tuple[str, ...]  # "DNS:name" / "IP:address"
    not_before: datetime.datetime
    not_after: datetime.datetime
    sha256: str  # colon-separated upper-case hex, as `openssl x509 -fingerprint -sha256` prints it
    self_signed: bool

    def days_left(self, now: datetime.datetime) -> int:
        return (self.not_after - now).days

    def facts(self, now: datetime.datetime) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "san": list(self.san),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left(now),
            "sha256_fingerprint": self.sha256,
            "self_signed": self.self_signed,
        }


def read_certificate(der: bytes) -> CertificateInfo:
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san = tuple(
            [f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)]
            + [f"IP:{a}" for a in names.get_values_for_type(x509.IPAddress)]
        )
    except x509.ExtensionNotFound:
        san = ()
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        san=san,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        self_signed=cert.issuer == cert.subject,
    )


def _dns_match(pattern: str, name: str) -> bool:
    """RFC 6125 matching: exact, or a wildcard standing for exactly the left-most label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = name.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == name


def name_matches(host: str, san: tuple[str, ...]) -> bool:
    """Whether the name or IP the client used is in the SAN (the CN is ignored, as by modern clients)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return any(e.startswith("DNS:") and _dns_match(e[4:], host) for e in san)
    return any(e.startswith("IP:") and ipaddress.ip_address(e[3:]) == ip for e in san)


def problems(
    info: CertificateInfo, host: str, now: datetime.datetime, error: ssl.SSLCertVerificationError | None
) -> list[tuple[str, str]]:
    """Every (problem, fix) found: OpenSSL's verdict first, then name and dates checked here."""
    found: list[tuple[str, str]] = []
    code = error.verify_code if error is not None else 0
    if error is not None and code not in _NAME_MISMATCH | {_EXPIRED, _NOT_YET_VALID}:
        found.append(_trust_problem(code, error.verify_message))
    if (error is not None and code in _NAME_MISMATCH) or not name_matches(host, info.san):
        listed = ", ".join(info.san) or "none"
        found.append(
            (
                f"the certificate is not valid for {host} (subject alternative names: {listed})",
                f"connect with a name listed there, or reissue the certificate with {host} in its SAN "
                "(ftps_certificate role); clients ignore the CN",
            )
        )
    if now > info.not_after:
        days_ago = (now - info.not_after).days
        found.append(
            (
                f"the certificate expired on {info.not_after:%Y-%m-%d} ({days_ago} days ago)",
                "renew it: re-run the deployment (ftps_certificate role) or install a new certificate, "
                "then reload ftpsd",
            )
        )
    elif now < info.not_before:
        found.append(
            (
                f"the certificate is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC",
                "check the clocks of server and client (NTP)",
            )
        )
    if error is not None and not found:  # verification failed for a reason we could not pin down
        found.append(_trust_problem(code, error.verify_message))
    return found


def _trust_problem(code: int, message: str) -> tuple[str, str]:
    if code == _SELF_SIGNED:
        return (
            "the certificate is self-signed and not trusted by this client",
            "pass --ca with the server's certificate (copied over a trusted channel, e.g. "
            "/etc/ftpsd/tls/server.crt) after comparing its SHA-256 fingerprint, or use a "
            "certificate issued by your CA",
        )
    if code == _SELF_SIGNED_IN_CHAIN:
        return (
            "the certificate chain ends in a CA this client does not trust",
            "pass --ca with your organisation's CA certificate",
        )
    if code in _UNKNOWN_ISSUER:
        return (
            f"the issuer of the certificate is unknown ({message})",
            "make the server send its intermediate certificates (server.crt = leaf, then chain), "
            "or pass --ca with the issuing CA",
        )
    return (f"certificate verification failed: {message}", "check the certificate chain on the server")
