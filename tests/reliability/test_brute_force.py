"""Brute force: wrong passwords from one address get it banned for the configured time, on both ports and
even with the right password, while a legitimate user from another address logs in normally; the ban is
logged. The attacker is the lab's second host (its own address, its own python3); the legitimate user is
this controller, on the lab bridge.
"""

from __future__ import annotations

import time

from ftps_clients import download_sha256, login, sha256, upload
from labhost import Deployment


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def test_brute_force_bans_the_address_for_the_configured_time(deployment: Deployment) -> None:
    server, attacker = deployment.server, deployment.client
    failures = deployment.settings["ftps_server_ban_after_failures"]
    duration = deployment.settings["ftps_server_ban_duration"]
    victim = deployment.users["fbt_admin"]
    host = server.address
    # Positive control: before the attack the attacker's address is served on both ports.
    assert attacker.remote_client("greeting", host=host, port=21).startswith("220")
    assert attacker.remote_client("greeting", host=host, port=990, implicit=True).startswith("220")
    cursor = server.journal_cursor()

    replies = attacker.remote_client(
        "failed_logins", host=host, user=victim.name, password=f"wrong-{victim.password}", count=failures
    )
    # The ban starts when the last failure is counted, about a second before its delayed 530 arrives.
    banned_at = time.monotonic()
    assert len(replies) == failures and all(r.startswith("530") for r in replies), replies

    assert attacker.remote_client("greeting", host=host, port=21).startswith("421 Too many failed logins")
    implicit = attacker.remote_client("greeting", host=host, port=990, implicit=True)
    assert "220" not in implicit and (implicit == "closed" or implicit.startswith("error:")), implicit
    assert "421" in attacker.remote_client("login", host=host, user=victim.name, password=victim.password)

    # Meanwhile the same account works from another address.
    with login(deployment, victim.name) as ftp:
        upload(ftp, "during-ban.txt", b"legitimate")
        assert download_sha256(ftp, "during-ban.txt") == sha256(b"legitimate")
        ftp.delete("during-ban.txt")

    journal = server.journal_after(cursor)
    # ftpsd listens on one dual-stack socket ("::"), where an IPv4 client's address is IPv4-mapped.
    seen_as = f"::ffff:{attacker.address}"
    assert f"banning {seen_as} for {duration}s after {failures} failed logins" in journal, journal
    assert f"refused connection from banned address {seen_as}" in journal, journal

    sleep_until(banned_at + duration - 6)
    assert attacker.remote_client("greeting", host=host, port=21).startswith("421"), "ban ended too early"
    sleep_until(banned_at + duration + 2)
    reply = attacker.remote_client("login", host=host, user=victim.name, password=victim.password)
    assert reply.startswith("230"), f"still refused after the ban duration: {reply}"
