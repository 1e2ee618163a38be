"""Config validation: every error names the key path that is wrong."""

import copy
from pathlib import Path
from typing import Any

import pytest
from ftpsd.config import MOZILLA_INTERMEDIATE_CIPHERS, ConfigError, load_config, parse_config
from ftpsd.passwords import hash_password

HASH = hash_password("pw", salt=b"fixed-salt-16byt")


def base() -> dict[str, Any]:
    return {
        "tls": {"certificate": "/etc/ftpsd/tls/server.crt", "private_key": "/etc/ftpsd/tls/server.key"},
        "users": [
            {"name": "a", "password_hash": HASH, "home": "/srv/ftps/shared", "permissions": "full"},
            {"name": "b", "password_hash": HASH, "home": "/srv/ftps/shared", "permissions": "upload_only"},
        ],
    }


def test_defaults() -> None:
    config = parse_config(base())
    assert config.server.explicit_port == 21
    assert config.server.implicit_port == 0
    assert config.server.passive_ports == (50000, 60000)
    assert config.server.banner == "Secure file server ready."
    assert config.tls.min_version == "TLSv1.2"
    assert config.tls.ciphers == MOZILLA_INTERMEDIATE_CIPHERS
    assert config.tls.require_session_reuse is True
    assert config.limits.max_connections_per_ip == 20
    assert config.limits.ban_after_failures == 5
    assert config.limits.partial_upload_ttl == 86400
    assert config.logging.transfer_log == ""
    assert [u.permissions for u in config.users] == ["elradfmwMT", "ew"]
    assert (config.limits.upload_rate, config.limits.download_rate) == (0, 0)
    assert [(u.upload_rate, u.download_rate) for u in config.users] == [(0, 0), (0, 0)]


def test_bandwidth_limits_are_read() -> None:
    data = mutate("limits.upload_rate", 2_000_000)
    data["limits"]["download_rate"] = 3_000_000
    data["users"][1]["upload_rate"] = 100_000
    data["users"][1]["download_rate"] = 0
    config = parse_config(data)
    assert (config.limits.upload_rate, config.limits.download_rate) == (2_000_000, 3_000_000)
    assert [(u.upload_rate, u.download_rate) for u in config.users] == [(0, 0), (100_000, 0)]


def mutate(path: str, value: object) -> dict[str, Any]:
    data = copy.deepcopy(base())
    node: Any = data
    keys = path.replace("]", "").replace("[", ".").split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    last = keys[-1]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[last] = value
    return data


DELETE = object()

CASES = [
    ("server.explicit_port", 0, "server.explicit_port: 0 is not a port"),
    ("server.explicit_port", 70000, "server.explicit_port:"),
    ("server.explicit_port", "21", "server.explicit_port: expected int"),
    ("server.explicit_port", True, "server.explicit_port: expected int"),
    ("server.implicit_port", 21, "server.implicit_port: must differ"),
    ("server.implicit_port", 50010, "server.implicit_port: inside server.passive_ports"),
    ("server.explicit_port", 55000, "server.explicit_port: inside server.passive_ports"),
    ("server.passive_ports", [60000, 50000], "server.passive_ports: need 1024 <= first <= last"),
    ("server.passive_ports", [80, 90], "server.passive_ports: need 1024"),
    ("server.passive_ports", [50000], "server.passive_ports: expected [first, last]"),
    ("server.listen_address", "localhost", "server.listen_address: 'localhost' is not an IP"),
    ("server.masquerade_address", "2001:db8::1", "server.masquerade_address: "),
    ("server.banner", "vsFTPd 3.0.5 ready", "server.banner: must not contain a version"),
    ("server.banner", "hi\r\n230 fake", "server.banner: must be one line"),
    ("server.prot", 1, "server.prot: unknown key"),
    ("tls.min_version", "TLSv1.1", "tls.min_version: 'TLSv1.1' is not one of"),
    ("tls.certificate", DELETE, "tls.certificate: required key missing"),
    ("tls.certificate", "server.crt", "tls.certificate: 'server.crt' is not an absolute path"),
    ("tls.require_session_reuse", "yes", "tls.require_session_reuse: expected bool"),
    ("tls", DELETE, "tls: required key missing"),
    ("limits.max_connections", 0, "limits.max_connections: must be greater than 0"),
    ("limits.max_connections_per_ip", 1000, "limits.max_connections_per_ip: larger than"),
    ("limits.ban_after_failures", -1, "limits.ban_after_failures: must not be negative"),
    ("limits.idle_timout", 5, "limits.idle_timout: unknown key"),
    ("limits.partial_upload_ttl", -1, "limits.partial_upload_ttl: must not be negative"),
    ("limits.partial_upload_ttl", "1d", "limits.partial_upload_ttl: expected int, got str '1d'"),
    ("limits.partial_upload_ttl", 3.5, "limits.partial_upload_ttl: expected int, got float"),
    ("limits.partial_upload_ttl", True, "limits.partial_upload_ttl: expected int, got bool"),
    ("limits.upload_rate", -1, "limits.upload_rate: must not be negative"),
    ("limits.upload_rate", "1M", "limits.upload_rate: expected int, got str"),
    ("limits.download_rate", True, "limits.download_rate: expected int, got bool"),
    ("limits.download_rate", 1.5e6, "limits.download_rate: expected int, got float"),
    ("logging.level", "verbose", "logging.level: 'verbose' is not one of"),
    ("logging.transfer_log", "rel/path", "logging.transfer_log: 'rel/path' is not an absolute path"),
    (
        "users[1].permissions",
        "uplod_only",
        "users[1].permissions: unknown profile 'uplod_only' (expected full",
    ),
    ("users[1].name", "a", "users[1].name: duplicate user name 'a'"),
    ("users[0].home", "srv/x", "users[0].home: 'srv/x' is not an absolute path"),
    (
        "users[0].password_hash",
        "hunter2",
        "users[0].password_hash: this is not a password hash; generate one with",
    ),
    (
        "users[0].password_hash",
        "$scrypt$ln=40,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        "users[0].password_hash:",
    ),
    ("users[0].passwd", "x", "users[0].passwd: unknown key"),
    ("users[1].upload_rate", -100, "users[1].upload_rate: must not be negative"),
    ("users[1].upload_rate", False, "users[1].upload_rate: expected int, got bool"),
    ("users[0].download_rate", "fast", "users[0].download_rate: expected int, got str"),
    ("users[0].download_rate", -1, "users[0].download_rate: must not be negative"),
    ("users[1].home", DELETE, "users[1].home: required key missing"),
    ("users", [], "users: expected at least one"),
    ("serveur", {}, "serveur: unknown key"),
]


