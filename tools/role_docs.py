"""Write each role README's variable tables from its meta/argument_specs.yml, so the two cannot drift.

The argument spec is the one place a role variable is documented (Ansible checks it at run time); the
README shows it between `<!-- BEGIN argument_specs -->` and `<!-- END argument_specs -->` and keeps its
hand-written prose outside those markers. `make docs` rewrites the blocks; `--check` only reports drift
(tests/ansible/test_role_docs.py runs the same comparison).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
BEGIN = "<!-- BEGIN argument_specs -->"
END = "<!-- END argument_specs -->"
NOTE = "<!-- generated from meta/argument_specs.yml by tools/role_docs.py (`make docs`); edit the spec -->"
# Ansible's documentation markup: C(code), I(option), O(option), V(value) all read as code here.
MARKUP_RE = re.compile(r"\b[CIOV]\(([^)]*)\)")


def _text(value: str | list[str]) -> str:
    """One table cell: lines joined, Ansible markup as Markdown code, pipes escaped."""
    text = " ".join(value) if isinstance(value, list) else str(value)
    return MARKUP_RE.sub(r"`\1`", text).replace("|", "\\|")


def _default(option: dict[str, Any]) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return "see description"
    flow = yaml.safe_dump(option["default"], default_flow_style=True, width=1_000_000)
    return "`" + flow.removesuffix("...\n").strip() + "`"


def _type(option: dict[str, Any]) -> str:
    kind = option.get("type", "str")
    return f"{kind} of {option['elements']}" if "elements" in option else kind


def _description(option: dict[str, Any]) -> str:
    text = _text(option.get("description", ""))
    if "choices" in option:
        text += " Choices: " + ", ".join(f"`{choice}`" for choice in option["choices"]) + "."
    return text


def _rows(options: dict[str, dict[str, Any]], prefix: str = "") -> list[str]:
    """A row per option, then its suboptions as `parent[].name` (lists) or `parent.name` (dicts)."""
    rows = []
    for name, option in options.items():
        rows.append(f"| `{prefix}{name}` | {_type(option)} | {_default(option)} | {_description(option)} |")
        if "options" in option:
            nested = f"{prefix}{name}[]." if option.get("type") == "list" else f"{prefix}{name}."
            rows += _rows(option["options"], nested)
    return rows


def render(spec: dict[str, Any]) -> str:
    """The generated block (markers included) for one role's argument_specs."""
    lines = [BEGIN, NOTE]
    for entry_point, entry in spec["argument_specs"].items():
        lines += ["", f"### Entry point `{entry_point}`", "", _text(entry.get("short_description", "")), ""]
        lines += ["| Variable | Type | Default | Description |", "| --- | --- | --- | --- |"]
        lines += _rows(entry.get("options", {}))
    return "\n".join([*lines, "", END])


def expected_readme(role: Path) -> str:
    """The role's README with its block replaced by what the spec says; an error if it has no markers."""
    readme = (role / "README.md").read_text()
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{role / 'README.md'}: no {BEGIN} ... {END} block to generate into")
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    return readme[:start] + render(spec) + readme[end + len(END) :]


def roles() -> list[Path]:
    return sorted(p.parents[1] for p in ROLES.glob("*/meta/argument_specs.yml"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report READMEs that differ; change nothing")
    args = parser.parse_args(argv)
    stale = []
    for role in roles():
        expected = expected_readme(role)
        if (role / "README.md").read_text() != expected:
            stale.append(role / "README.md")
            if not args.check:
                (role / "README.md").write_text(expected)
    verb = "out of date (run `make docs`)" if args.check else "regenerated"
    for path in stale:
        print(f"{path}: {verb}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
