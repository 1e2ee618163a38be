"""What the tests need to know about each deployed host, and a real FTPS client to talk to it.

The expected state comes from the inventory (Ansible renders it, vault included), never from the files the
roles wrote: the tests compare what was asked for with what the host does.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import ssl
import subprocess
from dataclasses import dataclass

import pytest
from ansible.module_utils.common.text.formatters import human_to_bytes
from ftpsd.client import FTPS

CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class User:
    name: str
    password: str
    home: str
    permissions: str
    present: bool
    allowed_networks: tuple[str, ...] = ()  # empty: from anywhere
    download_rate: int = 0  # bytes per second, 0: no limit of its own


@dataclass(frozen=True)
class Deployment:
    address: str
    address6: str  # the host's global IPv6 address on the lab network (every lab host is dual-stack)
    ssh: list[str]
    explicit_port: int
    implicit_port: int
    passive: tuple[int, int]
    masquerade: str
    data_root: str
    firewall_backend: str
    users: dict[str, User]
    quotas: dict[str, dict[str, int]]  # by path: {max_bytes, max_files}, as the role writes them

    def user(self, permissions: str, home_suffix: str = "/shared") -> User:
        """The first present user with this permission profile (and a home ending so)."""
        return next(
            u
            for u in self.users.values()
            if u.present and u.permissions == permissions and u.home.endswith(home_suffix)
        )


# Jinja expressions Ansible renders for the host; role defaults fill what the inventory leaves out.
_INVENTORY_FIELDS = {
    "users": "ftps_server_users",
    "data_root": "ftps_server_data_root | default('/srv/ftps')",
    "explicit_port": "ftps_server_explicit_port | default(21)",
    "implicit_port": "ftps_server_implicit_port | default(0)",
    "passive": "[ftps_server_passive_port_start | default(50000),"
    " ftps_server_passive_port_end | default(60000)]",
    "masquerade": "ftps_server_masquerade_address | default('')",
    # Lab hosts are Debian, where the role's "auto" means nftables.
    "firewall_backend": "firewall_backend | default('auto') | replace('auto', 'nftables')",
    "quotas": "ftps_server_quotas | default([])",
    "address": "ansible_host",
    "key": "ansible_ssh_private_key_file | default(ansible_private_key_file)",
    "user": "ansible_user",
    "port": "ansible_port | default(22)",
}
_INVENTORY_QUERY = (
    "msg={{ {" + ", ".join(f"'{k}': {v}" for k, v in _INVENTORY_FIELDS.items()) + "} | to_json }}"
)


@pytest.fixture(scope="module")
def deployment(host) -> Deployment:
    """The host's inventory variables as Ansible renders them (passwords decrypted from the vault)."""
    data = json.loads(host.ansible("debug", _INVENTORY_QUERY, check=False)["msg"])
    users = {
        u["name"]: User(
            name=u["name"],
            password=u.get("password", ""),
            home=u.get("home", ""),
            permissions=u.get("permissions", ""),
            present=u.get("state", "present") == "present",
            allowed_networks=tuple(u.get("allowed_networks", ())),
            download_rate=int(human_to_bytes(u.get("download_rate") or 0)),
        )
        for u in data["users"]
    }
    ssh = [
        "ssh",
        *("-i", data["key"], "-p", str(data["port"]), "-o", "BatchMode=yes"),
        *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"),
        f"{data['user']}@{data['address']}",
    ]
    return Deployment(
        address=data["address"],
        address6=global_ipv6(host),
        ssh=ssh,
        explicit_port=int(data["explicit_port"]),
        implicit_port=int(data["implicit_port"]),
        passive=(int(data["passive"][0]), int(data["passive"][1])),
        masquerade=data["masquerade"],
        data_root=data["data_root"],
        firewall_backend=data["firewall_backend"],
        users=users,
        quotas={
            q["path"].rstrip("/"): {
                "max_bytes": int(human_to_bytes(q.get("max_bytes") or 0)),
                "max_files": int(q.get("max_files") or 0),
            }
            for q in data["quotas"]
        },
    )


def global_ipv6(host) -> str:
    """The one global IPv6 address of the host's lab interface, read off the host."""
    addresses = [ipaddress.ip_address(a) for a in host.interface("eth0").addresses]
    (address,) = [a for a in addresses if a.version == 6 and not a.is_link_local]
    return str(address)


PROBE_PORT = 8088


@pytest.fixture
def listener(host):
    """A service outside the allowed ports, listening on every IPv4 and IPv6 address of the host."""
    host.run_expect(
        [0],
        "systemd-run --unit=firewall-probe --property=Type=exec "
        f"python3 -m http.server --bind :: {PROBE_PORT}",
    )
    host.run_expect([0], f"timeout 10 sh -c 'until ss -ltn | grep -q :{PROBE_PORT}; do sleep 0.2; done'")
    yield PROBE_PORT
    host.run("systemctl stop firewall-probe")


def client_context() -> ssl.SSLContext:
    """Lab certificates are self-signed: encryption is tested here, trust in ftps_certificate's tests."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def login(dep: Deployment, user: User, password: str | None = None, address: str | None = None) -> FTPS:
    """Explicit FTPS session (to the IPv4 address unless told): AUTH TLS, USER/PASS, PBSZ 0, PROT P."""
    ftp = FTPS(context=client_context(), timeout=CONNECT_TIMEOUT * 5)
    ftp.connect(address or dep.address, dep.explicit_port)
    ftp.login(user.name, user.password if password is None else password)
    ftp.prot_p()
    return ftp


def run_on_host(dep: Deployment, command: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run a command over SSH with data on stdin; unlike testinfra's runner it leaves no trace on the host."""
    return subprocess.run(
        [*dep.ssh, command], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


METRICS_PORT = 9821  # ftpsd's default, which the lab inventory leaves alone


def scraped_metrics(dep: Deployment) -> str:
    """ftpsd's metrics as the host itself scrapes them (loopback only by default)."""
    script = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())"
    result = run_on_host(dep, f"python3 -c {shlex.quote(script)}")
    assert result.returncode == 0, result.stderr
    return result.stdout
