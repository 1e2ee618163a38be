"""One reply per command, in order: commands pipelined behind PASS wait for the password verdict.

RFC 959 lets a client send its next commands without waiting for a reply, and many do after PASS
(``USER``, ``PASS``, ``PWD``, ``NOOP`` in one write). PASS takes the session off the event loop while
the password KDF runs (login.PasswordLogin), and a failure is answered only after
``auth_failed_timeout``; but the lines that arrived in the same read are still in asynchat's buffer
and would run at once: ``PWD`` got ``530`` and ``NOOP`` ``200`` before the ``230``. Here every line
completed while a verdict is pending is held, and the held lines run in order once the verdict is
answered (``on_login`` / ``on_login_failed``).

At most one read's worth of lines can be held (the socket is not read while the session is off the loop).
Others may wait for the verdict too (``after_verdict``): a data connection that resumed this connection's
TLS session (sessions.SessionOwners.may_resume).
"""

from __future__ import annotations

from collections.abc import Callable


class OrderedReplies:
    """Control-handler mixin; it must come first in the bases so that held lines skip no other check."""

    _holding = False
    _held_lines: list[bytes]
    _verdict_waiters: list[Callable[[], None]]

    def after_verdict(self, callback: Callable[[], None]) -> None:
        """Call callback once a login is decided on this connection (or the connection closes)."""
        if not hasattr(self, "_verdict_waiters"):
            self._verdict_waiters = []
        self._verdict_waiters.append(callback)

    def ftp_PASS(self, line: str) -> None:
        super().ftp_PASS(line)
        # Off the loop now means a verdict (the password check or the delayed 530) is still to come.
        if not self._closed and self._fileno not in self.ioloop.socket_map:
            self._holding = True
            self._held_lines = []

    def found_terminator(self) -> None:
        if self._holding:
            self._held_lines.append(b"".join(self._in_buffer))
            self._in_buffer = []
            self._in_buffer_len = 0
            return
        super().found_terminator()

    def on_login(self, username: str) -> None:
        super().on_login(username)
        self._release_held_lines()

    def on_login_failed(self, username: str, password: str) -> None:
        super().on_login_failed(username, password)
        self._release_held_lines()

    def on_disconnect(self) -> None:
        """The connection is gone without a verdict: whoever waits for one must not wait forever."""
        self._holding = False
        super().on_disconnect()
        self._call_verdict_waiters()

    def _call_verdict_waiters(self) -> None:
        waiters, self._verdict_waiters = getattr(self, "_verdict_waiters", []), []
        for callback in waiters:
            callback()

    def _release_held_lines(self) -> None:
        """Run the held lines in order; stop (keeping the rest) if one of them is a PASS that waits again."""
        self._holding = False
        self._call_verdict_waiters()
        held = getattr(self, "_held_lines", [])
        while held and not self._holding and not self._closed:
            line = held.pop(0)
            self._in_buffer = [line]
            self._in_buffer_len = len(line)
            self.found_terminator()
        if self._holding:  # a held PASS started a new wait: the remaining lines wait behind it
            self._held_lines = held + self._held_lines
