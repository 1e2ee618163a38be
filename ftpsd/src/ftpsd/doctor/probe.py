"""The state one doctor run carries from step to step."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ftpsd.doctor.control import ControlChannel
from ftpsd.doctor.datachannel import request_passive
from ftpsd.doctor.options import Options
from ftpsd.doctor.tlsclient import verifying_context


@dataclass(frozen=True)
class PassiveRoute:
    """A way to open data connections that worked: the command, and whether to ignore the announced
    address and use the control connection's (needed to finish the run when the masquerade address
    is wrong)."""

    command: str
    use_control_address: bool = False


class Probe:
    """Options, the control connection in use and what earlier steps learnt about the server."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.context: ssl.SSLContext = verifying_context(options.ca_file)
        self.control: ControlChannel | None = None
        self.verify_error: ssl.SSLCertVerificationError | None = None
        self.route: PassiveRoute | None = None
        self.data_session_reused: bool | None = None
        self.lost = False  # the control connection broke; nothing further can run on it

    @property
    def channel(self) -> ControlChannel:
        if self.control is None:
            raise RuntimeError("no control connection")  # a step ran without its prerequisites
        return self.control

    def remember_route(self, route: PassiveRoute, session_reused: bool | None) -> None:
        if self.route is None:
            self.route = route
            self.data_session_reused = session_reused

    def open_data(self) -> tuple[str, int]:
        """Ask for a passive port the way that worked before; returns where to connect."""
        if self.route is None:
            raise RuntimeError("no working passive route")
        host, port = request_passive(self.channel, self.route.command)
        return (self.channel.peer if self.route.use_control_address else host), port

    def close(self) -> None:
        if self.control is not None:
            if self.lost:
                self.control.close()
            else:
                self.control.quit()
            self.control = None
