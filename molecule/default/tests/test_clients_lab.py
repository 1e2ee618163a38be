"""rclone and wget (Debian 12 packages) at their defaults against a deployed lab host, over the lab network.

The loopback client suite (ftpsd/tests/test_clients.py) runs ftpsd outside systemd; here it runs in its
hardened unit, so a client-visible difference of the deployment (such as the unit's memory rules, which
once broke every connection) fails here. curl and lftp run against the lab hosts in test_ipv6.py.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import uuid

import pytest
from conftest import login

PAYLOAD = os.urandom(200_000)
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, check=False, **kwargs)


def rclone(deployment, user, *args: str) -> subprocess.CompletedProcess[str]:
    """rclone's FTP backend, explicit TLS, default concurrency; the lab certificate is self-signed."""
    env = {
        **os.environ,
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_LAB_TYPE": "ftp",
        "RCLONE_CONFIG_LAB_HOST": deployment.address,
        "RCLONE_CONFIG_LAB_PORT": str(deployment.explicit_port),
        "RCLONE_CONFIG_LAB_USER": user.name,
        "RCLONE_CONFIG_LAB_PASS": run(["rclone", "obscure", user.password]).stdout.strip(),
        "RCLONE_CONFIG_LAB_EXPLICIT_TLS": "true",
        "RCLONE_CONFIG_LAB_NO_CHECK_CERTIFICATE": "true",
    }
    return run(["rclone", "--retries", "1", "--low-level-retries", "1", *args], env=env)


@pytest.fixture
def admin_session(deployment):
    """The full user's ftplib session, to put and check files beside the client under test."""
    ftp = login(deployment, deployment.user("full"))
    yield ftp
    ftp.close()


def test_rclone_round_trip_at_its_defaults(deployment, tmp_path):
    folder = f"molecule-rclone-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    names = [f"file-{index}.bin" for index in range(6)]
    for name in names:
        (src / name).write_bytes(PAYLOAD)
    full = deployment.user("full")
    copy = rclone(deployment, full, "copy", str(src), f"lab:{folder}")
    assert copy.returncode == 0, copy.stderr
    assert sorted(rclone(deployment, full, "lsf", f"lab:{folder}").stdout.split()) == names
    back = tmp_path / "back"
    assert rclone(deployment, full, "copy", f"lab:{folder}", str(back)).returncode == 0
    assert {hashlib.sha256((back / name).read_bytes()).hexdigest() for name in names} == {SHA256}
    purge = rclone(deployment, full, "purge", f"lab:{folder}")
    assert purge.returncode == 0, purge.stderr


def test_rclone_copy_by_the_upload_only_user(deployment, admin_session, tmp_path):
    """rclone lists the target and sets each upload's time: it exits 0, and the files arrive intact."""
    src = tmp_path / "drop"
    src.mkdir()
    name = f"molecule-rclone-drop-{uuid.uuid4().hex[:8]}.bin"
    (src / name).write_bytes(PAYLOAD)
    copy = rclone(deployment, deployment.user("upload_only"), "copy", str(src), "lab:")
    assert copy.returncode == 0, copy.stderr
    back = tmp_path / "back.bin"
    with back.open("wb") as out:
        admin_session.retrbinary(f"RETR {name}", out.write)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == SHA256
    admin_session.delete(name)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_wget_downloads(deployment, admin_session, tmp_path, implicit):
    if implicit and not deployment.implicit_port:
        pytest.skip("implicit FTPS is disabled on this host")
    if deployment.masquerade:
        # wget asks for PASV, which announces the NAT's public address: unreachable from the controller.
        pytest.skip("this host announces a masquerade address in PASV")
    name = f"molecule-wget-{uuid.uuid4().hex[:8]}.bin"
    admin_session.storbinary(f"STOR {name}", io.BytesIO(PAYLOAD))
    reader = deployment.user("read_only")
    port = deployment.implicit_port if implicit else deployment.explicit_port
    mode = ["--ftps-implicit"] if implicit else []
    url = f"ftps://{deployment.address}:{port}/{name}"
    result = run(
        ["wget", "-q", "--no-check-certificate", f"--user={reader.name}", f"--password={reader.password}",
         *mode, "-O", str(tmp_path / name), url]
    )  # fmt: skip
    admin_session.delete(name)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == SHA256
