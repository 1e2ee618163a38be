"""What every lab host must be for the role tests to mean anything: a real systemd host reached over SSH."""

import ipaddress
import socket

import pytest

# molecule.yml: lab-a has the lab tool's default release, lab-b asks for trixie.
RELEASES = {"lab-a": "12", "lab-b": "13"}


def test_systemd_is_pid_1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded", "starting"}, state


def test_debian_release_as_asked(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == RELEASES[host.backend.get_hostname()]


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


def global_ipv6(host):
    addresses = [ipaddress.ip_address(a) for a in host.interface("eth0").addresses]
    return [a for a in addresses if a.version == 6 and not a.is_link_local]


def test_host_has_its_own_network(host):
    addresses = host.interface("eth0").addresses
    assert any(a.startswith("198.18.") for a in addresses), addresses
    assert [a in ipaddress.ip_network("2001:2::/48") for a in global_ipv6(host)] == [True], addresses


def test_controller_reaches_the_host_over_ipv6(host):
    (address,) = global_ipv6(host)
    with socket.create_connection((str(address), 22), timeout=5) as ssh:
        assert ssh.recv(64).startswith(b"SSH-2.0-")


def test_hosts_cannot_reach_outside_the_lab(host):
    # The unreachable route on the machine keeps the rest of the test range from ever leaving it.
    result = host.run(
        "python3 -c \"import socket; socket.create_connection(('198.19.255.254', 9), timeout=2)\""
    )
    assert result.rc != 0


def test_hosts_cannot_reach_outside_the_lab_over_ipv6(host):
    # Nor the rest of 2001:2::/48 (RFC 5180's benchmarking range).
    result = host.run(
        "python3 -c \"import socket; socket.create_connection(('2001:2:0:ffff::1', 9), timeout=2)\""
    )
    assert result.rc != 0
