"""Judging the address a server announces in its PASV reply against the one the client used.

A server behind NAT that is not told its public address (the masquerade address) announces its
private one; clients that trust the announcement then try to reach an address that does not exist
for them. Comparing the two addresses tells that apart from a firewall problem.
"""

from __future__ import annotations

import ipaddress

_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # shared address space (RFC 6598), not global


def is_internal(address: str) -> bool:
    """Private, loopback, link-local or carrier-grade NAT: not reachable from the internet."""
    ip = ipaddress.ip_address(address)
    return ip.is_private or ip.is_loopback or ip.is_link_local or (ip.version == 4 and ip in _CGNAT)


def private_announced_to_public(announced: str, connected: str) -> bool:
    """True for the classic missing-masquerade case: internal address announced to a client that
    reached the server on a public one."""
    return announced != connected and is_internal(announced) and not is_internal(connected)
