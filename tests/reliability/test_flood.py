"""Connection floods: the controller holds as many connections as one address may have, then more are
refused politely (a 421 reply and an orderly close, not a reset) on the explicit port and closed before the
handshake on the implicit one. Meanwhile another address transfers normally and the held connections still
get answers; once they close, the address is served again.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

import pytest
from labhost import Deployment

EXTRA = 10  # connections beyond the limit


def test_flood_from_one_address_is_refused_politely_while_others_are_served(deployment: Deployment) -> None:
    server, host = deployment.server, deployment.server.address
    limit = deployment.settings["ftps_server_max_connections_per_ip"]
    before = server.service()
    held: list[socket.socket] = []
    try:
        for _ in range(limit):
            held.append(socket.create_connection((host, 21), timeout=30))
        greetings = [sock.recv(4096) for sock in held]
        assert all(g.startswith(b"220") for g in greetings), set(greetings)

        for _ in range(EXTRA):
            with socket.create_connection((host, 21), timeout=30) as extra:
                assert extra.recv(4096).startswith(b"421 Too many connections from the same IP address")
                assert extra.recv(4096) == b""  # orderly close after the reply
        with (
            socket.create_connection((host, 990), timeout=30) as extra,
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            deployment.client_context().wrap_socket(extra, server_hostname=host)

        admin = deployment.users["fbt_admin"]
        result = deployment.client.remote_client(
            "roundtrip", host=host, user=admin.name, password=admin.password, size=1 << 20
        )
        assert result["sent"] == result["received"]

        for sock in held[:: limit // 10]:  # the flood's own connections are still served
            sock.sendall(b"NOOP\r\n")
            assert sock.recv(4096).startswith(b"200")
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    # The server notices the closed connections within a moment; then the address is welcome again.
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection((host, 21), timeout=30) as sock:
            greeting = sock.recv(4096)
        if greeting.startswith(b"220") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert greeting.startswith(b"220"), greeting
    after = server.service()
    assert (after.main_pid, after.restarts) == (before.main_pid, before.restarts)
