"""A seeded generator of hostile FTP command lines and a raw control-channel client that judges each reply.

Every fuzzed line is sent together with a sentinel (SYST, answered "215 UNIX Type: L8"), so that however
many replies a line provokes (an oversized line gets several "500 Command too long."), the client knows
where they end. The same seed gives the same lines: a failure message names it, for a rerun with
RELIABILITY_FUZZ_SEED.
"""

from __future__ import annotations

import random
import re
import socket
import ssl
from dataclasses import dataclass, field

# The commands pyftpdlib and ftpsd know. Left out on purpose: USER/PASS (wrong passwords would ban the
# fuzzing address; brute force has its own test), REIN/QUIT (end the session), AUTH (switches the channel
# to TLS mid-stream), PASV/EPSV/PORT/EPRT (their data connections answer asynchronously; the transfer
# tests cover data channels) and SYST (the sentinel).
VERBS = (
    "ABOR", "ALLO", "APPE", "CDUP", "CWD", "DELE", "FEAT", "HELP", "LIST", "MDTM", "MFMT", "MKD", "MLSD",
    "MLST", "MODE", "NLST", "NOOP", "OPTS", "PBSZ", "PROT", "PWD", "REST", "RETR", "RMD", "RNFR", "RNTO",
    "SITE", "SITE CHMOD", "SITE HELP", "SIZE", "STAT", "STOR", "STOU", "STRU", "TYPE", "XCUP", "XCWD",
    "XMKD", "XPWD", "XRMD", "CCC", "ACCT", "SMNT", "LANG", "HOST", "CLNT",
)  # fmt: skip
SENTINEL = b"SYST"
SENTINEL_REPLY = b"215 UNIX Type: L8"
MAX_LINE = 2048  # pyftpdlib answers "500 Command too long." past this many bytes
_PATH_PARTS = (
    "..", ".", "", "~", "~root", "%2e%2e", "%2f", "..%2f", "%c0%ae", "..\\..", "\\", "\uff0f", "\uff0e\uff0e",
    "*", "?", "[a-z]", "-la", "$(id)", "`id`", ";id", "|id", "\t", " ", "etc", "passwd", "ünïcödé", "日本語",
    "\u202e",
)  # fmt: skip
_NUMBERS = ("-1", "0", "1", "4294967296", "18446744073709551617", "1e9", "0x10", "99999999999999999999999")
_REPLY_START = re.compile(rb"^([1-5]\d\d)([ -])")


class FuzzFailure(AssertionError):
    """The server broke the protocol or the connection; the message has what is needed to reproduce it."""


class CommandFuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def line(self) -> bytes:
        """One command line without its CRLF; never the sentinel and never containing CRLF."""
        strategies = (
            (self._known_verb, 55),
            (self._invalid_utf8, 10),
            (self._random_verb, 10),
            (self._random_bytes, 10),
            (self._oversized, 5),
            (self._nul_byte, 5),
            (self._blank, 5),
        )
        while True:
            line = self.rng.choices([s for s, _ in strategies], [w for _, w in strategies])[0]()
            while b"\r\n" in line:
                line = line.replace(b"\r\n", b"\n")
            if line.split(b" ")[0].upper() != SENTINEL:
                return line

    def _argument(self) -> str:
        rng = self.rng
        kind = rng.randrange(4)
        if kind == 0:  # path: escapes, encodings, globs, shell syntax, very long components
            parts = [rng.choice(_PATH_PARTS) if rng.random() < 0.7 else "x" * rng.randint(1, 300)]
            parts += [rng.choice(_PATH_PARTS) for _ in range(rng.randint(0, 12))]
            return ("/" if rng.random() < 0.4 else "") + "/".join(parts)
        if kind == 1:
            return rng.choice(_NUMBERS)
        if kind == 2:  # deep path, longer than PATH_MAX once resolved
            return "/".join("d" * rng.randint(1, 255) for _ in range(rng.randint(1, 7)))
        return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 60)))

    def _known_verb(self) -> bytes:
        verb = self.rng.choice(VERBS)
        verb = verb.lower() if self.rng.random() < 0.1 else verb
        return (verb if self.rng.random() < 0.15 else f"{verb} {self._argument()}").encode()

    def _invalid_utf8(self) -> bytes:
        bad = self.rng.choice((b"\xc0\xae", b"\xff\xfe", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"))
        return f"{self.rng.choice(VERBS)} ".encode() + bad + self._argument().encode()

    def _random_verb(self) -> bytes:
        verb = "".join(self.rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=self.rng.randint(1, 12)))
        return f"{verb} {self._argument()}".encode()

    def _random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(1, 200))

    def _oversized(self) -> bytes:
        size = self.rng.randint(MAX_LINE + 1, 40000)
        return f"{self.rng.choice(VERBS)} ".encode() + b"A" * size

    def _nul_byte(self) -> bytes:
        return f"{self.rng.choice(VERBS)} abc".encode() + b"\0" + b"/../etc/passwd"

    def _blank(self) -> bytes:
        return self.rng.choice((b"", b" ", b"\t", b"   \t ", b"\n", b"\r"))


@dataclass
class Reply:
    code: int
    lines: list[bytes]

    def __str__(self) -> str:
        return " | ".join(line.decode(errors="replace") for line in self.lines)[:300]


class RawControl:
    """A control connection read and written as bytes, so that any line can be sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise FuzzFailure("the server closed the control connection")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> Reply:
        """One complete reply; raises FuzzFailure if it does not follow RFC 959's reply syntax."""
        first = self._line()
        start = _REPLY_START.match(first)
        if not start:
            raise FuzzFailure(f"malformed reply line {first[:200]!r}")
        lines = [first]
        if start.group(2) == b"-":
            while not lines[-1].startswith(start.group(1) + b" "):
                lines.append(self._line())
        return Reply(int(start.group(1)), lines)

    def command(self, line: bytes) -> Reply:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname=host)

    def exchange(self, line: bytes) -> list[Reply]:
        """Send a fuzzed line and the sentinel in one write; the replies provoked by the line."""
        self.sock.sendall(line + b"\r\n" + SENTINEL + b"\r\n")
        replies = []
        while True:
            reply = self.reply()
            if reply.lines == [SENTINEL_REPLY]:
                return replies
            replies.append(reply)


@dataclass
class Verdicts:
    """What the server answered to the fuzzed lines, and every answer that was wrong."""

    commands: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def judge(self, line: bytes, replies: list[Reply]) -> None:
        self.commands += 1
        for reply in replies:
            self.codes[reply.code] = self.codes.get(reply.code, 0) + 1
        problem = expected_problem(line, replies)
        if problem:
            self.problems.append(f"{line[:120]!r}: {problem}; replies: {[str(r) for r in replies]}")


def expected_problem(line: bytes, replies: list[Reply]) -> str | None:
    """Why these replies are wrong for this line, or None."""
    if not replies:
        return "no reply"
    if any(reply.code == 421 for reply in replies):
        return "the server gave up on the session (421)"
    if len(line) > MAX_LINE:
        return None if any(r.code == 500 for r in replies) else "no 500 for an oversized line"
    if len(replies) > 1:
        return "more than one reply to one line"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return None if replies[0].code == 501 else "invalid UTF-8 not refused with 501"
    if b"\0" in line:
        return None if replies[0].code == 501 else "NUL byte not refused with 501"
    return None
