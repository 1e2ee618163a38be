"""FileZilla 3.63 (Debian 12's package) driven headless: it imports our Site Manager export and connects.

FileZilla has no command to import sites, so the test does what a user does, through its own GUI on a
private X server (Xvfb) with xdotool: File > Import, the export rendered from `templates/` for this
loopback server, OK. What FileZilla then writes to its own `sitemanager.xml` is read back and must hold
every site of the export unchanged; a copy stamped newer than FileZilla proves the test sees the "Detected
newer version" warning that the version stamp exists to avoid. FileZilla then connects with `--site` to an
imported site (explicit and implicit), asks for the password (the export never holds one) and for trust in
the self-signed certificate, and lists the folder: what it logs must show TLS, the login and a listing
without error for both profiles (what each listing holds is asserted with lftp and curl in test_clients.py:
FileZilla's log file does not record listings' lines).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from conftest import PASSWORDS, ServerProcess

pytestmark = pytest.mark.live

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "filezilla-sitemanager.xml.j2"
SITE = "loopback"
RIGHTS = {"full": "full rights", "upload_only": "upload only"}
USERS = [{"name": "fbt_admin", "permissions": "full"}, {"name": "dropbox", "permissions": "upload_only"}]
# The fields of a site that FileZilla must keep as the export gives them.
EXPORT_NAME = "filezilla-loopback.xml"
FIELDS = ("Host", "Port", "Protocol", "User", "Logontype", "PasvMode", "EncodingType", "Name", "Comments")


def render_export(srv: ServerProcess) -> str:
    """The export as playbooks/report.yml renders it (ansible.builtin.template: trim_blocks on)."""
    host = {
        "name": "ftps-lo",
        "site": SITE,
        "public_address": "127.0.0.1",
        "explicit_port": srv.setup.explicit_port,
        "implicit_port": srv.setup.implicit_port,
        "users": USERS,
        "certificate": {"fingerprint_sha256": "AB:CD"},
    }
    env = jinja2.Environment(trim_blocks=True, autoescape=False)  # XML escaped with | e
    return env.from_string(TEMPLATE.read_text()).render(
        ftps_report_site=SITE, ftps_report_hosts=[host], ftps_report_rights=RIGHTS
    )


def sites(path: Path) -> list[dict[str, str | None]]:
    root = ET.parse(path).getroot()
    return [{f: s.findtext(f) for f in FIELDS} for s in root.iter("Server")]


def installed_version(display: str) -> str:
    """`filezilla -v` prints "FileZilla 3.63.0, compiled on ..." (it needs a display, and exits 255)."""
    out = subprocess.run(
        ["filezilla", "-v"],
        check=False,
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=30,
    )
    found = re.search(r"^FileZilla (\S+), compiled", out.stdout + out.stderr, re.MULTILINE)
    assert found, out
    return found.group(1)


class FileZilla:
    """One FileZilla process at a time on a private X server, with its own empty settings folder."""

    def __init__(self, home: Path, display: str) -> None:
        self.config = home / ".config" / "filezilla"
        self.config.mkdir(parents=True)
        self.log = home / "filezilla.log"
        version = installed_version(display)
        # A greeting already seen (no welcome dialog), and a log file to read what it did.
        (self.config / "filezilla.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<FileZilla3 version="{version}" platform="*nix">'
            f'<Settings><Setting name="Greeting version">{version}</Setting>'
            f'<Setting name="Logging file" platform="unix">{self.log}</Setting>'
            "</Settings></FileZilla3>\n"
        )
        self.env = {
            **os.environ,
            "HOME": str(home),
            "DISPLAY": display,
            "XDG_CONFIG_HOME": str(home / ".config"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = home / "filezilla.stderr"

    def start(self, *args: str) -> None:
        with self.stderr.open("wb") as stderr:
            self.proc = subprocess.Popen(
                ["filezilla", *args], env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        self.wait_window("^FileZilla$|^ftps-lo")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        (self.config / "lockfile").unlink(missing_ok=True)

    def xdotool(self, *args: str) -> str:
        result = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=30, check=False
        )
        return result.stdout.strip()

    def windows(self) -> list[str]:
        ids = self.xdotool("search", "--onlyvisible", "--name", ".").split()
        return [self.xdotool("getwindowname", w) for w in ids]

    def wait_window(self, pattern: str, timeout: float = 30) -> str:
        """The id of the first visible window whose title matches `pattern` (a regular expression)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.xdotool("search", "--onlyvisible", "--name", pattern).split()
            if found:
                return found[0]
            time.sleep(0.2)
        exited = (
            f"exited with {self.proc.returncode}" if self.proc and self.proc.poll() is not None else "running"
        )
        raise AssertionError(
            f"no window {pattern!r}; open: {self.windows()}; FileZilla {exited}, its stderr:\n"
            f"{self.stderr.read_text(errors='replace')}\nlog:\n{self.read_log()}"
        )

    def keys(self, window: str, *keys: str) -> None:
        self.xdotool("windowfocus", "--sync", window)
        self.xdotool("key", "--window", window, *keys)

    def type(self, window: str, text: str) -> None:
        self.xdotool("windowfocus", "--sync", window)
        self.xdotool("type", "--delay", "20", "--window", window, text)

    def import_file(self, path: Path) -> str:
        """File > Import, the file, OK; the title of the dialog FileZilla answers with."""
        main = self.wait_window("^FileZilla$")
        self.keys(main, "alt+f")
        time.sleep(0.5)
        self.keys(main, "i")
        chooser = self.wait_window("^Select file to import settings from$")
        self.keys(chooser, "ctrl+l")
        time.sleep(0.5)
        self.type(chooser, str(path))
        time.sleep(0.5)
        # The chooser may complete the name first; Return until it closes.
        for _ in range(5):
            self.keys(chooser, "Return")
            time.sleep(1)
            if not self.xdotool("search", "--onlyvisible", "--name", "^Select file to import").split():
                break
        self.keys(self.wait_window("^Import settings$"), "Return")
        answer = self.wait_window("^Import successful$|^Detected newer version")
        return self.xdotool("getwindowname", answer)

    def open_site(self, name: str, password: str) -> None:
        """`--site` with an imported site: the export asks for the password (Logontype 2), then FileZilla
        asks to trust the self-signed certificate (once: Return is "OK" without "Always trust")."""
        self.start(f"--site=0/{SITE}/{name}")
        prompt = self.wait_window("^Enter password$")
        self.type(prompt, password)
        self.keys(prompt, "Return")
        self.keys(self.wait_window("^Unknown certificate$"), "Return")

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.read_log():
                return self.read_log()
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in FileZilla's log; open: {self.windows()}\n{self.read_log()}")


