"""Step 6 (optional): a real file round trip, the one check that proves users can work.

Upload a random probe file, find it in the listing, download it, compare SHA-256, delete it. The
name is random so parallel runs never collide; the file is deleted even when a middle stage fails.
"""

from __future__ import annotations

import hashlib
import secrets

from ftpsd.doctor.datachannel import PassiveRefused, Transfer, run_transfer, transfer_problem
from ftpsd.doctor.probe import Probe
from ftpsd.doctor.report import StepResult, failed, passed, skipped

PROBE_SIZE = 64 * 1024
RIGHTS_HINT = "--roundtrip needs a user allowed to upload, list, download and delete (the full-rights user)"


def _transfer(probe: Probe, command: str, upload: bytes | None = None) -> Transfer:
    return run_transfer(
        probe.channel, probe.context, probe.open_data(), command, timeout=probe.options.timeout, upload=upload
    )


def _list_and_fetch(probe: Probe, name: str, payload: bytes) -> tuple[str, str] | None:
    listing = _transfer(probe, "NLST")
    problem = transfer_problem(listing)
    if problem:
        return (f"listing after the upload failed: {problem[0]}", problem[1])
    if name not in listing.data.decode("utf-8", "replace").split():
        return (
            f"the uploaded {name} is missing from the listing",
            "check the user's home folder on the server",
        )
    download = _transfer(probe, f"RETR {name}")
    problem = transfer_problem(download)
    if problem:
        return (f"download failed: {problem[0]}", f"{problem[1]}; {RIGHTS_HINT}")
    if hashlib.sha256(download.data).digest() != hashlib.sha256(payload).digest():
        return (
            f"the downloaded file differs from the uploaded one ({len(download.data)}/{len(payload)} bytes)",
            "something on the way alters transfers (ASCII mode conversion, a proxy) or the disk is failing",
        )
    return None


def _refused(err: PassiveRefused) -> tuple[str, str]:
    return (f"the server refused a passive port: «{err.reply}»", "check the server log")


def check_roundtrip(probe: Probe) -> StepResult:
    name = f"ftps-doctor-{secrets.token_hex(6)}.probe"
    payload = secrets.token_bytes(PROBE_SIZE)
    facts: dict[str, object] = {
        "file": name,
        "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    # A user without list rights may still get a listing (ftpsd sends an empty one), but the probe file
    # could be neither found nor deleted afterwards; MLST of the folder is refused to such a user.
    folder = probe.channel.command("MLST")
    if folder.code != 250:
        return skipped("roundtrip", f"not run: this user may not list («{folder}»); {RIGHTS_HINT}")
    probe.channel.command("TYPE I")  # binary, so that the hashes must match byte for byte
    try:
        problem = transfer_problem(_transfer(probe, f"STOR {name}", payload))
    except PassiveRefused as err:
        problem = _refused(err)
    if problem:
        return failed(
            "roundtrip", f"upload of {name} failed: {problem[0]}", f"{problem[1]}; {RIGHTS_HINT}", **facts
        )
    try:
        problem = _list_and_fetch(probe, name, payload)
    except PassiveRefused as err:
        problem = _refused(err)
    deleted = probe.channel.command(f"DELE {name}")
    if deleted.code != 250:
        problem = (
            (f"{problem[0]}; " if problem else "")
            + f"the probe file {name} could not be deleted («{deleted}») and is left on the server",
            f"delete it by hand; {RIGHTS_HINT}",
        )
    if problem:
        return failed("roundtrip", *problem, **facts)
    return passed(
        "roundtrip", f"uploaded, listed, downloaded (SHA-256 identical) and deleted {name}", **facts
    )
