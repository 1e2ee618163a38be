"""The reliability lab: a server deployed by the real site.yml, a second host as another client, SSH."""

from __future__ import annotations

import json
import shlex
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_TOOL = REPO / "tests" / "lab" / "lab"
LAB = "rel"
SERVER, CLIENT = "rel-1", "rel-2"
GROUP_VARS = Path(__file__).with_name("inventory") / "group_vars" / "ftps_servers.yml"
REMOTE_CLIENT = Path(__file__).with_name("remote_client.py")
SERVICE = "ftpsd"


@dataclass(frozen=True)
class ServiceState:
    main_pid: int
    restarts: int
    active: str
    enabled: str


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    address6: str  # lab hosts are dual-stack

    def run(self, command: str, *, check: bool = True, timeout: float = 120) -> str:
        """Run a shell command on the host as root; returns its stdout."""
        proc = subprocess.run(
            [str(LAB_TOOL), "--lab", LAB, "ssh", self.name, command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: `{command}` exited {proc.returncode}:\n{proc.stderr}")
        return proc.stdout

    def service(self) -> ServiceState:
        out = self.run(f"systemctl show -p MainPID,NRestarts,ActiveState,UnitFileState {SERVICE}")
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return ServiceState(
            int(props["MainPID"]), int(props["NRestarts"]), props["ActiveState"], props["UnitFileState"]
        )

    def memory_kib(self, pid: int) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak since the process started) of a process, in KiB."""
        status = self.run(f"cat /proc/{pid}/status")
        return {
            key: int(value.split()[0])
            for key, value in (line.split(":", 1) for line in status.splitlines())
            if key in {"VmRSS", "VmHWM"}
        }

    def journal_cursor(self) -> str:
        out = self.run(f"journalctl -u {SERVICE} -n 0 --show-cursor --quiet")
        return out.strip().removeprefix("-- cursor: ")

    def journal_after(self, cursor: str) -> str:
        return self.run(f"journalctl -u {SERVICE} --no-pager -o cat --after-cursor {shlex.quote(cursor)}")

    def wait_active(self, old_pid: int = 0, timeout: float = 60) -> tuple[ServiceState, float]:
        """Poll until the service runs (with another PID than old_pid); returns the state and the wait."""
        start = time.monotonic()
        while True:
            state = self.service()
            if state.active == "active" and state.main_pid not in {0, old_pid}:
                return state, time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{SERVICE} on {self.name} not back within {timeout}s: {state}")
            time.sleep(0.2)

    def remote_client(self, action: str, **args: object) -> object:
        """Run remote_client.py (stdlib only) with python3 on this host; returns its JSON answer."""
        command = f"python3 - {shlex.quote(action)} {shlex.quote(json.dumps(args))}"
        proc = subprocess.run(
            [str(LAB_TOOL), "--lab", LAB, "ssh", self.name, command],
            input=REMOTE_CLIENT.read_text(),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"remote client {action} on {self.name} failed:\n{proc.stderr}")
        return json.loads(proc.stdout)


@dataclass(frozen=True)
class User:
    name: str
    password: str
    home: str


@dataclass(frozen=True)
class Deployment:
    """What the tests need to know about the deployed server, all read from the test inventory."""

    server: LabHost
    client: LabHost
    controller_address: str
    users: dict[str, User]
    settings: dict[str, object]
    certificate_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A careful client: TLS 1.2+, the server's certificate pinned, its address checked in the SAN."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cafile=str(self.certificate_file))
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a self-signed leaf as its own anchor
        return ctx


def inventory_settings() -> dict:
    return yaml.safe_load(GROUP_VARS.read_text())


def lab_tool(*args: str, timeout: float = 300) -> None:
    proc = subprocess.run(
        [str(LAB_TOOL), "--lab", LAB, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} failed:\n{proc.stderr}")


def write_inventory(generated: Path) -> dict[str, tuple[str, str]]:
    """Rewrite the lab's inventory: the server in ftps_servers, the other host in a group of its own.

    Returns the IPv4 and IPv6 address of each host.
    """
    text = generated.read_text()
    inventory = json.loads(text[text.index("{") :])  # after the tool's comment line
    hosts = inventory["all"]["children"]["ftps_servers"]["hosts"]
    inventory["all"]["children"] = {
        "ftps_servers": {"hosts": {SERVER: hosts[SERVER]}},
        "reliability_clients": {"hosts": {CLIENT: hosts[CLIENT]}},
    }
    generated.write_text(yaml.safe_dump(inventory))
    return {name: (vars_["ansible_host"], vars_["lab_ipv6_address"]) for name, vars_ in hosts.items()}
