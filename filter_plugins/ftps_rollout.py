"""Rollout planning for site.yml: site by site, a canary host first, then the rest of the site in batches;
the nodes of an HA site one at a time, so that the others serve the site's address meanwhile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

DEFAULT_SITE = "default"


def site_runs(hosts: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """Consecutive hosts of one site, in play order (which Ansible batches in, so sizes must follow it)."""
    runs: list[tuple[str, list[str]]] = []
    for host in hosts:
        site = str(hostvars[host].get("ftps_site") or DEFAULT_SITE)
        if runs and runs[-1][0] == site:
            runs[-1][1].append(host)
        else:
            runs.append((site, [host]))
    return runs


def rollout_batches(
    hosts: Sequence[str],
    hostvars: Mapping[str, Mapping[str, Any]],
    canary: int = 1,
    batch_size: int | str = "100%",
) -> list[int]:
    """Batch sizes for `serial`: per site, `canary` hosts alone, then batches of `batch_size` of the rest.

    A batch never spans two sites, so a failure stops the rollout inside the site where it happened and
    every later site stays untouched. `batch_size` is a host count or a percentage of the site's
    remaining hosts. An HA site (a host of it has `ftps_site_vip`) goes one node at a time whatever the
    settings: site.yml drains each node on the load balancers while it is updated, and two drained at
    once could leave the address without a node.
    """
    if not isinstance(canary, int) or canary < 0:
        raise AnsibleFilterError(f"ftps_rollout_canary must be a whole number >= 0, got {canary!r}")
    batches: list[int] = []
    for _site, members in site_runs(hosts, hostvars):
        if any(hostvars[host].get("ftps_site_vip") for host in members):
            batches.extend([1] * len(members))
            continue
        first = min(canary, len(members))
        if first:
            batches.append(first)
        rest = len(members) - first
        size = _batch_hosts(batch_size, rest)
        while rest > 0:
            batches.append(min(size, rest))
            rest -= size
    return batches


def _batch_hosts(batch_size: int | str, remaining: int) -> int:
    text = str(batch_size).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100:
                raise ValueError
            return max(1, int(remaining * percent / 100))
        count = int(text)
        if count < 1:
            raise ValueError
    except ValueError:
        raise AnsibleFilterError(
            "ftps_rollout_batch_size must be a host count >= 1 or a percentage like '50%', "
            f"got {batch_size!r}"
        ) from None
    return count


class FilterModule:
    """Ansible's entry point for playbook-adjacent filters."""

    def filters(self) -> dict[str, Any]:
        return {"ftps_rollout_batches": rollout_batches}
