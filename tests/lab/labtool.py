"""Boot real Debian 12 and 13 hosts on this machine for tests: systemd as PID 1, sshd, nftables, Python 3.

Docker, podman and systemd-nspawn do not run on these machines (mixed cgroup v1/v2), so each lab host is
built from plain kernel namespaces: its own PID, mount, UTS, IPC, cgroup and network namespace, an overlayfs
copy of a cached debootstrap root filesystem (one per Debian release), and a veth on a bridge with an IPv4
address from 198.18.0.0/15 (RFC 2544) and an IPv6 address from 2001:2::/48 (RFC 5180), both reserved for
test networks and unreachable beyond this machine. Ansible reaches the hosts over SSH exactly as it reaches
production servers, with a generated key and pinned host keys.

Usage:
    lab [--lab NAME] up (N | HOST[:RELEASE]...) [--release RELEASE] [--inventory FILE] [--group GROUP]
    lab [--lab NAME] down
    lab down --all
    lab [--lab NAME] status
    lab [--lab NAME] ssh HOST [COMMAND...]
    lab [--lab NAME] reboot HOST
    lab [--lab NAME] instance-config FILE      # Molecule's delegated-driver instance config
    lab build [--release RELEASE]              # build (or reuse) the cached root filesystem

RELEASE is a Debian codename: bookworm (Debian 12, the default) or trixie (Debian 13); a lab can mix them,
for example `lab up ftps-1 ftps-2:trixie`. The inventory it writes gives each host `lab_debian_release`
and `lab_ipv6_address`.

Several labs can run side by side (one per Molecule scenario, one for the demo); each has its own bridge
and /24. LAB_PREFIX, when set, is put before every lab name, and `down --all` then stops only those labs:
checkouts that test side by side on one machine keep out of each other's way. Stdlib only: it runs before
any virtual environment exists. `tests/lab/lab` is the command; this module is its code, and boot.sh the
script each host boots with.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# The Debian releases a lab host can run (codename: version); hosts without one get DEFAULT_RELEASE.
RELEASES = {"bookworm": "12", "trixie": "13"}
DEFAULT_RELEASE = "bookworm"
# Everything the roles need on a host must be baked in: lab hosts have no internet.
PACKAGES = (
    *("python3", "python3-venv", "python3-apt", "python3-cryptography", "python3-cffi-backend"),
    *("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "nftables", "sudo"),
    *("ca-certificates", "procps", "acl"),
    # Installed, not enabled: the firewall role's firewalld backend is tested where a host asks for it.
    # (libpam-systemd is the logind its polkitd needs, which debootstrap does not pick; netbase its
    # /etc/protocols.)
    *("firewalld", "libpam-systemd", "netbase"),
)
CACHE_DIR = Path(os.environ.get("LAB_CACHE_DIR", "/var/cache/ftpslab"))
STATE_ROOT = Path(os.environ.get("LAB_STATE_DIR", "/run/ftpslab"))
DATA_ROOT = Path(os.environ.get("LAB_DATA_DIR", "/var/lib/ftpslab"))
TEST_RANGE = ipaddress.ip_network("198.18.0.0/15")
TEST_RANGE6 = ipaddress.ip_network("2001:2::/48")
NETNS_PREFIX = "ftpslab-"
REQUIRED_TOOLS = ("ip", "unshare", "nsenter", "mount", "umount", "ssh", "ssh-keygen", "debootstrap")
BOOT_TIMEOUT = float(os.environ.get("LAB_BOOT_TIMEOUT", "90"))
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

# boot.sh runs as PID 1 of the new namespaces, then becomes systemd. A private /dev with only harmless nodes
# keeps the host's disks out of reach; /dev/console is the host's boot log so early failures are visible.
# The script is part of the root filesystem's digest: a changed script builds a new one.
BOOT_SCRIPT = Path(__file__).with_name("boot.sh").read_text()

# Units that make no sense inside a namespace host, or that would reach for the internet.
MASKED_UNITS = (
    "getty@tty1.service",
    "console-getty.service",
    "serial-getty@console.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
    "systemd-networkd-wait-online.service",
    "systemd-modules-load.service",  # Debian 13's fails: a namespace host cannot load kernel modules
)

# Debian enables firewalld when it is installed; on a lab host only the firewall role may start it.
FIREWALLD_ENABLE_LINKS = (
    "multi-user.target.wants/firewalld.service",
    "dbus-org.fedoraproject.FirewallD1.service",
)


class LabError(Exception):
    """An error the operator can act on; printed without a traceback."""


@dataclass
class Host:
    """One booted host, as recorded in the lab's state file."""

    name: str
    address: str
    netns: str
    veth: str
    pid: int  # systemd (PID 1 inside), as seen from this machine
    release: str = DEFAULT_RELEASE
    address6: str = ""


