"""Control-channel fuzzing: random, oversized and malformed commands, invalid UTF-8, very long paths,
thousands of lines per connection. The server never crashes or gives up on a session, answers every line with
well-formed FTP replies, and another client's transfer running meanwhile completes intact.

Seeded: the seed is printed and named in every failure; RELIABILITY_FUZZ_SEED=N replays a run.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import threading
import time

import pytest
from ftps_clients import download_sha256, login, sha256, upload
from fuzzer import CommandFuzzer, FuzzFailure, RawControl, Verdicts
from labhost import Deployment

SEED = int(os.environ.get("RELIABILITY_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
LINES_PER_SESSION = 2500
SECONDS_PER_SESSION = 30  # a safety bound; a session normally needs a few seconds
# Where the server stands when the lines arrive: before AUTH TLS, on TLS before login, logged in with
# protected data channels, and the same on the implicit port.
SESSIONS = ("plain", "tls", "logged-in", "implicit")
NEIGHBOUR_FILE_SIZE = 8 << 20


def open_session(deployment: Deployment, kind: str) -> RawControl:
    host = deployment.server.address
    port = 990 if kind == "implicit" else 21
    control = RawControl(socket.create_connection((host, port), timeout=30))
    if kind == "implicit":
        control.start_tls(deployment.client_context(), host)
    assert control.reply().code == 220
    if kind in {"tls", "logged-in"}:
        assert control.command(b"AUTH TLS").code == 234
        control.start_tls(deployment.client_context(), host)
    if kind in {"logged-in", "implicit"}:
        user = deployment.users["rel_fuzz"]
        assert control.command(f"USER {user.name}".encode()).code == 331
        assert control.command(f"PASS {user.password}".encode()).code == 230
        assert control.command(b"PBSZ 0").code == 200
        assert control.command(b"PROT P").code == 200
    return control


class NeighbourTransfers(threading.Thread):
    """Another user uploads and downloads a large file over and over until told to stop."""

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(daemon=True)
        self.deployment = deployment
        self.stop = threading.Event()
        self.rounds = 0
        self.errors: list[str] = []

    def run(self) -> None:
        data = os.urandom(NEIGHBOUR_FILE_SIZE)
        try:
            with login(self.deployment, "fbt_admin") as ftp:
                while not self.stop.is_set():
                    name = f"fuzz-neighbour-{self.rounds}.bin"
                    upload(ftp, name, data)
                    if download_sha256(ftp, name) != sha256(data):
                        self.errors.append(f"round {self.rounds}: downloaded content differs")
                    ftp.delete(name)
                    self.rounds += 1
        except Exception as err:
            self.errors.append(f"round {self.rounds}: {err!r}")


def fuzz(control: RawControl, fuzzer: CommandFuzzer, verdicts: Verdicts, kind: str) -> None:
    deadline = time.monotonic() + SECONDS_PER_SESSION
    for _ in range(LINES_PER_SESSION):
        if time.monotonic() > deadline:
            return
        line = fuzzer.line()
        try:
            replies = control.exchange(line)
        except (FuzzFailure, OSError) as err:
            raise FuzzFailure(
                f"seed {SEED}, {kind} session, after {verdicts.commands} lines, on {line[:120]!r}: {err!r}"
            ) from err
        verdicts.judge(line, replies)


def test_fuzzed_control_channel_keeps_the_server_and_a_neighbour_transfer_intact(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    server = deployment.server
    before, cursor = server.service(), server.journal_cursor()
    fuzzer, verdicts = CommandFuzzer(SEED), Verdicts()
    neighbour = NeighbourTransfers(deployment)
    neighbour.start()
    started = time.monotonic()
    per_session = {}
    try:
        for kind in SESSIONS:
            control = open_session(deployment, kind)
            done = verdicts.commands
            try:
                fuzz(control, fuzzer, verdicts, kind)
            finally:
                control.sock.close()
            per_session[kind] = verdicts.commands - done
    finally:
        neighbour.stop.set()
        neighbour.join(120)
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz seed {SEED}: {verdicts.commands} lines in {elapsed:.1f}s {per_session}, "
            f"reply codes {dict(sorted(verdicts.codes.items()))}, neighbour rounds {neighbour.rounds}"
        )

    assert not verdicts.problems, f"seed {SEED}: {len(verdicts.problems)} bad answers:\n" + "\n".join(
        verdicts.problems[:20]
    )
    assert all(count >= 1000 for count in per_session.values()), per_session
    after = server.service()
    assert (after.main_pid, after.restarts, after.active) == (before.main_pid, before.restarts, "active")
    journal = server.journal_after(cursor)
    for sign_of_a_bug in ("Traceback", "unhandled exception", "CRITICAL"):
        assert sign_of_a_bug not in journal, f"seed {SEED}: {sign_of_a_bug!r} in the log:\n{journal[-3000:]}"
    assert not neighbour.errors, neighbour.errors
    assert neighbour.rounds >= 1, "the neighbour's transfer never completed"


def test_queued_uploads_leave_no_temporary_files(deployment: Deployment) -> None:
    """Upload commands without a data connection, then disconnect: nothing may stay behind."""
    folder = f"queued-{secrets.token_hex(4)}"
    with login(deployment, "rel_fuzz") as ftp:
        ftp.mkd(folder)
        ftp.cwd(folder)
        for name in ("first.bin", "second.bin"):
            assert ftp.sendcmd(f"STOR {name}").startswith("150")
        assert ftp.sendcmd("STOU").startswith("150")
    home = deployment.users["rel_fuzz"].home
    time.sleep(1)  # the server handles the disconnect
    assert deployment.server.run(f"ls -A {home}/{folder}").split() == []
