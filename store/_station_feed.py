"""Keeps a worker's StationCache (store/_station_cache.py) exact: LISTEN, a read barrier, refreshes.

Every committed change to stations, prices and promotions is announced on the channel `fuel_catalog`
(migration 0029: `s:<id>`, `p:<id>`, `b:<brand>`, `*`). The feed holds one connection to the primary
(notifications are not replicated to standbys), LISTENs on it and loads the cache through it.

Read-after-write without trusting delivery times: `fresh()` returns the cache only after a round trip
on that connection that STARTED after the caller asked. PostgreSQL signals every listener when a
NOTIFY commits, before the writer hears its COMMIT succeed, and a backend sends the notifications
pending for it before it says it is ready for the next query (postgres.c, PostgreSQL >= 15): so once
the round trip is back, every change committed before the request came has been announced, and the
refresh that follows reads it. Requests that arrive together share one round trip (the next one to
start), so under load the barrier costs a fraction of a round trip per request.

Every history/2 (24 h by default) the next round trip loads a fresh copy, so the price history held
stays within its window instead of growing with every price written.

When the connection fails, `fresh()` answers None (the caller uses SQL), a line is logged, and the
feed reconnects every `retry_s` and reloads everything. A region larger than `max_stations` is not
held at all (None, logged once), and counted again every 12 x `retry_s` (a minute by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from store._station_cache import PRICES_SQL, PROMOTIONS_SQL, STATIONS_SQL, StationCache, load_params

log = logging.getLogger("store.station_feed")
CHANNEL = "fuel_catalog"
_ALL = "*"


class StationFeed:
    """One worker's cache of the nearby search's data, kept exact (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        max_stations: int,
        history: timedelta,
        retry_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        barrier_timeout_s: float = 3.0,
    ) -> None:
        self.url = url
        self.max_stations = max_stations
        self.history = history
        self.retry_s = retry_s
        self.connect_timeout_s = connect_timeout_s
        self.barrier_timeout_s = barrier_timeout_s
        self._stalled = False  # a round trip is overdue: answer None until it comes back
        self.cache: StationCache | None = None
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._pending: set[str] = set()
        self._waiting: asyncio.Future[StationCache | None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._too_large = False
        self._closed = False
        self._loaded_at = 0.0  # monotonic time of the last full load
        self._reloading = False  # a full load is being built: SQL answers meanwhile
        self._current: asyncio.Future[StationCache | None] | None = None  # the round trip in flight
        self._overdue_timer: asyncio.TimerHandle | None = None

    # ---- life -------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and load; on failure the feed answers None and keeps trying in the background."""
        if self.max_stations <= 0:
            return
        try:
            await self._connect()
        except (psycopg.Error, OSError) as exc:
            log.warning("station cache: %s; nearby reads use SQL until it connects", exc)
        if self._conn is None:
            self._retry_later()

    async def stop(self) -> None:
        self._closed = True
        for task in (self._runner, self._reconnect):
            if task is not None:
                task.cancel()
        await self._drop()

    @property
    def ready(self) -> bool:
        return self.cache is not None and self._conn is not None

    async def _connect(self) -> None:
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(1, int(self.connect_timeout_s)),
            application_name="fuel station cache",
        )
        try:
            conn.add_notify_handler(lambda n: self._pending.add(n.payload))
            await conn.execute(f"LISTEN {CHANNEL}")
            count = await _station_count(conn)
            if count > self.max_stations:
                if not self._too_large:
                    log.info(
                        "station cache: %s stations, more than FUEL_STATION_CACHE_MAX_STATIONS=%s: nearby reads use SQL",
                        count,
                        self.max_stations,
                    )
                self._too_large = True
                await conn.close()
                return
            self._too_large = False
            cache = StationCache(datetime.now(UTC) - self.history)
            self._pending.clear()
            await self._load(conn, cache, None, None)
        except BaseException:
            await conn.close()
            raise
        self._conn, self.cache, self._loaded_at = conn, cache, time.monotonic()
        log.info("station cache: %s stations held (prices from %s)", len(cache), cache.cover_from.isoformat())

    async def _drop(self) -> None:
        conn, self._conn, self.cache = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def _retry_later(self) -> None:
        if self._closed or (self._reconnect is not None and not self._reconnect.done()):
            return

        async def again() -> None:
            while not self._closed and self._conn is None:
                # a region above the cap is counted again now and then: it may have shrunk
                await asyncio.sleep(self.retry_s * (12 if self._too_large else 1))
                try:
                    await self._connect()
                except (psycopg.Error, OSError) as exc:
                    log.warning("station cache: reconnect failed: %s", exc)

        self._reconnect = asyncio.get_running_loop().create_task(again())

    # ---- reads ------------------------------------------------------------------------------------
    async def fresh(self) -> StationCache | None:
        """The cache, holding every change committed before this call; None: use SQL."""
        if not self.ready or self._stalled or self._reloading:
            return None
        fut = self._waiting
        if fut is None:
            fut = self._waiting = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(fut)  # a request that goes away leaves the round trip to the others

    def _overdue(self, fut: asyncio.Future[StationCache | None]) -> None:
        """The round trip is overdue (a hung server or network): its waiters, and those queued for the
        next one, get None (nearby uses SQL, whose own guards answer 503 in bounded time), and so does
        every request until it comes back; it is left to finish or fail on its own."""
        if not self._stalled:
            self._stalled = True
            log.warning(
                "station cache: no answer within %s s; nearby reads use SQL until it answers",
                self.barrier_timeout_s,
            )
        for waiting in (fut, self._waiting):
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
        self._waiting = None

    async def _run(self) -> None:
        while self._waiting is not None:
            fut, self._waiting = self._waiting, None  # who asks from now on waits for the next round trip
            overdue = asyncio.get_running_loop().call_later(self.barrier_timeout_s, self._overdue, fut)
            self._current, self._overdue_timer = fut, overdue
            try:
                cache = await self._barrier()
                if self._stalled:
                    self._stalled = False
                    log.warning("station cache: the database answers again")
            except (psycopg.Error, OSError) as exc:
                log.warning("station cache: %s; nearby reads use SQL until it reconnects", exc)
                await self._drop()
                self._stalled = False
                self._retry_later()
                cache = None
                if self._waiting is not None and not self._waiting.done():
                    self._waiting.set_result(None)
                self._waiting = None
            finally:
                overdue.cancel()
            if not fut.done():
                fut.set_result(cache)

    async def _barrier(self) -> StationCache | None:
        conn = self._conn
        if conn is None or self.cache is None:
            return None
        await conn.execute("SELECT 1")  # the notifications of every earlier commit arrive before its answer
        if time.monotonic() - self._loaded_at > self.history.total_seconds() / 2:
            self._pending.add(_ALL)  # a fresh copy: price history older than the window is let go
        while self._pending and self._conn is conn:
            keys, self._pending = self._pending, set()
            await self._apply(conn, keys)
        return self.cache if self._conn is conn else None

    async def _apply(self, conn: psycopg.AsyncConnection[dict[str, Any]], keys: set[str]) -> None:
        if _ALL in keys:
            count = await _station_count(conn)
            if count > self.max_stations:
                log.info("station cache: %s stations now, above the cap: nearby reads use SQL", count)
                self._too_large = True
                await self._drop()
                self._retry_later()
                return
            # A full load takes a while on a large region (1.3 s of CPU to build 50,000 stations): SQL
            # answers those waiting now and whoever asks until it is in place, and it is built in a thread.
            self._reloading = True
            if self._overdue_timer is not None:
                self._overdue_timer.cancel()  # slow, not stalled
            for waiting in (self._current, self._waiting):
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            self._waiting = None
            try:
                fresh = StationCache(datetime.now(UTC) - self.history)
                await self._load(conn, fresh, None, None, in_thread=True)
            finally:
                self._reloading = False
            self.cache, self._loaded_at = fresh, time.monotonic()
            return
        assert self.cache is not None
        ids = sorted({int(k[2:]) for k in keys if k[:2] in ("s:", "p:") and k[2:].isdigit()})
        brands = sorted({k[2:] for k in keys if k.startswith("b:")})
        await self._load(conn, self.cache, ids, brands)

    async def _load(
        self,
        conn: psycopg.AsyncConnection[dict[str, Any]],
        cache: StationCache,
        ids: Sequence[int] | None,
        brands: Sequence[str] | None,
        *,
        in_thread: bool = False,
    ) -> None:
        """Read the stations `ids` (None: all) and the promotions of `brands` in one snapshot, then
        put them in the cache (`in_thread`: a cache nobody reads yet, built off the event loop)."""
        params = load_params(cache.cover_from, ids, brands)
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            stations = await (await conn.execute(STATIONS_SQL, params)).fetchall()
            prices = await (await conn.execute(PRICES_SQL, params)).fetchall()
            promotions = await (await conn.execute(PROMOTIONS_SQL, params)).fetchall()
        if in_thread:
            await asyncio.to_thread(
                cache.replace, ids=ids, brands=brands, stations=stations, prices=prices, promotions=promotions
            )
        else:
            cache.replace(ids=ids, brands=brands, stations=stations, prices=prices, promotions=promotions)


async def _station_count(conn: psycopg.AsyncConnection[dict[str, Any]]) -> int:
    row = await (await conn.execute("SELECT count(*) AS n FROM stations")).fetchone()
    return int((row or {}).get("n", 0))