@dataclass
class Lab:
    """Where one lab keeps its state and which /24 it owns."""

    name: str
    index: int
    hosts: list[Host]

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.name

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(f"198.18.{self.index}.0/24")

    @property
    def gateway(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def network6(self) -> ipaddress.IPv6Network:
        return ipaddress.ip_network(f"2001:2:0:{self.index:x}::/64")

    @property
    def gateway6(self) -> str:
        return str(self.network6.network_address + 1)

    @property
    def bridge(self) -> str:
        return f"ftpslab{self.index}"

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure becomes a LabError carrying its stderr."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def log(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise labs that touch shared things (subnet choice, the rootfs cache, the route)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def preflight(need_debootstrap: bool = False) -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root (it creates namespaces, mounts and network interfaces)")
    tools = [t for t in REQUIRED_TOOLS if need_debootstrap or t != "debootstrap"]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)}; install them with "
            "`apt-get install debootstrap iproute2 util-linux openssh-client mount`"
        )
    if not Path("/sys/fs/cgroup/unified").is_dir() and not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        raise LabError("no cgroup v2 hierarchy found at /sys/fs/cgroup/unified or /sys/fs/cgroup")


def cgroup_root() -> Path:
    """The cgroup v2 folder under which each host gets its own subtree (hybrid or unified layouts)."""
    unified = Path("/sys/fs/cgroup/unified")
    base = unified if unified.is_dir() else Path("/sys/fs/cgroup")
    return base / "ftpslab"


# ---------------------------------------------------------------------------------------------- rootfs


def debian_mirror() -> str:
    """The machine's own configured Debian mirror: lab builds use what apt here already reaches."""
    if os.environ.get("LAB_MIRROR"):
        return os.environ["LAB_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for match in re.finditer(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s*)?)(\S+)", text):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def rootfs_path(release: str) -> Path:
    # Everything that shapes the cached tree: a change to any of it builds a new one.
    inputs = [release, *sorted(PACKAGES), *MASKED_UNITS, *FIREWALLD_ENABLE_LINKS, BOOT_SCRIPT]
    digest = hashlib.sha256(" ".join(inputs).encode()).hexdigest()[:12]
    return CACHE_DIR / f"rootfs-{release}-{digest}"


def build_rootfs(release: str) -> Path:
    """Build a release's root filesystem once; later boots share it read-only as an overlay lower layer."""
    target = rootfs_path(release)
    with locked(CACHE_DIR / ".build.lock"):
        if (target / ".complete").exists():
            return target
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        mirror = debian_mirror()
        log(
            f"building the Debian {RELEASES[release]} ({release}) root filesystem from {mirror}"
            " (once, a minute or two)"
        )
        proc = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                release,
                str(staging),
                mirror,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise LabError(f"debootstrap failed:\n{tail}")
        customise_rootfs(staging)
        staging.rename(target)
        (target / ".complete").touch()
        # An older build may still be the lower layer of a lab another checkout is running.
        if not all_labs():
            for stale in CACHE_DIR.glob(f"rootfs-{release}-*"):
                if stale != target:
                    shutil.rmtree(stale, ignore_errors=True)
    return target


def customise_rootfs(root: Path) -> None:
    """Shared settings of every lab host; per-host identity goes into each host's upper layer."""
    (root / ".oldroot").mkdir(exist_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text(
        "# Lab hosts: root logs in with the lab's generated key only.\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n"
    )
    systemd_dir = root / "etc/systemd/system"
    for link in FIREWALLD_ENABLE_LINKS:
        (systemd_dir / link).unlink(missing_ok=True)
    for unit in MASKED_UNITS:
        link = systemd_dir / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    # Lab hosts have no mirror to reach; apt must not try to.
    (root / "etc/apt/apt.conf.d/99lab-offline").write_text('Acquire::Retries "0";\n')
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)


