"""Side-by-side benchmark of ftpsd and Debian's vsftpd over explicit FTPS on 127.0.0.1.

Measures, for each server in the same run: the time to log in N concurrent TLS clients, first as U
users who have not logged in before (for ftpsd each such login pays a full argon2id) and then again
(ftpsd's login cache spares the KDF), download and upload throughput of one large file with curl, and
the server's memory with M idle logged-in TLS sessions. Prints each figure and the ratio ftpsd/vsftpd
(vsftpd logs in anonymously, so it hashes no password in either round). All traffic stays on
127.0.0.1; every loop is bounded. Needs root only for vsftpd (which insists on it); run from the
repository root:

    .venv/bin/python ftpsd/benchmarks/bench_vs_vsftpd.py [--size-mb 500] [--logins 300] [--users 300]
        [--idle 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ftpsd.passwords import hash_password

# Loopback certificates are made as the tests make them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from selfsigned import write_self_signed

HOST = "127.0.0.1"
BENCH_PASSWORD = "bench-password"  # noqa: S105 - throwaway account of a throwaway server


@dataclass
class Target:
    """One server under test."""

    name: str
    port: int
    users: tuple[str, ...]  # logins cycle through them; the first one also transfers
    password: str
    upload_dir: str  # FTP path prefix where uploads are allowed
    proc: subprocess.Popen[bytes]

    @property
    def user(self) -> str:
        return self.users[0]

    def url(self, path: str) -> str:
        return f"ftp://{HOST}:{self.port}/{path}"


# Passive ranges: vsftpd 41000-41999, ftpsd 43000-43999. A listening port inside one is refused.
PASSIVE_PORTS = range(41000, 44000)


def free_port() -> int:
    """A free port outside the passive ranges (bounded: the kernel hands out other ports soon)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in PASSIVE_PORTS:
            return port
    raise RuntimeError("no free port outside the passive ranges")


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace").strip()[-2000:] or "nothing on stderr"
            raise RuntimeError(f"{what} exited with {proc.returncode}: {said}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                if sock.recv(100).startswith(b"220"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up on port {port}")


