"""Each role documents every variable the same way in defaults, argument spec and README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


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
