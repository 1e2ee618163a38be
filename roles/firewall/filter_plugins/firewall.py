"""Filter of the firewall role: what is wrong with the fed ports and ranges, in words to act on."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

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


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"firewall_port_problems": port_problems}
