"""TLS as a scanner sees it: sslyze scans the explicit port (`--starttls ftp`) and the implicit port (TLS from
the first byte) against Mozilla's "intermediate" configuration, with the server's own certificate as the
trust anchor (--certinfo_ca_file: the deployment's certificate is self-signed).

sslyze lives in its own virtual environment, .cache/sslyze-venv (its pins differ from Ansible's), which
`make reliability` installs.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from labhost import REPO, SERVER, Deployment

VENV = REPO / ".cache" / "sslyze-venv"
PORTS = {"explicit": ["--starttls", "ftp", "{host}:21"], "implicit": ["{host}:990"]}
BELOW_TLS_1_2 = (
    "ssl_2_0_cipher_suites",
    "ssl_3_0_cipher_suites",
    "tls_1_0_cipher_suites",
    "tls_1_1_cipher_suites",
)
# How sslyze prints each reason for non-compliance: "    * <check>: <explanation>".
_ISSUE = re.compile(r"^\s+\* (\w+): (.*)$")


@dataclass(frozen=True)
class Scan:
    returncode: int
    issues: dict[str, str]
    result: dict

    def supported(self, field: str) -> bool:
        return self.result["scan_result"][field]["result"]["is_tls_version_supported"]


@pytest.fixture(scope="module")
def sslyze() -> Path:
    executable = VENV / "bin" / "sslyze"
    if not executable.exists():
        pytest.fail(f"{executable} is missing: `make reliability` installs it")
    return executable


@pytest.fixture(scope="module")
def scans(sslyze: Path, deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scan]:
    out = tmp_path_factory.mktemp("sslyze")
    results = {}
    for kind, target in PORTS.items():
        report = out / f"{kind}.json"
        proc = subprocess.run(
            [
                str(sslyze),
                *(arg.format(host=deployment.server.address) for arg in target),
                "--mozilla_config=intermediate",
                f"--certinfo_ca_file={deployment.certificate_file}",
                f"--json_out={report}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        compliance = proc.stdout.partition("COMPLIANCE AGAINST")[2]
        issues = dict(m.groups() for line in compliance.splitlines() if (m := _ISSUE.match(line)))
        (server_result,) = json.loads(report.read_text())["server_scan_results"]
        results[kind] = Scan(proc.returncode, issues, server_result)
    return results


@pytest.fixture(params=sorted(PORTS))
def scan(request: pytest.FixtureRequest, scans: dict[str, Scan]) -> Scan:
    return scans[request.param]


def test_the_scan_completes(scan: Scan) -> None:
    assert scan.result["connectivity_status"] == "COMPLETED", scan.result["connectivity_error_trace"]
    assert scan.result["scan_status"] == "COMPLETED"


def test_nothing_below_tls_1_2_is_offered(scan: Scan) -> None:
    assert [field for field in BELOW_TLS_1_2 if scan.supported(field)] == []
    assert scan.supported("tls_1_2_cipher_suites")


def test_protocols_ciphers_curves_and_key_meet_mozilla_intermediate(scan: Scan) -> None:
    """Every check of the profile except the certificate's trust path (see the next test)."""
    assert scan.returncode == 0 or scan.issues, "sslyze found the server non-compliant, but said nothing why"
    assert {k: v for k, v in scan.issues.items() if k != "certificate_path_validation"} == {}


def test_the_whole_mozilla_intermediate_check_passes(scan: Scan) -> None:
    assert (scan.returncode, scan.issues) == (0, {})


def test_the_certificate_is_the_deployed_one_with_the_expected_names(
    scan: Scan, deployment: Deployment
) -> None:
    certificate_info = scan.result["scan_result"]["certificate_info"]["result"]
    leaf = certificate_info["certificate_deployments"][0]["received_certificate_chain"][0]
    assert leaf["subject_alternative_name"] == {
        "dns_names": [SERVER],
        "ip_addresses": [deployment.server.address, deployment.server.address6],
    }
    presented = x509.load_pem_x509_certificate(leaf["as_pem"].encode())
    assert presented == x509.load_pem_x509_certificate(deployment.certificate_file.read_bytes())
    key = presented.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048  # the seed's RSA 2048
