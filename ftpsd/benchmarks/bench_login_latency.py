"""Does password hashing stall other sessions? Timings, not assertions.

1. Shows that hashlib.scrypt releases the GIL: a pure-Python counter thread keeps counting while
   the main thread runs scrypt (with the GIL held it would stand still).
2. Starts ftpsd on 127.0.0.1, keeps one logged-in session sending NOOPs back to back and measures
   their round trips while N other clients log in at the same time (each login costs one scrypt).

    .venv/bin/python ftpsd/benchmarks/bench_login_latency.py [--logins 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench_vs_vsftpd import HOST, Target, open_sessions, start_ftpsd, write_self_signed
from ftpsd.passwords import DEFAULT_LOG2_N, DEFAULT_P, DEFAULT_R


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
    def scrypt() -> None:
        hashlib.scrypt(
            b"x", salt=b"0" * 16, n=1 << DEFAULT_LOG2_N, r=DEFAULT_R, p=DEFAULT_P, maxmem=64 << 20, dklen=32
        )

    idle = counter_rate(lambda: time.sleep(0.3))
    busy = counter_rate(scrypt)
    print(
        f"counter thread: {idle:,.0f}/s while sleeping, {busy:,.0f}/s while scrypt runs "
        f"({busy / idle:.0%}; about 0% would mean scrypt holds the GIL)"
    )


async def noop_latency(target: Target, logins: int) -> None:
    _, (probe,) = await open_sessions(target, 1)
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
        elapsed, sessions = await open_sessions(target, logins)
        finished.set()
        for session in sessions:
            await session.close()
        return elapsed

    elapsed, _ = await asyncio.gather(crowd(), ping())
    await probe.close()
    print(
        f"{logins} concurrent logins took {elapsed:.2f} s; meanwhile {len(rtts)} NOOPs of another session: "
        f"median {statistics.median(rtts) * 1000:.2f} ms, max {max(rtts) * 1000:.2f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args()
    gil_check()
    work = Path(tempfile.mkdtemp(prefix="ftpsd-login-"))
    target = None
    try:
        cert, key = write_self_signed(work, "bench", (HOST,))
        target = start_ftpsd(work, cert, key, args.logins + 10)
        asyncio.run(noop_latency(target, args.logins))
    finally:
        if target is not None:
            target.proc.terminate()
            target.proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"(scrypt cost ln={DEFAULT_LOG2_N}, r={DEFAULT_R}, p={DEFAULT_P}; server on {HOST})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
