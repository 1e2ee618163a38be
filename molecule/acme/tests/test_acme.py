"""ftps_certificate_mode: acme against Pebble and BIND 9 on the lab: what converge issued, what the server
serves, and that nothing is due on a plain re-run."""

import ssl

import pytest
from conftest import (
    CERT,
    KEY,
    RENEW,
    SERVER,
    challenge_records,
    dns_address,
    ephemeral_dir,
    installed_chain,
    login,
    presented_certificate,
    run_playbook,
    variables,
)
from cryptography import x509


def test_certificate_carries_the_names_from_the_variables(server):
    leaf = installed_chain(server)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(
        variables()["ftps_certificate_subject_alt_names"]
    )
    assert names.get_values_for_type(x509.IPAddress) == []
    assert "Pebble Intermediate CA" in leaf.issuer.rfc4514_string()


def test_full_chain_is_installed_and_key_is_private(server):
    chain = installed_chain(server)
    assert len(chain) == 2
    assert chain[0].issuer == chain[1].subject
    key = server.file(KEY)
    assert (key.mode, key.user, key.group) == (0o600, "ftpsd", "ftpsd")
    assert not server.file(f"{KEY}.next").exists, "the staged key must be gone once swapped in"
    assert server.file(CERT).mode == 0o644


def test_account_key_on_the_controller_is_encrypted_and_private():
    """One account key per directory URL, named after it (ftps_certificate_acme_account_dir in molecule.yml;
    the ephemeral directory outlives a run, so keys of earlier labs' URLs may lie beside it)."""
    account_dir = ephemeral_dir() / "acme"
    key = account_dir / f"{dns_address()}_14000_dir.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert account_dir.stat().st_mode & 0o777 == 0o700
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in key.read_bytes()


@pytest.mark.parametrize("name", ["ftp.lab.test", "acme-srv.lab.test"])
def test_served_chain_verifies_against_pebble_root_by_name(server, pebble_root, name):
    ftp = login(pebble_root, name)
    try:
        assert presented_certificate(ftp) == installed_chain(server)[0]
        assert ftp.nlst() is not None  # a protected data connection verified the same way
    finally:
        ftp.quit()


def test_a_name_not_in_the_certificate_is_refused(pebble_root):
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"):
        login(pebble_root, "other.lab.test")


def test_challenge_records_are_gone():
    assert challenge_records() == []


def test_renew_playbook_with_nothing_due_changes_nothing(server):
    serial = installed_chain(server)[0].serial_number
    run = run_playbook("--limit", SERVER, playbook=RENEW)
    assert run.rc == 0, run.output
    assert run.changed() == {SERVER: 0}, run.output
    assert "not due (" in run.output, run.output
    assert installed_chain(server)[0].serial_number == serial
