"""Live tests of file semantics: permission profiles, atomic uploads, path confinement."""

from __future__ import annotations

import contextlib
import ftplib
import io
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import ServerProcess, connect
from ftpsd.partials import partial_path

pytestmark = pytest.mark.live


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.bin"


def stor(ftp: ftplib.FTP_TLS, name: str, data: bytes) -> str:
    return ftp.storbinary(f"STOR {name}", io.BytesIO(data))


def retr(ftp: ftplib.FTP_TLS, name: str) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    return out.getvalue()


def leftovers(srv: ServerProcess) -> list[str]:
    return [n for n in os.listdir(srv.setup.shared) if n.startswith(".ftpsd-upload-")]


@pytest.fixture
def no_new_leftovers(server: ServerProcess) -> Iterator[set[str]]:
    """Fails the test if it leaves a hidden upload file behind (partials other tests keep don't count)."""
    before = set(leftovers(server))
    yield before
    assert set(wait_for_no_leftovers(server, before)) <= before


def test_full_user_roundtrip_and_overwrite(server: ServerProcess, no_new_leftovers: set[str]) -> None:
    ftp = connect(server, "fbt_admin")
    name = unique("full")
    assert stor(ftp, name, b"one").startswith("226")
    assert stor(ftp, name, b"two, longer").startswith("226")
    assert retr(ftp, name) == b"two, longer"
    ftp.rename(name, name + ".renamed")
    ftp.delete(name + ".renamed")
    ftp.mkd("sub-" + name)
    ftp.rmd("sub-" + name)
    ftp.quit()


