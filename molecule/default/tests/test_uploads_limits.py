"""Resumable uploads, bandwidth limits and quotas on deployed hosts, in ftpsd's hardened unit, over the lab.

The loopback suites (ftpsd/tests/test_live_resume.py, test_live_bandwidth.py, test_live_quotas.py) cover
every rule; here the deployment's own settings are proven: the default partial-upload lifetime keeps a cut
upload for its user, the lab inventory's download limit of partner_acme and its quotas hold, and the usage
that `ftpsd quota` counts on disk is the one the server enforces (its metrics gauge).
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Deployment, User, login, run_on_host, scraped_metrics
from ftpsd.partials import partial_path

SOURCE = os.urandom(3 << 20)
SOURCE_SHA256 = hashlib.sha256(SOURCE).hexdigest()
PARTNER_HOME = "/srv/ftps/partners/acme"
SHARED = "/srv/ftps/shared"
FTPSD = "/opt/ftpsd/venv/bin/ftpsd"
CONFIG = "/etc/ftpsd/ftpsd.toml"


def unique(prefix: str) -> str:
    return f"molecule-{prefix}-{uuid.uuid4().hex[:8]}.bin"


def curl(dep: Deployment, user: User, *args: str) -> subprocess.Popen[str]:
    """curl over explicit FTPS with PROT P; the lab certificate is self-signed (trust: test_ipv6.py)."""
    base = ["curl", "-sS", "-v", "--insecure", "--ssl-reqd", "-u", f"{user.name}:{user.password}"]
    return subprocess.Popen([*base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lftp(dep: Deployment, user: User, script: str, rate: int = 0) -> subprocess.Popen[str]:
    # EPSV: ftps-b announces a masquerade address in PASV that the controller cannot reach.
    settings = "set ssl:verify-certificate no; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
    settings += "set ftp:prefer-epsv yes; "
    settings += f"set net:max-retries 1; set cmd:fail-exit yes; set net:limit-rate {rate}; debug 9; "
    login_line = f"open -u {user.name},{user.password} ftp://{dep.address}:{dep.explicit_port}; "
    command = ["lftp", "-c", settings + login_line + script]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def url(dep: Deployment, name: str) -> str:
    return f"ftp://{dep.address}:{dep.explicit_port}/{name}"


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=180)
    return proc.returncode, err


def size_on_host(dep: Deployment, path: str) -> int:
    """The file's size on the host, -1 if it does not exist."""
    result = run_on_host(dep, f"stat -c %s {shlex.quote(path)}")
    return int(result.stdout) if result.returncode == 0 else -1


def kill_once_written(dep: Deployment, proc: subprocess.Popen[str], partial: str) -> int:
    """SIGKILL the client (no TLS shutdown at all) once part of the upload reached the host; the kept size."""
    try:
        deadline = time.monotonic() + 60
        while size_on_host(dep, partial) < 256 << 10:
            assert time.monotonic() < deadline, "the upload never reached the host"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    return size_on_host(dep, partial)


def resume(start: Callable[[], subprocess.Popen[str]]) -> tuple[int, str]:
    """Run the resuming client; while the server still holds the cut upload's lock it answers 450."""
    for _ in range(10):
        rc, err = finished(start())
        if rc == 0 or "450" not in err:
            return rc, err
        time.sleep(0.5)
    return rc, err


def fetched_sha256(session: ftplib.FTP_TLS, name: str) -> str:
    out = io.BytesIO()
    session.retrbinary(f"RETR {name}", out.write)
    return hashlib.sha256(out.getvalue()).hexdigest()


@pytest.fixture
def admin_session(deployment):
    ftp = login(deployment, deployment.user("full"))
    yield ftp
    ftp.close()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(SOURCE)
    return path


def test_upload_only_user_resumes_a_cut_upload_with_curl_and_it_appears_only_whole(
    deployment, admin_session, source
):
    """curl -C - -T (SIZE, then APPE) by the upload-only user, with the default partial-upload lifetime."""
    user = deployment.user("upload_only")
    name = unique("resume-curl")
    partial = partial_path(f"{user.home}/{name}", user.name)
    cut = curl(deployment, user, "--limit-rate", "400k", "-T", str(source), url(deployment, name))
    kept = kill_once_written(deployment, cut, partial)
    assert 0 < kept < len(SOURCE)
    # While cut: nobody sees it under its name, neither in a listing nor on the host's disk.
    assert name not in admin_session.nlst()
    assert size_on_host(deployment, f"{user.home}/{name}") == -1
    rc, err = resume(lambda: curl(deployment, user, "-C", "-", "-T", str(source), url(deployment, name)))
    assert rc == 0, err
    assert f"> SIZE {name}" in err and f"> APPE {name}" in err, err
    kept_now = re.search(r"< 213 (\d+)", err[err.index(f"> SIZE {name}") :])
    assert kept_now and int(kept_now[1]) >= kept, err  # more may have arrived after the kill
    assert fetched_sha256(admin_session, name) == SOURCE_SHA256
    assert size_on_host(deployment, partial) == -1
    admin_session.delete(name)


