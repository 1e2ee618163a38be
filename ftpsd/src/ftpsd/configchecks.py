"""Checks of single configuration values: each returns None, or the problem in words for the operator.

The parser (config.py) adds the key path to the message, so a check only says what is wrong with the
value and, where it helps, how to produce a valid one.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from ftpsd.passwords import parse_hash
from ftpsd.permissions import resolve_permissions

# A banner such as "vsFTPd 3.0.5" tells an attacker which exploits to try.
_VERSION_RE = re.compile(r"\d+\.\d+")


def port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else f"{value} is not a port number (1-65535)"


def port_or_zero(value: int) -> str | None:
    return None if value == 0 else port(value)


def positive(value: int) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: int) -> str | None:
    return None if value >= 0 else "must not be negative"


def one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"{value!r} is not one of {', '.join(choices)}"

    return check


def _refusal(parse: Callable[[str], object], value: str) -> ValueError | None:
    """The ValueError with which ``parse`` refuses ``value``, or None if it accepts it."""
    try:
        parse(value)
    except ValueError as err:
        return err
    return None


def ip_address(value: str) -> str | None:
    return None if _refusal(ipaddress.ip_address, value) is None else f"{value!r} is not an IP address"


def ipv4_or_empty(value: str) -> str | None:
    if not value or _refusal(ipaddress.IPv4Address, value) is None:
        return None
    return f"{value!r} is not an IPv4 address (PASV replies can only carry IPv4)"


def network(value: str) -> str | None:
    """A CIDR network (IPv4 or IPv6) without host bits, as allowed_networks takes it."""
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        try:
            hint = f"; did you mean {ipaddress.ip_network(value, strict=False)}?"
        except ValueError:
            hint = ""
        return (
            f"{value!r} is not a network in CIDR notation such as 192.0.2.0/24 or 2001:db8::/32 ({err}){hint}"
        )
    return None


def banner(value: str) -> str | None:
    if not value or len(value) > 200 or any(c in value for c in "\r\n\0"):
        return "must be one line of 1-200 characters"
    if _VERSION_RE.search(value):
        return "must not contain a version number"
    return None


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def absolute_path(value: str) -> str | None:
    return None if PurePosixPath(value).is_absolute() else f"{value!r} is not an absolute path"


def user_name(value: str) -> str | None:
    if not value or len(value) > 64 or not value.isprintable() or " " in value:
        return "must be 1-64 printable characters without spaces"
    return None


def password_hash(value: str) -> str | None:
    err = _refusal(parse_hash, value)
    if err is None:
        return None
    if not value.startswith("$"):
        return "this is not a password hash; generate one with `ftpsd hash-password`"
    return f"{err}; generate a valid one with `ftpsd hash-password`"


def permissions(value: str) -> str | None:
    err = _refusal(resolve_permissions, value)
    return None if err is None else str(err)


def path_or_empty(value: str) -> str | None:
    return absolute_path(value) if value else None


def folders_overlap(path: str, other: str) -> str | None:
    """How two quota folders overlap ("the same folder", "nested"), or None: a file may count for one
    quota only. The role's variable checks ask this too, so both refuse the same inventories."""
    first, second = posixpath.normpath(path), posixpath.normpath(other)
    if first == second:
        return "the same folder"
    if first.startswith(second.rstrip("/") + "/") or second.startswith(first.rstrip("/") + "/"):
        return "nested"
    return None
