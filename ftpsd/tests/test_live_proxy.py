"""PROXY protocol v2 against the real server: 127.0.0.1 plays the load balancer, 127.0.0.2 anyone else.

The server listens on the dual-stack socket, so IPv4 peers and IPv4 addresses from headers alike appear
as ::ffff:a.b.c.d. Header addresses come from the documentation ranges (203.0.113.0/24, 198.51.100.0/24,
2001:db8::/32): no such client could have connected directly, so seeing them in the log, a ban or a
refusal proves the header was used.
"""

from __future__ import annotations

import ftplib
import io
import ipaddress
import json
import select
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from conftest import PASSWORDS, ServerProcess, client_context, connect, new_setup
from ftpsd.client import FTPS
from ftpsd.proxyprotocol import SIGNATURE

pytestmark = pytest.mark.live

BALANCER, OTHER = "127.0.0.1", "127.0.0.2"


def v2_header(client: tuple[str, int]) -> bytes:
    """A PROXY command header for TCP, as HAProxy's send-proxy-v2 writes it (to port 21 of a VIP)."""
    source = ipaddress.ip_address(client[0])
    family, vip = (0x11, "192.0.2.1") if source.version == 4 else (0x21, "2001:db8::1")
    block = source.packed + ipaddress.ip_address(vip).packed + struct.pack("!HH", client[1], 21)
    return SIGNATURE + struct.pack("!BBH", 0x21, family, len(block)) + block


LOCAL_HEADER = SIGNATURE + bytes.fromhex("20000000")


class Proxied(FTPS):
    """An explicit FTPS client that reaches the server the way a load balancer's connections do.

    ``client`` goes into the control connection's header, ``data_client`` into each passive data
    connection's (None: no header on data connections); ``source`` is the address it connects from.
    """

    def __init__(self, client: tuple[str, int] | None, data_client: tuple[str, int] | None = None) -> None:
        super().__init__(context=client_context(), timeout=20)
        self.client, self.data_client = client, data_client or client
        self.source = BALANCER

    def open(self, port: int) -> str:
        raw = socket.create_connection(("127.0.0.1", port), self.timeout, source_address=(self.source, 0))
        if self.client:
            raw.sendall(v2_header(self.client))
        self.host, self.port, self.sock, self.af = "127.0.0.1", port, raw, raw.family
        self.file = raw.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        """ftplib's passive transfer, with the header a load balancer sends on the data connection first."""
        host, port = self.makepasv()
        conn = socket.create_connection((host, port), self.timeout, source_address=(self.source, 0))
        try:
            if self.data_client:
                conn.sendall(v2_header(self.data_client))
            resp = self.sendcmd(cmd)
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
        except BaseException:
            conn.close()
            raise
        session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
        return self.context.wrap_socket(conn, server_hostname=self.host, session=session), None


@contextmanager
def proxied_server(root: Path, header_timeout: int = 2, **limits: int) -> Iterator[ServerProcess]:
    """A server that takes headers from BALANCER; the reader may log in from 203.0.113.0/24 only."""
    setup = new_setup(
        root, implicit=True, **({"ban_after_failures": 3, "max_connections_per_ip": 100} | limits)
    )
    setup.listen_address = "::"
    config = setup.render().replace(
        'name = "reader"\n', 'name = "reader"\nallowed_networks = ["203.0.113.0/24"]\n'
    )
    config += f'[network]\nproxy_protocol_from = ["{BALANCER}"]\nproxy_header_timeout = {header_timeout}\n'
    setup.config_path.write_text(config)
    proc = ServerProcess(setup)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProcess]:
    with proxied_server(tmp_path / "srv") as proc:
        yield proc


def login(
    srv: ServerProcess, client: tuple[str, int] | None, user: str, password: str | None = None
) -> Proxied:
    ftp = Proxied(client)
    ftp.open(srv.setup.explicit_port)
    ftp.login(user, password or PASSWORDS[user])
    ftp.prot_p()
    return ftp


def closed_unanswered(sock: socket.socket, within: float = 5) -> bytes:
    """Everything the server sends before it closes the connection (b"" = not a byte).

    A reset counts as closed: the server closes with the client's bytes unread, which the kernel answers
    with RST.
    """
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


GREETING = b"220 Secure file server ready.\r\n"


def greeted(sock: socket.socket) -> socket.socket:
    assert sock.recv(len(GREETING)) == GREETING
    return sock


def transfer_refused(ftp: Proxied) -> str:
    """The reply that refuses a listing's data connection.

    The server answers NLST with 150 as soon as it is queued, so the refusal may come after it, while the
    client's TLS handshake on the dropped connection fails.
    """
    with pytest.raises(ftplib.error_temp) as refused:
        try:
            ftp.nlst()
        except OSError:
            ftp.getresp()
    return str(refused.value)


