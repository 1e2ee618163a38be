"""Aggregate FTPS throughput through an HA site's address for 1, 2 and 3 nodes, and its CPU cost per host.

Why: an HA site (README, "HA sites") puts HAProxy, a FUSE-mounted GlusterFS volume and one more TCP hop
between a client and its files. Operators sizing real hardware need two figures: how aggregate throughput
through the site's address moves with the number of nodes, and how much CPU each function (node, load
balancer, storage host) spends per GiB moved. On a small machine where every lab host shares the same
cores, the first figure shows the overhead of more hosts more than their scale; the second does not
depend on that and is what to size from.

How: boot one lab (`benchha`: two load balancers, one storage host, three nodes, Debian 12), install the
HA packages from the controller as molecule/ha's prepare step does, then for each size (ascending) deploy
the site with site.yml using that many nodes (the load balancers and slices follow the inventory), and
run many curl clients at once through the site's address: first all download one file, then all upload a
file of their own (explicit FTPS, --ssl-reqd, the nodes' certificates trusted, the full-rights user of
the lab inventory). Every transfer must succeed with the right size, or the figures mean nothing and the
script fails. CPU is read from each lab host's cgroup (cpu.stat, all of its processes: ftpsd and the
GlusterFS client on a node, HAProxy and keepalived on a load balancer, glusterd and the brick on the
storage host) and the clients' from this process's children, before and after each phase. The 1-node
figures are the reference the ratios are taken against, in the same run.

Run as root from the repository root (about 15 minutes on a quiet 2-CPU machine):

    .venv/bin/python benchmarks/bench_ha.py [--sizes 1,2,3] [--clients 12] [--download-mib 64] \
        [--upload-mib 32] [--keep-log DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from labbench import REPO, BenchError, Lab, log, playbook_env, run_benchmark, run_playbook

sys.path.insert(0, str(REPO / "tests" / "lab"))
import labtool  # the lab tool's own module: where each host's cgroup is

LAB = Lab("benchha")
LOADBALANCERS = ["lb-a", "lb-b"]
STORAGE = "store"
NODES = ["node-1", "node-2", "node-3"]
LAB_GROUP_VARS = REPO / "inventories" / "lab" / "group_vars"
HA_GROUP_VARS = REPO / "molecule" / "ha" / "group_vars"
PREPARE = "molecule/ha/prepare.yml"
# The site as molecule/ha has it, with a passive range wide enough for many clients on three nodes.
SITE_VARS = {
    "ftps_site": "bench",
    "ftps_site_vip": "{{ ansible_host | regex_replace('[0-9]+$', '200') }}",
    "ftps_site_passive_port_start": 50000,
    "ftps_site_passive_port_end": 50299,
    "ftps_server_uid": 2121,
    "ftps_server_gid": 2121,
}
TRANSFER_TIMEOUT = 900
MIB = 1024 * 1024


@dataclass(frozen=True)
class Phase:
    """All clients' transfers in one direction: wall time, bytes, and CPU seconds per lab host."""

    seconds: float
    moved: int
    host_cpu: dict[str, float]
    client_cpu: float

    @property
    def mib_per_second(self) -> float:
        return self.moved / MIB / self.seconds

    def cpu_per_gib(self, hosts: list[str]) -> float:
        """CPU seconds the hosts spent together per GiB moved."""
        return sum(self.host_cpu[h] for h in hosts) / (self.moved / (1024 * MIB))


@dataclass(frozen=True)
class Measurement:
    nodes: int
    download: Phase
    upload: Phase


def parse_sizes(text: str) -> list[int]:
    """`--sizes 1,2,3`: node counts from 1 to 3, deployed in ascending order (each run adds nodes)."""
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated node counts, got {text!r}") from None
    if not sizes or any(not 1 <= size <= len(NODES) for size in sizes):
        raise argparse.ArgumentTypeError(f"--sizes: node counts from 1 to {len(NODES)}, got {text!r}")
    return sizes


