"""Each role documents every variable the same way in defaults, argument spec and README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"


@pytest.mark.parametrize("role", ["ftps_server", "firewall"])
def test_defaults_spec_and_readme_agree(role):
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    documented = set(spec["main"]["options"])
    defaults = set(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()))
    readme = set(re.findall(r"^\| `([a-z_]+)` \|", (ROLES / role / "README.md").read_text(), re.MULTILINE))
    assert defaults == documented
    assert readme == documented
    assert all(name.startswith(f"{role}_") for name in documented)
    for entry_point in spec.values():
        for name, option in entry_point["options"].items():
            assert option.get("description"), f"{name} has no description"


def _entry_points_used() -> set[tuple[str, str]]:
    """(role, entry point) of every import_role / include_role with tasks_from in the playbooks."""
    used = set()
    for path in [
        REPO / "site.yml",
        *(REPO / "playbooks").glob("*.yml"),
        *(REPO / "molecule").glob("*/*.yml"),
    ]:
        text = path.read_text()
        for role, tasks_from in re.findall(r"name: (\w+)\n\s+tasks_from: ([\w.]+)", text):
            used.add((role, Path(tasks_from).stem))
    return used


def test_every_entry_point_a_playbook_uses_is_declared():
    used = _entry_points_used()
    assert {("ftps_server", "validate"), ("ftps_server", "account"), ("firewall", "validate")} <= used
    for role, entry_point in used:
        spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        assert entry_point in spec, f"{role}: entry point {entry_point} is used but not declared"
        assert spec[entry_point].get("short_description"), f"{role}/{entry_point} has no short_description"
        assert (ROLES / role / "tasks" / f"{entry_point}.yml").is_file()
        if entry_point == "validate":  # it checks everything the main entry point takes
            assert spec["validate"]["options"] == spec["main"]["options"]
