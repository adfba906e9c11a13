"""Promotions: the checked, audited upsert keyed by (target, source, source_ref), and the promotions that
can apply to a set of stations. A source_ref is unique per station (station promotions) or per brand."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, time
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from geo._errors import InvalidInput
from geo._plausible import PlausibilityRules, promotion_problem
from geo._pricing import Promotion, parse_date_ranges
from store._audit import record
from store._ceilings import ceiling_book, default_rules
from store._membership import tiers

_FIELDS = (
    "id, scope, station_id, brand, title, title_en, grades, kind, value, min_amount_cny, min_litres,"
    " days_of_week, date_ranges, public_holidays_only, time_from, time_to, members_only, payment_methods,"
    " valid_from, valid_to, source, source_ref, min_tier"
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
        p.min_tier,
    )


_INSERT = (
    "INSERT INTO promotions (scope, station_id, brand, title, title_en, grades, kind, value, min_amount_cny,"
    " min_litres, days_of_week, date_ranges, public_holidays_only, time_from, time_to, members_only,"
    " payment_methods, valid_from, valid_to, source, source_ref, min_tier)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (target, source, source_ref) DO NOTHING RETURNING id"
)


def promotion_target(p: Promotion) -> str:
    """Whose promotion it is: `station:<id>` or `brand:<brand>`. A source_ref is unique per target."""
    if p.scope == "station":
        if p.station_id is None:
            raise ValueError("a station promotion needs station_id")
        return f"station:{int(p.station_id)}"
    if p.scope == "brand" and p.brand:
        return f"brand:{p.brand}"
    raise ValueError(
        f"a promotion is of scope station (with station_id) or brand (with brand), got {p.scope!r}"
    )


def promotion_audit(p: Promotion) -> dict[str, Any]:
    """The audit (and JSON) form of a promotion."""
    d = dataclasses.asdict(p)
    d["date_ranges"] = [[a.isoformat(), b.isoformat()] for a, b in p.date_ranges]
    return d


def same_promotion(a: Promotion, b: Promotion) -> bool:
    """Equal content, ignoring the database id."""
    return dataclasses.replace(a, id=None) == dataclasses.replace(b, id=None)


def check_promotion(
    conn: psycopg.Connection, promo: Promotion, *, zone: str, rules: PlausibilityRules | None = None
) -> None:
    """Raise ImplausibleValue (param `value`) when the promotion's value breaks its kind's cap
    (geo/_plausible.py; a discount per litre is bounded by the ceilings of `zone`), InvalidInput (param
    `min_tier`) for a membership tier that does not exist."""
    problem = promotion_problem(promo, book=ceiling_book(conn, zone), rules=rules or default_rules())
    if problem is not None:
        raise problem.error()
    if promo.min_tier is not None:
        codes = [t.code for t in tiers(conn)]
        if promo.min_tier not in codes:
            raise InvalidInput(
                "min_tier", f"no membership tier {promo.min_tier!r}: one of {', '.join(codes)}"
            )


def find_promotion(
    conn: psycopg.Connection, promo: Promotion, *, lock: bool = False
) -> tuple[Promotion, int] | None:
    """The stored promotion with the same key (target, source, source_ref) and its version."""
    row = conn.execute(
        f"SELECT {_FIELDS}, version FROM promotions WHERE target = %s AND source = %s AND source_ref = %s"
        + (" FOR UPDATE" if lock else ""),
        (promotion_target(promo), promo.source, promo.source_ref),
    ).fetchone()
    if row is None:
        return None
    d = dict(row) if isinstance(row, dict) else dict(zip((*_KEYS, "version"), row, strict=True))
    version = int(d.pop("version"))
    return promotion_from_row(d), version


def update_terms(
    conn: psycopg.Connection, promotion_id: int, promo: Promotion, expected_version: int
) -> int | None:
    """Replace the terms of a stored promotion (its key stays) if it is still at `expected_version`;
    the new version, or None when the version moved (no audit row: the caller writes it)."""
    row = conn.execute(
        "UPDATE promotions SET title = %s, title_en = %s, grades = %s, kind = %s, value = %s,"
        " min_amount_cny = %s, min_litres = %s, days_of_week = %s, date_ranges = %s,"
        " public_holidays_only = %s, time_from = %s, time_to = %s, members_only = %s,"
        " payment_methods = %s, valid_from = %s, valid_to = %s, min_tier = %s, version = version + 1,"
        " updated_at = now()"
        " WHERE id = %s AND version = %s RETURNING version",
        (
            promo.title,
            promo.title_en,
            list(promo.grades),
            promo.kind,
            promo.value,
            promo.min_amount_cny,
            promo.min_litres,
            list(promo.days_of_week),
            Jsonb([[a.isoformat(), b.isoformat()] for a, b in promo.date_ranges]),
            promo.public_holidays_only,
            promo.time_from,
            promo.time_to,
            promo.members_only,
            [m.lower() for m in promo.payment_methods],
            promo.valid_from,
            promo.valid_to,
            promo.min_tier,
            promotion_id,
            expected_version,
        ),
    ).fetchone()
    if row is None:
        return None
    return int(row["version"] if isinstance(row, dict) else row[0])


def upsert_promotion(
    conn: psycopg.Connection,
    promo: Promotion,
    *,
    actor: str,
    zone: str,
    rules: PlausibilityRules | None = None,
    replace: bool = True,
) -> tuple[int, bool]:
    """The one write of a promotion by its key (target, source, source_ref): checked for plausibility
    (check_promotion), then inserted, or (replace=True) its terms updated when they changed, with the
    audit row (actor `actor`) in the same transaction.

    Returns (id, written): written is False when nothing changed (or replace=False and it existed).
    """
    check_promotion(conn, promo, zone=zone, rules=rules)
    params = _params(promo)
    promotion_target(promo)
    with conn.transaction():
        found = find_promotion(conn, promo, lock=True)
        if found is None:
            row = conn.execute(_INSERT, params).fetchone()  # fixed SQL text, parameters bound
            if row is not None:
                pid = int(row["id"] if isinstance(row, dict) else row[0])
                stored = get_promotion(conn, pid)
                record(
                    conn,
                    actor=actor,
                    action="create",
                    entity="promotion",
                    entity_id=pid,
                    old=None,
                    new=promotion_audit(stored or promo),
                )
                return pid, True
            found = find_promotion(conn, promo, lock=True)  # inserted by a concurrent writer just now
            assert found is not None
        old, version = found
        pid = int(old.id or 0)
        if not replace or same_promotion(old, promo):
            return pid, False
        if update_terms(conn, pid, promo, version) is None:  # cannot happen under the row lock
            raise RuntimeError(f"promotion {pid} changed while locked")
        stored = get_promotion(conn, pid)
        record(
            conn,
            actor=actor,
            action="update",
            entity="promotion",
            entity_id=pid,
            old=promotion_audit(old),
            new=promotion_audit(stored or promo),
        )
        return pid, True


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
        min_tier=d.get("min_tier"),
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


_JSON_FIELDS = ", ".join(
    f"{k}::text AS {k}" if k in ("value", "min_amount_cny", "min_litres") else k for k in _KEYS
)

# A column of a station query (station alias `s` with its brand): the promotions targeting the
# station, its own then its brand's, by id, valid at %(promo_at)s, as a jsonb array (decimals as
# text). Read with promotions_from_json; the same set as promotions_for_stations(at=...).
VALID_AT_COLUMN = sql.SQL(
    "(SELECT coalesce(jsonb_agg(to_jsonb(pr) ORDER BY pr.scope = 'brand', pr.id), '[]') FROM ("
    f"SELECT {_JSON_FIELDS} FROM promotions"
    " WHERE ((scope = 'station' AND station_id = s.id) OR (scope = 'brand' AND brand = s.brand))"
    " AND valid_from <= %(promo_at)s AND (valid_to IS NULL OR valid_to > %(promo_at)s)) pr)"
    " AS promotions_valid"
)


def promotions_from_json(items: Sequence[dict[str, Any]]) -> list[Promotion]:
    """The promotions of a VALID_AT_COLUMN value."""
    out = []
    for d in items:
        row = dict(d)
        for k in ("time_from", "time_to"):
            row[k] = None if row[k] is None else time.fromisoformat(row[k])
        for k in ("valid_from", "valid_to"):
            row[k] = None if row[k] is None else datetime.fromisoformat(row[k])
        out.append(promotion_from_row(row))
    return out


def get_promotion(conn: psycopg.Connection, promotion_id: int) -> Promotion | None:
    row = conn.execute(f"SELECT {_FIELDS} FROM promotions WHERE id = %s", (promotion_id,)).fetchone()
    return promotion_from_row(row) if row is not None else None
