"""ftps-doctor against the real ftpsd on loopback: a healthy server, then one real fault per test."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

pytest.register_assert_rewrite("doctor_fixtures")  # before the import below, so its asserts explain

from conftest import free_port  # noqa: E402
from doctor_fixtures import check, failure, statuses, step  # noqa: E402
from ftpsd.doctor import Options, diagnose  # noqa: E402

pytestmark = pytest.mark.live
pytest_plugins = ["doctor_fixtures"]

ALL_STEPS = [
    "connect",
    "plaintext",
    "tls",
    "certificate",
    "login",
    "protection",
    "pasv",
    "epsv",
    "session_reuse",
]


def test_healthy_server_passes_every_step_including_roundtrip(healthy):
    report = check(healthy, roundtrip=True)
    assert statuses(report) == {name: "PASS" for name in [*ALL_STEPS, "roundtrip"]}
    assert report.exit_code == 0
    tls = step(report, "tls")["facts"]
    assert tls["tls_version"] in {"TLSv1.2", "TLSv1.3"}
    cert = step(report, "certificate")["facts"]
    pem = x509.load_pem_x509_certificate(healthy.cert.read_bytes())
    assert cert["sha256_fingerprint"] == pem.fingerprint(hashes.SHA256()).hex(":").upper()
    assert cert["san"] == ["IP:127.0.0.1"]
    assert cert["verified"] is True
    assert 360 <= cert["days_left"] <= 365
    reuse = step(report, "session_reuse")["facts"]
    assert reuse["client_resumed"] is True
    assert reuse["server_requires_reuse"] is True
    roundtrip = step(report, "roundtrip")["facts"]
    assert not (healthy.shared / roundtrip["file"]).exists(), "the probe file must be deleted"


def test_implicit_port_passes(healthy):
    report = check(healthy, port=healthy.implicit_port, implicit=True)
    assert statuses(report) == {name: "PASS" for name in ALL_STEPS if name != "plaintext"}
    assert step(report, "tls")["facts"]["greeting"].startswith("220")


def test_without_user_only_connection_and_tls_are_checked(healthy):
    report = check(healthy, user=None)
    assert report.exit_code == 0
    assert statuses(report)["certificate"] == "PASS"
    assert statuses(report)["login"] == "SKIP"
    assert "no --user" in step(report, "login")["diagnosis"]


def test_wrong_password(healthy):
    report = check(healthy, password="not-the-password")
    login = failure(report, "login")
    assert "530 Authentication failed" in login["diagnosis"]
    assert "wrong password" in login["diagnosis"]
    assert "not-the-password" not in str(report.to_dict())
    assert statuses(report)["protection"] == "SKIP"


def test_unknown_user_is_reported_as_the_server_answers(healthy):
    report = check(healthy, user="nobody-here", password="whatever")
    login = failure(report, "login")
    assert "'nobody-here'" in login["diagnosis"]
    assert "unknown user" in login["diagnosis"]
    assert login["facts"]["reply"].startswith("530")


def test_banned_address_is_turned_away(start_server):
    setup = start_server(ban_after_failures=1)
    assert statuses(check(setup, password="wrong"))["login"] == "FAIL"
    report = check(setup)  # the right password, but this address is banned now
    connect = failure(report, "connect")
    assert connect["facts"]["greeting"].startswith("421")
    assert "turned the connection away" in connect["diagnosis"]
    assert "banned" in connect["hint"]


def test_explicit_client_on_the_implicit_port(healthy):
    report = check(healthy, port=healthy.implicit_port, timeout=2.0)
    connect = failure(report, "connect")
    assert "no greeting within 2s" in connect["diagnosis"]
    assert "--implicit" in connect["hint"]


def test_implicit_client_on_the_explicit_port(healthy):
    report = check(healthy, implicit=True)
    tls = failure(report, "tls")
    assert "plain text instead of TLS" in tls["diagnosis"]
    assert "drop --implicit" in tls["hint"]


def test_server_down_is_connection_refused():
    report = diagnose(Options(host="127.0.0.1", port=free_port(), timeout=5))  # nothing listens there
    connect = failure(report, "connect")
    assert "refused" in connect["diagnosis"]
    assert "systemctl status ftpsd" in connect["hint"]
    assert set(statuses(report).values()) == {"FAIL", "SKIP"}


def test_expired_certificate(start_server):
    setup = start_server(valid_days=-3)
    report = check(setup)
    cert = failure(report, "certificate")
    assert "expired on" in cert["diagnosis"]
    assert "3 days ago" in cert["diagnosis"]
    assert cert["facts"]["verify_error"] == "certificate has expired"
    assert cert["facts"]["days_left"] < 0
    # The password is not sent to a server whose certificate failed...
    assert statuses(report)["login"] == "SKIP"
    assert "password was not sent" in step(report, "login")["diagnosis"]
    # ...unless the technician insists; the failure stays in the verdict.
    insecure = check(setup, insecure=True)
    assert statuses(insecure)["login"] == "PASS"
    assert statuses(insecure)["session_reuse"] == "PASS"
    assert insecure.exit_code == 1


def test_certificate_close_to_expiry_warns(start_server):
    setup = start_server(valid_days=10)
    report = check(setup)
    cert = step(report, "certificate")
    assert cert["status"] == "WARN"
    assert "expires in 9 days" in cert["diagnosis"] or "expires in 10 days" in cert["diagnosis"]
    assert report.exit_code == 0


def test_self_signed_certificate_without_ca(healthy):
    report = check(healthy, ca_file=None)
    cert = failure(report, "certificate")
    assert "self-signed" in cert["diagnosis"]
    assert "--ca" in cert["hint"]
    assert cert["facts"]["trust_store"] == "system"
    # Facts are still read from the unverified handshake.
    assert cert["facts"]["sha256_fingerprint"].count(":") == 31


def test_name_not_in_certificate(healthy):
    report = check(healthy, host="localhost")  # resolves to the server, but the SAN has only the IP
    cert = failure(report, "certificate")
    assert "not valid for localhost" in cert["diagnosis"]
    assert "IP:127.0.0.1" in cert["diagnosis"]


def test_wrong_masquerade_address(start_server):
    setup = start_server(masquerade_address="127.0.0.9")  # nothing listens on that address
    report = check(setup, roundtrip=True)
    pasv = failure(report, "pasv")
    assert "announces 127.0.0.9" in pasv["diagnosis"]
    assert "masquerade address is wrong" in pasv["diagnosis"]
    assert "masquerade" in pasv["hint"]
    assert pasv["facts"]["reachable_on_control_address"] is True
    # EPSV carries no address, so it works: that is what points at the masquerade address.
    assert statuses(report)["epsv"] == "PASS"
    assert statuses(report)["roundtrip"] == "PASS"


def test_masquerade_checked_from_inside_the_nat(start_server):
    """The health gate's case: the controller reaches the server's inside address, clients use the
    public one. The announced address must equal it; data goes to the address connected to."""
    setup = start_server(masquerade_address="127.0.0.9")  # the "public" address: unreachable from here
    report = check(setup, roundtrip=True, masquerade="127.0.0.9")
    assert report.exit_code == 0, statuses(report)
    pasv = step(report, "pasv")
    assert pasv["status"] == "PASS"
    assert pasv["facts"]["announced_address"] == "127.0.0.9"
    assert statuses(report)["roundtrip"] == "PASS"


def test_masquerade_expected_but_another_address_announced(start_server):
    setup = start_server(masquerade_address="127.0.0.9")
    pasv = failure(check(setup, masquerade="127.0.0.10"), "pasv")
    assert "announces 127.0.0.9, not the public address 127.0.0.10" in pasv["diagnosis"]
    assert "to 127.0.0.10" in pasv["hint"]


def test_masquerade_expected_but_none_configured(healthy):
    pasv = failure(check(healthy, masquerade="127.0.0.10"), "pasv")
    assert f"announces {healthy.listen_address}, not the public address 127.0.0.10" in pasv["diagnosis"]


def test_upload_only_user_gets_an_empty_listing_so_the_data_channel_is_checked(healthy):
    report = check(healthy, user="dropbox")
    assert statuses(report)["login"] == "PASS"
    assert statuses(report)["pasv"] == "PASS"
    assert statuses(report)["session_reuse"] == "PASS"
    assert report.exit_code == 0


def test_roundtrip_is_not_attempted_by_a_user_who_may_not_list(healthy):
    before = {p.name for p in healthy.shared.iterdir()}
    report = check(healthy, user="dropbox", roundtrip=True)  # upload-only: the probe could not be deleted
    roundtrip = step(report, "roundtrip")
    assert roundtrip["status"] == "SKIP"
    assert "may not list" in roundtrip["diagnosis"]
    assert {p.name for p in healthy.shared.iterdir()} == before


def test_roundtrip_with_read_only_user_fails_at_upload(healthy):
    report = check(healthy, user="reader", roundtrip=True)
    assert statuses(report)["pasv"] == "PASS"
    roundtrip = failure(report, "roundtrip")
    assert roundtrip["diagnosis"].startswith("upload of ")
    assert "550" in roundtrip["diagnosis"]
    assert "full-rights user" in roundtrip["hint"]
    assert not (healthy.shared / roundtrip["facts"]["file"]).exists()
