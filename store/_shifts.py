"""Shifts and their handovers (交班): the controller's totaliser readings per nozzle, WeChat from our payments,
cash and card entered by the attendant, counted cash, sign-off by the outgoing and the incoming attendant,
and audited corrections after sign-off. Each step moves the state through backoffice/_handover.py under the
row's lock, and writes its audit row in the same transaction."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from backoffice import (
    DEFAULT_TOLERANCE_FEN,
    NozzleReading,
    Tenders,
    apply_corrections,
    check_money,
    next_state,
    reconcile,
)
from backoffice._handover import Event, State
from geo._errors import Conflict, InvalidInput, NotFound
from store._audit import jsonable, record
from store._staff import Staff

SALE_AT = "coalesce(s.ended_at, s.first_seen_at)"  # when a sale counts: its end at the pump

_READINGS_SQL = f"""
WITH inside AS (
    SELECT s.pump_no, s.nozzle_no, count(*) AS sales, sum(s.volume_ml) AS sales_ml,
           sum(s.amount_fen) AS amount_fen, min(s.totaliser_start_ml) AS first_start,
           max(s.totaliser_end_ml) AS last_end, array_agg(DISTINCT s.unit_price_fen) AS prices
      FROM fcc_sales s
     WHERE s.station_id = %(station)s AND {SALE_AT} >= %(start)s AND {SALE_AT} < %(end)s
     GROUP BY s.pump_no, s.nozzle_no
), before AS (
    SELECT s.pump_no, s.nozzle_no, max(s.totaliser_end_ml) AS last_end
      FROM fcc_sales s
     WHERE s.station_id = %(station)s AND {SALE_AT} < %(start)s
     GROUP BY s.pump_no, s.nozzle_no
), loose AS (  -- sales without a (configured) nozzle: a line of their own per pump, nozzle and grade
    SELECT s.pump_no, s.nozzle_no, s.grade, count(*) AS sales, sum(s.volume_ml) AS sales_ml,
           sum(s.amount_fen) AS amount_fen, array_agg(DISTINCT s.unit_price_fen) AS prices
      FROM fcc_sales s
     WHERE s.station_id = %(station)s AND {SALE_AT} >= %(start)s AND {SALE_AT} < %(end)s
       AND NOT EXISTS (SELECT 1 FROM nozzles z WHERE z.station_id = s.station_id AND z.pump_no = s.pump_no
                                                 AND z.nozzle_no = s.nozzle_no)
     GROUP BY s.pump_no, s.nozzle_no, s.grade
)
SELECT * FROM (
    SELECT n.pump_no, n.nozzle_no, n.grade,
           coalesce(b.last_end, i.first_start, 0) AS opening_ml,
           coalesce(i.last_end, b.last_end, i.first_start, 0) AS closing_ml,
           coalesce(i.sales, 0) AS sales, coalesce(i.sales_ml, 0) AS sales_ml,
           coalesce(i.amount_fen, 0) AS amount_fen, coalesce(i.prices, '{{}}') AS prices
      FROM nozzles n
      LEFT JOIN inside i USING (pump_no, nozzle_no)
      LEFT JOIN before b USING (pump_no, nozzle_no)
     WHERE n.station_id = %(station)s
    UNION ALL
    SELECT l.pump_no, l.nozzle_no, l.grade, 0, 0, l.sales, l.sales_ml, l.amount_fen, l.prices FROM loose l
) lines
 ORDER BY pump_no, nozzle_no NULLS LAST, grade
"""

_WECHAT_SQL = f"""
SELECT coalesce(sum(sp.sale_amount_fen), 0) AS wechat_fen, coalesce(sum(p.paid_fen - p.refunded_fen), 0) AS received
  FROM sale_payments sp
  JOIN payments p ON p.out_trade_no = sp.out_trade_no AND p.state = 'paid'
  JOIN fcc_sales s ON s.id = sp.sale_id
 WHERE s.station_id = %(station)s AND {SALE_AT} >= %(start)s AND {SALE_AT} < %(end)s
