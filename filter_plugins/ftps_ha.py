"""HA sites for site.yml (issue 19): the hosts of a site, each node's passive slice, the inventory checks.

An HA site has `ftps_site_vip` (the address users connect to) and `ftps_site_passive_port_start/_end` (the
passive range on that address); its ftps_servers are the nodes, its ftps_loadbalancers hold the address
and its ftps_storage hosts serve the shared data root. Membership is the host's `ftps_site`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

ROLE_GROUPS = ("ftps_servers", "ftps_loadbalancers", "ftps_storage")


def site_hosts(group: Sequence[str], hostvars: Mapping[str, Mapping[str, Any]], site: str) -> list[str]:
    """The hosts of a group whose ftps_site is this site, in inventory order."""
    return [host for host in group if str(hostvars[host].get("ftps_site", "")) == str(site)]


def passive_slice(start: int, end: int, nodes: Sequence[str], node: str) -> dict[str, int]:
    """The node's slice of the site's passive range: equal parts in inventory order, the rest unused.

    Adding or removing a node moves every slice: the load balancers and all nodes must be redeployed.
    """
    if node not in nodes:
        raise AnsibleFilterError(f"ftps_ha_passive_slice: {node} is not a node of its site ({list(nodes)})")
    size = (int(end) - int(start) + 1) // len(nodes)
    if size < 1:
        raise AnsibleFilterError(
            f"ftps_ha_passive_slice: the passive range {start}-{end} has fewer ports than the site has nodes"
        )
    first = int(start) + nodes.index(node) * size
    return {"start": first, "end": first + size - 1}


def address(host: str, hostvars: Mapping[str, Mapping[str, Any]]) -> str:
    """The address other hosts of the site reach host at (and see its connections come from)."""
    return str(hostvars[host].get("ansible_host") or host)


def node_entry(
    node: str, hostvars: Mapping[str, Mapping[str, Any]], start: int, end: int, nodes: Sequence[str]
) -> dict[str, Any]:
    """What the load balancer needs of a node: its name, address and passive slice."""
    part = passive_slice(start, end, nodes, node)
    return {
        "name": node,
        "address": address(node, hostvars),
        "passive_port_start": part["start"],
        "passive_port_end": part["end"],
    }


def host_network(value: str) -> str:
    """A firewall source for an address (a.b.c.d/32, x::y/128); a network in CIDR notation stays as it is."""
    if "/" in str(value):
        return str(value)
    return str(ipaddress.ip_network(str(value)))


def direct_network_problems(networks: object) -> list[str]:
    """ftps_site_direct_networks: a list of CIDR networks, by ftpsd's rule for allowed_networks."""
    if not isinstance(networks, list):
        return [f"ftps_site_direct_networks must be a list of networks in CIDR notation, got {networks!r}"]
    from ftpsd.configchecks import network  # noqa: PLC0415 - the toolkit's one definition of a network

    return [
        f"ftps_site_direct_networks[{position}]: {problem}"
        for position, value in enumerate(networks)
        if (problem := network(str(value)))
    ]


def restricted_port(port: int, sources: Sequence[str]) -> dict[str, Any]:
    """A firewall_restricted_tcp_ports entry."""
    return {"port": int(port), "sources": list(sources)}


def _is_ip(value: object, version: int) -> bool:
    """Whether value is an address of this IP version (4 or 6)."""
    try:
        return ipaddress.ip_address(str(value)).version == version
    except ValueError:
        return False


def shared_account_problems(
    host: str, hostvars: Mapping[str, Mapping[str, Any]], nodes: Sequence[str]
) -> list[str]:
    """The nodes write one filesystem: their service accounts need one uid and gid, which only the inventory
    can promise (each host would otherwise pick its next free system id)."""
    problems = []
    for variable in ("ftps_server_uid", "ftps_server_gid"):
        value = hostvars[host].get(variable)
        if value is None:
            problems.append(
                f"{variable}: {host} is a node of an HA site; its nodes share files and need one fixed id"
            )
            continue
        others = sorted({str(hostvars[n].get(variable)) for n in nodes if hostvars[n].get(variable) != value})
        if others:
            problems.append(
                f"{variable} of {host} is {value}, other nodes of its site have {', '.join(others)}: use one"
            )
    return problems


def ha_problems(
    host: str, hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]]
) -> list[str]:
    """One sentence per problem of the HA variables of one host (node, load balancer or storage host)."""
    own = hostvars[host]
    member = [group for group in ROLE_GROUPS if host in groups.get(group, [])]
    problems: list[str] = []
    if len(member) > 1:
        problems.append(f"{host} is in {' and '.join(member)}: a host has one function in an HA site")
    site = own.get("ftps_site")
    vip = str(own.get("ftps_site_vip") or "")
    ha_function = [group for group in member if group != "ftps_servers"]
    if ha_function and not site:
        problems.append(f"{host} is in {ha_function[0]} but has no ftps_site: set the site it serves")
        return problems
    nodes = site_hosts(groups.get("ftps_servers", []), hostvars, site) if site else []
    if "ftps_loadbalancers" in member and not vip:
        problems.append(f"ftps_site_vip: the load balancer {host} serves site {site}, which has none")
    if ha_function and not nodes:
        problems.append(f"{host} ({ha_function[0]}) serves site {site}, which has no host in ftps_servers")
    if not vip:
        return problems
    if not _is_ip(vip, 4):
        problems.append(f"ftps_site_vip must be an IPv4 address (PASV carries IPv4 only), got {vip!r}")
    vip6 = str(own.get("ftps_site_vip6") or "")
    if vip6 and not _is_ip(vip6, 6):
        problems.append(
            f"ftps_site_vip6 must be empty or an IPv6 address (EPSV clients use it), got {vip6!r}"
        )
    start, end = own.get("ftps_site_passive_port_start"), own.get("ftps_site_passive_port_end")
    if not (isinstance(start, int) and isinstance(end, int) and 1 <= start <= end <= 65535):
        problems.append(
            "ftps_site_passive_port_start/_end: an HA site needs its passive range on ftps_site_vip, two"
            f" ports 1-65535 with start not above end, got {start!r}-{end!r}"
        )
    elif nodes and (end - start + 1) // len(nodes) < 1:
        problems.append(f"ftps_site_passive_port_start/_end: {start}-{end} has fewer ports than nodes")
    if "ftps_servers" in member:
        masquerade = str(own.get("ftps_server_masquerade_address") or "")
        if masquerade not in ("", vip):
            problems.append(
                f"ftps_server_masquerade_address ({masquerade}) of {host}: a node of an HA site announces"
                f" ftps_site_vip ({vip}); leave it empty"
            )
        if not site_hosts(groups.get("ftps_loadbalancers", []), hostvars, site):
            problems.append(f"ftps_site_vip is set for site {site}, but no ftps_loadbalancers host serves it")
        problems.extend(shared_account_problems(host, hostvars, nodes))
        problems.extend(direct_network_problems(own.get("ftps_site_direct_networks", [])))
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "ftps_ha_site_hosts": site_hosts,
            "ftps_ha_passive_slice": passive_slice,
            "ftps_ha_problems": ha_problems,
            "ftps_ha_node_entry": node_entry,
            "ftps_ha_address": address,
            "ftps_ha_restricted_port": restricted_port,
            "ftps_ha_host_network": host_network,
        }
