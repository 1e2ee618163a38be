"""Bad inventory variables stop site.yml before any host is touched, with a message that says what to fix.

Two real lab hosts; the bad value is set for the second one only, so the test also proves that one bad host
stops the run for all (any_errors_fatal). The playbook runs for real (no --check): only the validation
play may run, and afterwards neither host has any trace of a deployment.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_TOOL = REPO / "tests" / "lab" / "lab"
LAB = "t-validate"
GOOD_HOST, BAD_HOST = "valid-a", "valid-b"
DEPLOY_PLAY = "PLAY [Deploy FTPS servers]"
# Anything the deploy play would leave on a host.
UNTOUCHED = "test ! -e /etc/ftpsd && test ! -e /opt/ftpsd && test ! -e /srv/ftps && ! getent passwd ftpsd"

USER = {"name": "fbt_admin", "password": "{{ vault_ftps_passwords.fbt_admin }}", "home": "/srv/ftps/shared"}


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The lab inventory's group_vars (vault included) over two freshly booted hosts."""
    inv = tmp_path_factory.mktemp("inventory")
    subprocess.run(
        [LAB_TOOL, "--lab", LAB, "up", GOOD_HOST, BAD_HOST, "--inventory", inv / "hosts.yml"],
        check=True,
        capture_output=True,
    )
    shutil.copytree(REPO / "inventories" / "lab" / "group_vars", inv / "group_vars")
    (inv / "host_vars").mkdir()
    yield inv
    subprocess.run([LAB_TOOL, "--lab", LAB, "down"], check=True, capture_output=True)


