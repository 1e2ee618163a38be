"""The shipped Prometheus alert rules: promtool accepts them and their unit tests pass.

promtool (Debian's prometheus package, installed by `make deps`) is required: without it these tests fail
instead of skipping, so that `make test` never passes with the rules unchecked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
RULES = REPO / "monitoring" / "ftpsd-alerts.yml"
RULE_TESTS = REPO / "monitoring" / "tests" / "ftpsd-alerts.test.yml"
# Other code depends on these names (a molecule scenario waits for them): renaming one is a breaking change.
ALERTS = {
    "FtpsdDown",
    "FtpsdCertificateRenewalDue",
    "FtpsdCertificateExpiresSoon",
    "FtpsdLoginFailuresHigh",
    "FtpsdBansHigh",
    "FtpsdTransfersFailing",
    "FtpsdReloadFailed",
}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (make deps; apt-get install prometheus)"
        )
    return subprocess.run(
        [exe, *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


def passes(run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, f"{' '.join(run.args)} failed:\n{run.stdout}{run.stderr}"


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    passes(promtool("check", "rules", RULES))


def test_promtool_test_rules() -> None:
    passes(promtool("test", "rules", RULE_TESTS))


def test_promtool_check_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check is not vacuous: a rule with a bad expression fails it."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum by (instance (up)\n"
    )
    run = promtool("check", "rules", broken)
    assert run.returncode != 0, run.stdout


def test_the_alerts_are_exactly_the_documented_ones() -> None:
    names = [rule["alert"] for rule in rules()]
    assert sorted(names) == sorted(ALERTS)
    readme = (REPO / "monitoring" / "README.md").read_text()
    assert [name for name in ALERTS if f"`{name}`" not in readme] == []


def test_every_alert_has_a_severity_and_names_the_instance() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        for annotation in ("summary", "description"):
            assert "{{ $labels.instance }}" in rule["annotations"][annotation], (rule["alert"], annotation)


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_must_not() -> None:
    cases = [
        case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test["alert_rule_test"]
    ]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert (ALERTS - fires, ALERTS - silent) == (set(), set())
