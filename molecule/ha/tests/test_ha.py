"""One HA site on real lab hosts: the site's address on one load balancer, uploads through it on the shared
storage of both nodes, failover of the address, and firewalls that admit only the site's own hosts."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shlex
import socket
import subprocess
import time
import tomllib
import uuid

from conftest import CURL_ENV, LOADBALANCERS, NODES, STORAGE, curl, curl_argv, journal, vip_holders, wait_for
from ftpsd.settings import LimitSettings
from scenario_runs import PROJECT, inventory_value, lab_host, run_playbook

# From `systemctl stop haproxy` to a working login through the address: keepalived's track script fails
# twice a second apart, then VRRP moves the address (about 3 s in the lab, docs/ha-lab-notes.md).
FAILOVER_BOUND = 15
PLAYBOOK = PROJECT / "ha-node-state.yml"


def test_the_address_is_on_exactly_one_load_balancer(site):
    assert len(vip_holders(site)) == 1


def test_an_upload_through_the_address_is_on_every_node(site, tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(uuid.uuid4().bytes * 65536)  # 1 MiB
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    name = f"ha-{uuid.uuid4().hex[:8]}.bin"
    uploaded = curl(site, site.vip, "-T", str(payload), f"ftp://SERVER/incoming/{name}")
    assert uploaded.returncode == 0, uploaded.stderr
    try:
        for node in NODES:
            on_disk = lab_host(node).check_output(f"sha256sum {site.data_root}/shared/incoming/{name}")
            assert on_disk.split()[0] == digest, node
            # And served by each node itself, over FTPS to its own address.
            copy = tmp_path / f"{node}.bin"
            fetched = curl(site, site.addresses[node], "-o", str(copy), f"ftp://SERVER/incoming/{name}")
            assert fetched.returncode == 0, (node, fetched.stderr)
            assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest, node
    finally:
        curl(site, site.vip, "-Q", f"DELE incoming/{name}", "ftp://SERVER/")


def test_the_nodes_write_the_shared_volume_as_one_account(site):
    """One uid and gid on every node (from the inventory), and ftpsd bound to the volume's mount unit."""
    ids = {node: lab_host(node).check_output("id -u ftpsd; id -g ftpsd").split() for node in NODES}
    expected = [
        str(inventory_value(NODES[0], "ftps_server_uid")),
        str(inventory_value(NODES[0], "ftps_server_gid")),
    ]
    assert all(found == expected for found in ids.values()), ids
    for node in NODES:
        host = lab_host(node)
        mount_unit = host.check_output(f"systemd-escape --path --suffix=mount {site.data_root}")
        assert host.check_output("findmnt -n -o FSTYPE --target " + site.data_root) == "fuse.glusterfs", node
        requires = host.check_output("systemctl show -p Requires --value ftpsd.service").split()
        assert mount_unit in requires, (node, requires)


def _start_upload(site, node: str, payload, path: str) -> subprocess.Popen[str]:
    """An upload straight to a node, held back by the client (1 MiB/s) so that two of them overlap."""
    argv = curl_argv(
        site, site.addresses[node], "--limit-rate", "1M", "-T", str(payload), f"ftp://SERVER/{path}"
    )
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CURL_ENV)


def test_one_user_uploading_one_name_on_two_nodes_at_once_publishes_one_whole_file(site, tmp_path):
    """The upload's partial is locked (flock) on the shared volume: the session on the other node is refused
    with 450 instead of writing into the same partial, so the published file is one upload, whole."""
    users = inventory_value(NODES[0], "ftps_server_users")
    uploader = next(u for u in users if u.get("permissions") == "upload_only")
    as_uploader = dataclasses.replace(site, user=uploader["name"], password=uploader["password"])
    name = f"race-{uuid.uuid4().hex[:8]}.bin"
    payloads = {}
    for node in NODES:
        payloads[node] = tmp_path / f"{node}.bin"
        payloads[node].write_bytes(uuid.uuid4().bytes * 262144)  # 4 MiB each, different
    uploads = {
        node: _start_upload(as_uploader, node, path, f"incoming/{name}") for node, path in payloads.items()
    }
    results = {node: (upload.wait(timeout=60), upload.stderr.read()) for node, upload in uploads.items()}
    try:
        winners = [node for node, (code, _) in results.items() if code == 0]
        assert len(winners) == 1, results
        (loser,) = set(NODES) - set(winners)
        assert "450" in results[loser][1], results
        published = lab_host(NODES[0]).check_output(f"sha256sum {site.data_root}/shared/incoming/{name}")
        assert published.split()[0] == hashlib.sha256(payloads[winners[0]].read_bytes()).hexdigest()
    finally:
        curl(site, site.vip, "-Q", f"DELE incoming/{name}", "ftp://SERVER/")


