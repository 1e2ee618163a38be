"""PROXY protocol v2 parser (proxyprotocol.py) against the spec's layout, and the [network] config table.

The vectors are written out byte by byte from section 2.2 of HAProxy's proxy-protocol.txt (2.6): the
12-byte signature, the version/command byte, the family/transport byte, the 2-byte length in network
order, the address block (IPv4: 4+4+2+2 bytes, IPv6: 16+16+2+2) and TLVs (type, 2-byte length, value).
"""

from __future__ import annotations

import ipaddress

import pytest
from ftpsd.config import ConfigError, parse_config
from ftpsd.passwords import DUMMY_HASH
from ftpsd.proxyprotocol import ProxyHeader, ProxyHeaderError, looks_like_header, missing, parse

SIG = bytes.fromhex("0D0A0D0A000D0A515549540A")  # the spec writes the signature in hex

# PROXY, TCP over IPv4, 12 bytes: 192.0.2.1:12345 -> 198.51.100.1:21
IPV4 = SIG + bytes.fromhex("21 11 000C  C0000201 C6336401  3039 0015")
# PROXY, TCP over IPv6, 36 bytes: [2001:db8::7]:40000 -> [2001:db8::1]:990
IPV6 = SIG + bytes.fromhex(
    "21 21 002420010DB800000000000000000000000720010DB80000000000000000000000019C40 03DE"
)
# LOCAL (HAProxy's health check): family UNSPEC, no address block.
LOCAL = SIG + bytes.fromhex("20 00 0000")
# LOCAL that still carries an IPv4 block: the spec says to ignore it.
LOCAL_WITH_BLOCK = SIG + bytes.fromhex("20 11 000C  C0000201 C6336401  3039 0015")
# IPv4 with two TLVs: PP2_TYPE_ALPN (0x01) "ftp" and PP2_TYPE_NOOP (0x04) of 2 bytes padding.
IPV4_TLVS = SIG + bytes.fromhex("21 11 0017  C0000201 C6336401  3039 0015  01 0003 667470  04 0002 0000")


def test_signature_is_the_specs() -> None:
    assert SIG == b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (IPV4, ProxyHeader("PROXY", ("192.0.2.1", 12345), ("198.51.100.1", 21))),
        (IPV6, ProxyHeader("PROXY", ("2001:db8::7", 40000), ("2001:db8::1", 990))),
        (LOCAL, ProxyHeader("LOCAL")),
        (LOCAL_WITH_BLOCK, ProxyHeader("LOCAL")),
        (IPV4_TLVS, ProxyHeader("PROXY", ("192.0.2.1", 12345), ("198.51.100.1", 21))),
    ],
)
def test_vectors(data: bytes, expected: ProxyHeader) -> None:
    assert missing(data) == 0
    assert parse(data) == expected


def test_missing_counts_up_to_the_end_of_the_header_and_never_past_it() -> None:
    """A reader that asks for missing() bytes at a time never takes what follows (a TLS ClientHello)."""
    assert missing(b"") == 16
    assert missing(IPV6[:5]) == 11
    assert missing(IPV6[:16]) == 36
    assert missing(IPV6[:40]) == 12
    assert missing(IPV4_TLVS[:-1]) == 1
    assert missing(IPV4 + b"\x16\x03\x01") == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"USER fbt_admin\r\n", "no PROXY protocol v2 signature"),
        (b"\x16\x03\x01\x02\x00", "no PROXY protocol v2 signature"),  # a TLS ClientHello
        (SIG[:6] + b"X" + SIG[7:], "no PROXY protocol v2 signature"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 12345 21\r\n", "v1 .text. header; only version 2"),
        (b"PROX", "v1 .text. header"),
        (SIG + bytes.fromhex("11 11 000C"), "version 1; only version 2"),
        (SIG + bytes.fromhex("31 11 000C"), "version 3"),
        (SIG + bytes.fromhex("22 11 000C"), "unknown command 0x2"),
    ],
)
def test_refused_as_soon_as_visible(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        missing(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (IPV4[:-1], "not one complete header"),  # truncated
        (IPV4 + b"x", "not one complete header"),
        (SIG + bytes.fromhex("21 11 0008 C0000201 C6336401"), "shorter than the 12-byte address block"),
        (SIG + bytes.fromhex("21 21 000C") + IPV4[16:], "shorter than the 36-byte address block"),
        (SIG + bytes.fromhex("21 12 000C") + IPV4[16:], r"0x12 under PROXY; only TCP"),  # UDP over IPv4
        (SIG + bytes.fromhex("21 31 0000"), "0x31"),  # unix stream
        (SIG + bytes.fromhex("21 00 0000"), "0x00"),  # PROXY with UNSPEC: no client address to use
        (SIG + bytes.fromhex("21 11 000E") + IPV4[16:] + b"\x01\x00", "TLV is cut short"),
        (
            SIG + bytes.fromhex("21 11 0011") + IPV4[16:] + bytes.fromhex("01 0005 6674"),
            "type 0x01 runs past",
        ),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse(data)


@pytest.mark.parametrize(
    ("first", "header"),
    [
        (IPV4, True),
        (IPV4[:4], True),
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 12345 21\r\n", True),
        (b"AUTH TLS\r\n", False),
        (b"\x16\x03\x01\x02\x00\x01", False),  # TLS
        (b"\r\n", False),  # too little to tell: taken as the empty command it is
        (b"", False),
    ],
)
def test_looks_like_header(first: bytes, header: bool) -> None:
    assert looks_like_header(first) is header


def _config(network: object) -> dict:
    users = [{"name": "a", "password_hash": DUMMY_HASH, "home": "/srv/a", "permissions": "full"}]
    config = {"tls": {"certificate": "/c.pem", "private_key": "/k.pem"}, "users": users}
    if network is not None:
        config["network"] = network
    return config


def test_network_defaults_to_no_load_balancer() -> None:
    config = parse_config(_config(None))
    assert config.network.proxy_protocol_from == ()
    assert config.network.proxy_header_timeout == 5


def test_network_parses_addresses_and_networks() -> None:
    config = parse_config(_config({"proxy_protocol_from": ["198.18.0.10", "2001:db8::/64"]}))
    assert config.network.proxy_protocol_from == (
        ipaddress.ip_network("198.18.0.10/32"),
        ipaddress.ip_network("2001:db8::/64"),
    )


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"proxy_protocol_from": "198.18.0.10"}, "network.proxy_protocol_from: expected list, got str"),
        (
            {"proxy_protocol_from": ["198.18.0.300"]},
            r"network.proxy_protocol_from\[0\]: '198.18.0.300' is not",
        ),
        (
            {"proxy_protocol_from": ["198.18.0.10", "198.18.0.0/16x"]},
            r"network.proxy_protocol_from\[1\]: '198.18.0.0/16x' is not a network",
        ),
        ({"proxy_protocol_from": ["198.18.0.1/24"]}, r"did you mean 198.18.0.0/24\?"),
        ({"proxy_protocol_from": [10]}, r"network.proxy_protocol_from\[0\]: expected str, got int"),
        ({"proxy_header_timeout": 0}, "network.proxy_header_timeout: "),
        ({"proxy_from": []}, "network.proxy_from: unknown key"),
    ],
)
def test_network_errors_name_the_key(network: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(_config(network))
