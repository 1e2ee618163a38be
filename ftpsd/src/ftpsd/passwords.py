"""scrypt password hashes in a self-describing, passlib-like string format.

Format: ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>`` where salt and hash are standard base64
without padding. The cost parameters live in the string so they can be raised later without
invalidating existing hashes: verification always uses the parameters stored with the hash.

Defaults (ln=15, r=8, p=1) need 128 * r * N = 32 MiB and about 0.1 s on one core of the reference
machine; parameters read from a config are bounded so that a hostile or mistyped hash can never make
the server allocate more than MAX_MEMORY.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# hashlib.scrypt refuses to run above maxmem; scrypt needs 128 * r * N bytes plus a little slack.
MAX_MEMORY = 64 * 1024 * 1024

_HASH_RE = re.compile(
    r"^\$scrypt\$ln=(?P<ln>\d{1,2}),r=(?P<r>\d{1,2}),p=(?P<p>\d{1,2})\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)$"
)


@dataclass(frozen=True)
class ScryptHash:
    """A parsed hash string: cost parameters, salt and derived key."""

    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """Render the canonical string form stored in the config."""
        return f"$scrypt$ln={self.log2_n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def parse_hash(encoded: str) -> ScryptHash:
    """Parse and bound-check a hash string; raise ValueError with a human-readable reason.

    Bounds exist because the config is trusted only as far as its syntax: a typo such as ln=25 would
    otherwise make every login allocate gigabytes.
    """
    match = _HASH_RE.match(encoded)
    if match is None:
        raise ValueError("not an ftpsd scrypt hash ($scrypt$ln=..,r=..,p=..$salt$hash)")
    log2_n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not 10 <= log2_n <= 20:
        raise ValueError(f"ln={log2_n} out of range 10..20")
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("r must be 1..32 and p 1..16")
    if 128 * r * (1 << log2_n) > MAX_MEMORY - 1024 * 1024:
        raise ValueError(f"parameters need more than {MAX_MEMORY // (1024 * 1024)} MiB")
    try:
        salt = _unb64(match["salt"])
        digest = _unb64(match["hash"])
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"bad base64: {err}") from err
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    return ScryptHash(log2_n, r, p, salt, digest)


def _derive(password: str, salt: bytes, cost: tuple[int, int, int], length: int) -> bytes:
    log2_n, r, p = cost
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=MAX_MEMORY, dklen=length
    )


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Hash a password with the default cost; a given salt makes the result deterministic.

    The Ansible role passes a per-host-per-user salt so that re-running it does not rewrite the
    config (and restart the service) every time.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    if len(salt) < 8:
        raise ValueError("salt must be at least 8 bytes")
    digest = _derive(password, salt, (DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P), HASH_BYTES)
    return ScryptHash(DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P, salt, digest).encode()


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a stored hash in constant time; malformed hashes never match."""
    try:
        parsed = parse_hash(encoded)
    except ValueError:
        return False
    candidate = _derive(password, parsed.salt, (parsed.log2_n, parsed.r, parsed.p), len(parsed.digest))
    return hmac.compare_digest(candidate, parsed.digest)


# Verified against for unknown user names so that a failed login costs the same time whether or not
# the name exists (no user enumeration through timing). The password behind it is irrelevant.
DUMMY_HASH = ScryptHash(
    DEFAULT_LOG2_N, DEFAULT_R, DEFAULT_P, b"ftpsd-dummy-salt", b"\0" * HASH_BYTES
).encode()
