"""Data channel steps: PASV and EPSV with a real listing each, then TLS session reuse.

PASV carries an address and EPSV does not, so running both separates the two classic faults: a
wrong or missing masquerade address breaks PASV only, a closed passive range in a firewall breaks both.
"""

from __future__ import annotations

from ftpsd.doctor.addresses import private_announced_to_public
from ftpsd.doctor.datachannel import (
    LOG_HINT,
    SESSION_REUSE_REFUSED,
    PassiveRefused,
    Transfer,
    request_passive,
    run_transfer,
    transfer_problem,
)
from ftpsd.doctor.probe import PassiveRoute, Probe
from ftpsd.doctor.report import StepResult, failed, passed, skipped, warned


def _listing(probe: Probe, target: tuple[str, int], reuse_session: bool = True) -> Transfer:
    return run_transfer(
        probe.channel,
        probe.context,
        target,
        "NLST",
        timeout=probe.options.timeout,
        reuse_session=reuse_session,
    )


def _judge_listing(
    name: str, transfer: Transfer, probe: Probe, route: PassiveRoute, facts: dict[str, object]
) -> StepResult:
    final = transfer.final
    if final is not None and final is transfer.preliminary and final.code == 550:
        return warned(
            name,
            f"data port reached, but this user may not list: «{final}»; TLS on the data channel was "
            "not checked",
            "run the doctor with a user allowed to list (e.g. the full-rights user)",
            **facts,
        )
    problem = transfer_problem(transfer)
    if problem:
        return failed(name, *problem, **facts)
    probe.remember_route(route, transfer.session_reused)
    facts["session_reused"] = transfer.session_reused
    host, port = transfer.target
    return passed(name, f"data connection to {host}:{port} listed the folder over TLS", **facts)


MASQUERADE_SETTING = (
    "the masquerade address (ftps_server masquerade variable, ftpsd server.masquerade_address)"
)


def _masquerade_hint(address: str) -> str:
    return f"set {MASQUERADE_SETTING} to the address clients connect to ({address})"


def _announced_address_failed(
    probe: Probe, announced: str, port: int, first: Transfer, facts: dict[str, object]
) -> StepResult:
    """The announced address did not answer: is the same port reachable on the control address?"""
    control = probe.channel
    retry = _listing(probe, (control.peer, port))
    facts["reachable_on_control_address"] = retry.connect_error is None
    if retry.connect_error is not None:
        diagnosis, hint = transfer_problem(first) or ("", "")
        return failed(
            "pasv",
            f"{diagnosis}; the server announced {announced} although you connected to {control.peer}",
            f"{hint}; check the masquerade address too",
            **facts,
        )
    if retry.ok:
        probe.remember_route(PassiveRoute("PASV", use_control_address=True), retry.session_reused)
    if private_announced_to_public(announced, control.peer):
        diagnosis = (
            f"the server announces the private address {announced} to a client that connected to the "
            f"public {control.peer}: the masquerade address is missing"
        )
    else:
        diagnosis = (
            f"the server announces {announced}, but its data port answers on {control.peer}, the address "
            "you connected to: the masquerade address is wrong"
        )
    return failed("pasv", diagnosis, _masquerade_hint(control.peer), **facts)


def _judge_masquerade(probe: Probe, announced: str, port: int, facts: dict[str, object]) -> StepResult:
    """From inside a NAT the public address is unreachable by design (no hairpin), so the announced
    address is compared with the expected one and the data connection goes to the control address."""
    expected = probe.options.masquerade
    facts["expected_address"] = expected
    if announced != expected:
        return failed(
            "pasv",
            f"the server announces {announced}, not the public address {expected} clients outside "
            "the NAT must reach: the masquerade address is wrong or missing",
            f"set {MASQUERADE_SETTING} to {expected}",
            **facts,
        )
    route = PassiveRoute("PASV", use_control_address=True)
    return _judge_listing("pasv", _listing(probe, (probe.channel.peer, port)), probe, route, facts)


