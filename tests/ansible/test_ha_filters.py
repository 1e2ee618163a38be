"""The HA filters (issue 19): passive slices, site membership, the inventory checks of an HA site, and the
checks of the new roles' variables, each refusal naming the variable."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError

REPO = Path(__file__).resolve().parents[2]


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(Path(path).stem + "_under_test", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ha = load("filter_plugins/ftps_ha.py")
firewall = load("roles/firewall/filter_plugins/firewall.py")
loadbalancer = load("roles/ftps_loadbalancer/filter_plugins/ftps_loadbalancer.py")
vip = load("roles/ftps_vip/filter_plugins/ftps_vip.py")
storage = load("roles/ftps_storage/filter_plugins/ftps_storage.py")

SITE = {"ftps_site": "ha", "ftps_site_vip": "198.18.5.200"}
SITE_RANGE = {"ftps_site_passive_port_start": 50000, "ftps_site_passive_port_end": 50019}
IDS = {"ftps_server_uid": 2121, "ftps_server_gid": 2121}
GROUPS = {"ftps_servers": ["n1", "n2", "other"], "ftps_loadbalancers": ["lb1", "lb2"], "ftps_storage": ["st"]}
HOSTVARS = {
    **{
        name: {**SITE, **SITE_RANGE, **IDS, "ansible_host": f"198.18.5.{i}"}
        for i, name in enumerate(["n1", "n2"], 11)
    },
    **{name: {**SITE, **SITE_RANGE} for name in ["lb1", "lb2", "st"]},
    "other": {"ftps_site": "plain"},
}


def test_slices_are_equal_parts_in_inventory_order():
    nodes = ["n1", "n2"]
    assert ha.passive_slice(50000, 50019, nodes, "n1") == {"start": 50000, "end": 50009}
    assert ha.passive_slice(50000, 50019, nodes, "n2") == {"start": 50010, "end": 50019}
    # A remainder stays unused rather than making one slice larger.
    assert ha.passive_slice(50000, 50021, ["a", "b", "c"], "c") == {"start": 50014, "end": 50020}


def test_a_range_smaller_than_the_site_is_refused():
    with pytest.raises(AnsibleFilterError, match="fewer ports than the site has nodes"):
        ha.passive_slice(50000, 50000, ["n1", "n2"], "n2")


def test_site_hosts_keep_inventory_order_and_the_site_only():
    assert ha.site_hosts(GROUPS["ftps_servers"], HOSTVARS, "ha") == ["n1", "n2"]
    assert ha.site_hosts(GROUPS["ftps_servers"], HOSTVARS, "plain") == ["other"]


def test_the_node_entry_carries_address_and_slice():
    assert ha.node_entry("n2", HOSTVARS, 50000, 50019, ["n1", "n2"]) == {
        "name": "n2",
        "address": "198.18.5.12",
        "passive_port_start": 50010,
        "passive_port_end": 50019,
    }


def test_an_address_is_the_ansible_host_or_else_the_name():
    """What site.yml gives the nodes as ftps_server_proxy_protocol_from: the load balancers' addresses."""
    assert [ha.address(host, HOSTVARS) for host in ["n1", "lb1"]] == ["198.18.5.11", "lb1"]


def test_a_host_network_is_the_address_alone_and_a_network_stays():
    """The firewall sources of an HA node: load balancers and the controller by address, direct networks."""
    values = ["198.18.5.1", "2001:2::c8", "198.18.0.0/24"]
    assert [ha.host_network(v) for v in values] == ["198.18.5.1/32", "2001:2::c8/128", "198.18.0.0/24"]


@pytest.mark.parametrize("host", ["n1", "lb1", "st", "other"])
def test_a_well_formed_site_has_no_problems(host):
    assert ha.ha_problems(host, HOSTVARS, GROUPS) == []


@pytest.mark.parametrize(
    ("host", "change", "groups", "fragment"),
    [
        ("n1", {"ftps_site_vip": "2001:2::1"}, GROUPS, "ftps_site_vip must be an IPv4 address"),
        ("n1", {"ftps_site_vip6": "198.18.5.201"}, GROUPS, "ftps_site_vip6 must be empty or an IPv6 address"),
        ("n1", {"ftps_site_passive_port_end": 49999}, GROUPS, "ftps_site_passive_port_start/_end"),
        ("n1", {"ftps_site_passive_port_start": None}, GROUPS, "ftps_site_passive_port_start/_end"),
        ("n1", {"ftps_server_masquerade_address": "203.0.113.9"}, GROUPS, "ftps_server_masquerade_address"),
        ("n1", {}, {**GROUPS, "ftps_loadbalancers": []}, "no ftps_loadbalancers host serves it"),
        ("lb1", {"ftps_site_vip": ""}, GROUPS, "ftps_site_vip: the load balancer lb1"),
        ("lb1", {"ftps_site": "nowhere"}, GROUPS, "which has no host in ftps_servers"),
        ("st", {"ftps_site": ""}, GROUPS, "st is in ftps_storage but has no ftps_site"),
        ("n1", {}, {**GROUPS, "ftps_storage": ["st", "n1"]}, "n1 is in ftps_servers and ftps_storage"),
        ("n1", {"ftps_server_uid": None}, GROUPS, "ftps_server_uid: n1 is a node of an HA site"),
        (
            "n1",
            {"ftps_site_direct_networks": "198.18.0.0/24"},
            GROUPS,
            "ftps_site_direct_networks must be a list",
        ),
        (
            "n1",
            {"ftps_site_direct_networks": ["198.18.0.0/24", "198.18.0.1/24"]},
            GROUPS,
            "ftps_site_direct_networks[1]: '198.18.0.1/24' is not a network",
        ),
        (
            "n1",
            {"ftps_server_gid": 998},
            GROUPS,
            "ftps_server_gid of n1 is 998, other nodes of its site have 2121",
        ),
    ],
)
def test_inventory_mistakes_are_named(host, change, groups, fragment):
    hostvars = {**HOSTVARS, host: {**HOSTVARS[host], **change}}
    problems = ha.ha_problems(host, hostvars, groups)
    assert any(fragment in p for p in problems), problems


