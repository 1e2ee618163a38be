"""Live TLS policy tests against the real server: TLS mandatory everywhere, session binding, versions."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context, connect
from ftpsd.client import ImplicitFTPS
from ftpsd.tls import negotiated_group
from OpenSSL import SSL
from OpenSSL._util import lib as _lib

pytestmark = pytest.mark.live


def plain_control(srv: ServerProcess) -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("127.0.0.1", srv.setup.explicit_port)
    return ftp


def test_banner_has_no_version(server: ServerProcess) -> None:
    ftp = plain_control(server)
    assert ftp.getwelcome() == "220 Secure file server ready."
    assert "pyftpdlib" not in ftp.sendcmd("SYST") + ftp.sendcmd("FEAT")
    ftp.close()


def test_plaintext_user_refused(server: ServerProcess) -> None:
    ftp = plain_control(server)
    with pytest.raises(ftplib.error_perm, match=r"^55\d .*TLS"):
        ftp.sendcmd("USER fbt_admin")
    with pytest.raises(ftplib.error_perm, match=r"^5\d\d"):
        ftp.sendcmd("PASS " + PASSWORDS["fbt_admin"])
    ftp.close()


def test_wrong_password_unknown_user_and_anonymous_refused(server: ServerProcess) -> None:
    for user, password in [("fbt_admin", "wrong"), ("nosuchuser", "x"), ("anonymous", "guest@")]:
        ftp = connect(server)
        with pytest.raises(ftplib.error_perm, match=r"^530 Authentication failed"):
            ftp.login(user, password)
        ftp.close()


def test_transfer_commands_need_prot_p(server: ServerProcess) -> None:
    ftp = connect(server)
    ftp.login("fbt_admin", PASSWORDS["fbt_admin"])
    for cmd in (
        "PASV",
        "EPSV",
        "PORT 127,0,0,1,200,10",
        "EPRT |1|127.0.0.1|51210|",
        "LIST",
        "RETR x",
        "STOR y",
    ):
        with pytest.raises(ftplib.error_perm, match=r"^550 SSL/TLS required on the data channel"):
            ftp.sendcmd(cmd)
    ftp.sendcmd("PBSZ 0")
    # PROT C would make the next data connection cleartext.
    with pytest.raises(ftplib.error_perm, match=r"^534"):
        ftp.sendcmd("PROT C")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.sendcmd("PASV")
    ftp.sendcmd("PROT P")
    assert ftp.sendcmd("PASV").startswith("227")
    with pytest.raises(ftplib.error_perm, match=r"^534"):
        ftp.sendcmd("PROT C")
    ftp.close()


def test_data_connection_without_session_reuse_refused(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin", cls=ftplib.FTP_TLS)  # stock ftplib: no session= on data
    with pytest.raises((ssl.SSLError, OSError, EOFError)):
        ftp.nlst()
    assert ftp.getmultiline().startswith("522")
    ftp.close()
    assert "no TLS session of this user's control connections resumed" in server.log()


def data_connection_with_session(
    ftp: ftplib.FTP_TLS, context: ssl.SSLContext, session: ssl.SSLSession, source: str = "127.0.0.1"
) -> str:
    """NLST over a data connection that offers session; return the final reply (226, 522, ...)."""
    ftp.sendcmd("TYPE A")
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    raw = socket.create_connection((host, port), timeout=20, source_address=(source, 0))
    ftp.putcmd("NLST")
    data = context.wrap_socket(raw, session=session)
    with contextlib.suppress(OSError):
        while data.recv(65536):
            pass
    data.close()
    reply = ftp.getmultiline()
    if reply.startswith(("125", "150")):  # 125 when the data connection was accepted first
        reply = ftp.getmultiline()
    return reply


def test_data_connection_resuming_another_users_session_refused(server: ServerProcess) -> None:
    """The theft the reuse rule stops: another login from the same address takes a passive port."""
    marker = server.setup.shared / "session-binding-marker.txt"
    marker.write_bytes(b"x")
    shared_ctx = client_context()  # Python only resumes sessions within one client SSLContext
    victim = connect(server, "fbt_admin", context=shared_ctx)
    listing = victim.nlst()  # also makes sure the victim's session (TLS 1.3 ticket) has arrived
    assert marker.name in listing
    attacker = connect(server, "reader", context=shared_ctx)
    reply = data_connection_with_session(attacker, shared_ctx, victim.sock.session)
    assert reply.startswith("522"), reply
    # The victim's own data connections still work and list the same names (the marker among them).
    assert sorted(victim.nlst()) == sorted(listing)
    attacker.quit()
    victim.close()


def test_data_connection_may_resume_a_session_of_the_same_login(server: ServerProcess) -> None:
    """rclone and Go's FTP library keep one session per host (issue 13, item 3): same user and address."""
    shared_ctx = client_context()
    first = connect(server, "fbt_admin", context=shared_ctx)
    first.nlst()
    second = connect(server, "fbt_admin", context=shared_ctx)
    assert data_connection_with_session(second, shared_ctx, first.sock.session).startswith("226")
    # The same user from another address: that address has its own TLS context, nothing to resume.
    elsewhere = connect(server, "fbt_admin", context=shared_ctx, source="127.0.0.2")
    assert data_connection_with_session(elsewhere, shared_ctx, first.sock.session, "127.0.0.2")[:3] == "522"
    elsewhere.quit()
    # Once the connection the session was issued on is gone, its sessions can no longer be resumed.
    session = first.sock.session
    closed = server.log().count("FTP session closed")
    first.quit()
    deadline = time.monotonic() + 10
    while server.log().count("FTP session closed") == closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert data_connection_with_session(second, shared_ctx, session).startswith("522")
    second.quit()


