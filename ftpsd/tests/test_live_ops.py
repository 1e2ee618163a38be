"""Live operational tests: bans, connection limits, reload, shutdown, login concurrency, CLI."""

from __future__ import annotations

import ftplib
import hashlib
import io
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context, connect
from ftpsd.passwords import verify_password
from selfsigned import write_self_signed

pytestmark = pytest.mark.live


def fingerprint(ftp: ftplib.FTP_TLS) -> str:
    return hashlib.sha256(ftp.sock.getpeercert(binary_form=True)).hexdigest()


def test_ban_after_repeated_failures_spares_other_addresses(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(ban_after_failures=3, max_connections_per_ip=10)
    attacker = connect(srv, source="127.0.0.2")
    for _ in range(3):
        with pytest.raises((ftplib.error_perm, EOFError)):
            attacker.login("fbt_admin", "guess")
    attacker.close()
    srv.wait_log("banning 127.0.0.2")
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(srv, source="127.0.0.2")
    # The same account still works from another address.
    ok = connect(srv, "fbt_admin", source="127.0.0.1")
    assert ok.sendcmd("NOOP").startswith("200")
    ok.quit()
    assert "refused connection from banned address 127.0.0.2" in srv.log()


def test_max_connections_per_ip(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(max_connections_per_ip=2)
    first, second = connect(srv), connect(srv)
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(srv)
    other = connect(srv, source="127.0.0.2")  # another address is not affected
    for ftp in (first, second, other):
        ftp.close()


def test_noop_answered_while_another_login_hashes(server: ServerProcess) -> None:
    """The event loop keeps serving while a (deliberately ~1 s) scrypt runs in a worker thread."""
    active = connect(server, "reader")
    slow = connect(server)
    slow.auth()
    slow.sendcmd("USER slowpoke")
    started = time.monotonic()
    slow.putcmd("PASS " + PASSWORDS["slowpoke"])
    answered = 0
    # A blocking server could answer at most one NOOP that slipped in before PASS; every further
    # NOOP would be queued behind the hash, i.e. arrive after the 230 below.
    while not select.select([slow.sock], [], [], 0)[0] and answered < 50:
        assert active.sendcmd("NOOP").startswith("200")
        answered += 1
    assert answered >= 3, f"only {answered} NOOP replies while the login was hashing"
    assert slow.getresp().startswith("230")
    print(f"{answered} NOOPs answered; slow login took {time.monotonic() - started:.3f}s")
    slow.quit()
    active.quit()


def test_reload_swaps_certificate_and_users_but_not_running_transfers(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory()
    setup = srv.setup
    payload = bytes(range(256)) * (40 * 4096)  # 40 MiB
    (setup.shared / "big.bin").write_bytes(payload)

    old = connect(srv, "fbt_admin")
    old_fp = fingerprint(old)
    old.voidcmd("TYPE I")
    download = old.transfercmd("RETR big.bin")
    received = bytearray(download.recv(65536))

    setup.cert, setup.key = write_self_signed(setup.root, "renewed")
    setup.extra_users.append(("newbie", "read_only", str(setup.shared)))
    setup.write()
    srv.signal(signal.SIGHUP)
    states = srv.wait_notify("READY=1")
    assert "RELOADING=1" in states
    assert any(s.startswith("MONOTONIC_USEC=") for s in states)

    fresh = connect(srv, "newbie")
    assert fingerprint(fresh) != old_fp
    assert fresh.sendcmd("NOOP").startswith("200")
    fresh.quit()

    while chunk := download.recv(1 << 20):
        received += chunk
    download.unwrap()
    download.close()
    assert old.voidresp().startswith("226")
    assert bytes(received) == payload
    # The old session keeps its own TLS context: new data connections still resume its session.
    assert "big.bin" in old.nlst()
    assert fingerprint(old) == old_fp
    old.quit()
    # The transfer that straddled the reload is in the (reopened) transfer log.
    assert '"path": "/big.bin", "direction": "download", "bytes": 41943040' in setup.transfer_log.read_text()


def test_bad_config_on_reload_keeps_old_one(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory()
    before = connect(srv, "reader")
    old_fp = fingerprint(before)
    before.quit()
    good = srv.setup.config_path.read_text()
    srv.setup.config_path.write_text(good.replace('permissions = "read_only"', 'permissions = "uplod_only"'))
    srv.signal(signal.SIGHUP)
    srv.wait_notify("READY=1")
    srv.wait_log("reload failed, keeping the previous configuration: users[2].permissions")
    after = connect(srv, "reader")
    assert fingerprint(after) == old_fp
    after.quit()
    assert srv.proc.poll() is None


def test_sigterm_stops_cleanly(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory()
    idle = connect(srv, "reader")
    srv.signal(signal.SIGTERM)
    srv.wait_notify("STOPPING=1")
    assert srv.proc.wait(20) == 0
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.setup.explicit_port), timeout=5)


# --- CLI


def ftpsd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ftpsd.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hash_password_reads_stdin() -> None:
    result = ftpsd("hash-password", stdin="s3cret pass\n")
    assert result.returncode == 0, result.stderr
    encoded = result.stdout.strip()
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert verify_password("s3cret pass", encoded)
    assert not verify_password("s3cret pass\n", encoded)
    assert ftpsd("hash-password", stdin="").returncode == 1


def test_check_config(server: ServerProcess, tmp_path: Path) -> None:
    # Ansible validates a temp copy with an arbitrary name: the path must not matter.
    copy = tmp_path / "tmpXYZ.ansible"
    shutil.copy(server.setup.config_path, copy)
    ok = ftpsd("check-config", str(copy))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "ok: 4 users"

    text = server.setup.config_path.read_text()
    copy.write_text(text.replace('permissions = "upload_only"', 'permissions = "uplod_only"'))
    bad = ftpsd("check-config", str(copy))
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: users[1].permissions: unknown profile 'uplod_only' (expected full,")

    first_hash = text.split('password_hash = "')[1].split('"')[0]
    copy.write_text(text.replace(first_hash, "hunter2", 1))
    plain = ftpsd("check-config", str(copy))
    assert plain.returncode == 1
    assert "users[0].password_hash" in plain.stderr and "ftpsd hash-password" in plain.stderr

    other_cert, _ = write_self_signed(tmp_path, "other")
    copy.write_text(text.replace(str(server.setup.cert), str(other_cert)))
    mismatch = ftpsd("check-config", str(copy))
    assert mismatch.returncode == 1
    assert "tls.private_key" in mismatch.stderr and "does not match" in mismatch.stderr

    copy.write_text(text.replace(str(server.setup.cert), str(tmp_path / "missing.crt")))
    missing = ftpsd("check-config", str(copy))
    assert missing.returncode == 1
    assert "tls.certificate: cannot read" in missing.stderr


def test_serve_refuses_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nexplicit_port = 2121\n")
    result = ftpsd("serve", "--config", str(path))
    assert result.returncode == 1
    assert "tls: required key missing" in result.stderr


def test_session_not_disturbed_by_concurrent_upload_listing(server: ServerProcess) -> None:
    """Sanity check that the shared server is still healthy after the tests above."""
    ftp = connect(server, "fbt_admin", context=client_context())
    ftp.storbinary("STOR health.txt", io.BytesIO(b"ok"))
    assert "health.txt" in ftp.nlst()
    ftp.quit()