# ----------------------------------------------------------------------------------------------- state


def state_file(name: str) -> Path:
    return STATE_ROOT / name / "state.json"


def load_lab(name: str) -> Lab | None:
    path = state_file(name)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Lab(name=data["name"], index=data["index"], hosts=[Host(**h) for h in data["hosts"]])


def save_lab(lab: Lab) -> None:
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    payload = {"name": lab.name, "index": lab.index, "hosts": [asdict(h) for h in lab.hosts]}
    tmp = state_file(lab.name).with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(state_file(lab.name))


def all_labs() -> list[Lab]:
    if not STATE_ROOT.is_dir():
        return []
    return [lab for p in sorted(STATE_ROOT.iterdir()) if p.is_dir() and (lab := load_lab(p.name))]


def allocate_index(name: str, previous: int | None = None) -> int:
    """Each lab owns 198.18.<index>.0/24; indexes are recorded so concurrent labs never overlap.

    A lab booted again (after a killed run, say) keeps its ``previous`` index while no other lab took it:
    its addresses, and so the inventories written for it, stay valid.
    """
    taken = {lab.index for lab in all_labs() if lab.name != name}
    for index in [*([previous] if previous else []), *range(1, 255)]:
        if index not in taken:
            return index
    raise LabError("no free /24 left in 198.18.0.0/16 for another lab")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -------------------------------------------------------------------------------------------- network


def ensure_bridge(lab: Lab) -> None:
    if run("ip", "link", "show", lab.bridge, check=False).returncode != 0:
        run("ip", "link", "add", lab.bridge, "type", "bridge")
    run("ip", "addr", "replace", f"{lab.gateway}/24", "dev", lab.bridge)
    # nodad: the address is usable at once (duplicate detection would hold it back for a second or two).
    run("ip", "-6", "addr", "replace", f"{lab.gateway6}/64", "dev", lab.bridge, "nodad")
    run("ip", "link", "set", lab.bridge, "up")
    # The bridge's /24 and /64 are more specific; nothing else in the test ranges can leave this machine.
    run("ip", "route", "replace", "unreachable", str(TEST_RANGE))
    run("ip", "-6", "route", "replace", "unreachable", str(TEST_RANGE6))


def forget_machine_state_if_unused() -> None:
    """With the last lab gone, leave the machine as it was (only the rootfs cache stays)."""
    if all_labs():
        return
    run("ip", "route", "del", "unreachable", str(TEST_RANGE), check=False)
    run("ip", "-6", "route", "del", "unreachable", str(TEST_RANGE6), check=False)
    remove_cgroup_tree(cgroup_root())
    (STATE_ROOT / ".lock").unlink(missing_ok=True)
    for folder in (DATA_ROOT, STATE_ROOT):
        with contextlib.suppress(OSError):
            folder.rmdir()


def retry(action: str, func: Callable[[], subprocess.CompletedProcess[str]], attempts: int = 20) -> None:
    """Kernel objects linger for a moment after their last process exits ("Device or resource busy")."""
    for attempt in range(attempts):
        proc = func()
        if proc.returncode == 0:
            return
        if attempt == attempts - 1:
            raise LabError(f"could not {action}: {proc.stderr.strip()}")
        time.sleep(0.25)


# ---------------------------------------------------------------------------------------------- hosts


def host_paths(lab_name: str, host: str) -> dict[str, Path]:
    base = DATA_ROOT / lab_name / host
    return {"base": base, "upper": base / "upper", "work": base / "work", "root": base / "root"}


def host_cgroup(lab_name: str, host: str) -> Path:
    return cgroup_root() / lab_name / host


def prepare_upper(lab: Lab, host: str, addresses: tuple[str, str], paths: dict[str, Path]) -> str:
    """Give the host its identity: hostname, machine-id, its own SSH host key, our public key."""
    upper = paths["upper"]
    (upper / "etc/ssh").mkdir(parents=True, exist_ok=True)
    (upper / "root/.ssh").mkdir(parents=True, mode=0o700, exist_ok=True)
    (upper / "etc/hostname").write_text(f"{host}\n")
    (upper / "etc/machine-id").write_text(os.urandom(16).hex() + "\n")
    address, address6 = addresses
    (upper / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n{address} {host}\n::1 localhost ip6-localhost\n{address6} {host}\n"
    )
    key = upper / "etc/ssh/ssh_host_ed25519_key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", str(key))
    authorized = upper / "root/.ssh/authorized_keys"
    authorized.write_text(Path(f"{lab.key}.pub").read_text())
    authorized.chmod(0o600)
    return Path(f"{key}.pub").read_text().split()[1]


