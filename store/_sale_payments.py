"""Paying controller sales (migration 0018): the sale a payment pays, the client's idempotency keys with
their recovery points and reconciliation alerts (back-office cases: store/_cases.py).

Every write runs in the caller's transaction and writes its audit row there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from store import _audit

SALE_REF_PREFIX = "fcc:"


def sale_ref(sale_id: int) -> str:
    """payments.sale_ref of a controller sale's payments."""
    return f"{SALE_REF_PREFIX}{sale_id}"


# ---- controller sales ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sale:
    id: int
    station_id: int
    pump_no: int
    nozzle_no: int | None
    site_tx_id: str
    grade: str
    volume_ml: int
    amount_fen: int
    unit_price_fen: int
    totaliser_start_ml: int | None
    totaliser_end_ml: int | None
    state: str
    offline: bool
    cleared_by: str | None
    locked_by: str | None
    review_reason: str | None
    ended_at: datetime | None
    first_seen_at: datetime
    station_name: str
    station_brand: str


_SALE_COLUMNS = (
    "f.id, f.station_id, f.pump_no, f.nozzle_no, f.site_tx_id, f.grade, f.volume_ml, f.amount_fen,"
    " f.unit_price_fen, f.totaliser_start_ml, f.totaliser_end_ml, f.state, f.offline, f.cleared_by,"
    " f.locked_by, f.review_reason, f.ended_at, f.first_seen_at, s.name AS station_name,"
    " s.brand AS station_brand"
)


def get_sale(conn: psycopg.Connection, sale_id: int) -> Sale | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_SALE_COLUMNS} FROM fcc_sales f JOIN stations s ON s.id = f.station_id WHERE f.id = %s",
            (sale_id,),
        )
        row = cur.fetchone()
    return None if row is None else Sale(**row)


def set_locked_by(conn: psycopg.Connection, sale_id: int, fsc_tx_id: str | None) -> None:
    """Our lock at the site (the link keeps `state` in step with the site's SALE lines)."""
    conn.execute(
        "UPDATE fcc_sales SET locked_by = %s, updated_at = now() WHERE id = %s AND locked_by IS DISTINCT FROM %s",
        (fsc_tx_id, sale_id, fsc_tx_id),
    )


# ---- sale payments -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SalePayment:
    out_trade_no: str
    sale_id: int
    user_id: int
    fsc_tx_id: str
    sale_amount_fen: int
    discount_fen: int
    promotion_id: int | None
    site_state: str


_SP_COLUMNS = (
    "out_trade_no, sale_id, user_id, fsc_tx_id::text AS fsc_tx_id, sale_amount_fen, discount_fen,"
    " promotion_id, site_state"
)


def link_sale(
    conn: psycopg.Connection,
    *,
    out_trade_no: str,
    sale_id: int,
    user_id: int,
    fsc_tx_id: str,
    sale_amount_fen: int,
    discount_fen: int,
    promotion_id: int | None,
    actor: str,
) -> SalePayment:
    """The payment pays this sale (created once; a repeated call returns the stored row)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO sale_payments (out_trade_no, sale_id, user_id, fsc_tx_id, sale_amount_fen, discount_fen,"
            " promotion_id) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (out_trade_no) DO NOTHING"
            f" RETURNING {_SP_COLUMNS}",
            (out_trade_no, sale_id, user_id, fsc_tx_id, sale_amount_fen, discount_fen, promotion_id),
        )
        row = cur.fetchone()
    if row is not None:
        _audit.record(
            conn,
            actor=actor,
            action="create",
            entity="sale_payment",
            entity_id=out_trade_no,
            old=None,
            new={
                "sale_id": sale_id,
                "user_id": user_id,
                "sale_amount_fen": sale_amount_fen,
                "discount_fen": discount_fen,
                "promotion_id": promotion_id,
            },
        )
        return SalePayment(**row)
    found = get_sale_payment(conn, out_trade_no)
    assert found is not None
    return found


def get_sale_payment(
    conn: psycopg.Connection, out_trade_no: str, *, for_update: bool = False
) -> SalePayment | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT {_SP_COLUMNS} FROM sale_payments WHERE out_trade_no = %s"
            + (" FOR UPDATE" if for_update else ""),
            (out_trade_no,),
        )
        row = cur.fetchone()
    return None if row is None else SalePayment(**row)


def set_site_state(conn: psycopg.Connection, sp: SalePayment, state: str, *, actor: str) -> bool:
    if sp.site_state == state:
        return False
    conn.execute(
        "UPDATE sale_payments SET site_state = %s, updated_at = now() WHERE out_trade_no = %s",
        (state, sp.out_trade_no),
    )
    _audit.record(
        conn,
        actor=actor,
        action="update",
        entity="sale_payment",
        entity_id=sp.out_trade_no,
        old={"site_state": sp.site_state},
        new={"site_state": state},
    )
    return True


def payments_of_sale(conn: psycopg.Connection, sale_id: int) -> list[dict[str, Any]]:
    """The sale's payments, oldest first: out_trade_no, state, user_id."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT p.out_trade_no, p.state, sp.user_id, p.created_at FROM payments p"
            " JOIN sale_payments sp USING (out_trade_no) WHERE sp.sale_id = %s ORDER BY p.id",
            (sale_id,),
        )
        return list(cur.fetchall())


