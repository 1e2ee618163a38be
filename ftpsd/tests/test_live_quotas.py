"""Folder quotas live: a real ftpsd on loopback, driven by curl, lftp and ftplib (ALLO, races, RNFR/RNTO).

Usage is checked three ways that must agree: the server's own gauges (what it enforces), ``ftpsd quota``
and an independent walk of the disk here.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, connect, free_port, new_setup
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.live

PREFIX = ".ftpsd-upload-"


def disk_usage(folder: Path) -> tuple[int, int]:
    """(bytes of every regular file, count of the non-hidden ones) below folder, read here independently."""
    total = files = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root, name)
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
                files += not name.startswith(PREFIX)
    return total, files


def temp_files(folder: Path) -> list[str]:
    return [name for _root, _dirs, names in os.walk(folder) for name in names if name.startswith(PREFIX)]


def served_usage(srv: ServerProcess, folder: Path) -> tuple[int, int]:
    """What the server counts for the quota of folder (its gauges)."""
    url = f"http://127.0.0.1:{srv.setup.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("path") == str(folder)
    }
    return int(values["ftpsd_quota_used_bytes"]), int(values["ftpsd_quota_used_files"])


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


def settled(srv: ServerProcess, folder: Path) -> tuple[int, int]:
    """Disk and server agree once the server has handled the last close (a loop turn after the reply)."""
    eventually(lambda: served_usage(srv, folder) == disk_usage(folder))
    return disk_usage(folder)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start({"": (max_bytes, max_files), "sub": ...}, **limits): a server with quotas on shared/<key>."""
    started: list[ServerProcess] = []

    def run(quotas: dict[str, tuple[int, int]], **limits: int) -> ServerProcess:
        setup = new_setup(tmp_path / f"srv{len(started)}", max_connections_per_ip=50, **limits)
        for sub, (max_bytes, max_files) in quotas.items():
            folder = setup.shared / sub
            folder.mkdir(exist_ok=True)
            setup.quotas.append((str(folder), max_bytes, max_files))
        setup.metrics_port = free_port()
        setup.write()
        proc = ServerProcess(setup)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        proc.stop()


