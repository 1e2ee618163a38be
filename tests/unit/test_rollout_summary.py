"""The end-of-run summary callback, driven by real ansible-playbook runs on local hosts.

The playbook has site.yml's shape: a validation play on every server, the batched rollout play, a
report play on every server that also runs after a failed rollout, and a play on the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
HOSTS = {"bj-1": "beijing", "bj-2": "beijing", "sh-1": "shanghai", "sh-2": "shanghai"}
PLAYBOOK = """
- name: Validate
  hosts: ftps_servers
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: valid}
- name: Roll out
  hosts: ftps_servers
  gather_facts: false
  serial: [1, 1, 2]
  max_fail_percentage: 0
  tasks:
    - ansible.builtin.fail: {msg: service cannot start}
      when: inventory_hostname == broken_host
    - ansible.builtin.debug: {msg: deployed}
      changed_when: inventory_hostname != unchanged_host
- name: Report
  hosts: ftps_servers
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: read}
- name: Render on the controller
  hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: rendered}
"""


def rollout(tmp_path: Path, broken: str = "", unchanged: str = "") -> tuple[int, str, dict[str, dict]]:
    hosts = {name: {"ansible_connection": "local", "ftps_site": site} for name, site in HOSTS.items()}
    (tmp_path / "hosts.yml").write_text(json.dumps({"ftps_servers": {"hosts": hosts}}))
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    summary = tmp_path / "summary.json"
    env = {
        **os.environ,
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "callback_plugins"),
        "ANSIBLE_NOCOLOR": "1",
        "FTPS_ROLLOUT_SUMMARY_FILE": str(summary),
    }
    run = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i", "hosts.yml", "site.yml",
         "-e", f"broken_host={broken!r} unchanged_host={unchanged!r}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    return run.returncode, run.stdout, json.loads(summary.read_text())["hosts"]


def statuses(hosts: dict[str, dict]) -> dict[str, str]:
    return {name: outcome["status"] for name, outcome in hosts.items()}


def test_full_rollout_lists_every_server_by_site_and_not_the_controller(tmp_path: Path) -> None:
    code, out, hosts = rollout(tmp_path, unchanged="sh-2")
    assert code == 0, out
    assert statuses(hosts) == {"bj-1": "updated", "bj-2": "updated", "sh-1": "updated", "sh-2": "unchanged"}
    assert {name: outcome["site"] for name, outcome in hosts.items()} == HOSTS
    assert "site beijing: updated: bj-1, bj-2" in out
    assert "site shanghai: unchanged: sh-2; updated: sh-1" in out  # statuses in alphabetical order


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("bj-2", {"bj-1": "updated", "bj-2": "failed", "sh-1": "not reached", "sh-2": "not reached"}),
        ("bj-1", {"bj-1": "failed", "bj-2": "not reached", "sh-1": "not reached", "sh-2": "not reached"}),
    ],
)
def test_failed_batch_leaves_later_batches_not_reached(tmp_path: Path, broken: str, expected: dict) -> None:
    """The report play still reads the untouched hosts; that must not count as reaching them."""
    code, out, hosts = rollout(tmp_path, broken=broken)
    assert code != 0
    assert statuses(hosts) == expected
    assert 'task "Roll out' not in hosts[broken]["failure"]  # the task, not the play
    assert "service cannot start" in hosts[broken]["failure"]
    assert "stopped at a failed batch" in out
