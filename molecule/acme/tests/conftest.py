"""Helpers of the ACME tests: run the scenario's playbooks again with other variables, fetch Pebble's root,
open explicit FTPS sessions that verify the server against it by name, and ask the lab's BIND server."""

import contextlib
import ftplib
import json
import ssl
import urllib.request
from pathlib import Path

import dns.resolver
import pytest
import testinfra
from cryptography import x509
from ftpsd.client import FTPS
from scenario_runs import PROJECT, PlaybookRun, address, ephemeral_dir, lab_host
from scenario_runs import run_playbook as run_any_playbook

SCENARIO = Path(__file__).resolve().parent.parent
CONVERGE = SCENARIO / "converge.yml"
RENEW = PROJECT / "playbooks" / "renew-certificates.yml"
SERVER = "acme-srv"
CERT = "/etc/ftpsd/tls/server.crt"
KEY = "/etc/ftpsd/tls/server.key"
# Pebble's certificates last five years: a window longer than that puts any of them inside it.
WHOLE_LIFETIME_WINDOW = "ftps_certificate_renew_before_days=2000"


def run_playbook(*args: str, playbook: Path = CONVERGE) -> PlaybookRun:
    """As Molecule runs the scenario's playbooks: with the scenario's extra variables (vars/doctor.yml)."""
    return run_any_playbook(playbook, "-e", f"@{SCENARIO / 'vars/doctor.yml'}", *args)


def extra_vars(**variables: object) -> tuple[str, str]:
    """-e with JSON, so that lists and numbers keep their types."""
    return "-e", json.dumps(variables)


def variables() -> dict:
    return lab_host(SERVER).ansible.get_variables()


def dns_address() -> str:
    return address(lab_host("acme-dns"))


def lab_ca() -> Path:
    return ephemeral_dir() / "lab-pki" / "lab-ca.crt"


@pytest.fixture(scope="session")
def pebble_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The root Pebble made at its start, from its management port (whose HTTPS the lab CA vouches for)."""
    context = ssl.create_default_context(cafile=str(lab_ca()))
    with urllib.request.urlopen(
        f"https://{dns_address()}:15000/roots/0", context=context, timeout=10
    ) as reply:
        pem = reply.read()
    path = tmp_path_factory.mktemp("pebble") / "root.pem"
    path.write_bytes(pem)
    return path


def login(root: Path, server_name: str = "ftp.lab.test") -> FTPS:
    """A verified explicit FTPS session (hostname checking on, Pebble's root the only trust anchor)."""
    context = ssl.create_default_context(cafile=str(root))
    user = variables()["ftps_server_users"][0]
    ftp = FTPS(context=context, timeout=60)
    ftp.connect(address(lab_host(SERVER)), 21)
    # The lab zone is not in the controller's resolver, so the name cannot be the connect address: AUTH TLS
    # and the protected data connections check the certificate against ftp.host, the data connections go to
    # the control connection's peer.
    ftp.host = server_name
    ftp.login(user["name"], user["password"])
    ftp.prot_p()
    return ftp


def presented_certificate(ftp: ftplib.FTP_TLS) -> x509.Certificate:
    return x509.load_der_x509_certificate(ftp.sock.getpeercert(binary_form=True))


def installed_chain(host: testinfra.host.Host) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(host.file(CERT).content)


def challenge_records() -> list[str]:
    """The TXT records under _acme-challenge names that the lab's BIND server holds (all of the zone)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns_address()]
    found = []
    for name in variables()["ftps_certificate_subject_alt_names"]:
        with contextlib.suppress(dns.resolver.NXDOMAIN):
            answer = resolver.resolve(f"_acme-challenge.{name}", "TXT", raise_on_no_answer=False)
            found += [rr.to_text() for rr in answer]
    return found


@pytest.fixture(scope="session")
def server() -> testinfra.host.Host:
    return lab_host(SERVER)
