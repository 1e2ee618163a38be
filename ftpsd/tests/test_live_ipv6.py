"""Dual stack: one "::" listener serves IPv6 and IPv4 clients, and each family gets its own data commands.

Everything goes to loopback (::1 and 127.0.0.x); 127.0.0.2 plays another client's address.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context, new_setup
from ftpsd.client import FTPS, ImplicitFTPS
from selfsigned import write_self_signed

PAYLOAD = hashlib.sha256(b"dual stack").digest() * 8192  # 256 KiB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server with the default listen address "::" and a certificate for both loopback addresses."""
    setup = new_setup(tmp_path_factory.mktemp("dual"), implicit=True, ban_after_failures=1000)
    setup.cert, setup.key = write_self_signed(setup.root, "dual", ("127.0.0.1", "::1"))
    setup.listen_address = "::"
    setup.write()
    proc = ServerProcess(setup)
    yield proc
    proc.stop()


def login(srv: ServerProcess, host: str, user: str = "fbt_admin", implicit: bool = False) -> FTPS:
    ftp = (ImplicitFTPS if implicit else FTPS)(context=client_context(), timeout=20)
    ftp.connect(host, srv.setup.implicit_port if implicit else srv.setup.explicit_port)
    ftp.login(user, PASSWORDS[user])
    ftp.prot_p()
    return ftp


def round_trip(ftp: FTPS, name: str) -> None:
    ftp.storbinary(f"STOR {name}", io.BytesIO(PAYLOAD))
    back = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", back.write)
    assert hashlib.sha256(back.getvalue()).hexdigest() == SHA256
    ftp.delete(name)


def test_listens_on_one_dual_stack_socket(dual: ServerProcess) -> None:
    assert f"listening on :::{dual.setup.explicit_port}" in dual.log()
    for host in ("::1", "127.0.0.1"):
        with socket.create_connection((host, dual.setup.explicit_port), timeout=10) as sock:
            assert sock.recv(64).startswith(b"220 ")


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_ipv6_round_trip_over_epsv(dual: ServerProcess, implicit: bool) -> None:
    ftp = login(dual, "::1", implicit=implicit)
    assert ftp.af == socket.AF_INET6  # ftplib then uses EPSV, as IPv6 clients do
    round_trip(ftp, f"v6-{implicit}.bin")
    ftp.quit()


def test_ipv4_client_on_the_dual_stack_socket_uses_pasv(dual: ServerProcess) -> None:
    ftp = login(dual, "127.0.0.1")
    host, _ = ftplib.parse227(ftp.sendcmd("PASV"))
    assert host == "127.0.0.1"  # announced as IPv4, not as ::ffff:127.0.0.1
    ftp.abort()
    round_trip(ftp, "v4.bin")
    ftp.quit()


@pytest.mark.parametrize(
    ("command", "extended"), [("PASV", "EPSV"), ("PORT 127,0,0,1,195,80", "EPRT")], ids=["PASV", "PORT"]
)
def test_ipv4_only_data_commands_refused_on_ipv6(dual: ServerProcess, command: str, extended: str) -> None:
    ftp = login(dual, "::1")
    name = command.split(maxsplit=1)[0]
    reply = f"522 Network protocol not supported: {name} carries only IPv4 addresses; use {extended}."
    with pytest.raises(ftplib.error_perm) as refused:
        ftp.sendcmd(command)
    assert str(refused.value) == reply
    assert ftp.sendcmd("EPSV").startswith("229 ")  # the session goes on
    ftp.quit()


@pytest.mark.parametrize(
    ("command", "reply"),
    [("EPRT |2|::2|50000|", r"^501 Rejected data connection to foreign address"), ("PROT C", r"^5\d\d")],
    ids=["EPRT-foreign", "PROT-C"],
)
def test_refused_over_ipv6(dual: ServerProcess, command: str, reply: str) -> None:
    ftp = login(dual, "::1")
    with pytest.raises(ftplib.error_perm, match=reply):
        ftp.sendcmd(command)
    ftp.quit()


def test_data_connection_from_another_ipv4_address_refused_on_the_dual_stack_socket(
    dual: ServerProcess,
) -> None:
    """The control connection is ::ffff:127.0.0.1; a data connection from 127.0.0.2 is someone else."""
    ftp = login(dual, "127.0.0.1")
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    intruder = socket.create_connection((host, port), timeout=20, source_address=("127.0.0.2", 0))
    assert ftp.getmultiline().startswith("425 Rejected data connection from foreign address")
    intruder.close()
    ftp.quit()


def test_plaintext_login_refused_over_ipv6(dual: ServerProcess) -> None:
    ftp = ftplib.FTP(timeout=20)
    ftp.connect("::1", dual.setup.explicit_port)
    with pytest.raises(ftplib.error_perm, match=r"^55\d .*TLS"):
        ftp.sendcmd("USER fbt_admin")
    ftp.close()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "url", ["ftp://[::1]:{explicit}", "ftps://[::1]:{implicit}"], ids=["explicit", "implicit"]
)
def test_curl_round_trip_over_ipv6(dual: ServerProcess, tmp_path: Path, url: str) -> None:
    base = url.format(explicit=dual.setup.explicit_port, implicit=dual.setup.implicit_port)
    payload, back = tmp_path / "payload.bin", tmp_path / "back.bin"
    payload.write_bytes(PAYLOAD)
    # Hostname checking stays on: the certificate names ::1.
    auth = ["-u", f"fbt_admin:{PASSWORDS['fbt_admin']}", "--ssl-reqd", "--cacert", str(dual.setup.cert)]
    name = "curl-" + base.split(":")[0] + ".bin"
    assert (up := curl(*auth, "-T", str(payload), f"{base}/{name}")).returncode == 0, up.stderr
    assert (down := curl(*auth, "-o", str(back), f"{base}/{name}")).returncode == 0, down.stderr
    assert hashlib.sha256(back.read_bytes()).hexdigest() == SHA256
    assert curl(*auth, "-Q", f"DELE {name}", f"{base}/").returncode == 0
    assert not (dual.setup.shared / name).exists()


def test_lftp_round_trip_over_ipv6(dual: ServerProcess, tmp_path: Path) -> None:
    payload = tmp_path / "lftp.bin"
    payload.write_bytes(PAYLOAD)
    script = (
        f"set ssl:ca-file {dual.setup.cert}; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
        f"open -u fbt_admin,{PASSWORDS['fbt_admin']} ftp://[::1]:{dual.setup.explicit_port}; "
        f"put {payload} -o lftp6.bin; get lftp6.bin -o {tmp_path / 'back.bin'}; rm lftp6.bin; bye"
    )
    result = subprocess.run(["lftp", "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == SHA256
    assert not (dual.setup.shared / "lftp6.bin").exists()
