"""Real FTPS clients (Debian 12 packages) against the real server on loopback: a full round trip each.

curl, lftp, wget and rclone are run as a user runs them, with only the settings a self-signed test
certificate needs (no certificate check). Refusals for the upload-only and read-only profiles are asserted
by their reply codes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context

pytestmark = pytest.mark.live

PAYLOAD = os.urandom(300_000)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def url(srv: ServerProcess, user: str, implicit: bool = False) -> str:
    scheme, port = ("ftps", srv.setup.implicit_port) if implicit else ("ftp", srv.setup.explicit_port)
    return f"{scheme}://{user}:{PASSWORDS[user]}@127.0.0.1:{port}/"


def local_file(tmp_path: Path, name: str = "payload.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(PAYLOAD)
    return path


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_curl_round_trip(server: ServerProcess, tmp_path: Path, implicit: bool) -> None:
    name = f"curl-{'imp' if implicit else 'exp'}.bin"
    base = ["curl", "--silent", "--show-error", "--insecure", "--ssl-reqd"]
    root = url(server, "fbt_admin", implicit)
    up = run([*base, "-T", str(local_file(tmp_path)), root + name])
    assert up.returncode == 0, up.stderr
    listing = run([*base, "--list-only", root])
    assert listing.returncode == 0 and name in listing.stdout.split(), listing.stderr
    got = run([*base, "-o", str(tmp_path / "back.bin"), root + name])
    assert got.returncode == 0
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == SHA256
    dele = run([*base, "--verbose", "-Q", f"DELE {name}", root])
    assert dele.returncode == 0 and "< 250" in dele.stderr, dele.stderr
    assert not (server.setup.shared / name).exists()


def lftp(
    srv: ServerProcess, user: str, script: str, implicit: bool = False
) -> subprocess.CompletedProcess[str]:
    settings = "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
    settings += "set net:max-retries 1; set cmd:fail-exit yes; "
    scheme, port = ("ftps", srv.setup.implicit_port) if implicit else ("ftp", srv.setup.explicit_port)
    login = f"open -u {user},{PASSWORDS[user]} {scheme}://127.0.0.1:{port}; "
    return run(["lftp", "-c", settings + login + script])


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_lftp_round_trip(server: ServerProcess, tmp_path: Path, implicit: bool) -> None:
    name = f"lftp-{'imp' if implicit else 'exp'}.bin"
    src = local_file(tmp_path)
    back = tmp_path / "back.bin"
    result = lftp(
        server, "fbt_admin", f"put {src} -o {name}; cls -1; get {name} -o {back}; rm {name}", implicit
    )
    assert result.returncode == 0, result.stderr
    assert name in result.stdout.split()
    assert hashlib.sha256(back.read_bytes()).hexdigest() == SHA256
    assert not (server.setup.shared / name).exists()


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_wget_lists_and_downloads(server: ServerProcess, tmp_path: Path, implicit: bool) -> None:
    """wget only downloads; the file is put in place directly (wget has no upload)."""
    name = f"wget-{'imp' if implicit else 'exp'}.bin"
    (server.setup.shared / name).write_bytes(PAYLOAD)
    port = server.setup.implicit_port if implicit else server.setup.explicit_port
    mode = ["--ftps-implicit"] if implicit else []
    base = ["wget", "--no-check-certificate", "--user=reader", f"--password={PASSWORDS['reader']}", *mode]
    got = run([*base, "-O", str(tmp_path / "back.bin"), f"ftps://127.0.0.1:{port}/{name}"])
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == SHA256
    # --no-remove-listing keeps wget's raw LIST output (.listing) in its working directory.
    listing = run(
        [*base, "--no-remove-listing", "-O", str(tmp_path / "index.html"), f"ftps://127.0.0.1:{port}/"],
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    assert name in (tmp_path / "index.html").read_text()
    (server.setup.shared / name).unlink()


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_lftp_upload_only_and_read_only_profiles(
    server: ServerProcess, tmp_path: Path, implicit: bool
) -> None:
    name = f"lftp-drop-{'imp' if implicit else 'exp'}.bin"
    (server.setup.shared / "lftp-not-yours.bin").write_bytes(b"secret")
    src = local_file(tmp_path)
    dropped = lftp(server, "dropbox", f"put {src} -o {name}; cls -1", implicit)
    assert dropped.returncode == 0, dropped.stderr
    assert (server.setup.shared / name).read_bytes() == PAYLOAD
    # Its listing shows what it uploaded and nothing else.
    assert name in dropped.stdout.split() and "lftp-not-yours.bin" not in dropped.stdout
    for script in (f"get {name} -o {tmp_path / 'back.bin'}", f"rm {name}", f"put {src} -o {name}"):
        refused = lftp(server, "dropbox", script, implicit)
        assert refused.returncode != 0 and " 550 " in refused.stderr, (script, refused.stderr)
    assert (server.setup.shared / name).read_bytes() == PAYLOAD
    reader = lftp(server, "reader", f"get {name} -o {tmp_path / 'read.bin'}", implicit)
    assert reader.returncode == 0, reader.stderr
    assert (tmp_path / "read.bin").read_bytes() == PAYLOAD
    for script in (f"put {src} -o reader-{name}", f"rm {name}", f"mv {name} moved-{name}"):
        refused = lftp(server, "reader", script, implicit)
        assert refused.returncode != 0 and " 550 " in refused.stderr, (script, refused.stderr)
    assert not (server.setup.shared / f"reader-{name}").exists()
    (server.setup.shared / name).unlink()
    (server.setup.shared / "lftp-not-yours.bin").unlink()


def test_wget_refused_download_for_upload_only(server: ServerProcess, tmp_path: Path) -> None:
    (server.setup.shared / "wget-secret.bin").write_bytes(PAYLOAD)
    port = server.setup.explicit_port
    base = [
        "wget",
        "--debug",
        "--no-check-certificate",
        "--user=dropbox",
        f"--password={PASSWORDS['dropbox']}",
    ]
    got = run([*base, "-O", str(tmp_path / "x.bin"), f"ftps://127.0.0.1:{port}/wget-secret.bin"])
    # wget exit status 8: the server issued an error response, 550 to RETR (--debug shows the replies).
    assert got.returncode == 8, got.stderr
    assert "\n550 Not enough privileges." in got.stderr, got.stderr
    assert not (tmp_path / "x.bin").exists() or (tmp_path / "x.bin").read_bytes() == b""
    (server.setup.shared / "wget-secret.bin").unlink()


def curl_reply(*args: str) -> str:
    """Run curl and return the last reply code the server sent (curl --verbose shows them as '< NNN')."""
    base = ["curl", "--silent", "--insecure", "--ssl-reqd", "--verbose"]
    result = run([*base, *args])
    replies = [
        line[2:5] for line in result.stderr.splitlines() if line.startswith("< ") and line[2:5].isdigit()
    ]
    return replies[-1]


def test_upload_only_profile_in_curl(server: ServerProcess, tmp_path: Path) -> None:
    root = url(server, "dropbox")
    name = "curl-dropbox.bin"
    src = str(local_file(tmp_path))
    assert curl_reply("-T", src, root + name) == "226"
    assert (server.setup.shared / name).read_bytes() == PAYLOAD
    assert curl_reply("-T", src, root + name) == "550"  # no overwrite
    assert curl_reply("-o", str(tmp_path / "x"), root + name) == "550"  # no download
    assert curl_reply("-Q", f"DELE {name}", root) == "550"
    assert (server.setup.shared / name).read_bytes() == PAYLOAD
    (server.setup.shared / name).unlink()


def test_read_only_profile_in_curl(server: ServerProcess, tmp_path: Path) -> None:
    root = url(server, "reader")
    assert curl_reply("-T", str(local_file(tmp_path)), root + "curl-reader.bin") == "550"
    assert not (server.setup.shared / "curl-reader.bin").exists()
    (server.setup.shared / "kept.bin").write_bytes(PAYLOAD)
    assert curl_reply("-Q", "DELE kept.bin", root) == "550"
    assert curl_reply("-o", str(tmp_path / "back.bin"), root + "kept.bin") == "226"
    assert (tmp_path / "back.bin").read_bytes() == PAYLOAD
    (server.setup.shared / "kept.bin").unlink()


def rclone(srv: ServerProcess, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """rclone's FTP backend with explicit TLS; the remote is configured through rclone's environment."""
    obscured = run(["rclone", "obscure", PASSWORDS[user]]).stdout.strip()
    env = {
        **os.environ,
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_SRV_TYPE": "ftp",
        "RCLONE_CONFIG_SRV_HOST": "127.0.0.1",
        "RCLONE_CONFIG_SRV_PORT": str(srv.setup.explicit_port),
        "RCLONE_CONFIG_SRV_USER": user,
        "RCLONE_CONFIG_SRV_PASS": obscured,
        "RCLONE_CONFIG_SRV_EXPLICIT_TLS": "true",
        "RCLONE_CONFIG_SRV_NO_CHECK_CERTIFICATE": "true",
    }
    return run(["rclone", "--retries", "1", "--low-level-retries", "1", *args], env=env)


# Nine uploads: before data connections stopped getting TLS 1.3 session tickets, 1 to 3 of 9 rclone
# uploads per run were discarded (426, the ticket left unread made the close a reset).
UPLOADS = 9


def test_rclone_round_trip_at_its_defaults(server: ServerProcess, tmp_path: Path) -> None:
    """Default concurrency (4 connections): a data connection may resume another connection's session."""
    src = tmp_path / "src"
    src.mkdir()
    for index in range(UPLOADS):
        (src / f"rclone-{index}.bin").write_bytes(PAYLOAD)
    # The folder does not exist yet: rclone needs 550 for "not found" (was 501 for MLSD, item 2).
    copy = rclone(server, "fbt_admin", "copy", str(src), "srv:rclone")
    assert copy.returncode == 0, copy.stderr
    listing = rclone(server, "fbt_admin", "lsf", "srv:rclone")
    assert sorted(listing.stdout.split()) == [f"rclone-{i}.bin" for i in range(UPLOADS)], listing.stderr
    back = tmp_path / "back"
    assert rclone(server, "fbt_admin", "copy", "srv:rclone", str(back)).returncode == 0
    for index in range(UPLOADS):
        assert hashlib.sha256((back / f"rclone-{index}.bin").read_bytes()).hexdigest() == SHA256
    purge = rclone(server, "fbt_admin", "purge", "srv:rclone")
    assert purge.returncode == 0, purge.stderr
    assert not (server.setup.shared / "rclone").exists()


