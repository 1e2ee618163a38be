"""A download that stops reading after its first megabytes until told to go on: while it waits, the transfer
is certainly in progress, so a test can reload the server under it and then check that it still completes
intact (the rotation and renewal tests)."""

import ftplib
import hashlib
import threading


class PausedDownload:
    """RETR of one file in a thread. As a context manager: entering starts it and waits until it paused in the
    middle of the file (`pause_after` bytes in), leaving lets it finish and waits for it."""

    def __init__(self, ftp: ftplib.FTP, name: str, pause_after: int) -> None:
        self.digest = hashlib.sha256()
        self.received = 0
        self.outcome: dict[str, object] = {}
        self.paused = threading.Event()
        self._resume = threading.Event()
        self._ftp, self._name, self._pause_after = ftp, name, pause_after
        self._thread = threading.Thread(target=self._download)

    def __enter__(self) -> "PausedDownload":
        self._thread.start()
        if not (self.paused.wait(timeout=60) and "error" not in self.outcome):
            self.finish()
            raise AssertionError(f"the download did not get under way: {self.outcome}")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()

    def in_progress(self) -> bool:
        return self._thread.is_alive()

    def finish(self, timeout: float = 300) -> None:
        self._resume.set()
        self._thread.join(timeout=timeout)

    def completed_intact(self, size: int, sha256: str) -> bool:
        """The server confirmed the transfer (226) and every byte arrived unchanged."""
        reply = str(self.outcome.get("reply", ""))
        return reply.startswith("226") and self.received == size and self.digest.hexdigest() == sha256

    def _on_block(self, block: bytes) -> None:
        self.digest.update(block)
        self.received += len(block)
        if self.received >= self._pause_after and not self.paused.is_set():
            self.paused.set()
            self._resume.wait(timeout=240)

    def _download(self) -> None:
        try:
            self.outcome["reply"] = self._ftp.retrbinary(f"RETR {self._name}", self._on_block)
        except (OSError, ftplib.Error) as error:
            self.outcome["error"] = error
        finally:
            self.paused.set()
