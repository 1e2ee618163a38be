"""TLS policy without a server: Mozilla intermediate 6.0 suites and groups, the renewal-window warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from ftpsd.certexpiry import days_left, warn_if_due
from ftpsd.config import TlsSettings
from ftpsd.tls import TlsMaterial, TlsSetupError, load_material, offered_groups, post_quantum_supported
from OpenSSL import SSL
from selfsigned import write_self_signed


def _material(tmp_path: Path, valid_days: int, **settings: object) -> TlsMaterial:
    cert, key = write_self_signed(tmp_path, "srv", valid_days=valid_days)
    return load_material(TlsSettings(str(cert), str(key), **settings))  # type: ignore[arg-type]


def test_default_tls12_suites_are_ecdhe_only(tmp_path: Path) -> None:
    conn = SSL.Connection(_material(tmp_path, 10).new_context(), None)
    tls12 = [name for name in conn.get_cipher_list() if not name.startswith("TLS_")]
    assert tls12, "no TLS 1.2 suite left"
    assert all(name.startswith("ECDHE-") for name in tls12), tls12


def test_post_quantum_group_first_where_supported() -> None:
    # The OpenSSL bundled with the pinned cryptography wheel has ML-KEM; the fallback is for older ones.
    assert post_quantum_supported()
    assert offered_groups(TlsSettings("/c", "/k").groups).split(":")[0] == "X25519MLKEM768"


def test_unknown_group_still_fails(tmp_path: Path) -> None:
    with pytest.raises(TlsSetupError, match=r"^tls\.groups: unknown group"):
        _material(tmp_path, 10, groups="X25519MLKEM768:X25519:secp256k9")


def test_renewal_window_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    due = _material(tmp_path / "a", 12, renewal_warning_days=30)
    fresh = _material(tmp_path / "b", 90, renewal_warning_days=30)
    assert days_left(due) in (11, 12)
    with caplog.at_level(logging.WARNING, logger="ftpsd"):
        warn_if_due(fresh)
        assert not caplog.records
        warn_if_due(due)
    assert len(caplog.records) == 1
    assert f"expires in {days_left(due)} days" in caplog.text and "renewal window 30 days" in caplog.text


def test_expired_certificate_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ftpsd"):
        warn_if_due(_material(tmp_path, -2))
    assert "has expired" in caplog.text