def stor(ftp: ftplib.FTP_TLS, name: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


def stor_refused_midway(ftp: ftplib.FTP_TLS, name: str, data: bytes) -> str:
    """An upload without ALLO that the server stops once it exceeds: returns the final reply."""
    conn = ftp.transfercmd(f"STOR {name}")
    with contextlib.suppress(OSError):  # the server drops the data connection at the write that exceeds
        conn.sendall(data)
        conn.unwrap()
    conn.close()
    with pytest.raises(ftplib.error_perm) as info:
        ftp.voidresp()
    return str(info.value)


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def lftp(srv: ServerProcess, user: str, script: str) -> subprocess.CompletedProcess[str]:
    settings = "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
    settings += "set net:max-retries 1; set net:reconnect-interval-base 1; set cmd:fail-exit yes; "
    settings += "debug 5; "  # the commands and replies on stderr
    login = f"open -u {user},{PASSWORDS[user]} ftp://127.0.0.1:{srv.setup.explicit_port}; "
    return run(["lftp", "-c", settings + login + script])


def curl_upload(srv: ServerProcess, user: str, local: Path, remote: str) -> subprocess.CompletedProcess[str]:
    url = f"ftp://{user}:{PASSWORDS[user]}@127.0.0.1:{srv.setup.explicit_port}/{remote}"
    return run(["curl", "--verbose", "--insecure", "--ssl-reqd", "-T", str(local), url])


def transfer_records(srv: ServerProcess) -> list[dict[str, object]]:
    path = srv.setup.transfer_log
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_users_sharing_a_folder_share_its_quota(start: Callable[..., ServerProcess]) -> None:
    srv = start({"": (1000, 0)})
    shared = srv.setup.shared
    admin, dropbox = connect(srv, "fbt_admin"), connect(srv, "dropbox")
    assert stor(admin, "admin.bin", b"a" * 600).startswith("226")
    assert stor_refused_midway(dropbox, "drop.bin", b"d" * 600).startswith("552 ")
    assert sorted(os.listdir(shared)) == ["admin.bin"]  # nothing of the refused upload, not even a temp file
    assert stor(dropbox, "drop.bin", b"d" * 400).startswith("226")  # exactly full is allowed
    assert settled(srv, shared) == (1000, 2)
    with pytest.raises(ftplib.error_perm, match=r"^552 Folder quota of 1000 bytes exceeded"):
        admin.sendcmd("ALLO 1")
        admin.storbinary("STOR one-more.bin", io.BytesIO(b"x"))
    admin.quit()
    dropbox.quit()


def test_lftp_upload_that_does_not_fit_is_refused_with_552_and_leaves_nothing(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = start({"in": (100_000, 0)})
    folder = srv.setup.shared / "in"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(300_000))
    # lftp 4.9 announces nothing by default (ftp:use-allo is off): stopped mid-way.
    plain = lftp(srv, "dropbox", f"put {big} -o in/big.bin")
    assert plain.returncode != 0
    assert "ALLO" not in plain.stderr
    # lftp may see the dropped data connection before it reads the reply; the server sent it in any case.
    srv.wait_log("Folder quota of 100000 bytes exceeded (exceeded storage allocation); upload discarded.")
    eventually(lambda: os.listdir(folder) == [])
    assert [r["result"] for r in transfer_records(srv) if r["path"] == "/in/big.bin"] == ["failed"]
    # With ftp:use-allo it sends ALLO: refused at the start, before any data connection (no transfer logged).
    announced = lftp(srv, "dropbox", f"set ftp:use-allo yes; put {big} -o in/big2.bin")
    assert announced.returncode != 0
    assert "ALLO 300000" in announced.stderr, announced.stderr
    assert "<--- 552 Folder quota of 100000 bytes exceeded" in announced.stderr
    assert "150 " not in announced.stderr.split("ALLO 300000")[1]
    assert os.listdir(folder) == []
    assert not [r for r in transfer_records(srv) if r["path"] == "/in/big2.bin"]
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(60_000))
    assert lftp(srv, "dropbox", f"set ftp:use-allo yes; put {small} -o in/small.bin").returncode == 0
    assert settled(srv, folder) == (60_000, 1)


def test_curl_upload_is_stopped_with_552_as_soon_as_it_exceeds(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = start({"in": (1_000_000, 0)})
    folder = srv.setup.shared / "in"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3_000_000))
    result = curl_upload(srv, "fbt_admin", big, "in/big.bin")
    assert result.returncode != 0
    assert "ALLO" not in result.stderr  # curl announces nothing: the server stops it mid-way
    # curl reads the 552 unless its send already failed on the dropped data connection (then: exit 55).
    assert "552 Folder quota of 1000000 bytes exceeded" in result.stderr or result.returncode == 55
    srv.wait_log("Folder quota of 1000000 bytes exceeded (exceeded storage allocation); upload discarded.")
    eventually(lambda: os.listdir(folder) == [])
    records = [r for r in transfer_records(srv) if r["path"] == "/in/big.bin"]
    assert [r["result"] for r in records] == ["failed"]
    assert 0 < int(records[0]["bytes"]) <= 1_000_000 + (1 << 20)  # stopped early, not after 3 MB
    fits = tmp_path / "fits.bin"
    fits.write_bytes(os.urandom(999_999))
    assert curl_upload(srv, "fbt_admin", fits, "in/fits.bin").returncode == 0
    assert settled(srv, folder) == (999_999, 1)