def boot_host(lab: Lab, host: str, release: str, rootfs: Path) -> Host:
    offset = 11 + len(lab.hosts)
    address = str(lab.network.network_address + offset)
    address6 = str(lab.network6.network_address + offset)
    paths = host_paths(lab.name, host)
    for key in ("upper", "work", "root"):
        paths[key].mkdir(parents=True, exist_ok=True)
    host_key = prepare_upper(lab, host, (address, address6), paths)
    run(
        "mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir={rootfs},upperdir={paths['upper']},workdir={paths['work']}", str(paths["root"]),
    )  # fmt: skip

    netns = f"{NETNS_PREFIX}{lab.name}-{host}"
    veth = f"fl{lab.index}h{len(lab.hosts) + 1}"
    run("ip", "netns", "add", netns)
    run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    run("ip", "link", "set", veth, "master", lab.bridge, "up")
    run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
    run("ip", "netns", "exec", netns, "ip", "-6", "addr", "add", f"{address6}/64", "dev", "eth0", "nodad")
    run("ip", "netns", "exec", netns, "ip", "link", "set", "eth0", "up")
    run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
    run("ip", "netns", "exec", netns, "ip", "route", "add", "default", "via", lab.gateway)
    run("ip", "netns", "exec", netns, "ip", "-6", "route", "add", "default", "via", lab.gateway6)

    pid = start_init(lab, host, netns)
    run("nsenter", "-t", str(pid), "--uts", "hostname", host)
    with lab.known_hosts.open("a") as known:
        known.write(f"{address},{address6} ssh-ed25519 {host_key}\n")
    return Host(
        name=host, address=address, netns=netns, veth=veth, pid=pid, release=release, address6=address6
    )


