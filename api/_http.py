"""uvicorn's h11 protocol with a deadline for the request head (`--http api._http:H11WithHeadTimeout`).

uvicorn closes idle keep-alive connections (--timeout-keep-alive) but waits for a request head
without limit, so clients that open connections and send their headers a byte at a time can hold
every socket. Here a connection whose request head is not complete within
settings.header_timeout_s of it being opened, or of its first byte after a response, is closed.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from config import get_settings


class H11WithHeadTimeout(H11Protocol):
    head_timeout_s: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._waiting_for_head():
            self._arm()
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        return self.conn.their_state is h11.IDLE

    def _arm(self) -> None:
        if H11WithHeadTimeout.head_timeout_s is None:
            H11WithHeadTimeout.head_timeout_s = get_settings().header_timeout_s
        self._head_timer = self.loop.call_later(H11WithHeadTimeout.head_timeout_s, self._head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()
