"""Fixtures: a throwaway CA-less certificate, config writer, and the real server as a subprocess."""

from __future__ import annotations

import ftplib
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ftpsd.client import FTPS
from ftpsd.passwords import ScryptHash, hash_password
from selfsigned import write_self_signed

PASSWORDS = {
    "fbt_admin": "admin-secret",
    "dropbox": "upload-secret",
    "reader": "reader-secret",
    "slowpoke": "slow-secret",  # deliberately expensive hash (about 1 s) for the concurrency test
    "newbie": "newbie-secret",  # only added to the config by the reload test
}
_HASHES: dict[str, str] = {}


def password_hash(user: str) -> str:
    if user not in _HASHES:
        if user == "slowpoke":
            salt = os.urandom(16)
            key = hashlib.scrypt(PASSWORDS[user].encode(), salt=salt, n=1 << 14, r=8, p=16, dklen=32)
            _HASHES[user] = ScryptHash(14, 8, 16, salt, key).encode()
        else:
            _HASHES[user] = hash_password(PASSWORDS[user])
    return _HASHES[user]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_range(size: int) -> tuple[int, int]:
    """A run of ports that are free right now (good enough on a test machine)."""
    for base in range(20000 + (os.getpid() % 200) * 100, 60000, 97):
        socks = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base, base + size - 1
    raise RuntimeError("no free port range")


@dataclass
class ServerSetup:
    root: Path
    cert: Path
    key: Path
    explicit_port: int = 0
    implicit_port: int = 0
    passive: tuple[int, int] = (0, 0)
    limits: dict[str, int] = field(default_factory=dict)
    extra_users: list[tuple[str, str, str]] = field(default_factory=list)
    # More integer keys for a user's [[users]] table, by user name (e.g. {"reader": {"download_rate": 1}}).
    user_keys: dict[str, dict[str, int]] = field(default_factory=dict)
    listen_address: str = "127.0.0.1"
    # Off unless a test turns it on: servers running side by side must not compete for one metrics port.
    metrics_port: int = 0
    # [[quotas]] tables: (path, max_bytes, max_files).
    quotas: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def config_path(self) -> Path:
        return self.root / "ftpsd.toml"

    @property
    def transfer_log(self) -> Path:
        return self.root / "transfers.jsonl"

    def render(self) -> str:
        limits = {"idle_timeout": 60, "data_timeout": 30, **self.limits}
        lines = [
            "[server]",
            f'listen_address = "{self.listen_address}"',
            f"explicit_port = {self.explicit_port}",
            f"implicit_port = {self.implicit_port}",
            f"passive_ports = [{self.passive[0]}, {self.passive[1]}]",
            "[tls]",
            f'certificate = "{self.cert}"',
            f'private_key = "{self.key}"',
            "[limits]",
            *(f"{k} = {v}" for k, v in limits.items()),
            "[logging]",
            'level = "info"',
            f'transfer_log = "{self.transfer_log}"',
            "[metrics]",
            'listen_address = "127.0.0.1"',
            f"port = {self.metrics_port}",
        ]
        users = [
            ("fbt_admin", "full", str(self.shared)),
            ("dropbox", "upload_only", str(self.shared)),
            ("reader", "read_only", str(self.shared)),
            ("slowpoke", "read_only", str(self.shared)),
            *self.extra_users,
        ]
        for name, perms, home in users:
            lines += [
                "[[users]]",
                f'name = "{name}"',
                f'password_hash = "{password_hash(name)}"',
                f'home = "{home}"',
                f'permissions = "{perms}"',
                *(f"{k} = {v}" for k, v in self.user_keys.get(name, {}).items()),
            ]
        for path, max_bytes, max_files in self.quotas:
            lines += [
                "[[quotas]]",
                f'path = "{path}"',
                f"max_bytes = {max_bytes}",
                f"max_files = {max_files}",
            ]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        self.config_path.write_text(self.render())


class ServerProcess:
    """`ftpsd serve` as a child process; readiness comes from its own sd_notify READY=1."""

    def __init__(self, setup: ServerSetup) -> None:
        self.setup = setup
        self.log_path = setup.root / "server.log"
        self.notify_path = setup.root / "notify.sock"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ftpsd.cli", "serve", "--config", str(setup.config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.wait_notify("READY=1")

    def wait_notify(self, wanted: str) -> list[str]:
        """Block until a notification containing `wanted` arrives; return all states seen."""
        seen: list[str] = []
        while True:
            try:
                data = self.notify.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no {wanted} from server; log:\n{self.log()}") from None
            seen.extend(data.split("\n"))
            if wanted in data.split("\n"):
                return seen

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in server log:\n{self.log()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.notify.close()
        return self.proc.returncode


def new_setup(root: Path, implicit: bool = False, **limits: int) -> ServerSetup:
    root.mkdir(parents=True, exist_ok=True)
    cert, key = write_self_signed(root, "server")
    setup = ServerSetup(root=root, cert=cert, key=key, limits=dict(limits))
    setup.shared.mkdir()
    setup.explicit_port = free_port()
    setup.implicit_port = free_port() if implicit else 0
    setup.passive = free_port_range(30)
    setup.write()
    return setup


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The shared server used by most live tests (generous limits so tests cannot trip them)."""
    setup = new_setup(
        tmp_path_factory.mktemp("srv"), implicit=True, ban_after_failures=1000, max_connections_per_ip=100
    )
    proc = ServerProcess(setup)
    yield proc
    proc.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator:
    started: list[ServerProcess] = []

    def start(**limits: int) -> ServerProcess:
        proc = ServerProcess(new_setup(tmp_path / f"srv{len(started)}", **limits))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- clients


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(
    srv: ServerProcess,
    user: str | None = None,
    cls: type[ftplib.FTP_TLS] = FTPS,
    source: str | None = None,
    context: ssl.SSLContext | None = None,
) -> ftplib.FTP_TLS:
    """Explicit FTPS session; logged in and PROT P if a user is given."""
    ftp = cls(context=context or client_context(), timeout=20, source_address=(source, 0) if source else None)
    ftp.connect("127.0.0.1", srv.setup.explicit_port)
    if user:
        ftp.login(user, PASSWORDS[user])
        ftp.prot_p()
    return ftp
