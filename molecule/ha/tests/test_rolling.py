"""Rolling deploys of the HA site keep it served, a failed node stops the rollout behind the load balancers,
and a node that dies mid-upload loses nothing complete: the user reconnects through the site's address."""

from __future__ import annotations

import ftplib
import functools
import hashlib
import io
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from conftest import LOADBALANCERS, NODES, Site, curl, wait_for
from ftpsd.client import FTPS
from scenario_runs import PROJECT, inventory_value, lab_host, run_playbook

SITE_YML = PROJECT / "site.yml"
# A metrics port of the unit (ftpsd.service.j2 names the sockets ftpsd binds at start): changing it changes
# the unit, so every node is restarted, as a new ftpsd release restarts it. The scenario keeps the default.
RESTARTING_CHANGE = ("-e", '{"ftps_server_metrics_port": 9822}')  # JSON: a number, not a string
PAUSE = 0.3  # between two logins of the client loop
CHUNK = 1 << 20
# HAProxy's check (inter 2 s, fall 2) takes a dead node out within about 4 s; a reconnect comes before that.
RECONNECT_BOUND = 30
SRV_ADMF_FDRAIN = 0x08  # haproxy/include/haproxy/server-t.h: drained by the runtime API
BROKEN = (OSError, EOFError, ftplib.Error)  # what a client may see when the node dies under it


def _service_pid(node: str) -> int:
    return int(lab_host(node).check_output("systemctl show -p MainPID --value ftpsd"))


def haproxy(lb: str, command: str) -> str:
    """One command on the load balancer's runtime API (no socat in the image: Python's socket)."""
    script = (
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect('/run/haproxy/admin.sock');"
        f" s.sendall(b'{command}\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())"
    )
    return lab_host(lb).check_output(f'python3 -c "{script}"')


def drained_nodes(lb: str) -> set[str]:
    """The nodes drained by the runtime API in a control backend (show servers state, srv_admin_state)."""
    drained = set()
    for line in haproxy(lb, "show servers state").splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1].startswith("ftps_control_") and int(fields[6]) & SRV_ADMF_FDRAIN:
            drained.add(fields[3])
    return drained


@dataclass
class LoginLoop:
    """Logins with a listing through the site's address, every PAUSE s, on a thread, until stopped."""

    site: Site
    logins: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            listing = curl(self.site, self.site.vip, "--max-time", "10", "ftp://SERVER/incoming/")
            self.logins += 1
            if listing.returncode != 0:
                at = time.strftime("%H:%M:%S")
                self.failures.append(f"{at} exit {listing.returncode}: {listing.stderr}")
            self._stop.wait(PAUSE)

    @contextmanager
    def running(self) -> Iterator[LoginLoop]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)


def _deploy(*args: str) -> tuple[float, object]:
    started = time.monotonic()
    run = run_playbook(SITE_YML, *args)
    return time.monotonic() - started, run


def test_a_rolling_deploy_that_restarts_every_node_keeps_logins_through_the_address_working(site, capsys):
    before = {node: _service_pid(node) for node in NODES}
    loop = LoginLoop(site)
    with loop.running():
        changed_in, changed = _deploy(*RESTARTING_CHANGE)
        assert changed.rc == 0, changed.output[-6000:]
        restarted = {node: _service_pid(node) for node in NODES}
        restored_in, restored = _deploy()
        assert restored.rc == 0, restored.output[-6000:]
    with capsys.disabled():
        print(
            f"\nrolling deploys: {changed_in:.0f} s (restart of every node), {restored_in:.0f} s (back);"
            f" {loop.logins} logins through {site.vip}, {len(loop.failures)} failed"
        )
    # The trigger is honest: every node's ftpsd was restarted by the first run and again by the second.
    assert all(restarted[node] != before[node] for node in NODES), (before, restarted)
    assert all(_service_pid(node) != restarted[node] for node in NODES)
    assert loop.logins >= 20, "the client loop hardly ran"
    assert loop.failures == []
    # Both nodes serve again, on both load balancers.
    assert all(drained_nodes(lb) == set() for lb in LOADBALANCERS)


def test_a_second_run_reports_no_change_although_it_drains_each_node_briefly(site):
    """The drain and the enable of an unchanged node leave it as they found it: changed=0."""
    run = run_playbook(SITE_YML)
    assert run.rc == 0, run.output[-6000:]
    assert set(run.changed().values()) == {0}, run.changed()
    assert "Drain the node in every control backend" in run.output  # it did drain (not skipped)


def test_a_node_that_fails_its_gate_stops_the_rollout_drained_and_the_site_stays_served(site):
    """A configuration that passes validation but serves nobody from outside: ftpsd on loopback only."""
    first, second = NODES
    untouched = (_service_pid(second), lab_host(second).file("/etc/ftpsd/ftpsd.toml").sha256sum)
    failed = run_playbook(SITE_YML, "-e", "ftps_server_listen_address=127.0.0.1")
    try:
        assert failed.rc != 0
        assert failed.failed().get(first) == 1, failed.output[-6000:]
        # The rollout stopped at the first node: the second was not touched.
        assert (_service_pid(second), lab_host(second).file("/etc/ftpsd/ftpsd.toml").sha256sum) == untouched
        assert all(drained_nodes(lb) == {first} for lb in LOADBALANCERS)
        for _ in range(4):  # the site is served by the other node
            listing = curl(site, site.vip, "--max-time", "10", "ftp://SERVER/incoming/")
            assert listing.returncode == 0, listing.stderr
    finally:
        restored = run_playbook(SITE_YML)
    assert restored.rc == 0, restored.output[-6000:]
    assert restored.changed().get(first, 0) > 0  # its config back, and back on the load balancers
    assert all(drained_nodes(lb) == set() for lb in LOADBALANCERS)


