"""Helpers for the monitoring scenario: the inventory as Ansible renders it, Prometheus's HTTP API on prom."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from scenario_runs import inventory_value, plain_ansible_env

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
REPORTS = Path(os.environ["FTPS_REPORT_DIR"])
INVENTORY = EPHEMERAL / "inventory"
FTPS_HOSTS = ["mon-a", "mon-b"]
METRICS_PORT = 9821  # the role's default, which the scenario keeps
PLAIN_ANSIBLE_ENV = plain_ansible_env()
# Prometheus scrapes and evaluates every second (converge.yml); under load give it a while.
WAIT = 60


def lab_ipv6(host: str) -> str:
    """The host's global IPv6 address on the lab network, from its facts."""
    out = subprocess.run(
        ["ansible", host, "-i", str(INVENTORY), "-m", "ansible.builtin.setup", "-a",
         "gather_subset=!all,!min,network filter=ansible_default_ipv6", "-o"],
        capture_output=True, text=True, check=True, cwd=PROJECT, env=PLAIN_ANSIBLE_ENV,
    ).stdout  # fmt: skip
    return json.loads(out.split("=>", 1)[1])["ansible_facts"]["ansible_default_ipv6"]["address"]


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    return {host: str(inventory_value(host, "ansible_host")) for host in [*FTPS_HOSTS, "prom"]}


@pytest.fixture(scope="session")
def prometheus(addresses) -> Callable[..., dict]:
    """GET an API path of prom's Prometheus (from the controller, over the lab network); its data."""

    def get(path: str, **params: str) -> dict:
        url = f"http://{addresses['prom']}:9090/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    return get


@pytest.fixture(scope="session")
def query(prometheus) -> Callable[[str], dict[str, float]]:
    """An instant query: {instance: value} of the result vector."""

    def run(expression: str) -> dict[str, float]:
        return {
            r["metric"]["instance"]: float(r["value"][1])
            for r in prometheus("query", query=expression)["result"]
        }

    return run


def wait_for(what: str, check: Callable[[], object], timeout: float = WAIT) -> object:
    """Poll check() until it returns something true; fail naming what did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s (last: {result!r})")
        time.sleep(1)
