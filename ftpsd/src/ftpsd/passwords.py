"""Password hashes in self-describing strings: argon2id for new hashes, scrypt still verified.

Formats (salt and hash in standard base64 without padding):

* ``$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>``, the PHC string that argon2-cffi and
  the reference implementation write, so hashes made elsewhere verify here and the other way round;
* ``$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<hash>``, the format of earlier ftpsd versions, kept so
  that configs written before the switch keep working until the role rewrites them.

The cost parameters live in the string so they can be raised later without invalidating existing
hashes: verification always uses the parameters stored with the hash.

Why argon2id at m=19 MiB, t=2, p=1: it is the first choice and the first parameter set of OWASP's
Password Storage Cheat Sheet, and its memory is what decides how a login flood behaves. Hashing runs
in a few worker threads (offload.Offloader, at most 4), so a flood of 300 logins queues there and needs
at most workers x 19 MiB at any moment; OWASP's scrypt minimum (N=2^17, r=8) needs 128 MiB per
running hash and about 0.5 s of CPU here against 0.03 s for this argon2id, for the same resistance.
Repeat logins skip the KDF altogether (logincache.py).

Parameters read from a config are bounded so that a hostile or mistyped hash can never make the
server allocate more than MAX_MEMORY or spend minutes in one login.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, replace

from argon2.low_level import Type, hash_secret_raw

# OWASP Password Storage Cheat Sheet, argon2id: "m=19456 (19 MiB), t=2, p=1".
DEFAULT_MEMORY_KIB = 19456
DEFAULT_TIME_COST = 2
DEFAULT_PARALLELISM = 1
ARGON2_VERSION = 19
SALT_BYTES = 16
HASH_BYTES = 32
# The most one verification may allocate (hashlib.scrypt refuses to run above maxmem; scrypt needs
# 128 * r * N bytes plus a little slack).
MAX_MEMORY = 64 * 1024 * 1024
MAX_TIME_COST = 10

_B64 = r"[A-Za-z0-9+/]+"
_SCRYPT_RE = re.compile(
    rf"^\$scrypt\$ln=(?P<ln>\d{{1,2}}),r=(?P<r>\d{{1,2}}),p=(?P<p>\d{{1,2}})\$(?P<salt>{_B64})\$(?P<hash>{_B64})$"
)
_ARGON2_RE = re.compile(
    rf"^\$argon2id\$v=(?P<v>\d{{1,3}})\$m=(?P<m>\d{{1,9}}),t=(?P<t>\d{{1,3}}),p=(?P<p>\d{{1,3}})"
    rf"\$(?P<salt>{_B64})\$(?P<hash>{_B64})$"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _salt_and_digest(salt: str, digest: str) -> tuple[bytes, bytes]:
    try:
        raw_salt, raw_digest = _unb64(salt), _unb64(digest)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"bad base64: {err}") from err
    if len(raw_salt) < 8 or len(raw_digest) < 16:
        raise ValueError("salt or hash too short")
    return raw_salt, raw_digest


@dataclass(frozen=True)
class Argon2Hash:
    """A parsed argon2id hash: cost parameters, salt and derived key."""

    memory_kib: int
    time_cost: int
    parallelism: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """Render the PHC string stored in the config."""
        cost = f"m={self.memory_kib},t={self.time_cost},p={self.parallelism}"
        return f"$argon2id$v={ARGON2_VERSION}${cost}${_b64(self.salt)}${_b64(self.digest)}"

    def derive(self, password: str) -> bytes:
        """The key this hash's parameters derive from password (argon2-cffi releases the GIL)."""
        return hash_secret_raw(
            password.encode("utf-8"),
            self.salt,
            time_cost=self.time_cost,
            memory_cost=self.memory_kib,
            parallelism=self.parallelism,
            hash_len=len(self.digest),
            type=Type.ID,
            version=ARGON2_VERSION,
        )


