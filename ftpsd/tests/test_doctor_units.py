"""Pure parts of ftps-doctor: address and name judgement, reply parsing, verdict arithmetic."""

from __future__ import annotations

import datetime
import socket

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from ftpsd.doctor import certificate
from ftpsd.doctor.addresses import private_announced_to_public
from ftpsd.doctor.cli import build_parser, options_from
from ftpsd.doctor.control import ControlChannel, ProtocolError
from ftpsd.doctor.report import Report, Status, StepResult
from selfsigned import write_self_signed


@pytest.mark.parametrize(
    ("announced", "connected", "flagged"),
    [
        ("10.0.0.5", "8.8.8.8", True),  # classic NAT without masquerade address
        ("192.168.1.10", "1.1.1.1", True),
        ("100.64.3.2", "9.9.9.9", True),  # carrier-grade NAT space is not public either
        ("127.0.0.1", "8.8.8.8", True),
        ("10.0.0.5", "10.0.0.5", False),  # same address: nothing to flag
        ("10.0.0.5", "10.0.0.6", False),  # private client: may well reach it
        ("198.18.0.7", "198.18.0.8", False),  # lab addresses are not public
        ("8.8.4.4", "8.8.8.8", False),  # public announced: possibly a load balancer, judged by connecting
    ],
)
def test_private_address_announced_to_public_client(announced, connected, flagged):
    assert private_announced_to_public(announced, connected) is flagged


@pytest.mark.parametrize(
    ("host", "san", "matches"),
    [
        ("198.18.0.5", ("IP:198.18.0.5",), True),
        ("198.18.0.5", ("DNS:198.18.0.5",), False),  # an IP must be in an IP entry
        ("ftp.example.org", ("DNS:ftp.example.org",), True),
        ("FTP.Example.org.", ("DNS:ftp.example.org",), True),
        ("ftp.example.org", ("DNS:*.example.org",), True),
        ("a.ftp.example.org", ("DNS:*.example.org",), False),  # a wildcard covers one label
        ("example.org", ("DNS:*.example.org",), False),
        ("ftp.example.org", (), False),
    ],
)
def test_name_matches(host, san, matches):
    assert certificate.name_matches(host, san) is matches


def test_every_certificate_problem_is_listed_at_once(tmp_path):
    cert_path, _ = write_self_signed(tmp_path, "expired", ("10.1.1.1",), valid_days=-2)
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
    info = certificate.read_certificate(der)
    now = datetime.datetime.now(datetime.UTC)
    found = [problem for problem, _ in certificate.problems(info, "10.9.9.9", now, None)]
    assert len(found) == 2
    assert "not valid for 10.9.9.9" in found[0]
    assert "expired" in found[1]
    assert info.self_signed
    assert certificate.problems(info, "10.1.1.1", now - datetime.timedelta(days=5), None) == []


def channel_with(server_bytes: bytes) -> ControlChannel:
    """A control channel over a real loopback TCP connection whose server side sent ``server_bytes``."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname(), timeout=5)
        theirs, _ = listener.accept()
    with theirs:
        theirs.sendall(server_bytes)
    return ControlChannel(ours, "127.0.0.1")


def test_multi_line_reply():
    channel = channel_with(b"211-Features:\r\n AUTH TLS\r\n211-not the end\r\n211 End\r\n220 next\r\n")
    reply = channel.read_reply()
    assert reply.code == 211
    assert reply.text.splitlines() == ["211-Features:", " AUTH TLS", "211-not the end", "211 End"]
    assert channel.read_reply().code == 220


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not an FTP reply"),
        (b"", "closed the control connection"),
        (b"220 " + b"x" * 9000, "longer than"),
    ],
)
def test_garbage_is_a_protocol_error(data, message):
    with pytest.raises(ProtocolError, match=message):
        channel_with(data).read_reply()


def test_verdict_and_exit_code():
    report = Report(target={})
    report.add(StepResult("a", Status.PASS, ""))
    report.add(StepResult("b", Status.SKIP, ""))
    assert (report.status, report.exit_code) == (Status.PASS, 0)
    report.add(StepResult("c", Status.WARN, ""))
    assert (report.status, report.exit_code) == (Status.WARN, 0)
    report.add(StepResult("d", Status.FAIL, ""))
    assert (report.status, report.exit_code) == (Status.FAIL, 1)


def test_implicit_mode_defaults_to_port_990():
    parser = build_parser()
    assert options_from(parser.parse_args(["h", "--implicit"])).port == 990
    assert options_from(parser.parse_args(["h"])).port == 21
    assert options_from(parser.parse_args(["h", "--implicit", "--port", "2990"])).port == 2990
