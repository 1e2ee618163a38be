"""One deployment for the whole suite: boot the lab, run the real site.yml, always tear the lab down.

Set RELIABILITY_KEEP_LAB=1 to leave the lab up after the run (a rerun then reuses it; site.yml is
idempotent). Destroy it with `tests/lab/lab --lab rel down`.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from labhost import (
    CLIENT,
    GROUP_VARS,
    REPO,
    SERVER,
    Deployment,
    LabHost,
    User,
    inventory_settings,
    lab_tool,
    write_inventory,
)

HERE = Path(__file__).parent
# Run after every other test of this folder: it restarts the server host.
LAST = "test_reboot.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep this folder's tests where they are, but with the reboot test last among them."""
    slots = [i for i, item in enumerate(items) if item.path.parent == HERE]
    ours = sorted((items[i] for i in slots), key=lambda item: item.path.name == LAST)
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item


def deploy(inventory: Path) -> None:
    """site.yml with a wheel cache and report folder of this run's own: other suites may deploy from the
    same checkout at the same time."""
    playbook = Path(sys.executable).with_name("ansible-playbook")
    wheel_cache = f"ftps_server_wheel_cache={inventory / 'wheels'}"
    log = inventory / "site.log"
    with log.open("w") as out:
        proc = subprocess.run(
            [str(playbook), "-i", str(inventory), "site.yml", "-e", wheel_cache],
            env={**os.environ, "FTPS_REPORT_DIR": str(inventory / "reports")},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"site.yml failed ({proc.returncode}); full log {log}:\n{tail}")


def prepare_tiny_disk(server: LabHost, home: str, owner: str) -> None:
    """A 4 MiB tmpfs as rel_tiny's home, mounted from fstab like a small partition; the service is
    restarted once so that its private mount namespace sees it."""
    entry = f"tmpfs {home} tmpfs size=4m,uid={owner},gid={owner},mode=0750,nosuid,nodev,noexec 0 0"
    server.run(
        f"grep -qF {shlex.quote(entry)} /etc/fstab || echo {shlex.quote(entry)} >> /etc/fstab; "
        f"mountpoint -q {home} || {{ mount {home} && systemctl restart ftpsd; }}"
    )


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    inventory = tmp_path_factory.mktemp("inventory")
    try:
        lab_tool("up", SERVER, CLIENT, "--inventory", str(inventory / "hosts.yml"))
        addresses = write_inventory(inventory / "hosts.yml")
        shutil.copytree(GROUP_VARS.parent, inventory / "group_vars")
        deploy(inventory)
        settings = inventory_settings()
        users = {u["name"]: User(u["name"], u["password"], u["home"]) for u in settings["ftps_server_users"]}
        server = LabHost(SERVER, *addresses[SERVER])
        prepare_tiny_disk(server, users["rel_tiny"].home, settings.get("ftps_server_user", "ftpsd"))
        certificate = inventory / "server.crt"
        certificate.write_text(server.run("cat /etc/ftpsd/tls/server.crt"))
        gateway = ipaddress.ip_interface(f"{server.address}/24").network.network_address + 1
        yield Deployment(
            server=server,
            client=LabHost(CLIENT, *addresses[CLIENT]),
            controller_address=str(gateway),
            users=users,
            settings=settings,
            certificate_file=certificate,
        )
    finally:
        if not os.environ.get("RELIABILITY_KEEP_LAB"):
            lab_tool("down")
