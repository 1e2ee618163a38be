"""Filters of the ftps_vip role: what is wrong with its variables, in words."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

_UNIT = re.compile(r"^[A-Za-z0-9@._-]+$")


def _is_ip(value: object, version: int) -> bool:
    """Whether value is an address of this IP version (4 or 6)."""
    try:
        return ipaddress.ip_address(str(value)).version == version
    except ValueError:
        return False


def _outside(name: str, value: int, low: int, high: int) -> list[str]:
    return [] if low <= value <= high else [f"{name} must be {low}-{high}, got {value}"]


def vip_problems(settings: dict[str, Any]) -> list[str]:
    """One sentence per problem; settings are the role's variables without their ftps_vip_ prefix."""
    problems: list[str] = []
    if not _is_ip(settings["address"], 4):
        problems.append(
            f"ftps_vip_address must be an IPv4 address (site.yml feeds the site's ftps_site_vip), "
            f"got {settings['address']!r}"
        )
    problems += _outside("ftps_vip_prefix_length", settings["prefix_length"], 1, 32)
    if settings["address6"] and not _is_ip(settings["address6"], 6):
        problems.append(
            f"ftps_vip_address6 must be empty or an IPv6 address (site.yml feeds ftps_site_vip6), "
            f"got {settings['address6']!r}"
        )
    problems += _outside("ftps_vip_prefix_length6", settings["prefix_length6"], 1, 128)
    problems += _outside("ftps_vip_router_id", settings["router_id"], 1, 255)
    problems += _outside("ftps_vip_priority", settings["priority"], 1, 254)
    problems += _outside("ftps_vip_advert_interval", settings["advert_interval"], 1, 255)
    for name in ("track_interval", "track_fall", "track_rise"):
        problems += _outside(f"ftps_vip_{name}", settings[name], 1, 3600)
    problems += [
        f"ftps_vip_unicast_peers[{index}]: {peer!r} is not an IPv4 address"
        for index, peer in enumerate(settings["unicast_peers"])
        if not _is_ip(peer, 4)
    ]
    if settings["address"] in settings["unicast_peers"]:
        problems.append("ftps_vip_unicast_peers lists the floating address; list the peers' own addresses")
    if not _UNIT.match(settings["track_service"]):
        problems.append(f"ftps_vip_track_service must be a unit name, got {settings['track_service']!r}")
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ftps_vip_problems": vip_problems}