"""

_SHIFT_FIELDS = (
    "id, station_id, attendant_id, state, opened_at, closed_at, readings, cash_fen, card_fen,"
    " counted_cash_fen, tolerance_fen, summary, outgoing_signed_at, incoming_id, incoming_signed_at, version"
)


def controller_readings(
    conn: psycopg.Connection, station_id: int, start: datetime, end: datetime
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Per nozzle: opening and closing volume totalisers from the controller's sales, the sales between,
    their amount and the unit prices they were sold at; and the sales WeChat paid for. Sales the controller
    reported without a nozzle number (or with one not configured) are lines of their own (nozzle_no as
    reported, None shown as 未指定油枪) with no totaliser (0 to 0): they are expected money like any other,
    and their litres, which moved the real nozzle's meter, cancel that nozzle's unreported litres."""
    args = {"station": station_id, "start": start, "end": end}
    with conn.cursor(row_factory=dict_row) as cur:
        nozzles = cur.execute(_READINGS_SQL, args).fetchall()
        wechat = cur.execute(_WECHAT_SQL, args).fetchone() or {"wechat_fen": 0, "received": 0}
    for n in nozzles:
        n["prices"] = sorted(int(p) for p in n["prices"])
        for k in ("opening_ml", "closing_ml", "sales", "sales_ml", "amount_fen"):
            n[k] = int(n[k])
    return nozzles, {"wechat_fen": int(wechat["wechat_fen"]), "wechat_received_fen": int(wechat["received"])}


def _readings(shift: dict[str, Any]) -> list[NozzleReading]:
    return [
        NozzleReading(
            n["pump_no"],
            n["nozzle_no"],
            n["grade"],
            n["opening_ml"],
            n["closing_ml"],
            n["sales"],
            n["sales_ml"],
            n["amount_fen"],
        )
        for n in (shift["readings"] or {}).get("nozzles", [])
    ]


def corrections_of(conn: psycopg.Connection, shift_id: int) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, field, delta_fen, reason, staff_id, actor, created_at FROM shift_corrections"
            " WHERE shift_id = %s ORDER BY id",
            (shift_id,),
        ).fetchall()


def reconciliation_of(shift: dict[str, Any], corrections: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Expected against actual for a shift whose tenders are in, after its corrections."""
    if shift["readings"] is None or shift["cash_fen"] is None:
        return None
    tenders = Tenders(
        shift["readings"]["wechat_fen"], shift["cash_fen"], shift["card_fen"], shift["counted_cash_fen"]
    )
    tenders = apply_corrections(tenders, corrections)
    return asdict(reconcile(_readings(shift), tenders, tolerance_fen=shift["tolerance_fen"]))


def get_shift(conn: psycopg.Connection, shift_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        shift = cur.execute(f"SELECT {_SHIFT_FIELDS} FROM shifts WHERE id = %s", (shift_id,)).fetchone()
    if shift is None:
        raise NotFound(f"shift {shift_id} not found")
    shift["corrections"] = corrections_of(conn, shift_id)
    shift["reconciliation"] = reconciliation_of(shift, shift["corrections"])
    return shift


def running_shift(conn: psycopg.Connection, station_id: int) -> dict[str, Any] | None:
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT id FROM shifts WHERE station_id = %s AND state <> 'signed'", (station_id,))
        .fetchone()
    )
    return None if row is None else get_shift(conn, int(row[0]))


def list_shifts(conn: psycopg.Connection, station_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
    ids = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT id FROM shifts WHERE station_id = %s ORDER BY opened_at DESC, id DESC LIMIT %s",
            (station_id, limit),
        )
        .fetchall()
    )
    return [get_shift(conn, int(r[0])) for r in ids]


def open_shift(conn: psycopg.Connection, staff: Staff, *, at: datetime) -> dict[str, Any]:
    """The station's first shift, run by `staff` (later shifts open when the incoming attendant signs)."""
    with conn.transaction():
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(
                "INSERT INTO shifts (station_id, attendant_id, state, opened_at) VALUES (%s, %s, 'open', %s)"
                " ON CONFLICT (station_id) WHERE state <> 'signed' DO NOTHING RETURNING id",
                (staff.station_id, staff.id, at),
            )
            .fetchone()
        )
        if row is None:
            raise Conflict(f"station {staff.station_id} already has a running shift: hand it over first")
        record(
            conn,
            actor=staff.actor,
            action="create",
            entity="shift",
            entity_id=row[0],
            old=None,
            new={"station_id": staff.station_id, "attendant_id": staff.id, "opened_at": at},
        )
    return get_shift(conn, int(row[0]))


