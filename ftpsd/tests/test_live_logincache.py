"""Live tests of the login cache: repeat logins are fast-pathed (counted in the log, never timed).

The server logs "password of 'user' accepted from the login cache" at debug level for each login that
skipped the KDF; the tests count those lines.
"""

from __future__ import annotations

import ftplib
import signal
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, connect, new_setup
from ftpsd.passwords import hash_password

pytestmark = pytest.mark.live

CACHED = "password of 'fbt_admin' accepted from the login cache"


def debug_server(root: Path, **limits: int) -> ServerProcess:
    setup = new_setup(root, ban_after_failures=1000, **limits)
    setup.config_path.write_text(setup.render().replace('level = "info"', 'level = "debug"'))
    return ServerProcess(setup)


def login(srv: ServerProcess, password: str = PASSWORDS["fbt_admin"]) -> str:
    ftp = connect(srv)
    try:
        return ftp.login("fbt_admin", password)
    finally:
        ftp.close()


@pytest.fixture
def srv(tmp_path: Path):
    proc = debug_server(tmp_path / "srv")
    yield proc
    proc.stop()


def test_second_login_is_fast_pathed_and_wrong_password_never(srv: ServerProcess) -> None:
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 0  # the first login paid the KDF
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 1
    for _ in range(2):
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            login(srv, "wrong-" + PASSWORDS["fbt_admin"])
    assert srv.log().count(CACHED) == 1
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 2


def test_reload_with_a_new_hash_drops_the_entry(srv: ServerProcess) -> None:
    assert login(srv).startswith("230")
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 1
    config = srv.setup.config_path.read_text()
    old_hash = config.split('name = "fbt_admin"\npassword_hash = "', 1)[1].split('"', 1)[0]
    new_hash = hash_password(PASSWORDS["fbt_admin"])  # same password, new salt: another stored hash
    srv.setup.config_path.write_text(config.replace(old_hash, new_hash))
    srv.signal(signal.SIGHUP)
    srv.wait_notify("READY=1")
    srv.wait_log("configuration reloaded")
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 1  # paid the KDF again against the new hash
    assert login(srv).startswith("230")
    assert srv.log().count(CACHED) == 2


def test_ttl_zero_turns_the_cache_off(tmp_path: Path) -> None:
    srv = debug_server(tmp_path / "srv", login_cache_ttl=0)
    try:
        for _ in range(3):
            assert login(srv).startswith("230")
        assert "logged in" in srv.log()
        assert srv.log().count(CACHED) == 0
    finally:
        srv.stop()
