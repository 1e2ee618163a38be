"""What every lab host must be for the role tests to mean anything: a real systemd host reached over SSH."""

import pytest


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded", "starting"}, state


def test_debian_12(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("12")


@pytest.mark.parametrize("unit", ["ssh", "dbus"])
def test_units_active(host, unit):
    assert host.service(unit).is_running


def test_converge_ran_over_ssh(host):
    marker = host.file("/etc/lab-converged")
    assert marker.content_string.strip() == host.backend.get_hostname()


def test_nftables_works_inside_the_host(host):
    host.run_expect([0], "nft add table inet labprobe")
    assert "table inet labprobe" in host.check_output("nft list tables")
    host.run_expect([0], "nft delete table inet labprobe")


def test_host_has_its_own_network(host):
    addresses = host.interface("eth0").addresses
    assert any(a.startswith("198.18.") for a in addresses), addresses


def test_hosts_cannot_reach_outside_the_lab(host):
    # The unreachable route on the machine keeps the rest of the test range from ever leaving it.
    result = host.run(
        "python3 -c \"import socket; socket.create_connection(('198.19.255.254', 9), timeout=2)\""
    )
    assert result.rc != 0
