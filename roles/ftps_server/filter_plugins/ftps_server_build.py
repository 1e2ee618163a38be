"""Filters of the ftps_server role for the wheels the controller builds and fetches for each target.

Building the wheel (pip in a fresh build environment) is the slowest step of a re-run that changes nothing.
The wheel is byte-identical for identical inputs (SOURCE_DATE_EPOCH is fixed), so a digest of those inputs
(every file of the source tree that the build archive takes, and the pinned requirements built alongside)
tells whether the wheels already in the cache are the ones a build would make.

`pip download --python-version` picks wheels for the target's Python but evaluates environment markers for
the Python pip runs on, so a Debian 12 controller would leave out what only Python 3.12+ needs. The pins'
markers are evaluated here for each target instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ansible.errors import AnsibleFilterError
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

# As the exclusion_patterns of the "Pack the ftpsd source" task in tasks/wheels.yml, plus hidden folders
# (tool caches), which no build reads.
_SKIPPED_DIRS = frozenset({"build", "dist", "__pycache__", ".pytest_cache"})


def _skipped(name: str) -> bool:
    return name in _SKIPPED_DIRS or name.endswith(".egg-info") or name.startswith(".")


def source_digest(source: str, requirements: Iterable[str] = ()) -> str:
    """SHA-256 over the relative path and bytes of every source file, in a fixed order, and the pins."""
    root = Path(source)
    if not (root / "pyproject.toml").is_file():
        raise AnsibleFilterError(f"ftps_server_source_digest: {source} is not a Python source tree")
    digest = hashlib.sha256()
    for line in sorted(requirements):
        digest.update(f"requirement\0{line}\0".encode())
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        for name in sorted(files):
            path = Path(folder, name)
            digest.update(f"file\0{path.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def requirements_for(requirements: Iterable[str], python: str) -> list[str]:
    """The pins (`name==version ; marker`) that a target running Python `python` (X.Y) needs, unmarked."""
    environment = {**default_environment(), "python_version": python, "python_full_version": f"{python}.0"}
    selected = []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            raise AnsibleFilterError(
                f"ftps_server_requirements_for: {line!r} is not a requirement: {err}"
            ) from err
        if requirement.marker is None or requirement.marker.evaluate(environment):
            selected.append(f"{requirement.name}{requirement.specifier}")
    return selected


class FilterModule:
    """Jinja2 filters of the ftps_server role (build decisions, per-target pins)."""

    def filters(self) -> dict:
        return {"ftps_server_source_digest": source_digest, "ftps_server_requirements_for": requirements_for}
