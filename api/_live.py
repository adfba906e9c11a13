"""The live side of fuelling sessions in one API worker: one LISTEN connection, fanned out to its clients.

Each worker holds one connection listening on channel `fuelling` (store/_sessions.py NOTIFYs it in the
transaction that appends a session event). A notification only wakes the worker's clients of that session:
what they send comes from the stored events (`fuelling_session_events`, read after the last seq each
client has), so a notification lost while the listener reconnects loses nothing (after a reconnect every
client is woken and reads what it missed).

Per client the hub holds a bounded queue of wake-ups (`queue_size`); a client whose queue is full is not
keeping up (its sends are slower than its session's events): it is marked slow and its connection closed
(4408), so memory never grows with a slow reader.

The same connection listens on channel `forecourt` (store/_forecourt.py: a pump status, a controller sale or
a station link change) and wakes the station console's live clients of that station (api/_console_live.py);
progress notes (litres flowing) wake nobody there. The console clients, too, read what they send from the
tables: the notification is only a hint.

The hub also runs the worker's expiry sweeper (`sweep`, every `sweep_s`): sessions waiting at the pump past
their binding's time go to expired, rows another worker holds skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from store._forecourt import CHANNEL as FORECOURT_CHANNEL
from store._sessions import CHANNEL

CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_SLOW = (
    4400,
    4401,
    4403,
    4404,
    4408,
)
CLOSE_TRY_AGAIN = 1013
Topic = str  # "session": a fuelling session's clients; "station": a station console's clients
STATION_KINDS = frozenset({"status", "sale", "link"})  # forecourt notes that wake a station's console

log = logging.getLogger("api.live")


class Subscriber:
    """One live client of one session (topic "session") or of one station's console (topic "station")."""

    def __init__(self, key: int, queue_size: int, topic: Topic = "session") -> None:
        self.key = key
        self.topic = topic
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=queue_size)
        self.slow = False

    def wake(self, seq: int) -> None:
        try:
            self.queue.put_nowait(seq)
        except asyncio.QueueFull:
            self.slow = True

    async def woken(self, timeout_s: float) -> None:
        """Wait for a wake-up (or `timeout_s`), then take every queued one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.get(), timeout_s)
        while not self.queue.empty():
            self.queue.get_nowait()


class LiveHub:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 4,
        queue_size: int = 256,
        sweep: Callable[[], int] | None = None,
        sweep_s: float = 5.0,
    ) -> None:
        self.url = url
        self.queue_size = queue_size
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, open=False, timeout=5.0
        )
        self.subscribers: dict[tuple[Topic, int], set[Subscriber]] = {}
        self.listening = asyncio.Event()
        self._sweep = sweep
        self._sweep_s = sweep_s
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.pool.open(wait=False)
        self._tasks.append(asyncio.create_task(self._listen()))
        if self._sweep is not None:
            self._tasks.append(asyncio.create_task(self._sweeper()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pool.close()

    def subscribe(self, key: int, topic: Topic = "session") -> Subscriber:
        sub = Subscriber(key, self.queue_size, topic)
        self.subscribers.setdefault((topic, key), set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self.subscribers.get((sub.topic, sub.key))
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self.subscribers[(sub.topic, sub.key)]

    @property
    def clients(self) -> int:
        return sum(len(s) for s in self.subscribers.values())

    def _fan_out(self, channel: str, payload: str) -> None:
        try:
            note = json.loads(payload)
            if channel == FORECOURT_CHANNEL:
                if note["kind"] not in STATION_KINDS:
                    return
                key, seq, topic = int(note["station_id"]), int(note["id"] or 0), "station"
            else:
                key, seq, topic = int(note["session_id"]), int(note["seq"]), "session"
        except (ValueError, KeyError, TypeError):
            return
        for sub in tuple(self.subscribers.get((topic, key), ())):
            sub.wake(seq)

    def _wake_all(self) -> None:
        for subs in tuple(self.subscribers.values()):
            for sub in tuple(subs):
                sub.wake(0)

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {FORECOURT_CHANNEL}")
                    self.listening.set()
                    backoff = 0.2
                    self._wake_all()  # events committed while not listening: every client reads again
                    async for note in conn.notifies():
                        self._fan_out(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                log.warning("live listener: %s; again in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _sweeper(self) -> None:
        assert self._sweep is not None
        while True:
            await asyncio.sleep(self._sweep_s)
            try:
                n = await anyio.to_thread.run_sync(self._sweep)
                if n:
                    log.info("expired %d fuelling sessions", n)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away: try again next round
                log.warning("fuelling expiry sweep: %s", exc)

    def stats(self) -> dict[str, Any]:
        return {"listening": self.listening.is_set(), "clients": self.clients}


# ---- the WebSocket side, shared by the fuelling sessions' and the station console's live endpoints ----------


async def send_json(ws: WebSocket, message: dict[str, Any], timeout_s: float) -> None:
    """Send one message; TimeoutError when the client does not take it within `timeout_s`."""
    await asyncio.wait_for(ws.send_json(message), timeout_s)


async def drain_client(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends after its credentials; return when it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return


async def close_socket(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state == WebSocketState.CONNECTED and ws.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code=code, reason=reason[:120])


class Closed(Exception):
    """Raised inside `live_channel`: the channel closes with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Channel:
    """One accepted live WebSocket: its hub subscription and the task that notices the client leaving."""

    def __init__(self, ws: WebSocket, hub: LiveHub) -> None:
        self.ws = ws
        self.hub = hub
        self.sub: Subscriber | None = None
        self.receiver: asyncio.Task[None] | None = None

    def subscribe(self, key: int, topic: Topic = "session") -> None:
        """Take wake-ups of `key` (do it before the first read: no wake-up falls between)."""
        self.sub = self.hub.subscribe(key, topic)

    def follow_client(self) -> None:
        """From now on what the client sends is read and ignored; its leaving ends `wait`."""
        self.receiver = asyncio.create_task(drain_client(self.ws))

    async def wait(self, idle_s: float, slow_reason: str) -> bool:
        """Until a wake-up or `idle_s`: True to read again, False when the client went away. A subscriber
        whose wake-ups overflowed is not keeping up: Closed(4408, `slow_reason`)."""
        assert self.sub is not None and self.receiver is not None
        if self.sub.slow:
            raise Closed(CLOSE_SLOW, slow_reason)
        waiter = asyncio.create_task(self.sub.woken(idle_s))
        await asyncio.wait({waiter, self.receiver}, return_when=asyncio.FIRST_COMPLETED)
        if self.receiver.done():
            waiter.cancel()
            return False
        return True

    def release(self) -> None:
        if self.receiver is not None:
            self.receiver.cancel()
        if self.sub is not None:
            self.hub.unsubscribe(self.sub)


@contextlib.asynccontextmanager
async def live_channel(
    ws: WebSocket, hub: LiveHub, *, name: str, not_taken: str, try_again: str
) -> AsyncIterator[Channel]:
    """Accept `ws` and end it the one way every live endpoint does: `Closed` closes with its code, a
    client gone quietly ends, a send the client does not take in time closes 4408 (`not_taken`), the
    database away closes 1013 (`try_again`, logged under `name`); the subscription is always released."""
    await ws.accept()
    channel = Channel(ws, hub)
    try:
        yield channel
    except Closed as closed:
        await close_socket(ws, closed.code, closed.reason)
    except (WebSocketDisconnect, RuntimeError):
        pass
    except TimeoutError:
        await close_socket(ws, CLOSE_SLOW, not_taken)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        log.warning("%s: database: %s", name, exc)
        await close_socket(ws, CLOSE_TRY_AGAIN, try_again)
    finally:
        channel.release()
