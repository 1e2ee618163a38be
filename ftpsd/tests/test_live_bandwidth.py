"""Bandwidth limits against the real server on loopback, driven by curl, lftp and ftplib.

Only lower bounds on time are asserted (a limit of R makes N bytes take at least about N/R seconds) and
upper bounds on bytes moved under a limit; never how fast anything is, which a loaded machine decides.
"""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess, connect, free_port, new_setup
from ftpsd.partials import partial_path
from test_clients import lftp, run, url
from test_live_metrics import eventually, value

pytestmark = pytest.mark.live

KIB = 1024
Servers = list[ServerProcess]
CURL = ["curl", "--silent", "--show-error", "--insecure", "--ssl-reqd"]


def start(tmp_path: Path, user_keys: dict[str, dict[str, int]] | None = None, **limits: int) -> ServerProcess:
    setup = new_setup(tmp_path / "srv", **limits)
    setup.user_keys = user_keys or {}
    setup.write()
    return ServerProcess(setup)


@pytest.fixture
def started() -> Iterator[Servers]:
    """Servers a test starts, stopped afterwards; none may have logged an unhandled error."""
    servers: list[ServerProcess] = []
    yield servers
    for srv in servers:
        srv.stop()
    for srv in servers:
        assert "Traceback" not in srv.log(), srv.log()


