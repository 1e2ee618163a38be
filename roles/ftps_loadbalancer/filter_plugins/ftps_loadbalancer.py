"""Filters of the ftps_loadbalancer role: what is wrong with its variables, in words."""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# HAProxy's time format: a number and an optional unit.
_TIME = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")


def _is_ip(value: object, version: int) -> bool:
    """Whether value is an address of this IP version (4 or 6)."""
    try:
        return ipaddress.ip_address(str(value)).version == version
    except ValueError:
        return False


def _port_problems(ports: list[int], nodes: list[dict[str, Any]]) -> list[str]:
    """Control ports and nodes: present, unique, passive slices that overlap nothing."""
    problems: list[str] = []
    if not ports:
        problems.append("ftps_loadbalancer_control_ports is empty: list the FTPS control ports (21, 990)")
    if len(set(ports)) != len(ports):
        problems.append(f"ftps_loadbalancer_control_ports lists a port twice: {ports}")
    intervals = [(port, port, f"control port {port}") for port in ports]
    if not nodes:
        problems.append("ftps_loadbalancer_nodes is empty: site.yml feeds the site's ftps_servers")
    names = [node["name"] for node in nodes]
    if len(set(names)) != len(names):
        problems.append(f"ftps_loadbalancer_nodes: names must be unique, got {names}")
    for index, node in enumerate(nodes):
        where = f"ftps_loadbalancer_nodes[{index}] ({node['name']})"
        if not _NAME.match(node["name"]):
            problems.append(f"{where}: name must be letters, digits, '.', '-' or '_'")
        if not str(node["address"]).strip():
            problems.append(f"{where}: address is empty")
        start, end = node["passive_port_start"], node["passive_port_end"]
        if start > end:
            problems.append(f"{where}: passive_port_start {start} is above passive_port_end {end}")
        intervals.append((start, end, f"{where} passive slice {start}-{end}"))
    for start, end, label in intervals:
        if start < 1 or end > 65535:
            problems.append(f"{label}: ports must be 1-65535")
    intervals.sort()
    for (_, previous_end, previous), (start, _, label) in itertools.pairwise(intervals):
        if start <= previous_end:
            problems.append(f"{label} overlaps {previous}; each node needs a slice of its own")
    return problems


def loadbalancer_problems(settings: dict[str, Any]) -> list[str]:
    """One sentence per problem; settings are the role's variables without their ftps_loadbalancer_ prefix."""
    problems: list[str] = []
    if not _is_ip(settings["address"], 4):
        problems.append(
            "ftps_loadbalancer_address must be an IPv4 address (site.yml feeds the site's ftps_site_vip), "
            f"got {settings['address']!r}"
        )
    if settings["address6"] and not _is_ip(settings["address6"], 6):
        problems.append(
            "ftps_loadbalancer_address6 must be empty or an IPv6 address (site.yml feeds ftps_site_vip6),"
            f" got {settings['address6']!r}"
        )
    problems += _port_problems(settings["control_ports"], settings["nodes"])
    for name in ("check_interval", "check_fall", "check_rise", "maxconn"):
        if settings[name] < 1:
            problems.append(f"ftps_loadbalancer_{name} must be at least 1, got {settings[name]}")
    for name in ("timeout_connect", "timeout_idle"):
        if not _TIME.match(str(settings[name])):
            problems.append(f"ftps_loadbalancer_{name} must be a time like 5s or 15m, got {settings[name]!r}")
    if not str(settings["socket"]).startswith("/"):
        problems.append(f"ftps_loadbalancer_socket must be an absolute path, got {settings['socket']!r}")
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ftps_loadbalancer_problems": loadbalancer_problems}
