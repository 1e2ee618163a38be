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

import pytest
from conftest import CONNECT_TIMEOUT, client_context, login, reachable
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ftpsd.client import ImplicitFTPS


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
