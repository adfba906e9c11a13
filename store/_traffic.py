"""Live traffic in PostgreSQL: batches and clears in one id sequence, each announced with NOTIFY.

A row is a `batch` (validated items, addressed by edge id, times as Unix seconds) or a `clear` (an
operator dropped the live traffic of a region: every batch of that region with a smaller id is void).
The NOTIFY payload is the row id; every worker loads the row and applies it (api/_sync.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CHANNEL = "fuel_traffic"
_COLUMNS = ("id", "kind", "region", "graph_hash", "items")


def _as_dict(row: Any, names: Sequence[str]) -> dict[str, Any]:
    return row if isinstance(row, dict) else dict(zip(names, row, strict=True))


def _insert(
    conn: psycopg.Connection,
    *,
    kind: str,
    region: str,
    graph_hash: str,
    origin: str,
    actor: str,
    items: list[dict[str, Any]],
    expires_at: datetime | None,
) -> int:
    row = conn.execute(
        "INSERT INTO traffic_batches (kind, region, graph_hash, origin, actor, items, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, coalesce(%s, 'infinity'::timestamptz)) RETURNING id",
        (kind, region, graph_hash, origin, actor, Jsonb(items), expires_at),
    ).fetchone()
    assert row is not None
    row_id = int(_as_dict(row, ("id",))["id"])
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(row_id)))
    return row_id


def save_batch(
    conn: psycopg.Connection,
    *,
    region: str,
    graph_hash: str,
    origin: str,
    actor: str,
    items: list[dict[str, Any]],
    expires_at: datetime,
) -> int:
    """Store a validated batch and NOTIFY its id (delivered when the caller's transaction commits)."""
    return _insert(
        conn,
        kind="batch",
        region=region,
        graph_hash=graph_hash,
        origin=origin,
        actor=actor,
        items=items,
        expires_at=expires_at,
    )


def save_clear(conn: psycopg.Connection, *, region: str, origin: str, actor: str) -> int:
    """Store a clear of the region's live traffic and NOTIFY its id; the latest clear is kept for good."""
    return _insert(
        conn,
        kind="clear",
        region=region,
        graph_hash="",
        origin=origin,
        actor=actor,
        items=[],
        expires_at=None,
    )


def load_entry(conn: psycopg.Connection, entry_id: int) -> dict[str, Any] | None:
    """One stored batch or clear: id, kind, region, graph_hash, items."""
    row = conn.execute(
        "SELECT id, kind, region, graph_hash, items FROM traffic_batches WHERE id = %s", (entry_id,)
    ).fetchone()
    return None if row is None else _as_dict(row, _COLUMNS)


def latest_clear(conn: psycopg.Connection, region: str) -> int:
    """Id of the region's latest clear (0 if it was never cleared)."""
    row = conn.execute(
        "SELECT coalesce(max(id), 0) AS id FROM traffic_batches WHERE region = %s AND kind = 'clear'",
        (region,),
    ).fetchone()
    assert row is not None
    return int(_as_dict(row, ("id",))["id"])


def batches_after(
    conn: psycopg.Connection, *, region: str, graph_hash: str, after_id: int, keep_s: float
) -> list[dict[str, Any]]:
    """Batches with an id above `after_id` that expired less than `keep_s` ago, oldest first: what a
    worker replays. Expired batches are replayed too while they may still outrank an older one."""
    cur = conn.execute(
        "SELECT id, items FROM traffic_batches WHERE region = %s AND graph_hash = %s AND kind = 'batch'"
        " AND id > %s AND expires_at > now() - make_interval(secs => %s) ORDER BY id",
        (region, graph_hash, after_id, keep_s),
    )
    return [_as_dict(r, ("id", "items")) for r in cur.fetchall()]


def purge(conn: psycopg.Connection, *, region: str, keep_s: float, limit: int) -> int:
    """Delete at most `limit` rows of the region that no worker replays any more: batches expired
    more than `keep_s` ago, and every row older than the latest clear. Return how many."""
    return conn.execute(
        "DELETE FROM traffic_batches WHERE id IN ("
        " SELECT id FROM traffic_batches WHERE region = %(region)s AND ("
        "  (kind = 'batch' AND expires_at < now() - make_interval(secs => %(keep)s))"
        "  OR id < (SELECT coalesce(max(id), 0) FROM traffic_batches"
        "           WHERE region = %(region)s AND kind = 'clear'))"
        " ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)",
        {"region": region, "keep": keep_s, "limit": limit},
    ).rowcount
