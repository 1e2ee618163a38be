"""Path escapes never reach outside a user's root: `..`, absolute paths, encoded separators, overlong UTF-8,
and symlinks planted by root in the shared folder that point outside it.

fbt_admin (full rights, home /srv/ftps/shared) tries to read, list, change, create, rename and delete
another partner's secret and system files. Afterwards the host is checked directly: nothing outside the
home was read, written, moved or deleted. A symlink that stays inside the home works (positive control).
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import secrets
from collections.abc import Iterator

import pytest
from ftps_clients import FTPS, login
from labhost import Deployment

SECRET = "partners/acme/secret.txt"  # relative to the data root
# Each names, from the shared home, something outside it: the partner's secret or /etc.
READ_ESCAPES = (
    "../partners/acme/secret.txt",
    "/../partners/acme/secret.txt",
    "../../etc/passwd",
    "/etc/passwd",
    "//srv/ftps/partners/acme/secret.txt",
    "./../partners/acme/secret.txt",
    "sub/../../partners/acme/secret.txt",
    "....//partners/acme/secret.txt",
    "..%2fpartners%2facme%2fsecret.txt",
    "%2e%2e/partners/acme/secret.txt",
    "..\\partners\\acme\\secret.txt",
    "..\uff0fpartners\uff0facme\uff0fsecret.txt",  # fullwidth solidus
    "\uff0e\uff0e/partners/acme/secret.txt",  # fullwidth full stops
    "~/../partners/acme/secret.txt",
    "~root/../etc/passwd",
    "link-secret",
    "link-passwd",
    "link-etc/passwd",
    "link-acme/secret.txt",
    "sub/link-up/acme/secret.txt",
)
DIR_ESCAPES = ("..", "../partners", "/../partners/acme", "link-etc", "link-acme", "sub/link-up", "../../..")
# Existing things outside the home, reached through escapes: they must not be deleted, moved or changed.
CHANGE_ESCAPES = (
    "../partners/acme/secret.txt",
    "/../partners/acme/secret.txt",
    "link-acme/secret.txt",
    "sub/link-up/acme/secret.txt",
    "link-secret",
    "link-passwd",
)
# New names outside the home: nothing may be created there.
CREATE_ESCAPES = (
    "../partners/acme/evil",
    "/../partners/acme/evil",
    "link-acme/evil",
    "sub/link-up/acme/evil",
    "link-etc/evil",
)
OVERLONG_DOTS = "\xc0\xae\xc0\xae/partners/acme/secret.txt"  # sent as raw bytes: C0 AE is an overlong "."


@pytest.fixture(scope="module")
def planted(deployment: Deployment) -> Iterator[str]:
    """Root plants a secret in the partner's home and symlinks in the shared folder; removed afterwards.

    Yields the state of everything outside the shared home, to compare with at the end."""
    data_root = deployment.settings["ftps_server_data_root"]
    shared = deployment.users["fbt_admin"].home
    marker = f"secret-{secrets.token_hex(8)}"
    links = {
        "link-etc": "/etc",
        "link-passwd": "/etc/passwd",
        "link-acme": "../partners/acme",
        "link-secret": f"{data_root}/{SECRET}",
        "sub/link-up": "../../partners",
        "link-inside": "inside",
    }
    deployment.server.run(
        f"set -e; echo {marker} > {data_root}/{SECRET}; chown ftpsd:ftpsd {data_root}/{SECRET}; "
        f"mkdir -p {shared}/sub {shared}/inside; echo inside-content > {shared}/inside/file.txt; "
        + " ".join(f"ln -sfn {target} {shared}/{name};" for name, target in links.items())
    )
    yield outside_state(deployment)
    deployment.server.run(
        f"rm -rf {data_root}/{SECRET} {shared}/sub {shared}/inside "
        + " ".join(f"{shared}/{name}" for name in links)
    )


def outside_state(deployment: Deployment) -> str:
    """Everything outside the shared home that an escape could change, with content hashes."""
    data_root = deployment.settings["ftps_server_data_root"]
    shared = deployment.users["fbt_admin"].home
    return deployment.server.run(
        f"find {data_root} /etc /tmp /var/tmp -path {shared} -prune -o -printf '%p %y %s %m %u\\n' | sort; "
        f"sha256sum {data_root}/{SECRET} /etc/passwd; ls -l {shared} {shared}/sub"
    )


@pytest.fixture
def admin(deployment: Deployment, planted: str) -> Iterator[FTPS]:
    with login(deployment, "fbt_admin") as ftp:
        yield ftp


def fetch(ftp: FTPS, path: str) -> tuple[str, bytes]:
    """RETR a path; the final reply and whatever data arrived."""
    received = io.BytesIO()
    try:
        reply = ftp.retrbinary(f"RETR {path}", received.write)
    except ftplib.Error as err:
        reply = str(err)
    return reply, received.getvalue()


def refused(ftp: FTPS, command: str) -> str:
    """The reply to a command that must fail with a 5xx code."""
    try:
        reply = ftp.sendcmd(command)
    except ftplib.error_perm as err:
        return str(err)
    raise AssertionError(f"{command!r} was accepted: {reply}")


def test_a_symlink_inside_the_home_works(admin: FTPS) -> None:
    """Positive control: the same client and commands do reach what lies inside the home."""
    reply, data = fetch(admin, "link-inside/file.txt")
    assert reply.startswith("226") and data == b"inside-content\n"


@pytest.mark.parametrize("path", READ_ESCAPES)
def test_escapes_cannot_read_outside(admin: FTPS, path: str) -> None:
    reply, data = fetch(admin, path)
    assert reply.startswith("5"), reply
    assert data == b""
    for command in ("SIZE", "MDTM", "MLST", "STAT"):
        refused(admin, f"{command} {path}")


@pytest.mark.parametrize("path", DIR_ESCAPES)
def test_escapes_cannot_enter_or_list_outside(admin: FTPS, path: str) -> None:
    with contextlib.suppress(ftplib.error_perm):
        admin.cwd(path)
    assert admin.pwd() == "/"  # refused, or `..` of the root, which is the root
    listing: list[str] = []
    with contextlib.suppress(ftplib.error_perm):
        admin.retrlines(f"LIST {path}", listing.append)
    names = " ".join(listing)
    assert "secret.txt" not in names and "passwd" not in names, listing


def test_symlinks_leading_outside_are_hidden_from_listings(admin: FTPS) -> None:
    names = set(admin.nlst())
    assert {"link-inside", "inside", "sub"} <= names
    assert not names & {"link-etc", "link-passwd", "link-acme", "link-secret"}, names
    assert "link-up" not in admin.nlst("sub")


@pytest.mark.parametrize("path", CHANGE_ESCAPES)
def test_escapes_cannot_change_outside(admin: FTPS, path: str) -> None:
    with pytest.raises(ftplib.error_perm):
        admin.storbinary(f"STOR {path}", io.BytesIO(b"overwritten"))
    for command in ("DELE", "RNFR", "SITE CHMOD 777", "MFMT 20000101000000"):
        refused(admin, f"{command} {path}")


@pytest.mark.parametrize("path", CREATE_ESCAPES)
def test_escapes_cannot_create_outside(admin: FTPS, path: str) -> None:
    with pytest.raises(ftplib.error_perm):
        admin.storbinary(f"STOR {path}.txt", io.BytesIO(b"evil"))
    refused(admin, f"MKD {path}-dir")
    refused(admin, f"STOU {path}")


def test_renames_cannot_move_files_out_or_in(admin: FTPS) -> None:
    admin.storbinary("STOR mine.txt", io.BytesIO(b"mine"))
    assert admin.sendcmd("RNFR mine.txt").startswith("350")
    refused(admin, "RNTO ../partners/acme/moved.txt")
    refused(admin, "RNFR ../partners/acme/secret.txt")
    admin.delete("mine.txt")


def test_overlong_utf8_dots_are_refused(admin: FTPS) -> None:
    admin.encoding = "latin-1"  # ftplib then sends the two bytes C0 AE as they are
    try:
        assert refused(admin, f"RETR {OVERLONG_DOTS}").startswith("501")
        assert refused(admin, f"CWD {OVERLONG_DOTS}").startswith("501")
    finally:
        admin.encoding = "utf-8"


def test_nothing_outside_the_home_changed(deployment: Deployment, planted: str) -> None:
    """Runs after the attempts above (same module, file order): the host itself shows no trace."""
    assert outside_state(deployment) == planted
