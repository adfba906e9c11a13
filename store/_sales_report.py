"""Sales reports of a station: the controller's sales grouped by day, shift, grade, nozzle, attendant or
payment method over a bounded range of business days (the region's time zone), and the daily close (日结),
stored once per station and day and never rewritten."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from geo._errors import Conflict, InvalidInput
from store._audit import jsonable, record

Dimension = Literal["day", "shift", "grade", "nozzle", "attendant", "payment"]
DIMENSIONS: tuple[Dimension, ...] = ("day", "shift", "grade", "nozzle", "attendant", "payment")
MAX_DAYS = 92  # one report covers at most a quarter

# The key of each dimension (a fixed expression per name: nothing from the request is spliced in).
_KEYS: dict[str, sql.Composable] = {
    "day": sql.SQL("to_char(x.at AT TIME ZONE %(tz)s, 'YYYY-MM-DD')"),
    "shift": sql.SQL("coalesce(x.shift_id::text, '-')"),
    "grade": sql.SQL("x.grade"),
    "nozzle": sql.SQL("x.pump_no || '-' || coalesce(x.nozzle_no::text, '?')"),
    "attendant": sql.SQL("coalesce(x.attendant, '-')"),
    "payment": sql.SQL("x.payment"),
}

_SALES = sql.SQL(
    """
WITH x AS (
    SELECT coalesce(s.ended_at, s.first_seen_at) AS at, s.grade, s.pump_no, s.nozzle_no, s.volume_ml,
           s.amount_fen, sh.id AS shift_id, st.display_name AS attendant,
           CASE WHEN EXISTS (SELECT 1 FROM sale_payments sp JOIN payments p USING (out_trade_no)
                              WHERE sp.sale_id = s.id AND p.state = 'paid') THEN 'wechat'
                WHEN s.state = 'cleared' THEN 'station'
                ELSE 'unpaid' END AS payment
      FROM fcc_sales s
      LEFT JOIN shifts sh ON sh.station_id = s.station_id
            AND coalesce(s.ended_at, s.first_seen_at) >= sh.opened_at
            AND coalesce(s.ended_at, s.first_seen_at) < coalesce(sh.closed_at, 'infinity')
      LEFT JOIN staff st ON st.id = sh.attendant_id
     WHERE s.station_id = %(station)s
       AND coalesce(s.ended_at, s.first_seen_at) >= %(start)s
       AND coalesce(s.ended_at, s.first_seen_at) < %(end)s
)
SELECT {key} AS key, count(*) AS sales, sum(x.volume_ml) AS volume_ml, sum(x.amount_fen) AS amount_fen
  FROM x GROUP BY 1 ORDER BY 1
"""
)


def day_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    if last < first:
        raise InvalidInput("last", f"the range ends ({last}) before it starts ({first})")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidInput("last", f"a report covers at most {MAX_DAYS} days, got {(last - first).days + 1}")
    return datetime.combine(first, time(), tz), datetime.combine(last + timedelta(days=1), time(), tz)


def sales_report(
    conn: psycopg.Connection, station_id: int, *, by: Dimension, first: date, last: date, tz: ZoneInfo
) -> list[dict[str, Any]]:
    """Rows {key, sales, volume_ml, amount_fen} of the station's sales in [first, last], by `by`."""
    if by not in _KEYS:
        raise InvalidInput("by", f"must be one of {', '.join(DIMENSIONS)}")
    start, end = day_bounds(first, last, tz)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SALES.format(key=_KEYS[by]),
            {"station": station_id, "start": start, "end": end, "tz": tz.key},
        ).fetchall()
    return [
        {
            "key": r["key"],
            "sales": int(r["sales"]),
            "volume_ml": int(r["volume_ml"]),
            "amount_fen": int(r["amount_fen"]),
        }
        for r in rows
    ]


def day_totals(conn: psycopg.Connection, station_id: int, day: date, tz: ZoneInfo) -> dict[str, Any]:
    """A business day's figures: totals, by grade and by payment method, and its shifts' tenders."""
    start, end = day_bounds(day, day, tz)
    by_grade = sales_report(conn, station_id, by="grade", first=day, last=day, tz=tz)
    by_payment = sales_report(conn, station_id, by="payment", first=day, last=day, tz=tz)
    with conn.cursor(row_factory=dict_row) as cur:
        shifts = cur.execute(
            "SELECT id, state, summary FROM shifts WHERE station_id = %s AND opened_at < %s"
            " AND coalesce(closed_at, 'infinity') > %s ORDER BY opened_at",
            (station_id, end, start),
        ).fetchall()
    return {
        "business_day": day.isoformat(),
        "sales": sum(r["sales"] for r in by_grade),
        "volume_ml": sum(r["volume_ml"] for r in by_grade),
        "amount_fen": sum(r["amount_fen"] for r in by_grade),
        "by_grade": by_grade,
        "by_payment": by_payment,
        "shifts": [
            {
                "id": s["id"],
                "state": s["state"],
                "cash_difference_fen": (s["summary"] or {}).get("cash_difference_fen"),
            }
            for s in shifts
        ],
    }


def close_day(
    conn: psycopg.Connection, station_id: int, day: date, *, tz: ZoneInfo, now: datetime, actor: str
) -> dict[str, Any]:
    """Close a business day once it is over and no handover of it is half done; stored once, audited."""
    _, end = day_bounds(day, day, tz)
    if end > now:
        raise Conflict(f"{day} is not over yet: a day is closed after its last sale")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('daily_close'), %s::int)", (station_id % 2**31,))
        totals = day_totals(conn, station_id, day, tz)
        pending = [s["id"] for s in totals["shifts"] if s["state"] in ("counting", "awaiting_incoming")]
        if pending:
            raise Conflict(
                f"handover of shift {pending[0]} is not signed yet: sign it before the daily close"
            )
        row = (
            conn.cursor(row_factory=tuple_row)
            .execute(
                "INSERT INTO daily_closes (station_id, business_day, totals, closed_by) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING closed_at",
                (station_id, day, Jsonb(jsonable(totals)), actor),
            )
            .fetchone()
        )
        if row is None:
            raise Conflict(f"{day} is already closed")
        record(
            conn,
            actor=actor,
            action="create",
            entity="daily_close",
            entity_id=f"{station_id}:{day}",
            old=None,
            new=totals,
        )
    return {**totals, "station_id": station_id, "closed_by": actor, "closed_at": row[0]}


def get_close(conn: psycopg.Connection, station_id: int, day: date) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT totals, closed_by, closed_at FROM daily_closes WHERE station_id = %s AND business_day = %s",
            (station_id, day),
        ).fetchone()
    if row is None:
        return None
    return {
        **row["totals"],
        "station_id": station_id,
        "closed_by": row["closed_by"],
        "closed_at": row["closed_at"],
    }
