"""Live traffic batches in PostgreSQL, announced with NOTIFY so every worker applies them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CHANNEL = "fuel_traffic"


def save_batch(
    conn: psycopg.Connection,
    *,
    region: str,
    graph_hash: str,
    origin: str,
    items: list[dict[str, Any]],
    expires_at: datetime,
) -> int:
    """Store a validated batch (items addressed by edge_id, times as Unix seconds) and NOTIFY it."""
    row = conn.execute(
        "INSERT INTO traffic_batches (region, graph_hash, origin, items, expires_at)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (region, graph_hash, origin, Jsonb(items), expires_at),
    ).fetchone()
    assert row is not None
    batch_id = int(row["id"] if isinstance(row, dict) else row[0])
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{batch_id}:{origin}"))
    return batch_id


def load_batch(conn: psycopg.Connection, batch_id: int) -> dict[str, Any] | None:
    cur = conn.execute(
        "SELECT id, region, graph_hash, origin, items FROM traffic_batches WHERE id = %s", (batch_id,)
    )
    row = cur.fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return row
    return dict(zip(("id", "region", "graph_hash", "origin", "items"), row, strict=True))


def active_batches(conn: psycopg.Connection, *, region: str, graph_hash: str) -> list[dict[str, Any]]:
    """Unexpired batches for this region and graph, oldest first (a starting worker replays them)."""
    cur = conn.execute(
        "SELECT id, items FROM traffic_batches"
        " WHERE region = %s AND graph_hash = %s AND expires_at > now() ORDER BY id",
        (region, graph_hash),
    )
    out = []
    for row in cur.fetchall():
        out.append(row if isinstance(row, dict) else {"id": row[0], "items": row[1]})
    return out


def purge_expired(conn: psycopg.Connection) -> int:
    return conn.execute("DELETE FROM traffic_batches WHERE expires_at < now() - interval '1 day'").rowcount
