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
