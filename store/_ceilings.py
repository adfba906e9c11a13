"""Official price ceilings (最高零售价): load the guidance notices, look up the ceiling in force."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from geo._adjustments import CeilingStaleness, WorkCalendar, ceiling_staleness
from geo._plausible import CeilingBook, PlausibilityRules
from store._audit import record


@dataclass(frozen=True)
class Ceiling:
    zone: str
    grade: str
    max_price_cny: Decimal
    effective_from: datetime  # 24:00 Asia/Shanghai of the adjustment (notice) date
    adjustment_date: date | None = None
    source_url: str | None = None


def ceiling_key(c: Ceiling) -> str:
    """The audit entity id of a ceiling: zone/grade/effective_from."""
    return f"{c.zone}/{c.grade}/{c.effective_from.isoformat()}"


def _audit_form(c: Ceiling) -> dict[str, Any]:
    return {
        "zone": c.zone,
        "grade": c.grade,
        "max_price_cny": c.max_price_cny,
        "effective_from": c.effective_from,
        "adjustment_date": c.adjustment_date,
        "source_url": c.source_url,
    }


def upsert_ceilings(conn: psycopg.Connection, ceilings: Iterable[Ceiling], *, actor: str) -> list[Ceiling]:
    """Insert or correct ceilings keyed by (zone, grade, effective_from), each change with its audit row
    (entity `price_ceiling`, actor `actor`); return the ceilings written (new or changed).

    Idempotent: loading the same notices again changes nothing and returns [].
    """
    todo = list(ceilings)
    for c in todo:
        if c.max_price_cny <= 0:
            raise ValueError(f"ceiling {c.zone}/{c.grade} must be > 0, got {c.max_price_cny}")
        if c.effective_from.tzinfo is None:
            raise ValueError(f"ceiling {c.zone}/{c.grade}: effective_from needs a time zone")
    written: list[Ceiling] = []
    with conn.transaction():
        for c in todo:
            row = conn.execute(
                "SELECT zone, grade, max_price_cny, effective_from, adjustment_date, source_url"
                " FROM price_ceilings WHERE zone = %s AND grade = %s AND effective_from = %s FOR UPDATE",
                (c.zone, c.grade, c.effective_from),
            ).fetchone()
            old = _ceiling(row) if row is not None else None
            if old is not None and (old.max_price_cny, old.adjustment_date, old.source_url) == (
                c.max_price_cny,
                c.adjustment_date,
                c.source_url,
            ):
                continue
            conn.execute(
                "INSERT INTO price_ceilings (zone, grade, max_price_cny, effective_from, adjustment_date,"
                " source_url) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (zone, grade, effective_from) DO UPDATE SET"
                " max_price_cny = EXCLUDED.max_price_cny, adjustment_date = EXCLUDED.adjustment_date,"
                " source_url = EXCLUDED.source_url",
                (c.zone, c.grade, c.max_price_cny, c.effective_from, c.adjustment_date, c.source_url),
            )
            record(
                conn,
                actor=actor,
                action="create" if old is None else "update",
                entity="price_ceiling",
                entity_id=ceiling_key(c),
                old=None if old is None else _audit_form(old),
                new=_audit_form(c),
            )
            written.append(c)
    return written


def _ceiling(row: Any) -> Ceiling:
    if not isinstance(row, dict):
        keys = ("zone", "grade", "max_price_cny", "effective_from", "adjustment_date", "source_url")
        row = dict(zip(keys, row, strict=True))
    return Ceiling(
        zone=row["zone"],
        grade=row["grade"],
        max_price_cny=Decimal(row["max_price_cny"]),
        effective_from=row["effective_from"],
        adjustment_date=row["adjustment_date"],
        source_url=row["source_url"],
    )


def ceiling_at(conn: psycopg.Connection, zone: str, grade: str, at: datetime) -> Ceiling | None:
    """The ceiling in force for (zone, grade) at `at`: the newest with effective_from <= at; None if none."""
    row = conn.execute(
        "SELECT zone, grade, max_price_cny, effective_from, adjustment_date, source_url FROM price_ceilings"
        " WHERE zone = %s AND grade = %s AND effective_from <= %s ORDER BY effective_from DESC LIMIT 1",
        (zone, grade, at),
    ).fetchone()
    return _ceiling(row) if row is not None else None


def ceilings_for_zone(conn: psycopg.Connection, zone: str) -> list[Ceiling]:
    """Every ceiling of a zone, oldest first (for checking many prices in Python)."""
    rows = conn.execute(
        "SELECT zone, grade, max_price_cny, effective_from, adjustment_date, source_url FROM price_ceilings"
        " WHERE zone = %s ORDER BY grade, effective_from",
        (zone,),
    ).fetchall()
    return [_ceiling(r) for r in rows]


def ceiling_in(ceilings: Iterable[Ceiling], grade: str, at: datetime) -> Ceiling | None:
    """Pure version of `ceiling_at` over a preloaded list."""
    best: Ceiling | None = None
    for c in ceilings:
        if (
            c.grade == grade
            and c.effective_from <= at
            and (best is None or c.effective_from > best.effective_from)
        ):
            best = c
    return best


def newest_notice_date(conn: psycopg.Connection, zone: str) -> date | None:
    """The adjustment (notice) date of the newest ceiling of `zone`; None when none is loaded."""
    row = conn.execute(
        "SELECT max(coalesce(adjustment_date, (effective_from AT TIME ZONE 'Asia/Shanghai')::date - 1))"
        " FROM price_ceilings WHERE zone = %s",
        (zone,),
    ).fetchone()
    if row is None:
        return None
    value = row["max"] if isinstance(row, dict) else row[0]
    return value if isinstance(value, date) else None


def staleness(conn: psycopg.Connection, zone: str, today: date, calendar: WorkCalendar) -> CeilingStaleness:
    """Whether adjustment windows have passed since the newest notice of `zone` (geo/_adjustments.py)."""
    return ceiling_staleness(newest_notice_date(conn, zone), today, calendar)


def ceiling_book(conn: psycopg.Connection, zone: str) -> CeilingBook:
    """The official ceilings of `zone`, indexed for the plausibility rules (geo/_plausible.py)."""
    return CeilingBook(ceilings_for_zone(conn, zone), zone=zone)


def default_rules() -> PlausibilityRules:
    """The plausibility thresholds of the settings (FUEL_PLAUSIBLE_*), for writers not handed any."""
    from config import get_settings

    return PlausibilityRules.from_settings(get_settings())