def _locked(conn: psycopg.Connection, shift_id: int, staff: Staff) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        shift = cur.execute(
            f"SELECT {_SHIFT_FIELDS} FROM shifts WHERE id = %s FOR UPDATE", (shift_id,)
        ).fetchone()
    if shift is None or shift["station_id"] != staff.station_id:
        raise NotFound(f"shift {shift_id} not found at station {staff.station_id}")
    return shift


def _move(
    conn: psycopg.Connection, shift: dict[str, Any], event: Event, staff: Staff, changes: dict[str, Any]
) -> None:
    state: State = next_state(shift["state"], event)
    sets = {**changes, "state": state}
    cols = ", ".join(f"{k} = %({k})s" for k in sets)  # keys are this module's own column names
    params = {k: Jsonb(jsonable(v)) if isinstance(v, dict) else v for k, v in sets.items()}
    conn.execute(
        f"UPDATE shifts SET {cols}, version = version + 1 WHERE id = %(shift_id)s",
        {**params, "shift_id": shift["id"]},
    )
    record(
        conn,
        actor=staff.actor,
        action="update",
        entity="shift",
        entity_id=shift["id"],
        old={"state": shift["state"], **{k: shift.get(k) for k in changes if k != "readings"}},
        new={"event": event, **{k: v for k, v in sets.items() if k != "readings"}},
    )


def _own_shift(shift: dict[str, Any], staff: Staff, what: str) -> None:
    if staff.role != "manager" and shift["attendant_id"] != staff.id:
        raise Conflict(f"only the shift's own attendant or a manager may {what}")


def close_shift(conn: psycopg.Connection, shift_id: int, staff: Staff, *, at: datetime) -> dict[str, Any]:
    """End the shift now: take the controller's totaliser readings per nozzle and WeChat's share."""
    with conn.transaction():
        shift = _locked(conn, shift_id, staff)
        _own_shift(shift, staff, "close it")
        if at < shift["opened_at"]:
            raise InvalidInput("at", "a shift cannot close before it opened")
        nozzles, wechat = controller_readings(conn, staff.station_id, shift["opened_at"], at)
        _move(conn, shift, "close", staff, {"closed_at": at, "readings": {"nozzles": nozzles, **wechat}})
    return get_shift(conn, shift_id)


def enter_tenders(
    conn: psycopg.Connection,
    shift_id: int,
    staff: Staff,
    *,
    cash_fen: int,
    card_fen: int,
    counted_cash_fen: int,
    tolerance_fen: int = DEFAULT_TOLERANCE_FEN,
) -> dict[str, Any]:
    for name, v in (("cash_fen", cash_fen), ("card_fen", card_fen), ("counted_cash_fen", counted_cash_fen)):
        check_money(name, v)
    check_money("tolerance_fen", tolerance_fen, maximum=100_000)
    with conn.transaction():
        shift = _locked(conn, shift_id, staff)
        _own_shift(shift, staff, "enter its tenders")
        _move(
            conn,
            shift,
            "enter_tenders",
            staff,
            {
                "cash_fen": cash_fen,
                "card_fen": card_fen,
                "counted_cash_fen": counted_cash_fen,
                "tolerance_fen": tolerance_fen,
            },
        )
    return get_shift(conn, shift_id)