def test_own_session_is_resumed(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    conn = ftp.transfercmd("NLST")
    assert conn.session_reused
    while conn.recv(4096):
        pass
    conn.close()
    ftp.voidresp()
    ftp.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls11_client_refused(server: ServerProcess) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client really offer TLS 1.1
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ftp = ftplib.FTP_TLS(context=ctx, timeout=20)
    ftp.connect("127.0.0.1", server.setup.explicit_port)
    with pytest.raises(ssl.SSLError) as info:
        ftp.auth()
    # The refusal must come from the server (an alert), not from the client's own policy.
    assert "ALERT" in str(info.value).upper() or "VERSION" in str(info.value).upper()
    ftp.close()


def test_implicit_ftps_with_ftplib(server: ServerProcess) -> None:
    ftp = ImplicitFTPS(context=client_context(), timeout=20)
    assert ftp.connect("127.0.0.1", server.setup.implicit_port).startswith("220 Secure file server ready.")
    ftp.login("fbt_admin", PASSWORDS["fbt_admin"])
    ftp.prot_p()
    ftp.storbinary("STOR implicit.txt", io.BytesIO(b"implicit"))
    out = io.BytesIO()
    ftp.retrbinary("RETR implicit.txt", out.write)
    assert out.getvalue() == b"implicit"
    ftp.quit()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False)


