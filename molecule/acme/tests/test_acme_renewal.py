"""Renewal and failures against the real Pebble and BIND: a certificate inside its window is renewed by a
plain re-run of site.yml while a download goes on, renew-certificates.yml renews as well; an unreachable
directory, a wrong TSIG key, a zone the server does not serve, an order the CA refuses and records that never
show up each fail the host with their own message and leave the key and certificate in service as they
were."""

import pytest
from conftest import (
    KEY,
    RENEW,
    SERVER,
    WHOLE_LIFETIME_WINDOW,
    challenge_records,
    dns_address,
    extra_vars,
    installed_chain,
    login,
    presented_certificate,
    run_playbook,
)
from paused_download import PausedDownload

BIG_FILE = "/srv/ftps/shared/acme-renewal.bin"
BIG_FILE_MIB = 100
PAUSE_AFTER = 8 * 1024 * 1024


def main_pid(host) -> str:
    return host.check_output("systemctl show --property MainPID --value ftpsd")


@pytest.fixture
def big_file(server):
    server.run_expect(
        [0], f"head -c {BIG_FILE_MIB}M /dev/urandom > {BIG_FILE} && chown ftpsd:ftpsd {BIG_FILE}"
    )
    yield BIG_FILE
    server.run(f"rm -f {BIG_FILE}")


def test_certificate_inside_window_is_renewed_by_a_rerun_during_a_download(server, pebble_root, big_file):
    expected = server.check_output(f"sha256sum {big_file}").split()[0]
    pid, key_before = main_pid(server), server.file(KEY).sha256sum
    first = login(pebble_root)
    old_serial = presented_certificate(first).serial_number
    first.cwd("/")
    with PausedDownload(first, big_file.rsplit("/", 1)[1], PAUSE_AFTER) as download:
        rerun = run_playbook("-e", WHOLE_LIFETIME_WINDOW)
        assert rerun.rc == 0, rerun.output
        assert rerun.changed()[SERVER] > 0, rerun.output
        assert main_pid(server) == pid, "ftpsd was restarted, not reloaded"
        second = login(pebble_root)
        assert presented_certificate(second).serial_number != old_serial
        second.quit()
        assert download.in_progress(), "the download must still be in progress during the renewal"
    assert download.completed_intact(BIG_FILE_MIB * 1024 * 1024, expected), (
        download.outcome,
        download.received,
    )
    first.quit()
    assert server.file(KEY).sha256sum != key_before, "a renewal makes a new key by default"
    assert not server.file(f"{KEY}.next").exists


def test_renew_playbook_renews_a_due_certificate(server, pebble_root):
    before = installed_chain(server)[0].serial_number
    run = run_playbook("--limit", SERVER, "-e", WHOLE_LIFETIME_WINDOW, playbook=RENEW)
    assert run.rc == 0, run.output
    assert "renewed (" in run.output, run.output
    ftp = login(pebble_root)
    try:
        assert presented_certificate(ftp).serial_number != before
        assert presented_certificate(ftp) == installed_chain(server)[0]
    finally:
        ftp.quit()


FAILURES = {
    "unreachable directory": (
        lambda: {"ftps_certificate_acme_directory": f"https://{dns_address()}:14999/dir"},
        "ACME directory unreachable",
    ),
    "wrong TSIG key": (
        lambda: {"ftps_certificate_acme_tsig_key_secret": "Io0d4cE62mbz1LcJsdkXseK9brYuLgyPDo4GfkJryhY="},
        "wrong TSIG key",
    ),
    "zone not served": (
        lambda: {
            "ftps_certificate_acme_dns_zone": "other.test",
            "ftps_certificate_common_name": "ftp.other.test",
            "ftps_certificate_subject_alt_names": ["ftp.other.test"],
        },
        "zone not served",
    ),
    # Pebble's configuration blocks this name (prepare.yml).
    "refused order": (
        lambda: {"ftps_certificate_subject_alt_names": ["ftp.lab.test", "refused.lab.test"]},
        "ACME order refused",
    ),
    # The records are published, then never seen on a second "authoritative" server that does not answer:
    # the run stops before the CA is asked, and the records are removed all the same.
    "records not visible": (
        lambda: {
            "ftps_certificate_acme_dns_check_servers": [dns_address(), "198.18.0.1"],
            "ftps_certificate_acme_dns_wait_seconds": 4,
        },
        "records are not visible",
    ),
}


@pytest.mark.parametrize("case", FAILURES, ids=list(FAILURES))
def test_failure_names_its_cause_and_keeps_the_certificate_in_service(server, pebble_root, case):
    overrides, message = FAILURES[case]
    key_before, serial_before, pid = (
        server.file(KEY).sha256sum,
        installed_chain(server)[0].serial_number,
        main_pid(server),
    )
    run = run_playbook(
        "--limit", SERVER, "-e", WHOLE_LIFETIME_WINDOW, *extra_vars(**overrides()), playbook=RENEW
    )
    assert run.rc != 0, run.output
    assert message in run.output, run.output
    assert "the installed certificate is unchanged" in run.output, run.output
    assert server.file(KEY).sha256sum == key_before
    assert installed_chain(server)[0].serial_number == serial_before
    assert main_pid(server) == pid
    ftp = login(pebble_root)
    try:
        assert presented_certificate(ftp).serial_number == serial_before
    finally:
        ftp.quit()
    assert challenge_records() == []
