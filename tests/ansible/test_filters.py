"""The roles' filter plugins, called directly: what validation reports and what the deployment is made of."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from ansible.errors import AnsibleFilterError
from ftpsd.passwords import verify_password

from ftpsd import permissions

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"


def load(role: str, plugin: str | None = None) -> ModuleType:
    plugin = plugin or role
    path = ROLES / role / "filter_plugins" / f"{plugin}.py"
    spec = importlib.util.spec_from_file_location(f"{plugin}_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


server = load("ftps_server")
build = load("ftps_server", "ftps_server_build")
firewall = load("firewall")

ADMIN = {"name": "admin", "password": "s3cret", "home": "/srv/ftps/shared", "permissions": "full"}
READER = {"name": "reader", "password": "s3cret", "home": "/srv/ftps/shared", "permissions": "read_only"}


def test_hashes_verify_and_are_stable_per_host_and_user():
    first = server.accounts([ADMIN, READER], "host-a")
    assert server.accounts([ADMIN, READER], "host-a") == first  # re-runs change nothing
    assert all(verify_password("s3cret", a["password_hash"]) for a in first)
    other_host = server.accounts([ADMIN], "host-b")[0]["password_hash"]
    hashes = {first[0]["password_hash"], first[1]["password_hash"], other_host}
    assert len(hashes) == 3  # same password, different user or host: different hash


def test_salt_does_not_depend_on_the_password():
    new_password = server.accounts([{**ADMIN, "password": "changed"}], "host-a")[0]["password_hash"]
    old_password = server.accounts([ADMIN], "host-a")[0]["password_hash"]
    assert new_password.split("$")[3] == old_password.split("$")[3]
    assert new_password != old_password


def test_accounts_leave_out_removed_users_and_passwords():
    accounts = server.accounts([ADMIN, {"name": "gone", "state": "absent"}], "host-a")
    assert [a["name"] for a in accounts] == ["admin"]
    assert "password" not in accounts[0]


@pytest.mark.parametrize(
    ("users", "folders", "expected"),
    [
        ([ADMIN, READER], [], []),
        ([ADMIN, ADMIN], [], ["users[1] (admin): duplicate user name"]),
        ([{**ADMIN, "password": ""}], [], ["users[0] (admin): no password"]),
        ([{**ADMIN, "permissions": "root"}], [], ["users[0] (admin): permissions: unknown profile 'root'"]),
        ([{**ADMIN, "home": "/srv/ftps/../etc"}], [], ["home '/srv/ftps/../etc' is outside"]),
        ([{**ADMIN, "home": "/srv/ftpsother"}], [], ["home '/srv/ftpsother' is outside"]),
        ([{**ADMIN, "home": "shared"}], [], ["home 'shared' is outside"]),
        ([{"name": "x", "password": "p"}], [], ["no permissions", "no home"]),
        ([ADMIN], [{"path": "/tmp/x"}], ["ftps_server_folders[0]: path '/tmp/x' is outside"]),
        ([{"name": "gone", "state": "absent"}], [], []),
        ([{**ADMIN, "allowed_networks": ["192.0.2.0/24", "2001:db8::/32"]}], [], []),
        (
            [{**ADMIN, "allowed_networks": ["192.0.2.0/24", "192.0.2.7/24", "office"]}],
            [],
            [
                "users[0] (admin): allowed_networks[1]: '192.0.2.7/24' is not a network in CIDR notation",
                "users[0] (admin): allowed_networks[2]: 'office' is not a network",
            ],
        ),
    ],
)
def test_data_problems(users, folders, expected):
    problems = server.data_problems(users, folders, "/srv/ftps")
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_folder_plan_owns_folders_as_permissions_require():
    uploader = {**ADMIN, "name": "up", "home": "/srv/ftps/drop/in", "permissions": "upload_only"}
    reader = {**READER, "home": "/srv/ftps/reports"}
    folders = [{"path": "/srv/ftps/drop/in/sorted"}, {"path": "/srv/ftps/drop/in/locked", "writable": False}]
    plan = server.folder_plan([uploader, reader], folders, "/srv/ftps/")
    assert plan == [
        {"path": "/srv/ftps", "writable": False},
        {"path": "/srv/ftps/drop", "writable": False},  # between root and a home: nobody's home
        {"path": "/srv/ftps/reports", "writable": False},  # only read
        {"path": "/srv/ftps/drop/in", "writable": True},  # upload_only writes
        {"path": "/srv/ftps/drop/in/locked", "writable": False},  # declared wins
        {"path": "/srv/ftps/drop/in/sorted", "writable": True},  # below a writer's home
    ]


def test_accounts_carry_allowed_networks():
    restricted = {**ADMIN, "allowed_networks": ["192.0.2.0/24"]}
    assert [a["allowed_networks"] for a in server.accounts([restricted, READER], "host-a")] == [
        ["192.0.2.0/24"],
        [],
    ]


def test_the_health_gate_checks_only_users_the_controller_may_log_in_as():
    partner = {**ADMIN, "name": "partner", "allowed_networks": ["198.18.0.0/15", "2001:2::/48"]}
    users = [ADMIN, partner]
    names = [[u["name"] for u in server.admitted(users, address)] for address in ("198.18.3.1", "2001:2::9")]
    assert names == [["admin", "partner"], ["admin", "partner"]]
    assert [u["name"] for u in server.admitted(users, "192.0.2.1")] == ["admin"]
    assert [u["name"] for u in server.admitted(users, "")] == ["admin"]  # the controller's address unknown


def test_ip_version():
    assert [server.ip_version(a) for a in ("198.18.0.1", "::", "ftp.example.com", "")] == [4, 6, 0, 0]


@pytest.mark.parametrize(
    ("ports", "ranges", "expected"),
    [
        ([22, 21, 990], [{"start": 50000, "end": 60000}], []),
        ([22, 22], [], ["port 22 overlaps port 22"]),
        ([21, 50010], [{"start": 50000, "end": 60000}], ["port 50010 overlaps range 50000-60000"]),
        ([22], [{"start": 60000, "end": 50000}], ["start is above end"]),
        ([0, 70000], [], ["port 0: ports must be 1-65535", "port 70000: ports must be 1-65535"]),
        ([22], [{"start": 1000, "end": 2000}, {"start": 1500, "end": 2500}], ["overlaps range 1000-2000"]),
    ],
)
def test_firewall_port_problems(ports, ranges, expected):
    problems = firewall.port_problems(ports, ranges)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_ip_loopback():
    addresses = ("127.0.0.1", "127.1.2.3", "::1", "::", "0.0.0.0", "198.18.0.1", "not-an-address")
    assert [server.ip_loopback(a) for a in addresses] == [True, True, True, False, False, False, False]


METRICS = {"port": 9821, "sources": ["198.18.0.5/32", "2001:2::/48"]}


@pytest.mark.parametrize(
    ("restricted", "expected"),
    [
        ([METRICS], []),
        ([{**METRICS, "port": 0}], ["(port 0): ports must be 1-65535"]),
        ([METRICS, METRICS], ["[1] (port 9821): listed twice"]),
        ([{**METRICS, "port": 22}], ["[0] (port 22): already open to everyone"]),
        ([{**METRICS, "port": 50100}], ["[0] (port 50100): already open to everyone"]),
        ([{**METRICS, "sources": []}], ["sources is empty"]),
        ([{**METRICS, "sources": ["198.18.0.5/24"]}], ["sources[0]: '198.18.0.5/24' is not a network"]),
        (
            [{**METRICS, "sources": ["2001:2::/48", "monitoring"]}],
            ["sources[1]: 'monitoring' is not a network"],
        ),
    ],
)
def test_firewall_restricted_problems(restricted, expected):
    problems = firewall.restricted_problems(restricted, [22, 21], [{"start": 50000, "end": 60000}])
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_firewall_restricted_rules_split_the_families():
    assert firewall.restricted_rules([METRICS]) == [
        {"port": "9821", "family": "ipv4", "source": "198.18.0.5/32"},
        {"port": "9821", "family": "ipv6", "source": "2001:2::/48"},
    ]


SLICE = {"start": 50000, "end": 50999, "sources": ["198.18.0.2/32"]}


def test_firewall_restricted_ranges_are_written_start_end():
    assert firewall.restricted_rules([], [SLICE]) == [
        {"port": "50000-50999", "family": "ipv4", "source": "198.18.0.2/32"}
    ]


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([SLICE], []),
        ([{**SLICE, "start": 51000}], ["range 51000-50999): start is above end"]),
        ([{**SLICE, "start": 65000, "end": 70000}], ["ports must be 1-65535"]),
        ([SLICE, {**SLICE, "start": 50999, "end": 51000}], ["[1] (range 50999-51000): listed twice"]),
        ([{**SLICE, "start": 9800, "end": 9830}], ["range 9800-9830): listed twice"]),
        ([{**SLICE, "start": 20, "end": 30}], ["range 20-30): already open to everyone"]),
        ([{**SLICE, "start": 59000, "end": 61000}], ["already open to everyone"]),
        ([{**SLICE, "sources": []}], ["sources is empty"]),
    ],
)
def test_firewall_restricted_range_problems(ranges, expected):
    problems = firewall.restricted_problems([METRICS], [22, 21], [{"start": 60000, "end": 60010}], ranges)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_permission_rules_come_from_ftpsd_itself():
    """The filters hold no copy of the rules: they answer with ftpsd.permissions, installed or from source."""
    assert server._permissions() is permissions
    source = importlib.util.spec_from_file_location("source_copy", server._PERMISSIONS_SOURCE)
    module = importlib.util.module_from_spec(source)
    source.loader.exec_module(module)
    assert module.PROFILES == permissions.PROFILES


@pytest.mark.parametrize("profile", [*permissions.PROFILES, "elr", "ew", "elrw", "elradfmw"])
def test_capabilities_are_ftpsd_s_for_every_profile(profile):
    assert server.capabilities(profile) == permissions.capabilities(profile)
    assert set(server.capabilities(profile)) == {"list", "read", "write", "overwrite", "delete"}


@pytest.mark.parametrize("bad", ["root", "", "elrx", "Full"])
def test_capabilities_refuse_unknown_profiles(bad):
    with pytest.raises(AnsibleFilterError, match=f"ftps_server_users permissions: unknown profile {bad!r}"):
        server.capabilities(bad)


@pytest.mark.parametrize("path", ["playbooks/tasks/ftps-doctor.yml", "playbooks/vars/doctor.yml"])
def test_health_gate_asks_the_filters_instead_of_naming_profiles(path):
    """A changed or new profile cannot desynchronise the gate: it names no profile and reads no letters."""
    text = (REPO / path).read_text()
    assert not [name for name in permissions.PROFILES if re.search(rf"\b{name}\b", text)]
    assert not re.search(r"'[elradfmwMT]' in", text)
    assert "ftps_server_capabilities" in text or "ftps_server_present_users" in text


def test_every_present_user_check_uses_the_one_filter():
    """ "Which users are present" is written once, in the filter, and used everywhere."""
    users = [ADMIN, {**READER, "state": "present"}, {"name": "gone", "state": "absent"}]
    assert [u["name"] for u in server.present_users(users)] == ["admin", "reader"]
    assert server.present_users([{"name": "gone", "state": "absent"}]) == []
    assert [u["name"] for u in server.public_users(users)] == ["admin", "reader"]  # built on present_users
    for path in [
        "roles/ftps_server/tasks/facts.yml",
        "roles/ftps_server/tasks/validate.yml",
        "playbooks/vars/doctor.yml",
    ]:
        text = (REPO / path).read_text()
        assert "ftps_server_present_users" in text or "ftps_server_public_users" in text, path
        assert "'present'" not in text, path


def test_requirements_markers_are_evaluated_for_the_target_python():
    """pip would evaluate them for the controller's Python 3.11: Debian 13 hosts would miss asyncore."""
    pins = ["pyftpdlib==2.2.0", 'pyasyncore==1.0.5 ; python_version >= "3.12"']
    assert build.requirements_for(pins, "3.11") == ["pyftpdlib==2.2.0"]
    assert build.requirements_for(pins, "3.13") == ["pyftpdlib==2.2.0", "pyasyncore==1.0.5"]
    with pytest.raises(AnsibleFilterError, match="is not a requirement"):
        build.requirements_for(["pyftpdlib=2.2.0"], "3.11")


