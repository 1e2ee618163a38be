"""Virtual users from the config, checked against password hashes, with pyftpdlib's authorizer interface.

pyftpdlib's DummyAuthorizer compares plain passwords with ``!=``; we store only password hashes and
verify them off the event loop (see login.PasswordLogin.ftp_PASS), so this class exposes a
lookup for the hash plus the permission queries pyftpdlib's handler calls.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

from ftpsd.config import User


def admits(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network], address: str) -> bool:
    """The allowed_networks rule, in this one place (the role's health gate asks it too): no network at all
    admits every address.

    The listener is dual-stack, so an IPv4 client arrives as ::ffff:a.b.c.d; it is matched as the IPv4
    address it is, against the IPv4 networks (and never against an IPv6 ::ffff:0:0/96 entry).
    """
    networks = tuple(networks)
    if not networks:
        return True
    client = ipaddress.ip_address(address)
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        client = client.ipv4_mapped
    return any(client in network for network in networks)


class ConfigAuthorizer:
    """Immutable user table; a reload builds a new one and existing sessions keep theirs."""

    def __init__(self, users: Iterable[User]) -> None:
        self._users = {user.name: user for user in users}

    def lookup(self, username: str) -> User | None:
        return self._users.get(username)

    def get_home_dir(self, username: str) -> str:
        return os.path.realpath(self._users[username].home)

    def get_perms(self, username: str) -> str:
        user = self._users.get(username)
        return user.permissions if user else ""

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        """Permissions apply to the whole home tree; per-directory overrides are not offered."""
        return perm in self.get_perms(username)

    def get_msg_login(self, username: str) -> str:
        return "Login successful."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    # pyftpdlib calls these around filesystem operations; we never switch uid (no root needed).
    def impersonate_user(self, username: str, password: str) -> None:
        """No-op: the server runs as one unprivileged system user."""

    def terminate_impersonation(self, username: str) -> None:
        """No-op, see impersonate_user."""
