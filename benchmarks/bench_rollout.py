"""Wall time of `ansible-playbook site.yml` on lab hosts: a first rollout and a no-change re-run, by size.

Why: site.yml does not deploy all hosts at once. It validates every host, then rolls out site by site,
a canary host first and the rest of the site after it, with an FTPS health gate (ftps-doctor from the
controller) after every batch, and ends with the report. Its time therefore grows with hosts and sites
in a way `forks` alone does not predict. This script puts figures on it: how long a first rollout and a
re-run take on one host and on eight hosts in two sites, and the ratio between them. The re-run must
change nothing (the README promises it); any change, like any failed run, makes the exit status non-zero.

How: for each size, boot fresh hosts with tests/lab/lab in a lab of its own (`bench`, so Molecule or the
reliability labs running at the same time are never touched), write an inventory that splits the hosts
over two sites (`site_beijing`, `site_shanghai`, children of `ftps_servers`; one host: one site) with the
lab inventory's group_vars, run site.yml twice from the repository root (so ansible.cfg and its lab vault
apply), time each run with time.perf_counter, then tear the lab down, also on failure or Ctrl-C. Booting
is not timed. Each size also gets an empty controller wheel cache and SSH control sockets of its own, so
every first rollout starts from the same cold state and the repository's .wheels/ and reports/ stay
untouched (the report goes to a temporary FTPS_REPORT_DIR). Other test runs share the machine, so the
figures are noisy: compare ratios, not single seconds.

Run as root (the lab needs namespaces and mounts), from the repository root:

    .venv/bin/python benchmarks/bench_rollout.py [--sizes 1,8] [--keep-log DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from labbench import (
    REPO,
    BenchError,
    Lab,
    PlaybookRun,
    log,
    parse_recap,
    playbook_env,
    run_benchmark,
    run_playbook,
)

LAB_GROUP_VARS = REPO / "inventories" / "lab" / "group_vars"
LAB = Lab("bench")
MAX_HOSTS = 50  # the lab tool's own limit
# Site groups as in molecule/multisite: each sets ftps_site, which site.yml batches by.
SITES: tuple[tuple[str, dict[str, str]], ...] = (
    (
        "site_beijing",
        {
            "ftps_site": "beijing",
            "ftps_certificate_state_or_province": "BeiJing",
            "ftps_certificate_locality": "BeiJing",
        },
    ),
    (
        "site_shanghai",
        {
            "ftps_site": "shanghai",
            "ftps_certificate_state_or_province": "Shanghai",
            "ftps_certificate_locality": "Shanghai",
        },
    ),
)
TASK_LINE = re.compile(r"^TASK \[(?P<name>.*)\] \*+$")
CHANGED_LINE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")


@dataclass(frozen=True)
class Measurement:
    """The two runs of one size, on the same freshly booted hosts."""

    hosts: int
    sites: int
    first: PlaybookRun
    rerun: PlaybookRun


def parse_sizes(text: str) -> list[int]:
    """`--sizes 1,8` as host counts the lab can boot; the smallest is the baseline of the ratios."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes: comma-separated host counts, got {text!r}") from None
    if not sizes or any(not 1 <= size <= MAX_HOSTS for size in sizes) or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"--sizes: distinct host counts from 1 to {MAX_HOSTS}, got {text!r}")
    return sizes


def split_sites(hosts: list[str]) -> dict[str, list[str]]:
    """One host stays in one site; more hosts are split in two halves, so batching crosses a site."""
    if len(hosts) == 1:
        return {SITES[0][0]: hosts}
    half = (len(hosts) + 1) // 2
    return {SITES[0][0]: hosts[:half], SITES[1][0]: hosts[half:]}


def write_inventory(directory: Path, generated: dict, sites: dict[str, list[str]], wheel_cache: Path) -> None:
    """An inventory folder like inventories/lab, but with site groups and a private wheel cache.

    The lab tool puts every host in one group; site.yml batches by ftps_site, so the hosts move into
    site groups under ftps_servers, and group_vars/<site>.yml set ftps_site as molecule/multisite does.
    """
    lab_all = generated["all"]
    lab_hosts = next(iter(lab_all["children"].values()))["hosts"]
    inventory = {
        "all": {
            "vars": {**lab_all["vars"], "ftps_server_wheel_cache": str(wheel_cache)},
            "children": {
                "ftps_servers": {
                    "children": {
                        group: {"hosts": {host: lab_hosts[host] for host in members}}
                        for group, members in sites.items()
                    }
                }
            },
        }
    }
    directory.mkdir(parents=True)
    (directory / "hosts.yml").write_text(json.dumps(inventory, indent=2) + "\n")  # JSON is YAML
    shutil.copytree(LAB_GROUP_VARS, directory / "group_vars")
    for group, settings in SITES:
        if group in sites:
            (directory / "group_vars" / f"{group}.yml").write_text(json.dumps(settings, indent=2) + "\n")


