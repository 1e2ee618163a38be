"""Filters of the ftps_storage role: what is wrong with its variables, in words."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any

_VOLUME = re.compile(r"^[A-Za-z0-9_-]+$")


def storage_problems(settings: dict[str, Any]) -> list[str]:
    """One sentence per problem; settings are the role's variables without their ftps_storage_ prefix."""
    problems: list[str] = []
    servers, clients = settings["servers"], settings["clients"]
    if not _VOLUME.match(settings["volume"]):
        problems.append(f"ftps_storage_volume must be letters, digits, - or _, got {settings['volume']!r}")
    if not servers:
        problems.append("ftps_storage_servers is empty: site.yml feeds the site's ftps_storage hosts")
    elif len(servers) == 2:
        problems.append(
            "ftps_storage_servers has two hosts: a replica 2 volume cannot tell which copy is right when the"
            " two disagree (split brain); use one storage host or three"
        )
    if len(set(servers)) != len(servers):
        problems.append(f"ftps_storage_servers lists a host twice: {servers}")
    if servers and settings["address"] not in servers:
        problems.append(
            f"ftps_storage_address ({settings['address']!r}) is not one of ftps_storage_servers {servers}"
        )
    if not clients:
        problems.append("ftps_storage_clients is empty: site.yml feeds the addresses of the site's nodes")
    for name in ("brick_path", "mount_path"):
        path = str(settings[name])
        if not path.startswith("/") or posixpath.normpath(path) == "/":
            problems.append(f"ftps_storage_{name} must be an absolute folder other than /, got {path!r}")
    ports = [settings["management_port"], settings["brick_port_start"], settings["brick_port_end"]]
    if not all(1 <= port <= 65535 for port in ports):
        problems.append(f"ftps_storage_management_port, _brick_port_start, _end must be 1-65535, got {ports}")
    if settings["brick_port_start"] > settings["brick_port_end"]:
        problems.append("ftps_storage_brick_port_start is above ftps_storage_brick_port_end")
    if settings["brick_port_start"] <= settings["management_port"] <= settings["brick_port_end"]:
        problems.append("ftps_storage_management_port lies inside the brick port range")
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"ftps_storage_problems": storage_problems}
