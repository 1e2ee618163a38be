"""The installed ftps-doctor command: exit codes, JSON, and the ways a password may (not) be given."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("doctor_fixtures")

from conftest import PASSWORDS  # noqa: E402
from doctor_fixtures import run_cli, run_cli_json  # noqa: E402

pytestmark = pytest.mark.live
pytest_plugins = ["doctor_fixtures"]


def target(setup):
    return ["127.0.0.1", "--port", str(setup.explicit_port), "--ca", str(setup.cert), "--timeout", "5"]


def test_json_report_of_a_healthy_server(healthy, tmp_path):
    secret = tmp_path / "password"
    secret.write_text(PASSWORDS["fbt_admin"] + "\n")
    code, report = run_cli_json(
        *target(healthy), "--user", "fbt_admin", "--password-file", str(secret), "--roundtrip"
    )
    assert code == 0
    assert report["tool"] == "ftps-doctor"
    assert report["status"] == "PASS"
    assert report["exit_code"] == 0
    assert report["target"] == {
        "host": "127.0.0.1",
        "port": healthy.explicit_port,
        "mode": "explicit",
        "user": "fbt_admin",
        "ca_file": str(healthy.cert),
    }
    assert [s["name"] for s in report["steps"]][-1] == "roundtrip"
    for entry in report["steps"]:
        assert set(entry) == {"name", "status", "diagnosis", "hint", "facts"}
        assert entry["status"] == "PASS"


def test_password_from_environment(healthy):
    code, report = run_cli_json(
        *target(healthy), "--user", "reader", env={"FTPS_DOCTOR_PASSWORD": PASSWORDS["reader"]}
    )
    assert code == 0, report
    assert report["steps"][4]["name"] == "login"
    assert report["steps"][4]["status"] == "PASS"


def test_text_report_of_a_wrong_password_from_stdin(healthy):
    code, out, _ = run_cli(
        *target(healthy), "--user", "fbt_admin", "--password-file", "-", stdin="wrong-one\n"
    )
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"ftps-doctor 127.0.0.1:{healthy.explicit_port} (explicit FTPS, user fbt_admin)"
    login = next(i for i, line in enumerate(lines) if line.startswith("FAIL login"))
    assert "530 Authentication failed" in lines[login]
    assert lines[login + 1].strip().startswith("fix: check the user name and its password")
    assert any(line.startswith("SKIP protection") for line in lines)
    assert lines[-1].startswith("result: FAIL")
    assert "wrong-one" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "fbt_admin"], "--user needs a password"),
        (["--roundtrip"], "--roundtrip and --login-only need --user"),
        (["--user", "u", "--roundtrip", "--login-only"], "--roundtrip needs the data channel"),
        (["--json", "--brief"], "not allowed with argument"),
        (["--user", "a\r\nPASS x"], "--user must be one line"),
        (["--ca", "/nonexistent/ca.pem"], "--ca /nonexistent/ca.pem"),
        (["--port", "0"], "not a port number"),
        (["--timeout", "0"], "--timeout must be greater than 0"),
        (["--masquerade", "ftp.example.com"], "--masquerade ftp.example.com is not an IPv4 address"),
        (["--user", "fbt_admin", "--password-file", "/nonexistent/pw"], "--password-file /nonexistent/pw"),
    ],
)
def test_usage_errors_exit_2_without_touching_the_network(args, message):
    code, out, err = run_cli("198.18.251.1", *args, env={"FTPS_DOCTOR_PASSWORD": ""})
    assert code == 2
    assert message in err
    assert out == ""


@pytest.mark.parametrize(
    ("content", "message"), [("\n", "the password is empty"), ("a\rPASS b\n", "contains CR, LF or NUL")]
)
def test_unusable_password_file_is_a_usage_error(tmp_path, content, message):
    secret = tmp_path / "password"
    secret.write_text(content, newline="")
    code, _, err = run_cli("198.18.251.1", "--user", "u", "--password-file", str(secret))
    assert code == 2
    assert message in err


def test_login_only_for_an_account_that_may_not_list(healthy):
    env = {"FTPS_DOCTOR_PASSWORD": PASSWORDS["dropbox"]}
    code, report = run_cli_json(*target(healthy), "--user", "dropbox", "--login-only", env=env)
    assert code == 0
    assert report["status"] == "PASS"
    by_name = {s["name"]: s for s in report["steps"]}
    assert by_name["login"]["status"] == "PASS"
    assert by_name["protection"]["status"] == "PASS"
    for name in ("pasv", "epsv", "session_reuse"):
        assert by_name[name]["status"] == "SKIP"
        assert by_name[name]["diagnosis"] == "not run: --login-only"


def test_brief_text_leaves_out_the_facts(healthy):
    full = run_cli(*target(healthy))[1]
    brief = run_cli(*target(healthy), "--brief")[1]
    assert "sha256_fingerprint:" in full
    assert "sha256_fingerprint:" not in brief
    assert [line for line in full.splitlines() if not line.startswith(" ")] == brief.splitlines()
