"""Payments: orders by out_trade_no, notifications (deduplicated), refunds, invoices and follow-up effects.

Every write here runs inside the caller's transaction and writes its audit row there; the follow-up jobs
(payments/_queue.py) are deferred on the same connection, so a payment and its outbox rows commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from store import _audit

ACTOR_GATEWAY = "wechatpay"


@dataclass(frozen=True)
class Payment:
    id: int
    out_trade_no: str
    sale_ref: str
    station_id: int | None
    openid: str
    amount_fen: int
    state: str
    prepay_id: str | None
    expires_at: datetime
    transaction_id: str | None
    paid_fen: int | None
    paid_at: datetime | None
    refunded_fen: int
    created_at: datetime
    duplicate_of: str | None = None  # paid after another payment paid its sale: refunded, never settled


_COLUMNS = (
    "id, out_trade_no, sale_ref, station_id, openid, amount_fen, state, prepay_id, expires_at,"
    " transaction_id, paid_fen, paid_at, refunded_fen, created_at, duplicate_of"
)


def _payment(row: dict[str, Any] | None) -> Payment | None:
    return None if row is None else Payment(**row)


def create_payment(
    conn: psycopg.Connection,
    *,
    out_trade_no: str,
    sale_ref: str,
    station_id: int | None,
    openid: str,
    amount_fen: int,
    expires_at: datetime,
    actor: str,
) -> Payment:
    """The payment of out_trade_no, created on the first call; a repeated call returns the stored row (its
    amount and expiry win, so the retried order has the same parameters and gets the same prepay_id)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"INSERT INTO payments (out_trade_no, sale_ref, station_id, openid, amount_fen, expires_at)"
            f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (out_trade_no) DO NOTHING RETURNING {_COLUMNS}",
            (out_trade_no, sale_ref, station_id, openid, amount_fen, expires_at),
        )
        row = cur.fetchone()
        if row is not None:
            _audit.record(
                conn,
                actor=actor,
                action="create",
                entity="payment",
                entity_id=out_trade_no,
                old=None,
                new={
                    "sale_ref": sale_ref,
                    "amount_fen": amount_fen,
                    "openid": openid,
                    "expires_at": expires_at,
                },
            )
            return Payment(**row)
    found = get_payment(conn, out_trade_no)
    assert found is not None
    return found


def get_payment(conn: psycopg.Connection, out_trade_no: str, *, for_update: bool = False) -> Payment | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM payments WHERE out_trade_no = %s"
            + (" FOR UPDATE" if for_update else ""),
            (out_trade_no,),
        )
        return _payment(cur.fetchone())


def set_prepay_id(conn: psycopg.Connection, out_trade_no: str, prepay_id: str) -> None:
    conn.execute(
        "UPDATE payments SET prepay_id = %s, updated_at = now() WHERE out_trade_no = %s AND prepay_id IS DISTINCT FROM %s",
        (prepay_id, out_trade_no, prepay_id),
    )


def record_notification(
    conn: psycopg.Connection,
    *,
    notification_id: str,
    event_type: str,
    out_trade_no: str,
    out_refund_no: str | None,
    resource: dict[str, Any],
) -> bool:
    """Store a verified notification; False when its id was stored before (a redelivery: do nothing)."""
    cur = conn.execute(
        "INSERT INTO payment_notifications (id, event_type, out_trade_no, out_refund_no, resource)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (notification_id, event_type, out_trade_no, out_refund_no, Jsonb(resource)),
    )
    return cur.rowcount == 1


def mark_paid(
    conn: psycopg.Connection,
    payment: Payment,
    *,
    transaction_id: str,
    paid_fen: int,
    paid_at: datetime,
    actor: str,
) -> bool:
    """created -> paid; False when it was already paid with this transaction (nothing changes). The caller
    holds the row (get_payment for_update) and has checked the amount and the payer."""
    if payment.state == "paid" and payment.transaction_id == transaction_id:
        return False
    conn.execute(
        "UPDATE payments SET state = 'paid', transaction_id = %s, paid_fen = %s, paid_at = %s, updated_at = now()"
        " WHERE id = %s",
        (transaction_id, paid_fen, paid_at, payment.id),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment",
        entity_id=payment.out_trade_no,
        old={"state": payment.state},
        new={"state": "paid", "transaction_id": transaction_id, "paid_fen": paid_fen, "paid_at": paid_at},
    )
    return True


def live_sibling(conn: psycopg.Connection, payment: Payment) -> Payment | None:
    """Another live payment (created, or paid and not a duplicate) of the same sale, held FOR UPDATE."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM payments WHERE sale_ref = %s AND out_trade_no <> %s"
            " AND state IN ('created', 'paid') AND duplicate_of IS NULL FOR UPDATE",
            (payment.sale_ref, payment.out_trade_no),
        )
        return _payment(cur.fetchone())


def mark_duplicate(
    conn: psycopg.Connection,
    payment: Payment,
    *,
    of: str,
    transaction_id: str,
    paid_fen: int,
    paid_at: datetime,
    actor: str,
) -> None:
    """closed -> paid as the duplicate of payment `of` (the sale's payment): recorded, to be refunded."""
    conn.execute(
        "UPDATE payments SET state = 'paid', duplicate_of = %s, transaction_id = %s, paid_fen = %s,"
        " paid_at = %s, updated_at = now() WHERE id = %s",
        (of, transaction_id, paid_fen, paid_at, payment.id),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment",
        entity_id=payment.out_trade_no,
        old={"state": payment.state},
        new={
            "state": "paid",
            "duplicate_of": of,
            "transaction_id": transaction_id,
            "paid_fen": paid_fen,
            "paid_at": paid_at,
        },
    )


def mark_state(conn: psycopg.Connection, payment: Payment, state: str, *, actor: str) -> None:
    """created -> closed or failed (an order that will never be paid)."""
    conn.execute("UPDATE payments SET state = %s, updated_at = now() WHERE id = %s", (state, payment.id))
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment",
        entity_id=payment.out_trade_no,
        old={"state": payment.state},
        new={"state": state},
    )