def start_init(lab: Lab, host: str, netns: str) -> int:
    """Start the host's systemd on its (already mounted) disk and network; returns its PID here."""
    cgroup = host_cgroup(lab.name, host)
    cgroup.mkdir(parents=True, exist_ok=True)
    boot_script = lab.state_dir / "boot.sh"
    boot_script.write_text(BOOT_SCRIPT)
    boot_script.chmod(0o755)
    console = lab.state_dir / f"{host}.console.log"
    root = host_paths(lab.name, host)["root"]
    # The shell puts itself into the host's own cgroup first, so the cgroup namespace that unshare makes
    # is rooted there: systemd inside sees and manages only its own subtree, never the machine's or
    # another lab host's.
    launcher = (
        f'echo $$ > "{cgroup}/cgroup.procs" && exec nsenter --net=/run/netns/{netns} '
        f'unshare --cgroup --pid --mount --uts --ipc --fork "{boot_script}" "{root}" "{console}"'
    )
    with console.open("a") as out:
        unshare = subprocess.Popen(
            ["/bin/sh", "-c", launcher],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    pid = wait_for_child(unshare.pid)
    run("nsenter", "-t", str(pid), "--uts", "hostname", host)
    return pid


def wait_for_child(parent: int) -> int:
    """unshare --fork stays as the parent; its only child is the host's PID 1."""
    deadline = time.monotonic() + 10
    children = Path(f"/proc/{parent}/task/{parent}/children")
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
        time.sleep(0.05)
    raise LabError("the host's init process did not start")


def ssh_argv(lab: Lab, host: Host, *command: str) -> list[str]:
    return [
        "ssh", "-i", str(lab.key), "-o", f"UserKnownHostsFile={lab.known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
        f"root@{host.address}", *command,
    ]  # fmt: skip


def wait_until_up(lab: Lab, host: Host) -> None:
    """Wait for sshd to accept our key (not for is-system-running, which lingers in 'starting')."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if not process_alive(host.pid):
            break
        with contextlib.suppress(OSError), socket.create_connection((host.address, 22), timeout=1):
            probe = subprocess.run(ssh_argv(lab, host, "true"), capture_output=True, check=False)
            if probe.returncode == 0:
                return
        time.sleep(0.3)
    raise LabError(
        f"host {host.name} ({host.address}) did not come up within {BOOT_TIMEOUT:.0f}s\n{diagnose(lab, host)}"
    )


def diagnose(lab: Lab, host: Host) -> str:
    """What an operator needs when a host fails to boot: its console and, if reachable, its journal."""
    parts = []
    console = lab.state_dir / f"{host.name}.console.log"
    if console.exists():
        parts.append("--- console (last 40 lines) ---\n" + "\n".join(console.read_text().splitlines()[-40:]))
    if process_alive(host.pid):
        journal = run(
            "nsenter", "-t", str(host.pid), "-a", "journalctl", "--no-pager", "-n", "60", check=False
        )
        parts.append("--- journal (last 60 lines) ---\n" + (journal.stdout or journal.stderr))
        failed = run("nsenter", "-t", str(host.pid), "-a", "systemctl", "--failed", "--no-pager", check=False)
        parts.append("--- failed units ---\n" + failed.stdout)
    return "\n".join(parts)


def power_off(host: Host) -> None:
    """Shut down gracefully (SIGRTMIN+4 is systemd's poweroff); the disk and network stay."""
    if process_alive(host.pid):
        os.kill(host.pid, signal.SIGRTMIN + 4)
        deadline = time.monotonic() + 15
        while process_alive(host.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(host.pid):
            os.kill(host.pid, signal.SIGKILL)  # ends every process in the host's PID namespace


def stop_host(lab_name: str, host: Host) -> None:
    """Power off, then make sure nothing of the host is left."""
    power_off(host)
    clean_host(lab_name, host.name, host.netns, host.veth)


def clean_host(lab_name: str, host: str, netns: str, veth: str | None) -> None:
    """Remove what a host leaves behind; safe to call on remains of a killed run."""
    cgroup = host_cgroup(lab_name, host)
    kill_cgroup(cgroup)
    if veth:
        run("ip", "link", "del", veth, check=False)
    if run("ip", "netns", "pids", netns, check=False).returncode == 0:
        retry(f"delete network namespace {netns}", lambda: run("ip", "netns", "del", netns, check=False))
    paths = host_paths(lab_name, host)
    if os.path.ismount(paths["root"]):
        retry(f"unmount {paths['root']}", lambda: run("umount", str(paths["root"]), check=False))
    shutil.rmtree(paths["base"], ignore_errors=True)
    remove_cgroup_tree(cgroup)


def kill_cgroup(cgroup: Path) -> None:
    """SIGKILL every process still in the host's cgroup subtree (a killed run may leave orphans)."""
    for _ in range(50):
        pids = (
            [int(p) for f in cgroup.rglob("cgroup.procs") for p in f.read_text().split()]
            if cgroup.exists()
            else []
        )
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise LabError(f"processes in {cgroup} would not die")


def remove_cgroup_tree(cgroup: Path) -> None:
    if not cgroup.exists():
        return
    for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        cgroup.rmdir()
    parent = cgroup.parent
    with contextlib.suppress(OSError):
        if parent != cgroup_root():
            parent.rmdir()


def clean_stale(name: str) -> None:
    """Clear remains of a lab whose processes are gone (a killed run, a crashed CI job)."""
    lab = load_lab(name)
    if lab is not None:
        for host in lab.hosts:
            if process_alive(host.pid):
                stop_host(name, host)
            else:
                clean_host(name, host.name, host.netns, host.veth)
    prefix = f"{NETNS_PREFIX}{name}-"
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        netns = line.split()[0] if line.split() else ""
        if netns.startswith(prefix):
            clean_host(name, netns[len(prefix) :], netns, None)
    lab_data = DATA_ROOT / name
    if lab_data.is_dir():
        for host_dir in lab_data.iterdir():
            clean_host(name, host_dir.name, f"{prefix}{host_dir.name}", None)
        shutil.rmtree(lab_data, ignore_errors=True)
    remove_cgroup_tree(cgroup_root() / name)
    if lab is not None:
        run("ip", "link", "del", lab.bridge, check=False)
    shutil.rmtree(STATE_ROOT / name, ignore_errors=True)


# -------------------------------------------------------------------------------------------- commands


def requested_hosts(lab_name: str, spec: list[str], default_release: str) -> list[tuple[str, str]]:
    """(name, release) of each host asked for: N hosts, or names with an optional `:release`."""
    if len(spec) == 1 and spec[0].isdigit():
        count = int(spec[0])
        if not 1 <= count <= 50:
            raise LabError("the number of hosts must be between 1 and 50")
        return [(f"{lab_name}-{i}", default_release) for i in range(1, count + 1)]
    hosts = []
    for item in spec:
        name, _, release = item.partition(":")
        if not NAME_RE.match(name):
            raise LabError(f"invalid host name {name!r}: use lower-case letters, digits and '-'")
        release = release or default_release
        if release not in RELEASES:
            raise LabError(f"host {name}: unknown release {release!r}; choose one of {', '.join(RELEASES)}")
        hosts.append((name, release))
    if len({name for name, _ in hosts}) != len(hosts):
        raise LabError("host names must be unique")
    return hosts


def cmd_up(args: argparse.Namespace) -> None:
    preflight(need_debootstrap=True)
    wanted = requested_hosts(args.lab, args.hosts, args.release)
    rootfs = {release: build_rootfs(release) for release in sorted({release for _, release in wanted})}
    with locked(STATE_ROOT / ".lock"):
        existing = load_lab(args.lab)
        if (
            existing
            and [(h.name, h.release) for h in existing.hosts] == wanted
            and all(process_alive(h.pid) for h in existing.hosts)
        ):
            lab = existing
            log(f"lab {args.lab} is already up with {len(wanted)} host(s)")
        else:
            clean_stale(args.lab)
            previous = existing.index if existing else None
            lab = Lab(name=args.lab, index=allocate_index(args.lab, previous), hosts=[])
            lab.state_dir.mkdir(parents=True, exist_ok=True)
            save_lab(lab)
            run(
                "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"ftpslab-{lab.name}", "-f", str(lab.key)
            )
            lab.known_hosts.write_text("")
            ensure_bridge(lab)
            for name, release in wanted:
                lab.hosts.append(boot_host(lab, name, release, rootfs[release]))
                save_lab(lab)
    for host in lab.hosts:
        wait_until_up(lab, host)
    log(
        "up: "
        + ", ".join(f"{h.name}={h.address},{h.address6} (Debian {RELEASES[h.release]})" for h in lab.hosts)
    )
    if args.inventory:
        write_inventory(lab, Path(args.inventory), args.group)


def write_inventory(lab: Lab, path: Path, groups: list[str]) -> None:
    """An ordinary Ansible inventory: SSH as root with the lab key and pinned host keys.

    SSH connection sharing keys its sockets by address, and a later lab may reuse this one's addresses:
    the sockets live in this lab's state folder, so they end with it.
    """
    hosts = {
        h.name: {"ansible_host": h.address, "lab_debian_release": h.release, "lab_ipv6_address": h.address6}
        for h in lab.hosts
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(lab.key),
                "ansible_ssh_common_args": (
                    f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
                ),
                "ansible_control_path_dir": str(lab.state_dir / "ssh-control"),
            },
            "children": {group: {"hosts": hosts} for group in groups},
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by tests/lab/lab for lab '{lab.name}'; regenerated on every `lab up`.\n"
    path.write_text(header + json.dumps(inventory, indent=2) + "\n")
    log(f"inventory written to {path}")


def cmd_down(args: argparse.Namespace) -> None:
    preflight()
    with locked(STATE_ROOT / ".lock"):
        names = [lab.name for lab in all_labs()] if args.all else [args.lab]
        if args.all:
            names += [
                p.name for p in (DATA_ROOT.iterdir() if DATA_ROOT.is_dir() else []) if p.name not in names
            ]
        prefix = os.environ.get("LAB_PREFIX", "")
        for name in (n for n in names if n.startswith(prefix)):
            clean_stale(name)
            log(f"lab {name} is down")
        forget_machine_state_if_unused()


def cmd_status(args: argparse.Namespace) -> None:
    labs = all_labs() if args.all else [lab for lab in [load_lab(args.lab)] if lab]
    if not labs:
        print(f"lab {args.lab}: down")
        return
    for lab in labs:
        print(f"lab {lab.name}: {lab.network} on {lab.bridge}")
        for host in lab.hosts:
            state = "running" if process_alive(host.pid) else "gone"
            system = ""
            if state == "running":
                system = run(
                    "nsenter", "-t", str(host.pid), "-a", "systemctl", "is-system-running", check=False
                ).stdout.strip()
            print(
                f"  {host.name:<20} {host.address:<15} {host.address6:<20} {host.release:<9}"
                f" pid {host.pid:<8} {state} {system}"
            )


def require_lab(name: str) -> Lab:
    lab = load_lab(name)
    if lab is None:
        raise LabError(f"lab {name} is not up; run `lab --lab {name} up N` first")
    return lab


def find_host(lab: Lab, name: str) -> Host:
    host = next((h for h in lab.hosts if name in (h.name, h.address, h.address6)), None)
    if host is None:
        raise LabError(f"no host {name} in lab {lab.name}: {', '.join(h.name for h in lab.hosts)}")
    return host


def cmd_ssh(args: argparse.Namespace) -> None:
    lab = require_lab(args.lab)
    argv = ssh_argv(lab, find_host(lab, args.host), *args.command)
    if not args.command:
        argv.remove("BatchMode=yes")
        argv.remove("-o")
        argv.insert(1, "-t")
    os.execvp(argv[0], argv)


def cmd_reboot(args: argparse.Namespace) -> None:
    """A real reboot: services stop, /run and /tmp are emptied, the disk keeps what was written."""
    preflight()
    with locked(STATE_ROOT / ".lock"):
        lab = require_lab(args.lab)
        host = find_host(lab, args.host)
        power_off(host)
        kill_cgroup(host_cgroup(lab.name, host.name))
        host.pid = start_init(lab, host.name, host.netns)
        save_lab(lab)
    wait_until_up(lab, host)
    log(f"{host.name} rebooted (pid {host.pid})")


def cmd_instance_config(args: argparse.Namespace) -> None:
    """The list Molecule's delegated driver reads to build its inventory."""
    lab = require_lab(args.lab)
    config = [
        {
            "instance": h.name,
            "address": h.address,
            "user": "root",
            "port": "22",
            "identity_file": str(lab.key),
        }
        for h in lab.hosts
    ]
    Path(args.file).write_text(json.dumps(config, indent=2) + "\n")


def cmd_build(args: argparse.Namespace) -> None:
    preflight(need_debootstrap=True)
    print(build_rootfs(args.release))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", default=os.environ.get("LAB_NAME", "lab"), help="lab name (default: lab)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="boot hosts (idempotent)")
    up.add_argument("hosts", nargs="+", help="a number of hosts, or host names")
    up.add_argument("--inventory", help="write an Ansible inventory here")
    up.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE, help="for hosts without :RELEASE")
    up.add_argument("--group", action="append", help="inventory group for the hosts (repeatable)")
    down = sub.add_parser("down", help="stop hosts and remove everything they used")
    down.add_argument("--all", action="store_true", help="every lab on this machine")
    status = sub.add_parser("status", help="show hosts")
    status.add_argument("--all", action="store_true")
    ssh = sub.add_parser("ssh", help="log in to a host")
    ssh.add_argument("host")
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    reboot = sub.add_parser("reboot", help="reboot a host (same disk, same address)")
    reboot.add_argument("host")
    instance = sub.add_parser("instance-config", help="write Molecule's instance config")
    instance.add_argument("file")
    build = sub.add_parser("build", help="build the cached root filesystem of a release")
    build.add_argument("--release", choices=RELEASES, default=DEFAULT_RELEASE)
    args = parser.parse_args(argv)
    if not NAME_RE.match(args.lab) or len(args.lab) > 12:
        parser.error("--lab: lower-case letters, digits and '-', at most 12 characters")
    # Checkouts that test side by side on one machine keep their labs apart with a prefix of their own.
    args.lab = os.environ.get("LAB_PREFIX", "") + args.lab
    if not NAME_RE.match(args.lab):
        parser.error("LAB_PREFIX: lower-case letters, digits and '-', at most 8 characters")
    if args.action == "up" and not args.group:
        args.group = ["ftps_servers"]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    handlers = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "ssh": cmd_ssh,
        "reboot": cmd_reboot,
        "instance-config": cmd_instance_config,
        "build": cmd_build,
    }
    try:
        handlers[args.action](args)
    except LabError as error:
        print(f"lab: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
