"""Promotions: upsert by (source, source_ref), and the promotions that can apply to a set of stations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from geo._pricing import Promotion, parse_date_ranges

_FIELDS = (
    "id, scope, station_id, brand, title, title_en, grades, kind, value, min_amount_cny, min_litres,"
    " days_of_week, date_ranges, public_holidays_only, time_from, time_to, members_only, payment_methods,"
    " valid_from, valid_to, source, source_ref"
)
_KEYS = tuple(k.strip() for k in _FIELDS.split(","))


def _params(p: Promotion) -> tuple[Any, ...]:
    if p.valid_from is None:
        raise ValueError("a stored promotion needs valid_from")
    if p.source_ref is None:
        raise ValueError("a stored promotion needs source_ref (its key with source)")
    return (
        p.scope,
        p.station_id,
        p.brand,
        p.title,
        p.title_en,
        list(p.grades),
        p.kind,
        p.value,
        p.min_amount_cny,
        p.min_litres,
        list(p.days_of_week),
        Jsonb([[a.isoformat(), b.isoformat()] for a, b in p.date_ranges]),
        p.public_holidays_only,
        p.time_from,
        p.time_to,
        p.members_only,
        [m.lower() for m in p.payment_methods],
        p.valid_from,
        p.valid_to,
        p.source,
        p.source_ref,
    )


_INSERT = (
    "INSERT INTO promotions (scope, station_id, brand, title, title_en, grades, kind, value, min_amount_cny,"
    " min_litres, days_of_week, date_ranges, public_holidays_only, time_from, time_to, members_only,"
    " payment_methods, valid_from, valid_to, source, source_ref)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def upsert_promotion(conn: psycopg.Connection, promo: Promotion, *, replace: bool = True) -> tuple[int, bool]:
    """Insert, or (replace=True) update when changed, keyed on (source, source_ref).

    Returns (id, written): written is False when nothing changed (or replace=False and it existed).
    """
    params = _params(promo)
    if replace:
        sql = (
            _INSERT + " ON CONFLICT (source, source_ref) DO UPDATE SET"
            " scope = EXCLUDED.scope, station_id = EXCLUDED.station_id, brand = EXCLUDED.brand,"
            " title = EXCLUDED.title, title_en = EXCLUDED.title_en, grades = EXCLUDED.grades,"
            " kind = EXCLUDED.kind, value = EXCLUDED.value, min_amount_cny = EXCLUDED.min_amount_cny,"
            " min_litres = EXCLUDED.min_litres, days_of_week = EXCLUDED.days_of_week,"
            " date_ranges = EXCLUDED.date_ranges, public_holidays_only = EXCLUDED.public_holidays_only,"
            " time_from = EXCLUDED.time_from, time_to = EXCLUDED.time_to, members_only = EXCLUDED.members_only,"
            " payment_methods = EXCLUDED.payment_methods, valid_from = EXCLUDED.valid_from,"
            " valid_to = EXCLUDED.valid_to, version = promotions.version + 1, updated_at = now()"
            " WHERE (promotions.scope, promotions.station_id, promotions.brand, promotions.title,"
            " promotions.title_en, promotions.grades, promotions.kind, promotions.value,"
            " promotions.min_amount_cny, promotions.min_litres, promotions.days_of_week, promotions.date_ranges,"
            " promotions.public_holidays_only, promotions.time_from, promotions.time_to,"
            " promotions.members_only, promotions.payment_methods, promotions.valid_from, promotions.valid_to)"
            " IS DISTINCT FROM (EXCLUDED.scope, EXCLUDED.station_id, EXCLUDED.brand, EXCLUDED.title,"
            " EXCLUDED.title_en, EXCLUDED.grades, EXCLUDED.kind, EXCLUDED.value, EXCLUDED.min_amount_cny,"
            " EXCLUDED.min_litres, EXCLUDED.days_of_week, EXCLUDED.date_ranges, EXCLUDED.public_holidays_only,"
            " EXCLUDED.time_from, EXCLUDED.time_to, EXCLUDED.members_only, EXCLUDED.payment_methods,"
            " EXCLUDED.valid_from, EXCLUDED.valid_to)"
            " RETURNING id"
        )
    else:
        sql = _INSERT + " ON CONFLICT (source, source_ref) DO NOTHING RETURNING id"
    row = conn.execute(sql, params).fetchone()  # fixed SQL text, parameters bound
    if row is not None:
        return int(row["id"] if isinstance(row, dict) else row[0]), True
    found = conn.execute(
        "SELECT id FROM promotions WHERE source = %s AND source_ref = %s", (promo.source, promo.source_ref)
    ).fetchone()
    assert found is not None
    return int(found["id"] if isinstance(found, dict) else found[0]), False


def promotion_from_row(row: Any) -> Promotion:
    d = dict(row) if isinstance(row, dict) else dict(zip(_KEYS, row, strict=True))

    def dec(v: Any) -> Decimal | None:
        return None if v is None else Decimal(v)

    return Promotion(
        id=int(d["id"]),
        scope=d["scope"],
        station_id=d["station_id"],
        brand=d["brand"],
        title=d["title"] or "",
        title_en=d["title_en"],
        grades=tuple(d["grades"] or ()),
        kind=d["kind"],
        value=Decimal(d["value"]),
        min_amount_cny=dec(d["min_amount_cny"]),
        min_litres=dec(d["min_litres"]),
        days_of_week=tuple(int(x) for x in d["days_of_week"] or ()),
        date_ranges=parse_date_ranges(d["date_ranges"] or []),
        public_holidays_only=bool(d["public_holidays_only"]),
        time_from=d["time_from"],
        time_to=d["time_to"],
        members_only=bool(d["members_only"]),
        payment_methods=tuple(d["payment_methods"] or ()),
        valid_from=d["valid_from"],
        valid_to=d["valid_to"],
        source=d["source"],
        source_ref=d["source_ref"],
    )


# Promotions that target the %(ids)s stations (their own) or the %(brands)s brands.
_TARGETS_SQL = (
    "((scope = 'station' AND station_id = ANY(%(ids)s::bigint[]))"
    "   OR (scope = 'brand' AND brand = ANY(%(brands)s::text[])))"
)


def _targeting(
    conn: psycopg.Connection, stations: Sequence[tuple[int, str]], validity_sql: str, params: dict[str, Any]
) -> dict[int, list[Promotion]]:
    """{station_id: its own promotions, then its brand's} among those meeting `validity_sql`, a fixed
    condition of the caller's (never from input) whose values are bound from `params`; by id."""
    if not stations:
        return {}
    ids = [int(s[0]) for s in stations]
    brands = sorted({s[1] for s in stations})
    rows = conn.execute(
        f"SELECT {_FIELDS} FROM promotions WHERE {_TARGETS_SQL} AND {validity_sql} ORDER BY id",
        {"ids": ids, "brands": brands, **params},
    ).fetchall()
    by_station: dict[int, list[Promotion]] = {sid: [] for sid in ids}
    by_brand: dict[str, list[Promotion]] = {}
    for p in (promotion_from_row(r) for r in rows):
        if p.scope == "station" and p.station_id in by_station:
            by_station[p.station_id].append(p)
        elif p.scope == "brand" and p.brand is not None:
            by_brand.setdefault(p.brand, []).append(p)
    for sid, brand in stations:
        by_station[int(sid)].extend(by_brand.get(brand, []))
    return by_station


def promotions_for_stations(
    conn: psycopg.Connection, stations: Sequence[tuple[int, str]], *, at: datetime | None = None
) -> dict[int, list[Promotion]]:
    """{station_id: promotions that target it}: station-scoped ones plus those of its brand.

    `stations` are (id, brand) pairs. With `at`, promotions not valid at that instant are left out
    (the time-of-day, day and member conditions are for geo._pricing.applies).
    """
    return _targeting(
        conn,
        stations,
        "(%(at)s::timestamptz IS NULL OR (valid_from <= %(at)s AND (valid_to IS NULL OR valid_to > %(at)s)))",
        {"at": at},
    )


def promotions_between(
    conn: psycopg.Connection, stations: Sequence[tuple[int, str]], start: datetime, end: datetime
) -> dict[int, list[Promotion]]:
    """{station_id: promotions targeting it (its own and its brand's) valid at some instant of
    [start, end]}; geo._pricing decides whether one applies at a given arrival."""
    return _targeting(
        conn,
        stations,
        "valid_from <= %(end)s AND (valid_to IS NULL OR valid_to > %(start)s)",
        {"start": start, "end": end},
    )


def get_promotion(conn: psycopg.Connection, promotion_id: int) -> Promotion | None:
    row = conn.execute(f"SELECT {_FIELDS} FROM promotions WHERE id = %s", (promotion_id,)).fetchone()
    return promotion_from_row(row) if row is not None else None
