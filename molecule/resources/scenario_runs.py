"""What the scenarios' testinfra tests share: run a playbook again as Molecule's converge step runs it
(with other variables), read its recap, and reach the lab hosts and their addresses."""

import errno
import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import testinfra

PROJECT = Path(__file__).resolve().parent.parent.parent
RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+unreachable=\d+\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


@dataclass
class PlaybookRun:
    rc: int
    output: str

    def changed(self) -> dict[str, int]:
        return {m["host"]: int(m["changed"]) for m in RECAP_LINE.finditer(self.output)}

    def failed(self) -> dict[str, int]:
        return {m["host"]: int(m["failed"]) for m in RECAP_LINE.finditer(self.output)}


def inventory() -> str:
    return str(Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent)


def ephemeral_dir() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def plain_ansible_env() -> dict[str, str]:
    """The environment for Ansible commands whose output a test reads: Molecule forces colours on."""
    return {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}


def inventory_value(host: str, expression: str) -> object:
    """A variable as Ansible renders it for the host (vault and role defaults resolved)."""
    out = subprocess.run(
        ["ansible", host, "-i", inventory(), "-m", "ansible.builtin.debug", "-a",
         f"msg={{{{ {expression} | to_json }}}}", "-o"],
        capture_output=True, text=True, check=True, cwd=PROJECT, env=plain_ansible_env(),
    ).stdout  # fmt: skip
    return json.loads(json.loads(out.split("=>", 1)[1])["msg"])


def run_playbook(playbook: Path, *args: str) -> PlaybookRun:
    """ansible-playbook with Molecule's inventory and configuration, as the converge step runs it."""
    env = plain_ansible_env()
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory(), str(playbook), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT,
        timeout=540,
        check=False,
    )
    return PlaybookRun(result.returncode, result.stdout + result.stderr)


def lab_host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory()}")


def address(host: testinfra.host.Host) -> str:
    return host.ansible.get_variables()["ansible_host"]


def reachable(address: str, port: int) -> bool:
    """True if the host's TCP stack answered (accepted, or refused with a reset); False if a firewall
    dropped the packet (the nftables role) or rejected it with an ICMP error (firewalld's zones)."""
    try:
        socket.create_connection((address, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    except TimeoutError:
        return False
    except OSError as err:
        # ICMP "administratively prohibited" (firewalld's reject): EHOSTUNREACH over IPv4, EACCES over IPv6.
        if err.errno in {errno.EHOSTUNREACH, errno.EACCES}:
            return False
        raise
    return True
