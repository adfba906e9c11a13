"""Station list prices: history rows (plausibility-checked and audited on write), the price in force at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from geo._plausible import PlausibilityRules, band_problem, price_problem, reference_grade
from geo._pricing import KNOWN_GRADES
from store._audit import record_many
from store._ceilings import ceiling_book, default_rules

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


def station_grades(conn: psycopg.Connection, ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """{station id: the grades it sells} for the ids that exist."""
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return {}
    out: dict[int, tuple[str, ...]] = {}
    for r in conn.execute("SELECT id, grades FROM stations WHERE id = ANY(%s)", (wanted,)).fetchall():
        d = _as_dict(r, ("id", "grades"))
        out[int(d["id"])] = tuple(d["grades"] or ())
    return out


def _validate(p: PriceIn) -> None:
    if p.grade not in KNOWN_GRADES:
        raise ValueError(f"unknown grade {p.grade!r} (known: {', '.join(KNOWN_GRADES)})")
    if p.source not in PRICE_SOURCES:
        raise ValueError(f"price source must be one of {', '.join(PRICE_SOURCES)}, got {p.source!r}")
    if Decimal(p.price_cny) <= 0:
        raise ValueError("price_cny must be > 0")
    if p.effective_from.tzinfo is None:
        raise ValueError("effective_from needs a time zone")


def check_prices(
    conn: psycopg.Connection,
    prices: Sequence[PriceIn],
    *,
    zone: str,
    rules: PlausibilityRules,
    now: datetime,
) -> None:
    """Raise the ImplausibleValue (or PriceAboveCeiling) of the first implausible price: each must be
    for a grade its station sells, dated plausibly, and within the band of the ceiling of `zone` in
    force at its effective_from (geo/_plausible.py). The message names the station."""
    book = ceiling_book(conn, zone)
    sells = station_grades(conn, [p.station_id for p in prices])
    for p in prices:
        _validate(p)
        problem = price_problem(
            p.grade,
            Decimal(p.price_cny),
            p.effective_from,
            book=book,
            rules=rules,
            now=now,
            sells=sells.get(p.station_id, ()),
        )
        if problem is not None:
            err = dataclasses.replace(problem, message=f"station {p.station_id}: {problem.message}").error()
            err.station_id = p.station_id  # type: ignore[attr-defined]
            err.grade = p.grade  # type: ignore[attr-defined]
            raise err


def price_audit(
    station_id: int, grade: str, effective_from: datetime, price_cny: Decimal, source: str
) -> dict[str, Any]:
    """The audit form of a price row."""
    return {
        "station_id": station_id,
        "grade": grade,
        "effective_from": effective_from,
        "price_cny": Decimal(price_cny),
        "source": source,
    }


def insert_prices(
    conn: psycopg.Connection,
    prices: Sequence[PriceIn],
    *,
    zone: str,
    actor: str,
    rules: PlausibilityRules | None = None,
    now: datetime | None = None,
    audit_note: Mapping[str, Any] | None = None,
) -> int:
    """Insert price history rows after checking each for plausibility (see check_prices), each written
    row with its audit row (actor `actor`; `audit_note`'s keys added to its new value); the stations
    whose prices changed get a new version.

    All or nothing: one implausible price raises and nothing is written. A row with the same (station,
    grade, effective_from) is corrected in place when its price or source differ; identical rows are
    left alone. Returns the number of rows written.
    """
    if not prices:
        return 0
    check_prices(conn, prices, zone=zone, rules=rules or default_rules(), now=now or datetime.now(UTC))
    audit: list[tuple[str, str, int | str, dict[str, Any] | None, dict[str, Any] | None]] = []
    touched: set[int] = set()
    with conn.transaction(), conn.cursor() as cur:
        for p in prices:
            cur.execute(
                "SELECT id, price_cny, source FROM prices"
                " WHERE station_id = %s AND grade = %s AND effective_from = %s FOR UPDATE",
                (p.station_id, p.grade, p.effective_from),
            )
            row = cur.fetchone()
            old = None if row is None else _as_dict(row, ("id", "price_cny", "source"))
            if old is not None and (Decimal(old["price_cny"]), old["source"]) == (
                Decimal(p.price_cny),
                p.source,
            ):
                continue
            cur.execute(
                "INSERT INTO prices (station_id, grade, price_cny, effective_from, observed_at, source)"
                " VALUES (%s, %s, %s, %s, coalesce(%s, now()), %s)"
                " ON CONFLICT (station_id, grade, effective_from) DO UPDATE SET"
                " price_cny = EXCLUDED.price_cny, source = EXCLUDED.source, observed_at = EXCLUDED.observed_at"
                " RETURNING id",
                (p.station_id, p.grade, p.price_cny, p.effective_from, p.observed_at, p.source),
            )
            got = cur.fetchone()
            assert got is not None
            new = {
                **price_audit(p.station_id, p.grade, p.effective_from, p.price_cny, p.source),
                **(audit_note or {}),
            }
            before = (
                None
                if old is None
                else price_audit(p.station_id, p.grade, p.effective_from, old["price_cny"], old["source"])
            )
            audit.append(
                ("create" if old is None else "update", "price", _as_dict(got, ("id",))["id"], before, new)
            )
            touched.add(p.station_id)
        if touched:
            cur.execute("UPDATE stations SET version = version + 1 WHERE id = ANY(%s)", (sorted(touched),))
        record_many(conn, actor=actor, entries=audit)
    return len(audit)


def insert_price(
    conn: psycopg.Connection,
    price: PriceIn,
    *,
    zone: str,
    actor: str,
    rules: PlausibilityRules | None = None,
    now: datetime | None = None,
    audit_note: Mapping[str, Any] | None = None,
) -> int:
    """One price (see insert_prices); returns rows written (0 when identical to a stored row)."""
    return insert_prices(conn, [price], zone=zone, actor=actor, rules=rules, now=now, audit_note=audit_note)


@dataclass(frozen=True)
class RemovedPrice:
    id: int
    station_id: int
    grade: str
    price_cny: Decimal
    effective_from: datetime
    rule: str
    reason: str


def remove_implausible_future_prices(
    conn: psycopg.Connection,
    *,
    zone: str,
    actor: str,
    rules: PlausibilityRules | None = None,
    now: datetime | None = None,
) -> list[RemovedPrice]:
    """Re-check the stored future prices (effective_from after `now`) against the ceilings of `zone` now
    stored (run after a new notice is loaded): each price outside the band of the ceiling in force at
    its effective_from is deleted, with an audit row (action delete; new_value: rule and reason), and
    its station gets a new version. Returns what was removed, oldest first."""
    rules = rules or default_rules()
    book = ceiling_book(conn, zone)
    keys = ("id", "station_id", "grade", "price_cny", "effective_from", "source")
    removed: list[RemovedPrice] = []
    audit: list[tuple[str, str, int | str, dict[str, Any] | None, dict[str, Any] | None]] = []
    with conn.transaction():
        rows = conn.execute(
            "SELECT id, station_id, grade, price_cny, effective_from, source FROM prices"
            " WHERE effective_from > %s ORDER BY effective_from, station_id, grade FOR UPDATE",
            (now or datetime.now(UTC),),
        ).fetchall()
        for r in map(lambda row: _as_dict(row, keys), rows):
            ceiling = book.at(reference_grade(r["grade"]), r["effective_from"])
            if ceiling is None:
                continue
            problem = band_problem(
                r["grade"], Decimal(r["price_cny"]), r["effective_from"], ceiling=ceiling, rules=rules
            )
            if problem is None:
                continue
            removed.append(
                RemovedPrice(
                    int(r["id"]),
                    int(r["station_id"]),
                    r["grade"],
                    Decimal(r["price_cny"]),
                    r["effective_from"],
                    problem.rule,
                    problem.reason,
                )
            )
            old = price_audit(r["station_id"], r["grade"], r["effective_from"], r["price_cny"], r["source"])
            audit.append(("delete", "price", r["id"], old, {"rule": problem.rule, "reason": problem.message}))
        if removed:
            ids = [p.id for p in removed]
            conn.execute("DELETE FROM prices WHERE id = ANY(%s)", (ids,))
            conn.execute(
                "UPDATE stations SET version = version + 1 WHERE id = ANY(%s)",
                (sorted({p.station_id for p in removed}),),
            )
            record_many(conn, actor=actor, entries=audit)
    return removed


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


# A column of a station query (station alias `s`): the prices in force at %(price_at)s of the
# %(price_grades)s grades, a jsonb array (prices as text: exact decimals). Read with prices_from_json.
IN_FORCE_COLUMN = sql.SQL(
    "(SELECT coalesce(jsonb_agg(jsonb_build_object('grade', g.grade, 'price_cny', p.price_cny::text,"
    " 'effective_from', p.effective_from, 'observed_at', p.observed_at, 'source', p.source)), '[]')"
    " FROM unnest(%(price_grades)s::text[]) AS g(grade)"
    " CROSS JOIN LATERAL (SELECT price_cny, effective_from, observed_at, source FROM prices"
    "   WHERE prices.station_id = s.id AND prices.grade = g.grade AND prices.effective_from <= %(price_at)s"
    "   ORDER BY prices.effective_from DESC LIMIT 1) p) AS prices_in_force"
)


def in_force_params(at: datetime, grades: Sequence[str] = KNOWN_GRADES) -> dict[str, Any]:
    """The values IN_FORCE_COLUMN binds."""
    return {"price_at": at, "price_grades": list(grades)}


def prices_from_json(station_id: int, items: Sequence[dict[str, Any]]) -> dict[str, CurrentPrice]:
    """{grade: price in force} of one station from its IN_FORCE_COLUMN value."""
    return {
        d["grade"]: CurrentPrice(
            station_id=station_id,
            grade=d["grade"],
            price_cny=Decimal(d["price_cny"]),
            effective_from=datetime.fromisoformat(d["effective_from"]),
            observed_at=datetime.fromisoformat(d["observed_at"]),
            source=d["source"],
        )
        for d in items
    }


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
