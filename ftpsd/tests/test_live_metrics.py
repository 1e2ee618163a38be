"""Live tests of the metrics endpoint: real FTPS sessions move the counters a real scrape reads."""

from __future__ import annotations

import ftplib
import io
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context, connect, free_port, new_setup
from cryptography import x509
from ftpsd.client import ImplicitFTPS
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.live

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Addresses of their own for the tests that get an address banned or refused (127.0.0.1 stays usable).
BANNED, CROWDED = "127.0.0.3", "127.0.0.4"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with metrics on a free loopback port, bans after 3 failures, 3 sessions per address."""
    setup = new_setup(
        tmp_path_factory.mktemp("metrics"), implicit=True, ban_after_failures=3, max_connections_per_ip=3
    )
    setup.metrics_port = free_port()
    setup.write()
    proc = ServerProcess(setup)
    yield proc
    proc.stop()


def scrape(server: ServerProcess) -> Samples:
    url = f"http://127.0.0.1:{server.setup.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def eventually(server: ServerProcess, check: Callable[[Samples], bool], timeout: float = 10) -> Samples:
    """Scrape until check holds: a session's close and a transfer's end are counted a loop turn later."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(server)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met; last scrape: {samples}")
        time.sleep(0.05)


def logins(samples: Samples, result: str) -> float:
    return value(samples, "ftpsd_logins_total", result=result)


def test_login_ok_and_wrong_password_move_their_results(srv: ServerProcess) -> None:
    before = scrape(srv)
    ftp = connect(srv, "reader")
    ftp.quit()
    bad = connect(srv)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        bad.login("reader", "not-the-password")
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        bad.login("nobody-" + uuid.uuid4().hex, "whatever")
    bad.close()
    after = scrape(srv)
    assert logins(after, "ok") == logins(before, "ok") + 1
    wrong = "wrong_password_or_unknown_user"
    assert logins(after, wrong) == logins(before, wrong) + 2
    assert not [key for key in after if "nobody" in str(key)]  # the user name is not a label


def transfers(samples: Samples, direction: str) -> tuple[float, float, float]:
    return (
        value(samples, "ftpsd_transfers_total", direction=direction, result="ok"),
        value(samples, "ftpsd_transfer_bytes_total", direction=direction),
        value(samples, "ftpsd_transfer_duration_seconds_count", direction=direction),
    )


def test_upload_and_download_move_transfers_and_bytes(srv: ServerProcess) -> None:
    before = scrape(srv)
    ftp = connect(srv, "fbt_admin")
    name = f"metrics-{uuid.uuid4().hex[:8]}.bin"
    ftp.storbinary(f"STOR {name}", io.BytesIO(b"u" * 12345))
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    ftp.quit()
    assert out.getvalue() == b"u" * 12345
    after = eventually(srv, lambda s: transfers(s, "download")[0] > transfers(before, "download")[0])
    for direction in ("upload", "download"):
        done, size, count = transfers(before, direction)
        assert transfers(after, direction) == (done + 1, size + 12345, count + 1)


def results(samples: Samples, direction: str) -> dict[str, float]:
    return {
        r: value(samples, "ftpsd_transfers_total", direction=direction, result=r)
        for r in ("ok", "failed", "aborted")
    }


def test_abor_counts_aborted_and_a_truncated_upload_failed(srv: ServerProcess) -> None:
    name = f"big-{uuid.uuid4().hex[:8]}.bin"
    (srv.setup.shared / name).write_bytes(b"b" * (32 << 20))
    before = scrape(srv)
    ftp = connect(srv, "fbt_admin")
    conn = ftp.transfercmd(f"RETR {name}")
    conn.recv(65536)
    ftp.putcmd("ABOR")
    assert ftp.getmultiline().startswith("426")
    assert ftp.getmultiline().startswith("226")
    conn.close()
    upload = ftp.transfercmd(f"STOR cut-{name}")
    upload.sendall(b"c" * 1000)
    upload.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: TCP FIN without TLS close_notify
    upload.close()
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        ftp.voidresp()
    ftp.quit()
    after = eventually(srv, lambda s: results(s, "upload")["failed"] > results(before, "upload")["failed"])
    for direction, result in (("download", "aborted"), ("upload", "failed")):
        assert results(after, direction) == {
            **results(before, direction),
            result: results(before, direction)[result] + 1,
        }


def sessions(samples: Samples, kind: str) -> float:
    return value(samples, "ftpsd_sessions", port_kind=kind)


def test_sessions_gauge_follows_open_sessions_by_port_kind(srv: ServerProcess) -> None:
    before = eventually(srv, lambda s: sessions(s, "explicit") == 0 and sessions(s, "implicit") == 0)
    explicit = connect(srv, "reader")
    implicit = ImplicitFTPS(context=client_context(), timeout=20)
    implicit.connect("127.0.0.1", srv.setup.implicit_port)
    implicit.login("reader", PASSWORDS["reader"])
    during = scrape(srv)
    assert (sessions(during, "explicit"), sessions(during, "implicit")) == (1, 1)
    explicit.quit()
    implicit.quit()
    eventually(
        srv, lambda s: sessions(s, "explicit") == sessions(before, "explicit") == sessions(s, "implicit")
    )


def test_certificate_not_after_is_the_served_certificate(srv: ServerProcess) -> None:
    cert = x509.load_pem_x509_certificate(srv.setup.cert.read_bytes())
    samples = scrape(srv)
    expected = cert.not_valid_after_utc.timestamp()
    assert value(samples, "ftpsd_certificate_not_after_timestamp_seconds") == expected


