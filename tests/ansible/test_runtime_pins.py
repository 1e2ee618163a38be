"""ftpsd's runtime dependencies are pinned once, and the controller and the hosts run the same versions.

roles/ftps_server/files/ftpsd-runtime.txt is that one list: requirements.txt installs it into the
controller's venv (which runs the ftpsd tests) and the ftps_server role installs it on the hosts. A version
pinned on one side only, or a controller venv that drifted from the list, fails here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "ftps_server"

PINS_FILE = ROLE / "files" / "ftpsd-runtime.txt"
PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)(?: ; (?P<marker>.+))?$"
)


def pin_lines() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in PINS_FILE.read_text().splitlines())
    return [line for line in lines if line]


def pins(python: str | None = None) -> dict[str, str]:
    """{name: version} of the pins file (those a given Python X.Y needs, if one is given).

    Every line must be an exact `name==version` pin, with an optional environment marker.
    """
    found = {}
    for line in pin_lines():
        match = PIN.match(line)
        assert match, f"{PINS_FILE.name}: {line!r} is not an exact name==version pin"
        marker = Marker(match["marker"]) if match["marker"] else None
        environment = {"python_version": python, "python_full_version": f"{python}.0"} if python else None
        if python is None or marker is None or marker.evaluate(environment):
            found[match["name"]] = match["version"]
    return found


def test_pins_are_the_expected_packages():
    assert sorted(map(canonicalize_name, pins())) == [
        "argon2-cffi",
        "argon2-cffi-bindings",
        "cffi",
        "cryptography",
        "prometheus-client",
        "pyasynchat",
        "pyasyncore",
        "pyftpdlib",
        "pyopenssl",
    ]


@pytest.mark.parametrize(
    ("name", "pinned"), sorted(pins(python=f"{sys.version_info[0]}.{sys.version_info[1]}").items())
)
def test_controller_runs_the_pinned_version(name, pinned):
    assert version(name) == pinned, f"the controller's venv has {name} {version(name)}: run make venv"


def test_requirements_txt_includes_the_pins_and_pins_none_of_them_itself():
    lines = [line.strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert f"-r {PINS_FILE.relative_to(REPO)}" in lines
    names = {canonicalize_name(line.split("==")[0]) for line in lines if line and line[0].isalnum()}
    assert names, "requirements.txt pins nothing"
    assert not names & {canonicalize_name(n) for n in pins()}


def test_pins_satisfy_ftpsd_requirements():
    """The hosts install ftpsd with --no-index: each of its dependencies must be pinned, in its range."""
    project = tomllib.loads((REPO / "ftpsd" / "pyproject.toml").read_text())["project"]
    pinned = {canonicalize_name(n): v for n, v in pins().items()}
    for spec in map(Requirement, project["dependencies"]):
        name = canonicalize_name(spec.name)
        assert name in pinned, f"ftpsd needs {spec.name}, which {PINS_FILE.name} does not pin"
        assert spec.specifier.contains(pinned[name]), f"{spec.name}=={pinned[name]} is outside {spec}"


def test_role_reads_the_same_list(tmp_path):
    """The role's own vars/main.yml and files/, evaluated by Ansible in a role context, give the pins."""
    probe = tmp_path / "roles" / "probe"
    (probe / "tasks").mkdir(parents=True)
    for part in ("vars", "files"):
        (probe / part).symlink_to(ROLE / part)
    (probe / "tasks" / "main.yml").write_text(
        "- ansible.builtin.debug:\n"
        "    msg: \"{{ {'all': __ftps_server_requirements, 'built': __ftps_server_built_requirements} }}\"\n"
    )
    (tmp_path / "probe.yml").write_text("- hosts: localhost\n  gather_facts: false\n  roles: [probe]\n")
    env = {**os.environ, "ANSIBLE_ROLES_PATH": str(tmp_path / "roles"), "ANSIBLE_STDOUT_CALLBACK": "json"}
    env.pop("ANSIBLE_CONFIG", None)
    command = ["ansible-playbook", "-i", "localhost,", "-c", "local", "probe.yml"]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=120, check=True)
    result = json.loads(run.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]
    assert result["all"] == pin_lines()
    assert result["built"] == [line for line in pin_lines() if line.startswith("pyftpdlib==")]


def test_no_version_literal_of_a_pinned_package_elsewhere():
    """A pin copied into the role, requirements.txt or the Makefile would be a second list to keep in step."""
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, pins())) + r")\s*==", re.IGNORECASE)
    places = [p for p in ROLE.rglob("*") if p.is_file() and p != PINS_FILE]
    places += [REPO / "requirements.txt", REPO / "Makefile", REPO / "README.md"]
    offenders = [str(p.relative_to(REPO)) for p in places if pattern.search(p.read_text(errors="replace"))]
    assert offenders == []
