"""The audit log: who changed what, with the old and the new value, written in the writer's transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

ACTIONS = ("create", "update", "delete")


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
    if action not in ACTIONS:
        raise ValueError(f"audit action must be one of {', '.join(ACTIONS)}, got {action!r}")
    conn.execute(
        "INSERT INTO audit_log (actor, action, entity, entity_id, old_value, new_value)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (
            actor,
            action,
            entity,
            str(entity_id),
            None if old is None else Jsonb(jsonable(old)),
            None if new is None else Jsonb(jsonable(new)),
        ),
    )


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
