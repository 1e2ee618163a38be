"""Rotation on the real server deployed by site.yml: a download running during
playbooks/rotate-certificates.yml completes intact, ftpsd is reloaded (same process), and a new login
during that download already gets the new certificate."""

import ftplib
import ssl

import pytest
from conftest import PROJECT, address, lab_host, run_playbook
from cryptography import x509
from ftpsd.client import FTPS
from paused_download import PausedDownload

ROTATE = PROJECT / "playbooks" / "rotate-certificates.yml"
BIG_FILE = "/srv/ftps/shared/rotation-test.bin"
BIG_FILE_MIB = 200
PAUSE_AFTER = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def server():
    host = lab_host("certs-srv")
    host.run_expect(
        [0],
        f"head -c {BIG_FILE_MIB}M /dev/urandom > {BIG_FILE} && chown ftpsd:ftpsd {BIG_FILE}",
    )
    yield host
    host.run(f"rm -f {BIG_FILE}")


def login(host) -> FTPS:
    """Explicit FTPS (AUTH TLS, PBSZ 0, PROT P); only looks at the certificate, trust is tested elsewhere."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    user = host.ansible.get_variables()["ftps_server_users"][0]
    ftp = FTPS(context=context, timeout=60)
    ftp.connect(address(host), 21)
    ftp.login(user["name"], user["password"])
    ftp.prot_p()
    return ftp


def presented_certificate(ftp: ftplib.FTP_TLS) -> x509.Certificate:
    return x509.load_der_x509_certificate(ftp.sock.getpeercert(binary_form=True))


def main_pid(host) -> str:
    return host.check_output("systemctl show --property MainPID --value ftpsd")


def test_download_during_rotation_completes_and_new_logins_get_the_new_certificate(server):
    expected_digest = server.check_output(f"sha256sum {BIG_FILE}").split()[0]
    pid = main_pid(server)
    first = login(server)
    old_serial = presented_certificate(first).serial_number

    # The client stops reading after the first megabytes until the rotation is over, so the transfer is
    # certainly in progress when ftpsd reloads.
    first.cwd("/")
    with PausedDownload(first, BIG_FILE.rsplit("/", 1)[1], PAUSE_AFTER) as download:
        rotation = run_playbook("--limit", "certs-srv", playbook=ROTATE)
        assert rotation.rc == 0, rotation.output

        assert main_pid(server) == pid, "ftpsd was restarted, not reloaded"
        second = login(server)
        new_serial = presented_certificate(second).serial_number
        second.quit()
        assert new_serial != old_serial
        assert download.in_progress(), "the download must still be in progress during the rotation"
    assert download.completed_intact(BIG_FILE_MIB * 1024 * 1024, expected_digest), (
        download.outcome,
        download.received,
    )
    first.quit()


def test_server_files_follow_the_interface(server):
    key = server.file("/etc/ftpsd/tls/server.key")
    assert (key.mode, key.user, key.group) == (0o600, "ftpsd", "ftpsd")
    served = login(server)
    try:
        on_disk = x509.load_pem_x509_certificates(server.file("/etc/ftpsd/tls/server.crt").content)[0]
        assert presented_certificate(served) == on_disk
    finally:
        served.quit()
