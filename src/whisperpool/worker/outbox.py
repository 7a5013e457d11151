"""What the parent sends a worker goes through the worker's outbox, so the sender never blocks.

A send on a socket blocks once its buffer is full and the other end does not read: a
worker stopped with SIGSTOP, hung in native code, or swapped out, handed a request of a
few megabytes of audio. The pool's manager thread must never wait on that (it holds the
pool's lock, and everything else waits on it). So it only queues each message here, and
one thread per worker sends them in order. :attr:`Outbox.waiting_since` says since when
the oldest message has been waiting for the worker to take it; the manager treats a
worker that takes nothing for ``send_timeout_s`` as hung and replaces it, which also
frees this thread (the socket breaks).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

_CLOSE = object()


class Outbox:
    """An ordered queue of messages to one worker, sent by a thread of its own."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: deque[float] = deque()  # when each message not yet taken was queued
        self._broken = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, message: Any, now: float) -> None:
        if self._broken:  # the worker is gone; nothing will take it
            return
        self._pending.append(now)
        self._queue.put(message)

    @property
    def waiting_since(self) -> float | None:
        """When the oldest message the worker has not taken yet was queued (None: all taken)."""
        try:
            return self._pending[0]
        except IndexError:
            return None

    def close(self) -> None:
        """Stop the thread once the messages before this call are sent (or the socket broke)."""
        self._queue.put(_CLOSE)

    def _run(self) -> None:
        while (message := self._queue.get()) is not _CLOSE:
            try:
                self._conn.send(message)
            # The worker is gone (its exit tells the manager), or the manager closed the
            # socket under this send (the connection's handle is None then: TypeError).
            except (OSError, ValueError, TypeError) as exc:
                log.debug("%s: %s", self._thread.name, exc)
                self._broken = True
                self._pending.clear()
                return
            self._pending.popleft()


__all__ = ["Outbox"]
