"""Shared helpers for the multi-site scenario: where Molecule keeps things, and real TLS to each host."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
from pathlib import Path

import pytest
from scenario_runs import inventory_value, plain_ansible_env

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
REPORTS = Path(os.environ["FTPS_REPORT_DIR"])
INVENTORY = EPHEMERAL / "inventory"
SITES = {"beijing": ["bj-1", "bj-2"], "shanghai": ["sh-1", "sh-2"]}
PLAIN_ANSIBLE_ENV = plain_ansible_env()


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {host: str(inventory_value(host, "ansible_host")) for hosts in SITES.values() for host in hosts}


def served_certificate_sha256(address: str, port: int = 21) -> str:
    """The SHA-256 fingerprint of the certificate the server presents after AUTH TLS, as aa:bb:..."""
    with socket.create_connection((address, port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()  # 220 greeting
        raw.sendall(b"AUTH TLS\r\n")
        assert reader.readline().startswith(b"234")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only reading what is served; trust is not the point here
        with context.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    digest = hashlib.sha256(der).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def greeting(address: str, port: int = 21) -> str:
    with socket.create_connection((address, port), timeout=10) as raw:
        return raw.makefile("rb").readline().decode().strip()
