"""Station list prices: history rows, the price in force at a time, ceiling checks on insert."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from geo._errors import PriceAboveCeiling
from geo._pricing import KNOWN_GRADES
from store._ceilings import Ceiling, ceiling_in, ceilings_for_zone

PRICE_SOURCES = ("station", "feed", "official", "demo")


@dataclass(frozen=True)
class PriceIn:
    station_id: int
    grade: str
    price_cny: Decimal
    effective_from: datetime
    source: str = "station"
    observed_at: datetime | None = None


@dataclass(frozen=True)
class CurrentPrice:
    station_id: int
    grade: str
    price_cny: Decimal
    effective_from: datetime
    observed_at: datetime
    source: str


def check_ceiling(price: PriceIn, ceilings: Iterable[Ceiling]) -> None:
    """Raise PriceAboveCeiling when `price` is above the ceiling in force at its effective_from.

    Grades without a ceiling (98#) and times before the first notice pass.
    """
    c = ceiling_in(ceilings, price.grade, price.effective_from)
    if c is not None and Decimal(price.price_cny) > c.max_price_cny:
        notice = c.adjustment_date.isoformat() if c.adjustment_date else c.effective_from.isoformat()
        err = PriceAboveCeiling(
            "price_cny",
            f"station {price.station_id} grade {price.grade}#: price {Decimal(price.price_cny):.2f} CNY/L is above "
            f"the official ceiling {c.max_price_cny:.2f} CNY/L of zone {c.zone} (notice of {notice}, "
            f"in force from {c.effective_from.isoformat()})",
        )
        err.station_id = price.station_id  # type: ignore[attr-defined]
        err.grade = price.grade  # type: ignore[attr-defined]
        err.ceiling = c  # type: ignore[attr-defined]
        raise err


def _validate(p: PriceIn) -> None:
    if p.grade not in KNOWN_GRADES:
        raise ValueError(f"unknown grade {p.grade!r} (known: {', '.join(KNOWN_GRADES)})")
    if p.source not in PRICE_SOURCES:
        raise ValueError(f"price source must be one of {', '.join(PRICE_SOURCES)}, got {p.source!r}")
    if Decimal(p.price_cny) <= 0:
        raise ValueError("price_cny must be > 0")
    if p.effective_from.tzinfo is None:
        raise ValueError("effective_from needs a time zone")


def insert_prices(conn: psycopg.Connection, prices: Sequence[PriceIn], *, zone: str) -> int:
    """Insert price history rows after checking each against the ceilings of `zone`.

    All or nothing: one price above its ceiling raises PriceAboveCeiling and nothing is written.
    A row with the same (station, grade, effective_from) is corrected in place when its price or
    source differ; identical rows are left alone. Returns the number of rows written.
    """
    if not prices:
        return 0
    ceilings = ceilings_for_zone(conn, zone)
    for p in prices:
        _validate(p)
        check_ceiling(p, ceilings)
    written = 0
    with conn.transaction(), conn.cursor() as cur:
        for p in prices:
            cur.execute(
                "INSERT INTO prices (station_id, grade, price_cny, effective_from, observed_at, source)"
                " VALUES (%s, %s, %s, %s, coalesce(%s, now()), %s)"
                " ON CONFLICT (station_id, grade, effective_from) DO UPDATE SET"
                " price_cny = EXCLUDED.price_cny, source = EXCLUDED.source, observed_at = EXCLUDED.observed_at"
                " WHERE (prices.price_cny, prices.source) IS DISTINCT FROM (EXCLUDED.price_cny, EXCLUDED.source)",
                (p.station_id, p.grade, p.price_cny, p.effective_from, p.observed_at, p.source),
            )
            written += cur.rowcount
    return written


def insert_price(conn: psycopg.Connection, price: PriceIn, *, zone: str) -> int:
    """One price (see insert_prices); returns rows written (0 when identical to a stored row)."""
    return insert_prices(conn, [price], zone=zone)


_PRICE_KEYS = ("station_id", "grade", "price_cny", "effective_from", "observed_at", "source")

# Per (station, grade) of the %(ids)s x %(grades)s arrays, the newest row with effective_from <= %(at)s
# (LATERAL over the prices_current index). Columns: _PRICE_KEYS.
_IN_FORCE_SQL = (
    "SELECT s.id AS station_id, g.grade, p.price_cny, p.effective_from, p.observed_at, p.source"
    " FROM unnest(%(ids)s::bigint[]) AS s(id) CROSS JOIN unnest(%(grades)s::text[]) AS g(grade)"
    " CROSS JOIN LATERAL (SELECT price_cny, effective_from, observed_at, source FROM prices"
    "   WHERE prices.station_id = s.id AND prices.grade = g.grade AND prices.effective_from <= %(at)s"
    "   ORDER BY prices.effective_from DESC LIMIT 1) p"
)


def _current_price(row: Any) -> CurrentPrice:
    return CurrentPrice(**_as_dict(row, _PRICE_KEYS))


def current_prices(
    conn: psycopg.Connection,
    station_ids: Sequence[int],
    at: datetime,
    *,
    grades: Sequence[str] = KNOWN_GRADES,
) -> dict[int, dict[str, CurrentPrice]]:
    """{station_id: {grade: price in force at `at`}}: per (station, grade) the newest row with
    effective_from <= at (LATERAL over the prices_current index)."""
    if not station_ids:
        return {}
    rows = conn.execute(
        _IN_FORCE_SQL, {"ids": list(station_ids), "grades": list(grades), "at": at}
    ).fetchall()
    out: dict[int, dict[str, CurrentPrice]] = {}
    for p in map(_current_price, rows):
        out.setdefault(p.station_id, {})[p.grade] = p
    return out


def station_prices_between(
    conn: psycopg.Connection,
    station_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    grades: Sequence[str] = KNOWN_GRADES,
) -> dict[int, dict[str, list[CurrentPrice]]]:
    """{station: {grade: price rows sorted by effective_from}}: the row in force at `start` plus every
    row taking effect in (start, end]. One query; pick the price at any instant of [start, end] with
    geo._ranking.price_at (arrival-time pricing of many stations at once)."""
    if not station_ids:
        return {}
    rows = conn.execute(
        "SELECT station_id, grade, price_cny, effective_from, observed_at, source FROM ("
        + _IN_FORCE_SQL
        + " UNION ALL"
        " SELECT station_id, grade, price_cny, effective_from, observed_at, source FROM prices"
        " WHERE station_id = ANY(%(ids)s::bigint[]) AND grade = ANY(%(grades)s::text[])"
        "   AND effective_from > %(at)s AND effective_from <= %(end)s"
        ") x ORDER BY station_id, grade, effective_from",
        {"ids": list(station_ids), "grades": list(grades), "at": start, "end": end},
    ).fetchall()
    out: dict[int, dict[str, list[CurrentPrice]]] = {}
    for p in map(_current_price, rows):
        out.setdefault(p.station_id, {}).setdefault(p.grade, []).append(p)
    return out


def price_history(
    conn: psycopg.Connection, station_id: int, *, grade: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first."""
    rows = conn.execute(
        "SELECT id, station_id, grade, price_cny, effective_from, observed_at, source, created_at FROM prices"
        " WHERE station_id = %s AND (%s::text IS NULL OR grade = %s::text)"
        " ORDER BY effective_from DESC, grade LIMIT %s",
        (station_id, grade, grade, limit),
    ).fetchall()
    keys = ("id", "station_id", "grade", "price_cny", "effective_from", "observed_at", "source", "created_at")
    return [_as_dict(r, keys) for r in rows]


def _as_dict(row: Any, keys: Sequence[str]) -> dict[str, Any]:
    return dict(row) if isinstance(row, dict) else dict(zip(keys, row, strict=True))