# --- A node dies mid-upload -------------------------------------------------------------------------------


def _client(site: Site) -> FTPS:
    context = ssl.create_default_context(cafile=str(site.trust))
    ftp = FTPS(context=context, timeout=15)
    ftp.connect(site.vip, 21)
    ftp.login(site.user, site.password)
    ftp.prot_p()
    ftp.voidcmd("TYPE I")  # ftplib's default ASCII would drop CRs
    ftp.cwd("incoming")
    return ftp


@functools.cache
def _site_range() -> tuple[int, int]:
    start, end = (int(inventory_value(NODES[0], f"ftps_site_passive_port_{e}")) for e in ("start", "end"))
    return start, end


def _node_of(ftp: FTPS) -> str:
    """The node holding this session: the one whose passive slice its PASV reply names."""
    port = ftp.makepasv()[1]
    start, end = _site_range()
    return NODES[(port - start) // ((end - start + 1) // len(NODES))]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_sha256(ftp: FTPS, name: str) -> str:
    digest = hashlib.sha256()
    ftp.retrbinary(f"RETR {name}", digest.update, blocksize=65536)
    return digest.hexdigest()


def _completes(ftp: FTPS, conn, rest: bytes) -> bool:
    """Send the rest of an upload and read the server's verdict; False if the connection broke instead."""
    try:
        conn.sendall(rest)
        conn.unwrap()
        ftp.voidresp()
    except BROKEN:
        return False
    finally:
        conn.close()
        ftp.close()
    return True


def _reconnect(site: Site) -> tuple[float, FTPS]:
    clients: list[FTPS] = []

    def attempt() -> bool:
        try:
            clients.append(_client(site))
        except BROKEN:
            return False
        return True

    took = wait_for("a new login through the address after the node died", attempt, RECONNECT_BOUND)
    return took, clients[-1]


def test_a_node_dying_mid_upload_loses_no_complete_file_and_the_partial_resumes_on_the_other(site, capsys):
    tag = uuid.uuid4().hex[:8]
    done, killed = f"done-{tag}.bin", f"killed-{tag}.bin"
    complete, interrupted = os.urandom(4 * CHUNK), os.urandom(16 * CHUNK)
    ftp = _client(site)
    ftp.storbinary(f"STOR {done}", io.BytesIO(complete), blocksize=65536)
    victim = _node_of(ftp)
    conn = ftp.transfercmd(f"STOR {killed}")
    conn.sendall(interrupted[: 4 * CHUNK])
    partials = f"{site.data_root}/shared/incoming/.ftpsd-upload-*.partial"
    wait_for(
        "the interrupted upload on the shared storage",
        lambda: lab_host(victim).run(f"find {partials} -size +{2 * CHUNK // 1024}k").stdout.strip() != "",
        30,
    )
    # The node's ftpsd dies (kill -9) and stays down (stop: systemd would restart it after 2 s).
    pid = _service_pid(victim)
    lab_host(victim).run_expect([0], f"systemctl stop --no-block ftpsd; kill -9 {pid}")
    try:
        assert not _completes(ftp, conn, interrupted[4 * CHUNK :])  # the client notices
        took, ftp = _reconnect(site)
        survivor = _node_of(ftp)
        with capsys.disabled():
            print(f"\nnode death: {victim} killed mid-upload; a login through {site.vip} after {took:.1f} s")
        assert survivor != victim
        names = ftp.nlst()
        assert done in names
        assert killed not in names  # no partial under its final name
        assert not [n for n in names if n.startswith(".ftpsd-upload-")]  # and the partial stays hidden
        assert _download_sha256(ftp, done) == _sha256(complete)
        # The partial is on the shared storage and the surviving node resumes it.
        kept = ftp.size(killed)
        assert 2 * CHUNK <= kept <= 4 * CHUNK, kept
        ftp.storbinary(f"STOR {killed}", io.BytesIO(interrupted[kept:]), blocksize=65536, rest=kept)
        assert _download_sha256(ftp, killed) == _sha256(interrupted)
        for name in (done, killed):
            ftp.delete(name)
        ftp.quit()
    finally:
        lab_host(victim).run_expect([0], "systemctl start ftpsd")
    wait_for("the node back in HAProxy", lambda: _logins_reach(site, victim), 60)


def _logins_reach(site: Site, node: str) -> bool:
    """A few logins through the address; whether one of them landed on node (leastconn spreads them)."""
    for _ in range(4):
        try:
            ftp = _client(site)
        except BROKEN:
            return False
        try:
            if _node_of(ftp) == node:
                return True
        finally:
            ftp.close()
    return False
