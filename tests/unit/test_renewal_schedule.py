"""The control node's renewal schedule: the shipped systemd units pass `systemd-analyze verify`.

The units are installed the way README.md says (paths edited to the checkout, User to an existing
account) into a scratch directory; systemd-analyze then checks syntax, the timer's calendar and that
ExecStart is executable.
"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

REPO = Path(__file__).parents[2]
UNITS = REPO / "contrib" / "systemd"
NAME = "ftps-renew-certificates"


def install(target: Path, edit: dict[str, str] | None = None) -> list[Path]:
    """Copy the units with the README's edits: this checkout instead of /opt/ftps-toolkit, User root."""
    replacements = {"/opt/ftps-toolkit": str(REPO), "User=ansible": "User=root", **(edit or {})}
    installed = []
    for suffix in ("service", "timer"):
        text = (UNITS / f"{NAME}.{suffix}").read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        path = target / f"{NAME}.{suffix}"
        path.write_text(text)
        installed.append(path)
    return installed


def verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_verify(tmp_path: Path) -> None:
    result = verify(install(tmp_path))
    assert result.returncode == 0, result.stderr
    assert NAME not in result.stderr, result.stderr  # no warning about our units either


def test_verify_catches_a_bad_calendar(tmp_path: Path) -> None:
    result = verify(install(tmp_path, {"OnCalendar=daily": "OnCalendar=every full moon"}))
    assert result.returncode != 0
    assert "Failed to parse calendar specification" in result.stderr


def test_verify_catches_a_missing_command(tmp_path: Path) -> None:
    result = verify(install(tmp_path, {"bin/ansible-playbook": "bin/no-such-playbook-runner"}))
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def test_timer_is_daily_randomised_and_persistent() -> None:
    timer = configparser.ConfigParser()
    timer.read(UNITS / f"{NAME}.timer")
    assert timer["Timer"]["OnCalendar"] == "daily"
    assert timer["Timer"]["RandomizedDelaySec"]
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_service_runs_the_renewal_playbook() -> None:
    service = configparser.ConfigParser(interpolation=None)
    service.read(UNITS / f"{NAME}.service")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["ExecStart"].endswith("ansible-playbook playbooks/renew-certificates.yml")
    assert (REPO / "playbooks" / "renew-certificates.yml").is_file()
    cron = (UNITS / f"{NAME}.cron").read_text()
    assert "playbooks/renew-certificates.yml" in cron.splitlines()[-1]
