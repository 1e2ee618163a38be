"""Running blocking work off pyftpdlib's single-threaded event loop.

pyftpdlib serves every client from one thread; a 0.1 s scrypt inside the PASS handler would freeze
all other sessions (and a login flood would freeze them for good). hashlib.scrypt releases the GIL,
so it runs in a small thread pool, and its result is handed back to the loop thread through a
socketpair registered in the loop: the worker queues a callback and writes one byte, which wakes
epoll. The same doorbell serves signal handlers, which must not run server code in the middle of
whatever the loop was doing.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyftpdlib.ioloop import IOLoop

logger = logging.getLogger("ftpsd")


class ReadEventsOnly:
    """The part of the dispatcher protocol pyftpdlib's IOLoop uses, for objects it only calls to read."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False


class LoopWaker(ReadEventsOnly):
    """A thread- and signal-safe ``call_soon`` for a pyftpdlib IOLoop."""

    def __init__(self, ioloop: IOLoop) -> None:
        self.ioloop = ioloop
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.SimpleQueue()
        self._fileno = self._reader.fileno()
        self._closed = False
        ioloop.register(self._fileno, self, ioloop.READ)

    def call_soon(self, callback: Callable[..., None], *args: Any) -> None:  # noqa: ANN401
        """Queue callback(*args) for the loop thread; callable from any thread or a signal handler."""
        self._queue.put((callback, args))
        # OSError: buffer full (a wakeup is already pending) or waker closed during shutdown.
        with contextlib.suppress(OSError):
            self._writer.send(b"\0")

    # --- the rest of the dispatcher protocol that pyftpdlib's IOLoop uses
    def handle_read_event(self) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                callback, args = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                callback(*args)
            except Exception:
                logger.exception("callback %r failed", callback)

    def handle_error(self) -> None:
        logger.exception("loop waker failed")

    def handle_close(self) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.ioloop.unregister(self._fileno)
            self._reader.close()
            self._writer.close()


class Offloader:
    """Runs functions in worker threads and delivers results as callbacks on the loop thread."""

    def __init__(self, waker: LoopWaker, workers: int) -> None:
        self.waker = waker
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ftpsd-auth")

    def run(
        self,
        func: Callable[..., object],
        args: tuple[Any, ...],
        on_done: Callable[..., None],
        *extra: Any,  # noqa: ANN401
    ) -> None:
        """Call func(*args) in a worker, then on_done(result, *extra) in the loop thread.

        If func raises, on_done receives the exception object as its result.
        """

        def deliver(future: Future[object]) -> None:
            error = future.exception()
            self.waker.call_soon(on_done, error if error is not None else future.result(), *extra)

        self._pool.submit(func, *args).add_done_callback(deliver)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