def write_inventory(directory: Path, generated: dict, nodes: list[str], wheel_cache: Path) -> None:
    """The HA site with these nodes: the lab inventory's users and passwords, molecule/ha's storage
    settings, SITE_VARS for every host of the site."""
    lab_all = generated["all"]
    lab_hosts = next(iter(lab_all["children"].values()))["hosts"]
    members = {
        "ftps_loadbalancers": LOADBALANCERS,
        "ftps_storage": [STORAGE],
        "ftps_servers": nodes,
    }
    inventory = {
        "all": {
            "vars": {**lab_all["vars"], "ftps_server_wheel_cache": str(wheel_cache)},
            "children": {
                **{group: {"hosts": {h: lab_hosts[h] for h in hosts}} for group, hosts in members.items()},
                "site_bench": {"hosts": {h: {} for hosts in members.values() for h in hosts}},
            },
        }
    }
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")  # JSON is YAML
    shutil.copytree(LAB_GROUP_VARS, directory / "group_vars")
    shutil.copytree(HA_GROUP_VARS / "ftps_storage", directory / "group_vars" / "ftps_storage")
    (directory / "group_vars" / "site_bench.yml").write_text(json.dumps(SITE_VARS, indent=2) + "\n")


def ansible_value(inventory: Path, host: str, expression: str, env: dict[str, str]) -> object:
    """A variable as Ansible renders it for the host (vault and templates resolved)."""
    command = Path(sys.executable).with_name("ansible")
    out = subprocess.run(  # noqa: S603 - fixed command line
        [str(command), host, "-i", str(inventory), "-m", "ansible.builtin.debug", "-o",
         "-a", f"msg={{{{ {expression} | to_json }}}}"],
        capture_output=True, text=True, check=True, cwd=REPO, env=env,
    ).stdout  # fmt: skip
    return json.loads(json.loads(out.split("=>", 1)[1])["msg"])