def _quota_used_bytes(node: str, folder: str) -> int:
    """What one node counts (and enforces) for a quota folder: its gauge, scraped on the node's loopback."""
    port = tomllib.loads(lab_host(node).file("/etc/ftpsd/ftpsd.toml").content_string)["metrics"]["port"]
    script = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    body = lab_host(node).check_output(f"python3 -c {shlex.quote(script)}")
    return int(
        float(re.search(rf'^ftpsd_quota_used_bytes{{path="{re.escape(folder)}"}} (\S+)$', body, re.M)[1])
    )


def test_a_quota_counts_the_uploads_of_every_node_once(site, tmp_path):
    """Usage is counted from the shared volume: within one rescan interval the other node counts an upload
    made on the first (the same figure, not twice), and refuses with 552 what would exceed the quota,
    keeping nothing of it. Before its rescan it could accept more: README, "HA sites"."""
    config = tomllib.loads(lab_host(NODES[0]).file("/etc/ftpsd/ftpsd.toml").content_string)
    quotas = {quota["path"]: quota for quota in config["quotas"] if quota.get("max_bytes")}
    users = inventory_value(NODES[0], "ftps_server_users")
    # The smallest quota a full user's home has (the lab's partner: 32 MiB), so that the uploads stay small.
    owners = [u for u in users if u.get("permissions") == "full" and u.get("home") in quotas]
    owner = min(owners, key=lambda u: quotas[u["home"]]["max_bytes"])
    folder, limit = owner["home"], quotas[owner["home"]]["max_bytes"]
    as_owner = dataclasses.replace(site, user=owner["name"], password=owner["password"])
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(b"q" * (limit * 6 // 10))
    second.write_bytes(b"r" * (limit * 6 // 10))
    rescan = config["limits"].get("quota_rescan_interval", LimitSettings.quota_rescan_interval)
    # A node counts another node's uploads and deletes at its next rescan: start from a figure both agree on.
    wait_for(
        "both nodes counting the folder alike",
        lambda: _quota_used_bytes(NODES[0], folder) == _quota_used_bytes(NODES[1], folder),
        timeout=2 * rescan + 30,
    )
    before = _quota_used_bytes(NODES[1], folder)
    first_node, other_node = (site.addresses[node] for node in NODES)
    uploaded = curl(as_owner, first_node, "-T", str(first), "ftp://SERVER/ha-quota-first.bin")
    assert uploaded.returncode == 0, uploaded.stderr
    try:
        wait_for(
            "the other node counting the upload",
            lambda: _quota_used_bytes(NODES[1], folder) >= before + first.stat().st_size,
            timeout=2 * rescan + 30,
        )
        assert _quota_used_bytes(NODES[0], folder) == _quota_used_bytes(NODES[1], folder)
        since = time.time() - 1
        refused = curl(
            as_owner, other_node, "-T", str(second), "ftp://SERVER/ha-quota-second.bin", timeout=60
        )
        assert refused.returncode != 0
        # curl reads the 552 unless its send already failed on the dropped data connection (exit 55 then):
        # the node's log says which refusal it was.
        assert f"Folder quota of {limit} bytes exceeded" in journal(NODES[1], since)
        assert not lab_host(NODES[0]).file(f"{folder}/ha-quota-second.bin").exists
    finally:
        curl(as_owner, site.vip, "-Q", "DELE ha-quota-first.bin", "ftp://SERVER/")


def test_each_node_announces_the_address_and_its_own_slice(site):
    """The site's passive range in equal slices, in inventory order (README, "HA sites")."""
    start, end = (int(inventory_value(NODES[0], f"ftps_site_passive_port_{e}")) for e in ("start", "end"))
    size = (end - start + 1) // len(NODES)
    for index, node in enumerate(NODES):
        config = tomllib.loads(lab_host(node).file("/etc/ftpsd/ftpsd.toml").content_string)["server"]
        assert config["masquerade_address"] == site.vip, node
        assert config["passive_ports"] == [start + index * size, start + (index + 1) * size - 1], node


def test_the_site_serves_ipv6_clients_on_its_ipv6_address(site, tmp_path):
    """ftps_site_vip6 moves with the IPv4 address; EPSV names a port only, so the data connection reaches
    the node's slice on the IPv6 address, and the certificate names that address too (curl checks it)."""
    vip6 = str(inventory_value(NODES[0], "ftps_site_vip6"))
    (holder,) = vip_holders(site)
    assert f" {vip6}/128 " in lab_host(holder).check_output("ip -6 -o address show"), holder
    payload = tmp_path / "payload6.bin"
    payload.write_bytes(uuid.uuid4().bytes * 16384)
    name = f"ha6-{uuid.uuid4().hex[:8]}.bin"
    server = f"[{vip6}]"
    try:
        uploaded = curl(site, server, "-g", "-T", str(payload), f"ftp://SERVER/incoming/{name}")
        assert uploaded.returncode == 0, uploaded.stderr
        copy = tmp_path / "copy6.bin"
        fetched = curl(site, server, "-g", "-v", "-o", str(copy), f"ftp://SERVER/incoming/{name}")
        assert fetched.returncode == 0, fetched.stderr
        assert "EPSV" in fetched.stderr
        assert copy.read_bytes() == payload.read_bytes()
    finally:
        curl(site, site.vip, "-Q", f"DELE incoming/{name}", "ftp://SERVER/")


def _serving_node(listing: str) -> str:
    """The node whose passive slice the PASV reply of a login through the address named (curl -v)."""
    numbers = re.search(r"^< 227 .*\(([0-9,]+)\)", listing, re.MULTILINE)[1].split(",")
    port = int(numbers[4]) * 256 + int(numbers[5])
    start, end = (int(inventory_value(NODES[0], f"ftps_site_passive_port_{e}")) for e in ("start", "end"))
    return NODES[(port - start) // ((end - start + 1) // len(NODES))]


def _logins_land_on(site, count: int = 6) -> set[str]:
    """The nodes that served count logins (with a listing) through the site's address."""
    served = set()
    for _ in range(count):
        listing = curl(site, site.vip, "-v", "--ftp-pasv", "--disable-epsv", "ftp://SERVER/incoming/")
        assert listing.returncode == 0, listing.stderr
        served.add(_serving_node(listing.stderr))
    return served


def test_a_drained_node_takes_no_new_logins_until_enabled(site):
    """ha-node-state.yml through HAProxy's runtime API on both load balancers."""
    assert _logins_land_on(site) == set(NODES)  # leastconn spreads sequential logins over both
    drained = run_playbook(PLAYBOOK, "-e", f"ftps_ha_node={NODES[0]}", "-e", "ftps_ha_node_state=drain")
    assert drained.rc == 0, drained.output
    try:
        assert _logins_land_on(site) == {NODES[1]}
    finally:
        enabled = run_playbook(PLAYBOOK, "-e", f"ftps_ha_node={NODES[0]}", "-e", "ftps_ha_node_state=enable")
    assert enabled.rc == 0, enabled.output
    assert _logins_land_on(site) == set(NODES)


def test_the_address_moves_when_haproxy_stops_and_logins_resume(site, capsys):
    (holder,) = vip_holders(site)
    (other,) = [name for name in LOADBALANCERS if name != holder]
    lab_host(holder).run_expect([0], "systemctl stop haproxy")
    started = time.monotonic()
    try:
        took = wait_for(
            "a login through the address after the failover",
            lambda: curl(site, site.vip, "--max-time", "3", "ftp://SERVER/incoming/").returncode == 0,
            FAILOVER_BOUND,
        )
        with capsys.disabled():
            print(f"\nfailover: {took:.1f} s from stopping haproxy on {holder} to a login through {site.vip}")
        assert vip_holders(site) == [other]
    finally:
        lab_host(holder).run_expect([0], "systemctl start haproxy")
        # nopreempt: the address stays on the other host; let the restarted one settle as BACKUP.
        time.sleep(max(0, 3 - (time.monotonic() - started)))
    assert vip_holders(site) == [other]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_glusterd_answers_the_nodes_only(site):
    # From the controller (not a node): dropped.
    assert not _reachable(site.addresses[STORAGE], 24007)
    # From a node: accepted (the positive control that the port is served at all).
    probe = f"import socket; socket.create_connection(('{site.addresses[STORAGE]}', 24007), timeout=3)"
    lab_host(NODES[0]).run_expect([0], f'python3 -c "{probe}"')


def test_glusterd_refuses_the_load_balancers(site):
    """A load balancer is not a client of the volume: the storage host drops it too."""
    probe = f"import socket; socket.create_connection(('{site.addresses[STORAGE]}', 24007), timeout=3)"
    lab_host(LOADBALANCERS[0]).run_expect([1], f'python3 -c "{probe}"')


def _connection_from(host: str, address: str, port: int) -> str:
    """What a TCP connection from the lab host to address:port meets: "open" (accepted), "refused" (a reset:
    the firewall let it through to a port nobody listens on) or "dropped" (no answer within 3 s)."""
    probe = (
        "import socket\n"
        "try:\n"
        f" socket.create_connection(('{address}', {port}), timeout=3); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except TimeoutError: print('dropped')\n"
    )
    return lab_host(host).check_output(f"python3 -c {shlex.quote(probe)}")


def test_a_node_serves_ftp_to_its_load_balancers_and_the_controller_only(site):
    """A node's control ports and passive slice: from the load balancers (which bring the clients) and from
    the controller (the health gate), not from another host of the site; SSH stays open to all."""
    node, address = NODES[0], site.addresses[NODES[0]]
    config = tomllib.loads(lab_host(node).file("/etc/ftpsd/ftpsd.toml").content_string)["server"]
    ports = [port for port in (config["explicit_port"], config["implicit_port"]) if port]
    passive = config["passive_ports"][0]  # nobody listens there while no transfer waits
    for port in [*ports, passive]:
        for other in (STORAGE, NODES[1]):
            assert _connection_from(other, address, port) == "dropped", f"{node}:{port} from {other}"
    for port in ports:
        assert _connection_from(LOADBALANCERS[1], address, port) == "open", f"{node}:{port} from the LB"
        assert _reachable(address, port), f"{node}:{port} from the controller"
    assert _connection_from(LOADBALANCERS[1], address, passive) == "refused", "the LB passes the firewall"
    assert _connection_from(STORAGE, address, 22) == "open", "SSH is open to every host"


def _vrrp_advert(router_id: int, priority: int, address: str) -> bytes:
    """A VRRPv2 advertisement (RFC 3768) for one address, with its checksum."""
    body = bytes([0x21, router_id, priority, 1, 0, 1, 0, 0]) + socket.inet_aton(address) + bytes(8)
    total = sum(int.from_bytes(body[i : i + 2], "big") for i in range(0, len(body), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = (~total) & 0xFFFF
    return body[:6] + checksum.to_bytes(2, "big") + body[8:]


def _send_adverts(sender: str, advert: bytes) -> None:
    """Eight advertisements from the lab host sender, to VRRP's multicast group, TTL 255 as VRRP wants."""
    send = (
        "import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112);"
        " s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255);"
        " s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0);"
        f" [(s.sendto(bytes.fromhex('{advert.hex()}'), ('224.0.0.18', 0)), time.sleep(0.5))"
        " for _ in range(8)]"
    )
    lab_host(sender).run_expect([0], f'python3 -c "{send}"')


# ftps_vip_router_id's default, which the scenario keeps; 254 outranks both load balancers.
ROUTER_ID, FORGED_PRIORITY = 51, 254


def test_a_forged_vrrp_advertisement_from_a_node_does_not_take_the_address(site):
    """The holder's firewall accepts VRRP from the other load balancer only."""
    (holder,) = vip_holders(site)
    _send_adverts(NODES[0], _vrrp_advert(ROUTER_ID, FORGED_PRIORITY, site.vip))
    assert vip_holders(site) == [holder]


def test_the_same_advertisement_from_the_other_load_balancer_does(site):
    """The control for the test above: such a packet, from an admitted source, makes the holder give up."""
    (holder,) = vip_holders(site)
    (other,) = [name for name in LOADBALANCERS if name != holder]
    _send_adverts(other, _vrrp_advert(ROUTER_ID, FORGED_PRIORITY, site.vip))
    # It gave the address up while the adverts came (now the two elect a holder again).
    gone = "a holder that saw a higher priority gives the address up"
    assert holder not in vip_holders(site), gone
    wait_for("one holder again", lambda: len(vip_holders(site)) == 1, 15)
