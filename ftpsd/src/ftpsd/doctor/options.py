"""What to check: the target and the client settings, validated by the command line."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Options:
    """One doctor run. ``password`` is kept out of repr() so it never lands in a log or traceback."""

    host: str
    port: int
    implicit: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    roundtrip: bool = False
    login_only: bool = False  # for accounts that may not list (upload-only): no data channel steps
    insecure: bool = False
    # Checking from inside the NAT: the public address the server must announce in PASV, while data
    # connections go to the address connected to (as the NAT's inside network reaches the server).
    masquerade: str | None = None

    @property
    def mode(self) -> str:
        return "implicit" if self.implicit else "explicit"