def changed_tasks(text: str) -> list[str]:
    """The tasks that reported a change, with their host: what to look at when a re-run is not a no-op."""
    found, task = [], "?"
    for line in text.splitlines():
        if match := TASK_LINE.match(line):
            task = match["name"]
        elif match := CHANGED_LINE.match(line):
            found.append(f"{task} [{match['host']}]")
    return found


def check_reached(run: PlaybookRun, hosts: list[str]) -> None:
    """A host missing from the recap was never deployed (a batch stopped early): the time means nothing."""
    missing = sorted(set(hosts) - set(parse_recap(run.log.read_text())))
    if missing:
        raise BenchError(f"hosts missing from the PLAY RECAP of {run.log}: {', '.join(missing)}")


def measure(count: int, work: Path, log_dir: Path) -> Measurement:
    """First rollout and re-run on `count` freshly booted hosts; the lab goes down in any case."""
    hosts = [f"{LAB.name}-{i}" for i in range(1, count + 1)]
    sites = split_sites(hosts)
    base = work / f"{count}hosts"
    base.mkdir()
    try:
        generated = LAB.boot(hosts, base / "lab-inventory.json")
        write_inventory(base / "inventory", generated, sites, base / "wheels")
        runs = []
        for phase in ("first", "rerun"):
            log(f"{count} host(s), {len(sites)} site(s): {phase} run of site.yml")
            env = playbook_env(base, base / f"cp-{phase}")
            run = run_playbook(
                "site.yml", base / "inventory", log_dir / f"site-{count}hosts-{phase}.log", env
            )
            check_reached(run, hosts)
            log(f"{count} host(s): {phase} run took {run.seconds:.1f}s, changed={run.changed}")
            runs.append(run)
    finally:
        LAB.teardown()
    return Measurement(count, len(sites), runs[0], runs[1])


def format_table(measurements: list[Measurement]) -> str:
    """The figures in seconds, then each size's ratio to the smallest size, for both runs."""
    lines = [
        "site.yml wall time in seconds (fresh lab hosts; re-run right after the first rollout)",
        f"{'hosts':>5}  {'sites':>5}  {'first rollout':>13}  {'re-run':>8}  {'re-run changed':>14}",
    ]
    for m in measurements:
        first, rerun = f"{m.first.seconds:.1f}", f"{m.rerun.seconds:.1f}"
        lines.append(f"{m.hosts:>5}  {m.sites:>5}  {first:>13}  {rerun:>8}  {m.rerun.changed:>14}")
    base = min(measurements, key=lambda m: m.hosts)
    for m in measurements:
        if m is not base:
            lines.append(
                f"ratio {m.hosts} hosts / {base.hosts} host{'s' if base.hosts > 1 else ''}: "
                f"first rollout {m.first.seconds / base.first.seconds:.2f}, "
                f"re-run {m.rerun.seconds / base.rerun.seconds:.2f}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("1,8"), help="host counts (default: 1,8)"
    )
    parser.add_argument("--keep-log", type=Path, metavar="DIR", help="keep the ansible-playbook logs here")
    return parser.parse_args(argv)


def report(measurements: list[Measurement]) -> int:
    """Print the table; non-zero when a re-run was not a no-op, naming what changed."""
    if measurements:
        print(format_table(measurements))
    status = 0
    for m in measurements:
        if m.rerun.changed:
            status = 1
            log(f"the re-run on {m.hosts} host(s) changed {m.rerun.changed} task(s), expected 0:")
            for task in changed_tasks(m.rerun.log.read_text()):
                log(f"  {task}")
    return status


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    measurements: list[Measurement] = []

    def measure_sizes(work: Path, log_dir: Path) -> None:
        for count in args.sizes:
            measurements.append(measure(count, work, log_dir))

    status = run_benchmark("bench-rollout", args.keep_log, measure_sizes)
    return report(measurements) or status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