def test_allo_replies_and_reservation(start: Callable[..., ServerProcess], server: ServerProcess) -> None:
    plain = connect(server, "fbt_admin")  # the shared server has no quotas
    assert plain.sendcmd("ALLO 5000").startswith("202 ")
    plain.quit()
    srv = start({"": (1000, 0)})
    first, second = connect(srv, "fbt_admin"), connect(srv, "dropbox")
    for bad in ("ALLO", "ALLO x", "ALLO 5 X 3", "ALLO -1"):
        with pytest.raises(ftplib.error_perm, match=r"^50[01]"):
            first.sendcmd(bad)
    assert first.sendcmd("ALLO 600 R 512").startswith("200 ")
    conn = first.transfercmd("STOR first.bin")  # 600 reserved from here on, before any byte
    assert second.sendcmd("ALLO 600").startswith("200 ")
    with pytest.raises(ftplib.error_perm, match=r"^552 "):
        second.sendcmd("STOR second.bin")  # refused at once: no 150, no data connection
    conn.sendall(b"f" * 600)
    conn.unwrap()
    conn.close()
    assert first.voidresp().startswith("226")
    # The ALLO was used up by the refused STOR: a small upload without a new ALLO fits.
    assert stor(second, "second.bin", b"s" * 400).startswith("226")
    assert settled(srv, srv.setup.shared) == (1000, 2)
    first.quit()
    second.quit()


def test_concurrent_uploads_cannot_both_fit(start: Callable[..., ServerProcess]) -> None:
    srv = start({"": (1000, 0)})
    shared = srv.setup.shared
    first, second = connect(srv, "fbt_admin"), connect(srv, "dropbox")
    conn1 = first.transfercmd("STOR first.bin")
    conn2 = second.transfercmd("STOR second.bin")
    conn1.sendall(b"1" * 600)
    eventually(lambda: served_usage(srv, shared)[0] == 600)  # the first upload's bytes are charged
    with contextlib.suppress(OSError):
        conn2.sendall(b"2" * 600)
        conn2.unwrap()
    conn2.close()
    with pytest.raises(ftplib.error_perm, match=r"^552 "):
        second.voidresp()
    conn1.unwrap()
    conn1.close()
    assert first.voidresp().startswith("226")
    assert sorted(os.listdir(shared)) == ["first.bin"]
    assert settled(srv, shared) == (600, 1)
    first.quit()
    second.quit()


def test_file_count_quota(start: Callable[..., ServerProcess]) -> None:
    srv = start({"": (0, 2)})
    shared = srv.setup.shared
    admin = connect(srv, "fbt_admin")
    assert stor(admin, "one.bin", b"1").startswith("226")
    assert stor(admin, "two.bin", b"2").startswith("226")
    for cmd in ("STOR three.bin", "STOU"):
        with pytest.raises(ftplib.error_perm, match=r"^552 Folder quota of 2 files exceeded"):
            admin.sendcmd(cmd)
    assert stor(admin, "two.bin", b"replaced, longer").startswith("226")  # a name that exists: no new file
    admin.delete("one.bin")
    assert stor(admin, "three.bin", b"3").startswith("226")
    assert settled(srv, shared) == (len(b"replaced, longer") + 1, 2)
    assert temp_files(shared) == []
    admin.quit()


