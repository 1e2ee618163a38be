"""Fixtures for the ftps-doctor tests: the real ftpsd with each fault made real.

Faults are made in the server's configuration and environment, never by faking replies: a
certificate that really expired, a masquerade address where nothing listens, and a server in its own
network namespace behind a real nftables rule. Loaded by the doctor test modules as a pytest plugin.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, ServerSetup, free_port, free_port_range
from ftpsd.doctor import Options, Report, diagnose
from selfsigned import write_self_signed

DOCTOR = Path(sys.executable).with_name("ftps-doctor")
NETNS_RANGE = ipaddress.ip_network("198.18.250.0/24")  # reserved for these tests (see the lab's ranges)


@dataclass
class DoctorSetup(ServerSetup):
    """conftest's server setup plus the [server] setting the doctor's NAT faults need."""

    masquerade_address: str = ""

    def render(self) -> str:
        listen = f'listen_address = "{self.listen_address}"\n'
        text = super().render()
        assert listen in text, "conftest.ServerSetup.render changed; adapt DoctorSetup"
        return text.replace(listen, f'{listen}masquerade_address = "{self.masquerade_address}"\n', 1)


def doctor_setup(
    root: Path,
    valid_days: int = 365,
    listen_address: str = "127.0.0.1",
    masquerade_address: str = "",
    ports: tuple[int, int, tuple[int, int]] | None = None,
    ban_after_failures: int = 1000,
) -> DoctorSetup:
    """A config on disk; ``ports`` (explicit, implicit, passive range) default to free loopback ports.
    Bans are practically off unless a test asks for them, so failing logins cannot disturb other tests."""
    root.mkdir(parents=True)
    cert, key = write_self_signed(root, "doctor", (listen_address,), valid_days)
    explicit, implicit, passive = ports or (free_port(), free_port(), free_port_range(20))
    setup = DoctorSetup(
        root=root,
        cert=cert,
        key=key,
        explicit_port=explicit,
        implicit_port=implicit,
        passive=passive,
        limits={"ban_after_failures": ban_after_failures, "max_connections_per_ip": 100},
        listen_address=listen_address,
        masquerade_address=masquerade_address,
    )
    setup.shared.mkdir()
    setup.write()
    return setup


def check(setup: DoctorSetup, user: str | None = "fbt_admin", **options: object) -> Report:
    """Run the doctor in-process against a setup, with the user's real password unless one is given."""
    fields: dict[str, object] = {
        "host": setup.listen_address,
        "port": setup.explicit_port,
        "user": user,
        "password": PASSWORDS.get(user or "", "x"),
        "ca_file": str(setup.cert),
        "timeout": 5.0,
    }
    fields.update(options)
    return diagnose(Options(**fields))  # type: ignore[arg-type]


def statuses(report: Report) -> dict[str, str]:
    return {step.name: str(step.status) for step in report.steps}


def step(report: Report, name: str) -> dict[str, object]:
    found = report.step(name)
    assert found is not None, f"no step {name} in {statuses(report)}"
    return found.to_dict()


def failure(report: Report, name: str) -> dict[str, object]:
    """The named step, which must have failed, and with it the whole run."""
    found = step(report, name)
    assert found["status"] == "FAIL", found
    assert report.exit_code == 1
    return found


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, netns: str = ""
) -> tuple[int, str, str]:
    """The installed ftps-doctor command, optionally inside a network namespace."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    result = subprocess.run(
        [*prefix, str(DOCTOR), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout, result.stderr


def run_cli_json(*args: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    code, out, err = run_cli(*args, "--json", **kwargs)  # type: ignore[arg-type]
    assert out, err
    return code, json.loads(out)


# --- servers on loopback


@pytest.fixture(scope="session")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoctorSetup]:
    """One correctly configured server (explicit and implicit ports) shared by read-only checks."""
    setup = doctor_setup(tmp_path_factory.mktemp("doctor") / "healthy")
    server = ServerProcess(setup)
    yield setup
    server.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., DoctorSetup]]:
    """Start a server with a fault in its setup (see doctor_setup's parameters); stopped afterwards."""
    started: list[ServerProcess] = []

    def start(**kwargs: object) -> DoctorSetup:
        setup = doctor_setup(tmp_path / f"srv{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(ServerProcess(setup))
        return setup

    yield start
    for server in started:
        server.stop()


# --- a server in its own network namespace, behind its own nftables


@dataclass(frozen=True)
class Namespace:
    name: str
    server_address: str  # inside the namespace
    client_address: str  # this side of the veth pair

    def run(self, *argv: str, stdin: str | None = None) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, *argv], input=stdin, text=True, check=True, timeout=30
        )

    def drop_tcp(self, ports: str) -> None:
        """A firewall in front of the server that silently drops TCP to ``ports`` ("50000-50019")."""
        ruleset = (
            "table inet doctor_test {\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    tcp dport {ports} drop\n"
            "  }\n"
            "}\n"
        )
        self.run("nft", "-f", "-", stdin=ruleset)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of the test range that no interface on this machine uses yet."""
    used = subprocess.run(
        ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    for subnet in NETNS_RANGE.subnets(new_prefix=30):
        if not any(f" {host}/" in used for host in subnet.hosts()):
            return subnet
    raise RuntimeError(f"no free /30 left in {NETNS_RANGE}")


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    """A namespace joined to this one by a veth pair; removed (with its veth) even if a test fails."""
    subnet = _free_subnet()
    server, client = (str(h) for h in subnet.hosts())
    tag = f"{os.getpid() % 100000}x{subnet.network_address.packed[3] // 4}"
    ns = Namespace(f"ftps-doctor-{tag}", server, client)
    outside, inside = f"fdh{tag}", f"fdn{tag}"

    def ip(*argv: str) -> None:
        subprocess.run(["ip", *argv], check=True, timeout=30)

    ip("netns", "add", ns.name)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns.name)
        ip("addr", "add", f"{client}/30", "dev", outside)
        ip("link", "set", outside, "up")
        ns.run("ip", "addr", "add", f"{server}/30", "dev", inside)
        ns.run("ip", "link", "set", inside, "up")
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False)  # takes the veth pair with it
        subprocess.run(["ip", "link", "del", outside], check=False, capture_output=True)


@contextlib.contextmanager
def server_in(ns: Namespace, setup: DoctorSetup) -> Iterator[None]:
    """`ftpsd serve` inside the namespace, ready once its control port answers from outside."""
    with open(setup.root / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns.name,
                sys.executable,
                "-m",
                "ftpsd.cli",
                "serve",
                "--config",
                str(setup.config_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, (setup.root / "server.log").read_text()
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((ns.server_address, setup.explicit_port), 1),
                ):
                    break
                assert time.monotonic() < deadline, "server in namespace did not start"
                time.sleep(0.1)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


NETNS_PORTS = (2121, 2990, (50000, 50019))


@pytest.fixture
def namespaced(tmp_path: Path) -> Iterator[tuple[Namespace, DoctorSetup]]:
    """A healthy server alone in a network namespace; tests add firewall rules to it."""
    with network_namespace() as ns:
        setup = doctor_setup(tmp_path / "netns", listen_address=ns.server_address, ports=NETNS_PORTS)
        with server_in(ns, setup):
            yield ns, setup
