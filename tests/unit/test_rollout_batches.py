"""Batch planning of site.yml: batches follow sites, so a failure never spills into the next site."""

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

spec = importlib.util.spec_from_file_location(
    "ftps_rollout", Path(__file__).parents[2] / "filter_plugins" / "ftps_rollout.py"
)
ftps_rollout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ftps_rollout)
batches = ftps_rollout.rollout_batches

HOSTVARS = {
    "bj-1": {"ftps_site": "beijing"},
    "bj-2": {"ftps_site": "beijing"},
    "bj-3": {"ftps_site": "beijing"},
    "bj-4": {"ftps_site": "beijing"},
    "sh-1": {"ftps_site": "shanghai"},
    "sh-2": {"ftps_site": "shanghai"},
    "lone": {},
}


def test_canary_then_rest_of_each_site():
    assert batches(["bj-1", "bj-2", "bj-3", "sh-1", "sh-2"], HOSTVARS) == [1, 2, 1, 1]


def test_percentage_of_the_remaining_hosts_of_a_site():
    hosts = ["bj-1", "bj-2", "bj-3", "bj-4", "sh-1", "sh-2"]
    assert batches(hosts, HOSTVARS, canary=1, batch_size="50%") == [1, 1, 1, 1, 1, 1]
    assert batches(hosts, HOSTVARS, canary=0, batch_size=3) == [3, 1, 2]


def test_hosts_without_a_site_form_their_own_group():
    assert batches(["lone", "bj-1", "bj-2"], HOSTVARS) == [1, 1, 1]


def test_limit_to_one_site_plans_only_that_site():
    assert batches(["sh-1", "sh-2"], HOSTVARS, canary=1) == [1, 1]


def hosts_by_batch(hosts: list[str], sizes: list[int]) -> list[list[str]]:
    """What Ansible's `serial` makes of the sizes: consecutive slices of the play's hosts, in order."""
    slices, start = [], 0
    for size in sizes:
        slices.append(hosts[start : start + size])
        start += size
    return slices


def test_every_host_is_in_exactly_one_batch_canary_first_per_site():
    hosts = list(HOSTVARS)
    sizes = batches(hosts, HOSTVARS, canary=2, batch_size="34%")
    assert sum(sizes) == len(hosts)
    assert hosts_by_batch(hosts, sizes) == [
        ["bj-1", "bj-2"],  # beijing's canaries alone
        ["bj-3"],  # 34% of beijing's remaining two hosts, at least one
        ["bj-4"],
        ["sh-1", "sh-2"],  # shanghai: both are canaries, nothing remains
        ["lone"],  # the hosts without a site, last as in the play
    ]
    for batch in hosts_by_batch(hosts, sizes):
        assert len({HOSTVARS[h].get("ftps_site") for h in batch}) == 1, f"{batch} spans two sites"


@pytest.mark.parametrize(
    ("canary", "batch_size", "message"),
    [
        (-1, "100%", "ftps_rollout_canary"),
        (1, "0", "ftps_rollout_batch_size"),
        (1, "150%", "percentage"),
        (1, "half", "ftps_rollout_batch_size"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_name(canary, batch_size, message):
    with pytest.raises(AnsibleFilterError, match=message):
        batches(["bj-1", "bj-2"], HOSTVARS, canary=canary, batch_size=batch_size)


HA_HOSTVARS = {
    **HOSTVARS,
    "ha-1": {"ftps_site": "frankfurt", "ftps_site_vip": "192.0.2.100"},
    "ha-2": {"ftps_site": "frankfurt", "ftps_site_vip": "192.0.2.100"},
    "ha-3": {"ftps_site": "frankfurt", "ftps_site_vip": "192.0.2.100"},
}


def test_an_ha_site_goes_one_node_at_a_time_whatever_the_batch_settings():
    hosts = ["bj-1", "bj-2", "bj-3", "ha-1", "ha-2", "ha-3", "sh-1", "sh-2"]
    sizes = batches(hosts, HA_HOSTVARS, canary=2, batch_size="100%")
    assert hosts_by_batch(hosts, sizes) == [
        ["bj-1", "bj-2"],
        ["bj-3"],
        ["ha-1"],
        ["ha-2"],
        ["ha-3"],
        ["sh-1", "sh-2"],
    ]


def test_an_empty_site_address_is_not_an_ha_site():
    """ftps_site_vip: "" (the default of a site without one) leaves the site's batches as they were."""
    hostvars = {name: {"ftps_site": "plain", "ftps_site_vip": ""} for name in ("p-1", "p-2", "p-3")}
    assert batches(list(hostvars), hostvars, canary=1, batch_size="100%") == [1, 2]


def test_an_ha_site_with_canary_zero_still_goes_one_by_one():
    assert batches(["ha-1", "ha-2"], HA_HOSTVARS, canary=0, batch_size=5) == [1, 1]