@dataclass(frozen=True)
class ScryptHash:
    """A parsed scrypt hash (earlier ftpsd versions): cost parameters, salt and derived key."""

    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """Render the canonical string form stored in the config."""
        return f"$scrypt$ln={self.log2_n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def derive(self, password: str) -> bytes:
        """The key this hash's parameters derive from password (hashlib releases the GIL)."""
        return hashlib.scrypt(
            password.encode("utf-8"),
            salt=self.salt,
            n=1 << self.log2_n,
            r=self.r,
            p=self.p,
            maxmem=MAX_MEMORY,
            dklen=len(self.digest),
        )


def _parse_argon2(match: re.Match[str]) -> Argon2Hash:
    version, memory, time_cost, lanes = (int(match[k]) for k in ("v", "m", "t", "p"))
    if version != ARGON2_VERSION:
        raise ValueError(f"argon2 version v={version} unsupported (only v={ARGON2_VERSION})")
    if not 1 <= lanes <= 16 or not 1 <= time_cost <= MAX_TIME_COST:
        raise ValueError(f"p must be 1..16 and t 1..{MAX_TIME_COST}")
    if not 8 * lanes <= memory <= MAX_MEMORY // 1024:
        raise ValueError(f"m={memory} KiB out of range {8 * lanes}..{MAX_MEMORY // 1024}")
    return Argon2Hash(memory, time_cost, lanes, *_salt_and_digest(match["salt"], match["hash"]))


def _parse_scrypt(match: re.Match[str]) -> ScryptHash:
    log2_n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
    if not 10 <= log2_n <= 20:
        raise ValueError(f"ln={log2_n} out of range 10..20")
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("r must be 1..32 and p 1..16")
    if 128 * r * (1 << log2_n) > MAX_MEMORY - 1024 * 1024:
        raise ValueError(f"parameters need more than {MAX_MEMORY // (1024 * 1024)} MiB")
    return ScryptHash(log2_n, r, p, *_salt_and_digest(match["salt"], match["hash"]))


# glibc's mallopt parameter for the size from which malloc maps memory instead of using the heap.
_M_MMAP_THRESHOLD = -3
_MMAP_FROM = 1 << 20


def keep_kdf_memory_off_the_heap() -> None:
    """Have glibc map the KDF's large blocks, so that each goes back to the system after its hash.

    Without this, glibc raises its mmap threshold (up to 32 MiB) after the first mapped block is freed;
    from then on argon2id's 19 MiB blocks come from the worker threads' heaps and stay resident, about
    19 MiB per worker for the life of the process. A fixed threshold turns that raising off. Where
    the C library has no mallopt (musl), nothing changes.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_FROM)


def parse_hash(encoded: str) -> Argon2Hash | ScryptHash:
    """Parse and bound-check a hash string; raise ValueError with a human-readable reason.

    Bounds exist because the config is trusted only as far as its syntax: a typo such as m=1900000
    would otherwise make every login allocate gigabytes.
    """
    if match := _ARGON2_RE.match(encoded):
        return _parse_argon2(match)
    if match := _SCRYPT_RE.match(encoded):
        return _parse_scrypt(match)
    raise ValueError("not an ftpsd password hash ($argon2id$v=19$m=..,t=..,p=..$salt$hash)")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Hash a password with argon2id at the default cost; a given salt makes the result deterministic.

    The Ansible role passes a per-host-per-user salt so that re-running it does not rewrite the
    config (and restart the service) every time.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    if len(salt) < 8:
        raise ValueError("salt must be at least 8 bytes")
    params = Argon2Hash(DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST, DEFAULT_PARALLELISM, salt, bytes(HASH_BYTES))
    return replace(params, digest=params.derive(password)).encode()


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a stored hash in constant time; malformed hashes never match."""
    try:
        parsed = parse_hash(encoded)
    except ValueError:
        return False
    return hmac.compare_digest(parsed.derive(password), parsed.digest)


# Verified against for unknown user names so that a failed login costs the same time whether or not
# the name exists (no user enumeration through timing). The password behind it is irrelevant.
DUMMY_HASH = Argon2Hash(
    DEFAULT_MEMORY_KIB, DEFAULT_TIME_COST, DEFAULT_PARALLELISM, b"ftpsd-dummy-salt", bytes(HASH_BYTES)
).encode()