def shared_file(srv: ServerProcess, name: str, size: int) -> str:
    data = os.urandom(size)
    (srv.setup.shared / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def curl_get(srv: ServerProcess, user: str, name: str, out: Path) -> list[str]:
    return [*CURL, "-o", str(out), url(srv, user) + name]


def timed(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    result = run(args)
    return result, time.monotonic() - began


def stop_client(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


def test_server_download_rate_holds_a_download_to_it(started: Servers, tmp_path: Path) -> None:
    rate, size = 256 * KIB, 1024 * KIB
    started.append(srv := start(tmp_path, download_rate=rate))
    digest = shared_file(srv, "big.bin", size)
    got, elapsed = timed(curl_get(srv, "reader", "big.bin", tmp_path / "back.bin"))
    assert got.returncode == 0, got.stderr
    assert sha256_of(tmp_path / "back.bin") == digest
    assert elapsed >= 0.8 * size / rate, f"{size} bytes in {elapsed:.2f}s at a limit of {rate}/s"


def test_server_upload_rate_holds_an_upload_to_it(started: Servers, tmp_path: Path) -> None:
    rate, size = 256 * KIB, 1024 * KIB
    started.append(srv := start(tmp_path, upload_rate=rate))
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(size))
    put, elapsed = timed([*CURL, "-T", str(src), url(srv, "dropbox") + "up.bin"])
    assert put.returncode == 0, put.stderr
    assert sha256_of(srv.setup.shared / "up.bin") == sha256_of(src)
    assert elapsed >= 0.8 * size / rate, f"{size} bytes in {elapsed:.2f}s at a limit of {rate}/s"


def test_a_limited_user_does_not_slow_another_user(started: Servers, tmp_path: Path) -> None:
    """reader is held to 64 KiB/s (8 s for this file); fbt_admin, unlimited, fetches it meanwhile."""
    started.append(srv := start(tmp_path, user_keys={"reader": {"download_rate": 64 * KIB}}))
    digest = shared_file(srv, "big.bin", 512 * KIB)
    slow_out = tmp_path / "slow.bin"
    slow = subprocess.Popen(curl_get(srv, "reader", "big.bin", slow_out), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (slow_out.exists() and slow_out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow_out.exists(), "the limited download never started"
        fast = run(curl_get(srv, "fbt_admin", "big.bin", tmp_path / "fast.bin"))
        assert fast.returncode == 0, fast.stderr
        assert sha256_of(tmp_path / "fast.bin") == digest
        assert slow.poll() is None, "the limited download ended before the unlimited one"
    finally:
        stop_client(slow)


def test_two_sessions_of_one_user_share_its_download_rate(started: Servers, tmp_path: Path) -> None:
    rate, size = 256 * KIB, 512 * KIB
    started.append(srv := start(tmp_path, user_keys={"reader": {"download_rate": rate}}))
    digests = [shared_file(srv, f"f{i}.bin", size) for i in range(2)]
    began = time.monotonic()
    clients = [
        subprocess.Popen(curl_get(srv, "reader", f"f{i}.bin", tmp_path / f"b{i}.bin")) for i in range(2)
    ]
    codes = [client.wait(120) for client in clients]
    elapsed = time.monotonic() - began
    assert codes == [0, 0]
    assert [sha256_of(tmp_path / f"b{i}.bin") for i in range(2)] == digests
    assert elapsed >= 0.8 * 2 * size / rate, f"2 x {size} bytes in {elapsed:.2f}s at a limit of {rate}/s"


def test_two_sessions_of_one_user_share_its_upload_rate(started: Servers, tmp_path: Path) -> None:
    rate, size = 256 * KIB, 512 * KIB
    started.append(srv := start(tmp_path, user_keys={"dropbox": {"upload_rate": rate}}))
    sources = []
    for i in range(2):
        sources.append(src := tmp_path / f"u{i}.bin")
        src.write_bytes(os.urandom(size))
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [
        threading.Thread(target=lambda s=src: results.append(lftp(srv, "dropbox", f"put {s} -o {s.name}")))
        for src in sources
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    elapsed = time.monotonic() - began
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    for src in sources:
        assert sha256_of(srv.setup.shared / src.name) == sha256_of(src)
    assert elapsed >= 0.8 * 2 * size / rate, f"2 x {size} bytes in {elapsed:.2f}s at a limit of {rate}/s"


def test_other_sessions_are_answered_while_transfers_are_held_back(started: Servers, tmp_path: Path) -> None:
    started.append(srv := start(tmp_path, download_rate=64 * KIB))
    shared_file(srv, "big.bin", 512 * KIB)
    out = tmp_path / "slow.bin"
    slow = subprocess.Popen(curl_get(srv, "reader", "big.bin", out), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        ftp = connect(srv, "fbt_admin")
        try:
            for _ in range(3):
                began = time.monotonic()
                assert ftp.voidcmd("NOOP").startswith("200")
                assert time.monotonic() - began < 2, "NOOP not answered within 2 s"
                time.sleep(0.3)
            assert "big.bin" in ftp.nlst()  # listings and their data connections are not held back
        finally:
            ftp.quit()
        assert slow.poll() is None, "the download was not being held back meanwhile"
    finally:
        stop_client(slow)


@pytest.mark.parametrize("direction", ["download", "upload"])
def test_waiting_for_tokens_does_not_trip_the_data_timeout(
    started: Servers, tmp_path: Path, direction: str
) -> None:
    """At 4 KiB/s a transfer waits 4 s for each TLS record's worth of tokens, four data timeouts long."""
    rate, size = 4 * KIB, 40 * KIB
    user = "reader" if direction == "download" else "dropbox"
    started.append(srv := start(tmp_path, user_keys={user: {f"{direction}_rate": rate}}, data_timeout=1))
    if direction == "download":
        digest = shared_file(srv, "slow.bin", size)
        result, elapsed = timed(curl_get(srv, user, "slow.bin", tmp_path / "back.bin"))
        landed = tmp_path / "back.bin"
    else:
        src = tmp_path / "slow.bin"
        src.write_bytes(os.urandom(size))
        digest = sha256_of(src)
        result, elapsed = timed([*CURL, "-T", str(src), url(srv, user) + "slow.bin"])
        landed = srv.setup.shared / "slow.bin"
    assert result.returncode == 0, result.stderr
    assert sha256_of(landed) == digest
    assert "timed out" not in srv.log()
    burst = 16 * KIB
    assert elapsed >= 0.8 * (size - burst) / rate


def test_reload_lowers_the_limit_of_a_running_download(started: Servers, tmp_path: Path) -> None:
    """A download limited to 1 MiB/s moves no more than about 64 KiB/s once a reload sets that."""
    started.append(srv := start(tmp_path, user_keys={"reader": {"download_rate": 1024 * KIB}}))
    shared_file(srv, "big.bin", 8 * 1024 * KIB)
    received = [0]
    stop = threading.Event()

    def take(chunk: bytes) -> None:
        received[0] += len(chunk)
        if stop.is_set():
            raise ConnectionAbortedError("test done")

    ftp = connect(srv, "reader")
    worker = threading.Thread(target=lambda: _download(ftp, "big.bin", take))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while received[0] < 256 * KIB and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received[0] >= 256 * KIB, "the download did not start"
        srv.setup.user_keys = {"reader": {"download_rate": 64 * KIB}}
        srv.setup.write()
        srv.signal(signal.SIGHUP)
        srv.wait_notify("READY=1")
        first, began = received[0], time.monotonic()
        time.sleep(2)
        moved, seconds = received[0] - first, time.monotonic() - began
        # New rate x time, plus one burst saved and what was already in flight before the reload; the old
        # rate would have moved about 2 MiB.
        assert moved <= 64 * KIB * seconds + 512 * KIB, f"{moved} bytes in {seconds:.2f}s after the reload"
        assert "configuration reloaded" in srv.log()
    finally:
        stop.set()
        worker.join(30)


def _download(ftp: ftplib.FTP_TLS, name: str, take: Callable[[bytes], None]) -> None:
    """RETR until the test ends it (by raising from take) and close the session."""
    try:
        with contextlib.suppress(ConnectionAbortedError):
            ftp.retrbinary(f"RETR {name}", take)
    finally:
        ftp.close()


def test_reload_sets_a_limit_for_new_transfers(started: Servers, tmp_path: Path) -> None:
    rate, size = 256 * KIB, 512 * KIB
    started.append(srv := start(tmp_path))
    digest = shared_file(srv, "big.bin", size)
    srv.setup.limits["download_rate"] = rate
    srv.setup.write()
    srv.signal(signal.SIGHUP)
    srv.wait_notify("READY=1")
    got, elapsed = timed(curl_get(srv, "reader", "big.bin", tmp_path / "back.bin"))
    assert got.returncode == 0, got.stderr
    assert sha256_of(tmp_path / "back.bin") == digest
    assert elapsed >= 0.8 * size / rate


def test_abor_ends_held_back_transfers_at_once(started: Servers, tmp_path: Path) -> None:
    """At 16 KiB/s both transfers spend nearly all their time off the loop; ABOR still ends them."""
    keys = {"fbt_admin": {"download_rate": 16 * KIB, "upload_rate": 16 * KIB}}
    started.append(srv := start(tmp_path, user_keys=keys))
    shared_file(srv, "big.bin", 1024 * KIB)
    ftp = connect(srv, "fbt_admin")
    down = ftp.transfercmd("RETR big.bin")
    down.recv(16 * KIB)
    began = time.monotonic()
    ftp.putcmd("ABOR")
    assert ftp.getmultiline().startswith("426")
    assert ftp.getmultiline().startswith("226")
    assert time.monotonic() - began < 2
    down.close()
    up = ftp.transfercmd("STOR cut.bin")
    up.sendall(os.urandom(256 * KIB))  # the kernel's buffers take it; the server reads 16 KiB a second
    began = time.monotonic()
    ftp.putcmd("ABOR")
    replies = [ftp.getmultiline(), ftp.getmultiline()]
    assert replies[-1].startswith("226"), replies
    assert time.monotonic() - began < 2
    up.close()
    assert ftp.voidcmd("NOOP").startswith("200")
    ftp.quit()
    # Nothing under the upload's name; what arrived is kept for resuming (partial_upload_ttl's default).
    kept = Path(partial_path(str(srv.setup.shared / "cut.bin"), "fbt_admin")).name
    assert sorted(p.name for p in srv.setup.shared.iterdir()) == sorted(["big.bin", kept])


def test_metrics_show_the_limits_and_the_time_held_back(started: Servers, tmp_path: Path) -> None:
    setup = new_setup(tmp_path / "srv", download_rate=128 * KIB)
    setup.metrics_port = free_port()
    setup.write()
    started.append(srv := ServerProcess(setup))
    shared_file(srv, "big.bin", 512 * KIB)
    got, elapsed = timed(curl_get(srv, "reader", "big.bin", tmp_path / "back.bin"))
    assert got.returncode == 0, got.stderr
    done = {"direction": "download", "result": "ok"}
    after = eventually(srv, lambda s: value(s, "ftpsd_transfers_total", **done) == 1)
    assert value(after, "ftpsd_bandwidth_limit_bytes_per_second", direction="download") == 128 * KIB
    assert value(after, "ftpsd_bandwidth_limit_bytes_per_second", direction="upload") == 0
    # About 4 s at the limit, nearly all of it waiting for tokens (lower bound only; never above the total).
    held = value(after, "ftpsd_transfer_held_back_seconds_total", direction="download")
    assert 0.5 * 512 / 128 <= held <= elapsed
    assert value(after, "ftpsd_transfer_held_back_seconds_total", direction="upload") == 0
