"""The deployed host: service, unit hardening, files, owners, modes, and no plain password anywhere."""

from __future__ import annotations

import tomllib

import pytest
from conftest import run_on_host

SERVICE = "ftpsd"
CONFIG = "/etc/ftpsd/ftpsd.toml"
CAP_NET_BIND_SERVICE = 1 << 10


def test_service_active_and_enabled(host):
    service = host.service(SERVICE)
    assert service.is_running
    assert service.is_enabled


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("Type", "notify"),
        ("User", "ftpsd"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("AmbientCapabilities", "cap_net_bind_service"),
        ("CapabilityBoundingSet", "cap_net_bind_service"),
        ("Restart", "on-failure"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ],
)
def test_unit_hardening(host, prop, value):
    shown = host.check_output(f"systemctl show -p {prop} --value {SERVICE}")
    assert sorted(shown.split()) == sorted(value.split())


def test_without_write_execute_memory_ftpsd_refuses_to_start(host):
    """Why the unit has no MemoryDenyWriteExecute=: ftpsd's TLS callbacks need it, and it says so at start."""
    result = host.run(
        "systemd-run --wait --pipe --quiet -p MemoryDenyWriteExecute=yes -p User=ftpsd "
        "/opt/ftpsd/venv/bin/ftpsd serve --config /etc/ftpsd/ftpsd.toml"
    )
    assert result.rc != 0
    assert "remove MemoryDenyWriteExecute= from its systemd unit" in result.stdout + result.stderr
    assert host.check_output(f"systemctl show -p MemoryDenyWriteExecute --value {SERVICE}") == "no"


def test_writable_paths_are_only_data_and_log(host, deployment):
    paths = host.check_output(f"systemctl show -p ReadWritePaths --value {SERVICE}").split()
    assert sorted(paths) == sorted([deployment.data_root, "/var/log/ftpsd"])


def test_process_is_unprivileged_and_confined(host):
    """What the kernel enforces on the running process, not just what the unit file says."""
    pid = host.check_output(f"systemctl show -p MainPID --value {SERVICE}")
    status = dict(
        line.split(":\t", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines()
    )
    assert status["Uid"].split()[0] == str(host.user("ftpsd").uid)
    assert int(status["CapEff"], 16) == CAP_NET_BIND_SERVICE
    assert int(status["CapBnd"], 16) == CAP_NET_BIND_SERVICE
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # filter mode: SystemCallFilter is active
    mounts = host.file(f"/proc/{pid}/mountinfo").content_string.splitlines()
    root = next(m for m in mounts if m.split()[4] == "/")
    assert root.split()[5].startswith("ro")  # ProtectSystem=strict


def test_service_account_cannot_log_in(host):
    user = host.user("ftpsd")
    assert user.shell == "/usr/sbin/nologin"
    assert user.group == "ftpsd"


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        ("/etc/ftpsd", "root", "ftpsd", 0o750),
        (CONFIG, "root", "ftpsd", 0o640),
        ("/etc/ftpsd/tls/server.key", "ftpsd", "ftpsd", 0o600),
        ("/etc/systemd/system/ftpsd.service", "root", "root", 0o644),
    ],
)
def test_file_owners_and_modes(host, path, owner, group, mode):
    f = host.file(path)
    assert f.exists
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_certificate_is_in_place(host):
    assert "BEGIN CERTIFICATE" in host.file("/etc/ftpsd/tls/server.crt").content_string


def test_data_folders_owned_as_permissions_require(host, deployment):
    """Writers' homes belong to the service account; read-only folders stay root's."""
    assert host.file(deployment.data_root).user == "root"
    shared = host.file(deployment.user("full").home)
    assert (shared.user, shared.group, shared.mode) == ("ftpsd", "ftpsd", 0o750)
    reports = host.file(deployment.user("full").home + "/reports")
    assert (reports.user, reports.group, reports.mode) == ("root", "ftpsd", 0o750)


def test_config_matches_inventory(host, deployment):
    config = tomllib.loads(host.file(CONFIG).content_string)
    present = {u.name: u for u in deployment.users.values() if u.present}
    assert {u["name"] for u in config["users"]} == set(present)
    for entry in config["users"]:
        assert entry["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert entry["home"] == present[entry["name"]].home
        assert entry["permissions"] == present[entry["name"]].permissions
    assert config["server"]["passive_ports"] == list(deployment.passive)
    assert config["server"]["implicit_port"] == deployment.implicit_port
    assert config["server"]["masquerade_address"] == deployment.masquerade


def test_same_password_gives_different_hashes_per_user(host):
    hashes = [u["password_hash"] for u in tomllib.loads(host.file(CONFIG).content_string)["users"]]
    assert len(set(hashes)) == len(hashes)


# Every regular file on the host, the journal in /run included; the strings to look for come on stdin.
_SEARCH_ALL_FILES = (
    "strings=$(cat); find / /run /tmp -xdev -type f -print0 2>/dev/null"
    ' | xargs -0 -r grep -laF -e "$strings" 2>/dev/null; true'
)


def test_no_plain_password_in_any_file(deployment):
    """Look for every password in every file; user names, which are in the config, prove the search works."""
    users = [u for u in deployment.users.values() if u.present]
    control = run_on_host(deployment, _SEARCH_ALL_FILES, stdin="\n".join(u.name for u in users))
    assert CONFIG in control.stdout.split()
    search = run_on_host(deployment, _SEARCH_ALL_FILES, stdin="\n".join(u.password for u in users))
    assert search.stdout == "", f"plain password found in: {search.stdout}"