def test_usage_follows_dele_rename_and_overwrite(start: Callable[..., ServerProcess]) -> None:
    srv = start({"q": (1000, 0)})
    shared, folder = srv.setup.shared, srv.setup.shared / "q"
    admin = connect(srv, "fbt_admin")
    assert stor(admin, "q/a.bin", b"a" * 600).startswith("226")
    assert stor(admin, "outside.bin", b"o" * 700).startswith("226")  # not in the quota folder
    assert settled(srv, folder) == (600, 1)
    with pytest.raises(ftplib.error_perm, match=r"^552 "):  # moving 700 bytes in would exceed
        admin.rename("outside.bin", "q/outside.bin")
    assert (shared / "outside.bin").exists()
    admin.rename("q/a.bin", "a.bin")  # out of the quota folder
    assert settled(srv, folder) == (0, 0)
    admin.rename("outside.bin", "q/in.bin")  # into it
    assert settled(srv, folder) == (700, 1)
    admin.mkd("q/sub")
    admin.rename("q/in.bin", "q/sub/in.bin")  # within it: no change
    assert settled(srv, folder) == (700, 1)
    # Overwrite by a full user: charged with the growth only (700 -> 1000 fits, 1001 would not).
    assert stor(admin, "q/sub/in.bin", b"n" * 1000).startswith("226")
    assert settled(srv, folder) == (1000, 1)
    assert stor_refused_midway(admin, "q/sub/in.bin", b"m" * 1001).startswith("552 ")
    assert (folder / "sub" / "in.bin").read_bytes() == b"n" * 1000  # the old file is intact
    assert stor(admin, "q/small.bin", b"").startswith("226")  # an empty file still fits
    admin.delete("q/small.bin")
    admin.delete("q/sub/in.bin")
    assert settled(srv, folder) == (0, 0)
    # A directory moved in brings its content (and is refused if that does not fit).
    admin.mkd("dir")
    assert stor(admin, "dir/x.bin", b"x" * 300).startswith("226")
    admin.rename("dir", "q/dir")
    assert settled(srv, folder) == (300, 1)
    admin.rename("q/dir", "dir")
    assert settled(srv, folder) == (0, 0)
    # The quota folder itself (or a folder holding it) cannot be renamed or removed.
    for cmd in ("RNFR q", "RMD q"):
        with pytest.raises(ftplib.error_perm, match=r"^550 This folder has a quota"):
            admin.sendcmd(cmd)
    admin.sendcmd("RNFR a.bin")
    with pytest.raises(ftplib.error_perm, match=r"^550 This folder has a quota"):
        admin.sendcmd("RNTO q")
    assert temp_files(shared) == []
    admin.quit()


def test_usage_survives_reload_and_restart(start: Callable[..., ServerProcess]) -> None:
    srv = start({"": (1000, 3)})
    shared = srv.setup.shared
    admin = connect(srv, "fbt_admin")
    assert stor(admin, "a.bin", b"a" * 400).startswith("226")
    assert stor(admin, "b.bin", b"b" * 500).startswith("226")
    conn = admin.transfercmd("STOR c.bin")  # an upload in progress across the reload
    conn.sendall(b"c" * 50)
    # The upload in progress holds its bytes and the slot of its new file.
    eventually(lambda: served_usage(srv, shared) == (950, 3))
    srv.signal(signal.SIGHUP)
    srv.wait_log("reload: quota")
    assert served_usage(srv, shared) == (950, 3)  # the upload stays charged, the files still count
    time.sleep(0.5)  # the background re-count after the reload skips the temp file the upload counts
    assert served_usage(srv, shared) == (950, 3)
    conn.sendall(b"c" * 100)  # 1050 > 1000: stopped
    with contextlib.suppress(OSError):
        conn.unwrap()
    conn.close()
    with pytest.raises(ftplib.error_perm, match=r"^552 "):
        admin.voidresp()
    assert settled(srv, shared) == (900, 2)
    admin.quit()
    srv.stop()
    srv.notify_path.unlink()
    again = ServerProcess(srv.setup)
    try:
        assert "start-up: quota " + str(shared) + ": 900 bytes of 1000, 2 files of 3" in again.log()
        assert served_usage(again, shared) == (900, 2)
        ftp = connect(again, "dropbox")
        assert stor_refused_midway(ftp, "d.bin", b"d" * 101).startswith("552 ")
        assert stor(ftp, "d.bin", b"d" * 100).startswith("226")
        with pytest.raises(ftplib.error_perm, match=r"^552 Folder quota of 3 files"):
            ftp.sendcmd("STOR e.bin")
        assert settled(again, shared) == (1000, 3)
        ftp.quit()
    finally:
        again.stop()