def raw_from(source: str, port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), 10, source_address=(source, 0))


def test_the_headers_address_is_the_client_in_logs_transfers_and_data_checks(srv: ServerProcess) -> None:
    ftp = login(srv, ("203.0.113.7", 40001), "fbt_admin")
    ftp.storbinary("STOR through-balancer.txt", io.BytesIO(b"hello"))
    assert ftp.nlst() == ["through-balancer.txt"]
    ftp.quit()
    log = srv.log()
    assert "::ffff:203.0.113.7:40001-[fbt_admin] USER 'fbt_admin' logged in." in log
    assert "::ffff:127.0.0.1" not in log  # the load balancer never shows as a client
    records = [json.loads(line) for line in srv.setup.transfer_log.read_text().splitlines()]
    assert {record["client"] for record in records} == {"::ffff:203.0.113.7:40001"}
    # IPv6 clients behind an IPv4 load balancer keep their address.
    login(srv, ("2001:db8::7", 40002), "fbt_admin").quit()
    srv.wait_log("2001:db8::7:40002-[fbt_admin] USER 'fbt_admin' logged in.")


def test_allowed_networks_see_the_headers_address(srv: ServerProcess) -> None:
    login(srv, ("203.0.113.8", 40003), "reader").quit()  # inside 203.0.113.0/24
    with pytest.raises(ftplib.error_perm, match="530"):
        login(srv, ("198.51.100.9", 40004), "reader")
    srv.wait_log("login of 'reader' refused: ::ffff:198.51.100.9 is outside its allowed_networks")
    with pytest.raises(ftplib.error_perm, match="530"):  # nor from the load balancer's own address
        connect(srv, "reader", source=OTHER)


def test_bans_hit_the_client_not_the_load_balancer(srv: ServerProcess) -> None:
    attacker = ("198.51.100.66", 40005)
    for _ in range(3):
        with pytest.raises(ftplib.error_perm, match="530"):
            login(srv, attacker, "fbt_admin", "wrong")
    srv.wait_log("banning ::ffff:198.51.100.66 for 900s after 3 failed logins")
    banned = Proxied(attacker)
    with pytest.raises(ftplib.error_temp, match="421 Too many failed logins"):
        banned.open(srv.setup.explicit_port)
    # Another client through the same load balancer, and anyone direct, still get in.
    login(srv, ("203.0.113.9", 40006), "fbt_admin").quit()
    connect(srv, "fbt_admin", source=OTHER).quit()
    assert "banning ::ffff:127.0.0.1" not in srv.log()


def test_the_load_balancers_health_check_is_served(srv: ServerProcess) -> None:
    """LOCAL: the connection is the load balancer's own, and gets the greeting like any check."""
    with raw_from(BALANCER, srv.setup.explicit_port) as sock:
        sock.sendall(LOCAL_HEADER)
        assert sock.makefile("rb").readline().startswith(b"220 ")


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"USER fbt_admin\r\n",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 21\r\n",
        SIGNATURE + b"\x21\x11\x00\x02ab",
    ],
    ids=["nothing", "ftp-command", "v1-header", "malformed-v2"],
)
def test_a_load_balancers_connection_without_a_valid_header_is_closed_unanswered(
    srv: ServerProcess, first: bytes
) -> None:
    for port in (srv.setup.explicit_port, srv.setup.implicit_port):
        with raw_from(BALANCER, port) as sock:
            sock.sendall(first)
            started = time.monotonic()
            assert closed_unanswered(sock) == b""  # no greeting, no error reply: nothing at all
            assert time.monotonic() - started < 4  # proxy_header_timeout = 2
    srv.wait_log("refused connection from load balancer ::ffff:127.0.0.1:")
    assert "FTP session opened" not in srv.log()


def test_a_header_from_anyone_else_is_refused(srv: ServerProcess) -> None:
    header = v2_header(("203.0.113.10", 40007))
    with greeted(raw_from(OTHER, srv.setup.explicit_port)) as sock:  # the explicit port greets first
        sock.sendall(header + b"USER fbt_admin\r\n")
        assert closed_unanswered(sock) == b""
    with raw_from(OTHER, srv.setup.implicit_port) as sock:  # before the TLS handshake: nothing at all
        sock.sendall(header)
        assert closed_unanswered(sock) == b""
    with greeted(raw_from(OTHER, srv.setup.explicit_port)) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.10 192.0.2.1 40000 21\r\n")
        assert closed_unanswered(sock) == b""
    log = srv.log()
    assert log.count("connection refused: it sent a PROXY protocol header but is not a load balancer") == 3
    assert "203.0.113.10" not in log
    # A client behind the load balancer that sends a header of its own behind the balancer's is refused too.
    with raw_from(BALANCER, srv.setup.explicit_port) as sock:
        sock.sendall(header)
        greeted(sock).sendall(v2_header(("203.0.113.11", 40008)))
        assert closed_unanswered(sock) == b""
    srv.wait_log("::ffff:203.0.113.10:40007-[] connection refused: it sent a PROXY protocol header")