def test_source_digest_follows_the_source_and_pins_not_caches(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "x.py").write_text("A = 1\n")
    first = build.source_digest(str(tmp_path), ["pyftpdlib==2.2.0"])
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert build.source_digest(str(tmp_path), ["pyftpdlib==2.2.0"]) == first
    assert build.source_digest(str(tmp_path), ["pyftpdlib==2.2.1"]) != first
    (tmp_path / "src" / "x.py").write_text("A = 2\n")
    assert build.source_digest(str(tmp_path), ["pyftpdlib==2.2.0"]) != first
    with pytest.raises(AnsibleFilterError, match="not a Python source tree"):
        build.source_digest(str(tmp_path / "src"))


def test_sizes_read_as_the_argument_spec_reads_them():
    assert [server.size(v) for v in (0, None, "", 1000, "512K", "10M", "1G")] == [
        0,
        0,
        0,
        1000,
        512 << 10,
        10 << 20,
        1 << 30,
    ]
    with pytest.raises(AnsibleFilterError, match="not a size in bytes"):
        server.size("fast")


def test_accounts_carry_rates_in_bytes_and_the_public_view_has_no_secret():
    limited = ADMIN | {"upload_rate": "2M", "download_rate": 4096}
    (account,) = server.accounts([limited], "host-a")
    assert (account["upload_rate"], account["download_rate"]) == (2 << 20, 4096)
    (public,) = server.public_users([limited])
    assert public == {key: value for key, value in account.items() if key != "password_hash"}
    assert "password" not in public
    assert server.public_users([READER])[0]["upload_rate"] == 0  # no limit of its own