def start_vsftpd(work: Path, cert: Path, key: Path, sessions: int) -> Target:
    """vsftpd with anonymous FTPS (no system user or PAM change needed), TLS forced, reuse required."""
    root = work / "vsftpd-root"  # vsftpd refuses a writable anonymous root
    log = work / "vsftpd.log"
    (root / "pub").mkdir(parents=True)
    shutil.chown(root / "pub", "ftp", "ftp")
    port = free_port()
    low = 41000
    conf = work / "vsftpd.conf"
    conf.write_text(
        "\n".join(
            [
                "listen=YES",
                "listen_ipv6=NO",
                f"listen_address={HOST}",
                f"listen_port={port}",
                "background=NO",
                "anonymous_enable=YES",
                "no_anon_password=YES",
                f"anon_root={root}",
                "write_enable=YES",
                "anon_upload_enable=YES",
                "local_enable=NO",
                f"pasv_min_port={low}",
                f"pasv_max_port={low + 999}",
                "ssl_enable=YES",
                "allow_anon_ssl=YES",
                "force_anon_logins_ssl=YES",
                "force_anon_data_ssl=YES",
                "ssl_sslv2=NO",
                "ssl_sslv3=NO",
                "ssl_tlsv1=YES",  # vsftpd 3.0.3 has no 1.2-only switch; OpenSSL 3 negotiates TLS 1.3 anyway
                "require_ssl_reuse=YES",
                "strict_ssl_read_eof=YES",
                "ssl_ciphers=HIGH",
                f"rsa_cert_file={cert}",
                f"rsa_private_key_file={key}",
                "seccomp_sandbox=NO",
                "secure_chroot_dir=/var/run/vsftpd/empty",
                f"max_clients={sessions + 100}",
                "max_per_ip=0",
                "idle_session_timeout=600",
                "xferlog_enable=NO",
                "dirmessage_enable=NO",
            ]
        )
        + "\n"
    )
    with log.open("wb") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(  # noqa: S603 - fixed command line
            ["vsftpd", str(conf)],  # noqa: S607 - Debian's vsftpd from PATH
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    wait_for_banner(port, proc, "vsftpd", log)
    return Target("vsftpd", port, ("anonymous",), "bench@", "pub/", proc)


def user_tables(home: Path, count: int) -> tuple[tuple[str, ...], str]:
    """count users bench0.. sharing one password but each with its own salt, and their [[users]] tables."""
    names = tuple(f"bench{index}" for index in range(count))
    tables = "".join(
        f'[[users]]\nname = "{name}"\npassword_hash = "{hash_password(BENCH_PASSWORD)}"\n'
        f'home = "{home}"\npermissions = "full"\n'
        for name in names
    )
    return names, tables


def start_ftpsd(work: Path, cert: Path, key: Path, sessions: int, users: int = 1) -> Target:
    home = work / "ftpsd-root"
    home.mkdir()
    log = work / "ftpsd.log"
    port = free_port()
    config = work / "ftpsd.toml"
    names, tables = user_tables(home, users)
    config.write_text(
        f"""[server]
listen_address = "{HOST}"
explicit_port = {port}
passive_ports = [43000, 43999]
[tls]
certificate = "{cert}"
private_key = "{key}"
[limits]
max_connections = {4 * sessions + 100}
max_connections_per_ip = {2 * sessions + 50}
ban_after_failures = 0
[logging]
level = "warning"
{tables}"""
    )
    with log.open("wb") as stderr:  # the child keeps its own copy
        proc = subprocess.Popen(  # noqa: S603 - fixed command line
            [sys.executable, "-m", "ftpsd.cli", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    wait_for_banner(port, proc, "ftpsd", log)
    return Target("ftpsd", port, names, BENCH_PASSWORD, "", proc)


# --- many TLS sessions (asyncio client)


class Session:
    """A minimal explicit-FTPS control connection: banner, AUTH TLS, USER, PASS."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def login(
        self, target: Target, user: str, ctx: ssl.SSLContext, connecting: asyncio.Semaphore
    ) -> None:
        # vsftpd listens with a backlog of 32; a burst of hundreds of SYNs overflows it and the
        # kernel drops connections. So TCP connects are admitted 32 at a time (for both servers),
        # while the TLS handshakes and logins of all clients run concurrently.
        async with connecting:
            reader, writer = await asyncio.open_connection(HOST, target.port)
            self.reader, self.writer = reader, writer
            await self._expect(reader, b"220")
        await self._command(reader, b"AUTH TLS", b"234")
        await writer.start_tls(ctx)
        # vsftpd's anonymous login (no_anon_password) answers USER with 230 directly.
        if await self._command(reader, f"USER {user}".encode(), b"331", b"230") == b"331":
            await self._command(reader, f"PASS {target.password}".encode(), b"230")
        await self._command(reader, b"PBSZ 0", b"200")
        await self._command(reader, b"PROT P", b"200")

    async def _command(self, reader: asyncio.StreamReader, line: bytes, *codes: bytes) -> bytes:
        assert self.writer is not None
        self.writer.write(line + b"\r\n")
        await self.writer.drain()
        return await self._expect(reader, *codes)

    @staticmethod
    async def _expect(reader: asyncio.StreamReader, *codes: bytes) -> bytes:
        while True:
            reply = await asyncio.wait_for(reader.readline(), 600)
            if not reply:
                raise ConnectionError(f"connection closed, expected {codes!r}")
            if reply[3:4] == b" ":
                if reply[:3] in codes:
                    return reply[:3]
                raise ConnectionError(f"expected {codes!r}, got {reply!r}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            # The server may drop us first; we only want the socket gone.
            with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                await asyncio.wait_for(self.writer.wait_closed(), 10)


async def close_all(sessions: list[Session]) -> None:
    await asyncio.gather(*(s.close() for s in sessions))


async def open_sessions(target: Target, count: int) -> tuple[float, list[Session]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sessions = [Session() for _ in range(count)]
    connecting = asyncio.Semaphore(32)
    users = target.users
    start = time.perf_counter()
    await asyncio.gather(
        *(s.login(target, users[i % len(users)], ctx, connecting) for i, s in enumerate(sessions))
    )
    return time.perf_counter() - start, sessions


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            pids += process_tree(int(child))
    return pids


def memory_mb(pid: int) -> tuple[float, float]:
    """RSS and PSS in MiB summed over the process and all its descendants (vsftpd forks per session)."""
    rss = pss = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024


# --- driver


@contextmanager
def servers(work: Path, sessions: int, users: int) -> Iterator[list[Target]]:
    cert, key = write_self_signed(work, "bench", (HOST,))
    targets: list[Target] = []
    try:
        targets.append(start_vsftpd(work, cert, key, sessions))
        targets.append(start_ftpsd(work, cert, key, sessions, users))
        yield targets
    finally:
        for target in targets:
            target.proc.terminate()
            try:
                target.proc.wait(20)
            except subprocess.TimeoutExpired:
                target.proc.kill()
                target.proc.wait()


def cpu_ticks(pid: int) -> dict[int, int]:
    """utime+stime of the server and each of its descendants (vsftpd forks per session)."""
    ticks = {}
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[p] = int(fields[11]) + int(fields[12])
    return ticks


def transfer(target: Target, *curl_args: str) -> tuple[float, float]:
    """(wall seconds, server CPU seconds) of one curl transfer.

    The process tree is sampled while curl runs because vsftpd's session processes exit right
    after the transfer; their last sample (at most 0.1 s old) is what counts. The CPU includes the
    login (for ftpsd one argon2id of about 0.03 s, or none once cached), which is why small --size-mb
    inflate it.
    """
    before = cpu_ticks(target.proc.pid)
    seen = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            seen.update(cpu_ticks(target.proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        subprocess.run(  # noqa: S603 - fixed command line
            ["curl", "-sS", "--ssl-reqd", "-k", "-u", f"{target.user}:{target.password}", *curl_args],  # noqa: S607
            check=True,
            timeout=1800,
        )
        seconds = time.perf_counter() - start
    finally:
        done.set()
        sampler.join()
    seen.update(cpu_ticks(target.proc.pid))
    return seconds, (sum(seen.values()) - sum(before.values())) / os.sysconf("SC_CLK_TCK")


def throughput(args: argparse.Namespace, targets: list[Target], payload: Path) -> dict[str, dict[str, float]]:
    """Alternate the servers on every repetition so that background load hits both alike."""
    best: dict[str, dict[str, tuple[float, float]]] = {t.name: {} for t in targets}
    for rep in range(args.repeat):
        for direction in ("download", "upload"):
            for target in targets:
                if direction == "download":
                    result = transfer(target, "-o", os.devnull, target.url("payload.bin"))
                else:
                    result = transfer(
                        target, "-T", str(payload), target.url(f"{target.upload_dir}up{rep}.bin")
                    )
                old = best[target.name].get(direction, (float("inf"), float("inf")))
                best[target.name][direction] = (min(old[0], result[0]), min(old[1], result[1]))
    size_gb = args.size_mb / 1024
    return {
        name: {f"{direction} MB/s": args.size_mb / wall for direction, (wall, _) in figures.items()}
        | {f"{direction} server CPU s/GB": cpu / size_gb for direction, (_, cpu) in figures.items()}
        for name, figures in best.items()
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    payload = work / "payload.bin"
    with payload.open("wb") as handle:
        chunk = os.urandom(1 << 20)
        for _ in range(args.size_mb):
            handle.write(chunk)
    with servers(work, max(args.logins, args.idle), args.users) as targets:
        logins = {target.name: login_rounds(target, args) for target in targets}
        for target in targets:
            root = work / ("vsftpd-root" if target.name == "vsftpd" else "ftpsd-root")
            os.link(payload, root / "payload.bin")
            (root / "payload.bin").chmod(0o644)
        results = throughput(args, targets, payload)
        for target in targets:
            figures = logins[target.name] | results[target.name]
            figures["idle RSS MiB (no sessions)"] = memory_mb(target.proc.pid)[0]
            figures.update(asyncio.run(idle_memory(target, args.idle)))
            results[target.name] = figures
            print(f"{target.name}: " + ", ".join(f"{k} = {v:.2f}" for k, v in figures.items()), flush=True)
    return results


def login_rounds(target: Target, args: argparse.Namespace) -> dict[str, float]:
    """N concurrent logins twice: first logins of the users (full KDF each), then repeat logins."""
    first = asyncio.run(timed_logins(target, args.logins))
    again = asyncio.run(timed_logins(target, args.logins))
    return {
        f"login {args.logins} concurrent TLS clients, cold cache s": first,
        f"login {args.logins} concurrent TLS clients, warm cache s": again,
    }


async def timed_logins(target: Target, count: int) -> float:
    elapsed, sessions = await open_sessions(target, count)
    await close_all(sessions)
    return elapsed


async def idle_memory(target: Target, count: int) -> dict[str, float]:
    _, sessions = await open_sessions(target, count)
    await asyncio.sleep(1)  # let the server settle (vsftpd forks, ftpsd frees hashing buffers)
    rss, pss = memory_mb(target.proc.pid)
    await close_all(sessions)
    return {f"RSS MiB with {count} idle TLS sessions": rss, f"PSS MiB with {count} idle TLS sessions": pss}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=500, help="transfer size in MiB (default 500)")
    parser.add_argument("--logins", type=int, default=300, help="concurrent TLS logins (default 300)")
    parser.add_argument(
        "--users", type=int, default=300, help="ftpsd accounts the logins cycle through (default 300)"
    )
    parser.add_argument("--idle", type=int, default=500, help="idle TLS sessions for memory (default 500)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="transfers per direction and server; best counts"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("vsftpd needs root to start; run as root", file=sys.stderr)
        return 2
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both servers
    work = Path(tempfile.mkdtemp(prefix="ftpsd-bench-"))
    work.chmod(0o755)
    try:
        results = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end (1/5/15 min): {os.getloadavg()}; {os.cpu_count()} CPUs")
    print("figure | vsftpd | ftpsd | ftpsd/vsftpd")
    for key in results["ftpsd"]:
        v, f = results["vsftpd"][key], results["ftpsd"][key]
        # A short run can show no measurable CPU time for a server: then there is no ratio to give.
        ratio = f"{f / v:.2f}x" if v else "n/a"
        print(f"{key} | {v:.2f} | {f:.2f} | {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
