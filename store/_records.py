"""A driver's e-records: one per paid fill-up (payments joined with the sale they paid, fcc_sales, and the
promotion applied, sale_payments), with the invoice status, the receipt fields and the optional odometer
reading (record_odometers, migration 0021) that gives L/100 km and cost per km, and the points the
payment earned and redeemed (the ledger's transfers of the payment, refund reversals included). Read-only apart from the
odometer, which is checked (monotonic per user, bounded distance between fill-ups) and audited.

Receipt fields come from the records themselves: the trace number is the controller's transaction id
(fcc_sales.site_tx_id), the terminal is the station's pump and nozzle, the receipt number is our order
number (payments.out_trade_no).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from geo import ImplausibleValue, NotFound
from store._audit import record

NEARBY_M = 5_000  # "nearby stations" of the monthly summary: within 5 km of the fill-up's station
MAX_KM_BETWEEN_FILLUPS = 5_000  # no tank lasts longer: a larger step is a typing error
MAX_MONTHS = 24

_ODO = """
odo AS (
    SELECT o.out_trade_no, o.odometer_km,
           lag(o.odometer_km) OVER (ORDER BY p.paid_at, p.id) AS previous_km
    FROM record_odometers o JOIN payments p USING (out_trade_no)
    WHERE o.user_id = %(user)s
)"""

_SELECT = (
    "WITH"
    + _ODO
    + """
SELECT p.id, p.out_trade_no, p.paid_at, p.paid_fen, p.refunded_fen, p.transaction_id,
       sp.sale_amount_fen, sp.discount_fen, sp.promotion_id,
       pr.title AS promotion_title, pr.title_en AS promotion_title_en, pr.kind AS promotion_kind,
       f.station_id, s.name AS station_name, s.name_en AS station_name_en, s.brand AS station_brand,
       f.pump_no, f.nozzle_no, f.grade, f.volume_ml, f.unit_price_fen, f.amount_fen AS list_amount_fen,
       f.site_tx_id, f.ended_at,
       (SELECT i.status FROM payment_invoices i WHERE i.out_trade_no = p.out_trade_no
         ORDER BY i.created_at DESC LIMIT 1) AS invoice_status,
       odo.odometer_km, odo.previous_km,
       pts.points_earned, pts.points_redeemed, pts.points_reversed, pts.points_returned,
       coalesce((SELECT h.fen_off FROM points_holds h WHERE h.ref = p.out_trade_no AND h.state = 'posted'), 0)
         AS redemption_fen
FROM sale_payments sp
JOIN payments p USING (out_trade_no)
JOIN fcc_sales f ON f.id = sp.sale_id
JOIN stations s ON s.id = f.station_id
LEFT JOIN promotions pr ON pr.id = sp.promotion_id
LEFT JOIN odo ON odo.out_trade_no = p.out_trade_no
CROSS JOIN LATERAL (
    SELECT coalesce(sum(t.amount) FILTER (WHERE t.kind = 'earn'), 0)::bigint AS points_earned,
           coalesce(sum(t.amount) FILTER (WHERE t.kind = 'post'), 0)::bigint AS points_redeemed,
           coalesce(sum(t.amount) FILTER (WHERE t.kind = 'reverse_earn'), 0)::bigint AS points_reversed,
           coalesce(sum(t.amount) FILTER (WHERE t.kind = 'return_redeemed'), 0)::bigint AS points_returned
    FROM ledger_transfers t WHERE t.out_trade_no = p.out_trade_no
) pts
WHERE sp.user_id = %(user)s AND p.state = 'paid'
"""
)

_PAGE = (
    _SELECT
    + """
  AND (%(since)s::timestamptz IS NULL OR p.paid_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR p.paid_at < %(until)s)
  AND (%(station)s::bigint IS NULL OR f.station_id = %(station)s)
  AND (%(after_at)s::timestamptz IS NULL OR (p.paid_at, p.id) < (%(after_at)s, %(after_id)s))
