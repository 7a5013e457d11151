"""uvicorn's h11 connection, with a deadline for the request line and headers.

uvicorn closes a keep-alive connection that stays idle, but any byte resets that timer,
and a new connection has none: a client that opens connections and sends nothing, or a
byte every few seconds (slow-loris), would hold them for ever, and with
``limit_concurrency`` set, lock everyone else out with 503. Here each connection, and
each keep-alive connection after its response, gets ``read_timeout_s`` to deliver a
complete request head; past it the server answers 408 and closes. The body has its own
deadline in :mod:`.uploads`.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 34\r\n\r\nthe request headers came too late\n"
)


def header_deadline_protocol(read_timeout_s: float) -> type[H11Protocol]:
    """An h11 protocol class for ``uvicorn.Config(http=...)`` with this header deadline."""

    class HeaderDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # a request is under way: the body has its own deadline
            log.info("closed a connection that sent no complete request within %g s", read_timeout_s)
            if self.conn.our_state is h11.IDLE:  # nothing sent on it yet in this cycle
                self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineProtocol


__all__ = ["TIMEOUT_RESPONSE", "header_deadline_protocol"]