def test_rescan_finds_files_changed_outside_the_server(start: Callable[..., ServerProcess]) -> None:
    srv = start({"": (1000, 0)}, quota_rescan_interval=1)
    shared = srv.setup.shared
    (shared / "by-another-process.bin").write_bytes(b"x" * 900)
    (shared / f"{PREFIX}someone-elses.part").write_bytes(b"x" * 50)  # a partial upload uses disk too
    eventually(lambda: served_usage(srv, shared) == (950, 1))
    admin = connect(srv, "fbt_admin")
    assert stor_refused_midway(admin, "mine.bin", b"m" * 51).startswith("552 ")
    (shared / "by-another-process.bin").unlink()
    eventually(lambda: served_usage(srv, shared) == (50, 0))
    assert stor(admin, "mine.bin", b"m" * 950).startswith("226")
    assert settled(srv, shared) == (1000, 1)
    srv.wait_log("corrected by its rescan")
    admin.quit()


def test_quota_command_prints_the_usage_on_disk(start: Callable[..., ServerProcess]) -> None:
    srv = start({"a": (1000, 5), "b": (0, 0)})
    a, b = srv.setup.shared / "a", srv.setup.shared / "b"
    admin = connect(srv, "fbt_admin")
    assert stor(admin, "a/one.bin", b"1" * 123).startswith("226")
    admin.mkd("b/deep")
    assert stor(admin, "b/deep/two.bin", b"2" * 45).startswith("226")
    admin.quit()
    (a / f"{PREFIX}partial.part").write_bytes(b"p" * 7)
    command = [sys.executable, "-m", "ftpsd.cli", "quota", "--config", str(srv.setup.config_path)]
    report = json.loads(run([*command, "--json"]).stdout)
    assert report == [
        {
            "path": str(a),
            "exists": True,
            "used_bytes": 130,
            "max_bytes": 1000,
            "used_files": 1,
            "max_files": 5,
        },
        {"path": str(b), "exists": True, "used_bytes": 45, "max_bytes": 0, "used_files": 1, "max_files": 0},
    ]
    assert [(r["used_bytes"], r["used_files"]) for r in report] == [disk_usage(a), disk_usage(b)]
    text = run(command)
    assert text.returncode == 0
    assert text.stdout.splitlines() == [
        f"{a}: bytes 130/1000  files 1/5",
        f"{b}: bytes 45/unlimited  files 1/unlimited",
    ]
    srv.setup.config_path.write_text(srv.setup.render().replace("max_bytes = 1000", "max_bytes = -1"))
    bad = run(command)
    assert bad.returncode == 1 and bad.stderr.startswith("error: quotas[0].max_bytes: must not be negative")


def cut_upload(ftp: ftplib.FTP_TLS, command: str, data: bytes) -> None:
    """Send data, then end the data connection without TLS close_notify: the server keeps it for resuming."""
    conn = ftp.transfercmd(command)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_RDWR)  # a TCP FIN under TLS, as a broken network or a killed client
    conn.close()
    with pytest.raises(ftplib.error_temp):  # 426 ... kept for resuming
        ftp.voidresp()


def test_a_partial_kept_for_resuming_counts_its_bytes_and_resuming_charges_what_it_adds(
    start: Callable[..., ServerProcess],
) -> None:
    srv = start({"": (1000, 5)})
    ftp = connect(srv, "fbt_admin")
    ftp.voidcmd("TYPE I")
    cut_upload(ftp, "STOR resumed.bin", b"a" * 600)
    assert settled(srv, srv.setup.shared) == (600, 0)  # bytes on disk, no file yet
    ftp.sendcmd("REST 600")
    # 600 + 500 would not fit: stopped at the write that exceeds, and nothing is kept, not the partial either.
    assert stor_refused_midway(ftp, "resumed.bin", b"b" * 500).startswith("552")
    assert settled(srv, srv.setup.shared) == (0, 0) and temp_files(srv.setup.shared) == []
    cut_upload(ftp, "STOR resumed.bin", b"a" * 600)
    ftp.sendcmd("REST 600")
    stor(ftp, "resumed.bin", b"b" * 300)
    assert (srv.setup.shared / "resumed.bin").read_bytes() == b"a" * 600 + b"b" * 300
    assert settled(srv, srv.setup.shared) == (900, 1)
    ftp.quit()
