"""What the lab benchmarks share: their own lab (never `down --all`), progress on stderr, timed
ansible-playbook runs with the repository's ansible.cfg, and a teardown that always finishes.

The benchmarks run as root from the repository root with the project's .venv/bin/python; each boots a lab
of its own name, so Molecule or the reliability labs running at the same time are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
LAB_TOOL = REPO / "tests" / "lab" / "lab"
LAB_TIMEOUT = 600.0
PLAYBOOK_TIMEOUT = 3600.0
LOG_TAIL = 40
# The benchmarks run with the repository's ansible.cfg and parse plain text.
IGNORED_ENV = frozenset({"ANSIBLE_CONFIG", "ANSIBLE_FORCE_COLOR"})
RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=\d+\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


class BenchError(Exception):
    """A failure that makes the figures meaningless; printed without a traceback."""


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the figures."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Lab:
    """One lab of tests/lab/lab, by name (LAB_PREFIX, when set, goes before it as for every lab)."""

    name: str

    @property
    def full_name(self) -> str:
        return os.environ.get("LAB_PREFIX", "") + self.name

    def tool(self, *args: str) -> str:
        """Run tests/lab/lab on this lab only; its stdout."""
        try:
            proc = subprocess.run(  # noqa: S603 - fixed command line, our own lab name
                [str(LAB_TOOL), "--lab", self.name, *args],
                capture_output=True,
                text=True,
                timeout=LAB_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"lab {' '.join(args)} did not finish within {LAB_TIMEOUT:.0f}s") from None
        if proc.returncode != 0:
            raise BenchError(f"lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
        return proc.stdout

    def boot(self, hosts: list[str], generated: Path) -> dict:
        """Boot fresh hosts and return the lab's inventory: `down` first, since `up` reuses running hosts."""
        self.tool("down")
        log(f"booting {len(hosts)} fresh host(s)")
        self.tool("up", *hosts, "--inventory", str(generated))
        text = generated.read_text()
        return json.loads(text[text.index("{") :])  # after the tool's comment line

    def teardown(self) -> None:
        """Take the lab down and check that nothing of it is left."""
        with uninterrupted():
            log(f"tearing lab {self.name} down")
            self.tool("down")
            status = self.tool("status").strip()
        if status != f"lab {self.full_name}: down":
            raise BenchError(f"lab {self.name} is not fully down:\n{status}")


@contextmanager
def uninterrupted() -> Iterator[None]:
    """Teardown must finish: a second Ctrl-C would otherwise leave hosts, mounts and namespaces behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM into the same path as Ctrl-C, so `finally` tears the lab down."""
    raise KeyboardInterrupt


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    """Per host of the PLAY RECAP: changed, unreachable and failed task counts."""
    _, found, recap = text.rpartition("PLAY RECAP")
    if not found:
        return {}
    return {
        match["host"]: {key: int(match[key]) for key in ("changed", "unreachable", "failed")}
        for match in RECAP_LINE.finditer(recap)
    }


def playbook_env(work: Path, control_dir: Path, **extra: str) -> dict[str, str]:
    """ansible.cfg from the repository root, the report in a temporary folder, and plain output to parse.

    SSH control sockets live in a folder of their own: a master left by an earlier lab could otherwise
    be reused for a new host that got the same address.
    """
    env = {key: value for key, value in os.environ.items() if key not in IGNORED_ENV}
    env.update(
        FTPS_REPORT_DIR=str(work / "reports"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        **extra,
    )
    return env


@dataclass(frozen=True)
class PlaybookRun:
    """One timed ansible-playbook run, its PLAY RECAP and its log."""

    seconds: float
    recap: dict[str, dict[str, int]]
    log: Path

    @property
    def changed(self) -> int:
        return sum(counts["changed"] for counts in self.recap.values())


def run_playbook(playbook: str, inventory: Path, log_file: Path, env: dict[str, str]) -> PlaybookRun:
    """Time one `ansible-playbook -i INVENTORY PLAYBOOK`; a failed or incomplete run raises BenchError."""
    command = Path(sys.executable).with_name("ansible-playbook")
    if not command.exists():
        raise BenchError(f"{command} not found: run this script with the project's .venv/bin/python")
    with log_file.open("w") as out:
        start = time.perf_counter()
        try:
            proc = subprocess.run(  # noqa: S603 - fixed command line
                [str(command), "-i", str(inventory), playbook],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PLAYBOOK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{playbook} timed out after {PLAYBOOK_TIMEOUT:.0f}s; log {log_file}") from None
        seconds = time.perf_counter() - start
    text = log_file.read_text()
    recap = parse_recap(text)
    broken = [h for h, counts in recap.items() if counts["failed"] or counts["unreachable"]]
    if proc.returncode != 0 or not recap or broken:
        tail = "\n".join(text.splitlines()[-LOG_TAIL:])
        raise BenchError(
            f"{playbook} failed (exit {proc.returncode}, hosts {broken}); log {log_file}:\n{tail}"
        )
    return PlaybookRun(seconds, recap, log_file)


def run_benchmark(name: str, keep_log: Path | None, body: Callable[[Path, Path], None]) -> int:
    """Run body(work, log_dir) as root in a temporary folder: 0, or 1 on BenchError, 130 on Ctrl-C or
    SIGTERM, 2 when not root. body tears its labs down itself; what it measured before a failure stays
    with the caller to print."""
    if os.geteuid() != 0:
        log("must run as root: the lab tool creates namespaces, mounts and network interfaces")
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)
    work = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    log_dir = keep_log or work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        body(work, log_dir)
    except BenchError as error:
        log(f"error: {error}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
