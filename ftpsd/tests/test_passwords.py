"""Unit tests for the password hash formats: argon2id for new hashes, scrypt hashes still verified."""

import base64
import hashlib
import subprocess
import sys

import argon2
import pytest
from ftpsd.passwords import (
    DEFAULT_MEMORY_KIB,
    DEFAULT_PARALLELISM,
    DEFAULT_TIME_COST,
    DUMMY_HASH,
    Argon2Hash,
    ScryptHash,
    hash_password,
    parse_hash,
    verify_password,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def test_roundtrip_and_parameters_encoded() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    parsed = parse_hash(encoded)
    assert isinstance(parsed, Argon2Hash)
    assert (parsed.memory_kib, parsed.time_cost, parsed.parallelism) == (19456, 2, 1)
    assert len(parsed.salt) == 16
    assert len(parsed.digest) == 32
    assert verify_password("correct horse", encoded)


def test_defaults_at_least_owasp_minimum() -> None:
    """OWASP's argon2id minimum is m=19 MiB with t=2, p=1 (or more memory with fewer passes)."""
    assert DEFAULT_MEMORY_KIB >= 19456
    assert DEFAULT_TIME_COST >= 2
    assert DEFAULT_PARALLELISM == 1


def test_wrong_password_is_false() -> None:
    assert not verify_password("wrong", hash_password("right"))


def test_random_salt_by_default_deterministic_with_salt() -> None:
    assert hash_password("pw") != hash_password("pw")
    assert hash_password("pw", salt=b"0123456789abcdef") == hash_password("pw", salt=b"0123456789abcdef")


def test_interoperates_with_argon2_cffi() -> None:
    """The PHC strings are the reference format: argon2-cffi reads ours, we read argon2-cffi's."""
    ours = hash_password("pw", salt=b"0123456789abcdef")
    assert argon2.PasswordHasher().verify(ours, "pw")
    theirs = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=2).hash("pw")
    assert verify_password("pw", theirs)
    assert not verify_password("pW", theirs)


def test_tampered_hash_is_false() -> None:
    encoded = hash_password("pw")
    head, digest = encoded.rsplit("$", 1)
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify_password("pw", f"{head}${flipped}")
    # Changing a cost parameter changes the derived key too.
    assert not verify_password("pw", encoded.replace("t=2", "t=3"))
    assert not verify_password("pw", encoded.replace("p=1", "p=2"))


def test_dummy_hash_is_valid_and_matches_nothing() -> None:
    assert isinstance(parse_hash(DUMMY_HASH), Argon2Hash)
    assert not verify_password("", DUMMY_HASH)
    assert not verify_password("ftpsd-dummy-salt", DUMMY_HASH)


SALT, DIGEST = b64(b"saltsaltsalt1234"), b64(b"h" * 32)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("plain-password", "not an ftpsd password hash"),
        ("$scrypt$ln=15,r=8,p=1$c2FsdA$", "not an ftpsd password hash"),
        ("$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "ln=30 out of range"),
        ("$scrypt$ln=16,r=16,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "more than 64 MiB"),
        ("$pbkdf2$whatever", "not an ftpsd password hash"),
        (f"$argon2id$v=19$m=1900000,t=2,p=1${SALT}${DIGEST}", "m=1900000 KiB out of range"),
        (f"$argon2id$v=19$m=19456,t=11,p=1${SALT}${DIGEST}", "t 1..10"),
        (f"$argon2id$v=19$m=19456,t=2,p=17${SALT}${DIGEST}", "p must be 1..16"),
        (f"$argon2id$v=19$m=4,t=2,p=1${SALT}${DIGEST}", "m=4 KiB out of range"),
        (f"$argon2id$v=16$m=19456,t=2,p=1${SALT}${DIGEST}", "version v=16 unsupported"),
        (f"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${DIGEST}", "salt or hash too short"),
        (f"$argon2i$v=19$m=19456,t=2,p=1${SALT}${DIGEST}", "not an ftpsd password hash"),
        (f"$argon2id$v=19$m=19456,t=2,p=1${SALT}$A", "bad base64"),
    ],
)
def test_malformed_or_too_expensive_hashes_rejected(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_hash(bad)
    assert not verify_password("pw", bad)


def test_scrypt_hashes_of_earlier_versions_still_verify() -> None:
    """The role's hashes before argon2id (scrypt N=2^15, r=8, p=1) keep working until it rewrites them."""
    salt = b"saltsaltsalt1234"
    key = hashlib.scrypt(b"pw", salt=salt, n=1 << 15, r=8, p=1, maxmem=64 << 20, dklen=32)
    encoded = f"$scrypt$ln=15,r=8,p=1${b64(salt)}${b64(key)}"
    assert parse_hash(encoded) == ScryptHash(15, 8, 1, salt, key)
    assert parse_hash(encoded).encode() == encoded
    assert verify_password("pw", encoded)
    assert not verify_password("pw ", encoded)
    # Hashes carry their own cost, so other parameters verify as well.
    cheap = hashlib.scrypt(b"pw", salt=salt, n=1 << 12, r=8, p=1, dklen=32)
    assert verify_password("pw", f"$scrypt$ln=12,r=8,p=1${b64(salt)}${b64(cheap)}")


_RSS_AFTER_HASHING = """
import sys
from concurrent.futures import ThreadPoolExecutor
from ftpsd import passwords

def rss_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

if sys.argv[1] == "kept-off":
    passwords.keep_kdf_memory_off_the_heap()
before = rss_kib()
with ThreadPoolExecutor(4) as pool:  # as the server's workers: alive after their hashes
    list(pool.map(lambda _: passwords.hash_password("x"), range(12)))
    print(rss_kib() - before)
"""


@pytest.mark.parametrize(("mode", "resident"), [("kept-off", False), ("default", True)])
def test_kdf_memory_goes_back_to_the_system(mode: str, resident: bool) -> None:
    """With keep_kdf_memory_off_the_heap, 4 worker threads that hashed keep no 19 MiB blocks each.

    The default case shows what the function prevents (glibc's heaps keep the blocks), so the check
    cannot pass by accident.
    """
    run = subprocess.run(
        [sys.executable, "-c", _RSS_AFTER_HASHING, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    grown_mib = int(run.stdout) / 1024
    assert (grown_mib > 30) is resident, f"{mode}: RSS grew by {grown_mib:.1f} MiB"