@pytest.mark.parametrize(
    ("quotas", "expected"),
    [
        ([{"path": "/srv/ftps/shared/", "max_bytes": "1G", "max_files": 10}], []),
        ([{"path": "/srv/ftps/shared/incoming", "max_bytes": 0}], []),  # below a home
        ([{"path": "/srv/ftps/other"}], ["ftps_server_quotas[0]: path '/srv/ftps/other' is not a user home"]),
        ([{"path": "shared"}], ["ftps_server_quotas[0]: path 'shared' is not a user home"]),
        ([{"path": "/srv/ftps/shared", "max_files": -1}], ["ftps_server_quotas[0]: max_files must be 0"]),
        (
            [{"path": "/srv/ftps/shared"}, {"path": "/srv/ftps/shared/incoming"}],
            [
                "ftps_server_quotas[1]: path '/srv/ftps/shared/incoming'"
                " and ftps_server_quotas[0] ('/srv/ftps/shared') are nested"
            ],
        ),
        (
            [{"path": "/srv/ftps/shared/incoming"}, {"path": "/srv/ftps/shared/"}],
            [
                "ftps_server_quotas[1]: path '/srv/ftps/shared/'"
                " and ftps_server_quotas[0] ('/srv/ftps/shared/incoming') are nested"
            ],
        ),
        (
            [{"path": "/srv/ftps/shared"}, {"path": "/srv/ftps/shared"}],
            [
                "ftps_server_quotas[1]: path '/srv/ftps/shared'"
                " and ftps_server_quotas[0] ('/srv/ftps/shared') are the same folder"
            ],
        ),
    ],
)
def test_quota_problems(quotas, expected):
    problems = server.quota_problems(quotas, [ADMIN, READER], [{"path": "/srv/ftps/shared/incoming"}])
    assert len(problems) == len(expected)
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problem


def test_quotas_are_written_in_bytes():
    assert server.quotas([{"path": "/srv/ftps/shared/", "max_bytes": "10G"}]) == [
        {"path": "/srv/ftps/shared", "max_bytes": 10 << 30, "max_files": 0}
    ]
