"""Append-only JSON-lines audit log of file transfers.

Separate from the process log because auditors and scripts want one machine-readable record per
transfer, not prose. The file is opened in append mode (O_APPEND: each line is written in one
write() call, so lines never interleave) and reopened on SIGHUP so logrotate can move it away.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, TextIO

logger = logging.getLogger("ftpsd")


class TransferLog:
    """Writes one JSON object per line; a missing path means the log is off."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._handle: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            return
        line = json.dumps({"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record})
        try:
            self._handle.write(line + "\n")
            self._handle.flush()
        except OSError as err:
            logger.error("cannot write transfer log %s: %s", self.path, err)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
