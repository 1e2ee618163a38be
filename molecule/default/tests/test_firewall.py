"""The firewall from the controller: exactly the control ports and the passive range get through.

Over IPv4 here; test_ipv6.py checks the same over IPv6.
"""

from __future__ import annotations

import pytest
from conftest import METRICS_PORT, scraped_metrics
from scenario_runs import reachable


def test_control_ports_reachable(deployment):
    assert reachable(deployment.address, deployment.explicit_port)
    if deployment.implicit_port:
        assert reachable(deployment.address, deployment.implicit_port)


def test_passive_range_reachable_and_nothing_beside_it(deployment):
    first, last = deployment.passive
    # Nothing listens there now: an open port answers with a reset, a filtered one does not answer at all.
    assert reachable(deployment.address, first)
    assert reachable(deployment.address, last)
    assert not reachable(deployment.address, first - 1)
    assert not reachable(deployment.address, last + 1)


def test_implicit_port_closed_when_disabled(deployment):
    if deployment.implicit_port:
        pytest.skip("implicit FTPS is enabled on this host")
    assert not reachable(deployment.address, 990)


def test_other_listening_port_not_reachable(host, deployment, listener):
    assert host.socket(f"tcp://:::{listener}").is_listening
    # Served on the host itself (loopback is accepted) ...
    host.run_expect(
        [0], f"python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{listener}/')\""
    )
    # ... but not to the network.
    assert not reachable(deployment.address, listener)


def test_firewall_owns_only_its_table(host, deployment):
    if deployment.firewall_backend != "nftables":
        pytest.skip(f"this host's firewall is {deployment.firewall_backend}")
    tables = host.check_output("nft list tables").splitlines()
    assert "table inet ftps_firewall" in tables
    assert "table inet lab_foreign" in tables  # loaded by prepare.yml; never flushed by the role
    chain = host.check_output("nft list chain inet ftps_firewall input")
    assert "policy drop;" in chain
    assert 'include "/etc/nftables.d/ftps_firewall.nft"' in host.file("/etc/nftables.conf").content_string
    assert host.service("nftables").is_enabled


def test_firewalld_service_holds_exactly_the_fed_ports(host, deployment):
    if deployment.firewall_backend != "firewalld":
        pytest.skip(f"this host's firewall is {deployment.firewall_backend}")
    assert host.service("firewalld").is_running
    assert host.service("firewalld").is_enabled
    zone = host.check_output("firewall-cmd --get-default-zone")
    host.run_expect([0], f"firewall-cmd --zone={zone} --query-service=ftps")
    host.run_expect([0], f"firewall-cmd --permanent --zone={zone} --query-service=ftps")
    fed = {"22/tcp", f"{deployment.explicit_port}/tcp", "{}-{}/tcp".format(*deployment.passive)}
    if deployment.implicit_port:
        fed.add(f"{deployment.implicit_port}/tcp")
    assert set(host.check_output("firewall-cmd --permanent --service=ftps --get-ports").split()) == fed
    # firewalld keeps to its own nftables table: the nftables backend's table is not there, others stay.
    tables = host.check_output("nft list tables").splitlines()
    assert "table inet firewalld" in tables
    assert "table inet lab_foreign" in tables
    assert "table inet ftps_firewall" not in tables


def test_metrics_are_served_on_loopback_only_by_default(host, deployment):
    """The defaults an operator gets: the host itself scrapes ftpsd; nothing else even reaches the port."""
    listening = host.check_output(f"ss -Hltn 'sport = :{METRICS_PORT}'").split()
    assert f"127.0.0.1:{METRICS_PORT}" in listening
    assert not [word for word in listening if word.endswith(f":{METRICS_PORT}") and "127.0.0.1" not in word]
    assert "ftpsd_sessions" in scraped_metrics(deployment)
    assert not reachable(deployment.address, METRICS_PORT)
    assert not reachable(deployment.address6, METRICS_PORT)