def test_rclone_upload_only_copy_exits_0(server: ServerProcess, tmp_path: Path) -> None:
    """rclone sets each upload's time (MFMT) and lists the target first: both must work (item 5)."""
    src = tmp_path / "drop"
    src.mkdir()
    names = [f"rclone-drop-{index}.bin" for index in range(3)]
    for name in names:
        (src / name).write_bytes(PAYLOAD)
    copy = rclone(server, "dropbox", "copy", str(src), "srv:")
    assert copy.returncode == 0, copy.stderr
    for name in names:
        assert (server.setup.shared / name).read_bytes() == PAYLOAD
    # The listing shows this login's own uploads only (the upload-only secrecy, listing.py).
    (server.setup.shared / "someone-elses.bin").write_bytes(b"secret")
    listing = rclone(server, "dropbox", "lsf", "srv:")
    assert listing.returncode == 0, listing.stderr
    assert set(names) <= set(listing.stdout.split()) and "someone-elses.bin" not in listing.stdout
    (server.setup.shared / "someone-elses.bin").unlink()
    back = rclone(server, "dropbox", "copyto", f"srv:{names[0]}", str(tmp_path / "back.bin"))
    assert back.returncode != 0 and not (tmp_path / "back.bin").exists()
    # rclone takes the 550 to DELE for "already gone" and exits 0; what counts is that the file stays.
    rclone(server, "dropbox", "deletefile", f"srv:{names[0]}")
    assert (server.setup.shared / names[0]).read_bytes() == PAYLOAD
    assert f"DELE {server.setup.shared / names[0]} 550 'Not enough privileges.'" in server.log()
    for name in names:
        (server.setup.shared / name).unlink()


