"""Steps up to a logged-in, protected session: connect, plaintext refusal, TLS, certificate, login,
PBSZ/PROT. Each returns one StepResult and leaves what later steps need in the Probe."""

from __future__ import annotations

import datetime
import ssl
import time

from ftpsd.doctor import certificate
from ftpsd.doctor.control import ControlChannel, Reply
from ftpsd.doctor.network import ConnectFailed, connect, describe_control_failure
from ftpsd.doctor.options import Options
from ftpsd.doctor.probe import Probe
from ftpsd.doctor.report import StepResult, failed, passed, warned
from ftpsd.doctor.tlsclient import describe_session, explain_handshake_error, unverified_context

# The user name sent in clear to see whether the server refuses logins without TLS; never a real one.
PLAINTEXT_PROBE_USER = "ftps-doctor-plaintext-probe"


class Refused(Exception):
    """The server answered a setup command (greeting, AUTH TLS) with something else than expected."""

    def __init__(self, what: str, reply: Reply) -> None:
        super().__init__(f"{what}: {reply}")
        self.what = what
        self.reply = reply


def _expect(control: ControlChannel, what: str, code: int, command: str | None = None) -> Reply:
    reply = control.command(command) if command else control.read_reply()
    if reply.code != code:
        raise Refused(what, reply)
    return reply


def _secure(control: ControlChannel, context: ssl.SSLContext, options: Options) -> Reply | None:
    """Explicit: AUTH TLS, then the handshake. Implicit: the handshake alone. Returns AUTH's reply."""
    auth = None if options.implicit else _expect(control, "AUTH TLS", 234, "AUTH TLS")
    control.start_tls(context)
    return auth


def _reopen(options: Options, context: ssl.SSLContext) -> ControlChannel:
    """A second connection, made with certificate checks off only to read what is wrong with it."""
    control = ControlChannel(connect(options.host, options.port, options.timeout), options.host)
    try:
        if not options.implicit:
            _expect(control, "greeting", 220)
        _secure(control, context, options)
    except BaseException:
        control.close()
        raise
    return control


def _judge_greeting(step: str, greeting: Reply, success: str, facts: dict[str, object]) -> StepResult:
    """The 220 greeting (plain for explicit FTPS, after the handshake for implicit)."""
    facts["greeting"] = greeting.text
    if greeting.code == 220:
        return passed(step, success, **facts)
    return failed(
        step,
        f"the server turned the connection away: «{greeting}»",
        "too many connections, or this address is banned after failed logins (limits.* in the "
        "server config); wait, or check the server log (journalctl -u ftpsd)",
        **facts,
    )


def check_connect(probe: Probe) -> StepResult:
    """Step 1: TCP to the control port; for explicit FTPS also the plain-text greeting."""
    options = probe.options
    started = time.monotonic()
    try:
        sock = connect(options.host, options.port, options.timeout)
    except ConnectFailed as err:
        diagnosis, hint = describe_control_failure(err, options.timeout)
        return failed("connect", diagnosis, hint, failure=str(err.kind), port=options.port)
    probe.control = ControlChannel(sock, options.host)
    where = f"{probe.control.peer}:{options.port}"
    facts: dict[str, object] = {
        "address": probe.control.peer,
        "port": options.port,
        "connect_ms": round((time.monotonic() - started) * 1000),
    }
    if options.implicit:
        return passed("connect", f"TCP connection to {where} open", **facts)
    try:
        greeting = probe.control.read_reply()
    except TimeoutError:
        return failed(
            "connect",
            f"connected to {where} but no greeting within {options.timeout:g}s: the port waits for "
            "the client to speak first, as implicit FTPS does",
            "pass --implicit if this is the implicit FTPS port (usually 990)",
            **facts,
        )
    return _judge_greeting(
        "connect", greeting, f"TCP connection to {where} open, greeting {greeting.code}", facts
    )


def check_plaintext(probe: Probe) -> StepResult:
    """Before TLS, a user name must be refused: otherwise a careless client would log in in clear."""
    reply = probe.channel.command(f"USER {PLAINTEXT_PROBE_USER}")
    if reply.kind == 5:
        return passed("plaintext", f"login without TLS refused: «{reply}»", reply=reply.text)
    return failed(
        "plaintext",
        f"the server accepts a user name before AUTH TLS («{reply}»): a client set up for plain FTP "
        "would send its password in clear",
        "make the server require TLS for login (ftpsd always does; vsftpd: force_local_logins_ssl=YES)",
        reply=reply.text,
    )


