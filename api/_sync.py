"""Keeps live traffic the same in every worker process: PostgreSQL LISTEN/NOTIFY.

The worker that receives `POST /v1/traffic` validates and applies the batch, stores it in
`traffic_batches` and NOTIFYs its id in the same transaction; every other worker's listener thread
loads that batch and applies it, typically within a few milliseconds. A worker that starts (or whose
listener reconnects after a database restart) replays the unexpired batches, so none is missed.
Prices and promotions need no such channel: they are read from PostgreSQL on every request.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

import psycopg
from psycopg import sql

from store._traffic import CHANNEL, active_batches, load_batch

log = logging.getLogger("api.sync")


class TrafficSync:
    def __init__(self, url: str, *, region: str, graph_hash: str, live: Any) -> None:
        self.url = url
        self.region = region
        self.graph_hash = graph_hash
        self.live = live
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[int] = set()
        self._lock = threading.Lock()
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)

    def mark_own(self, batch_id: int) -> None:
        with self._lock:
            self._seen.add(batch_id)

    def _apply(self, batch_id: int, items: list[dict[str, Any]]) -> None:
        with self._lock:
            if batch_id in self._seen:
                return
            self._seen.add(batch_id)
        try:
            self.live.apply(items)
        except Exception as exc:  # a bad stored batch must not kill the listener
            log.warning("live traffic batch %s not applied: %s", batch_id, exc)

    def _on_notify(self, conn: psycopg.Connection, payload: str) -> None:
        batch_id_s, _, origin = payload.partition(":")
        if origin == self.origin or not batch_id_s.isdigit():
            return
        found = load_batch(conn, int(batch_id_s))
        if found is not None and found["region"] == self.region and found["graph_hash"] == self.graph_hash:
            self._apply(int(found["id"]), found["items"])

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    for batch in active_batches(conn, region=self.region, graph_hash=self.graph_hash):
                        self._apply(int(batch["id"]), batch["items"])
                    self.connected.set()
                    backoff = 0.2
                    while not self._stop.is_set():
                        # Collect first: a query run while the notifies() generator is open deadlocks.
                        notes = []
                        gen = conn.notifies(timeout=0.5, stop_after=1)
                        try:
                            notes = list(gen)
                        finally:
                            gen.close()
                        for note in notes:
                            self._on_notify(conn, note.payload)
            except psycopg.Error as exc:
                self.connected.clear()
                log.warning("traffic listener lost the database (%s); reconnecting", type(exc).__name__)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
