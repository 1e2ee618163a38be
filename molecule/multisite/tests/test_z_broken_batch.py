"""A broken host stops the rollout at its batch: later batches and sites are left exactly as they were.

Runs last (file name): it re-deploys with a new banner while bj-2 cannot start its service (another
process holds port 21), then repairs bj-2 and re-deploys to leave the lab healthy.
"""

from __future__ import annotations

import json
import subprocess

import testinfra
from conftest import EPHEMERAL, INVENTORY, PLAIN_ANSIBLE_ENV, PROJECT, greeting

PROBE_BANNER = "Rollout probe banner"


def site_yml(*extra: str, summary: str) -> subprocess.CompletedProcess[str]:
    env = {**PLAIN_ANSIBLE_ENV, "FTPS_ROLLOUT_SUMMARY_FILE": summary}
    return subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), str(PROJECT / "site.yml"), *extra],
        capture_output=True, text=True, check=False, cwd=PROJECT, env=env,
    )  # fmt: skip


def on_broken_host(command: str) -> None:
    result = testinfra.get_host(f"ansible://bj-2?ansible_inventory={INVENTORY}").run(command)
    assert result.rc == 0, result.stderr


def test_failed_batch_stops_the_rollout(addresses):
    before = {name: greeting(address) for name, address in addresses.items()}
    on_broken_host("systemctl stop ftpsd && systemd-run --unit port-squatter python3 -m http.server 21")

    summary_file = EPHEMERAL / "broken-rollout.json"
    broken = site_yml("-e", f"ftps_server_banner='{PROBE_BANNER}'", summary=str(summary_file))
    assert broken.returncode != 0, broken.stdout[-3000:]
    summary = json.loads(summary_file.read_text())["hosts"]
    assert summary["bj-1"]["status"] == "updated"
    assert summary["bj-2"]["status"] == "failed"
    assert summary["sh-1"]["status"] == "not reached"
    assert summary["sh-2"]["status"] == "not reached"
    assert "FTPS ROLLOUT SUMMARY" in broken.stdout

    assert PROBE_BANNER in greeting(addresses["bj-1"])  # the batch before the broken one was deployed
    for untouched in ("sh-1", "sh-2"):
        assert greeting(addresses[untouched]) == before[untouched]

    on_broken_host("systemctl stop port-squatter")
    repaired = site_yml(summary=str(EPHEMERAL / "repaired-rollout.json"))
    assert repaired.returncode == 0, repaired.stdout[-3000:]
    for name, address in addresses.items():
        assert greeting(address) == before[name]
