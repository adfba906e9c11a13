"""Back-office payment cases (migrations 0018, 0027): what a person must look at about a payment, opened
in the transaction that found it, listed and resolved by operators.

Kinds: a paid sale the site no longer knows (`unknown_at_site`), a sale locked by another payment when ours
was paid (`locked_elsewhere`), a refund that ended ABNORMAL (`refund_abnormal`), an order paid after its
points hold was released (`points_released`: charged the amount less the redemption, no points redeemed).
One case per payment and kind; a case is resolved once, with a note, never deleted.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from geo import Conflict, NotFound
from store import _audit

KINDS = ("unknown_at_site", "locked_elsewhere", "refund_abnormal", "points_released")
MAX_PAGE = 200


class CaseNotFound(NotFound):
    """No payment case with that id (404)."""


class CaseResolved(Conflict):
    """The case was resolved before (409)."""


def open_case(
    conn: psycopg.Connection,
    *,
    out_trade_no: str,
    sale_id: int | None,
    kind: str,
    detail: dict[str, Any],
    actor: str,
) -> bool:
    """Open a case in the caller's transaction (audited); False when the payment has one of this kind."""
    cur = conn.execute(
        "INSERT INTO payment_cases (out_trade_no, sale_id, kind, detail) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (out_trade_no, kind) DO NOTHING",
        (out_trade_no, sale_id, kind, Jsonb(detail)),
    )
    if cur.rowcount == 1:
        _audit_case(conn, actor, "create", f"{out_trade_no}:{kind}", None, detail)
    return cur.rowcount == 1


_COLUMNS = (
    "c.id, c.out_trade_no, c.sale_id, f.station_id, c.kind, c.detail, c.opened_at, c.resolved_at,"
    " c.resolved_by, c.resolution_note"
)
_FROM = "payment_cases c LEFT JOIN fcc_sales f ON f.id = c.sale_id"


def _audit_case(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    key: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
) -> None:
    """The case's audit row: entity `payment_case`, id `<out_trade_no>:<kind>` (a payment's case of a kind)."""
    _audit.record_many(conn, actor=actor, entries=[(action, "payment_case", key, old, new)])


def _select(conn: psycopg.Connection, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM {_FROM} WHERE {where}", params).fetchall()


def cases(
    conn: psycopg.Connection,
    *,
    resolved: bool = False,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Open (or resolved) cases in id order after `after_id`, optionally of one kind, with the sale's station."""
    return _select(
        conn,
        "c.id > %s AND (c.resolved_at IS NOT NULL) = %s AND (%s::text IS NULL OR c.kind = %s) ORDER BY c.id LIMIT %s",
        (after_id, resolved, kind, kind, min(limit, MAX_PAGE)),
    )


def get_case(conn: psycopg.Connection, case_id: int, *, for_update: bool = False) -> dict[str, Any]:
    """One case with its sale's station; CaseNotFound."""
    found = _select(conn, "c.id = %s" + (" FOR UPDATE OF c" if for_update else ""), (case_id,))
    if not found:
        raise CaseNotFound(f"payment case {case_id} not found")
    return found[0]


def resolve(conn: psycopg.Connection, case_id: int, *, note: str, actor: str) -> dict[str, Any]:
    """Resolve an open case with the operator's note (audited); the row after. CaseNotFound, CaseResolved."""
    case = get_case(conn, case_id, for_update=True)
    if case["resolved_at"] is not None:
        raise CaseResolved(
            f"payment case {case_id} ({case['kind']} of {case['out_trade_no']}) was resolved by"
            f" {case['resolved_by']} at {case['resolved_at'].isoformat()}"
        )
    conn.execute(
        "UPDATE payment_cases SET resolved_at = now(), resolved_by = %s, resolution_note = %s WHERE id = %s",
        (actor, note, case_id),
    )
    key = f"{case['out_trade_no']}:{case['kind']}"
    _audit_case(
        conn, actor, "update", key, {"resolved_at": None}, {"resolved_by": actor, "resolution_note": note}
    )
    return get_case(conn, case_id)


def resolve_open(conn: psycopg.Connection, out_trade_no: str, kind: str, *, note: str, actor: str) -> bool:
    """Resolve the payment's open case of `kind` when the service itself settled it (audited); False when it
    has none open."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT id FROM payment_cases WHERE out_trade_no = %s AND kind = %s AND resolved_at IS NULL"
            " FOR UPDATE",
            (out_trade_no, kind),
        ).fetchone()
    if row is None:
        return False
    resolve(conn, int(row[0]), note=note, actor=actor)
    return True
