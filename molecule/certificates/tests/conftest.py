"""Helpers of the certificate tests: run the scenario's playbooks again with other variables, read the
certificates the hosts have and the ones their TLS service presents."""

import socket
import ssl
from pathlib import Path

import pytest
import testinfra
from cryptography import x509
from scenario_runs import PROJECT, PlaybookRun, address, ephemeral_dir, lab_host
from scenario_runs import run_playbook as run_any_playbook

SCENARIO = Path(__file__).resolve().parent.parent
CONVERGE = SCENARIO / "converge.yml"
TLS_DIR = "/etc/ftpsd/tls"
CERT = f"{TLS_DIR}/server.crt"
PROBE_PORT = 8443
__all__ = ["PROJECT", "address", "ephemeral_dir", "lab_host"]


def run_playbook(*args: str, playbook: Path = CONVERGE) -> PlaybookRun:
    """ansible-playbook with Molecule's inventory, the scenario's converge.yml unless told otherwise."""
    return run_any_playbook(playbook, *args)


def issue_short_lived(name: str, playbook: Path = CONVERGE) -> PlaybookRun:
    """Force a new certificate valid 10 days (renewal window 5) on one host, to test renewal."""
    return run_playbook(
        "--limit",
        name,
        "-e",
        "ftps_certificate_force_rotate=true",
        "-e",
        "ftps_certificate_valid_days=10",
        "-e",
        "ftps_certificate_renew_before_days=5",
        playbook=playbook,
    )


def certificate_chain(host: testinfra.host.Host, path: str = CERT) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(host.file(path).content)


def certificate(host: testinfra.host.Host) -> x509.Certificate:
    return certificate_chain(host)[0]


def served_certificate(host: testinfra.host.Host) -> x509.Certificate:
    """The certificate a new TLS connection to the host's probe gets (not verified: only looked at)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((address(host), PROBE_PORT), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def probe_pid(host: testinfra.host.Host) -> str:
    return host.check_output("systemctl show --property MainPID --value tls-probe")


@pytest.fixture(scope="session")
def self_host() -> testinfra.host.Host:
    return lab_host("certs-self")


@pytest.fixture(scope="session")
def ca_host() -> testinfra.host.Host:
    return lab_host("certs-ca")


@pytest.fixture(scope="session")
def provided_host() -> testinfra.host.Host:
    return lab_host("certs-prov")