def test_data_connection_with_another_address_in_its_header_is_refused(srv: ServerProcess) -> None:
    ftp = login(srv, ("203.0.113.12", 40009), "fbt_admin")
    ftp.data_client = ("203.0.113.13", 40010)
    assert transfer_refused(ftp).startswith("425 Rejected data connection from foreign address")
    ftp.close()
    srv.wait_log("Rejected data connection from foreign address ::ffff:203.0.113.13:40010")


def test_data_connection_from_the_load_balancer_without_header_is_closed(srv: ServerProcess) -> None:
    ftp = login(srv, ("203.0.113.14", 40011), "fbt_admin")
    _host, port = ftp.makepasv()
    with raw_from(BALANCER, port) as sock:
        assert closed_unanswered(sock) == b""
    srv.wait_log("data connection from load balancer ::ffff:127.0.0.1:")
    assert ftp.nlst() is not None  # a new passive connection through a header still works
    ftp.quit()


def test_data_connection_with_a_forged_header_is_refused(srv: ServerProcess) -> None:
    """A direct client (no load balancer) whose data connection starts with a header."""
    ftp = Proxied(None, data_client=("203.0.113.15", 40012))
    ftp.source = OTHER
    ftp.open(srv.setup.explicit_port)
    ftp.auth()
    ftp.login("fbt_admin", PASSWORDS["fbt_admin"])
    ftp.prot_p()
    assert transfer_refused(ftp) == "425 Data connection refused: it began with a PROXY protocol header."
    ftp.close()
    srv.wait_log("data connection refused: it sent a PROXY protocol header but is not a load balancer")


MAX_CONNECTIONS = 8
FLOOD = 14


def answered_at_once(socks: list[socket.socket], within: float = 2) -> dict[socket.socket, bytes]:
    """The connections the server answered or closed within ``within`` s, with what each received; the
    header timeout of the server under test is far longer, so the others are waiting for a header."""
    readable, _, _ = select.select(socks, [], [], within)
    time.sleep(0.2)  # the rest of a burst of refusals
    readable = set(readable) | set(select.select(socks, [], [], 0)[0])
    return {sock: closed_unanswered(sock, within=1) for sock in readable}


def test_connections_waiting_for_a_header_count_against_max_connections(tmp_path: Path) -> None:
    """A host of the load balancers' network that opens connections and sends nothing cannot hold more
    sockets than max_connections: beyond it the explicit port says 421 and closes, the implicit port and
    passive data connections close unanswered; the server then serves as before."""
    limits = {"max_connections": MAX_CONNECTIONS, "max_connections_per_ip": MAX_CONNECTIONS}
    with proxied_server(tmp_path / "srv", header_timeout=30, **limits) as srv:
        for port, reply in (
            (srv.setup.explicit_port, b"421 Too many connections"),
            (srv.setup.implicit_port, b""),
        ):
            with ExitStack() as held:
                socks = [held.enter_context(raw_from(BALANCER, port)) for _ in range(FLOOD)]
                refused = answered_at_once(socks)
                assert FLOOD - len(refused) < MAX_CONNECTIONS  # the listeners hold sockets of the limit too
                assert len(refused) > FLOOD - MAX_CONNECTIONS
                assert all(received.startswith(reply) for received in refused.values()), refused
            srv.wait_log("refused connection from load balancer ::ffff:127.0.0.1:")
        assert "max_connections reached" in srv.log()

        ftp = login(srv, ("203.0.113.16", 40013), "fbt_admin")  # the waits ended with their connections
        _host, port = ftp.makepasv()
        with ExitStack() as held:
            socks = [held.enter_context(raw_from(BALANCER, port)) for _ in range(FLOOD)]
            refused = answered_at_once(socks)
            assert len(refused) > FLOOD - MAX_CONNECTIONS
            assert set(refused.values()) == {b""}
        srv.wait_log("data connection from load balancer ::ffff:127.0.0.1:")
        assert "refused: max_connections reached" in srv.log()
        assert ftp.nlst() is not None
        ftp.quit()
