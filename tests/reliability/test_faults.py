"""Faults: the server is killed with SIGKILL in the middle of a transfer; a disk fills up during an upload.

kill -9: systemd brings the service back within seconds; an interrupted upload never appears under its
final name (uploads are atomic: a hidden partial upload is renamed only after a complete upload), and it
survives the restart, so the client resumes it with SIZE and REST + STOR; an interrupted download resumes
with REST. Disk full: the rel_tiny user's home is a 4 MiB tmpfs (see conftest.py).
"""

from __future__ import annotations

import ftplib
import io
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from ftps_clients import download_sha256, login, sha256, upload
from labhost import Deployment, LabHost, ServiceState

RESTART_BOUND = 15  # seconds; the unit restarts after RestartSec=2s, so this is only a safety bound
CHUNK = 1 << 20
BROKEN = (OSError, EOFError, ftplib.Error)  # what a client may see when the server dies under it


def wait_for_part_file(server: LabHost, home: str, minimum: int) -> None:
    """Until the server has written at least `minimum` bytes of the upload into its hidden partial upload."""
    deadline = time.monotonic() + 30
    while not server.run(f"find {home} -maxdepth 1 -name '.ftpsd-upload-*.part*' -size +{minimum // 1024}k"):
        assert time.monotonic() < deadline, "the upload never reached the server's disk"
        time.sleep(0.1)


def kill_and_wait(server: LabHost) -> float:
    """kill -9 the server; how long until systemd runs it again."""
    before = server.service()
    server.run(f"kill -9 {before.main_pid}")
    after, waited = server.wait_active(old_pid=before.main_pid, timeout=60)
    assert after.restarts == before.restarts + 1
    assert waited < RESTART_BOUND, f"ftpsd took {waited:.1f}s to come back"
    return waited


def drain(conn: socket.socket, limit: int | None = None) -> bytes:
    """Read from a data connection until `limit` bytes, its end, or the failure of the connection."""
    received = bytearray()
    try:
        while limit is None or len(received) < limit:
            chunk = conn.recv(CHUNK)
            if not chunk:
                break
            received += chunk
    except (OSError, ssl.SSLError):
        pass
    return bytes(received)


def test_kill_during_upload_leaves_no_file_and_the_client_resumes_it(deployment: Deployment) -> None:
    server, home = deployment.server, deployment.users["fbt_admin"].home
    data = os.urandom(16 * CHUNK)
    name = "killed-upload.bin"
    ftp = login(deployment, "fbt_admin")
    ftp.voidcmd("TYPE I")  # ftplib's default is ASCII, where the server drops the CR of every CRLF
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(data[: 4 * CHUNK])
    wait_for_part_file(server, home, 2 * CHUNK)

    kill_and_wait(server)
    with pytest.raises(BROKEN):  # the client notices: its upload did not complete
        conn.sendall(data[4 * CHUNK :])
        conn.unwrap()
        ftp.voidresp()
    conn.close()
    ftp.close()

    assert server.run(f"test -e {home}/{name} || echo absent").strip() == "absent"
    with login(deployment, "fbt_admin") as ftp:
        assert name not in ftp.nlst()
        assert not [n for n in ftp.nlst() if n.startswith(".ftpsd-upload-")]  # the partial stays hidden
        ftp.voidcmd("TYPE I")
        kept = ftp.size(name)  # its own partial upload, kept across the restart (partial_upload_ttl)
        assert 2 * CHUNK <= kept <= 4 * CHUNK, kept
        ftp.storbinary(f"STOR {name}", io.BytesIO(data[kept:]), blocksize=65536, rest=kept)
        assert download_sha256(ftp, name) == sha256(data)
        ftp.delete(name)


def test_kill_during_download_resumes_with_rest(deployment: Deployment) -> None:
    data = os.urandom(32 * CHUNK)
    name = "killed-download.bin"
    with login(deployment, "fbt_admin") as ftp:
        upload(ftp, name, data)

    ftp = login(deployment, "fbt_admin")
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"RETR {name}")
    received = drain(conn, limit=2 * CHUNK)
    kill_and_wait(deployment.server)
    received += drain(conn)  # whatever was still in flight, up to the broken connection
    conn.close()
    ftp.close()
    assert 2 * CHUNK <= len(received) < len(data)

    with login(deployment, "fbt_admin") as ftp:
        rest = bytearray()
        ftp.retrbinary(f"RETR {name}", rest.extend, rest=len(received))
        ftp.delete(name)
    assert sha256(received + rest) == sha256(data)


@dataclass(frozen=True)
class DiskFull:
    reply: str
    service_before: ServiceState
    service_after: ServiceState
    listing: str
    final_name: str


@pytest.fixture(scope="module")
def disk_full(deployment: Deployment) -> Iterator[DiskFull]:
    """One upload of twice the tmpfs size; what the client was told and what the host looks like after."""
    server, home = deployment.server, deployment.users["rel_tiny"].home
    before = server.service()
    name = "too-big.bin"
    ftp = login(deployment, "rel_tiny", timeout=20)
    conn = ftp.transfercmd(f"STOR {name}")
    try:
        conn.sendall(os.urandom(8 * CHUNK))
        conn.unwrap()
    except (OSError, ssl.SSLError):
        pass  # the server closes the data connection when its disk is full
    conn.close()
    try:
        reply = ftp.getresp()  # the control connection must say what happened
    except ftplib.Error as err:
        reply = str(err)
    except (OSError, EOFError) as err:
        reply = f"no reply: {err!r}"
    ftp.close()
    time.sleep(0.5)
    yield DiskFull(
        reply, before, server.service(), server.run(f"ls -A {home}; df -k --output=used {home}"), name
    )
    server.run(f"rm -rf {home}/* {home}/.[!.]*")


def test_disk_full_keeps_the_server_running_and_leaves_no_file(
    deployment: Deployment, disk_full: DiskFull
) -> None:
    assert disk_full.service_after == disk_full.service_before
    files, usage = disk_full.listing.split("Used")
    assert files.split() == [], f"left on the full disk: {files.split()}"  # neither the name nor a .part file
    assert int(usage) < 64, f"{usage.strip()} KiB still used"
    with login(deployment, "rel_tiny") as ftp:  # the space is free again for the next upload
        upload(ftp, "fits.bin", b"x" * 100_000)
        assert download_sha256(ftp, "fits.bin") == sha256(b"x" * 100_000)
        assert disk_full.final_name not in ftp.nlst()
        ftp.delete("fits.bin")


def test_disk_full_answers_the_client_with_452_insufficient_storage(disk_full: DiskFull) -> None:
    assert disk_full.reply.startswith("452 ") and "No space left on device" in disk_full.reply, (
        disk_full.reply
    )
