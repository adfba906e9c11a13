"""Keeps live traffic the same in every worker process: store first, then apply (LISTEN/NOTIFY).

`POST /v1/traffic` validates the whole batch, stores it with its audit row and NOTIFYs its id in one
transaction; only then does any worker apply it. The receiving worker applies the stored items
through `TrafficSync.apply_batch` right after the commit; every worker's listener thread (the
receiving one's too) loads the batch named by the NOTIFY and applies it through the same method.
Applying is idempotent and order-independent (geo/_traffic.py: per edge the greatest
(observed_at, batch id, index) wins), so it does not matter which comes first.

A clear (`DELETE /v1/traffic`) is a row in the same id sequence. A worker that sees it, and a worker
that starts (or whose listener reconnects after losing the database), rebuilds its overlay from the
database: the latest clear, then the batches stored after it. Rebuilds hold the sync lock from the
query to the swap, so a batch applied meanwhile is either in the query or applied after the swap.

The listener also purges stored rows no worker replays any more, a bounded number per round.
Prices and promotions need no such channel: they are read from PostgreSQL on every request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from geo._traffic import ApplyResult, LiveTraffic
from store._db import Database
from store._traffic import CHANNEL, batches_after, latest_clear, load_entry, purge

log = logging.getLogger("api.sync")
_RESULTS_KEPT = 1024


class TrafficSync:
    def __init__(
        self,
        url: str,
        *,
        region: str,
        graph_hash: str,
        live: LiveTraffic,
        db: Database,
        keep_s: float,
        purge_interval_s: float = 300.0,
        purge_limit: int = 1000,
    ) -> None:
        """`keep_s`: how long after expiry a batch is still replayed (and not purged). An expired
        batch still decides which observation of an edge is the latest, so it must outlive every item
        it may outrank: at least the oldest accepted observation age plus the longest expiry ahead."""
        self.url = url
        self.region = region
        self.graph_hash = graph_hash
        self.live = live
        self.db = db
        self.keep_s = keep_s
        self.purge_interval_s = purge_interval_s
        self.purge_limit = purge_limit
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._results: OrderedDict[int, ApplyResult] = OrderedDict()
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    # ---- the one path by which a worker changes its live traffic ---------------------------------
    def apply_batch(self, batch_id: int, items: Sequence[Mapping[str, Any]]) -> ApplyResult:
        """Apply one stored batch (once per worker; a repeat returns the first result)."""
        with self._lock:
            done = self._results.get(batch_id)
            if done is not None:
                return done
            result = self.live.apply_stored([(batch_id, items)])
            if result.rejected:
                log.warning("stored live traffic batch %s is malformed: not applied", batch_id)
            self._results[batch_id] = result
            while len(self._results) > _RESULTS_KEPT:
                self._results.popitem(last=False)
            return result

    def rebuild(self, conn: psycopg.Connection) -> ApplyResult:
        """Overlay := the batches stored after the region's latest clear (start, reconnect, clear)."""
        with self._lock:
            through = latest_clear(conn, self.region)
            rows = batches_after(
                conn, region=self.region, graph_hash=self.graph_hash, after_id=through, keep_s=self.keep_s
            )
            result = self.live.rebuild(through, [(int(r["id"]), r["items"]) for r in rows])
            self._results.clear()
        if result.rejected:
            log.warning("stored live traffic batches %s are malformed: not applied", list(result.rejected))
        log.info(
            "live traffic rebuilt after clear %s: %d batches, %d observations",
            through,
            len(rows),
            result.applied,
        )
        return result

    # ---- the listener --------------------------------------------------------------------------
    def _on_notify(self, conn: psycopg.Connection, payload: str) -> None:
        if not payload.isdigit():
            return
        entry = load_entry(conn, int(payload))
        if entry is None or entry["region"] != self.region:
            return
        if entry["kind"] == "clear":
            if int(entry["id"]) > self.live.cleared_through:
                self.rebuild(conn)
        elif entry["graph_hash"] == self.graph_hash:
            self.apply_batch(int(entry["id"]), entry["items"])

    def _purge(self, conn: psycopg.Connection) -> None:
        n = purge(conn, region=self.region, keep_s=self.keep_s, limit=self.purge_limit)
        if n:
            log.info("purged %d stored live traffic rows", n)

    def _run(self) -> None:
        backoff = 0.2
        guard_s = self.db.work_deadline_s
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **self.db.connect_kwargs) as conn:
                    with self.db.watchdog.guard(conn, guard_s):
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                        self.rebuild(conn)
                    self.connected.set()
                    backoff = 0.2
                    next_purge = time.monotonic()
                    while not self._stop.is_set():
                        # Collect first: a query run while the notifies() generator is open deadlocks.
                        gen = conn.notifies(timeout=0.5, stop_after=1)
                        try:
                            notes = list(gen)
                        finally:
                            gen.close()
                        with self.db.watchdog.guard(conn, guard_s):
                            for note in notes:
                                self._on_notify(conn, note.payload)
                            if time.monotonic() >= next_purge:
                                self._purge(conn)
                                next_purge = time.monotonic() + self.purge_interval_s
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("traffic listener lost the database (%s); reconnecting", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
