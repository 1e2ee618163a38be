"""The firewall from the controller: exactly the control ports and the passive range get through."""

from __future__ import annotations

import pytest
from conftest import reachable

PROBE_PORT = 8088


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


@pytest.fixture
def listener(host):
    """A service outside the allowed ports, listening on every address of the host."""
    host.run_expect(
        [0],
        f"systemd-run --unit=firewall-probe --property=Type=exec "
        f"python3 -m http.server --bind 0.0.0.0 {PROBE_PORT}",
    )
    host.run_expect([0], f"timeout 10 sh -c 'until ss -ltn | grep -q :{PROBE_PORT}; do sleep 0.2; done'")
    yield PROBE_PORT
    host.run("systemctl stop firewall-probe")


def test_other_listening_port_not_reachable(host, deployment, listener):
    assert host.socket(f"tcp://0.0.0.0:{listener}").is_listening
    # Served on the host itself (loopback is accepted) ...
    host.run_expect(
        [0], f"python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{listener}/')\""
    )
    # ... but not to the network.
    assert not reachable(deployment.address, listener)


def test_firewall_owns_only_its_table(host):
    tables = host.check_output("nft list tables").splitlines()
    assert "table inet ftps_firewall" in tables
    assert "table inet lab_foreign" in tables  # loaded by prepare.yml; never flushed by the role
    chain = host.check_output("nft list chain inet ftps_firewall input")
    assert "policy drop;" in chain
    assert 'include "/etc/nftables.d/ftps_firewall.nft"' in host.file("/etc/nftables.conf").content_string
    assert host.service("nftables").is_enabled
