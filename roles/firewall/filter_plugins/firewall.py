"""Filters of the firewall role: what is wrong with the fed ports, ranges and restricted ports, in words."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

_LOWEST, _HIGHEST = 1, 65535


def port_problems(ports: list[int], ranges: list[dict[str, int]]) -> list[str]:
    """One sentence per problem: out-of-range numbers, reversed ranges, overlaps and duplicates."""
    problems: list[str] = []
    intervals: list[tuple[int, int, str]] = []
    for port in ports:
        intervals.append((port, port, f"port {port}"))
    for item in ranges:
        start, end = item["start"], item["end"]
        if start > end:
            problems.append(f"range {start}-{end}: start is above end; write it as {end}-{start}")
            start, end = end, start
        intervals.append((start, end, f"range {start}-{end}"))
    for start, end, label in intervals:
        if start < _LOWEST or end > _HIGHEST:
            problems.append(f"{label}: ports must be {_LOWEST}-{_HIGHEST}")
    intervals.sort()
    for (_, previous_end, previous), (start, _, label) in itertools.pairwise(intervals):
        if start <= previous_end:
            problems.append(f"{label} overlaps {previous}; list every port once")
    return problems


def _network_problem(value: str) -> str | None:
    """ftpsd's rule for a CIDR network (as allowed_networks takes it): the toolkit has one definition."""
    try:
        from ftpsd.configchecks import network  # noqa: PLC0415 - needed only when restricted ports are fed
    except ImportError as err:
        raise AnsibleFilterError(
            "firewall_restricted_tcp_ports: checking its networks needs the ftpsd package on the controller: "
            f"run `pip install -e ftpsd` in the Python environment of ansible-playbook ({err})"
        ) from err
    return network(value)


def _source_problems(where: str, sources: list[Any]) -> list[str]:
    """The sources of one restricted entry: not empty, each a CIDR network."""
    if not sources:
        return [f"{where}: sources is empty; list the networks (CIDR) that may connect"]
    return [
        f"{where}: sources[{position}]: {problem}"
        for position, network in enumerate(sources)
        if (problem := _network_problem(str(network)))
    ]


def _overlap(one: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two port intervals (first, last) share a port."""
    return one[0] <= other[1] and other[0] <= one[1]


def restricted_problems(
    restricted: list[dict[str, Any]],
    ports: list[int],
    ranges: list[dict[str, int]],
    restricted_ranges: list[dict[str, Any]] | None = None,
) -> list[str]:
    """One sentence per problem of firewall_restricted_tcp_ports / _port_ranges: bad ports, no or bad source
    network, a port listed twice or already open to everyone (the restriction would mean nothing)."""
    problems: list[str] = []
    entries = [
        (f"firewall_restricted_tcp_ports[{index}] (port {item['port']})", item["port"], item["port"], item)
        for index, item in enumerate(restricted)
    ] + [
        (
            f"firewall_restricted_tcp_port_ranges[{index}] (range {item['start']}-{item['end']})",
            item["start"],
            item["end"],
            item,
        )
        for index, item in enumerate(restricted_ranges or [])
    ]
    open_intervals = [(port, port) for port in ports] + [(r["start"], r["end"]) for r in ranges]
    seen: list[tuple[int, int]] = []
    for where, start, end, item in entries:
        if start > end:
            problems.append(f"{where}: start is above end; write it as {end}-{start}")
        if start < _LOWEST or end > _HIGHEST:
            problems.append(f"{where}: ports must be {_LOWEST}-{_HIGHEST}")
        if any(_overlap((start, end), other) for other in seen):
            problems.append(f"{where}: listed twice; give each port once with all its sources")
        seen.append((start, end))
        if any(_overlap((start, end), interval) for interval in open_intervals):
            problems.append(f"{where}: already open to everyone by firewall_allowed_tcp_ports/_port_ranges")
        problems.extend(_source_problems(where, item["sources"]))
    return problems


def _per_source(restricted: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """{key, family, source} per entry and source network, family as firewalld spells it (ipv4, ipv6)."""
    return [
        {key: item[key], "family": f"ipv{ipaddress.ip_network(source).version}", "source": str(source)}
        for item in restricted
        for source in item["sources"]
    ]


def restricted_rules(
    restricted: list[dict[str, Any]], restricted_ranges: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """{port, family, source} per restricted port or range and source network, the port a string (9821, or
    start-end for a range) as both nftables and firewalld's rich rules take it."""
    ports = [{**item, "port": str(item["port"])} for item in restricted]
    ranges = [{**item, "port": f"{item['start']}-{item['end']}"} for item in restricted_ranges or []]
    return _per_source(ports + ranges, "port")


def restricted_protocol_problems(restricted: list[dict[str, Any]]) -> list[str]:
    """One sentence per problem of firewall_restricted_protocols: listed twice, no or bad sources."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(restricted):
        protocol, sources = item["protocol"], item["sources"]
        where = f"firewall_restricted_protocols[{index}] ({protocol})"
        if protocol in seen:
            problems.append(f"{where}: listed twice; give each protocol once with all its sources")
        seen.add(protocol)
        problems.extend(_source_problems(where, sources))
    return problems


def restricted_protocol_rules(restricted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """{protocol, family, source} per restricted protocol and source network."""
    return _per_source(restricted, "protocol")


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "firewall_port_problems": port_problems,
            "firewall_restricted_problems": restricted_problems,
            "firewall_restricted_rules": restricted_rules,
            "firewall_restricted_protocol_problems": restricted_protocol_problems,
            "firewall_restricted_protocol_rules": restricted_protocol_rules,
        }
