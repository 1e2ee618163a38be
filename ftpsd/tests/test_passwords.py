"""Unit tests for the scrypt hash format."""

import base64
import hashlib

import pytest
from ftpsd.passwords import DEFAULT_LOG2_N, hash_password, parse_hash, verify_password


def test_roundtrip_and_parameters_encoded() -> None:
    encoded = hash_password("correct horse")
    assert encoded.startswith(f"$scrypt$ln={DEFAULT_LOG2_N},r=8,p=1$")
    parsed = parse_hash(encoded)
    assert (parsed.log2_n, parsed.r, parsed.p) == (DEFAULT_LOG2_N, 8, 1)
    assert len(parsed.salt) == 16
    assert verify_password("correct horse", encoded)


def test_wrong_password_is_false() -> None:
    assert not verify_password("wrong", hash_password("right"))


def test_random_salt_by_default_deterministic_with_salt() -> None:
    assert hash_password("pw") != hash_password("pw")
    assert hash_password("pw", salt=b"0123456789abcdef") == hash_password("pw", salt=b"0123456789abcdef")


def test_tampered_hash_is_false() -> None:
    encoded = hash_password("pw")
    head, digest = encoded.rsplit("$", 1)
    flipped = ("A" if digest[0] != "A" else "B") + digest[1:]
    assert not verify_password("pw", f"{head}${flipped}")
    # Changing a cost parameter changes the derived key too.
    assert not verify_password("pw", encoded.replace("p=1", "p=2"))


@pytest.mark.parametrize(
    "bad",
    [
        "plain-password",
        "$scrypt$ln=15,r=8,p=1$c2FsdA$",
        "$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$scrypt$ln=16,r=16,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        "$pbkdf2$whatever",
    ],
)
def test_malformed_or_too_expensive_hashes_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hash(bad)
    assert not verify_password("pw", bad)


def test_older_parameters_still_verify() -> None:
    """Hashes carry their own cost, so raising the default later keeps old hashes valid."""
    salt = b"saltsaltsalt1234"
    key = hashlib.scrypt(b"pw", salt=salt, n=1 << 12, r=8, p=1, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    assert verify_password("pw", f"$scrypt$ln=12,r=8,p=1${b64(salt)}${b64(key)}")