def open_payments(conn: psycopg.Connection, *, older_than_s: float, limit: int = 100) -> list[Payment]:
    """Payments still waiting for their notification after older_than_s: to be queried."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM payments WHERE state = 'created'"
            " AND created_at < now() - make_interval(secs => %s) ORDER BY created_at LIMIT %s",
            (older_than_s, limit),
        )
        return [Payment(**r) for r in cur.fetchall()]


# ---- refunds ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundRow:
    out_refund_no: str
    out_trade_no: str
    refund_fen: int
    reason: str
    state: str
    refund_id: str | None


def request_refund(
    conn: psycopg.Connection,
    *,
    payment: Payment,
    out_refund_no: str,
    refund_fen: int,
    reason: str,
    actor: str,
) -> tuple[RefundRow, bool]:
    """(the refund, whether it was created now). Idempotent per out_refund_no; the refunds of a payment
    never add up to more than it was paid (the caller holds the payment row)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT out_refund_no, out_trade_no, refund_fen, reason, state, refund_id FROM payment_refunds"
            " WHERE out_refund_no = %s",
            (out_refund_no,),
        )
        row = cur.fetchone()
        if row is not None:
            if row["out_trade_no"] != payment.out_trade_no or row["refund_fen"] != refund_fen:
                raise ValueError(f"refund {out_refund_no} exists with other parameters")
            return RefundRow(**row), False
        cur.execute(
            "SELECT coalesce(sum(refund_fen), 0) AS s FROM payment_refunds WHERE out_trade_no = %s AND state <> 'closed'",
            (payment.out_trade_no,),
        )
        asked = int(cur.fetchone()["s"])  # type: ignore[index]
        if payment.state != "paid" or payment.paid_fen is None:
            raise ValueError(f"payment {payment.out_trade_no} is {payment.state}, not paid")
        if refund_fen <= 0 or asked + refund_fen > payment.paid_fen:
            raise ValueError(
                f"refund of {refund_fen} fen exceeds what is left ({payment.paid_fen - asked} fen)"
            )
        cur.execute(
            "INSERT INTO payment_refunds (out_refund_no, out_trade_no, refund_fen, reason) VALUES (%s, %s, %s, %s)"
            " RETURNING out_refund_no, out_trade_no, refund_fen, reason, state, refund_id",
            (out_refund_no, payment.out_trade_no, refund_fen, reason),
        )
        created = cur.fetchone()
        assert created is not None
    _audit.record(
        conn,
        actor=actor,
        action="create",
        entity="payment_refund",
        entity_id=out_refund_no,
        old=None,
        new={"out_trade_no": payment.out_trade_no, "refund_fen": refund_fen, "reason": reason},
    )
    return RefundRow(**created), True


def update_refund(
    conn: psycopg.Connection, *, out_refund_no: str, state: str, refund_id: str | None, actor: str
) -> bool:
    """Move a refund to `state` (processing, success, closed, abnormal); on success the payment's refunded
    amount grows, once. False when nothing changed."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT out_trade_no, refund_fen, state FROM payment_refunds WHERE out_refund_no = %s FOR UPDATE",
            (out_refund_no,),
        )
        row = cur.fetchone()
        if row is None or row["state"] == state or row["state"] in ("success", "closed"):
            return False
        cur.execute(
            "UPDATE payment_refunds SET state = %s, refund_id = coalesce(%s, refund_id), updated_at = now()"
            " WHERE out_refund_no = %s",
            (state, refund_id, out_refund_no),
        )
        if state == "success":
            cur.execute(
                "UPDATE payments SET refunded_fen = refunded_fen + %s, updated_at = now() WHERE out_trade_no = %s",
                (row["refund_fen"], row["out_trade_no"]),
            )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="payment_refund",
        entity_id=out_refund_no,
        old={"state": row["state"]},
        new={"state": state, "refund_id": refund_id},
    )
    return True


def refunds_of(conn: psycopg.Connection, out_trade_no: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """A payment's refunds, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT out_refund_no, out_trade_no, refund_fen, reason, state, refund_id, created_at"
            " FROM payment_refunds WHERE out_trade_no = %s ORDER BY created_at, out_refund_no LIMIT %s",
            (out_trade_no, limit),
        )
        return cur.fetchall()


# ---- effects (idempotency barrier of the follow-up jobs) ---------------------------------------------


def claim_effect(conn: psycopg.Connection, out_trade_no: str, effect: str, detail: dict[str, Any]) -> bool:
    """Record that `effect` happened for the payment; False when it was recorded before. Call it in the
    transaction that applies the effect: the job that loses the race rolls back nothing but its own try."""
    cur = conn.execute(
        "INSERT INTO payment_effects (out_trade_no, effect, detail) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (out_trade_no, effect, Jsonb(detail)),
    )
    return cur.rowcount == 1


def effects(conn: psycopg.Connection, out_trade_no: str) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "SELECT effect, detail FROM payment_effects WHERE out_trade_no = %s ORDER BY done_at", (out_trade_no,)
    ).fetchall()
    return {r[0]: r[1] for r in rows}
