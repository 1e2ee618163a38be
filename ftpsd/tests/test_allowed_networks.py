"""allowed_networks: the rule (IPv4, IPv6, IPv4-mapped clients of the dual-stack socket), its config
checks, and a live server that refuses a login from elsewhere exactly like a wrong password.
"""

from __future__ import annotations

import copy
import ftplib
import ipaddress
import subprocess
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, connect, new_setup
from ftpsd.authorizer import admits
from ftpsd.config import ConfigError, parse_config
from ftpsd.passwords import DUMMY_HASH
from ftpsd.settings import User


def user(*networks: str) -> User:
    return User(
        name="u",
        password_hash=DUMMY_HASH,
        home="/srv/ftps",
        permissions="elr",
        profile="read_only",
        allowed_networks=tuple(ipaddress.ip_network(n) for n in networks),
    )


@pytest.mark.parametrize(
    ("networks", "address", "allowed"),
    [
        ((), "203.0.113.7", True),  # empty list: today's behaviour, every address
        ((), "2001:db8::7", True),
        (("203.0.113.0/24",), "203.0.113.7", True),
        (("203.0.113.0/24",), "::ffff:203.0.113.7", True),  # IPv4 client on the dual-stack socket
        (("203.0.113.0/24",), "::ffff:198.51.100.7", False),
        (("203.0.113.0/24",), "198.51.100.7", False),
        (("203.0.113.0/24",), "2001:db8::7", False),
        (("2001:db8::/32",), "2001:db8::7", True),
        (("2001:db8::/32",), "2001:db9::7", False),
        (("2001:db8::/32",), "::ffff:203.0.113.7", False),
        # An IPv6 spelling of IPv4 networks is not how IPv4 clients are matched: they match IPv4 entries.
        (("::ffff:0:0/96",), "::ffff:203.0.113.7", False),
        (("198.51.100.0/24", "2001:db8::/32"), "::ffff:198.51.100.1", True),
        (("198.51.100.5/32",), "::ffff:198.51.100.5", True),
    ],
)
def test_rule(networks: tuple[str, ...], address: str, allowed: bool) -> None:
    assert admits(user(*networks).allowed_networks, address) is allowed


def config_with(networks: object) -> dict:
    users = [{"name": "a", "password_hash": DUMMY_HASH, "home": "/srv/a", "permissions": "full"}]
    if networks is not None:
        users[0]["allowed_networks"] = networks
    return {"tls": {"certificate": "/c.pem", "private_key": "/k.pem"}, "users": copy.deepcopy(users)}


def test_config_parses_networks() -> None:
    config = parse_config(config_with(["192.0.2.0/24", "2001:db8::/32", "198.51.100.9"]))
    assert config.users[0].allowed_networks == (
        ipaddress.ip_network("192.0.2.0/24"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("198.51.100.9/32"),
    )
    assert parse_config(config_with(None)).users[0].allowed_networks == ()


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        (["192.0.2.0/33"], r"users\[0\]\.allowed_networks\[0\]: '192.0.2.0/33' is not a network in CIDR"),
        (["10.0.0.0/8", "example.com"], r"users\[0\]\.allowed_networks\[1\]: 'example.com' is not a network"),
        (["192.0.2.1/24"], r"has host bits set\); did you mean 192.0.2.0/24\?"),
        ([24], r"users\[0\]\.allowed_networks\[0\]: expected str, got int 24"),
        ("192.0.2.0/24", r"users\[0\]\.allowed_networks: expected list"),
    ],
)
def test_config_errors_name_the_key(networks: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(config_with(networks))


# --- live: the real server on the dual-stack socket, so 127.0.0.1 arrives as ::ffff:127.0.0.1


def restricted_server(root: Path, networks: str) -> ServerProcess:
    setup = new_setup(root, ban_after_failures=3, max_connections_per_ip=100)
    setup.listen_address = "::"
    config = setup.render().replace('name = "reader"\n', f'name = "reader"\nallowed_networks = {networks}\n')
    setup.config_path.write_text(config)
    return ServerProcess(setup)


@pytest.fixture
def srv(tmp_path: Path):
    proc = restricted_server(tmp_path / "srv", '["127.0.0.2/32", "2001:db8::/32"]')
    yield proc
    proc.stop()


def refusal(srv: ServerProcess, password: str, source: str | None = None) -> str:
    ftp = connect(srv, source=source)
    try:
        with pytest.raises(ftplib.error_perm) as refused:
            ftp.login("reader", password)
        return str(refused.value)
    finally:
        ftp.close()


@pytest.mark.live
def test_login_from_elsewhere_is_a_wrong_password_logged_with_its_reason(srv: ServerProcess) -> None:
    right, wrong = PASSWORDS["reader"], "wrong-" + PASSWORDS["reader"]
    from_allowed = connect(srv, source="127.0.0.2")
    assert from_allowed.login("reader", right).startswith("230")  # ::ffff:127.0.0.2 matches 127.0.0.2/32
    from_allowed.close()
    outside_right = refusal(srv, right)  # the right password from 127.0.0.1
    assert outside_right == refusal(srv, wrong, source="127.0.0.2")  # same text as a wrong password
    assert outside_right.startswith("530")
    log = srv.log()
    assert "login of 'reader' refused: ::ffff:127.0.0.1 is outside its allowed_networks" in log
    assert "refused: ::ffff:127.0.0.2" not in log  # the wrong password was not blamed on the network
    # Other users are unrestricted, from the same address.
    connect(srv, user="fbt_admin").close()


@pytest.mark.live
def test_logins_from_elsewhere_count_towards_the_ban(srv: ServerProcess) -> None:
    """ban_after_failures = 3: three refused logins with the right password ban the address."""
    for _ in range(3):
        assert refusal(srv, PASSWORDS["reader"]).startswith("530")
    srv.wait_log("banning ::ffff:127.0.0.1 for 900s after 3 failed logins")
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        connect(srv)
    # The ban is of that address only; the allowed address still logs in.
    ok = connect(srv, source="127.0.0.2")
    assert ok.login("reader", PASSWORDS["reader"]).startswith("230")
    ok.close()


@pytest.mark.live
def test_curl_and_lftp_refused_from_elsewhere(srv: ServerProcess) -> None:
    url = f"ftp://127.0.0.1:{srv.setup.explicit_port}/"
    curl = ["curl", "-sS", "--ssl-reqd", "-k", "--max-time", "30", "-u", f"reader:{PASSWORDS['reader']}"]
    refused = subprocess.run([*curl, url], capture_output=True, text=True, check=False)
    assert refused.returncode == 67, refused.stderr  # CURLE_LOGIN_DENIED
    allowed = subprocess.run(
        [*curl, "--interface", "127.0.0.2", url], capture_output=True, text=True, check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    lftp = subprocess.run(
        [
            "lftp",
            "-c",
            "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; "
            "set net:max-retries 1; "
            f"open -u reader,{PASSWORDS['reader']} -p {srv.setup.explicit_port} 127.0.0.1; ls",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert lftp.returncode != 0
    assert "530" in lftp.stderr + lftp.stdout


@pytest.mark.live
def test_empty_list_keeps_todays_behaviour(tmp_path: Path) -> None:
    proc = restricted_server(tmp_path / "srv", "[]")
    try:
        connect(proc, user="reader").close()
    finally:
        proc.stop()
