"""The order of the steps and when a step cannot run because an earlier one did not pass.

Every planned step appears in the report, run or skipped with the reason, so a reader always sees
how far the check got and why it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ftpsd.doctor.options import Options
from ftpsd.doctor.probe import Probe
from ftpsd.doctor.report import Report, StepResult, failed, skipped
from ftpsd.doctor.steps.data import check_epsv, check_pasv, check_session_reuse
from ftpsd.doctor.steps.roundtrip import check_roundtrip
from ftpsd.doctor.steps.session import (
    check_certificate,
    check_connect,
    check_login,
    check_plaintext,
    check_protection,
    check_tls,
)

Gate = Callable[[Report, Probe], str | None]


def after(*names: str) -> Gate:
    """Run only if every named step passed (a warning counts as passed)."""

    def gate(report: Report, probe: Probe) -> str | None:
        for name in names:
            step = report.step(name)
            if step is None or not step.passed:
                return f"not run: {name} did not pass"
        return None

    return gate


def login_gate(report: Report, probe: Probe) -> str | None:
    """The password goes only to a server whose certificate was verified, unless --insecure."""
    if not probe.options.user:
        return "not run: no --user given (login and the data channel need one)"
    blocked = after("tls")(report, probe)
    if blocked:
        return blocked
    certificate = report.step("certificate")
    if certificate is not None and not certificate.passed and not probe.options.insecure:
        return (
            "not run: the server's certificate is not trusted, so the password was not sent "
            "(fix the certificate or pass --ca; --insecure sends it anyway)"
        )
    return None


def data_gate(report: Report, probe: Probe) -> str | None:
    if probe.options.login_only:
        return "not run: --login-only"
    return after("protection")(report, probe)


def data_route_gate(report: Report, probe: Probe) -> str | None:
    if probe.options.login_only:
        return "not run: --login-only"
    if probe.route is None:
        return "not run: no data connection completed a TLS transfer"
    return None


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Probe], StepResult]
    gate: Gate
    applies: Callable[[Options], bool] = lambda options: True


STEPS = (
    Step("connect", check_connect, lambda report, probe: None),
    Step("plaintext", check_plaintext, after("connect"), lambda options: not options.implicit),
    Step("tls", check_tls, after("connect")),
    Step("certificate", check_certificate, after("tls")),
    Step("login", check_login, login_gate),
    Step("protection", check_protection, after("login")),
    Step("pasv", check_pasv, data_gate),
    Step("epsv", check_epsv, data_gate),
    Step("session_reuse", check_session_reuse, data_route_gate),
    Step("roundtrip", check_roundtrip, data_route_gate, lambda options: options.roundtrip),
)


def diagnose(options: Options) -> Report:
    """Run every step that applies, in order, and return the report (never raises on server faults)."""
    report = Report(
        target={
            "host": options.host,
            "port": options.port,
            "mode": options.mode,
            "user": options.user,
            "ca_file": options.ca_file,
        }
    )
    probe = Probe(options)
    try:
        for step in STEPS:
            if not step.applies(options):
                continue
            reason = "not run: the control connection was lost" if probe.lost else step.gate(report, probe)
            if reason:
                report.add(skipped(step.name, reason))
                continue
            try:
                report.add(step.run(probe))
            except OSError as err:  # includes timeouts, TLS errors and a server hanging up
                probe.lost = True
                report.add(
                    failed(
                        step.name,
                        f"the control connection broke during this step: {err or type(err).__name__}",
                        "check the server log (journalctl -u ftpsd): idle and data timeouts, bans and "
                        "crashes show up there",
                    )
                )
    finally:
        probe.close()
    return report
