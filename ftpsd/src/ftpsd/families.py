"""Address families: which data-connection commands an IPv6 control connection may use.

PASV and PORT carry an IPv4 address and nothing else (RFC 959); on a real IPv6 control connection
pyftpdlib would announce or dial an IPv6 address in an IPv4 format. RFC 2428 gives EPSV and EPRT for
that, and its 522 reply ("network protocol not supported") for a request in the wrong family, which
is what clients such as curl and lftp expect before they switch. An IPv4 client on the dual-stack
listener (peer address ``::ffff:a.b.c.d``) is an IPv4 client here: PASV and PORT work for it.
"""

from __future__ import annotations

import ipaddress

_USE_EXTENDED = "522 Network protocol not supported: {command} carries only IPv4 addresses; use {extended}."


def is_ipv6_peer(address: str) -> bool:
    """True for a real IPv6 peer, False for IPv4 and IPv4-mapped (dual-stack) peers."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.version == 6 and ip.ipv4_mapped is None


class AddressFamilies:
    """Refuse PASV and PORT on IPv6 control connections with RFC 2428's 522, naming EPSV and EPRT."""

    def ftp_PASV(self, line: str) -> None:
        if is_ipv6_peer(self.remote_ip):
            self.respond(_USE_EXTENDED.format(command="PASV", extended="EPSV"))
            return
        super().ftp_PASV(line)

    def ftp_PORT(self, line: str) -> None:
        if is_ipv6_peer(self.remote_ip):
            self.respond(_USE_EXTENDED.format(command="PORT", extended="EPRT"))
            return
        super().ftp_PORT(line)
