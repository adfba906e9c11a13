"""Version-checked writes of the station manager API, each with its audit rows in the same transaction.

Optimistic concurrency: the caller sends the version it read. The row is locked (SELECT ... FOR
UPDATE), its version compared, and written with `UPDATE ... WHERE id = %s AND version = %s`, so two
writers holding the same version cannot both win: the second one waits for the lock, then sees the
new version and gets VersionConflict (HTTP 409 naming the current version).

A station's version covers its fields and its prices (a price change bumps it); a promotion has its
own version. A write that changes nothing bumps nothing and writes no audit row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from geo._errors import Conflict, NotFound
from geo._plausible import PlausibilityRules, price_problem
from geo._pricing import Promotion
from store._audit import record
from store._ceilings import ceiling_book
from store._prices import price_audit
from store._promotions import (
    check_promotion,
    find_promotion,
    promotion_audit,
    promotion_from_row,
    same_promotion,
    update_terms,
    upsert_promotion,
)
from store._stations import MANAGER_EDITABLE

STATION_EDITABLE = MANAGER_EDITABLE
_STATION_SELECT = (
    "SELECT id, source, source_ref, name, name_en, brand, brand_raw, address, ST_Y(geom) AS lat,"
    " ST_X(geom) AS lon, grades, opening_hours, amenities, status, manager_fields, version, created_at,"
    " updated_at FROM stations WHERE id = %s"
)
_PROMO_SELECT = (
    "SELECT id, scope, station_id, brand, title, title_en, grades, kind, value, min_amount_cny, min_litres,"
    " days_of_week, date_ranges, public_holidays_only, time_from, time_to, members_only, payment_methods,"
    " valid_from, valid_to, source, source_ref, min_tier, version FROM promotions WHERE id = %s"
)


class VersionConflict(Conflict):
    """The write was based on a stale version (409); `current_version` is the stored one."""

    def __init__(self, entity: str, entity_id: int, current_version: int, sent: int) -> None:
        super().__init__(
            f"{entity} {entity_id} is at version {current_version}, not {sent}: "
            'read it again and retry with If-Match: "' + str(current_version) + '"'
        )
        self.current_version = current_version


def _one(conn: psycopg.Connection, query: str, params: Sequence[Any]) -> dict[str, Any] | None:
    cur = conn.execute(query, params)
    row = cur.fetchone()
    if row is None:
        return None
    if isinstance(row, dict):
        return row
    return dict(zip([d.name for d in cur.description or ()], row, strict=True))


def get_station_row(conn: psycopg.Connection, station_id: int, *, lock: bool = False) -> dict[str, Any]:
    row = _one(conn, _STATION_SELECT + (" FOR UPDATE" if lock else ""), (station_id,))
    if row is None:
        raise NotFound(f"station {station_id} not found")
    return row


def brands_of(conn: psycopg.Connection, station_ids: Iterable[int]) -> set[str]:
    """The brands of the given stations."""
    ids = sorted({int(i) for i in station_ids})
    if not ids:
        return set()
    rows = conn.execute("SELECT DISTINCT brand FROM stations WHERE id = ANY(%s)", (ids,)).fetchall()
    return {str(r["brand"] if isinstance(r, dict) else r[0]) for r in rows}


def _check(entity: str, entity_id: int, current: int, expected: int) -> None:
    if int(current) != int(expected):
        raise VersionConflict(entity, entity_id, int(current), int(expected))


def _station_audit(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in ("name", "name_en", "address", "opening_hours", "status", "grades", "amenities", "version")
    }


def patch_station(
    conn: psycopg.Connection,
    station_id: int,
    expected_version: int,
    changes: Mapping[str, Any],
    *,
    actor: str,
) -> tuple[dict[str, Any], bool]:
    """Apply `changes` (keys from STATION_EDITABLE). Returns (row after, changed).

    The changed fields join the station's `manager_fields`: later bulk loads (load-region, OSM and
    onboarding files) keep the manager's values of those fields."""
    with conn.transaction():
        row = get_station_row(conn, station_id, lock=True)
        _check("station", station_id, row["version"], expected_version)
        diff = {k: v for k, v in changes.items() if k in STATION_EDITABLE and _differs(row[k], v)}
        if not diff:
            return row, False
        sets = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in diff
        )
        # the fields set here are the manager's from now on: bulk loads leave them alone
        query = sql.SQL(
            "UPDATE stations SET {sets}, manager_fields = ARRAY(SELECT DISTINCT f FROM"
            " unnest(manager_fields || %(owned)s::text[]) AS f ORDER BY f),"
            " version = version + 1, updated_at = now()"
            " WHERE id = %(id)s AND version = %(version)s RETURNING id"
        ).format(sets=sets)
        params = {**diff, "owned": sorted(diff), "id": station_id, "version": expected_version}
        done = conn.execute(query, params).fetchone()
        if done is None:  # cannot happen under the row lock; kept as the guard the contract names
            current = get_station_row(conn, station_id)
            raise VersionConflict("station", station_id, current["version"], expected_version)
        after = get_station_row(conn, station_id)
        record(
            conn,
            actor=actor,
            action="update",
            entity="station",
            entity_id=station_id,
            old=_station_audit(row),
            new=_station_audit(after),
        )
        return after, True


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, list | tuple) or isinstance(new, list | tuple):
        return list(old or []) != list(new or [])
    return bool(old != new)


