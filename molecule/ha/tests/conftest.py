"""What the HA scenario's tests share: the site as the inventory describes it, commands on lab hosts over
SSH, and curl through the site's address with the nodes' own certificates trusted."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from scenario_runs import address, inventory_value, lab_host

LOADBALANCERS = ["lb-a", "lb-b"]
NODES = ["node-a", "node-b"]
STORAGE = "store"


@dataclass(frozen=True)
class Site:
    vip: str
    addresses: dict[str, str]
    data_root: str
    user: str
    password: str
    trust: Path  # both nodes' certificates: a login through the address reaches either


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Site:
    users = inventory_value(NODES[0], "ftps_server_users")
    admin = next(u for u in users if u.get("permissions") == "full" and u["home"].endswith("/shared"))
    trust = tmp_path_factory.mktemp("trust") / "nodes.pem"
    certificates = [lab_host(node).file("/etc/ftpsd/tls/server.crt").content_string for node in NODES]
    trust.write_text("".join(certificates))
    return Site(
        vip=str(inventory_value(NODES[0], "ftps_site_vip")),
        addresses={name: address(lab_host(name)) for name in [*LOADBALANCERS, *NODES, STORAGE]},
        data_root=str(inventory_value(NODES[0], "ftps_server_data_root | default('/srv/ftps')")),
        user=admin["name"],
        password=admin["password"],
        trust=trust,
    )


CURL_ENV = {**os.environ, "NO_PROXY": "*"}


def curl_argv(site: Site, server: str, *args: str) -> list[str]:
    """curl, explicit FTPS (AUTH TLS, --ssl-reqd) to server (an address), the nodes' certificates trusted;
    SERVER in args stands for the address."""
    command = [
        *("curl", "-sS", "--ssl-reqd", "--cacert", str(site.trust), "--connect-timeout", "3"),
        *("-u", f"{site.user}:{site.password}", *args),
    ]
    return [arg.replace("SERVER", server) for arg in command]


def curl(site: Site, server: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run curl_argv to its end."""
    return subprocess.run(
        curl_argv(site, server, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=CURL_ENV,
    )


def vip_holders(site: Site) -> list[str]:
    """The load balancers that have the site's address on an interface now."""
    return [
        name
        for name in LOADBALANCERS
        if f" {site.vip}/" in lab_host(name).check_output("ip -4 -o address show")
    ]


def journal(node: str, since: float) -> str:
    """ftpsd's log lines on a node since a time.time() value."""
    return lab_host(node).check_output(f"journalctl -u ftpsd --since @{int(since)} --no-pager -o cat")


def wait_for(what: str, check, timeout: float) -> float:
    """Poll check() every 0.2 s until it is true; the seconds it took. Fails naming what did not happen."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - start
