"""The FileZilla Site Manager export as report.yml renders it: version stamp, a site per user and mode."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "filezilla-sitemanager.xml.j2"
# The oldest FileZilla supported (Debian 12); a higher stamp makes it warn "Detected newer version".
OLDEST_SUPPORTED = (3, 63, 0)
RIGHTS = {"full": "full rights", "upload_only": "upload only"}
USERS = [{"name": "admin", "permissions": "full"}, {"name": "drop<box>", "permissions": "upload_only"}]


def host(name: str, implicit_port: int) -> dict:
    return {
        "name": name,
        "site": "shanghai",
        "public_address": f"{name}.example",
        "explicit_port": 21,
        "implicit_port": implicit_port,
        "users": USERS,
        "certificate": {"fingerprint_sha256": "AB:CD"},
    }


def render(hosts: list[dict]) -> ET.Element:
    # ansible.builtin.template renders with trim_blocks on, as here.
    env = jinja2.Environment(trim_blocks=True, autoescape=False)  # XML escaped with | e
    text = env.from_string(TEMPLATE.read_text()).render(
        ftps_report_site="shanghai", ftps_report_hosts=hosts, ftps_report_rights=RIGHTS
    )
    return ET.fromstring(text.encode())


def sites(root: ET.Element) -> list[tuple[str, str, str, str]]:
    return [
        (s.findtext("Host"), s.findtext("Port"), s.findtext("Protocol"), s.findtext("User"))
        for s in root.findall("./Servers/Folder/Server")
    ]


def test_version_stamp_is_not_newer_than_the_oldest_supported_filezilla() -> None:
    root = render([host("ftps-1", 990)])
    assert root.tag == "FileZilla3"
    assert tuple(int(part) for part in root.get("version").split(".")) <= OLDEST_SUPPORTED


def test_implicit_sites_only_where_the_host_serves_implicit_ftps() -> None:
    root = render([host("ftps-1", 990), host("ftps-2", 0)])
    assert sites(root) == [
        ("ftps-1.example", "21", "4", "admin"),
        ("ftps-1.example", "990", "3", "admin"),
        ("ftps-1.example", "21", "4", "drop<box>"),
        ("ftps-1.example", "990", "3", "drop<box>"),
        ("ftps-2.example", "21", "4", "admin"),
        ("ftps-2.example", "21", "4", "drop<box>"),
    ]
    names = [s.findtext("Name") for s in root.findall("./Servers/Folder/Server")]
    assert names[:2] == ["ftps-1 (admin, explicit FTPS)", "ftps-1 (admin, implicit FTPS)"]


def test_no_password_is_written_and_filezilla_asks_for_it() -> None:
    for server in render([host("ftps-1", 990)]).findall("./Servers/Folder/Server"):
        assert server.find("Pass") is None
        assert server.findtext("Logontype") == "2"
        assert server.findtext("PasvMode") == "MODE_PASSIVE"
