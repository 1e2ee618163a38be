"""PROXY protocol v2 between the load balancers and the nodes: the nodes see, log and ban the client's
address, not the load balancer's; a header from anyone else, and a load balancer's connection without one,
are refused (ftpsd/README.md, "PROXY protocol").

The controller has one address on the lab bridge, so the second client is a lab host that is no load
balancer: the storage host, which reaches the site's address like any client (its own FTP connections to
the nodes are the only thing a ban of it can affect; its GlusterFS traffic is not FTP). That ban stays for
ftps_server_ban_duration (15 minutes): later tests use other clients.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
import subprocess
import sys
import time
import tomllib

import pytest
from conftest import LOADBALANCERS, NODES, STORAGE, curl, journal, wait_for
from scenario_runs import lab_host

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# A client on a lab host: one explicit FTPS login attempt through ADDRESS with a wrong password; prints the
# server's first reply line (the greeting, or 421 for a banned address) and then the login's verdict.
LOGIN_ATTEMPT = """
import ftplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ftp = ftplib.FTP_TLS(context=ctx, timeout=15)
try:
    print(ftp.connect(sys.argv[1], 21))
    ftp.login(sys.argv[2], "not-the-password")
except ftplib.all_errors as err:
    print(err)
"""
# A raw client on a lab host: connects to ADDRESS PORT, reads the greeting first on the explicit port if it
# is to send PAYLOAD (hex) at all, sends it, and prints as JSON the greeting, what else it got before the
# server closed the connection (a reset counts as closed) and how long that took.
RAW_CLIENT = """
import json, socket, sys, time
host, port, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
sock = socket.create_connection((host, port), 10)
sock.settimeout(20)
greeting = sock.makefile("rb").readline() if payload and port == 21 else b""
sock.sendall(payload)
start, got = time.monotonic(), b""
try:
    while chunk := sock.recv(4096):
        got += chunk
except ConnectionResetError:
    pass
print(json.dumps([greeting.decode(), got.decode("latin-1"), round(time.monotonic() - start, 1)]))
"""


def controller_address(toward: str) -> str:
    """The controller's source address toward a lab address (its address on the lab bridge)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((toward, 21))
        return probe.getsockname()[0]


def config(node: str) -> dict:
    return tomllib.loads(lab_host(node).file("/etc/ftpsd/ftpsd.toml").content_string)


def python_on(host: str, script: str, *args: str) -> str:
    command = " ".join(["python3", "-c", _quote(script), *args])
    return lab_host(host).check_output(command)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def v2_header(client: str, port: int) -> bytes:
    block = ipaddress.IPv4Address(client).packed + ipaddress.IPv4Address("192.0.2.1").packed
    block += struct.pack("!HH", port, 21)
    return SIGNATURE + struct.pack("!BBH", 0x21, 0x11, len(block)) + block


def test_the_nodes_take_headers_from_the_sites_load_balancers_only(site):
    for node in NODES:
        assert config(node)["network"]["proxy_protocol_from"] == [
            site.addresses[lb] for lb in LOADBALANCERS
        ], node
    for lb in LOADBALANCERS:
        haproxy = lab_host(lb).file("/etc/haproxy/haproxy.cfg").content_string
        servers = [line for line in haproxy.splitlines() if line.strip().startswith("server ")]
        assert servers, lb
        assert all("send-proxy-v2" in line and "check-send-proxy" in line for line in servers), lb


def test_a_login_through_the_address_is_logged_with_the_clients_address(site):
    since = time.time() - 1
    me = controller_address(site.vip)
    for _ in range(2):  # leastconn: sequential logins reach both nodes
        listing = curl(site, site.vip, "ftp://SERVER/incoming/")
        assert listing.returncode == 0, listing.stderr
    logins = {node: journal(node, since) for node in NODES}
    lines = [line for log in logins.values() for line in log.splitlines() if "logged in." in line]
    assert len(lines) >= 2, logins
    assert all(f"::ffff:{me}:" in line for line in lines), lines
    for lb in LOADBALANCERS:
        assert not any(f"::ffff:{site.addresses[lb]}:" in line for line in lines), lb


def test_failed_logins_through_the_address_ban_the_client_not_the_load_balancer(site):
    # A ban is in force for its duration: one from an earlier verify run of the same lab still counts.
    since = time.time() - max(config(node)["limits"]["ban_duration"] for node in NODES)
    client = site.addresses[STORAGE]
    banned = f"banning ::ffff:{client} for"

    def banned_everywhere() -> bool:
        python_on(STORAGE, LOGIN_ATTEMPT, site.vip, site.user)
        return all(banned in journal(node, since) for node in NODES)

    wait_for(f"a ban of {client} on every node", banned_everywhere, 120)
    # The banned client is refused through the address, on whichever node it lands.
    for _ in range(2):
        assert "421 Too many failed logins" in python_on(STORAGE, LOGIN_ATTEMPT, site.vip, site.user)
    # The load balancers' address is not banned: another client through them still logs in on both nodes.
    for _ in range(2):
        listing = curl(site, site.vip, "ftp://SERVER/incoming/")
        assert listing.returncode == 0, listing.stderr
    for node in NODES:
        log = journal(node, since)
        for lb in LOADBALANCERS:
            assert f"banning ::ffff:{site.addresses[lb]}" not in log, (node, lb)


def raw_client(
    host: str | None, node_address: str, port: int, payload: bytes = b""
) -> tuple[str, str, float]:
    """RAW_CLIENT on a lab host, or on the controller (host None)."""
    if host is None:
        argv = [sys.executable, "-c", RAW_CLIENT, node_address, str(port), payload.hex()]
        output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    else:
        output = python_on(host, RAW_CLIENT, node_address, str(port), payload.hex() or "''")
    greeting, got, seconds = json.loads(output)
    return greeting, got, seconds


@pytest.mark.parametrize("port", [21, 990])
def test_a_forged_header_straight_to_a_node_is_refused(site, port):
    """From the controller, the one host besides the load balancers that a node's firewall lets reach its FTP
    ports (the health gate logs in directly), straight to a node's port."""
    node = NODES[0]
    since = time.time() - 1
    greeting, got, _ = raw_client(
        None, site.addresses[node], port, v2_header("203.0.113.7", 40000) + b"USER x\r\n"
    )
    assert greeting == ("220 Secure file server ready.\r\n" if port == 21 else "")  # 21 greets at once
    assert got == ""  # then nothing: no reply to the header or to the command behind it
    log = journal(node, since)
    assert f"::ffff:{controller_address(site.addresses[node])}:" in log
    assert "connection refused: it sent a PROXY protocol header but is not a load balancer" in log
    assert "203.0.113.7" not in log


@pytest.mark.parametrize("port", [21, 990])
def test_a_load_balancers_connection_without_a_header_is_closed_unanswered(site, port):
    lb, node = LOADBALANCERS[0], NODES[0]
    since = time.time() - 1
    _, got, seconds = raw_client(lb, site.addresses[node], port)
    assert got == ""  # not even the greeting
    assert seconds <= 10  # ftpsd's proxy_header_timeout (5 s), with room for a loaded machine
    log = journal(node, since)
    assert f"refused connection from load balancer ::ffff:{site.addresses[lb]}:" in log
    assert "without a valid PROXY v2 header: no complete header within 5 s" in log