ORDER BY p.paid_at DESC, p.id DESC
LIMIT %(limit)s
"""
)

_ONE = _SELECT + "  AND p.id = %(id)s\n"


@dataclass(frozen=True)
class Record:
    id: int
    out_trade_no: str
    paid_at: datetime
    paid_fen: int
    refunded_fen: int
    transaction_id: str
    sale_amount_fen: int
    discount_fen: int
    promotion_id: int | None
    promotion_title: str | None
    promotion_title_en: str | None
    promotion_kind: str | None
    station_id: int
    station_name: str
    station_name_en: str | None
    station_brand: str
    pump_no: int
    nozzle_no: int | None
    grade: str
    volume_ml: int
    unit_price_fen: int
    list_amount_fen: int
    site_tx_id: str
    ended_at: datetime | None
    invoice_status: str | None
    odometer_km: int | None
    previous_km: int | None
    points_earned: int  # the points ledger's transfers of this payment (store/_ledger.py)
    points_redeemed: int
    points_reversed: int  # earned points taken back by refunds
    points_returned: int  # redeemed points given back by refunds
    redemption_fen: int  # what the redeemed points took off the amount

    @property
    def litres(self) -> Decimal:
        return Decimal(self.volume_ml) / 1000

    @property
    def distance_km(self) -> int | None:
        """km driven since the previous fill-up with a reading (None without two readings)."""
        if self.odometer_km is None or self.previous_km is None:
            return None
        return self.odometer_km - self.previous_km

    @property
    def l_per_100km(self) -> Decimal | None:
        """Full-to-full consumption: this fill-up's litres over the km since the previous reading."""
        d = self.distance_km
        return None if not d else (self.litres * 100 / d).quantize(Decimal("0.01"))

    @property
    def fen_per_km(self) -> Decimal | None:
        d = self.distance_km
        return None if not d else (Decimal(self.paid_fen - self.refunded_fen) / d).quantize(Decimal("0.1"))

    @property
    def terminal(self) -> str:
        """The pump and nozzle as a receipt names them: P<pump>-N<nozzle>."""
        return f"P{self.pump_no:02d}-N{self.nozzle_no or 0:02d}"


def records_page(
    conn: psycopg.Connection,
    user_id: int,
    *,
    limit: int,
    since: datetime | None = None,
    until: datetime | None = None,
    station_id: int | None = None,
    after: tuple[datetime, int] | None = None,
) -> list[Record]:
    """The user's records newest first, at most `limit`, paid in [since, until), at a station, after the
    cursor `after` (the (paid_at, id) of the last record of the previous page)."""
    params = {
        "user": user_id,
        "since": since,
        "until": until,
        "station": station_id,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_PAGE, params)
        return [Record(**r) for r in cur.fetchall()]


def get_record(conn: psycopg.Connection, user_id: int, record_id: int) -> Record:
    """The user's record `record_id`; NotFound when there is none (another user's included)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_ONE, {"user": user_id, "id": record_id})
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"record {record_id} not found")
    return Record(**row)


def set_odometer(
    conn: psycopg.Connection, user_id: int, record_id: int, odometer_km: int | None, *, actor: str
) -> Record:
    """Store (or with None remove) the odometer reading of the user's record, audited, in one
    transaction. Readings never go backwards in time per user (ImplausibleValue, naming the allowed range)
    and no two neighbouring readings are more than MAX_KM_BETWEEN_FILLUPS apart."""
    with conn.transaction():
        conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (user_id,))  # one writer per user
        rec = get_record(conn, user_id, record_id)
        if odometer_km is not None:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    "SELECT max(o.odometer_km) FILTER (WHERE (p.paid_at, p.id) < (%(at)s, %(id)s)) AS low,"
                    "       min(o.odometer_km) FILTER (WHERE (p.paid_at, p.id) > (%(at)s, %(id)s)) AS high"
                    " FROM record_odometers o JOIN payments p USING (out_trade_no) WHERE o.user_id = %(user)s",
                    {"at": rec.paid_at, "id": rec.id, "user": user_id},
                )
                row: Any = cur.fetchone()
            low, high = row["low"], row["high"]
            lo = low if low is not None else 0
            hi = high if high is not None else 2_000_000
            if low is not None:
                hi = min(hi, low + MAX_KM_BETWEEN_FILLUPS)
            if high is not None:
                lo = max(lo, high - MAX_KM_BETWEEN_FILLUPS)
            if not lo <= odometer_km <= hi:
                raise ImplausibleValue(
                    "odometer_km",
                    f"{odometer_km} km does not fit the readings of your other fill-ups: an odometer never goes"
                    f" backwards and no tank lasts more than {MAX_KM_BETWEEN_FILLUPS} km; allowed here"
                    f" {lo} to {hi} km",
                    rule="odometer.monotonic",
                    allowed={"min": str(lo), "max": str(hi)},
                )
            conn.execute(
                "INSERT INTO record_odometers (out_trade_no, user_id, odometer_km) VALUES (%s, %s, %s)"
                " ON CONFLICT (out_trade_no) DO UPDATE SET odometer_km = EXCLUDED.odometer_km, updated_at = now()",
                (rec.out_trade_no, user_id, odometer_km),
            )
        else:
            conn.execute("DELETE FROM record_odometers WHERE out_trade_no = %s", (rec.out_trade_no,))
        record(
            conn,
            actor=actor,
            action="update",
            entity="record_odometer",
            entity_id=rec.id,
            old={"odometer_km": rec.odometer_km},
            new={"odometer_km": odometer_km},
        )
        return get_record(conn, user_id, record_id)


@dataclass(frozen=True)
class Month:
    month: str  # YYYY-MM (local)
    fillups: int
    volume_ml: int
    spend_fen: int  # paid net of refunds
    list_amount_fen: int
    avg_paid_fen_per_litre: int | None
    avg_nearby_list_fen_per_litre: int | None  # volume-weighted over the month's fill-ups
    distance_km: int | None
    l_per_100km: Decimal | None


_MONTHS = (
    "WITH"
    + _ODO
    + """,
