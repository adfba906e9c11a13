"""Official price ceilings (最高零售价): load the guidance notices, look up the ceiling in force."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg


@dataclass(frozen=True)
class Ceiling:
    zone: str
    grade: str
    max_price_cny: Decimal
    effective_from: datetime  # 24:00 Asia/Shanghai of the adjustment (notice) date
    adjustment_date: date | None = None
    source_url: str | None = None


def upsert_ceilings(conn: psycopg.Connection, ceilings: Iterable[Ceiling]) -> int:
    """Insert or correct ceilings keyed by (zone, grade, effective_from); return rows changed.

    Idempotent: loading the same notices again changes nothing and returns 0.
    """
    changed = 0
    with conn.transaction():
        for c in ceilings:
            if c.max_price_cny <= 0:
                raise ValueError(f"ceiling {c.zone}/{c.grade} must be > 0, got {c.max_price_cny}")
            if c.effective_from.tzinfo is None:
                raise ValueError(f"ceiling {c.zone}/{c.grade}: effective_from needs a time zone")
            cur = conn.execute(
                "INSERT INTO price_ceilings (zone, grade, max_price_cny, effective_from, adjustment_date,"
                " source_url) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (zone, grade, effective_from) DO UPDATE SET"
                " max_price_cny = EXCLUDED.max_price_cny, adjustment_date = EXCLUDED.adjustment_date,"
                " source_url = EXCLUDED.source_url"
                " WHERE (price_ceilings.max_price_cny, price_ceilings.adjustment_date, price_ceilings.source_url)"
                " IS DISTINCT FROM (EXCLUDED.max_price_cny, EXCLUDED.adjustment_date, EXCLUDED.source_url)",
                (c.zone, c.grade, c.max_price_cny, c.effective_from, c.adjustment_date, c.source_url),
            )
            changed += cur.rowcount
    return changed


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
