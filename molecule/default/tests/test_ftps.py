"""Live FTPS from the controller to the host's lab address, as real clients do it.

Failed logins count towards ftpsd's ban (5 within 10 minutes per address): this module makes two per host,
so re-running verify more than twice within ten minutes gets the controller banned for a while.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import ssl
import uuid

import pytest
from conftest import CONNECT_TIMEOUT, client_context, login
from ftpsd.client import ImplicitFTPS


def payload(size: int = 300 * 1024) -> bytes:
    return os.urandom(size)


def download(ftp: ftplib.FTP_TLS, name: str) -> bytes:
    buffer = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", buffer.write)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def name() -> str:
    return f"molecule-{uuid.uuid4().hex[:12]}.bin"


@pytest.fixture
def admin(deployment):
    ftp = login(deployment, deployment.user("full"))
    yield ftp
    ftp.close()


def test_explicit_ftps_with_prot_p_and_session_reuse(admin):
    assert admin.sock.version() in {"TLSv1.2", "TLSv1.3"}
    conn = admin.transfercmd("NLST")
    assert conn.version() in {"TLSv1.2", "TLSv1.3"}  # PROT P: the data channel is TLS too
    assert conn.session_reused  # and it resumed the control connection's session
    while conn.recv(4096):
        pass
    conn.close()
    admin.voidresp()


def test_full_user_uploads_lists_downloads_and_deletes(admin, name):
    data = payload()
    admin.storbinary(f"STOR {name}", io.BytesIO(data))
    assert name in admin.nlst()
    assert sha256(download(admin, name)) == sha256(data)
    admin.delete(name)
    assert name not in admin.nlst()


def test_upload_only_user_can_upload_and_nothing_else(deployment, admin, name):
    data = payload()
    others = f"other-{name}"
    admin.storbinary(f"STOR {others}", io.BytesIO(b"someone else's file"))
    uploader = login(deployment, deployment.user("upload_only"))
    try:
        uploader.storbinary(f"STOR {name}", io.BytesIO(data))
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            download(uploader, name)
        # Listings show only this login's own recent uploads (so clients can check them), nothing else.
        listing = uploader.nlst()
        assert name in listing and others not in listing, listing
        lines: list[str] = []
        uploader.retrlines("LIST", lines.append)
        assert any(line.endswith(f" {name}") for line in lines), lines
        assert not any(others in line for line in lines), lines
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            uploader.size(others)
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            uploader.delete(name)
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            uploader.storbinary(f"STOR {name}", io.BytesIO(b"overwritten"))
    finally:
        uploader.close()
    # The full user shares the folder and finds the upload intact.
    assert sha256(download(admin, name)) == sha256(data)
    admin.delete(name)
    admin.delete(others)


def test_read_only_user_lists_and_downloads_only(deployment, admin, name):
    data = payload()
    admin.storbinary(f"STOR {name}", io.BytesIO(data))
    reader = login(deployment, deployment.user("read_only"))
    try:
        assert name in reader.nlst()
        assert sha256(download(reader, name)) == sha256(data)
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            reader.storbinary(f"STOR other-{name}", io.BytesIO(data))
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            reader.delete(name)
    finally:
        reader.close()
        admin.delete(name)


def test_folder_read_only_at_os_level_refuses_even_the_full_user(admin, name):
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        admin.storbinary(f"STOR reports/{name}", io.BytesIO(b"x"))
    assert admin.nlst("incoming") == []  # a writable extra folder exists and is empty


def test_own_home_is_private(deployment, name):
    partner = login(deployment, deployment.user("full", home_suffix="/acme"))
    try:
        partner.storbinary(f"STOR {name}", io.BytesIO(b"partner data"))
        partner.cwd("..")  # the home is the root of what the user can reach
        assert partner.pwd() == "/"
        assert partner.nlst() == [name]  # nothing of the shared folder
        partner.delete(name)
    finally:
        partner.close()


def test_plaintext_login_refused(deployment):
    ftp = ftplib.FTP(timeout=CONNECT_TIMEOUT * 5)
    ftp.connect(deployment.address, deployment.explicit_port)
    with pytest.raises(ftplib.error_perm, match=r"^5\d\d"):
        ftp.login(deployment.user("full").name, deployment.user("full").password)
    ftp.close()


def test_wrong_password_refused(deployment):
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        login(deployment, deployment.user("full"), password="not-" + deployment.user("full").password)


def test_removed_user_refused(deployment):
    removed = next(u for u in deployment.users.values() if not u.present)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        login(deployment, removed, password="any password")


def test_implicit_ftps_when_enabled(host, deployment):
    if not deployment.implicit_port:
        assert not host.socket("tcp://0.0.0.0:990").is_listening
        return
    ftp = ImplicitFTPS(context=client_context(), timeout=CONNECT_TIMEOUT * 5)
    ftp.connect(deployment.address, deployment.implicit_port)
    assert isinstance(ftp.sock, ssl.SSLSocket)
    ftp.login(deployment.user("full").name, deployment.user("full").password)
    assert "incoming" in ftp.nlst()
    ftp.close()


def test_passive_reply_announces_the_right_address(deployment, admin):
    admin.sendcmd("TYPE I")
    host, port = ftplib.parse227(admin.sendcmd("PASV"))
    assert host == (deployment.masquerade or deployment.address)
    assert deployment.passive[0] <= port <= deployment.passive[1]


def test_reload_keeps_sessions_in_progress(host, admin):
    """What every config, user or certificate change does: the session survives, the process stays."""
    pid = host.check_output("systemctl show -p MainPID --value ftpsd")
    admin.nlst()
    host.run_expect([0], "systemctl reload ftpsd")
    assert "incoming" in admin.nlst()
    assert host.check_output("systemctl show -p MainPID --value ftpsd") == pid
