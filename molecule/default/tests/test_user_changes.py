"""A password or permission change, deployed by site.yml, takes effect by a reload: sessions continue.

Runs site.yml twice against one host (the change, then the inventory's own state again), so it costs about
a minute; one host shows it.
"""

from __future__ import annotations

import dataclasses
import ftplib
import json
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from conftest import Deployment, login

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
INVENTORY = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "")) / "inventory"
HOST = "ftps-a"
RELOAD = "RUNNING HANDLER [ftps_server : Reload ftpsd]"
RESTART = "RUNNING HANDLER [ftps_server : Restart ftpsd]"


def site(extra_vars: Path | None = None) -> str:
    """Run site.yml against HOST (Molecule's inventory and vault settings); return its output."""
    command = ["ansible-playbook", "-i", str(INVENTORY), "site.yml", "--limit", HOST]
    if extra_vars:
        command += ["-e", f"@{extra_vars}"]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def users_vars(deployment: Deployment, changed: dict[str, dict[str, str]]) -> dict:
    """ftps_server_users as in the inventory, with some fields of some users replaced."""
    users = []
    for user in deployment.users.values():
        entry = {"name": user.name, "state": "present" if user.present else "absent"}
        if user.present:
            entry |= {"password": user.password, "home": user.home, "permissions": user.permissions}
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