@pytest.fixture(scope="module")
def x_display() -> Iterator[str]:
    read, write = os.pipe()
    xvfb = subprocess.Popen(
        # -noreset: without it the server resets whenever its last client (an xdotool call, a FileZilla
        # that quit) disconnects, and a FileZilla starting in that moment fails "Unable to initialize GTK+".
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=[write],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as numbers:
        display = ":" + numbers.readline().strip()
    yield display
    xvfb.terminate()
    xvfb.wait(10)


@pytest.fixture
def filezilla(tmp_path: Path, x_display: str) -> Iterator[FileZilla]:
    client = FileZilla(tmp_path / "home", x_display)
    yield client
    client.stop()


@pytest.fixture
def imported(server: ServerProcess, filezilla: FileZilla, tmp_path: Path) -> list[dict[str, str | None]]:
    export = tmp_path / EXPORT_NAME
    export.write_text(render_export(server))
    filezilla.start()
    assert filezilla.import_file(export) == "Import successful"
    filezilla.stop()
    return sites(filezilla.config / "sitemanager.xml")


def test_filezilla_imports_every_site_of_the_export_unchanged(
    server: ServerProcess, imported: list[dict[str, str | None]], tmp_path: Path
) -> None:
    assert imported == sites(tmp_path / EXPORT_NAME)
    ports = {server.setup.explicit_port: "4", server.setup.implicit_port: "3"}
    assert [(s["User"], int(s["Port"] or 0), s["Protocol"]) for s in imported] == [
        (user, port, protocol) for user in ("fbt_admin", "dropbox") for port, protocol in ports.items()
    ]


def test_a_newer_version_stamp_makes_filezilla_warn(
    server: ServerProcess, filezilla: FileZilla, tmp_path: Path
) -> None:
    """The negative control: what the stamp avoids is seen by this test when it is there."""
    export = tmp_path / "filezilla-newer.xml"
    export.write_text(render_export(server).replace('version="3.63.0"', 'version="3.99.0"', 1))
    filezilla.start()
    assert filezilla.import_file(export) == "Detected newer version of FileZilla"


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
@pytest.mark.parametrize("user", ["fbt_admin", "dropbox"])
def test_filezilla_connects_with_an_imported_site_and_lists(
    server: ServerProcess,
    imported: list[dict[str, str | None]],
    filezilla: FileZilla,
    user: str,
    mode: str,
) -> None:
    name = f"ftps-lo ({user}, {mode} FTPS)"
    assert name in [s["Name"] for s in imported]
    filezilla.open_site(name, PASSWORDS[user])
    log = filezilla.wait_log('Directory listing of "/" successful')
    assert "TLS connection established" in log
    assert "230 " in log and "Logged in" in log
    # The upload-only profile too: its listing (its own uploads only, see test_clients.py) is no error.
    assert "Failed to retrieve directory listing" not in log


def test_filezilla_with_a_wrong_password_is_refused_and_lists_nothing(
    imported: list[dict[str, str | None]], filezilla: FileZilla
) -> None:
    filezilla.open_site("ftps-lo (fbt_admin, explicit FTPS)", "not-the-password")
    log = filezilla.wait_log("Critical error: Could not connect to server")
    assert "Response: 530 " in log
    assert "Logged in" not in log and "Directory listing" not in log
