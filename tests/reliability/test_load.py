"""Load: 200 concurrent clients, each uploading and then downloading 20 files of mixed sizes over TLS.

All 200 log in before the first byte moves (a barrier), so 200 sessions really are open at once. Every
download must match its upload's SHA-256, and so must every file on the server's disk; no transfer may
fail; the server's peak resident memory must stay under a fixed bound. The aggregate throughput is
printed, never asserted (the machine is shared).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from ftps_clients import download_sha256, login, sha256, upload
from labhost import Deployment

CLIENTS = 200
# 20 files per client, 1071 KiB in all: mostly small files, a few large ones. About 210 MiB each way.
SIZES_KIB = (1,) * 7 + (8,) * 5 + (32,) * 4 + (128,) * 3 + (512,)
# Peak resident memory of ftpsd: about 110 MiB measured with these 200 sessions (37 MiB idle). The bound
# leaves room, but catches per-session buffers that grow with file sizes or leak across transfers.
MEMORY_BOUND_MIB = 300
_POOL = random.Random(8).randbytes(640 * 1024)


def content(client: int, index: int, size: int) -> bytes:
    """Distinct, reproducible file content: a header naming the file over a slice of a random pool."""
    header = f"client {client} file {index}\n".encode()
    offset = (client * len(SIZES_KIB) + index) * 4099 % (len(_POOL) - size)
    return (header + _POOL[offset : offset + size])[:size]


def files_of(client: int) -> list[tuple[str, bytes]]:
    files = [(f"f{i:02d}-{kib}k.bin", content(client, i, kib * 1024)) for i, kib in enumerate(SIZES_KIB)]
    random.Random(client).shuffle(files)  # sizes mixed in a different order per client
    return files


def folder_of(client: int) -> str:
    return f"c{client:03d}"


@dataclass
class ClientResult:
    moved: int = 0
    mismatches: list[str] = field(default_factory=list)
    error: str = ""


def run_client(deployment: Deployment, client: int, all_logged_in: threading.Barrier) -> ClientResult:
    result = ClientResult()
    files = files_of(client)
    try:
        with login(deployment, "rel_load", timeout=300) as ftp:
            ftp.mkd(folder_of(client))
            ftp.cwd(folder_of(client))
            all_logged_in.wait(timeout=300)
            for name, data in files:
                upload(ftp, name, data)
                result.moved += len(data)
            for name, data in files:
                if download_sha256(ftp, name) != sha256(data):
                    result.mismatches.append(f"{folder_of(client)}/{name}")
                result.moved += len(data)
    except Exception as err:  # every failure counts, including a broken barrier
        all_logged_in.abort()
        result.error = f"client {client}: {err!r}"
    return result


@pytest.fixture
def load_home(deployment: Deployment) -> Iterator[str]:
    home = deployment.users["rel_load"].home
    deployment.server.run(f"rm -rf {home}/*")
    yield home
    deployment.server.run(f"rm -rf {home}/*")


def test_200_concurrent_clients_move_every_byte_intact_in_bounded_memory(
    deployment: Deployment, load_home: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server = deployment.server
    before = server.service()
    memory_before = server.memory_kib(before.main_pid)
    started: list[float] = []
    all_logged_in = threading.Barrier(CLIENTS, action=lambda: started.append(time.monotonic()))
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        results = list(pool.map(lambda c: run_client(deployment, c, all_logged_in), range(CLIENTS)))
    elapsed = time.monotonic() - started[0] if started else float("nan")
    memory_after = server.memory_kib(before.main_pid)

    listing = server.run(f"cd {load_home} && find . -type f -exec sha256sum {{}} +")
    on_disk = {path: digest for digest, path in (line.split(maxsplit=1) for line in listing.splitlines())}
    moved = sum(r.moved for r in results)
    with capsys.disabled():
        print(
            f"\nload: {CLIENTS} clients x {len(SIZES_KIB)} files, {moved / 2**20:.0f} MiB up+down in "
            f"{elapsed:.1f}s = {moved / 2**20 / elapsed:.1f} MiB/s aggregate; ftpsd RSS "
            f"{memory_before['VmRSS'] // 1024} MiB before, peak {memory_after['VmHWM'] // 1024} MiB, "
            f"{memory_after['VmRSS'] // 1024} MiB after"
        )

    errors = [r.error for r in results if r.error]
    assert not errors, f"{len(errors)} clients failed, e.g.:\n" + "\n".join(errors[:10])
    mismatches = [m for r in results for m in r.mismatches]
    assert not mismatches, f"downloads differing from their upload: {mismatches[:20]}"
    expected = {
        f"./{folder_of(c)}/{name}": sha256(data) for c in range(CLIENTS) for name, data in files_of(c)
    }
    assert on_disk == expected, "files on the server's disk differ from what was uploaded"
    after = server.service()
    assert (after.main_pid, after.restarts) == (before.main_pid, before.restarts)
    assert memory_after["VmHWM"] < MEMORY_BOUND_MIB * 1024