def check_pasv(probe: Probe) -> StepResult:
    """Step 4b: PASV, the announced address judged against the control connection's, and a listing."""
    control = probe.channel
    if control.ipv6:
        return skipped("pasv", "not run: PASV carries only IPv4 addresses; over IPv6 clients use EPSV")
    try:
        announced, port = request_passive(control, "PASV")
    except PassiveRefused as err:
        return failed("pasv", f"the server refused PASV: «{err.reply}»", LOG_HINT, reply=err.reply.text)
    facts: dict[str, object] = {"announced_address": announced, "port": port, "control_address": control.peer}
    if probe.options.masquerade:
        return _judge_masquerade(probe, announced, port, facts)
    transfer = _listing(probe, (announced, port))
    if transfer.connect_error is not None and announced != control.peer:
        return _announced_address_failed(probe, announced, port, transfer, facts)
    result = _judge_listing("pasv", transfer, probe, PassiveRoute("PASV"), facts)
    if result.passed and private_announced_to_public(announced, control.peer):
        return warned(
            "pasv",
            f"the server announces the private address {announced} to a client that connected to the "
            f"public {control.peer}; it works from here, but not for clients outside that network",
            _masquerade_hint(control.peer),
            **facts,
        )
    return result


def check_epsv(probe: Probe) -> StepResult:
    """Step 4c: EPSV (RFC 2428): port only, so it works whatever address the server believes it has."""
    control = probe.channel
    try:
        host, port = request_passive(control, "EPSV")
    except PassiveRefused as err:
        if control.ipv6:
            return failed("epsv", f"the server refused EPSV over IPv6: «{err.reply}»", "enable EPSV")
        return warned(
            "epsv",
            f"the server does not support EPSV: «{err.reply}»; IPv4 clients fall back to PASV",
            "enable EPSV (RFC 2428) on the server",
            reply=err.reply.text,
        )
    return _judge_listing("epsv", _listing(probe, (host, port)), probe, PassiveRoute("EPSV"), {"port": port})


def _reuse_required(fresh: Transfer) -> bool | None:
    """Judge a data connection made without resuming the session: refused means reuse is required."""
    if fresh.ok:
        return False
    refused = fresh.tls_error or fresh.io_error or (fresh.final and fresh.final.code == SESSION_REUSE_REFUSED)
    if fresh.connect_error is None and refused:
        return True
    return None


def check_session_reuse(probe: Probe) -> StepResult:
    """Step 5: did our data connections resume the control session, and does the server insist?

    A server that accepts a data connection without resumption lets another client who guesses the
    passive port steal the transfer; requiring reuse is the fix (vsftpd require_ssl_reuse, ftpsd default).
    """
    try:
        fresh = _listing(probe, probe.open_data(), reuse_session=False)
    except PassiveRefused as err:
        return failed("session_reuse", f"the server refused a passive port: «{err.reply}»", LOG_HINT)
    reused, required = probe.data_session_reused, _reuse_required(fresh)
    facts = {
        "client_resumed": reused,
        "server_requires_reuse": required,
        "fresh_session_reply": fresh.final.text if fresh.final else None,
    }
    if required is None:
        diagnosis, hint = transfer_problem(fresh) or ("", "")
        return warned(
            "session_reuse", f"could not tell whether the server requires reuse: {diagnosis}", hint, **facts
        )
    if reused and required:
        return passed(
            "session_reuse",
            "data connections resume the control connection's TLS session, and the server refuses "
            f"one that does not («{fresh.final}»)",
            **facts,
        )
    if reused:
        return warned(
            "session_reuse",
            "the server accepts data connections that do not resume the control connection's TLS "
            "session: another client could steal a data connection",
            "require TLS session reuse on data connections (ftpsd: tls.require_session_reuse = true)",
            **facts,
        )
    if not required:
        return warned(
            "session_reuse",
            "the server did not resume this client's TLS session on the data connection",
            "enable TLS session resumption on the server; some clients insist on it",
            **facts,
        )
    return failed(
        "session_reuse",
        "the server requires TLS session reuse but did not resume this client's session",
        "check the server's session cache and ticket settings, and its log",
        **facts,
    )
