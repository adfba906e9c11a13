"""The audit log: who changed what, with the old and the new value, written in the writer's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

ACTIONS = ("create", "update", "delete", "login")


def jsonable(value: Any) -> Any:
    """Decimals as strings (exact), dates/times ISO-8601, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def record(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: int | str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> None:
    """One audit row. Call it inside the transaction that makes the change."""
    record_many(conn, actor=actor, entries=[(action, entity, entity_id, old, new)])


def audit_rows(
    conn: psycopg.Connection, *, entity: str | None = None, entity_id: int | str | None = None
) -> list[dict[str, Any]]:
    """Audit rows, oldest first, optionally for one entity (tests, the admin view)."""
    cur = conn.execute(
        "SELECT id, at, actor, action, entity, entity_id, old_value, new_value FROM audit_log"
        " WHERE (%(e)s::text IS NULL OR entity = %(e)s) AND (%(i)s::text IS NULL OR entity_id = %(i)s)"
        " ORDER BY id",
        {"e": entity, "i": None if entity_id is None else str(entity_id)},
    )
    names = [d.name for d in cur.description or ()]
    return [r if isinstance(r, dict) else dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def record_many(
    conn: psycopg.Connection,
    *,
    actor: str,
    entries: Iterable[tuple[str, str, int | str, Mapping[str, Any] | None, Mapping[str, Any] | None]],
) -> int:
    """Audit rows (action, entity, entity_id, old, new) of one writer, in one round trip; returns the count.
    Call it inside the transaction that makes the changes."""
    rows = []
    for action, entity, entity_id, old, new in entries:
        if action not in ACTIONS:
            raise ValueError(f"audit action must be one of {', '.join(ACTIONS)}, got {action!r}")
        rows.append(
            (
                actor,
                action,
                entity,
                str(entity_id),
                None if old is None else Jsonb(jsonable(old)),
                None if new is None else Jsonb(jsonable(new)),
            )
        )
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                rows,
            )
    return len(rows)


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(old values, new values) of the keys whose value differs: what a write changed, nothing else."""
    keys = [k for k in new if jsonable(old.get(k)) != jsonable(new[k])]
    return {k: old.get(k) for k in keys}, {k: new[k] for k in keys}
