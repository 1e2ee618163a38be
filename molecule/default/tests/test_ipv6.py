"""IPv6 from the controller to each host's lab address: the same service, rules and refusals as over IPv4.

ftpsd listens on "::" by default (one dual-stack socket), the firewall's inet table covers both families,
and the certificate names the host's IPv6 address.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import ipaddress
import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import CONNECT_TIMEOUT, client_context, login
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ftpsd.client import ImplicitFTPS
from scenario_runs import reachable

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")) / "inventory"


def test_control_ports_and_passive_range_reachable_over_ipv6(deployment):
    first, last = deployment.passive
    assert reachable(deployment.address6, deployment.explicit_port)
    assert reachable(deployment.address6, first)
    assert reachable(deployment.address6, last)
    assert not reachable(deployment.address6, first - 1)
    assert not reachable(deployment.address6, last + 1)
    assert reachable(deployment.address6, deployment.implicit_port or 990) == bool(deployment.implicit_port)


def test_other_listening_port_not_reachable_over_ipv6(host, deployment, listener):
    host.run_expect([0], f"python3 -c \"import socket; socket.create_connection(('::1', {listener}), 5)\"")
    assert not reachable(deployment.address6, listener)


def test_round_trip_over_ipv6_with_epsv(deployment):
    ftp = login(deployment, deployment.user("full"), address=deployment.address6)
    assert ftp.af == socket.AF_INET6  # so ftplib asks for EPSV
    data = os.urandom(200 * 1024)
    name = f"molecule-v6-{uuid.uuid4().hex[:8]}.bin"
    ftp.storbinary(f"STOR {name}", io.BytesIO(data))
    back = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", back.write)
    assert hashlib.sha256(back.getvalue()).hexdigest() == hashlib.sha256(data).hexdigest()
    ftp.delete(name)
    with pytest.raises(ftplib.error_perm, match=r"^522 .*use EPSV"):
        ftp.sendcmd("PASV")
    ftp.quit()


def test_implicit_ftps_over_ipv6_when_enabled(deployment):
    if not deployment.implicit_port:
        pytest.skip("implicit FTPS is disabled on this host")
    user = deployment.user("full")
    ftp = ImplicitFTPS(context=client_context(), timeout=CONNECT_TIMEOUT * 5)
    ftp.connect(deployment.address6, deployment.implicit_port)
    ftp.login(user.name, user.password)
    assert ftp.nlst() is not None
    ftp.quit()


def test_plaintext_login_refused_over_ipv6(deployment):
    ftp = ftplib.FTP(timeout=CONNECT_TIMEOUT * 5)
    ftp.connect(deployment.address6, deployment.explicit_port)
    with pytest.raises(ftplib.error_perm, match=r"^55\d .*TLS"):
        ftp.sendcmd(f"USER {deployment.user('full').name}")
    ftp.close()


def served_certificate(deployment) -> x509.Certificate:
    ftp = login(deployment, deployment.user("full"), address=deployment.address6)
    certificate = x509.load_der_x509_certificate(ftp.sock.getpeercert(binary_form=True))
    ftp.quit()
    return certificate


def test_certificate_names_the_ipv6_address(deployment):
    names = served_certificate(deployment).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert ipaddress.ip_address(deployment.address6) in names.value.get_values_for_type(x509.IPAddress)


def test_doctor_checks_the_host_over_ipv6(deployment, tmp_path):
    """The health gate's client, given an IPv6 literal (verify_address), trusting the served certificate
    and checking that it names that address: every step passes, the round trip included."""
    trusted = tmp_path / "server.pem"
    trusted.write_bytes(served_certificate(deployment).public_bytes(serialization.Encoding.PEM))
    user = deployment.user("full")
    result = subprocess.run(
        ["ftps-doctor", deployment.address6, "--port", str(deployment.explicit_port), "--user", user.name,
         "--ca", str(trusted), "--roundtrip", "--password-file", "-"],
        input=user.password + "\n", capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout, result.stdout


def test_verify_playbook_checks_the_host_over_ipv6(host, deployment):
    """verify.yml (the health gate's checks) with verify_address set to the host's IPv6 literal."""
    name = host.backend.get_hostname()
    command = ["ansible-playbook", "-i", str(INVENTORY), "playbooks/verify.yml", "--limit", name]
    command += ["-e", f"verify_address={deployment.address6}"]
    # Molecule's environment points ANSIBLE_ROLES_PATH at its own folders; the playbooks need the project's.
    plain = {
        **os.environ,
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
    }
    result = subprocess.run(
        command, cwd=PROJECT, env=plain, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"TCP connection to {deployment.address6}:" in result.stdout, result.stdout


def test_curl_and_lftp_round_trips_over_ipv6(deployment, tmp_path):
    """The Debian clients, explicit FTPS with PROT P, trusting the served certificate by its IPv6 name."""
    trusted = tmp_path / "server.pem"
    trusted.write_bytes(served_certificate(deployment).public_bytes(serialization.Encoding.PEM))
    user = deployment.user("full")
    data = os.urandom(300 * 1024)
    (tmp_path / "up.bin").write_bytes(data)
    base = f"ftp://[{deployment.address6}]:{deployment.explicit_port}"
    curl = ["curl", "-sS", "--ssl-reqd", "--cacert", str(trusted), "-u", f"{user.name}:{user.password}"]
    name = f"molecule-v6-curl-{uuid.uuid4().hex[:8]}.bin"
    for args in (
        ["-T", str(tmp_path / "up.bin"), f"{base}/{name}"],
        ["-o", str(tmp_path / "curl.bin"), f"{base}/{name}"],
    ):
        result = subprocess.run([*curl, *args], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
    script = (
        f"set ssl:ca-file {trusted}; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"open -u {user.name},{user.password} {base}; "
        f"get {name} -o {tmp_path / 'lftp.bin'}; rm {name}; bye"
    )
    result = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for copy in ("curl.bin", "lftp.bin"):
        assert hashlib.sha256((tmp_path / copy).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
