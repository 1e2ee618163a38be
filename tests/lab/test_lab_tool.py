"""The lab tool against the real machine: hosts boot, survive a killed run, and leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

LAB = Path(__file__).with_name("lab")
NAME = "t-labtool"
# The lab tool puts LAB_PREFIX before the lab name: hosts, state and cgroups carry the full name.
LAB_NAME = os.environ.get("LAB_PREFIX", "") + NAME


def lab(*args: str, check: bool = True, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] if user else []
    proc = subprocess.run(
        [*prefix, str(LAB), "--lab", NAME, *args], capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"lab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def leftovers(index: int) -> dict[str, list[str]]:
    """What this lab could leave behind. Other labs may run meanwhile, so only this lab's names count."""

    def lines(*cmd: str) -> list[str]:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()

    own_links = (f"ftpslab{index}:", f"fl{index}h")
    cgroup = Path(f"/sys/fs/cgroup/unified/ftpslab/{LAB_NAME}")
    return {
        "netns": [n for n in lines("ip", "netns", "list") if LAB_NAME in n],
        "links": [line for line in lines("ip", "-o", "link") if any(f" {o}" in line for o in own_links)],
        "mounts": [m for m in Path("/proc/self/mounts").read_text().splitlines() if LAB_NAME in m],
        "cgroups": [str(p) for p in cgroup.rglob("*")] if cgroup.exists() else [],
        "state": [
            str(p)
            for p in (Path(f"/run/ftpslab/{LAB_NAME}"), Path(f"/var/lib/ftpslab/{LAB_NAME}"))
            if p.exists()
        ],
    }


def state() -> dict:
    return json.loads(Path(f"/run/ftpslab/{LAB_NAME}/state.json").read_text())


@pytest.fixture
def clean_machine():
    lab("down")
    yield
    lab("down")


def test_up_is_idempotent_recovers_from_a_killed_run_and_down_leaves_nothing(clean_machine, tmp_path):
    inventory = tmp_path / "hosts.yml"
    lab("up", "2", "--inventory", str(inventory))
    index = state()["index"]
    first = [h["pid"] for h in state()["hosts"]]
    assert lab("ssh", f"{LAB_NAME}-2", "cat /proc/1/comm").stdout.strip() == "systemd"
    assert lab("ssh", f"{LAB_NAME}-1", "hostname").stdout.strip() == f"{LAB_NAME}-1"

    written = json.loads(inventory.read_text().split("\n", 1)[1])
    hosts = written["all"]["children"]["ftps_servers"]["hosts"]
    assert sorted(hosts) == [f"{LAB_NAME}-1", f"{LAB_NAME}-2"]
    assert all(h["ansible_host"].startswith("198.18.") for h in hosts.values())

    assert "already up" in lab("up", "2").stderr
    assert [h["pid"] for h in state()["hosts"]] == first

    # A killed run: every host's init gone without any cleanup; the next `up` must clear the remains.
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in first) and time.monotonic() < deadline:
        time.sleep(0.1)
    lab("up", "2")
    assert [h["pid"] for h in state()["hosts"]] != first
    assert state()["index"] == index  # same addresses: inventories written before stay valid
    assert lab("ssh", f"{LAB_NAME}-1", "systemctl is-active ssh").stdout.strip() == "active"

    assert all(leftovers(index).values())
    lab("down")
    assert leftovers(index) == {"netns": [], "links": [], "mounts": [], "cgroups": [], "state": []}


def test_lab_addresses_outside_a_bridge_are_unreachable(clean_machine):
    lab("up", "1")
    route = subprocess.run(
        ["ip", "route", "get", "198.19.200.1"], capture_output=True, text=True, check=False
    )
    assert route.returncode != 0
    assert "No route to host" in route.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("up", "Bad_Name"), "invalid host name"),
        (("up", "0"), "between 1 and 50"),
        (("up", "a", "a"), "must be unique"),
        (("ssh", "nobody-here"), "not up"),
    ],
)
def test_bad_requests_get_a_clear_error(args, message):
    proc = lab(*args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_refuses_to_run_without_root():
    proc = lab("up", "1", check=False, user="65534")
    assert proc.returncode == 1
    assert "must run as root" in proc.stderr


def test_reboot_keeps_the_disk_and_empties_run(clean_machine):
    lab("up", "1")
    host = f"{LAB_NAME}-1"
    before = state()["hosts"][0]["pid"]
    lab(
        "ssh",
        host,
        "echo kept > /root/disk-marker && touch /run/volatile-marker && systemctl enable --now nftables",
    )
    lab("reboot", host)
    assert state()["hosts"][0]["pid"] != before
    assert lab("ssh", host, "cat /root/disk-marker").stdout.strip() == "kept"
    assert lab("ssh", host, "test -e /run/volatile-marker", check=False).returncode == 1
    assert lab("ssh", host, "systemctl is-enabled nftables").stdout.strip() == "enabled"
    assert lab("ssh", host, "systemctl is-active nftables").stdout.strip() == "active"