def test_renewal_window_follows_the_loaded_config(srv: ServerProcess) -> None:
    window = "ftpsd_certificate_renewal_window_seconds"
    assert value(scrape(srv), window) == 30 * 86400  # [tls] renewal_warning_days' default
    config = srv.setup.config_path.read_text()
    try:
        srv.setup.config_path.write_text(config.replace("[tls]\n", "[tls]\nrenewal_warning_days = 45\n", 1))
        srv.signal(signal.SIGHUP)
        srv.wait_notify("READY=1")
        assert value(scrape(srv), window) == 45 * 86400
    finally:
        srv.setup.config_path.write_text(config)
    srv.signal(signal.SIGHUP)
    srv.wait_notify("READY=1")
    assert value(scrape(srv), window) == 30 * 86400


def test_process_metrics_are_served(srv: ServerProcess) -> None:
    samples = scrape(srv)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_open_fds") > 0
    assert any(name == "python_info" for name, _ in samples)


def test_a_ban_is_counted_as_banned_now_and_refusals_and_logins(srv: ServerProcess) -> None:
    before = scrape(srv)
    early = connect(srv, source=BANNED)  # connected before the ban: its PASS meets it
    early.auth()
    early.sendcmd("USER reader")
    attacker = connect(srv, source=BANNED)
    for _ in range(3):
        with pytest.raises((ftplib.error_perm, EOFError)):
            attacker.login("reader", "guess")
    attacker.close()
    srv.wait_log(f"banning {BANNED}")
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        early.sendcmd("PASS " + PASSWORDS["reader"])
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(srv, source=BANNED)
    after = scrape(srv)
    assert value(after, "ftpsd_banned_addresses") == value(before, "ftpsd_banned_addresses") + 1
    assert logins(after, "banned") == logins(before, "banned") + 1
    refused = "ftpsd_connections_refused_total"
    assert value(after, refused, reason="banned") == value(before, refused, reason="banned") + 1


def test_connections_over_the_per_address_limit_are_counted(srv: ServerProcess) -> None:
    before = scrape(srv)
    allowed = [connect(srv, source=CROWDED) for _ in range(3)]
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(srv, source=CROWDED)
    implicit = ImplicitFTPS(context=client_context(), timeout=20)
    with pytest.raises((ssl.SSLError, OSError, EOFError)):  # closed before the handshake, no plaintext 421
        implicit.connect("127.0.0.1", srv.setup.implicit_port, source_address=(CROWDED, 0))
    srv.wait_log("too many connections; closing")
    refused = "ftpsd_connections_refused_total"
    after = scrape(srv)
    assert value(after, refused, reason="per_ip_limit") == value(before, refused, reason="per_ip_limit") + 2
    assert sessions(after, "explicit") == sessions(before, "explicit") + 3  # the refused one is no session
    for ftp in allowed:
        ftp.close()


def test_handshake_without_a_shared_cipher_is_counted(srv: ServerProcess) -> None:
    before = scrape(srv)
    context = client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("AES128-GCM-SHA256")  # RSA key exchange: not in the server's ECDHE-only list
    ftp = ftplib.FTP_TLS(context=context, timeout=20)
    ftp.connect("127.0.0.1", srv.setup.explicit_port)
    with pytest.raises(ssl.SSLError):
        ftp.auth()
    ftp.close()
    failures = "ftpsd_tls_handshake_failures_total"
    after = eventually(
        srv,
        lambda s: (
            value(s, failures, reason="no_shared_cipher") > value(before, failures, reason="no_shared_cipher")
        ),
    )
    assert (
        value(after, failures, reason="no_shared_cipher")
        == value(before, failures, reason="no_shared_cipher") + 1
    )


def reload_results(samples: Samples) -> tuple[float, float]:
    return (
        value(samples, "ftpsd_last_reload_result", result="ok"),
        value(samples, "ftpsd_last_reload_result", result="failed"),
    )


def test_reload_time_and_result(srv: ServerProcess) -> None:
    start = scrape(srv)
    assert reload_results(start) == (1, 0)  # the start-up load
    config = srv.setup.config_path.read_text()
    try:
        srv.setup.config_path.write_text(config + "[bogus]\n")
        srv.signal(signal.SIGHUP)
        srv.wait_notify("READY=1")
        failed = scrape(srv)
        assert reload_results(failed) == (0, 1)
        stamp = value(failed, "ftpsd_last_reload_timestamp_seconds")
        assert stamp > value(start, "ftpsd_last_reload_timestamp_seconds")
    finally:
        srv.setup.config_path.write_text(config)
    srv.signal(signal.SIGHUP)
    srv.wait_notify("READY=1")
    again = scrape(srv)
    assert reload_results(again) == (1, 0)
    assert value(again, "ftpsd_last_reload_timestamp_seconds") > stamp


def test_a_taken_metrics_port_fails_start_up_with_a_clear_message(tmp_path: Path) -> None:
    setup = new_setup(tmp_path / "taken")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        setup.metrics_port = taken.getsockname()[1]
        setup.write()
        run = subprocess.run(
            [sys.executable, "-m", "ftpsd.cli", "serve", "--config", str(setup.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 1
    assert f"ftpsd: metrics: cannot listen on 127.0.0.1 port {setup.metrics_port}" in run.stderr
    assert "Address already in use" in run.stderr
    assert "[metrics]" in run.stderr
