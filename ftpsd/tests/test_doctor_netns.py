"""ftps-doctor against a server in its own network namespace, with real nftables rules in front.

Proves the network diagnoses on real packets: a firewall dropping the passive range (data connections
time out while control works), a firewall dropping the control port, and a client without a route.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("doctor_fixtures")

from doctor_fixtures import NETNS_PORTS, check, failure, run_cli_json, statuses, step  # noqa: E402

pytestmark = pytest.mark.live
pytest_plugins = ["doctor_fixtures"]

PASSIVE = "{}-{}".format(*NETNS_PORTS[2])


def test_same_setup_without_firewall_rule_passes(namespaced):
    ns, setup = namespaced
    report = check(setup, roundtrip=True)
    assert set(statuses(report).values()) == {"PASS"}, report.to_dict()
    assert step(report, "pasv")["facts"]["announced_address"] == ns.server_address


def test_firewall_dropping_the_passive_range(namespaced):
    ns, setup = namespaced
    ns.drop_tcp(PASSIVE)
    report = check(setup, timeout=2.0)
    assert statuses(report)["login"] == "PASS"  # the control connection is unaffected
    for name in ("pasv", "epsv"):
        data = failure(report, name)
        assert "timed out" in data["diagnosis"]
        assert "passive port range is not open in a firewall" in data["diagnosis"]
        assert "firewall role" in data["hint"]
    assert statuses(report)["session_reuse"] == "SKIP"


def test_firewall_dropping_the_control_port(namespaced):
    ns, setup = namespaced
    ns.drop_tcp(str(setup.explicit_port))
    report = check(setup, timeout=2.0)
    connect = failure(report, "connect")
    assert "timed out" in connect["diagnosis"]
    assert "firewall" in connect["diagnosis"]
    assert f"open TCP port {setup.explicit_port}" in connect["hint"]


def test_no_route_to_the_server(namespaced):
    ns, _ = namespaced
    # Inside the namespace only the veth's /30 is routed; run the real command there.
    code, report = run_cli_json("198.18.251.1", "--port", "21", "--timeout", "2", netns=ns.name)
    assert code == 1
    connect = report["steps"][0]
    assert connect["name"] == "connect"
    assert connect["status"] == "FAIL"
    assert "no route" in connect["diagnosis"]
    assert connect["facts"]["failure"] == "unreachable"