def unsettled_paid(conn: psycopg.Connection, *, older_than_s: float, limit: int = 100) -> list[str]:
    """Paid sale payments whose sale the site has not settled yet (no CLEAR answer recorded; 'unlocked': paid
    after its order was closed and the sale released). Not a duplicate: paid after another payment paid the
    sale, it is refunded and has nothing to settle at the site."""
    rows = conn.execute(
        "SELECT p.out_trade_no FROM payments p JOIN sale_payments sp USING (out_trade_no)"
        " WHERE p.state = 'paid' AND p.duplicate_of IS NULL AND sp.site_state IN ('locked', 'unlocked')"
        " AND p.paid_at < now() - make_interval(secs => %s) ORDER BY p.paid_at LIMIT %s",
        (older_than_s, limit),
    ).fetchall()
    return [str(r[0]) for r in rows]


# ---- idempotency keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyKey:
    id: int
    user_id: int
    idempotency_key: str
    request_method: str
    request_path: str
    request_params: dict[str, Any]
    recovery_point: str
    out_trade_no: str | None
    response_code: int | None
    response_body: Any
    locked_at: datetime | None


_KEY_COLUMNS = (
    "id, user_id, idempotency_key, request_method, request_path, request_params, recovery_point,"
    " out_trade_no, response_code, response_body, locked_at"
)


def claim_key(
    conn: psycopg.Connection,
    *,
    user_id: int,
    key: str,
    method: str,
    path: str,
    params: dict[str, Any],
    lock_timeout_s: float,
) -> tuple[IdempotencyKey, bool]:
    """(the key, whether this request may work on it now). Inserts the key on first use; a key whose
    request is finished is returned as it is (the stored answer is the answer); an unfinished one is
    locked for this request unless another request holds it (locked less than lock_timeout_s ago: a
    request that died releases it after that). Call in its own short transaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "INSERT INTO idempotency_keys (user_id, idempotency_key, request_method, request_path, request_params,"
            " locked_at) VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (user_id, idempotency_key) DO NOTHING"
            f" RETURNING {_KEY_COLUMNS}",
            (user_id, key, method, path, Jsonb(params)),
        )
        row = cur.fetchone()
        if row is not None:
            return IdempotencyKey(**row), True
        cur.execute(
            f"SELECT {_KEY_COLUMNS} FROM idempotency_keys WHERE user_id = %s AND idempotency_key = %s FOR UPDATE",
            (user_id, key),
        )
        row = cur.fetchone()
        assert row is not None
        found = IdempotencyKey(**row)
        if found.recovery_point == "finished":
            return found, False
        cur.execute(
            "UPDATE idempotency_keys SET locked_at = now(), last_run_at = now() WHERE id = %s"
            " AND (locked_at IS NULL OR locked_at < now() - make_interval(secs => %s))"
            f" RETURNING {_KEY_COLUMNS}",
            (found.id, lock_timeout_s),
        )
        row = cur.fetchone()
        return (IdempotencyKey(**row), True) if row is not None else (found, False)


def advance_key(
    conn: psycopg.Connection, key_id: int, recovery_point: str, *, out_trade_no: str | None = None
) -> None:
    conn.execute(
        "UPDATE idempotency_keys SET recovery_point = %s, out_trade_no = coalesce(%s, out_trade_no),"
        " last_run_at = now() WHERE id = %s",
        (recovery_point, out_trade_no, key_id),
    )


def finish_key(conn: psycopg.Connection, key_id: int, code: int, body: Any) -> None:
    """The request's final answer (success or a definite refusal): a retry with the key gets it again."""
    conn.execute(
        "UPDATE idempotency_keys SET recovery_point = 'finished', response_code = %s, response_body = %s,"
        " locked_at = NULL, last_run_at = now() WHERE id = %s",
        (code, Jsonb(body), key_id),
    )


def release_key(conn: psycopg.Connection, key_id: int) -> None:
    """The request ends without a final answer (a transient failure): the next retry resumes it."""
    conn.execute("UPDATE idempotency_keys SET locked_at = NULL WHERE id = %s", (key_id,))


# ---- alerts ------------------------------------------------------------------------------------------


def record_alert(
    conn: psycopg.Connection, *, bill_date: Any, kind: str, ref: str, detail: dict[str, Any]
) -> bool:
    """One alert per (day, kind, reference); False when it was raised before."""
    cur = conn.execute(
        "INSERT INTO reconciliation_alerts (bill_date, kind, ref, detail) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (bill_date, kind, ref) DO NOTHING",
        (bill_date, kind, ref, Jsonb(detail)),
    )
    return cur.rowcount == 1


# ---- reconciliation -------------------------------------------------------------------------------------


def reconciliation_records(
    conn: psycopg.Connection, *, out_trade_nos: list[str], day_start: datetime, day_end: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """(payments named or paid in [day_start, day_end) with their sale, their refunds, the out_trade_nos
    paid in that window) for the reconciliation of a day's bill."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT p.out_trade_no, p.state, p.amount_fen, p.paid_fen, p.refunded_fen, p.transaction_id,"
            " p.paid_at, sp.sale_id, sp.site_state, sp.fsc_tx_id::text AS fsc_tx_id, f.state AS sale_state,"
            " f.cleared_by AS sale_cleared_by, p.duplicate_of"
            " FROM payments p LEFT JOIN sale_payments sp USING (out_trade_no)"
            " LEFT JOIN fcc_sales f ON f.id = sp.sale_id"
            " WHERE p.out_trade_no = ANY(%s) OR (p.paid_at >= %s AND p.paid_at < %s)",
            (out_trade_nos, day_start, day_end),
        )
        payments = list(cur.fetchall())
        cur.execute(
            "SELECT out_refund_no, out_trade_no, refund_fen, state FROM payment_refunds WHERE out_trade_no = ANY(%s)",
            ([p["out_trade_no"] for p in payments],),
        )
        refunds = list(cur.fetchall())
    paid = [
        p["out_trade_no"]
        for p in payments
        if p["paid_at"] is not None and day_start <= p["paid_at"] < day_end and p["state"] == "paid"
    ]
    return payments, refunds, paid
