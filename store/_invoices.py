"""Fuel e-invoices of sale payments (migration 0019): the station's seller identity, and the invoice
requests with their status. Every write runs in the caller's transaction and writes its audit row there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from store import _audit

# ---- the seller: the station that sold the fuel -------------------------------------------------------


@dataclass(frozen=True)
class StationSeller:
    station_id: int
    legal_name: str
    taxpayer_id: str
    updated_at: datetime


def get_seller(conn: psycopg.Connection, station_id: int) -> StationSeller | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT station_id, legal_name, taxpayer_id, updated_at FROM station_sellers WHERE station_id = %s",
            (station_id,),
        )
        row = cur.fetchone()
    return None if row is None else StationSeller(**row)


def set_seller(
    conn: psycopg.Connection, *, station_id: int, legal_name: str, taxpayer_id: str, actor: str
) -> tuple[StationSeller, bool]:
    """Store the station's seller identity; (the row, whether it changed). Audited."""
    old = get_seller(conn, station_id)
    if old is not None and (old.legal_name, old.taxpayer_id) == (legal_name, taxpayer_id):
        return old, False
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO station_sellers (station_id, legal_name, taxpayer_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (station_id) DO UPDATE SET legal_name = excluded.legal_name,"
            " taxpayer_id = excluded.taxpayer_id, updated_at = now()"
            " RETURNING station_id, legal_name, taxpayer_id, updated_at",
            (station_id, legal_name, taxpayer_id),
        )
        row = cur.fetchone()
    assert row is not None
    _audit.record(
        conn,
        actor=actor,
        action="create" if old is None else "update",
        entity="station_seller",
        entity_id=station_id,
        old=None if old is None else {"legal_name": old.legal_name, "taxpayer_id": old.taxpayer_id},
        new={"legal_name": legal_name, "taxpayer_id": taxpayer_id},
    )
    return StationSeller(**row), True


# ---- invoice requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceRow:
    fapiao_apply_id: str
    out_trade_no: str
    fapiao_id: str
    user_id: int | None
    idempotency_key: str | None
    request: dict[str, Any]
    buyer_type: str
    buyer_name: str
    buyer_taxpayer_id: str | None
    seller_station_id: int
    total_fen: int
    status: str
    reverse_wanted: bool
    detail: dict[str, Any]
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "fapiao_apply_id, out_trade_no, fapiao_id, user_id, idempotency_key, request, buyer_type, buyer_name,"
    " buyer_taxpayer_id, seller_station_id, total_fen, status, reverse_wanted, detail, created_at, updated_at"
)


def _one(conn: psycopg.Connection, where: str, params: tuple[Any, ...], lock: bool) -> InvoiceRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM payment_invoices WHERE {where}" + (" FOR UPDATE" if lock else ""), params
        )
        row = cur.fetchone()
    return None if row is None else InvoiceRow(**row)


def invoice_of_payment(
    conn: psycopg.Connection, out_trade_no: str, *, for_update: bool = False
) -> InvoiceRow | None:
    return _one(conn, "out_trade_no = %s", (out_trade_no,), for_update)


def invoice_by_key(conn: psycopg.Connection, user_id: int, key: str) -> InvoiceRow | None:
    return _one(conn, "user_id = %s AND idempotency_key = %s", (user_id, key), False)


def get_invoice(
    conn: psycopg.Connection, fapiao_apply_id: str, *, for_update: bool = False
) -> InvoiceRow | None:
    return _one(conn, "fapiao_apply_id = %s", (fapiao_apply_id,), for_update)


def create_invoice(
    conn: psycopg.Connection,
    *,
    fapiao_apply_id: str,
    out_trade_no: str,
    fapiao_id: str,
    user_id: int,
    idempotency_key: str,
    request: dict[str, Any],
    buyer_type: str,
    buyer_name: str,
    buyer_taxpayer_id: str | None,
    seller_station_id: int,
    total_fen: int,
    actor: str,
) -> InvoiceRow | None:
    """The new invoice request, or None when the payment has one already (a concurrent request won)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO payment_invoices (fapiao_apply_id, out_trade_no, fapiao_id, user_id, idempotency_key,"
            " request, buyer_type, buyer_name, buyer_taxpayer_id, seller_station_id, total_fen)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            f" RETURNING {_COLUMNS}",
            (
                fapiao_apply_id,
                out_trade_no,
                fapiao_id,
                user_id,
                idempotency_key,
                Jsonb(request),
                buyer_type,
                buyer_name,
                buyer_taxpayer_id,
                seller_station_id,
                total_fen,
            ),
        )
        row = cur.fetchone()
    if row is None:
        return None
    _audit.record(
        conn,
        actor=actor,
        action="create",
        entity="payment_invoice",
        entity_id=fapiao_apply_id,
        old=None,
        new={
            "out_trade_no": out_trade_no,
            "buyer_type": buyer_type,
            "buyer_name": buyer_name,
            "buyer_taxpayer_id": buyer_taxpayer_id,
            "seller_station_id": seller_station_id,
            "total_fen": total_fen,
        },
    )
    return InvoiceRow(**row)


def set_status(
    conn: psycopg.Connection,
    inv: InvoiceRow,
    status: str,
    *,
    detail: dict[str, Any] | None = None,
    actor: str,
) -> bool:
    """Move the invoice to `status` (detail keys merged in); False when nothing changed."""
    merged = {**inv.detail, **(detail or {})}
    if status == inv.status and merged == inv.detail:
        return False
    conn.execute(
        "UPDATE payment_invoices SET status = %s, detail = %s, updated_at = now() WHERE fapiao_apply_id = %s",
        (status, Jsonb(merged), inv.fapiao_apply_id),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment_invoice",
        entity_id=inv.fapiao_apply_id,
        old={"status": inv.status},
        new={"status": status, **(detail or {})},
    )
    return True


def want_reversal(conn: psycopg.Connection, inv: InvoiceRow, *, actor: str) -> bool:
    """Mark the invoice for red-letter reversal (the payment was refunded); False when it was already."""
    if inv.reverse_wanted:
        return False
    conn.execute(
        "UPDATE payment_invoices SET reverse_wanted = true, updated_at = now() WHERE fapiao_apply_id = %s",
        (inv.fapiao_apply_id,),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment_invoice",
        entity_id=inv.fapiao_apply_id,
        old={"reverse_wanted": False},
        new={"reverse_wanted": True},
    )
    return True
