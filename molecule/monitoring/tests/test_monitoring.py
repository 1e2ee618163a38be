"""Prometheus on prom scrapes the fleet through the firewalls; counters move; the certificate alert fires.

Run order matters only for the last test, which swaps mon-a's certificate for a short-lived one (and back).
"""

from __future__ import annotations

import base64
import datetime
import io
import ssl
import time
import tomllib

import pytest
import yaml
from conftest import METRICS_PORT, REPORTS, WAIT, inventory_value, lab_ipv6, wait_for
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from ftpsd.client import FTPS
from scenario_runs import reachable

ALERT = "FtpsdCertificateExpiresSoon"


def target(addresses: dict[str, str], host: str) -> str:
    return f"{addresses[host]}:{METRICS_PORT}"


def test_generated_job_lists_both_hosts_by_site(addresses):
    """reports/prometheus-ftpsd.yml: job ftpsd, one static group per site, the hosts' lab addresses."""
    job = yaml.safe_load((REPORTS / "prometheus-ftpsd.yml").read_text())["scrape_configs"]
    assert [j["job_name"] for j in job] == ["ftpsd"]
    groups = {g["labels"]["site"]: g["targets"] for g in job[0]["static_configs"]}
    assert groups == {"site-a": [target(addresses, "mon-a")], "site-b": [target(addresses, "mon-b")]}


def test_report_shows_the_metrics_endpoint():
    rows = {
        line.split(" | ")[0][2:]: line for line in (REPORTS / "deployment-report.md").read_text().splitlines()
    }
    assert f"| [::]:{METRICS_PORT} |" in rows["mon-a"]
    assert f"| 0.0.0.0:{METRICS_PORT} |" in rows["mon-b"]


def test_prom_scrapes_mon_a_and_cannot_reach_mon_b(addresses, query):
    """mon-a lets prom in; mon-b's monitoring network does not contain prom, so its firewall drops it."""
    wanted = {target(addresses, "mon-a"): 1.0, target(addresses, "mon-b"): 0.0}
    wait_for("up{job='ftpsd'} is 1 for mon-a and 0 for mon-b", lambda: query('up{job="ftpsd"}') == wanted)


@pytest.mark.parametrize("host", ["mon-a", "mon-b"])
def test_the_controller_cannot_reach_the_metrics_port(host, addresses):
    """Not in either monitoring network (mon-a behind nftables, mon-b behind firewalld)."""
    for address in [addresses[host], lab_ipv6(host)]:
        assert not reachable(address, METRICS_PORT), address


def test_firewalld_has_a_rich_rule_per_monitoring_network(host):
    """mon-b's zone: the metrics port from each of its networks, IPv4 and IPv6, and not as a plain port."""
    if host.backend.get_hostname() != "mon-b":
        pytest.skip("mon-b is the firewalld host")
    rules = host.check_output("firewall-cmd --zone public --list-rich-rules").splitlines()
    assert sorted(rules) == [
        f'rule family="{family}" source address="{network}" port port="{METRICS_PORT}" protocol="tcp" accept'
        for family, network in [("ipv4", "198.19.254.0/24"), ("ipv6", "2001:2:0:fffe::/64")]
    ], rules
    assert f"{METRICS_PORT}/tcp" not in host.check_output("firewall-cmd --zone public --list-all")


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # counters are the point here, trust is tested elsewhere
    return context


def test_counters_move_after_an_upload_and_a_failed_login(addresses, query):
    user = next(u for u in inventory_value("mon-a", "ftps_server_users") if u.get("permissions") == "full")
    instance = target(addresses, "mon-a")
    series = {
        "ok": 'ftpsd_logins_total{result="ok"}',
        "failed": 'ftpsd_logins_total{result="wrong_password_or_unknown_user"}',
        "upload": 'ftpsd_transfers_total{direction="upload",result="ok"}',
        "bytes": 'ftpsd_transfer_bytes_total{direction="upload"}',
    }
    # A list, not the value: a counter at 0 is a value too.
    before = {
        name: wait_for(f"{e} of mon-a", lambda e=e: [v for i, v in query(e).items() if i == instance])[0]
        for name, e in series.items()
    }
    payload = b"metrics probe\n" * 1000

    ftp = FTPS(context=_context(), timeout=30)
    ftp.connect(addresses["mon-a"], 21)
    ftp.login(user["name"], user["password"])
    ftp.prot_p()
    ftp.storbinary("STOR metrics-probe.bin", io.BytesIO(payload))
    ftp.delete("metrics-probe.bin")
    ftp.quit()
    bad = FTPS(context=_context(), timeout=30)
    bad.connect(addresses["mon-a"], 21)
    with pytest.raises(Exception, match="530"):
        bad.login(user["name"], "not-the-password")
    bad.close()

    def moved() -> dict[str, float]:
        now = {name: query(e).get(instance, 0.0) for name, e in series.items()}
        done = (
            now["ok"] >= before["ok"] + 1
            and now["failed"] >= before["failed"] + 1
            and now["upload"] >= before["upload"] + 1
            and now["bytes"] >= before["bytes"] + len(payload)
        )
        return now if done else {}

    wait_for(f"the counters of mon-a to move from {before}", moved)


def _short_lived_certificate(key_pem: bytes, days: int) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mon-a short-lived test certificate")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _firing(prometheus, instance: str) -> bool:
    return any(
        a["labels"].get("alertname") == ALERT
        and a["labels"].get("instance") == instance
        and a["state"] == "firing"
        for a in prometheus("alerts")["alerts"]
    )


def test_z_certificate_alert_fires_for_a_short_lived_certificate(host, addresses, query, prometheus):
    """Quiet with the deployed certificate; firing once mon-a serves one that expires in 2 days."""
    if host.backend.get_hostname() != "mon-a":
        pytest.skip("runs once, on mon-a")
    instance = target(addresses, "mon-a")
    tls = tomllib.loads(host.file("/etc/ftpsd/ftpsd.toml").content_string)["tls"]
    original = host.file(tls["certificate"]).content

    # The rule has been evaluated on mon-a's current value (a scrape and an evaluation every second).
    wait_for(
        "mon-a's certificate expiry in Prometheus",
        lambda: query("ftpsd_certificate_not_after_timestamp_seconds").get(instance),
    )
    time.sleep(3)  # a few rule evaluations on it (every second)
    assert not _firing(prometheus, instance)

    short = _short_lived_certificate(host.file(tls["private_key"]).content, days=2)
    try:
        _install(host, tls["certificate"], short)
        expiry = x509.load_pem_x509_certificate(short).not_valid_after_utc.timestamp()
        wait_for(
            "the served certificate's expiry to reach Prometheus",
            lambda: abs(query("ftpsd_certificate_not_after_timestamp_seconds").get(instance, 0) - expiry) < 2,
        )
        wait_for(f"{ALERT} firing for {instance}", lambda: _firing(prometheus, instance), timeout=WAIT)
    finally:
        _install(host, tls["certificate"], original)


def _install(host, path: str, pem: bytes) -> None:
    """Replace the served certificate in place and reload ftpsd."""
    encoded = base64.b64encode(pem).decode()
    # cat into the existing file keeps its owner and mode.
    host.run_expect([0], f"echo {encoded} | base64 -d > {path}.new && cat {path}.new > {path}; rm {path}.new")
    host.run_expect([0], "systemctl reload ftpsd")