@dataclass(frozen=True)
class PriceChange:
    grade: str
    price_cny: Decimal
    effective_from: datetime
    action: str  # new | updated | unchanged
    old_price_cny: Decimal | None = None


def set_prices(
    conn: psycopg.Connection,
    station_id: int,
    expected_version: int,
    prices: Sequence[tuple[str, Decimal, datetime | None]],
    *,
    zone: str,
    now: datetime,
    actor: str,
    rules: PlausibilityRules,
    source: str = "station",
) -> tuple[int, list[PriceChange]]:
    """Set list prices (grade, price, effective_from or None = now). Returns (station version, changes).

    Each price must be plausible (geo/_plausible.py): a grade the station sells, a plausible
    effective_from, within the band of the ceiling of `zone` in force then. The first one that is not
    raises ImplausibleValue (or PriceAboveCeiling) with param `prices.<i>.<field>`, before anything is
    written. A price without effective_from equal to the one in force now changes nothing.
    """
    with conn.transaction():
        row = get_station_row(conn, station_id, lock=True)
        _check("station", station_id, row["version"], expected_version)
        book = ceiling_book(conn, zone)
        sells = tuple(row["grades"] or ())
        for i, (grade, price, ef) in enumerate(prices):
            problem = price_problem(
                grade, Decimal(price), ef or now, book=book, rules=rules, now=now, sells=sells
            )
            if problem is not None:
                raise problem.error(f"prices[{i}].{problem.field}")
        out: list[PriceChange] = []
        for grade, price, ef in prices:
            at = ef or now
            same = _one(
                conn,
                "SELECT id, price_cny, source FROM prices WHERE station_id = %s AND grade = %s AND effective_from = %s",
                (station_id, grade, at),
            )
            if same is not None:
                if Decimal(same["price_cny"]) == Decimal(price) and same["source"] == source:
                    out.append(
                        PriceChange(grade, Decimal(price), at, "unchanged", Decimal(same["price_cny"]))
                    )
                    continue
                conn.execute(
                    "UPDATE prices SET price_cny = %s, source = %s, observed_at = now() WHERE id = %s",
                    (price, source, same["id"]),
                )
                record(
                    conn,
                    actor=actor,
                    action="update",
                    entity="price",
                    entity_id=int(same["id"]),
                    old=price_audit(station_id, grade, at, same["price_cny"], same["source"]),
                    new=price_audit(station_id, grade, at, Decimal(price), source),
                )
                out.append(PriceChange(grade, Decimal(price), at, "updated", Decimal(same["price_cny"])))
                continue
            if ef is None:
                cur = _one(
                    conn,
                    "SELECT price_cny FROM prices WHERE station_id = %s AND grade = %s AND effective_from <= %s"
                    " ORDER BY effective_from DESC LIMIT 1",
                    (station_id, grade, at),
                )
                if cur is not None and Decimal(cur["price_cny"]) == Decimal(price):
                    out.append(PriceChange(grade, Decimal(price), at, "unchanged", Decimal(cur["price_cny"])))
                    continue
            new = _one(
                conn,
                "INSERT INTO prices (station_id, grade, price_cny, effective_from, observed_at, source)"
                " VALUES (%s, %s, %s, %s, now(), %s) RETURNING id",
                (station_id, grade, price, at, source),
            )
            assert new is not None
            record(
                conn,
                actor=actor,
                action="create",
                entity="price",
                entity_id=int(new["id"]),
                old=None,
                new=price_audit(station_id, grade, at, Decimal(price), source),
            )
            out.append(PriceChange(grade, Decimal(price), at, "new"))
        version = int(row["version"])
        if any(c.action != "unchanged" for c in out):
            bumped = _one(
                conn,
                "UPDATE stations SET version = version + 1 WHERE id = %s AND version = %s RETURNING version",
                (station_id, expected_version),
            )
            if bumped is None:
                raise VersionConflict("station", station_id, version, expected_version)
            version = int(bumped["version"])
        return version, out


