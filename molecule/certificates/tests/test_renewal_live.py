"""playbooks/renew-certificates.yml on the server deployed by site.yml: nothing due changes nothing and
takes a few seconds (the figure is printed: the no-change benchmark), and a certificate inside its renewal
window is renewed."""

import re
import time

from conftest import PROJECT, certificate_chain, issue_short_lived, lab_host, run_playbook

RENEW = PROJECT / "playbooks" / "renew-certificates.yml"
HOST = "certs-srv"


def serial(host) -> int:
    return certificate_chain(host)[0].serial_number


def test_nothing_due_changes_nothing_and_is_quick():
    started = time.monotonic()
    run = run_playbook("--limit", HOST, playbook=RENEW)
    elapsed = time.monotonic() - started
    print(f"\nbenchmark: renew-certificates.yml, nothing due, one host: {elapsed:.1f} s")
    assert run.rc == 0, run.output
    assert run.changed() == {HOST: 0}, run.output
    assert re.search(r"not due \(\d+ days left\)", run.output), run.output
    assert elapsed < 120, run.output


def test_due_certificate_is_renewed():
    host = lab_host(HOST)
    short = issue_short_lived(HOST, playbook=PROJECT / "playbooks" / "rotate-certificates.yml")
    assert short.rc == 0, short.output
    before = serial(host)
    run = run_playbook("--limit", HOST, "-e", "ftps_certificate_renew_before_days=20", playbook=RENEW)
    assert run.rc == 0, run.output
    assert re.search(r"renewed \(36[45] days left\)", run.output), run.output
    assert serial(host) != before


def test_failed_renewal_exits_non_zero_and_keeps_the_certificate_in_service():
    """A renewal that fails on the way (here the organization CA cannot be created on the controller: its
    folder would be under /proc) fails the run, names the host as failed with its days left, and leaves the
    installed key and certificate as they were, the server running."""
    host = lab_host(HOST)
    key_before = host.file("/etc/ftpsd/tls/server.key").sha256sum
    before = serial(host)
    run = run_playbook(
        "--limit",
        HOST,
        *("-e", "ftps_certificate_mode=internal_ca"),
        *("-e", "ftps_certificate_ca_dir=/proc/no-ca-can-live-here"),
        *("-e", "ftps_certificate_ca_passphrase=a-passphrase-of-enough-length"),
        playbook=RENEW,
    )
    assert run.rc != 0, run.output
    assert re.search(r"failed: .* \(\d+ days left\)", run.output), run.output
    assert "certificate renewal failed" in run.output, run.output
    assert serial(host) == before
    assert host.file("/etc/ftpsd/tls/server.key").sha256sum == key_before
    assert host.service("ftpsd").is_running
