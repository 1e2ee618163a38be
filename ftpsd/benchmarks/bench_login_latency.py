"""Does password hashing stall other sessions, and what does the login cache save? Timings, not assertions.

1. Shows that argon2id (argon2-cffi) releases the GIL: a pure-Python counter thread keeps counting
   while the main thread hashes (with the GIL held it would stand still).
2. Starts ftpsd on 127.0.0.1 with U users, keeps one logged-in session sending NOOPs back to back and
   measures their round trips while N other clients log in at the same time, twice: first with a cold
   login cache (every login pays one argon2id), then again (the cache spares the KDF).

    .venv/bin/python ftpsd/benchmarks/bench_login_latency.py [--logins 300] [--users 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench_vs_vsftpd import HOST, Target, open_sessions, start_ftpsd, write_self_signed
from ftpsd.passwords import DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, DEFAULT_TIME_COST, hash_password


def counter_rate(work: Callable[[], object]) -> float:
    """Increments per second of a Python thread while `work()` runs in this thread."""
    stop = threading.Event()
    counts: list[int] = []

    def count() -> None:
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    thread = threading.Thread(target=count)
    thread.start()
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    return counts[0] / elapsed


def gil_check() -> None:
    def argon2id() -> None:
        for _ in range(10):
            hash_password("x", salt=b"0" * 16)

    idle = counter_rate(lambda: time.sleep(0.3))
    start = time.perf_counter()
    busy = counter_rate(argon2id)
    print(
        f"argon2id: {(time.perf_counter() - start) * 100:.1f} ms per hash here; counter thread: "
        f"{idle:,.0f}/s while sleeping, {busy:,.0f}/s while argon2id runs ({busy / idle:.0%}; about 0% "
        "would mean it holds the GIL)"
    )


def percentile(values: list[float], share: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


async def noop_latency(target: Target, logins: int, what: str) -> None:
    """One round: N concurrent logins while another session's NOOP round trips are recorded."""
    # The probe has an account of its own (the last one), so its login never warms the crowd's entries.
    _, (probe,) = await open_sessions(replace(target, users=target.users[-1:]), 1)
    crowd_target = replace(target, users=target.users[:-1])
    assert probe.writer is not None and probe.reader is not None
    rtts: list[float] = []
    finished = asyncio.Event()

    async def ping() -> None:
        while not finished.is_set():
            start = time.perf_counter()
            probe.writer.write(b"NOOP\r\n")
            await probe.writer.drain()
            await probe.reader.readline()
            rtts.append(time.perf_counter() - start)

    async def crowd() -> float:
        try:
            elapsed, sessions = await open_sessions(crowd_target, logins)
        finally:
            finished.set()
        for session in sessions:
            await session.close()
        return elapsed

    elapsed, _ = await asyncio.gather(crowd(), ping())
    await probe.close()
    ms = [rtt * 1000 for rtt in rtts]
    print(
        f"{what}: {logins} concurrent TLS logins took {elapsed:.2f} s; meanwhile {len(ms)} NOOPs of "
        f"another session: median {statistics.median(ms):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
        f"max {max(ms):.2f} ms",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=300, help="concurrent TLS logins (default 300)")
    parser.add_argument("--users", type=int, default=300, help="accounts they cycle through (default 300)")
    args = parser.parse_args()
    gil_check()
    work = Path(tempfile.mkdtemp(prefix="ftpsd-login-"))
    target = None
    try:
        cert, key = write_self_signed(work, "bench", (HOST,))
        target = start_ftpsd(work, cert, key, args.logins + 10, args.users + 1)
        asyncio.run(noop_latency(target, args.logins, "cold login cache (each login pays argon2id)"))
        asyncio.run(noop_latency(target, args.logins, "warm login cache (repeat logins)"))
    finally:
        if target is not None:
            target.proc.terminate()
            target.proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"(argon2id m={DEFAULT_MEMORY_KIB} KiB, t={DEFAULT_TIME_COST}, p={DEFAULT_PARALLELISM}; "
        f"{args.users} users; server on {HOST}; load average {os.getloadavg()}, {os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