def test_implicit_ftps_with_curl(server: ServerProcess, tmp_path: Path) -> None:
    (server.setup.shared / "curl-implicit.txt").write_bytes(b"via curl implicit")
    url = f"ftps://127.0.0.1:{server.setup.implicit_port}/curl-implicit.txt"
    out = tmp_path / "out"
    result = curl(
        "--cacert", str(server.setup.cert), "-u", f"reader:{PASSWORDS['reader']}", "-o", str(out), url
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == b"via curl implicit"


def test_explicit_ftps_with_curl_upload_and_download(server: ServerProcess, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(hashlib.sha256(b"seed").digest() * 40000)
    base = f"ftp://127.0.0.1:{server.setup.explicit_port}"
    auth = ["-u", f"fbt_admin:{PASSWORDS['fbt_admin']}", "--ssl-reqd", "--cacert", str(server.setup.cert)]
    up = curl(*auth, "-T", str(payload), f"{base}/curl.bin")
    assert up.returncode == 0, up.stderr
    out = tmp_path / "back.bin"
    down = curl(*auth, "-o", str(out), f"{base}/curl.bin")
    assert down.returncode == 0, down.stderr
    assert out.read_bytes() == payload.read_bytes()


def test_curl_without_tls_gets_nothing(server: ServerProcess, tmp_path: Path) -> None:
    (server.setup.shared / "secret.txt").write_bytes(b"secret")
    url = f"ftp://127.0.0.1:{server.setup.explicit_port}/secret.txt"
    result = curl("-u", f"reader:{PASSWORDS['reader']}", "-o", str(tmp_path / "o"), url)
    assert result.returncode != 0
    assert not (tmp_path / "o").exists()


def test_lftp_roundtrip(server: ServerProcess, tmp_path: Path) -> None:
    payload = tmp_path / "lftp-up.bin"
    payload.write_bytes(bytes(range(256)) * 8000)
    script = (
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; "
        f"open -u fbt_admin,{PASSWORDS['fbt_admin']} -p {server.setup.explicit_port} 127.0.0.1; "
        f"put {payload} -o lftp.bin; get lftp.bin -o {tmp_path / 'lftp-down.bin'}; cls -1"
    )
    result = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lftp-down.bin").read_bytes() == payload.read_bytes()
    assert "lftp.bin" in result.stdout.split()


def _pyopenssl_handshake(srv: ServerProcess, groups: bytes) -> SSL.Connection:
    """Implicit-port handshake by a client that offers only the given key exchange groups."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    assert _lib.SSL_CTX_set1_curves_list(ctx._context, groups) == 1
    sock = socket.create_connection(("127.0.0.1", srv.setup.implicit_port), timeout=20)
    sock.settimeout(None)  # pyOpenSSL's blocking handshake; the server answers at once
    conn = SSL.Connection(ctx, sock)
    conn.set_connect_state()
    conn.do_handshake()
    return conn


def test_client_offering_only_the_post_quantum_group_negotiates_it(server: ServerProcess) -> None:
    conn = _pyopenssl_handshake(server, b"X25519MLKEM768")
    assert negotiated_group(conn).lower() == "x25519mlkem768"
    assert conn.get_protocol_version_name() == "TLSv1.3"
    conn.close()


def test_classical_client_gets_x25519(server: ServerProcess) -> None:
    conn = _pyopenssl_handshake(server, b"X25519:prime256v1")
    assert negotiated_group(conn).lower() == "x25519"
    conn.close()


def test_server_log_names_the_offered_groups(server: ServerProcess) -> None:
    assert "TLS key exchange groups offered: X25519MLKEM768:X25519:prime256v1:secp384r1" in server.log()


def download_session(ftp: ftplib.FTP_TLS, name: str) -> tuple[bool, bytes]:
    """RETR name, read to the end (every record the server sent is processed); (resumed?, session id)."""
    conn = ftp.transfercmd(f"RETR {name}")
    while conn.recv(65536):
        pass
    reused, session = conn.session_reused, conn.session
    conn.close()
    ftp.voidresp()
    return reused, session.id if session is not None else b""


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_data_connections_get_no_session_ticket(server: ServerProcess, version: ssl.TLSVersion) -> None:
    """Issue 13, item 4: a ticket the client never reads turns its close into a reset (upload lost, 426)."""
    (server.setup.shared / "ticket-probe.bin").write_bytes(b"x" * 1000)
    context = client_context()
    context.maximum_version = version
    ftp = connect(server, "fbt_admin", context=context)
    ftp.voidcmd("TYPE I")
    control_session = ftp.sock.session
    assert control_session is not None and control_session.has_ticket  # the control connection has one
    for _ in range(2):
        # A ticket on the data connection would have replaced the client's session by a new one.
        assert download_session(ftp, "ticket-probe.bin") == (True, control_session.id)
    ftp.quit()
    (server.setup.shared / "ticket-probe.bin").unlink()


@pytest.mark.parametrize("right_password", [True, False], ids=["login-succeeds", "login-fails"])
def test_data_connection_waits_for_the_login_that_issued_its_session(
    server: ServerProcess, right_password: bool
) -> None:
    """A client opening connections at once resumes the session of one still logging in: wait for it."""
    shared_ctx = client_context()
    working = connect(server, "slowpoke", context=shared_ctx)  # about 1 s per login (conftest)
    logging_in = connect(server, context=shared_ctx)
    logging_in.auth()
    logging_in.sendcmd("USER slowpoke")  # reading the 331 also reads the session tickets
    pending_session = logging_in.sock.session
    logging_in.putcmd("PASS " + (PASSWORDS["slowpoke"] if right_password else "wrong"))
    reply = data_connection_with_session(working, shared_ctx, pending_session)
    assert reply[:3] == ("226" if right_password else "522"), reply
    assert logging_in.getmultiline()[:3] == ("230" if right_password else "530")
    logging_in.close()
    working.quit()