def test_full_user_resumes_a_cut_upload_with_lftp_put_c(deployment, admin_session, source):
    """lftp put -c: SIZE (the partial's size), then REST n + STOR."""
    user = deployment.user("full")
    name = unique("resume-lftp")
    partial = partial_path(f"{user.home}/{name}", user.name)
    cut = lftp(deployment, user, f"put {source} -o {name}", rate=400_000)
    kept = kill_once_written(deployment, cut, partial)
    assert 0 < kept < len(SOURCE)
    rc, err = resume(lambda: lftp(deployment, user, f"put -c {source} -o {name}"))
    assert rc == 0, err
    restarted_at = re.search(rf"---> REST (\d+)\n.*---> STOR {re.escape(name)}", err, re.DOTALL)
    assert restarted_at and int(restarted_at[1]) >= kept, err  # more may have arrived after the kill
    assert fetched_sha256(admin_session, name) == SOURCE_SHA256
    admin_session.delete(name)


def test_partner_downloads_are_held_to_its_rate(deployment, tmp_path):
    """The lab inventory holds partner_acme's downloads to 4 MiB/s: 8 MiB take at least about 2 s (a lower
    bound only; a loaded machine may take longer) and arrive intact."""
    partner = deployment.users["partner_acme"]
    assert partner.download_rate > 0, "the lab inventory sets partner_acme's download_rate"
    data = os.urandom(2 * partner.download_rate)
    name = unique("rate")
    session = login(deployment, partner)
    session.storbinary(f"STOR {name}", io.BytesIO(data))  # its uploads are not limited
    began = time.monotonic()
    rc, err = finished(curl(deployment, partner, "-o", str(tmp_path / "back.bin"), url(deployment, name)))
    elapsed = time.monotonic() - began
    assert rc == 0, err
    assert (tmp_path / "back.bin").read_bytes() == data
    assert elapsed >= 0.8 * len(data) / partner.download_rate, elapsed
    session.delete(name)
    session.close()


def counted_on_disk(dep: Deployment) -> dict[str, dict]:
    """`ftpsd quota --json` on the host: each quota folder's usage, counted on its disk now."""
    result = run_on_host(dep, f"{FTPSD} quota --json --config {CONFIG}")
    assert result.returncode == 0, result.stderr
    return {item["path"]: item for item in json.loads(result.stdout)}


def enforced(dep: Deployment, folder: str) -> tuple[int, int]:
    """What the server counts (and enforces) for a quota folder: its gauges, scraped on the host."""
    body = scraped_metrics(dep)
    values = dict(
        re.findall(rf'^(ftpsd_quota_used_(?:bytes|files)){{path="{re.escape(folder)}"}} (\S+)$', body, re.M)
    )
    return int(float(values["ftpsd_quota_used_bytes"])), int(float(values["ftpsd_quota_used_files"]))


def agreed_usage(dep: Deployment, folder: str) -> tuple[int, int]:
    """The folder's usage once the server's count and the disk agree (the server commits a loop turn after
    its reply)."""
    deadline = time.monotonic() + 15
    while True:
        disk = counted_on_disk(dep)[folder]
        if enforced(dep, folder) == (disk["used_bytes"], disk["used_files"]):
            return disk["used_bytes"], disk["used_files"]
        assert time.monotonic() < deadline, (disk, enforced(dep, folder))
        time.sleep(0.3)


def test_users_sharing_a_folder_share_its_quota(deployment, admin_session):
    """fbt_upload's and fbt_admin's uploads both count for the shared folder's quota (lab inventory)."""
    assert SHARED in deployment.quotas
    before = agreed_usage(deployment, SHARED)
    dropped, stored = unique("quota-drop"), unique("quota-admin")
    uploader = login(deployment, deployment.user("upload_only"))
    uploader.storbinary(f"STOR {dropped}", io.BytesIO(os.urandom(100_000)))
    uploader.close()
    admin_session.storbinary(f"STOR {stored}", io.BytesIO(os.urandom(50_000)))
    assert agreed_usage(deployment, SHARED) == (before[0] + 150_000, before[1] + 2)
    admin_session.delete(dropped)
    admin_session.delete(stored)
    assert agreed_usage(deployment, SHARED) == before


def test_an_upload_beyond_the_partner_quota_gets_552_and_leaves_nothing(deployment, tmp_path):
    """The partner's home holds 32 MiB (lab inventory): with ALLO refused before any data, without it
    (curl announces nothing) stopped at the write that exceeds; neither leaves a file or a partial."""
    partner = deployment.users["partner_acme"]
    limit = deployment.quotas[PARTNER_HOME]["max_bytes"]
    assert limit > 0
    before = agreed_usage(deployment, PARTNER_HOME)
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(os.urandom(limit + (1 << 20)))
    name = unique("quota-over")
    session = login(deployment, partner)
    assert session.sendcmd(f"ALLO {too_big.stat().st_size}").startswith("200")
    with pytest.raises(ftplib.error_perm, match=r"^552"):
        session.storbinary(f"STOR {name}", io.BytesIO(b"never sent"))
    session.close()
    rc, err = finished(curl(deployment, partner, "-T", str(too_big), url(deployment, name)))
    assert rc != 0, err
    assert size_on_host(deployment, f"{PARTNER_HOME}/{name}") == -1
    leftovers = run_on_host(deployment, f"ls -A {PARTNER_HOME}").stdout.split()
    assert not [entry for entry in leftovers if entry.startswith(".ftpsd-upload-")], leftovers
    assert agreed_usage(deployment, PARTNER_HOME) == before
