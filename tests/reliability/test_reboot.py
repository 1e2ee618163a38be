"""A reboot of the server host (a clean power-off and boot on the same disk): the service comes back by
itself, enabled, with the same certificate, the same users and their files, and the firewall role's table
drops again what it does not open. (Debian's own nftables.conf adds an empty accepting table at boot; it
does not weaken the role's dropping one.) Runs last in this folder (conftest.py orders it).
"""

from __future__ import annotations

import hashlib
import os
import socket

import pytest
from ftps_clients import download_sha256, login, sha256, upload
from labhost import SERVER, Deployment, lab_tool

FIREWALL_TABLE = "ftps_firewall"  # the firewall role's default table name
CLOSED_PORT = 23


def presented_certificate(deployment: Deployment) -> str:
    """SHA-256 of the certificate the implicit port presents."""
    host = deployment.server.address
    with (
        socket.create_connection((host, 990), timeout=30) as raw,
        deployment.client_context().wrap_socket(raw, server_hostname=host) as tls,
    ):
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def test_reboot_brings_back_the_service_certificate_users_and_files(deployment: Deployment) -> None:
    server = deployment.server
    data = os.urandom(1 << 20)
    with login(deployment, "fbt_admin") as ftp:
        upload(ftp, "before-reboot.bin", data)
    certificate = presented_certificate(deployment)
    firewall = server.run(f"nft list table inet {FIREWALL_TABLE}")
    booted = server.run("ps -o lstart= -p 1")  # the host's init; a new one after the reboot

    lab_tool("reboot", SERVER)

    state, _ = server.wait_active(timeout=60)
    assert state.enabled == "enabled"
    assert server.run("ps -o lstart= -p 1") != booted
    assert presented_certificate(deployment) == certificate
    assert server.run(f"nft list table inet {FIREWALL_TABLE}") == firewall
    with pytest.raises(TimeoutError):  # a port the firewall does not open is silently dropped again
        socket.create_connection((server.address, CLOSED_PORT), timeout=2)
    for user in deployment.users:
        with login(deployment, user) as ftp:
            assert ftp.pwd() == "/"
    with login(deployment, "fbt_admin") as ftp:
        assert download_sha256(ftp, "before-reboot.bin") == sha256(data)
        ftp.delete("before-reboot.bin")