recs AS (
    SELECT to_char(p.paid_at AT TIME ZONE %(tz)s, 'YYYY-MM') AS month, p.paid_at, f.grade, f.volume_ml,
           p.paid_fen - p.refunded_fen AS spend_fen, f.amount_fen AS list_amount_fen, s.geom,
           odo.odometer_km - odo.previous_km AS distance_km
    FROM sale_payments sp
    JOIN payments p USING (out_trade_no)
    JOIN fcc_sales f ON f.id = sp.sale_id
    JOIN stations s ON s.id = f.station_id
    LEFT JOIN odo ON odo.out_trade_no = p.out_trade_no
    WHERE sp.user_id = %(user)s AND p.state = 'paid' AND p.paid_at >= %(since)s AND p.paid_at < %(until)s
)
SELECT r.month, count(*) AS fillups, sum(r.volume_ml) AS volume_ml, sum(r.spend_fen) AS spend_fen,
       sum(r.list_amount_fen) AS list_amount_fen,
       sum(r.volume_ml * n.price) FILTER (WHERE n.price IS NOT NULL) AS nearby_weighted,
       sum(r.volume_ml) FILTER (WHERE n.price IS NOT NULL) AS nearby_volume,
       sum(r.distance_km) AS distance_km,
       sum(r.volume_ml) FILTER (WHERE r.distance_km > 0) AS odo_volume_ml
FROM recs r
LEFT JOIN LATERAL (
    SELECT avg(latest.price_cny) AS price
    FROM stations s2
    CROSS JOIN LATERAL (
        SELECT pr.price_cny FROM prices pr
        WHERE pr.station_id = s2.id AND pr.grade = r.grade AND pr.effective_from <= r.paid_at
        ORDER BY pr.effective_from DESC LIMIT 1
    ) latest
    WHERE ST_DWithin(s2.geom::geography, r.geom::geography, %(nearby_m)s)
) n ON true
GROUP BY r.month ORDER BY r.month
"""
)


def monthly_summary(
    conn: psycopg.Connection, user_id: int, *, since: datetime, until: datetime, tz: str
) -> list[Month]:
    """The user's fill-ups per local month in [since, until): litres, spend, the average price paid per
    litre against the average list price of the same grade at stations within NEARBY_M of each fill-up's
    station at its time (volume-weighted), and L/100 km from odometer readings. Months without a fill-up
    are left out."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            _MONTHS, {"user": user_id, "since": since, "until": until, "tz": tz, "nearby_m": NEARBY_M}
        )
        rows = cur.fetchall()
    out = []
    for r in rows:
        volume = int(r["volume_ml"])
        nearby = (
            int((Decimal(r["nearby_weighted"]) * 100 / Decimal(r["nearby_volume"])).quantize(Decimal(1)))
            if r["nearby_volume"]
            else None
        )
        distance = int(r["distance_km"]) if r["distance_km"] else None
        l100 = (
            (Decimal(r["odo_volume_ml"]) / 1000 * 100 / distance).quantize(Decimal("0.01"))
            if distance and r["odo_volume_ml"]
            else None
        )
        out.append(
            Month(
                month=r["month"],
                fillups=int(r["fillups"]),
                volume_ml=volume,
                spend_fen=int(r["spend_fen"]),
                list_amount_fen=int(r["list_amount_fen"]),
                avg_paid_fen_per_litre=int((Decimal(r["spend_fen"]) * 1000 / volume).quantize(Decimal(1)))
                if volume
                else None,
                avg_nearby_list_fen_per_litre=nearby,
                distance_km=distance,
                l_per_100km=l100,
            )
        )
    return out
