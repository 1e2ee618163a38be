"""allowed_networks from the inventory on a deployed host: the lab's partner may log in from the lab
networks (the controller, which is also what the health gate checked) and from nowhere else, not even the
server's own loopback, where another user still logs in."""

from __future__ import annotations

import dataclasses
import json

from conftest import Deployment, User, login, run_on_host

# Runs on the host: one FTPS login per line of stdin (address, user, password), prints each final reply.
LOOPBACK_LOGIN = """
import ftplib, json, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # the certificate is not what this checks; the login reply is
replies = []
for line in sys.stdin:
    address, user, password = json.loads(line)
    ftp = ftplib.FTP_TLS(context=context, timeout=30)
    ftp.connect(address, 21)
    ftp.auth()
    try:
        replies.append(ftp.login(user, password))
    except ftplib.error_perm as err:
        replies.append(str(err))
    ftp.close()
print(json.dumps(replies))
"""


def restricted_user(deployment: Deployment) -> User:
    return next(u for u in deployment.users.values() if u.present and u.allowed_networks)


def loopback_logins(deployment: Deployment, attempts: list[tuple[str, User]]) -> list[str]:
    stdin = "".join(json.dumps([address, user.name, user.password]) + "\n" for address, user in attempts)
    result = run_on_host(deployment, f"python3 -c '{LOOPBACK_LOGIN}'", stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_restricted_user_logs_in_from_the_lab_network(deployment):
    restricted = restricted_user(deployment)
    session = login(deployment, restricted)
    try:
        assert session.pwd() == "/"
    finally:
        session.quit()


def test_the_restricted_user_is_refused_from_loopback_as_a_wrong_password_is(host, deployment):
    restricted, other = restricted_user(deployment), deployment.user("full")
    since = host.check_output("date +%s")
    replies = loopback_logins(
        deployment,
        [
            ("127.0.0.1", restricted),
            ("::1", restricted),
            ("127.0.0.1", dataclasses.replace(restricted, password="not-the-password")),
            ("127.0.0.1", other),
        ],
    )
    right_password_v4, right_password_v6, wrong_password, other_user = replies
    assert right_password_v4.startswith("530")
    assert right_password_v6.startswith("530")
    assert right_password_v4 == right_password_v6 == wrong_password  # no oracle
    assert other_user.startswith("230")  # loopback logins as such work
    journal = host.check_output(f"journalctl -u ftpsd --since @{since} --no-pager -o cat")
    refusals = [line for line in journal.splitlines() if f"login of '{restricted.name}' refused: " in line]
    # The dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    assert any("127.0.0.1 is outside its allowed_networks (password not checked)" in r for r in refusals), (
        journal
    )
    assert any(
        "refused: ::1 is outside its allowed_networks (password not checked)" in r for r in refusals
    ), journal