@pytest.mark.parametrize(("path", "value", "message"), CASES, ids=[f"{c[0]}={c[1]!r}" for c in CASES])
def test_errors_name_the_key(path: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(mutate(path, value))
    assert str(info.value).startswith(message), str(info.value)


def test_unknown_profile_message_is_helpful() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(mutate("users[1].permissions", "uplod_only"))
    assert "full, read_only or upload_only" in str(info.value)
    assert "elradfmwMT" in str(info.value)


def test_load_config_reports_toml_syntax(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(path))


def test_explicit_letters_accepted() -> None:
    config = parse_config(mutate("users[0].permissions", "elr"))
    assert config.users[0].permissions == "elr"


def with_quotas(*quotas: dict[str, Any], **limits: object) -> dict[str, Any]:
    data = base()
    data["quotas"] = list(quotas)
    if limits:
        data["limits"] = limits
    return data


def test_quotas_default_to_none_and_parse() -> None:
    assert parse_config(base()).quotas == ()
    assert parse_config(base()).limits.quota_rescan_interval == 60
    config = parse_config(
        with_quotas({"path": "/srv/ftps/shared/"}, {"path": "/srv/ftps/in", "max_bytes": 10, "max_files": 2})
    )
    assert [(q.path, q.max_bytes, q.max_files) for q in config.quotas] == [
        ("/srv/ftps/shared", 0, 0),
        ("/srv/ftps/in", 10, 2),
    ]


QUOTA_CASES = [
    ([{"path": "/srv/a", "max_bytes": -1}], "quotas[0].max_bytes: must not be negative"),
    ([{"path": "/srv/a", "max_files": -5}], "quotas[0].max_files: must not be negative"),
    ([{"path": "/srv/a", "max_bytes": "1G"}], "quotas[0].max_bytes: expected int, got str"),
    ([{"path": "/srv/a", "max_files": 1.5}], "quotas[0].max_files: expected int, got float"),
    ([{"path": "/srv/a", "max_bytes": True}], "quotas[0].max_bytes: expected int, got bool"),
    ([{"path": "srv/a"}], "quotas[0].path: 'srv/a' is not an absolute path"),
    ([{"path": 5}], "quotas[0].path: expected str"),
    ([{"max_bytes": 5}], "quotas[0].path: required key missing"),
    ([{"path": "/srv/a", "max_size": 5}], "quotas[0].max_size: unknown key"),
    ([{"path": "/srv/a"}, {"path": "/srv/a/"}], "quotas[1].path: /srv/a is already quotas[0].path"),
    (
        [{"path": "/srv/a"}, {"path": "/srv/b"}, {"path": "/srv/a/in"}],
        "quotas[2].path: /srv/a/in and quotas[0]",
    ),
    (
        [{"path": "/srv/a/in"}, {"path": "/srv/a"}],
        "quotas[1].path: /srv/a and quotas[0].path /srv/a/in are nested",
    ),
    ([{"path": "/srv/ab"}, {"path": "/srv/a"}, {"path": "/"}], "quotas[2].path: / and quotas[0]"),
    (["/srv/a"], "quotas[0]: expected a table"),
]


@pytest.mark.parametrize(("quotas", "message"), QUOTA_CASES, ids=[str(c[1]) for c in QUOTA_CASES])
def test_quota_errors_name_the_key(quotas: list[Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_quotas(*quotas))
    assert str(info.value).startswith(message), str(info.value)


def test_sibling_quota_paths_with_a_common_prefix_are_not_nested() -> None:
    assert len(parse_config(with_quotas({"path": "/srv/a"}, {"path": "/srv/ab"})).quotas) == 2


@pytest.mark.parametrize(("value", "message"), [(0, "must be greater than 0"), ("60", "expected int")])
def test_quota_rescan_interval_is_checked(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^limits.quota_rescan_interval: {message}"):
        parse_config(with_quotas(quota_rescan_interval=value))


def test_quotas_must_be_tables() -> None:
    data = base()
    data["quotas"] = {"path": "/srv/a"}
    with pytest.raises(ConfigError, match=r"^quotas: expected list"):
        parse_config(data)