class PipeliningClient:
    """A raw FTPS client that sends several commands in one TLS write, as pipelining clients do."""

    def __init__(self, srv: ServerProcess, implicit: bool) -> None:
        port = srv.setup.implicit_port if implicit else srv.setup.explicit_port
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        if not implicit:
            plain = raw.makefile("rb")
            assert self._reply(plain) == "220"
            raw.sendall(b"AUTH TLS\r\n")
            assert self._reply(plain) == "234"
        self.tls = client_context().wrap_socket(raw)
        self.file = self.tls.makefile("rb")
        if implicit:
            assert self.codes(1) == ["220"]

    @staticmethod
    def _reply(file: object) -> str:
        """The code of the next complete reply (the last line of a multi-line one is 'NNN text')."""
        while True:
            line = file.readline().decode()  # type: ignore[attr-defined]
            assert line, "connection closed"
            if line[:3].isdigit() and line[3:4] == " ":
                return line[:3]

    def send(self, *commands: str) -> None:
        self.tls.sendall("".join(f"{command}\r\n" for command in commands).encode())

    def codes(self, count: int) -> list[str]:
        return [self._reply(self.file) for _ in range(count)]

    def close(self) -> None:
        self.tls.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_pipelined_login_is_answered_in_order(server: ServerProcess, implicit: bool) -> None:
    """Issue 13, item 1: commands written together with PASS wait for its verdict (RFC 959 order)."""
    client = PipeliningClient(server, implicit)
    client.send("USER fbt_admin", f"PASS {PASSWORDS['fbt_admin']}", "PWD", "NOOP")
    assert client.codes(4) == ["331", "230", "257", "200"]
    client.send("QUIT")
    assert client.codes(1) == ["221"]
    client.close()


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_pipelined_commands_after_a_failed_login_wait_for_its_530(
    server: ServerProcess, implicit: bool
) -> None:
    """A wrong password is answered after a delay; what follows it must still come after the 530."""
    client = PipeliningClient(server, implicit)
    client.send(
        "USER fbt_admin",
        "PASS wrong",
        "PWD",
        "USER reader",
        f"PASS {PASSWORDS['reader']}",
        "PWD",
        "NOOP",
    )
    assert client.codes(7) == ["331", "530", "530", "331", "230", "257", "200"]
    client.close()
