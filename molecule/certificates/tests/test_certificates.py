"""The ftps_certificate role on real lab hosts: certificate contents, idempotence, rotation (renewal
window, changed settings, forced), reload of the service, trust through the CA, and validation."""

import datetime
import ipaddress
import json
import socket
import ssl

import pytest
from conftest import (
    PROBE_PORT,
    TLS_DIR,
    address,
    certificate,
    certificate_chain,
    ephemeral_dir,
    issue_short_lived,
    probe_pid,
    run_playbook,
    served_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

SUBJECT_FIELDS = {
    "ftps_certificate_country": NameOID.COUNTRY_NAME,
    "ftps_certificate_state_or_province": NameOID.STATE_OR_PROVINCE_NAME,
    "ftps_certificate_locality": NameOID.LOCALITY_NAME,
    "ftps_certificate_organization": NameOID.ORGANIZATION_NAME,
    "ftps_certificate_organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "ftps_certificate_email": NameOID.EMAIL_ADDRESS,
}
ISSUING_HOSTS = ["certs-self", "certs-ca"]


def expected_subject(variables: dict) -> dict:
    subject = {oid: variables[name] for name, oid in SUBJECT_FIELDS.items() if variables.get(name)}
    subject[NameOID.COMMON_NAME] = variables["ansible_host"]
    return subject


def expected_names(variables: dict, hostname: str, host) -> set:
    """The default names (ansible_host, the inventory name, the host's global IPv6 address) and the extras."""
    ipv6 = [ipaddress.ip_address(a) for a in host.interface("eth0").addresses if ":" in a]
    names = {x509.IPAddress(ipaddress.ip_address(variables["ansible_host"])), x509.DNSName(hostname)}
    names |= {x509.IPAddress(a) for a in ipv6 if not a.is_link_local}
    extra = variables.get("ftps_certificate_extra_subject_alt_names", [])
    return names | {x509.DNSName(name) for name in extra}


def alt_names(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def days_left(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).total_seconds() / 86400


def backups_of(host, name: str) -> list[str]:
    return host.check_output(f"find {TLS_DIR} -name '{name}.*~'").split()


# --- What the role makes -------------------------------------------------------------------------------


@pytest.mark.parametrize("hostname", ISSUING_HOSTS)
def test_subject_and_names_equal_the_variables(hostname, request):
    host = request.getfixturevalue({"certs-self": "self_host", "certs-ca": "ca_host"}[hostname])
    variables = host.ansible.get_variables()
    cert = certificate(host)
    assert {attribute.oid: attribute.value for attribute in cert.subject} == expected_subject(variables)
    assert alt_names(cert) == expected_names(variables, hostname, host)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_key_settings_follow_the_variables(self_host, ca_host):
    rsa_key = certificate(self_host).public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048
    ec_key = certificate(ca_host).public_key()
    assert isinstance(ec_key, ec.EllipticCurvePublicKey) and ec_key.curve.name == "secp256r1"


@pytest.mark.parametrize("fixture", ["self_host", "ca_host", "provided_host"])
def test_key_is_private_to_the_service_account(fixture, request):
    host = request.getfixturevalue(fixture)
    key = host.file(f"{TLS_DIR}/server.key")
    assert (key.mode, key.user, key.group) == (0o600, "ftpsd", "ftpsd")
    # The service account reads it (the probe runs as ftpsd); others cannot.
    assert host.run("runuser -u ftpsd -- cat /etc/ftpsd/tls/server.key").rc == 0
    assert host.run("runuser -u nobody -- cat /etc/ftpsd/tls/server.key").rc != 0


@pytest.mark.parametrize("fixture", ["self_host", "ca_host", "provided_host"])
def test_service_presents_the_certificate(fixture, request):
    host = request.getfixturevalue(fixture)
    assert served_certificate(host) == certificate(host)


def test_self_signed_certificate_verifies_as_its_own_trust_anchor(self_host, tmp_path):
    cafile = tmp_path / "pinned.crt"
    cafile.write_bytes(self_host.file(f"{TLS_DIR}/server.crt").content)
    handshake(self_host, cafile, address(self_host))


@pytest.mark.parametrize(("fixture", "anchor"), [("self_host", "pinned"), ("ca_host", "exported CA")])
def test_certificate_passes_strict_rfc5280_path_validation(fixture, anchor, request):
    """Stricter than OpenSSL: cryptography's verifier (which sslyze and Mozilla's profile check use) also
    demands the Authority Key Identifier, even of a self-signed end-entity certificate."""
    host = request.getfixturevalue(fixture)
    leaf = certificate(host)
    trusted = (
        leaf
        if anchor == "pinned"
        else x509.load_pem_x509_certificate((ephemeral_dir() / "pki" / "ca.crt").read_bytes())
    )
    verifier = (
        PolicyBuilder()
        .store(Store([trusted]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address(address(host))))
    )
    verifier.verify(leaf, [])


# --- Trust: internal CA and provided chain, with hostname checking on ---------------------------------


def handshake(host, cafile, server_hostname: str) -> None:
    context = ssl.create_default_context(cafile=str(cafile))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    with (
        socket.create_connection((address(host), PROBE_PORT), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        assert tls.recv(3) == b"ok\n"


def test_internal_ca_certificate_verifies_against_the_exported_ca(ca_host):
    cafile = ephemeral_dir() / "pki" / "ca.crt"
    handshake(ca_host, cafile, address(ca_host))
    handshake(ca_host, cafile, "certs-ca")


def test_internal_ca_does_not_vouch_for_other_names_or_hosts(ca_host, self_host):
    cafile = ephemeral_dir() / "pki" / "ca.crt"
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(ca_host, cafile, "other-host.example")
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed"):
        handshake(self_host, cafile, address(self_host))


def test_ca_key_is_encrypted_and_private():
    pki = ephemeral_dir() / "pki"
    assert pki.stat().st_mode & 0o777 == 0o700
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(TypeError, match="private key is encrypted"):
        serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)


def test_provided_certificate_is_installed_leaf_first_with_its_chain(provided_host):
    leaf, intermediate = certificate_chain(provided_host)
    assert leaf.issuer == intermediate.subject
    # Clients trusting only the root verify the server: the intermediate is sent along.
    handshake(provided_host, ephemeral_dir() / "provided" / "root.crt", address(provided_host))


# --- Rotation ------------------------------------------------------------------------------------------


def test_short_lived_certificate_is_rotated_by_a_plain_rerun(self_host):
    issued = issue_short_lived("certs-self")
    assert issued.rc == 0, issued.output
    short_lived = certificate(self_host)
    assert days_left(short_lived) < 10

    rerun = run_playbook("--limit", "certs-self")
    assert rerun.rc == 0, rerun.output
    renewed = certificate(self_host)
    assert renewed.serial_number != short_lived.serial_number
    assert days_left(renewed) >= 364  # the selfsigned default lifetime, 365 days
    assert served_certificate(self_host) == renewed

    again = run_playbook("--limit", "certs-self")
    assert again.changed() == {"certs-self": 0}, again.output


@pytest.mark.parametrize("fixture", ["self_host", "ca_host"])
def test_forced_rotation_changes_serial_and_key_and_keeps_dated_backups(fixture, request):
    host = request.getfixturevalue(fixture)
    name = host.backend.get_hostname()
    before, key_before, pid = certificate(host), host.file(f"{TLS_DIR}/server.key").content, probe_pid(host)

    rotated = run_playbook("--limit", name, "-e", "ftps_certificate_force_rotate=true")
    assert rotated.rc == 0, rotated.output
    after = certificate(host)
    assert after.serial_number != before.serial_number
    assert host.file(f"{TLS_DIR}/server.key").content != key_before
    assert after.subject == before.subject and alt_names(after) == alt_names(before)
    # Reloaded, not restarted: same process, and a new connection gets the new certificate.
    assert probe_pid(host) == pid
    assert served_certificate(host) == after
    # The replaced certificate and key are kept, named with the date of the rotation.
    backups = [certificate_chain(host, path)[0] for path in backups_of(host, "server.crt")]
    assert before.serial_number in {backup.serial_number for backup in backups}
    assert all(host.file(path).mode == 0o600 for path in backups_of(host, "server.key"))
    today = datetime.datetime.now().strftime("%Y-%m-%d")
    assert any(today in path for path in backups_of(host, "server.crt"))

    again = run_playbook("--limit", name)
    assert again.changed() == {name: 0}, again.output


def public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_in_service(host) -> bytes:
    key = serialization.load_pem_private_key(host.file(f"{TLS_DIR}/server.key").content, password=None)
    return public_bytes(key.public_key())


@pytest.mark.parametrize("fixture", ["self_host", "ca_host"])
def test_a_rotation_that_fails_on_the_way_keeps_a_matching_key_and_certificate(fixture, request):
    """The forced rotation's new certificate cannot be installed (server.crt is under a read-only bind mount
    on the host, so every write to it fails): the run fails, and the key in service is still the key of the
    certificate in service, so a restart of the server now would still work. The next run completes the
    rotation with the key staged by the failed one and leaves no stage behind."""
    host = request.getfixturevalue(fixture)
    name = host.backend.get_hostname()
    cert = f"{TLS_DIR}/server.crt"
    before = certificate(host)
    assert key_in_service(host) == public_bytes(before.public_key())
    host.check_output(f"mount --bind {cert} {cert} && mount -o remount,bind,ro {cert}")
    try:
        failed = run_playbook("--limit", name, "-e", "ftps_certificate_force_rotate=true")
    finally:
        host.check_output(f"umount {cert}")
    assert failed.rc != 0, failed.output
    assert certificate(host) == before
    assert key_in_service(host) == public_bytes(before.public_key())
    assert host.file(f"{TLS_DIR}/server.key.next").exists
    assert served_certificate(host) == before

    completed = run_playbook("--limit", name, "-e", "ftps_certificate_force_rotate=true")
    assert completed.rc == 0, completed.output
    after = certificate(host)
    assert after.serial_number != before.serial_number
    assert key_in_service(host) == public_bytes(after.public_key()) != public_bytes(before.public_key())
    assert not host.file(f"{TLS_DIR}/server.key.next").exists
    assert served_certificate(host) == after


@pytest.mark.parametrize(
    ("setting", "check"),
    [
        (
            "ftps_certificate_organizational_unit=fbt/ops",
            lambda cert: "OU=fbt/ops" in cert.subject.rfc4514_string(),
        ),
        (
            '{"ftps_certificate_extra_subject_alt_names": ["ftp.site-a.example", "198.51.100.7"]}',
            lambda cert: x509.IPAddress(ipaddress.ip_address("198.51.100.7")) in alt_names(cert),
        ),
        ("ftps_certificate_key_size=3072", lambda cert: cert.public_key().key_size == 3072),
    ],
    ids=["subject", "names", "key-size"],
)
def test_changed_settings_reissue_the_certificate(self_host, setting, check):
    before = certificate(self_host)
    changed = run_playbook("--limit", "certs-self", "-e", setting)
    assert changed.rc == 0, changed.output
    reissued = certificate(self_host)
    assert reissued.serial_number != before.serial_number and check(reissued)
    assert served_certificate(self_host) == reissued

    restored = run_playbook("--limit", "certs-self")
    assert restored.rc == 0, restored.output
    assert not check(certificate(self_host))


def test_check_mode_on_a_fresh_directory_changes_nothing(self_host, ca_host, provided_host):
    fresh = "/etc/ftpsd/tls-check"
    run = run_playbook(
        "--limit", "certificate_role", "--check", "--diff", "-e", f"ftps_certificate_dir={fresh}"
    )
    assert run.rc == 0, run.output
    for host in (self_host, ca_host, provided_host):
        assert not host.file(fresh).exists


def test_check_mode_on_converged_hosts_reports_no_change():
    run = run_playbook("--limit", "certificate_role", "--check", "--diff")
    assert run.rc == 0, run.output
    assert set(run.changed().values()) == {0}, run.output


# --- Bad input fails before any host is touched --------------------------------------------------------

UNTOUCHED_DIR = "/etc/ftpsd/tls-invalid"


@pytest.fixture
def untouched_hosts(self_host, ca_host, provided_host):
    hosts = (self_host, ca_host, provided_host)
    yield hosts
    # Should a test fail because the role ran after all, the next tests still start from a clean state.
    for host in hosts:
        host.run(f"rm -rf {UNTOUCHED_DIR}")


def assert_failed_before_touching(run, hosts, expected: str) -> None:
    assert run.rc != 0
    assert expected in run.output, run.output
    # The validation play needs no connection; the play that gathers facts and changes things never started.
    assert "Gathering Facts" not in run.output, run.output
    assert set(run.changed().values()) == {0}, run.output
    for host in hosts:
        assert not host.file(UNTOUCHED_DIR).exists


@pytest.mark.parametrize(
    ("hostname", "variables", "expected"),
    [
        (
            "certs-self",
            {"ftps_certificate_country": "86"},
            "ftps_certificate_country '86' is not an ISO 3166-1 alpha-2 country code: use 'CN'",
        ),
        (
            "certs-self",
            {"ftps_certificate_country": "China"},
            "ftps_certificate_country 'China' is not an ISO 3166-1 alpha-2 country code",
        ),
        (
            "certs-self",
            {"ftps_certificate_email": "ops@fbt"},
            "ftps_certificate_email 'ops@fbt' is not an e-mail address",
        ),
        (
            "certs-self",
            {"ftps_certificate_key_size": 1024},
            "key_size 1024 is too weak: RSA keys need at least 2048",
        ),
        (
            "certs-self",
            {"ftps_certificate_renew_before_days": 900},
            "less than ftps_certificate_valid_days (365)",
        ),
        (
            "certs-self",
            {"ftps_certificate_valid_days": 825},
            "ftps_certificate_valid_days (825) exceeds the 366 days of Mozilla's intermediate TLS profile",
        ),
        ("certs-self", {"ftps_certificate_extra_subject_alt_names": ["bad name!"]}, "wrong: DNS:bad name!"),
        ("certs-self", {"ftps_certificate_mode": "letsencrypt"}, "ftps_certificate_mode must be one of"),
        (
            "certs-self",
            {"ftps_certificate_mode": "internal_ca", "ftps_certificate_ca_passphrase": "short"},
            "needs ftps_certificate_ca_passphrase, at least 16 characters",
        ),
        ("certs-ca", {"ftps_certificate_ca_passphrase": "a long but wrong passphrase"}, "Wrong passphrase"),
    ],
    ids=[
        "country-86",
        "country-name",
        "email",
        "rsa-1024",
        "renewal-window",
        "lifetime-above-366",
        "san",
        "mode",
        "ca-passphrase",
        "wrong-ca-passphrase",
    ],
)
def test_invalid_variable_of_one_host_stops_every_host(
    hostname, variables, expected, tmp_path, untouched_hosts
):
    # Only one host has the wrong values (host_vars of an extra inventory source, which win over
    # Molecule's); none of the three hosts may be touched.
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"hosts": {hostname: {}}}}))
    (tmp_path / "host_vars" / f"{hostname}.yml").write_text(json.dumps(variables))
    run = run_playbook(
        "-i", str(tmp_path), "--limit", "certificate_role", "-e", f"ftps_certificate_dir={UNTOUCHED_DIR}"
    )
    assert_failed_before_touching(run, untouched_hosts, expected)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"ftps_certificate_provided_private_key": "stranger.key"},
            "does not belong to the first certificate",
        ),
        (
            {
                "ftps_certificate_provided_certificate": "expired.crt",
                "ftps_certificate_provided_private_key": "expired.key",
            },
            "Expired certificates in the provided files: certs-prov",
        ),
        (
            {
                "ftps_certificate_provided_certificate": "elsewhere.crt",
                "ftps_certificate_provided_private_key": "elsewhere.key",
            },
            "does not cover ip:",
        ),
        ({"ftps_certificate_provided_chain": "reversed-chain.pem"}, "The chain is out of order"),
        ({"ftps_certificate_provided_chain": "missing.pem"}, "must be empty or the absolute path of a file"),
    ],
    ids=["key-mismatch", "expired", "names-not-covered", "chain-order", "missing-file"],
)
def test_bad_provided_files_are_rejected_before_touching(files, expected, untouched_hosts):
    provided = ephemeral_dir() / "provided"
    (provided / "reversed-chain.pem").write_text(
        (provided / "root.crt").read_text() + (provided / "intermediate.crt").read_text()
    )
    extra = [arg for name, file in files.items() for arg in ("-e", f"{name}={provided / file}")]
    run = run_playbook(*extra, "--limit", "certificate_role", "-e", f"ftps_certificate_dir={UNTOUCHED_DIR}")
    assert_failed_before_touching(run, untouched_hosts, expected)
