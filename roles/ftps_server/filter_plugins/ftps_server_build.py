"""Filter of the ftps_server role that decides whether the controller must build the ftpsd wheel again.

Building the wheel (pip in a fresh build environment) is the slowest step of a re-run that changes nothing.
The wheel is byte-identical for identical inputs (SOURCE_DATE_EPOCH is fixed), so a digest of those inputs
(every file of the source tree that the build archive takes, and the pinned requirements built alongside)
tells whether the wheels already in the cache are the ones a build would make.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ansible.errors import AnsibleFilterError

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


class FilterModule:
    """Jinja2 filters of the ftps_server role (build decisions)."""

    def filters(self) -> dict:
        return {"ftps_server_source_digest": source_digest}
