"""The roles' filter plugins, called directly: what validation reports and what the deployment is made of."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from ftpsd.passwords import verify_password

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load(role: str) -> ModuleType:
    path = ROLES / role / "filter_plugins" / f"{role}.py"
    spec = importlib.util.spec_from_file_location(f"{role}_filters", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


server = load("ftps_server")
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
