"""site.yml on a running server: a password or permission change takes effect by a reload (sessions
continue); check mode with --diff shows a change and makes none.

Runs site.yml twice against one host (the change, then the inventory's own state again), and once more in
check mode with --diff, so it costs about a minute and a half; one host shows it.
"""

from __future__ import annotations

import base64
import dataclasses
import ftplib
import hashlib
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from conftest import Deployment, login, run_on_host
from ftpsd.passwords import ScryptHash

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")) / "inventory"
HOST = "ftps-a"
RELOAD = "RUNNING HANDLER [ftps_server : Reload ftpsd]"
RESTART = "RUNNING HANDLER [ftps_server : Restart ftpsd]"
# What a passive range change would rewrite: the server's config, the firewall table, the local facts.
CHECK_MODE_WATCHED = (
    "/etc/ftpsd/ftpsd.toml",
    "/etc/nftables.d/ftps_firewall.nft",
    "/etc/ansible/facts.d/ftpsd.fact",
)


def site(extra_vars: Path | None = None, *options: str) -> str:
    """Run site.yml against HOST (Molecule's inventory and vault settings); return its output."""
    command = ["ansible-playbook", "-i", str(INVENTORY), "site.yml", "--limit", HOST, *options]
    if extra_vars:
        command += ["-e", f"@{extra_vars}"]
    plain = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}  # Molecule forces colour on
    result = subprocess.run(
        command, cwd=PROJECT, env=plain, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def users_vars(deployment: Deployment, changed: dict[str, dict[str, str]]) -> dict:
    """ftps_server_users as in the inventory, with some fields of some users replaced."""
    users = []
    for user in deployment.users.values():
        entry = {"name": user.name, "state": "present" if user.present else "absent"}
        if user.present:
            entry |= {"password": user.password, "home": user.home, "permissions": user.permissions}
            entry |= {"allowed_networks": list(user.allowed_networks)}
        users.append(entry | changed.get(user.name, {}))
    return {"ftps_server_users": users}


def main_pid(host) -> str:
    return host.check_output("systemctl show -p MainPID --value ftpsd")


def test_password_and_permission_changes_reload_without_dropping_sessions(host, deployment, tmp_path):
    if host.backend.get_hostname() != HOST:
        pytest.skip(f"shown on {HOST}")
    audit, uploader = deployment.user("read_only"), deployment.user("upload_only")
    new_password = secrets.token_urlsafe(18)
    changes = tmp_path / "changes.json"
    changes.touch(mode=0o600)  # lab passwords, on the controller only for the next seconds
    changes.write_text(
        json.dumps(
            users_vars(
                deployment,
                {audit.name: {"password": new_password}, uploader.name: {"permissions": "read_only"}},
            )
        )
    )
    session = login(deployment, deployment.user("full"))
    pid = main_pid(host)
    try:
        output = site(changes)
    finally:
        changes.unlink()
    try:
        assert RELOAD in output
        assert RESTART not in output
        assert main_pid(host) == pid
        assert "incoming" in session.nlst()  # the session opened before the change goes on
        login(deployment, dataclasses.replace(audit, password=new_password)).close()
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            login(deployment, audit)
        reader = login(deployment, uploader)
        assert "incoming" in reader.nlst()  # read_only now: listing works
        reader.close()
    finally:
        session.close()
        restored = site()
    assert RELOAD in restored
    assert RESTART not in restored
    login(deployment, audit).close()


def test_scrypt_hash_of_earlier_versions_verifies_until_a_run_replaces_it(host, deployment):
    """A config written before argon2id (scrypt N=2^15) keeps working; the next run rewrites only the hash."""
    if host.backend.get_hostname() != HOST:
        pytest.skip(f"shown on {HOST}")
    config = "/etc/ftpsd/ftpsd.toml"
    current = host.file(config).content_string
    user = deployment.user("full")
    argon2 = current.split(f'name = "{user.name}"\npassword_hash = "', 1)[1].split('"', 1)[0]
    assert argon2.startswith("$argon2id$")
    salt = base64.b64decode(argon2.split("$")[4] + "==")
    key = hashlib.scrypt(user.password.encode(), salt=salt, n=1 << 15, r=8, p=1, maxmem=64 << 20, dklen=32)
    legacy = current.replace(argon2, ScryptHash(15, 8, 1, salt, key).encode())
    # cat keeps the file's owner and mode: only its content is the old one.
    written = run_on_host(deployment, f"cat > {config} && systemctl reload ftpsd", stdin=legacy)
    assert written.returncode == 0, written.stderr
    assert "$scrypt$ln=15,r=8,p=1$" in host.file(config).content_string
    # The old hash verifies on the live server (the login cache cannot answer: its keys include the hash).
    login(deployment, user).close()
    output = site()
    assert RELOAD in output
    assert RESTART not in output
    assert host.file(config).content_string == current  # the hash again, and nothing else changed
    login(deployment, user).close()


def test_check_mode_with_diff_shows_a_change_makes_none_and_prints_no_secret(host, deployment, tmp_path):
    """--check --diff with a narrower passive range: the firewall's diff shows it, the host keeps its
    files, rules and process, and neither a password nor a hash reaches the output."""
    if host.backend.get_hostname() != HOST:
        pytest.skip(f"shown on {HOST}")
    first, last = deployment.passive
    narrower = f"{first}-{first + 99}"
    changes = tmp_path / "changes.json"
    changes.write_text(json.dumps({"ftps_server_passive_port_end": first + 99}))
    before = {path: host.file(path).sha256sum for path in CHECK_MODE_WATCHED}
    pid = main_pid(host)

    output = site(changes, "--check", "--diff")

    lines = output.splitlines()
    assert any(line.startswith("-") and f"{first}-{last}" in line for line in lines), output
    assert any(line.startswith("+") and narrower in line for line in lines), output
    assert {path: host.file(path).sha256sum for path in CHECK_MODE_WATCHED} == before
    assert f"{first}-{last}" in host.check_output("nft list chain inet ftps_firewall input")
    assert main_pid(host) == pid
    assert "$argon2id$" not in output
    for user in deployment.users.values():
        if user.password:
            assert user.password not in output
