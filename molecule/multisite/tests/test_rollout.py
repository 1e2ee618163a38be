"""The two-site rollout as the operator sees it: the summary, the report and the exports tell the truth."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from conftest import EPHEMERAL, REPORTS, SITES, served_certificate_sha256


def test_rollout_summary_lists_every_host_by_site():
    summary = json.loads((EPHEMERAL / "rollout-summary.json").read_text())
    assert set(summary["hosts"]) == {host for hosts in SITES.values() for host in hosts}  # no controller
    for site, hosts in SITES.items():
        for host in hosts:
            assert summary["hosts"][host]["site"] == site
            assert summary["hosts"][host]["status"] in {"updated", "unchanged"}, summary["hosts"][host]


def test_report_shows_the_fingerprint_each_host_really_serves(addresses):
    report = (REPORTS / "deployment-report.md").read_text()
    html = (REPORTS / "deployment-report.html").read_text()
    for host, address in addresses.items():
        row = next(line for line in report.splitlines() if line.startswith(f"| {host} |"))
        fingerprint = served_certificate_sha256(address)
        assert fingerprint in row, (host, fingerprint, row)
        assert fingerprint in html
        assert address in row
        assert ", 2001:2:" in row  # and its IPv6 address (lab hosts are dual-stack)


def test_report_names_each_hosts_debian_release():
    """molecule.yml puts one Debian 13 host in each site, beside a Debian 12 one."""
    report = (REPORTS / "deployment-report.md").read_text()
    releases = {"bj-1": "12", "bj-2": "13", "sh-1": "13", "sh-2": "12"}
    for host, release in releases.items():
        row = next(line for line in report.splitlines() if line.startswith(f"| {host} |"))
        assert row.split(" | ")[1].startswith(f"Debian {release}."), row


def test_report_groups_hosts_by_site():
    report = (REPORTS / "deployment-report.md").read_text()
    for site, hosts in SITES.items():
        section = report.split(f"## Site {site}", 1)[1].split("## Site ", 1)[0]
        for host in hosts:
            assert f"| {host} |" in section


def test_filezilla_exports_are_well_formed_and_list_the_hosts(addresses):
    for site, hosts in SITES.items():
        root = ET.parse(REPORTS / f"filezilla-{site}.xml").getroot()
        assert root.tag == "FileZilla3"
        servers = root.findall("./Servers/Folder/Server")
        explicit = [s for s in servers if s.findtext("Protocol") == "4"]  # FTP with required explicit TLS
        assert {s.findtext("Host") for s in explicit} == {addresses[h] for h in hosts}
        for server in servers:
            assert server.findtext("Protocol") in {"4", "3"}  # 3: implicit FTPS, where a host serves it
            assert server.findtext("PasvMode") == "MODE_PASSIVE"
            assert server.findtext("Logontype") == "2"  # ask for the password
            assert server.find("Pass") is None
            assert server.findtext("User")
