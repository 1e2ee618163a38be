"""Unit tests of the metrics: the [metrics] settings, the registry's bounded labels, the failure reasons."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import ftpsd.metrics as m
import pytest
from ftpsd.bans import BanTracker
from ftpsd.config import ConfigError, parse_config
from ftpsd.quotas import QuotaBook, UploadClaim
from ftpsd.settings import QuotaSettings, TlsSettings
from ftpsd.tls import handshake_failure_reason, load_material
from OpenSSL import SSL
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from selfsigned import write_self_signed
from test_config import base


def with_metrics(server: dict[str, Any] | None = None, **metrics: object) -> dict[str, Any]:
    data = copy.deepcopy(base())
    data["metrics"] = metrics
    if server:
        data["server"] = server
    return data


def test_defaults_loopback_and_9821() -> None:
    config = parse_config(base())
    assert (config.metrics.listen_address, config.metrics.port) == ("127.0.0.1", 9821)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_metrics(port=50001), "metrics.port: 50001 is inside server.passive_ports [50000, 60000]"),
        (with_metrics(port=21), "metrics.port: 21 is server.explicit_port"),
        (with_metrics({"implicit_port": 990}, port=990), "metrics.port: 990 is server.implicit_port"),
        (with_metrics(port=70000), "metrics.port: 70000 is not a port number"),
        (with_metrics(port=-1), "metrics.port: -1 is not a port number"),
        (with_metrics(port="9821"), "metrics.port: expected int"),
        (
            with_metrics(listen_address="localhost"),
            "metrics.listen_address: 'localhost' is not an IP address",
        ),
        (with_metrics(listen_address="127.0.0.300"), "metrics.listen_address: '127.0.0.300' is not an IP"),
        (with_metrics(prot=9821), "metrics.prot: unknown key"),
    ],
)
def test_bad_metrics_settings_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message)


def test_port_zero_is_off_and_is_no_clash_with_a_disabled_implicit_port() -> None:
    config = parse_config(with_metrics(listen_address="::1", port=0))
    assert (config.metrics.listen_address, config.metrics.port) == ("::1", 0)
    registry = m.Metrics(lambda: 0)
    registry.serve("127.0.0.1", 0)  # no HTTP server: nothing to bind, nothing to close
    registry.close()


def test_a_changed_metrics_port_needs_a_restart_like_a_control_port() -> None:
    before = parse_config(base()).listen_signature()
    assert parse_config(with_metrics(port=9822)).listen_signature() != before
    assert parse_config(with_metrics(listen_address="0.0.0.0")).listen_signature() != before


def samples(metrics: m.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_label_value_exists_at_zero_from_the_start() -> None:
    found = samples(m.Metrics(lambda: 0))
    expected = {
        "ftpsd_sessions": ("port_kind", m.PORT_KINDS),
        "ftpsd_connections_refused_total": ("reason", m.REFUSAL_REASONS),
        "ftpsd_logins_total": ("result", m.LOGIN_RESULTS),
        "ftpsd_tls_handshake_failures_total": ("reason", m.HANDSHAKE_FAILURES),
        "ftpsd_transfer_bytes_total": ("direction", m.DIRECTIONS),
        "ftpsd_transfer_duration_seconds_count": ("direction", m.DIRECTIONS),
        "ftpsd_transfer_held_back_seconds_total": ("direction", m.DIRECTIONS),
        "ftpsd_bandwidth_limit_bytes_per_second": ("direction", m.DIRECTIONS),
    }
    for name, (label, values) in expected.items():
        assert {k[1]: v for k, v in found.items() if k[0] == name} == {((label, x),): 0 for x in values}
    transfers = {k[1]: v for k, v in found.items() if k[0] == "ftpsd_transfers_total"}
    assert transfers == {
        (("direction", d), ("result", r)): 0 for d in m.DIRECTIONS for r in m.TRANSFER_RESULTS
    }
    assert found[("ftpsd_banned_addresses", ())] == 0


def test_no_label_can_carry_a_name_or_an_address() -> None:
    """Only the fixed label names; an attacker picks user names and addresses, never these values."""
    metrics = m.Metrics(lambda: 3)
    metrics.login("wrong_password_or_unknown_user")
    metrics.transfer("upload", "ok", 10, 0.2)
    labels = {
        name
        for (metric, key), _ in samples(metrics).items()
        if metric.startswith("ftpsd_")
        for name, _ in key
    }
    assert labels == {"port_kind", "reason", "result", "direction", "le"}


def test_process_and_platform_metrics_are_on_the_registry() -> None:
    names = {name for name, _ in samples(m.Metrics(lambda: 0))}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names


def test_banned_addresses_are_counted_at_scrape_time() -> None:
    now = [0.0]
    bans = BanTracker(1, 60, 100, clock=lambda: now[0])
    metrics = m.Metrics(bans.banned_now)
    assert bans.record_failure("192.0.2.1") and bans.record_failure("192.0.2.2")
    assert samples(metrics)[("ftpsd_banned_addresses", ())] == 2
    now[0] = 100.0  # both bans expired, though not yet pruned
    assert samples(metrics)[("ftpsd_banned_addresses", ())] == 0


def test_a_failed_reload_flips_the_result_gauges() -> None:
    metrics = m.Metrics(lambda: 0)
    metrics.loaded(None)
    found = samples(metrics)
    assert found[("ftpsd_last_reload_result", (("result", "failed"),))] == 1
    assert found[("ftpsd_last_reload_result", (("result", "ok"),))] == 0
    assert found[("ftpsd_last_reload_timestamp_seconds", ())] > 0


def test_a_load_sets_the_renewal_window_and_a_failed_one_keeps_it(tmp_path: Path) -> None:
    cert, key = write_self_signed(tmp_path, "server")
    settings = TlsSettings(certificate=str(cert), private_key=str(key), renewal_warning_days=21)
    metrics = m.Metrics(lambda: 0)
    assert samples(metrics)[("ftpsd_certificate_renewal_window_seconds", ())] == 0  # nothing loaded yet
    metrics.loaded(load_material(settings))
    assert samples(metrics)[("ftpsd_certificate_renewal_window_seconds", ())] == 21 * 86400
    metrics.loaded(None)  # the old certificate, and with it its window, is still what is served
    assert samples(metrics)[("ftpsd_certificate_renewal_window_seconds", ())] == 21 * 86400


def ssl_error(reason: str) -> SSL.Error:
    return SSL.Error([("SSL routines", "", reason)])


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ssl_error("unsupported protocol"), "protocol_version"),
        (ssl_error("wrong version number"), "protocol_version"),
        (ssl_error("tlsv1 alert protocol version"), "protocol_version"),
        (ssl_error("no shared cipher"), "no_shared_cipher"),
        (ssl_error("no suitable key share"), "no_shared_cipher"),
        (ssl_error("sslv3 alert bad certificate"), "certificate"),
        (ssl_error("tlsv1 alert unknown ca"), "certificate"),
        (ssl_error("unexpected eof while reading"), "eof"),
        (SSL.SysCallError(-1, "Unexpected EOF"), "eof"),
        (None, "eof"),
        (ssl_error("http request"), "other"),
    ],
)
def test_handshake_failure_reasons(error: SSL.Error | None, reason: str) -> None:
    assert handshake_failure_reason(error) == reason
    assert reason in m.HANDSHAKE_FAILURES


def test_quota_gauges_follow_the_configured_folders_and_their_live_usage(tmp_path: Path) -> None:
    metrics = m.Metrics(lambda: 0)
    assert not [name for name, _ in samples(metrics) if name.startswith("ftpsd_quota_")]  # none configured
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 10)
    book = QuotaBook([QuotaSettings(str(tmp_path / "a"), 100, 5), QuotaSettings(str(tmp_path / "b"), 0, 0)])
    book.count_new()
    metrics.quotas_loaded(book.quotas)
    claim = UploadClaim(book.quotas[0], 0, 0, True)
    claim.attach("/t")
    claim.charge(7)  # read at scrape time: the upload in progress shows
    found = samples(metrics)
    a = (("path", str(tmp_path / "a")),)
    assert (found[("ftpsd_quota_used_bytes", a)], found[("ftpsd_quota_used_files", a)]) == (17, 2)
    assert (found[("ftpsd_quota_limit_bytes", a)], found[("ftpsd_quota_limit_files", a)]) == (100, 5)
    assert found[("ftpsd_quota_used_bytes", (("path", str(tmp_path / "b")),))] == 0
    metrics.quotas_loaded(QuotaBook([QuotaSettings(str(tmp_path / "b"), 1, 0)], book).quotas)  # a reload
    paths = {key for name, key in samples(metrics) if name.startswith("ftpsd_quota_")}
    assert paths == {(("path", str(tmp_path / "b")),)}
