"""End-of-run summary of a rollout, per site: which hosts were updated, unchanged, failed or not reached.

Ansible's recap counts tasks per host; an operator rolling out several sites needs to know, in one
place, which sites are done, where it stopped and why, and which hosts it never reached because an
earlier batch failed. That last part is why this is a callback: when a batch fails, the playbook ends
there and no later play could print anything.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ansible.executor.stats import AggregateStats
from ansible.executor.task_result import TaskResult
from ansible.playbook.play import Play
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: ftps_rollout_summary
type: aggregate
short_description: Per-site summary of an FTPS rollout at the end of site.yml
description:
  - Prints, for each site (the host variable C(ftps_site)), the hosts that were updated, unchanged,
    failed (with the failing task and message) and not reached.
  - Writes the same summary as JSON to the file named by the environment variable
    C(FTPS_ROLLOUT_SUMMARY_FILE) when it is set.
  - Loaded automatically for playbooks in the repository root (it sits next to site.yml).
"""

DEFAULT_SITE = "default"
# Only the servers are rolled out; plays on the controller (the report) are not part of the summary.
SERVER_GROUP = "ftps_servers"
MESSAGE_LIMIT = 300


@dataclass
class HostOutcome:
    """What happened to one targeted host over the whole run."""

    site: str
    missed: bool = False  # a play that targeted the host never got to it (an earlier batch failed)
    changed: bool = False
    failure: str = ""

    @property
    def status(self) -> str:
        if self.failure:
            return "failed"
        if self.missed:
            return "not reached"
        return "updated" if self.changed else "unchanged"


@dataclass
class RolloutSummary:
    """Outcomes of all hosts any play targeted, in the order they were first targeted."""

    hosts: dict[str, HostOutcome] = field(default_factory=dict)

    def by_site(self) -> dict[str, dict[str, list[str]]]:
        sites: dict[str, dict[str, list[str]]] = {}
        for name, outcome in self.hosts.items():
            sites.setdefault(outcome.site, {}).setdefault(outcome.status, []).append(name)
        return sites


class CallbackModule(CallbackBase):
    """Collects per-host outcomes and prints them grouped by site when the playbook ends."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ftps_rollout_summary"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self) -> None:
        super().__init__()
        self._summary = RolloutSummary()
        self._play_id: str | None = None
        self._play_targets: set[str] = set()
        self._play_reached: set[str] = set()

    def _close_play(self) -> None:
        for name in self._play_targets - self._play_reached:
            self._summary.hosts[name].missed = True
        self._play_targets, self._play_reached = set(), set()

    def v2_playbook_on_play_start(self, play: Play) -> None:
        # A batched play starts once per batch, with the inventory restricted to that batch: a host of a
        # later batch is only "not reached" once the play as a whole is over.
        if play._uuid != self._play_id:
            self._close_play()
            self._play_id = play._uuid
        variables = play.get_variable_manager()
        inventory = variables._inventory
        for host in inventory.get_hosts(play.hosts, ignore_restrictions=True):
            if SERVER_GROUP not in (group.name for group in host.get_groups()):
                continue
            if host.name not in self._summary.hosts:
                site = variables.get_vars(host=host, include_hostvars=False).get("ftps_site") or DEFAULT_SITE
                self._summary.hosts[host.name] = HostOutcome(site=str(site))
            self._play_targets.add(host.name)

    def _outcome(self, result: TaskResult) -> HostOutcome | None:
        name = result._host.get_name()
        self._play_reached.add(name)
        return self._summary.hosts.get(name)

    def v2_runner_on_ok(self, result: TaskResult) -> None:
        if outcome := self._outcome(result):
            outcome.changed = outcome.changed or bool(result._result.get("changed"))

    def v2_runner_on_skipped(self, result: TaskResult) -> None:
        self._outcome(result)

    def v2_runner_on_failed(self, result: TaskResult, ignore_errors: bool = False) -> None:
        outcome = self._outcome(result)
        if outcome is None or ignore_errors:
            return
        message = str(result._result.get("msg") or result._result.get("stderr") or "failed")
        outcome.failure = f'task "{result._task.get_name()}": {message[:MESSAGE_LIMIT]}'

    def v2_runner_on_unreachable(self, result: TaskResult) -> None:
        if outcome := self._outcome(result):
            message = str(result._result.get("msg", "unreachable"))
            outcome.failure = f"unreachable: {message[:MESSAGE_LIMIT]}"

    def v2_playbook_on_stats(self, stats: AggregateStats) -> None:
        self._close_play()
        if not self._summary.hosts:
            return
        self._display.banner("FTPS ROLLOUT SUMMARY")
        sites = self._summary.by_site()
        for site, statuses in sites.items():
            parts = [f"{status}: {', '.join(hosts)}" for status, hosts in sorted(statuses.items())]
            self._display.display(f"site {site}: " + "; ".join(parts))
        for name, outcome in self._summary.hosts.items():
            if outcome.failure:
                self._display.display(f"  {name} failed, {outcome.failure}", color="red")
        if any(o.status == "not reached" for o in self._summary.hosts.values()):
            self._display.display(
                "  hosts not reached were left as they were: the rollout stopped at a failed batch."
            )
        if target := os.environ.get("FTPS_ROLLOUT_SUMMARY_FILE"):
            document = {
                "sites": sites,
                "hosts": {
                    name: {"site": o.site, "status": o.status, "failure": o.failure}
                    for name, o in self._summary.hosts.items()
                },
            }
            with open(target, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
