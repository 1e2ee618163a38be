"""PROXY protocol version 2 headers (HAProxy's proxy-protocol.txt, section 2.2), parsed and nothing else.

A load balancer in TCP mode connects to a node from its own address; with ``send-proxy-v2`` it first sends
a binary header naming the client's address, so that bans, limits and logs see the client. Our own small
parser rather than the ``proxy-protocol`` package of PyPI: that one is built around asyncio streams
(pyftpdlib is asyncore), and it would be one more pin to ship air-gapped to every host for about a
hundred lines of a fixed spec, checked here against the spec's layout and HAProxy's own headers (the HA
scenario's tests).

Only what a node needs is accepted: version 2, the LOCAL command (a load balancer's own health check:
the connection's real endpoints count) and the PROXY command for TCP over IPv4 or IPv6. Everything else
the spec allows (UDP, unix sockets, UNSPEC under PROXY) cannot be an FTP client and is refused, as is the
text header of version 1. TLVs are walked for consistency and otherwise skipped. The reader never asks for
a byte past the header (``missing``), so what follows it, a TLS ClientHello or an FTP command, stays in the
socket.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
FIXED_LENGTH = 16  # signature, version/command, family/transport, length
_V1_START = b"PROXY"
_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
# family/transport byte -> (address block length, address length, ip_address class)
_TCP_FAMILIES = {0x11: (12, 4, ipaddress.IPv4Address), 0x21: (36, 16, ipaddress.IPv6Address)}
_TLV_HEAD = 3  # type (1 byte), length (2 bytes)


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY protocol v2 header this server accepts; the message says why."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header: for LOCAL, source and destination are None (the connection's own endpoints count)."""

    command: str
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None


def looks_like_header(first: bytes) -> bool:
    """Whether the first bytes of a connection are a PROXY protocol header (v2, or v1's text).

    For connections from addresses that are no load balancer: such a header is refused, never read as an
    FTP command or a TLS record. Four bytes of the v2 signature are enough (no FTP command line and no
    TLS record starts with an empty line).
    """
    if first.startswith(_V1_START):
        return True
    head = first[: len(SIGNATURE)]
    return len(head) >= 4 and SIGNATURE.startswith(head)


def missing(data: bytes) -> int:
    """How many bytes the header that starts with data still lacks (0: complete).

    Raises ProxyHeaderError as soon as data cannot start an accepted header, so a connection is dropped
    without waiting for bytes that would change nothing.
    """
    head = data[: len(SIGNATURE)]
    if not SIGNATURE.startswith(head):
        if data.startswith(_V1_START[: len(data)]):
            raise ProxyHeaderError("a PROXY protocol v1 (text) header; only version 2 is accepted")
        raise ProxyHeaderError("no PROXY protocol v2 signature")
    if len(data) > len(SIGNATURE):
        _command(data[len(SIGNATURE)])
    if len(data) < FIXED_LENGTH:
        return FIXED_LENGTH - len(data)
    (length,) = struct.unpack_from("!H", data, 14)
    return max(0, FIXED_LENGTH + length - len(data))


def parse(data: bytes) -> ProxyHeader:
    """Parse one complete header (exactly its bytes, as ``missing`` measured them)."""
    if missing(data) or len(data) != FIXED_LENGTH + struct.unpack_from("!H", data, 14)[0]:
        raise ProxyHeaderError(f"{len(data)} bytes are not one complete header")
    command = _command(data[12])
    family = data[13]
    body = data[FIXED_LENGTH:]
    if command == "LOCAL":
        return ProxyHeader("LOCAL")  # the spec: the protocol block, family included, is to be ignored
    if family not in _TCP_FAMILIES:
        raise ProxyHeaderError(
            f"address family/transport 0x{family:02x} under PROXY; only TCP over IPv4 (0x11) or IPv6 (0x21)"
        )
    block, size, kind = _TCP_FAMILIES[family]
    if len(body) < block:
        raise ProxyHeaderError(f"length {len(body)} is shorter than the {block}-byte address block")
    source = kind(body[:size])
    destination = kind(body[size : 2 * size])
    source_port, destination_port = struct.unpack_from("!HH", body, 2 * size)
    _check_tlvs(body[block:])
    return ProxyHeader("PROXY", (str(source), source_port), (str(destination), destination_port))


def _command(version_command: int) -> str:
    version, command = version_command >> 4, version_command & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"version {version}; only version 2 is accepted")
    if command not in _COMMANDS:
        raise ProxyHeaderError(f"unknown command 0x{command:x} (LOCAL 0x0 and PROXY 0x1 exist)")
    return _COMMANDS[command]


def _check_tlvs(tlvs: bytes) -> None:
    """The TLVs after the addresses must fill the rest exactly; their content is not used."""
    offset = 0
    while offset < len(tlvs):
        if len(tlvs) - offset < _TLV_HEAD:
            raise ProxyHeaderError("a TLV is cut short in its type and length")
        kind, length = struct.unpack_from("!BH", tlvs, offset)
        offset += _TLV_HEAD + length
        if offset > len(tlvs):
            raise ProxyHeaderError(f"the TLV of type 0x{kind:02x} runs past the end of the header")