def sign_outgoing(conn: psycopg.Connection, shift_id: int, staff: Staff, *, at: datetime) -> dict[str, Any]:
    with conn.transaction():
        shift = _locked(conn, shift_id, staff)
        next_state(shift["state"], "sign_outgoing")
        if shift["attendant_id"] != staff.id:
            raise Conflict("the outgoing signature is the shift's own attendant's")
        if shift["cash_fen"] is None:
            raise Conflict("enter cash, card and the counted cash before signing")
        _move(conn, shift, "sign_outgoing", staff, {"outgoing_signed_at": at})
    return get_shift(conn, shift_id)


def sign_incoming(
    conn: psycopg.Connection, shift_id: int, incoming: Staff, *, at: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The incoming attendant accepts the handover: it is signed (final; its reconciliation is stored) and
    the incoming attendant's shift opens where this one closed. Returns (signed shift, new shift)."""
    with conn.transaction():
        shift = _locked(conn, shift_id, incoming)
        next_state(shift["state"], "sign_incoming")
        if incoming.id == shift["attendant_id"]:
            raise Conflict("the incoming signature must be another attendant's")
        summary = reconciliation_of(shift, [])
        _move(
            conn,
            shift,
            "sign_incoming",
            incoming,
            {"incoming_id": incoming.id, "incoming_signed_at": at, "summary": summary},
        )
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(
                "INSERT INTO shifts (station_id, attendant_id, state, opened_at) VALUES (%s, %s, 'open', %s)"
                " RETURNING id",
                (incoming.station_id, incoming.id, shift["closed_at"]),
            )
            .fetchone()
        )
        assert row is not None
        record(
            conn,
            actor=incoming.actor,
            action="create",
            entity="shift",
            entity_id=row[0],
            old=None,
            new={
                "station_id": incoming.station_id,
                "attendant_id": incoming.id,
                "opened_at": shift["closed_at"],
                "after_shift": shift_id,
            },
        )
    return get_shift(conn, shift_id), get_shift(conn, int(row[0]))


def add_correction(
    conn: psycopg.Connection, shift_id: int, staff: Staff, *, field: str, delta_fen: int, reason: str
) -> dict[str, Any]:
    """A correction entry on a signed handover (managers only); the signed figures stay as they were."""
    if staff.role != "manager":
        raise Conflict("corrections are entered by the station manager")
    if field not in ("cash_fen", "card_fen", "counted_cash_fen"):
        raise InvalidInput("field", "must be cash_fen, card_fen or counted_cash_fen")
    if isinstance(delta_fen, bool) or delta_fen == 0 or abs(delta_fen) > 100_000_000:
        raise InvalidInput("delta_fen", "must be non-zero whole fen within ±100000000")
    reason = reason.strip()
    if not 3 <= len(reason) <= 200:
        raise InvalidInput("reason", "must be 3-200 characters")
    with conn.transaction():
        shift = _locked(conn, shift_id, staff)
        next_state(shift["state"], "correct")
        corrections = [*corrections_of(conn, shift_id), {"field": field, "delta_fen": delta_fen}]
        reconciliation_of(shift, corrections)  # refuses one that makes a figure negative
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(
                "INSERT INTO shift_corrections (shift_id, field, delta_fen, reason, staff_id, actor)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (shift_id, field, delta_fen, reason, staff.id, staff.actor),
            )
            .fetchone()
        )
        assert row is not None
        record(
            conn,
            actor=staff.actor,
            action="create",
            entity="shift_correction",
            entity_id=row[0],
            old=None,
            new={"shift_id": shift_id, "field": field, "delta_fen": delta_fen, "reason": reason},
        )
    return get_shift(conn, shift_id)