def test_firewall_restricted_protocols():
    good = {"protocol": "vrrp", "sources": ["198.18.5.21/32"]}
    assert firewall.restricted_protocol_problems([good]) == []
    assert "listed twice" in firewall.restricted_protocol_problems([good, good])[0]
    assert "sources is empty" in firewall.restricted_protocol_problems([{**good, "sources": []}])[0]
    assert "is not a network" in firewall.restricted_protocol_problems([{**good, "sources": ["lb-b"]}])[0]
    assert firewall.restricted_protocol_rules(
        [{**good, "sources": ["198.18.5.21/32", "2001:2::15/128"]}]
    ) == [
        {"protocol": "vrrp", "family": "ipv4", "source": "198.18.5.21/32"},
        {"protocol": "vrrp", "family": "ipv6", "source": "2001:2::15/128"},
    ]


LB = {
    "address": "198.18.5.200",
    "address6": "2001:2:0:5::c8",
    "control_ports": [21, 990],
    "nodes": [
        {"name": "n1", "address": "198.18.5.11", "passive_port_start": 50000, "passive_port_end": 50009},
        {"name": "n2", "address": "198.18.5.12", "passive_port_start": 50010, "passive_port_end": 50019},
    ],
    "check_interval": 2000,
    "check_fall": 2,
    "check_rise": 2,
    "maxconn": 4000,
    "timeout_connect": "5s",
    "timeout_idle": "15m",
    "socket": "/run/haproxy/admin.sock",
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"address": "lb.example"}, "ftps_loadbalancer_address must be an IPv4 address"),
        ({"address6": "198.18.5.201"}, "ftps_loadbalancer_address6 must be empty or an IPv6 address"),
        ({"nodes": []}, "ftps_loadbalancer_nodes is empty"),
        ({"control_ports": [21, 21]}, "lists a port twice"),
        ({"nodes": [LB["nodes"][0], {**LB["nodes"][1], "passive_port_start": 50005}]}, "overlaps"),
        ({"nodes": [LB["nodes"][0], {**LB["nodes"][1], "name": "n1"}]}, "names must be unique"),
        ({"timeout_idle": "a while"}, "ftps_loadbalancer_timeout_idle must be a time"),
        ({"check_fall": 0}, "ftps_loadbalancer_check_fall must be at least 1"),
    ],
)
def test_loadbalancer_problems(change, fragment):
    assert loadbalancer.loadbalancer_problems(LB) == []
    problems = loadbalancer.loadbalancer_problems({**LB, **change})
    assert any(fragment in p for p in problems), problems


VIP = {
    "address": "198.18.5.200",
    "prefix_length": 32,
    "address6": "2001:2:0:5::c8",
    "prefix_length6": 128,
    "router_id": 51,
    "priority": 150,
    "advert_interval": 1,
    "unicast_peers": [],
    "track_service": "haproxy",
    "track_interval": 1,
    "track_fall": 2,
    "track_rise": 2,
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"address": ""}, "ftps_vip_address must be an IPv4 address"),
        ({"address6": "2001:db8::zz"}, "ftps_vip_address6 must be empty or an IPv6 address"),
        ({"prefix_length6": 129}, "ftps_vip_prefix_length6 must be 1-128"),
        ({"router_id": 256}, "ftps_vip_router_id must be 1-255"),
        ({"priority": 255}, "ftps_vip_priority must be 1-254"),
        ({"unicast_peers": ["lb-b"]}, "ftps_vip_unicast_peers[0]"),
        ({"track_service": "haproxy; reboot"}, "ftps_vip_track_service"),
    ],
)
def test_vip_problems(change, fragment):
    assert vip.vip_problems(VIP) == []
    problems = vip.vip_problems({**VIP, **change})
    assert any(fragment in p for p in problems), problems


STORAGE = {
    "volume": "ftps",
    "servers": ["198.18.5.30"],
    "address": "198.18.5.30",
    "clients": ["198.18.5.11", "198.18.5.12"],
    "brick_path": "/srv/gluster/ftps",
    "mount_path": "/srv/ftps",
    "management_port": 24007,
    "brick_port_start": 49152,
    "brick_port_end": 49155,
}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"servers": ["198.18.5.30", "198.18.5.31"]}, "split brain"),
        ({"address": "198.18.5.99"}, "ftps_storage_address"),
        ({"clients": []}, "ftps_storage_clients is empty"),
        ({"brick_path": "/"}, "ftps_storage_brick_path"),
        ({"brick_port_start": 49160}, "ftps_storage_brick_port_start is above"),
        ({"management_port": 49153}, "inside the brick port range"),
    ],
)
def test_storage_problems(change, fragment):
    assert storage.storage_problems(STORAGE) == []
    problems = storage.storage_problems({**STORAGE, **change})
    assert any(fragment in p for p in problems), problems
