"""The daily warning while the served certificate is inside its renewal window.

Why in the server's own log: that is where an operator (or a log shipper's alert) looks when clients
start failing, and it keeps warning every day until a renewal run replaces the certificate, even when
nobody reads the deployment report or runs ftps-doctor.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ftpsd.tls import TlsMaterial

logger = logging.getLogger("ftpsd")
CHECK_INTERVAL = 86400.0  # once a day


def not_after(material: TlsMaterial) -> datetime:
    """When the served leaf certificate expires (also the metrics' ftpsd_certificate_not_after...)."""
    return material.leaf.to_cryptography().not_valid_after_utc


def days_left(material: TlsMaterial, now: datetime | None = None) -> int:
    """Whole days until the served leaf certificate expires (negative once it has)."""
    return (not_after(material) - (now or datetime.now(UTC))).days


def warn_if_due(material: TlsMaterial) -> None:
    """Log a warning when the certificate expires within tls.renewal_warning_days."""
    left = days_left(material)
    window = material.settings.renewal_warning_days
    if left < 0:
        logger.warning("TLS certificate %s has expired; renew it now", material.settings.certificate)
    elif left <= window:
        logger.warning(
            "TLS certificate %s expires in %d days (renewal window %d days): "
            "run playbooks/renew-certificates.yml",
            material.settings.certificate,
            left,
            window,
        )