def site(inventory: Path, bad_vars: dict, *options: str) -> subprocess.CompletedProcess[str]:
    (inventory / "host_vars" / f"{BAD_HOST}.yml").write_text(yaml.safe_dump(bad_vars))
    return subprocess.run(
        ["ansible-playbook", "-i", inventory, "site.yml", *options],
        cwd=REPO,  # ansible.cfg there names the lab vault password file
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def untouched(host: str) -> bool:
    return subprocess.run([LAB_TOOL, "--lab", LAB, "ssh", host, UNTOUCHED], check=False).returncode == 0


# A valid acme-mode host (the names in the zone, no IP address); each ACME case spoils one setting.
ACME = {
    "ftps_certificate_mode": "acme",
    "ftps_certificate_common_name": "ftp.example.com",
    "ftps_certificate_subject_alt_names": ["ftp.example.com", "ftps.site-b.example.com"],
    "ftps_certificate_acme_directory": "https://acme.example.com/directory",
    "ftps_certificate_acme_terms_agreed": True,
    "ftps_certificate_acme_account_passphrase": "a-test-passphrase-of-length",
    "ftps_certificate_acme_dns_server": "192.0.2.53",
    "ftps_certificate_acme_dns_zone": "example.com",
    "ftps_certificate_acme_tsig_key_name": "ftps-acme",
    "ftps_certificate_acme_tsig_key_secret": "Ks9RyUHupp2E07t+IPF5JCumJyTVPAytjNbqwk9btIc=",
}
ACME_CASES = {
    "directory over http": (
        {"ftps_certificate_acme_directory": "http://acme.example.com/directory"},
        "ftps_certificate_acme_directory 'http://acme.example.com/directory' must be the https URL",
    ),
    "no directory": ({"ftps_certificate_acme_directory": ""}, "ftps_certificate_acme_directory '' must be"),
    "terms not agreed": (
        {"ftps_certificate_acme_terms_agreed": False},
        "ftps_certificate_acme_terms_agreed must",
    ),
    "short account passphrase": (
        {"ftps_certificate_acme_account_passphrase": "short"},
        "needs ftps_certificate_acme_account_passphrase, at least 16 characters",
    ),
    "broken TSIG algorithm": (
        {"ftps_certificate_acme_tsig_algorithm": "hmac-md5"},
        "ftps_certificate_acme_tsig_algorithm must be one of",
    ),
    "no TSIG secret": (
        {"ftps_certificate_acme_tsig_key_secret": ""},
        "ftps_certificate_acme_tsig_key_secret hold",
    ),
    "no zone": (
        {"ftps_certificate_acme_dns_zone": ""},
        "ftps_certificate_acme_dns_zone '' must be the DNS zone",
    ),
    "name outside the zone": (
        {"ftps_certificate_extra_subject_alt_names": ["ftp.example.org"]},
        "names inside ftps_certificate_acme_dns_zone (example.com): DNS:ftp.example.org",
    ),
    "zone name that only ends like the zone": (
        {"ftps_certificate_subject_alt_names": ["ftp.badexample.com"]},
        "DNS:ftp.badexample.com",
    ),
    "IP address in the names": (
        {"ftps_certificate_subject_alt_names": ["ftp.example.com", "192.0.2.10"]},
        "IP:192.0.2.10 in ftps_certificate_subject_alt_names",
    ),
    "no DNS server": (
        {"ftps_certificate_acme_dns_server": ""},
        "ftps_certificate_acme_dns_server '' must be",
    ),
}

CASES = {
    "passive start above end": (
        {"ftps_server_passive_port_start": 60000, "ftps_server_passive_port_end": 50000},
        "Passive port range 60000-50000 is invalid",
    ),
    "passive range below 1024": (
        {"ftps_server_passive_port_start": 900, "ftps_server_passive_port_end": 1000},
        "1024 <= start <= end <= 65535",
    ),
    "passive range above 65535": (
        {"ftps_server_passive_port_start": 65000, "ftps_server_passive_port_end": 70000},
        "1024 <= start <= end <= 65535",
    ),
    "control port inside the passive range": (
        {"ftps_server_explicit_port": 50021},
        "Ports overlap or are out of range",
    ),
    "implicit port equal to explicit port": (
        {"ftps_server_implicit_port": 21},
        "Ports overlap or are out of range",
    ),
    "port of the wrong type": (
        {"ftps_server_explicit_port": "twenty-one"},
        "ftps_server_explicit_port",
    ),
    "user without a password": (
        {"ftps_server_users": [{"name": "nopass", "home": "/srv/ftps/x", "permissions": "full"}]},
        "ftps_server_users[0] (nopass): no password",
    ),
    "unknown permission profile": (
        {"ftps_server_users": [{**USER, "permissions": "superuser"}]},
        "unknown profile 'superuser'",
    ),
    "duplicate user names": (
        {"ftps_server_users": [{**USER, "permissions": "full"}, {**USER, "permissions": "read_only"}]},
        "ftps_server_users[1] (fbt_admin): duplicate user name",
    ),
    "home outside the data root": (
        {"ftps_server_users": [{**USER, "home": "/etc", "permissions": "full"}]},
        "home '/etc' is outside ftps_server_data_root",
    ),
    "extra folder outside the data root": (
        {"ftps_server_folders": [{"path": "/var/tmp/drop"}]},
        "ftps_server_folders[0]: path '/var/tmp/drop' is outside ftps_server_data_root",
    ),
    "data root hidden by ProtectHome": (
        {"ftps_server_data_root": "/home/ftps", "ftps_server_users": [{**USER, "home": "/home/ftps/a"}]},
        "not under /home, /root or /run/user",
    ),
    "PROXY v2 sender not an address or network": (
        {"ftps_server_proxy_protocol_from": ["198.18.0.10", "198.18.0.0/33"]},
        "ftps_server_proxy_protocol_from[1]: '198.18.0.0/33' is not a network in CIDR",
    ),
    "masquerade address not IPv4": (
        {"ftps_server_masquerade_address": "ftp.example.com"},
        "ftps_server_masquerade_address (ftp.example.com) empty or an IPv4 address",
    ),
    "negative login cache lifetime": (
        {"ftps_server_login_cache_ttl": -1},
        "ftps_server_login_cache_ttl (-1) must be 0 (no login cache) or a number of seconds",
    ),
    "malformed allowed network": (
        {"ftps_server_users": [{**USER, "permissions": "full", "allowed_networks": ["198.18.0.0/33"]}]},
        "ftps_server_users[0] (fbt_admin): allowed_networks[0]: '198.18.0.0/33' is not a network in CIDR",
    ),
    "allowed network with host bits": (
        {"ftps_server_users": [{**USER, "permissions": "full", "allowed_networks": ["198.18.0.1/24"]}]},
        "did you mean 198.18.0.0/24?",
    ),
    "allowed networks not a list": (
        {
            "ftps_server_users": [
                {**USER, "permissions": "full", "allowed_networks": {"office": "198.18.0.0/24"}}
            ]
        },
        "allowed_networks",
    ),
    "server upload rate not a number": (
        {"ftps_server_upload_rate": "fast"},
        "ftps_server_upload_rate",
    ),
    "negative server download rate": (
        {"ftps_server_download_rate": -1},
        "ftps_server_download_rate",
    ),
    "user rate not a number": (
        {"ftps_server_users": [{**USER, "permissions": "full", "download_rate": "quick"}]},
        "download_rate",
    ),
    "negative partial upload lifetime": (
        {"ftps_server_partial_upload_ttl": -1},
        "ftps_server_partial_upload_ttl (-1) must be 0 (interrupted uploads are discarded)",
    ),
    "negative quota size": (
        {"ftps_server_quotas": [{"path": "/srv/ftps/shared", "max_bytes": -5}]},
        "max_bytes",
    ),
    "negative quota file count": (
        {"ftps_server_quotas": [{"path": "/srv/ftps/shared", "max_files": -1}]},
        "ftps_server_quotas[0]: max_files must be 0 (no limit) or a number of files",
    ),
    "quota on a folder nobody uploads into": (
        {"ftps_server_quotas": [{"path": "/srv/ftps/elsewhere", "max_bytes": "1G"}]},
        "ftps_server_quotas[0]: path '/srv/ftps/elsewhere' is not a user home or an ftps_server_folders path",
    ),
    "nested quotas": (
        {
            "ftps_server_quotas": [
                {"path": "/srv/ftps/shared", "max_bytes": "1G"},
                {"path": "/srv/ftps/shared/incoming", "max_files": 10},
            ]
        },
        "ftps_server_quotas[1]: path '/srv/ftps/shared/incoming'"
        " and ftps_server_quotas[0] ('/srv/ftps/shared') are nested",
    ),
    "metrics address not an IP address": (
        {"ftps_server_metrics_listen_address": "metrics.example.com"},
        "ftps_server_metrics_listen_address (metrics.example.com) must be an IP address",
    ),
    "metrics port out of range": (
        {"ftps_server_metrics_port": 70000},
        "ftps_server_metrics_port (70000) must be 0 (metrics off)",
    ),
    "metrics port inside the passive range": (
        {"ftps_server_metrics_port": 50100},
        "ftps_server_metrics_port (50100) must be 0 (metrics off)",
    ),
    "metrics port equal to the implicit port": (
        {"ftps_server_metrics_port": 990},
        "ftps_server_metrics_port (990) must be 0 (metrics off)",
    ),
    "metrics on a network address without monitoring networks": (
        {"ftps_server_metrics_listen_address": "::"},
        "ftps_monitoring_networks must list the networks",
    ),
    "monitoring network with host bits": (
        {"ftps_server_metrics_listen_address": "0.0.0.0", "ftps_monitoring_networks": ["198.18.0.1/24"]},
        "firewall_restricted_tcp_ports[0] (port 9821): sources[0]: '198.18.0.1/24' is not a network",
    ),
    "root as the service account": (
        {"ftps_server_uid": 0},
        "ftps_server_uid and ftps_server_gid must be null (the system picks) or ids from 1 to 4294967294",
    ),
    "drain timeout not a number of seconds": (
        {"ftps_rollout_drain_timeout": "5m"},
        "ftps_rollout_drain_timeout must be a whole number of seconds >= 0",
    ),
    "enable timeout zero": (
        {"ftps_rollout_enable_timeout": 0},
        "ftps_rollout_enable_timeout must be a whole number of seconds > 0",
    ),
    "no present user": (
        {"ftps_server_users": [{"name": "gone", "state": "absent"}]},
        "ftps_server_users has no present user",
    ),
    **{f"acme: {name}": ({**ACME, **bad}, message) for name, (bad, message) in ACME_CASES.items()},
}


@pytest.mark.parametrize(("bad_vars", "message"), list(CASES.values()), ids=list(CASES))
def test_bad_variables_stop_the_run_before_any_change(inventory, bad_vars, message):
    result = site(inventory, bad_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert DEPLOY_PLAY not in output
    assert untouched(GOOD_HOST)
    assert untouched(BAD_HOST)


def test_metrics_off_needs_no_monitoring_networks(inventory):
    """Port 0 turns metrics off: a network listen address then opens nothing and needs no networks."""
    off = {"ftps_server_metrics_listen_address": "::", "ftps_server_metrics_port": 0}
    result = site(inventory, off, "--check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert DEPLOY_PLAY in output


def test_good_variables_pass_validation(inventory):
    """The control: with the documented lab variables the deploy play starts (here in check mode)."""
    result = site(inventory, {}, "--check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert DEPLOY_PLAY in output


def test_good_acme_variables_pass_validation(inventory):
    """The control of the ACME cases: the same host with valid acme variables reaches the deploy play."""
    result = site(inventory, ACME, "--check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert DEPLOY_PLAY in output
