"""Each role documents every variable once: defaults, argument spec, generated README and ftpsd agree."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import to_json
from ftpsd.config import parse_config
from ftpsd.passwords import hash_password

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
ALL_ROLES = sorted(p.parents[1].name for p in ROLES.glob("*/meta/argument_specs.yml"))

_spec = importlib.util.spec_from_file_location("role_docs", REPO / "tools" / "role_docs.py")
role_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(role_docs)
_filters_spec = importlib.util.spec_from_file_location(
    "ftps_server_filters", ROLES / "ftps_server" / "filter_plugins" / "ftps_server.py"
)
_filters = importlib.util.module_from_spec(_filters_spec)
_filters_spec.loader.exec_module(_filters)
ROLE_FILTERS = _filters.FilterModule().filters()


def load(role: str, *parts: str) -> dict:
    return yaml.safe_load((ROLES / role).joinpath(*parts).read_text())


def test_every_role_is_checked():
    assert sorted(ALL_ROLES) == [
        *("firewall", "ftps_certificate", "ftps_loadbalancer"),
        *("ftps_server", "ftps_storage", "ftps_vip"),
    ]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_defaults_spec_and_readme_agree(role):
    spec = load(role, "meta", "argument_specs.yml")["argument_specs"]
    documented = set(spec["main"]["options"])
    defaults = set(load(role, "defaults", "main.yml"))
    text = (ROLES / role / "README.md").read_text()
    table = text[text.index(role_docs.BEGIN) : text.index(role_docs.END)]
    readme = set(re.findall(r"^\| `([a-z_0-9]+)` \|", table, re.MULTILINE))
    assert defaults == documented
    assert readme == documented
    assert all(name.startswith(f"{role}_") for name in documented)
    for entry_point in spec.values():
        for name, option in entry_point["options"].items():
            assert option.get("description"), f"{name} has no description"


@pytest.mark.parametrize("role", ALL_ROLES)
def test_spec_defaults_are_the_role_defaults(role):
    """Every entry point's default is the value defaults/main.yml holds, type included (21, not "21").

    A default computed by Jinja (from facts or other variables) cannot be a literal in the spec: the spec
    leaves it out or names it in words ("<repository>/ftpsd"), and its description says what it is.
    """
    defaults = load(role, "defaults", "main.yml")
    for entry_point, entry in load(role, "meta", "argument_specs.yml")["argument_specs"].items():
        for name, option in entry["options"].items():
            where = f"{role} {entry_point} {name}"
            if isinstance(defaults[name], str) and "{{" in defaults[name]:
                assert not isinstance(option.get("default"), bool | int | list | dict), where
                continue
            assert "default" in option, f"{where}: the spec has no default, defaults/main.yml has one"
            assert option["default"] == defaults[name], where
            assert type(option["default"]) is type(defaults[name]), where


# Role defaults that differ from ftpsd's own on purpose: the role turns the transfer audit log on.
ROLE_CHOICES = {("logging", "transfer_log"): "/var/log/ftpsd/transfers.jsonl"}


# ftpsd refuses a config without users; the one user is the same on both sides of the comparison.
ACCOUNT = {
    "name": "alice",
    "password_hash": hash_password("pw"),
    "home": "/srv/ftps/a",
    "permissions": "full",
    "allowed_networks": [],  # from anywhere: the template leaves the key out
    "upload_rate": 0,  # no limits of its own: left out too
    "download_rate": 0,
}


def rendered_config(variables: dict) -> dict:
    """ftpsd.toml as the role writes it from these variables (the role's own template, one user)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = to_json
    env.filters.update({name: ROLE_FILTERS[name] for name in ("ftps_server_size", "ftps_server_quotas")})
    template = env.from_string((ROLES / "ftps_server" / "templates" / "ftpsd.toml.j2").read_text())
    return tomllib.loads(
        template.render(**variables, ansible_managed="test", __ftps_server_accounts=[ACCOUNT])
    )


def settings(config: object) -> dict[tuple[str, str], object]:
    return {
        (table.name, setting.name): getattr(getattr(config, table.name), setting.name)
        for table in dataclasses.fields(config)
        if dataclasses.is_dataclass(getattr(config, table.name))
        for setting in dataclasses.fields(getattr(config, table.name))
    }


def test_ftps_server_defaults_are_ftpsds_defaults():
    """The config the role writes from its defaults is ftpsd's default config, but for ROLE_CHOICES.

    Going through the role's template maps each variable onto its setting the way a deployment does, so
    a default changed on one side only (or a setting the template stops writing) fails here.
    """
    role_defaults = load("ftps_server", "defaults", "main.yml")
    from_role = settings(parse_config(rendered_config(role_defaults)))
    tls = rendered_config(role_defaults)["tls"]
    minimal = {
        "tls": {"certificate": tls["certificate"], "private_key": tls["private_key"]},
        "users": [ACCOUNT],
    }
    ftpsd_defaults = settings(parse_config(minimal))
    differing = {key: value for key, value in from_role.items() if ftpsd_defaults[key] != value}
    assert differing == ROLE_CHOICES
    assert len(from_role) >= 20  # every setting of every table was compared, not an empty dict


def test_a_default_changed_on_one_side_is_caught():
    """The comparison above sees a drifted value (it would be vacuous if the template ignored it)."""
    drifted = {**load("ftps_server", "defaults", "main.yml"), "ftps_server_idle_timeout": 301}
    assert settings(parse_config(rendered_config(drifted)))[("limits", "idle_timeout")] == 301


@pytest.mark.parametrize("role", ALL_ROLES)
def test_readme_tables_are_generated_from_the_spec(role):
    """`make docs` writes them; a README edited by hand, or a spec changed without it, fails here."""
    readme = (ROLES / role / "README.md").read_text()
    assert readme == role_docs.expected_readme(ROLES / role), f"roles/{role}/README.md: run `make docs`"


def test_the_generated_table_shows_each_default_and_choice():
    block = role_docs.render(load("ftps_server", "meta", "argument_specs.yml"))
    assert "| `ftps_server_explicit_port` | int | `21` |" in block
    assert "| `ftps_server_users[].name` | str | required |" in block
    assert "Choices: `TLSv1.2`, `TLSv1.3`." in block
    assert "### Entry point `account`" in block


def test_a_readme_without_markers_is_refused(tmp_path):
    role = tmp_path / "r"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text("argument_specs: {main: {options: {}}}\n")
    (role / "README.md").write_text("# r\n\n| Variable | Default |\n")
    with pytest.raises(SystemExit, match="no <!-- BEGIN argument_specs -->"):
        role_docs.expected_readme(role)


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
