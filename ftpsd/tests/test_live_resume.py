"""Live tests of resumable uploads: cut uploads resumed by curl (-C - -T: SIZE, APPE), lftp (put -c: SIZE,
REST + STOR) and ftplib, what a partial upload shows to whom, the lock, the sweep and partial_upload_ttl = 0.

Uploads are cut the way a broken network or a killed client cuts them: the data connection ends without a
TLS close_notify (a TCP FIN from ftplib's shutdown, or the kernel closing a killed client's sockets).
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess
from conftest import connect as connect_ascii
from ftpsd.partials import partial_path

pytestmark = pytest.mark.live

SOURCE = os.urandom(3 << 20)
SOURCE_SHA256 = hashlib.sha256(SOURCE).hexdigest()
CUT_AT = 1 << 20


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.bin"


def connect(srv: ServerProcess, user: str, source: str | None = None) -> ftplib.FTP_TLS:
    """A logged-in session in binary mode, as resuming clients use (SIZE is refused in ASCII mode)."""
    ftp = connect_ascii(srv, user, source=source)
    ftp.voidcmd("TYPE I")
    return ftp


def reply(ftp: ftplib.FTP_TLS, command: str) -> str:
    try:
        return ftp.sendcmd(command)
    except ftplib.Error as err:
        return str(err)


def partial_of(srv: ServerProcess, name: str, user: str) -> Path:
    return Path(partial_path(str(srv.setup.shared / name), user))


def hidden(srv: ServerProcess) -> list[str]:
    return [n for n in os.listdir(srv.setup.shared) if n.startswith(".ftpsd-upload-")]


def size_reply(ftp: ftplib.FTP_TLS, name: str) -> str:
    """SIZE in binary mode (ftplib's listings switch to ASCII, where SIZE is refused)."""
    ftp.voidcmd("TYPE I")
    return reply(ftp, f"SIZE {name}")


def cut_upload(ftp: ftplib.FTP_TLS, command: str, data: bytes) -> str:
    """Send data for command, then end the data connection without close_notify; return the reply."""
    conn = ftp.transfercmd(command)
    conn.sendall(data)
    conn.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: a TCP FIN, no TLS close_notify
    conn.close()
    try:
        return ftp.voidresp()
    except ftplib.Error as err:
        return str(err)


def wait_size(path: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= at_least):
        assert time.monotonic() < deadline, f"{path} never reached {at_least} bytes"
        time.sleep(0.05)


def wait_unlocked(srv: ServerProcess, name: str, user: str) -> None:
    """The server handles a killed client's close on its own schedule: wait until it has kept the partial."""
    srv.wait_log(f"'/{name}' direction=upload")


def names_listed(ftp: ftplib.FTP_TLS) -> set[str]:
    names = set(ftp.nlst())
    lines: list[str] = []
    ftp.retrlines("LIST", lines.append)
    names |= {line.split()[-1] for line in lines}
    lines = []
    ftp.retrlines("MLSD", lines.append)
    names |= {line.split("; ")[-1] for line in lines}
    return names


def test_cut_upload_is_invisible_then_resumed_with_rest_stor_exactly(server: ServerProcess) -> None:
    admin = connect(server, "fbt_admin")
    name = unique("ftplib-rest")
    assert cut_upload(admin, f"STOR {name}", SOURCE[:CUT_AT]).startswith(
        "426 Data connection closed without TLS close_notify; upload kept for resuming"
    )
    partial = partial_of(server, name, "fbt_admin")
    # What reached the disk is a prefix of what was sent (the cut may lose the last bytes in flight).
    kept = partial.stat().st_size
    assert 0 < kept <= CUT_AT and partial.read_bytes() == SOURCE[:kept]
    # Nothing under the final name: not on disk, not in any listing, not to MLST/STAT/MDTM.
    assert not (server.setup.shared / name).exists()
    other = connect(server, "fbt_admin", source="127.0.0.2")  # another client of the same user too
    for ftp in (admin, other):
        listed = names_listed(ftp)
        assert name not in listed and not [n for n in listed if n.startswith(".ftpsd-upload-")]
    stat_lines = reply(admin, "STAT /")
    assert name not in stat_lines and ".ftpsd-upload-" not in stat_lines
    for command in (f"MLST {name}", f"MDTM {name}", f"STAT {name}", f"RETR {name}"):
        if command.startswith("RETR"):
            admin.sendcmd("PASV")
        assert reply(admin, command)[:4] == "550 ", command
    # Its size goes to its own user's SIZE only; others get what a missing file gets.
    assert size_reply(admin, name) == f"213 {kept}"
    missing = unique("never-uploaded")
    reader = connect(server, "reader")
    assert size_reply(reader, name) == size_reply(reader, missing).replace(missing, name)
    dropbox = connect(server, "dropbox")
    assert size_reply(dropbox, name) == size_reply(dropbox, missing) == "550 Not enough privileges."
    # REST beyond the partial's end is refused and changes nothing.
    admin.sendcmd(f"REST {kept + 1}")
    admin.sendcmd("PASV")
    refused = reply(admin, f"STOR {name}")
    assert refused.startswith("554 Requested action not taken: REST position"), refused
    assert partial.stat().st_size == kept
    # Resume a little before the end (REST may go back), as a careful client does.
    offset = kept - 1000
    assert admin.storbinary(f"STOR {name}", io.BytesIO(SOURCE[offset:]), rest=offset).startswith("226")
    assert hashlib.sha256((server.setup.shared / name).read_bytes()).hexdigest() == SOURCE_SHA256
    assert not partial.exists()
    for ftp in (admin, other, reader, dropbox):
        ftp.quit()
    (server.setup.shared / name).unlink()


def curl(*args: str) -> subprocess.Popen[str]:
    base = ["curl", "--silent", "--show-error", "--insecure", "--ssl-reqd", "--verbose"]
    return subprocess.Popen([*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def url(srv: ServerProcess, user: str, name: str) -> str:
    return f"ftp://{user}:{PASSWORDS[user]}@127.0.0.1:{srv.setup.explicit_port}/{name}"


def kill_when_written(proc: subprocess.Popen[str], partial: Path) -> None:
    """Kill the client (SIGKILL: no TLS shutdown at all) once part of the file reached the server."""
    try:
        wait_size(partial, 256 << 10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)


@pytest.mark.parametrize("user", ["fbt_admin", "dropbox"])
def test_curl_killed_mid_upload_then_resumed_with_dash_c(
    server: ServerProcess, tmp_path: Path, user: str
) -> None:
    """curl -C - -T: SIZE (the partial's size, also for the upload-only user), then APPE."""
    source = tmp_path / "source.bin"
    source.write_bytes(SOURCE)
    name = unique(f"curl-{user}")
    partial = partial_of(server, name, user)
    kill_when_written(curl("--limit-rate", "400k", "-T", str(source), url(server, user, name)), partial)
    wait_unlocked(server, name, user)
    kept = partial.stat().st_size
    assert 0 < kept < len(SOURCE) and not (server.setup.shared / name).exists()
    resumed = curl("-C", "-", "-T", str(source), url(server, user, name))
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"> SIZE {name}" in err and f"< 213 {kept}" in err and f"> APPE {name}" in err, err
    assert hashlib.sha256((server.setup.shared / name).read_bytes()).hexdigest() == SOURCE_SHA256
    assert not partial.exists()
    (server.setup.shared / name).unlink()


def test_curl_resume_over_a_complete_file_the_user_may_not_overwrite_is_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(SOURCE)
    name = unique("curl-not-yours")
    (server.setup.shared / name).write_bytes(b"original")
    resumed = curl("-C", "-", "-T", str(source), url(server, "dropbox", name))
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode != 0
    # SIZE tells nothing (as for any name), and the store that follows is refused like any overwrite.
    assert "< 550 Not enough privileges." in err and "< 550 File exists; overwriting is not permitted." in err
    assert (server.setup.shared / name).read_bytes() == b"original"
    assert not partial_of(server, name, "dropbox").exists()
    (server.setup.shared / name).unlink()


def lftp(srv: ServerProcess, user: str, script: str, rate: int = 0) -> subprocess.Popen[str]:
    settings = "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
    settings += f"set net:max-retries 1; set cmd:fail-exit yes; set net:limit-rate {rate}; debug 9; "
    login = f"open -u {user},{PASSWORDS[user]} ftp://127.0.0.1:{srv.setup.explicit_port}; "
    return subprocess.Popen(
        ["lftp", "-c", settings + login + script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("user", ["fbt_admin", "dropbox"])
def test_lftp_killed_mid_upload_then_resumed_with_put_c(
    server: ServerProcess, tmp_path: Path, user: str
) -> None:
    """lftp put -c: SIZE, then REST n + STOR."""
    source = tmp_path / "source.bin"
    source.write_bytes(SOURCE)
    name = unique(f"lftp-{user}")
    partial = partial_of(server, name, user)
    kill_when_written(lftp(server, user, f"put {source} -o {name}", rate=400_000), partial)
    wait_unlocked(server, name, user)
    kept = partial.stat().st_size
    assert 0 < kept < len(SOURCE) and not (server.setup.shared / name).exists()
    resumed = lftp(server, user, f"put -c {source} -o {name}")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    sent = [line for line in err.splitlines() if line.startswith(("--->", "<---"))]
    at = sent.index(f"---> SIZE {name}")
    assert sent[at + 1] == f"<--- 213 {kept}", sent
    assert f"---> REST {kept}" in sent[at:] and f"---> STOR {name}" in sent[at:], sent
    assert hashlib.sha256((server.setup.shared / name).read_bytes()).hexdigest() == SOURCE_SHA256
    assert not partial.exists()
    (server.setup.shared / name).unlink()


def test_upload_only_resumes_its_own_upload_and_learns_nothing_else(server: ServerProcess) -> None:
    admin = connect(server, "fbt_admin")
    dropbox = connect(server, "dropbox")
    complete = unique("complete")
    admin.storbinary(f"STOR {complete}", io.BytesIO(b"original content"))
    admins_cut = unique("admins-cut")
    assert cut_upload(admin, f"STOR {admins_cut}", b"admin's half").startswith("426")
    mine = unique("dropbox-cut")
    assert cut_upload(dropbox, f"STOR {mine}", b"first part, ").startswith("426")
    assert size_reply(dropbox, mine) == "213 12"
    # Someone else's partial upload and complete files stay as unknown as a missing name.
    missing = unique("missing")
    for name in (admins_cut, complete):
        assert size_reply(dropbox, name) == size_reply(dropbox, missing) == "550 Not enough privileges."
    # REST into someone else's partial: there is nothing of its own to resume, as for a missing name.
    dropbox.sendcmd("REST 5")
    dropbox.sendcmd("PASV")
    assert reply(dropbox, f"STOR {admins_cut}").startswith("554 Requested action not taken: REST position 5")
    # APPE to someone else's partial starts its own new upload; the other partial is untouched.
    assert dropbox.storbinary(f"APPE {admins_cut}", io.BytesIO(b"dropbox's own")).startswith("226")
    assert (server.setup.shared / admins_cut).read_bytes() == b"dropbox's own"
    assert partial_of(server, admins_cut, "fbt_admin").read_bytes() == b"admin's half"
    # Resuming over a complete file it may not overwrite: refused, file unchanged, nothing left.
    refusals = [
        lambda: dropbox.storbinary(f"APPE {complete}", io.BytesIO(b"evil")),
        lambda: dropbox.storbinary(f"STOR {complete}", io.BytesIO(b"evil"), rest=3),
    ]
    for refused in refusals:
        with pytest.raises(ftplib.error_perm, match=r"^550 File exists; overwriting is not permitted"):
            refused()
    assert (server.setup.shared / complete).read_bytes() == b"original content"
    assert not partial_of(server, complete, "dropbox").exists()
    # Its own upload continues with APPE; the listing then shows it like any own upload.
    assert dropbox.storbinary(f"APPE {mine}", io.BytesIO(b"second part")).startswith("226")
    assert (server.setup.shared / mine).read_bytes() == b"first part, second part"
    assert mine in dropbox.nlst() and complete not in dropbox.nlst()
    dropbox.quit()
    # The full user may continue its own upload: APPE replaces what dropbox stored meanwhile.
    assert admin.storbinary(f"APPE {admins_cut}", io.BytesIO(b", finished")).startswith("226")
    assert (server.setup.shared / admins_cut).read_bytes() == b"admin's half, finished"
    for name in (complete, admins_cut, mine):
        admin.delete(name)
        assert not partial_of(server, name, "fbt_admin").exists()
        assert not partial_of(server, name, "dropbox").exists()
    admin.quit()


def test_full_user_appends_to_a_complete_file_atomically(server: ServerProcess) -> None:
    admin = connect(server, "fbt_admin")
    name = unique("append")
    admin.storbinary(f"STOR {name}", io.BytesIO(b"0123456789"))
    # Cut: the complete file stays as it was, the copy with the appended part waits as a partial.
    assert cut_upload(admin, f"APPE {name}", b"abc").startswith("426")
    assert (server.setup.shared / name).read_bytes() == b"0123456789"
    assert size_reply(admin, name) == "213 13"  # what APPE continues: its partial
    assert admin.storbinary(f"APPE {name}", io.BytesIO(b"def")).startswith("226")
    assert (server.setup.shared / name).read_bytes() == b"0123456789abcdef"
    # REST n + STOR without a partial starts from the complete file's first n bytes.
    assert admin.storbinary(f"STOR {name}", io.BytesIO(b"XY"), rest=4).startswith("226")
    assert (server.setup.shared / name).read_bytes() == b"0123XY"
    admin.sendcmd("REST 7")
    admin.sendcmd("PASV")
    assert reply(admin, f"STOR {name}").startswith("554 Requested action not taken: REST position 7")
    assert (server.setup.shared / name).read_bytes() == b"0123XY"
    # REST 0 + STOR is an ordinary STOR, also over a partial upload of the name.
    assert cut_upload(admin, f"STOR {name}", b"cut short").startswith("426")
    assert admin.storbinary(f"STOR {name}", io.BytesIO(b"fresh"), rest=0).startswith("226")
    assert (server.setup.shared / name).read_bytes() == b"fresh"
    admin.delete(name)
    admin.quit()
    assert not partial_of(server, name, "fbt_admin").exists()


def test_a_second_writer_of_one_partial_gets_450(server: ServerProcess) -> None:
    first = connect(server, "fbt_admin")
    second = connect(server, "fbt_admin")
    name = unique("busy")
    assert cut_upload(first, f"STOR {name}", b"part one, ").startswith("426")
    conn = first.transfercmd(f"APPE {name}")
    conn.sendall(b"part two")
    second.sendcmd("PASV")
    assert reply(second, f"APPE {name}") == "450 Upload of this file is already in progress; try again later."
    second.sendcmd("REST 3")
    second.sendcmd("PASV")
    assert reply(second, f"STOR {name}").startswith("450 ")
    conn.unwrap()
    conn.close()
    assert first.voidresp().startswith("226")
    assert (server.setup.shared / name).read_bytes() == b"part one, part two"
    for ftp in (first, second):
        ftp.quit()
    (server.setup.shared / name).unlink()


def test_abort_keeps_the_partial_for_resuming(server: ServerProcess) -> None:
    admin = connect(server, "fbt_admin")
    name = unique("abor")
    conn = admin.transfercmd(f"STOR {name}")
    conn.sendall(b"x" * 100_000)
    partial = partial_of(server, name, "fbt_admin")
    wait_size(partial, 100_000)
    admin.putcmd("ABOR")
    assert admin.getmultiline().startswith("426")  # the transfer's end, then ABOR's own reply
    assert admin.getmultiline().startswith("226")
    conn.close()
    assert size_reply(admin, name) == "213 100000"
    assert not (server.setup.shared / name).exists()
    admin.quit()
    partial.unlink()


def restart(srv: ServerProcess) -> ServerProcess:
    assert srv.stop() == 0
    srv.notify_path.unlink()
    return ServerProcess(srv.setup)


def test_partials_survive_a_restart_and_old_ones_are_swept(server_factory) -> None:
    srv = server_factory(partial_upload_ttl=3600)
    admin = connect(srv, "fbt_admin")
    young, old = unique("young"), unique("old")
    for name in (young, old):
        assert cut_upload(admin, f"STOR {name}", b"kept").startswith("426")
    admin.quit()
    two_hours_ago = time.time() - 7200
    os.utime(partial_of(srv, old, "fbt_admin"), (two_hours_ago, two_hours_ago))
    leftover = srv.setup.shared / ".ftpsd-upload-0123456789abcdef.part"  # a crashed process's temp file
    leftover.write_bytes(b"lost")
    os.utime(leftover, (two_hours_ago, two_hours_ago))
    srv = restart(srv)
    try:  # the factory stops the server it started, not this one
        srv.wait_log(f"removed partial upload {partial_of(srv, old, 'fbt_admin')}")
        srv.wait_log(f"removed leftover upload file {leftover}")
        assert not partial_of(srv, old, "fbt_admin").exists() and not leftover.exists()
        admin = connect(srv, "fbt_admin")
        assert size_reply(admin, old)[:4] == "550 "
        assert size_reply(admin, young) == "213 4"
        assert admin.storbinary(f"APPE {young}", io.BytesIO(b" and done")).startswith("226")
        assert (srv.setup.shared / young).read_bytes() == b"kept and done"
        admin.quit()
    finally:
        srv.stop()


def test_ttl_0_keeps_nothing_and_refuses_resuming(server_factory) -> None:
    srv = server_factory(partial_upload_ttl=0)
    admin = connect(srv, "fbt_admin")
    name = unique("ttl0")
    assert cut_upload(admin, f"STOR {name}", b"partial").startswith(
        "426 Data connection closed without TLS close_notify; upload discarded."
    )
    assert hidden(srv) == [] and not (srv.setup.shared / name).exists()
    assert size_reply(admin, name)[:4] == "550 "
    admin.storbinary(f"STOR {name}", io.BytesIO(b"0123456789"))
    with pytest.raises(ftplib.error_perm, match=r"^554 Resuming uploads is not supported"):
        admin.storbinary(f"STOR {name}", io.BytesIO(b"rest"), rest=5)
    with pytest.raises(ftplib.error_perm, match=r"^550 APPE is not supported"):
        admin.storbinary(f"APPE {name}", io.BytesIO(b"more"))
    assert (srv.setup.shared / name).read_bytes() == b"0123456789"
    out = io.BytesIO()
    admin.retrbinary(f"RETR {name}", out.write, rest=5)  # download resume is unaffected
    assert out.getvalue() == b"56789"
    admin.quit()
    assert hidden(srv) == []
