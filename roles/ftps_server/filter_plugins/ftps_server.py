"""Filters of the ftps_server role: password hashing, user checks, what a profile may do, the folder plan.

They run on the controller and use the ftpsd package itself (pip install -e ftpsd), so the hash format and
the permission profiles are exactly those the server accepts; nothing here reimplements them. The rules of
ftpsd.permissions come from the installed package or, without it, from the module file in the ftpsd source
tree next to the role in this repository (roles/../ftpsd/src). Playbooks that import the role (even only
its validate.yml) see these filters too: the health gate asks ftps_server_capabilities what a user may do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import posixpath
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.formatters import human_to_bytes

_SALT_DOMAIN = "ftpsd-salt:"
# ftpsd.permissions in the source tree of this repository, for a controller without the ftpsd package.
_PERMISSIONS_SOURCE = Path(__file__).resolve().parents[3] / "ftpsd" / "src" / "ftpsd" / "permissions.py"


def _ftpsd(name: str) -> Any:  # noqa: ANN401 - a module
    """Import an ftpsd module, or say how to make it importable."""
    try:
        return __import__(f"ftpsd.{name}", fromlist=[name])
    except ImportError as err:
        raise AnsibleFilterError(
            "the ftps_server role needs the ftpsd package on the controller (passwords are hashed there): "
            f"run `pip install -e ftpsd` in the Python environment of ansible-playbook ({err})"
        ) from err


def _permissions() -> ModuleType:
    """ftpsd.permissions, installed or from the repository's source tree: the one copy of the rules."""
    try:
        import ftpsd.permissions  # noqa: PLC0415 - optional on the controller, see _PERMISSIONS_SOURCE
    except ImportError:
        if not _PERMISSIONS_SOURCE.is_file():
            return _ftpsd("permissions")  # raises with the instructions
        spec = importlib.util.spec_from_file_location("ftpsd_permissions_source", _PERMISSIONS_SOURCE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return ftpsd.permissions


def present_users(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The users that have a login (no state, or state present): the one definition of "present"."""
    return [user for user in users if user.get("state", "present") == "present"]


def capabilities(spec: object) -> dict[str, bool]:
    """What a profile or permission letters allow (list, read, write, overwrite, delete), by ftpsd's rules."""
    try:
        return _permissions().capabilities(str(spec))
    except ValueError as err:
        raise AnsibleFilterError(f"ftps_server_users permissions: {err}") from err


def _salt(host: str, user: str) -> bytes:
    """Deterministic per host and user, never derived from the password: re-runs give the same hash."""
    return hashlib.sha256(f"{_SALT_DOMAIN}{host}:{user}".encode()).digest()[:16]


def _under(path: str, root: str) -> bool:
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _password_hash(password: object, host: str, user: str) -> str:
    """The ftpsd password hash (argon2id) of one password, salted for this host and user."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError(f"ftps_server_users: user {user!r} has no password")
    return _ftpsd("passwords").hash_password(str(password), _salt(host, user))


def size(value: object) -> int:
    """Bytes of a size as the inventory writes it: an integer or "10M" (powers of 1024).

    The same reading as the argument spec's type bytes; 0 (or nothing) stays 0, ftpsd's "no limit".
    """
    try:
        return int(human_to_bytes(value or 0))
    except ValueError as err:
        raise AnsibleFilterError(f"not a size in bytes: {value!r} ({err})") from err


def public_users(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Present users as the config, the local facts and the report show them: everything but the password."""
    return [
        {
            "name": user["name"],
            "home": posixpath.normpath(user["home"]),
            "permissions": user["permissions"],
            "allowed_networks": list(user.get("allowed_networks") or []),
            "upload_rate": size(user.get("upload_rate")),
            "download_rate": size(user.get("download_rate")),
        }
        for user in present_users(users)
    ]


def accounts(users: list[dict[str, Any]], host: str) -> list[dict[str, Any]]:
    """The [[users]] entries of the config: the public view of each present user plus its password hash."""
    return [
        user | {"password_hash": _password_hash(entry.get("password"), host, user["name"])}
        for user, entry in zip(public_users(users), present_users(users), strict=True)
    ]


def quotas(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The [[quotas]] entries of the config: normalised paths and sizes in bytes."""
    return [
        {
            "path": posixpath.normpath(entry["path"]),
            "max_bytes": size(entry.get("max_bytes")),
            "max_files": int(entry.get("max_files") or 0),
        }
        for entry in entries
    ]


def admitted(users: list[dict[str, Any]], address: str) -> list[dict[str, Any]]:
    """The users whose allowed_networks admit a client at address, by ftpsd's own rule (authorizer.admits).

    The health gate logs in from the controller, so it can check only these; '' (the controller's address
    unknown) admits only users without allowed_networks.
    """
    rule = _ftpsd("authorizer").admits
    return [
        user
        for user in users
        if not user.get("allowed_networks")
        or (address and rule(map(ipaddress.ip_network, user["allowed_networks"]), address))
    ]


def _permission_problem(spec: str) -> str:
    """'' if ftpsd accepts the permission profile or letters, else its explanation."""
    try:
        _permissions().resolve_permissions(spec)
    except ValueError as err:
        return str(err)
    return ""


def _outside(path: str, data_root: str) -> bool:
    return not posixpath.isabs(path) or not _under(path, data_root)


def data_problems(users: list[dict[str, Any]], folders: list[dict[str, Any]], data_root: str) -> list[str]:
    """Everything wrong with ftps_server_users and ftps_server_folders, one sentence per problem.

    Each sentence names the entry and says what to fix. Types and required keys are checked before, by the
    argument spec.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for index, user in enumerate(users):
        name = user.get("name", "")
        where = f"ftps_server_users[{index}] ({name})"
        if name in seen:
            problems.append(f"{where}: duplicate user name; each name may appear only once")
        seen.add(name)
        if user.get("state", "present") != "present":
            continue
        if not user.get("password"):
            problems.append(f"{where}: no password; set `password` (from the vault)")
        if not user.get("permissions"):
            problems.append(f"{where}: no permissions; set full, upload_only, read_only or letters")
        elif problem := _permission_problem(user["permissions"]):
            problems.append(f"{where}: permissions: {problem}")
        home = user.get("home")
        if not home:
            problems.append(f"{where}: no home; set an absolute path inside ftps_server_data_root")
        elif _outside(home, data_root):
            problems.append(
                f"{where}: home {home!r} is outside ftps_server_data_root {data_root!r}; "
                "use an absolute path inside it"
            )
        problems.extend(network_problems(user.get("allowed_networks") or [], f"{where}: allowed_networks"))
    for index, folder in enumerate(folders):
        if _outside(folder["path"], data_root):
            problems.append(
                f"ftps_server_folders[{index}]: path {folder['path']!r} is outside ftps_server_data_root "
                f"{data_root!r}; use an absolute path inside it"
            )
    return problems


def network_problems(networks: list[str], name: str) -> list[str]:
    """One sentence per entry that ftpsd would refuse as a network (an address alone is its /32 or /128),
    naming the variable and the entry's position: ftpsd's own check (configchecks.network) says why."""
    return [
        f"{name}[{position}]: {problem}"
        for position, network in enumerate(networks)
        if (problem := _ftpsd("configchecks").network(str(network)))
    ]


def quota_problems(
    entries: list[dict[str, Any]], users: list[dict[str, Any]], folders: list[dict[str, Any]]
) -> list[str]:
    """Everything wrong with ftps_server_quotas, one sentence per problem naming the entry.

    A quota must cover a folder the role creates (a present user's home or an extra folder, or a folder
    below one), so that it never counts a folder nobody can upload into; sizes are checked by the
    argument spec before.
    """
    managed = [posixpath.normpath(u["home"]) for u in present_users(users)] + [
        posixpath.normpath(f["path"]) for f in folders
    ]
    problems: list[str] = []
    seen: list[str] = []
    for index, entry in enumerate(entries):
        where = f"ftps_server_quotas[{index}]"
        path = entry["path"]
        if not posixpath.isabs(path) or not any(_under(path, folder) for folder in managed):
            problems.append(
                f"{where}: path {path!r} is not a user home or an ftps_server_folders path, nor below one; "
                "a quota must cover a folder users upload into"
            )
        if int(entry.get("max_files") or 0) < 0:
            problems.append(f"{where}: max_files must be 0 (no limit) or a number of files")
        problems.extend(
            f"{where}: path {path!r} and ftps_server_quotas[{position}] ({other!r}) are {overlap}; "
            "quota folders may not overlap (a file counts for one quota only)"
            for position, other in enumerate(seen)
            if (overlap := _ftpsd("configchecks").folders_overlap(path, other))
        )
        seen.append(path)
    return problems


def folder_plan(users: list[dict[str, Any]], folders: list[dict[str, Any]], data_root: str) -> list[dict]:
    """Folders to create, parents first, and whether the service must be able to write into each.

    A declared folder is writable as declared. Any other folder is writable when a present user who may
    change files has it, or a folder above it, as home. Read-only folders stay owned by root, so even the
    server process cannot change them.
    """
    writer_homes = [
        posixpath.normpath(user["home"])
        for user in present_users(users)
        if capabilities(user["permissions"])["write"]
    ]
    declared = {posixpath.normpath(f["path"]): f.get("writable", True) for f in folders}
    root = posixpath.normpath(data_root)
    paths = {root}
    for leaf in {posixpath.normpath(u["home"]) for u in present_users(users)} | set(declared):
        path = leaf
        while path != root:  # with the folders in between, which would otherwise get the file module's owner
            paths.add(path)
            path = posixpath.dirname(path)

    def writable(path: str) -> bool:
        if path in declared:
            return declared[path]
        return any(_under(path, home) for home in writer_homes)

    ordered = sorted(paths, key=lambda p: (p.count("/"), p))
    return [{"path": path, "writable": writable(path)} for path in ordered]


def ip_version(value: str) -> int:
    """4 or 6 for an IP address, 0 for anything else."""
    try:
        return ipaddress.ip_address(value).version
    except ValueError:
        return 0


def ip_loopback(value: str) -> bool:
    """Whether an IP address reaches only this host (127.0.0.0/8, ::1): nobody else can scrape it."""
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "ftps_server_accounts": accounts,
            "ftps_server_public_users": public_users,
            "ftps_server_quotas": quotas,
            "ftps_server_quota_problems": quota_problems,
            "ftps_server_size": size,
            "ftps_server_capabilities": capabilities,
            "ftps_server_present_users": present_users,
            "ftps_server_data_problems": data_problems,
            "ftps_server_network_problems": network_problems,
            "ftps_server_admitted": admitted,
            "ftps_server_folder_plan": folder_plan,
            "ftps_server_ip_version": ip_version,
            "ftps_server_ip_loopback": ip_loopback,
        }