def test_transfers_are_logged_as_json(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    name = unique("logged")
    stor(ftp, name, b"x" * 1234)
    retr(ftp, name)
    ftp.quit()
    records = [json.loads(line) for line in server.setup.transfer_log.read_text().splitlines()]
    mine = [r for r in records if r["path"] == f"/{name}"]
    assert [(r["direction"], r["bytes"], r["result"], r["user"]) for r in mine] == [
        ("upload", 1234, "ok", "fbt_admin"),
        ("download", 1234, "ok", "fbt_admin"),
    ]
    assert mine[0]["client"].startswith("127.0.0.1:")
    server.wait_log(f"transfer STOR '/{name}' direction=upload bytes=1234")
    assert "admin-secret" not in server.log()


def test_upload_only_can_store_new_files_only(server: ServerProcess, no_new_leftovers: set[str]) -> None:
    admin = connect(server, "fbt_admin")
    existing = unique("existing")
    stor(admin, existing, b"original")
    admin.mkd("dir-" + existing)

    ftp = connect(server, "dropbox")
    new = unique("dropped")
    assert stor(ftp, new, b"dropped").startswith("226")
    assert (server.setup.shared / new).read_bytes() == b"dropped"
    ftp.cwd("dir-" + existing)
    ftp.cwd("/")
    resp = ftp.sendcmd("STOU")  # no data connection yet: 150 then we abort
    assert resp.startswith("150 FILE: ")
    assert set(leftovers(server)) - no_new_leftovers
    ftp.abort()
    assert set(leftovers(server)) <= no_new_leftovers
    before = set(os.listdir(server.setup.shared))
    assert ftp.storbinary("STOU", io.BytesIO(b"unique")).startswith("226")
    (created,) = set(os.listdir(server.setup.shared)) - before
    assert created.startswith("file.")
    assert (server.setup.shared / created).read_bytes() == b"unique"

    refused = {
        "overwrite": lambda: stor(ftp, existing, b"evil"),
        "RETR": lambda: retr(ftp, existing),
        "MLST": lambda: ftp.sendcmd(f"MLST {existing}"),
        "STAT": lambda: ftp.sendcmd(f"STAT {existing}"),
        "SIZE": lambda: ftp.size(existing),
        "MDTM": lambda: ftp.sendcmd(f"MDTM {existing}"),
        "MFMT": lambda: ftp.sendcmd(f"MFMT 20200101000000 {existing}"),
        "DELE": lambda: ftp.delete(existing),
        "RNFR": lambda: ftp.sendcmd(f"RNFR {existing}"),
        "APPE": lambda: ftp.storbinary(f"APPE {existing}", io.BytesIO(b"more")),
        "MKD": lambda: ftp.mkd("newdir-" + existing),
        "RMD": lambda: ftp.rmd("dir-" + existing),
    }
    for what, action in refused.items():
        with pytest.raises(ftplib.error_perm) as info:
            action()
        assert str(info.value).startswith("550 "), (what, info.value)
    # Listings show only what this login uploaded, whatever the path names (listing.py).
    for cmd in ("LIST", "NLST", "MLSD"):
        lines: list[str] = []
        assert ftp.retrlines(f"{cmd} /", lines.append)[:3] == "226"
        names = {
            line.split()[-1] if cmd == "LIST" else line.split("; ")[-1] if cmd == "MLSD" else line
            for line in lines
        }
        assert {new, created} <= names and existing not in names and f"dir-{existing}" not in names, cmd
    for path in ("dir-" + existing, "no-such-dir", "../../etc", existing):
        for cmd in ("LIST", "NLST", "MLSD"):
            lines = []
            assert (ftp.retrlines(f"{cmd} {path}", lines.append)[:3], lines) == ("226", []), (cmd, path)
    ftp.quit()
    assert (server.setup.shared / existing).read_bytes() == b"original"
    assert (server.setup.shared / f"dir-{existing}").is_dir()
    admin.quit()


def test_read_only_cannot_write(server: ServerProcess) -> None:
    admin = connect(server, "fbt_admin")
    name = unique("ro")
    stor(admin, name, b"readable")
    admin.quit()
    ftp = connect(server, "reader")
    assert retr(ftp, name) == b"readable"
    assert name in ftp.nlst()
    for action in (
        lambda: stor(ftp, unique("ro-new"), b"x"),
        lambda: stor(ftp, name, b"x"),
        lambda: ftp.delete(name),
        lambda: ftp.mkd("x"),
        lambda: ftp.sendcmd(f"RNFR {name}"),
    ):
        with pytest.raises(ftplib.error_perm, match=r"^55\d"):
            action()
    ftp.quit()
    assert (server.setup.shared / name).read_bytes() == b"readable"


def test_upload_cut_without_close_notify_never_appears_under_its_name(server: ServerProcess) -> None:
    """The cut upload is kept for resuming (test_live_resume.py) in its user's hidden partial file only."""
    ftp = connect(server, "fbt_admin")
    name = unique("cut")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(b"partial data " * 10000)
    conn.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: TCP FIN without TLS close_notify
    conn.close()
    with pytest.raises(ftplib.error_temp, match=r"^426 .*close_notify; upload kept for resuming"):
        ftp.voidresp()
    assert not (server.setup.shared / name).exists()
    partial = os.path.basename(partial_path(str(server.setup.shared / name), "fbt_admin"))
    assert partial in leftovers(server)
    # The session is still usable and a proper upload of the same name works (and uses up the partial).
    assert stor(ftp, name, b"complete").startswith("226")
    assert retr(ftp, name) == b"complete"
    assert partial not in leftovers(server)
    ftp.quit()


def test_overwrite_cut_keeps_the_old_file(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    name = unique("keep")
    stor(ftp, name, b"old content")
    conn = ftp.transfercmd(f"STOR {name}")
    conn.sendall(b"new")
    conn.shutdown(socket.SHUT_RDWR)
    conn.close()
    with pytest.raises(ftplib.error_temp):
        ftp.voidresp()
    assert (server.setup.shared / name).read_bytes() == b"old content"
    assert stor(ftp, name, b"new content").startswith("226")  # a whole new STOR, not a resume
    assert (server.setup.shared / name).read_bytes() == b"new content"
    ftp.quit()


def wait_for_no_leftovers(srv: ServerProcess, expected: set[str] | None = None) -> list[str]:
    """The server handles a disconnect asynchronously: give it a moment, then report what is left."""
    for _ in range(50):
        if set(leftovers(srv)) <= (expected or set()):
            break
        time.sleep(0.05)
    return leftovers(srv)


@pytest.mark.parametrize("ending", ["QUIT", "REIN", "ABOR"])
def test_uploads_queued_without_a_data_connection_leave_nothing(server: ServerProcess, ending: str) -> None:
    """Each new upload command replaces the one still waiting for its data connection; whatever
    ends the session (or the wait) removes the temporary file of the last one."""
    ftp = connect(server, "fbt_admin")
    before = set(leftovers(server))  # partial uploads that other tests keep for resuming
    names = [unique("queued"), unique("queued")]
    for name in names:
        assert ftp.sendcmd(f"STOR {name}").startswith("150")
        assert len(set(leftovers(server)) - before) == 1  # never two temporary files for one session
    assert ftp.sendcmd("STOU").startswith("150")
    assert len(set(leftovers(server)) - before) == 1
    ftp.putcmd(ending)
    ftp.getmultiline()
    ftp.close()
    assert set(wait_for_no_leftovers(server, before)) - before == set()
    assert not [n for n in names if (server.setup.shared / n).exists()]


@pytest.fixture
def tiny_folder(server: ServerProcess) -> Iterator[str]:
    """A 1 MiB tmpfs inside the shared folder: a disk that fills up (the tests run as root, like the lab)."""
    name = f"tiny-{uuid.uuid4().hex[:8]}"
    path = server.setup.shared / name
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    try:
        yield name
    finally:
        subprocess.run(["umount", str(path)], check=True)
        path.rmdir()


def test_disk_full_is_answered_with_452_and_leaves_nothing(server: ServerProcess, tiny_folder: str) -> None:
    ftp = connect(server, "fbt_admin")
    ftp.cwd(tiny_folder)
    conn = ftp.transfercmd("STOR too-big.bin")
    with contextlib.suppress(OSError):  # the server drops the data connection once the disk is full
        conn.sendall(os.urandom(3 << 20))
        conn.unwrap()
    conn.close()
    with pytest.raises(ftplib.error_temp, match=r"^452 No space left on device"):
        ftp.voidresp()
    assert os.listdir(server.setup.shared / tiny_folder) == []
    assert stor(ftp, "fits.bin", b"x" * 1000).startswith("226")  # the session and the server carry on
    ftp.quit()


def test_upload_in_progress_is_invisible(server: ServerProcess) -> None:
    uploader = connect(server, "fbt_admin")
    name = unique("inflight")
    conn = uploader.transfercmd(f"STOR {name}")
    conn.sendall(b"first half ")
    temps = leftovers(server)  # created when STOR was accepted (the 150 reply)
    assert temps, "the upload should be in a hidden temp file"
    other = connect(server, "fbt_admin")
    listing = other.nlst()
    assert name not in listing
    assert not [n for n in listing if n.startswith(".ftpsd-upload-")]
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        retr(other, temps[0])
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        other.delete(temps[0])
    for cmd in (f"STOR {temps[0]}", "STOU .ftpsd-upload-mine", f"RNFR {temps[0]}", "MKD .ftpsd-upload-dir"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            other.sendcmd(cmd)
    conn.sendall(b"second half")
    conn.unwrap()
    conn.close()
    assert uploader.voidresp().startswith("226")
    assert retr(other, name) == b"first half second half"
    other.quit()
    uploader.quit()


@pytest.fixture
def outside_secret(server: ServerProcess) -> str:
    """A file outside the shared home and a symlink to its directory planted inside."""
    outside = server.setup.root / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("top secret")
    link = server.setup.shared / "escape"
    if not link.is_symlink():
        link.symlink_to(outside)
    file_link = server.setup.shared / "escape-file"
    if not file_link.is_symlink():
        file_link.symlink_to(outside / "secret.txt")
    return str(outside)


def test_paths_cannot_escape_home(server: ServerProcess, outside_secret: str) -> None:
    ftp = connect(server, "fbt_admin")
    depth = "../" * 12
    for path in (
        f"{depth}{outside_secret.lstrip('/')}/secret.txt",
        f"{outside_secret}/secret.txt",
        "escape/secret.txt",
        "escape-file",
        "/escape/secret.txt",
        "..\\..\\..\\etc\\passwd",
    ):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            retr(ftp, path)
    for path in ("escape", "/escape", "escape/"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftp.cwd(path)
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        stor(ftp, "escape/planted.txt", b"x")
    assert not os.path.exists(os.path.join(outside_secret, "planted.txt"))
    listing = ftp.nlst()
    assert "escape" not in listing
    assert "escape-file" not in listing
    ftp.cwd("..")
    assert ftp.pwd() == "/"
    ftp.quit()


def test_odd_encodings_refused(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    for raw in (
        b"RETR \xc0\xae\xc0\xae/\xc0\xae\xc0\xae/etc/passwd",
        b"RETR \xff\xfe",
        b"RETR a\x00/../../etc/passwd",
    ):
        ftp.sock.sendall(raw + b"\r\n")
        assert ftp.getmultiline().startswith("501"), raw
    assert ftp.sendcmd("NOOP").startswith("200")  # session still in sync
    ftp.quit()


def test_port_to_foreign_or_privileged_address_refused(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    # 127.0.0.2 is a different address than the client's 127.0.0.1 (still loopback, nothing leaves).
    for cmd in ("PORT 127,0,0,2,195,80", "EPRT |1|127.0.0.2|50000|", "PORT 127,0,0,1,0,22"):
        with pytest.raises(ftplib.error_perm, match=r"^501"):
            ftp.sendcmd(cmd)
    ftp.quit()


def test_passive_connection_from_other_address_refused(server: ServerProcess) -> None:
    ftp = connect(server, "fbt_admin")
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    intruder = socket.create_connection((host, port), timeout=20, source_address=("127.0.0.2", 0))
    assert ftp.getmultiline().startswith("425 Rejected data connection from foreign address 127.0.0.2")
    intruder.close()
    ftp.quit()


def reply(ftp: ftplib.FTP_TLS, command: str) -> str:
    """The final reply to command (ftplib raises for 4xx/5xx; the reply is what matters here)."""
    try:
        return ftp.sendcmd(command)
    except ftplib.Error as err:
        return str(err)


def test_missing_or_outside_paths_get_550_from_every_command(server: ServerProcess) -> None:
    """RFC 959/3659: a missing or inaccessible path is 550 (rclone treats only 550/450 as "not found")."""
    admin = connect(server, "fbt_admin")
    name = unique("plain-file")
    stor(admin, name, b"x")
    commands = [
        "CWD {}",
        "SIZE {}",
        "MDTM {}",
        "MLST {}",
        "DELE {}",
        "RMD {}",
        "RNFR {}",
        "MFMT 20200101000000 {}",
        "SITE CHMOD 644 {}",
        "MKD {}/sub",
    ]
    for target in ("no-such-path", "/no/such/dir", "../../../etc/shadow"):
        for command in commands:
            assert reply(admin, command.format(target))[:4] == "550 ", (command, target)
        for transfer in ("RETR {}", "LIST {}", "NLST {}", "MLSD {}", "STOR {}/new.bin"):
            # Refused before any data connection is opened; a PASV is pending so PROT P rules are met.
            admin.sendcmd("PASV")
            assert reply(admin, transfer.format(target))[:4] == "550 ", (transfer, target)
    assert reply(admin, f"CWD {name}")[:4] == "550 "  # a file is not a directory
    assert reply(admin, f"MLSD {name}")[:4] == "550 "  # was 501 (pyftpdlib)
    reader = connect(server, "reader")
    for command in ("CWD no-such-dir", "SIZE no-such", "MDTM no-such", "MLST no-such", "RETR no-such"):
        assert reply(reader, command)[:4] == "550 ", command
    reader.quit()
    admin.delete(name)
    admin.quit()


def test_mfmt_on_own_uploads_only_for_upload_only_users(server: ServerProcess) -> None:
    """rclone sets the time after each upload (issue 13, item 5); only files of the same login."""
    admin = connect(server, "fbt_admin")
    others = unique("someone-elses")
    stor(admin, others, b"not yours")
    dropbox = connect(server, "dropbox")
    mine = unique("mine")
    stor(dropbox, mine, b"my upload")
    assert mine in dropbox.nlst() and others not in dropbox.nlst()
    assert reply(dropbox, f"MFMT 20200102030405 {mine}") == f"213 Modify=20200102030405; /{mine}."
    assert time.gmtime(os.stat(server.setup.shared / mine).st_mtime)[:6] == (2020, 1, 2, 3, 4, 5)
    assert reply(dropbox, f"MFMT 20200102030405 {others}")[:4] == "550 "
    # Another connection of the same login (user and address) may: rclone uses whichever is free.
    second = connect(server, "dropbox")
    assert reply(second, f"MFMT 20210101000000 {mine}")[:4] == "213 "
    second.quit()
    # The same user from another address is another client: refused.
    elsewhere = connect(server, "dropbox", source="127.0.0.2")
    assert reply(elsewhere, f"MFMT 20220101000000 {mine}")[:4] == "550 "
    elsewhere.quit()
    assert time.gmtime(os.stat(server.setup.shared / mine).st_mtime)[:6] == (2021, 1, 1, 0, 0, 0)
    # Replaced by someone else under the same name: no longer the file this session uploaded.
    admin.delete(mine)
    stor(admin, mine, b"replaced by admin")
    before = os.stat(server.setup.shared / mine).st_mtime
    assert reply(dropbox, f"MFMT 20200102030405 {mine}")[:4] == "550 "
    assert os.stat(server.setup.shared / mine).st_mtime == before
    assert mine not in dropbox.nlst()  # no longer its upload: gone from its listing too
    dropbox.quit()
    for name in (mine, others):
        admin.delete(name)
    admin.quit()