# ---- promotions -------------------------------------------------------------------------------------


def get_promotion_row(
    conn: psycopg.Connection, promotion_id: int, *, lock: bool = False
) -> tuple[Promotion, int]:
    row = _one(conn, _PROMO_SELECT + (" FOR UPDATE" if lock else ""), (promotion_id,))
    if row is None:
        raise NotFound(f"promotion {promotion_id} not found")
    version = int(row.pop("version"))
    return promotion_from_row(row), version


def create_promotion(
    conn: psycopg.Connection,
    promo: Promotion,
    *,
    actor: str,
    zone: str,
    rules: PlausibilityRules,
) -> tuple[Promotion, int, bool]:
    """Insert (checked and audited by store._promotions.upsert_promotion); returns (promotion, version,
    created). The same key (its station or brand, source, source_ref) again with the same content
    returns the stored one (created False: a retried POST is harmless); other content: Conflict."""
    check_promotion(conn, promo, zone=zone, rules=rules)
    with conn.transaction():
        found = find_promotion(conn, promo, lock=True)
        if found is not None:
            stored, version = found
            if same_promotion(stored, promo):
                return stored, version, False
            raise Conflict(
                f"source_ref {promo.source_ref!r} already names promotion {stored.id} with other content: "
                f"change it with PUT /v1/promotions/{stored.id}"
            )
        pid, _ = upsert_promotion(conn, promo, actor=actor, zone=zone, rules=rules, replace=False)
        stored, version = get_promotion_row(conn, pid)
        return stored, version, True


def update_promotion(
    conn: psycopg.Connection,
    promotion_id: int,
    expected_version: int,
    promo: Promotion,
    *,
    actor: str,
    zone: str,
    rules: PlausibilityRules,
) -> tuple[Promotion, int, bool]:
    """Replace the editable fields (scope, station, brand, source, source_ref stay), checked like a new
    promotion. Returns (promotion, version, changed)."""
    with conn.transaction():
        old, version = get_promotion_row(conn, promotion_id, lock=True)
        _check("promotion", promotion_id, version, expected_version)
        new = dataclasses.replace(
            promo,
            id=promotion_id,
            scope=old.scope,
            station_id=old.station_id,
            brand=old.brand,
            source=old.source,
            source_ref=old.source_ref,
        )
        if same_promotion(old, new):
            return old, version, False
        check_promotion(conn, new, zone=zone, rules=rules)
        if update_terms(conn, promotion_id, new, expected_version) is None:
            raise VersionConflict("promotion", promotion_id, version, expected_version)
        stored, version = get_promotion_row(conn, promotion_id)
        record(
            conn,
            actor=actor,
            action="update",
            entity="promotion",
            entity_id=promotion_id,
            old=promotion_audit(old),
            new=promotion_audit(stored),
        )
        return stored, version, True


def delete_promotion(
    conn: psycopg.Connection, promotion_id: int, expected_version: int, *, actor: str
) -> None:
    with conn.transaction():
        old, version = get_promotion_row(conn, promotion_id, lock=True)
        _check("promotion", promotion_id, version, expected_version)
        done = conn.execute(
            "DELETE FROM promotions WHERE id = %s AND version = %s", (promotion_id, expected_version)
        ).rowcount
        if done != 1:
            raise VersionConflict("promotion", promotion_id, version, expected_version)
        record(
            conn,
            actor=actor,
            action="delete",
            entity="promotion",
            entity_id=promotion_id,
            old=promotion_audit(old),
            new=None,
        )