def check_tls(probe: Probe) -> StepResult:
    """Step 2a: AUTH TLS (or the implicit handshake) with full certificate checks.

    When only the certificate is rejected, a second unverified connection is made so that the
    certificate step can still report subject, SAN, dates and fingerprint.
    """
    options = probe.options
    facts: dict[str, object] = {}
    try:
        auth = _secure(probe.channel, probe.context, options)
    except ssl.SSLCertVerificationError as err:
        probe.verify_error = err
        probe.channel.close()
        probe.control = None
        probe.context = unverified_context()  # data connections must use the control's context
        try:
            probe.control = _reopen(options, probe.context)
        except (ConnectFailed, Refused, OSError) as again:
            return failed(
                "tls",
                f"the certificate was rejected ({err.verify_message}); reconnecting to read it failed: "
                f"{again}",
                "run the doctor again; if this repeats, check the server log (journalctl -u ftpsd)",
            )
        auth = None
    except Refused as err:
        return failed(
            "tls",
            f"the server refused AUTH TLS: «{err.reply}»",
            "enable explicit FTPS on the server, or pass --implicit if this is an implicit FTPS port",
            reply=err.reply.text,
        )
    except (ssl.SSLError, OSError) as err:
        return failed("tls", *explain_handshake_error(err, options.implicit), error=str(err))
    tls = probe.channel.tls
    assert tls is not None  # start_tls just succeeded
    facts.update(describe_session(tls))
    if auth is not None:
        facts["auth_reply"] = auth.text
    how = "implicit TLS" if options.implicit else "AUTH TLS"
    summary = f"{how}: {facts['tls_version']} with {facts['cipher']}"
    if options.implicit:
        return _judge_greeting("tls", probe.channel.read_reply(), summary, facts)
    return passed("tls", summary, **facts)


def check_certificate(probe: Probe) -> StepResult:
    """Step 2b: the certificate as a careful client judges it, with every problem listed."""
    options = probe.options
    tls = probe.channel.tls
    assert tls is not None  # only runs after the tls step
    der = tls.getpeercert(binary_form=True)
    if der is None:
        return failed("certificate", "the server sent no certificate", "configure tls.certificate")
    info = certificate.read_certificate(der)
    now = datetime.datetime.now(datetime.UTC)
    facts = info.facts(now)
    facts["trust_store"] = options.ca_file or "system"
    facts["verified"] = probe.verify_error is None
    if probe.verify_error is not None:
        facts["verify_error"] = probe.verify_error.verify_message
    found = certificate.problems(info, options.host, now, probe.verify_error)
    if found:
        return failed(
            "certificate", "; ".join(p for p, _ in found), "; ".join(fix for _, fix in found), **facts
        )
    days = info.days_left(now)
    summary = f"{info.subject}, valid for {options.host}, trusted via {facts['trust_store']}"
    if days < certificate.EXPIRY_WARNING_DAYS:
        return warned(
            "certificate",
            f"{summary}, but it expires in {days} days ({info.not_after:%Y-%m-%d})",
            "renew it soon: re-run the deployment (ftps_certificate role) or install a new certificate",
            **facts,
        )
    return passed("certificate", f"{summary}, expires in {days} days", **facts)


def _login_refused(user: str, stage: str, reply: Reply) -> StepResult:
    facts = {"user": user, "reply": reply.text, "refused_at": stage}
    if reply.code == 421:
        return failed(
            "login",
            f"the server ended the session at {stage}: «{reply}» (banned after too many failed logins, "
            "or too many connections)",
            "wait for the ban to expire (limits.ban_duration) and fix the password first",
            **facts,
        )
    text = reply.text.upper()
    if "TLS" in text or "SSL" in text:
        return failed(
            "login",
            f"the server refuses this login without TLS: «{reply}»",
            "the control connection is not protected; check the tls step",
            **facts,
        )
    if stage == "USER":
        return failed(
            "login",
            f"the server refused the user name {user!r}: «{reply}» (unknown or not allowed user)",
            "check the user name against the server's users (ftps_server role)",
            **facts,
        )
    return failed(
        "login",
        f"the server refused the login of {user!r}: «{reply}». A wrong password or an unknown user: "
        "ftpsd answers both alike so that user names cannot be guessed",
        "check the user name and its password (inventory vault) and that the user is configured on "
        "the server; repeated failures get this address banned",
        **facts,
    )


def check_login(probe: Probe) -> StepResult:
    """Step 3: USER/PASS, reporting the server's own answer."""
    user, password = probe.options.user or "", probe.options.password or ""
    reply = probe.channel.command(f"USER {user}")
    if reply.code == 331:
        reply = probe.channel.command(f"PASS {password}")
        stage = "PASS"
    else:
        stage = "USER"
    if reply.code == 230:
        return passed("login", f"logged in as {user!r}", user=user)
    return _login_refused(user, stage, reply)


def check_protection(probe: Probe) -> StepResult:
    """Step 4a: PBSZ 0 and PROT P, without which an FTPS server must refuse data connections."""
    facts: dict[str, object] = {}
    for command in ("PBSZ 0", "PROT P"):
        reply = probe.channel.command(command)
        facts[command.split()[0].lower() + "_reply"] = reply.text
        if reply.code != 200:
            return failed(
                "protection",
                f"the server refused {command}: «{reply}»",
                "a server that cannot protect the data channel cannot do FTPS transfers; check its TLS setup",
                **facts,
            )
    return passed("protection", "PBSZ 0 and PROT P accepted: data connections will be encrypted", **facts)