def host_cpu_seconds(hosts: list[str]) -> dict[str, float]:
    """CPU time of every process of each lab host so far (its cgroup's usage_usec)."""
    seconds = {}
    for host in hosts:
        stat = (labtool.host_cgroup(LAB.full_name, host) / "cpu.stat").read_text()
        usage = next(line for line in stat.splitlines() if line.startswith("usage_usec "))
        seconds[host] = int(usage.split()[1]) / 1e6
    return seconds


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Client:
    """curl to the site's address as one user, trusting the nodes' certificates."""

    address: str
    user: str
    password: str
    trust: Path

    def argv(self, *args: str) -> list[str]:
        return [
            *("curl", "-sS", "--ssl-reqd", "--cacert", str(self.trust), "--max-time", str(TRANSFER_TIMEOUT)),
            *("-u", f"{self.user}:{self.password}", "-w", "%{size_download} %{size_upload}\n", *args),
        ]

    def run(self, *args: str) -> str:
        proc = subprocess.run(  # noqa: S603 - fixed command line
            self.argv(*args), capture_output=True, text=True, timeout=TRANSFER_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            raise BenchError(f"curl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout


def transfer_all(client: Client, commands: list[list[str]], expected: int, hosts: list[str]) -> Phase:
    """Start every command at once and wait for all; each must move `expected` bytes one way."""
    cpu_before, client_before = host_cpu_seconds(hosts), children_cpu_seconds()
    start = time.perf_counter()
    running = [
        subprocess.Popen(client.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # noqa: S603
        for args in commands
    ]
    outcomes = [(proc.wait(timeout=TRANSFER_TIMEOUT), *proc.communicate()) for proc in running]
    seconds = time.perf_counter() - start
    cpu_after, client_after = host_cpu_seconds(hosts), children_cpu_seconds()
    for code, out, err in outcomes:
        moved = max(int(float(n)) for n in out.split()) if out.split() else 0
        if code != 0 or moved != expected:
            raise BenchError(f"a transfer failed (exit {code}, {moved} of {expected} bytes): {err.strip()}")
    return Phase(
        seconds=seconds,
        moved=expected * len(commands),
        host_cpu={h: cpu_after[h] - cpu_before[h] for h in hosts},
        client_cpu=client_after - client_before,
    )


def trust_file(nodes: list[str], path: Path) -> Path:
    path.write_text("".join(LAB.tool("ssh", node, "cat", "/etc/ftpsd/tls/server.crt") for node in nodes))
    return path


def measure(size: int, args: argparse.Namespace, base: Path, generated: dict, log_dir: Path) -> Measurement:
    """Deploy the site with `size` nodes, then time all downloads, then all uploads, through its address."""
    nodes = NODES[:size]
    inventory = base / f"inventory-{size}"
    write_inventory(inventory, generated, nodes, base / "wheels")
    env = playbook_env(base, base / f"cp-{size}")
    log(f"{size} node(s): deploying the site with site.yml")
    deployed = run_playbook("site.yml", inventory, log_dir / f"site-{size}nodes.log", env)
    log(f"{size} node(s): site.yml took {deployed.seconds:.0f} s")
    users = ansible_value(inventory, nodes[0], "ftps_server_users", env)
    admin = next(u for u in users if u.get("permissions") == "full" and u["home"].endswith("/shared"))
    client = Client(
        address=str(ansible_value(inventory, nodes[0], "ftps_site_vip", env)),
        user=admin["name"],
        password=admin["password"],
        trust=trust_file(nodes, base / f"trust-{size}.pem"),
    )
    url = f"ftp://{client.address}/incoming"
    download, upload = base / "download.bin", base / "upload.bin"
    for path, mib in ((download, args.download_mib), (upload, args.upload_mib)):
        if not path.exists():
            path.write_bytes(os.urandom(mib * MIB))
    source = f"bench-{uuid.uuid4().hex[:8]}.bin"
    client.run("-T", str(download), f"{url}/{source}")
    hosts = [*LOADBALANCERS, STORAGE, *nodes]
    try:
        log(f"{size} node(s): {args.clients} clients download {args.download_mib} MiB each")
        downloads = transfer_all(
            client, [["-o", "/dev/null", f"{url}/{source}"]] * args.clients, download.stat().st_size, hosts
        )
        names = [f"bench-up-{uuid.uuid4().hex[:8]}.bin" for _ in range(args.clients)]
        log(f"{size} node(s): {args.clients} clients upload {args.upload_mib} MiB each")
        uploads = transfer_all(
            client, [["-T", str(upload), f"{url}/{name}"] for name in names], upload.stat().st_size, hosts
        )
        for name in names:
            client.run("-Q", f"DELE incoming/{name}", f"ftp://{client.address}/")
    finally:
        client.run("-Q", f"DELE incoming/{source}", f"ftp://{client.address}/")
    return Measurement(size, downloads, uploads)


def format_table(measurements: list[Measurement], clients: int) -> str:
    """Aggregate MiB/s with the ratio to the smallest size, and CPU seconds per GiB by function."""
    base = measurements[0]
    lines = [
        f"through the site's address, {clients} clients at once (curl, explicit FTPS);"
        f" ratio to {base.nodes} node(s);",
        "CPU seconds per GiB moved: all nodes together, both load balancers, the storage host, the clients",
        f"{'nodes':>5}  {'direction':>9}  {'MiB/s':>7}  {'ratio':>5}  {'nodes CPU':>9}  {'LB CPU':>6}  "
        f"{'storage':>7}  {'clients':>7}",
    ]
    for m in measurements:
        nodes = NODES[: m.nodes]
        for direction, phase, reference in (
            ("download", m.download, base.download),
            ("upload", m.upload, base.upload),
        ):
            gib = phase.moved / (1024 * MIB)
            lines.append(
                f"{m.nodes:>5}  {direction:>9}  {phase.mib_per_second:>7.1f}  "
                f"{phase.mib_per_second / reference.mib_per_second:>5.2f}  {phase.cpu_per_gib(nodes):>9.1f}  "
                f"{phase.cpu_per_gib(LOADBALANCERS):>6.1f}  "
                f"{phase.cpu_per_gib([STORAGE]):>7.1f}  {phase.client_cpu / gib:>7.1f}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("1,2,3"), help="node counts (1,2,3)")
    parser.add_argument("--clients", type=int, default=12, help="clients transferring at once (12)")
    parser.add_argument("--download-mib", type=int, default=64, help="size of the file each client downloads")
    parser.add_argument("--upload-mib", type=int, default=32, help="size of the file each client uploads")
    parser.add_argument("--keep-log", type=Path, metavar="DIR", help="keep the ansible-playbook logs here")
    args = parser.parse_args(argv)
    if min(args.clients, args.download_mib, args.upload_mib) < 1:
        parser.error("--clients, --download-mib and --upload-mib must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    measurements: list[Measurement] = []

    def measure_sizes(base: Path, log_dir: Path) -> None:
        try:
            generated = LAB.boot([*LOADBALANCERS, STORAGE, *NODES], base / "lab-inventory.json")
            write_inventory(base / "inventory-prepare", generated, NODES, base / "wheels")
            log("installing HAProxy, keepalived and GlusterFS from the controller (molecule/ha's prepare)")
            env = playbook_env(base, base / "cp-prepare", MOLECULE_EPHEMERAL_DIRECTORY=str(base))
            run_playbook(PREPARE, base / "inventory-prepare", log_dir / "prepare.log", env)
            for size in args.sizes:
                measurements.append(measure(size, args, base, generated, log_dir))
        finally:
            LAB.teardown()

    status = run_benchmark("bench-ha", args.keep_log, measure_sizes)
    if measurements:
        print(format_table(measurements, args.clients))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
