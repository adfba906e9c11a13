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
from risk import Decision, RiskDenied
from store._audit import record
from store._ceilings import ceiling_book
from store._price_review import price_decision
from store._prices import PriceIn, price_audit
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
    action: str  # new | updated | unchanged | held (for an operator's review: decision_id)
    old_price_cny: Decimal | None = None
    decision_id: int | None = None


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

    Then each change is screened by risk control (the `price` rules, store._price_review): an allowed
    change is written; one held for review is not (action "held" with its decision_id; an operator's
    approval publishes it); the others of the same request are written. A denied change refuses the whole
    request (RiskDenied, raised after the decisions are committed): nothing is written.
    """
    denied: list[Decision] = []
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
        planned = [_plan_price(conn, station_id, g, Decimal(p), ef, now, source) for g, p, ef in prices]
        out: list[PriceChange] = []
        for change, _ in planned:
            if change.action == "unchanged":
                out.append(change)
                continue
            price_in = PriceIn(station_id, change.grade, change.price_cny, change.effective_from, source)
            d = price_decision(conn, price_in, zone=zone, actor=actor)
            if d.outcome == "deny":
                denied.append(d)
            held = dataclasses.replace(change, action="held", decision_id=d.id)
            out.append(change if d.outcome == "allow" else held)
        version = int(row["version"])
        if not denied and any(c.action in ("new", "updated") for c in out):
            for change, (_, same) in zip(out, planned, strict=True):
                if change.action in ("new", "updated"):
                    _write_price(conn, station_id, change, same, source=source, actor=actor)
            bumped = _one(
                conn,
                "UPDATE stations SET version = version + 1 WHERE id = %s AND version = %s RETURNING version",
                (station_id, expected_version),
            )
            if bumped is None:
                raise VersionConflict("station", station_id, version, expected_version)
            version = int(bumped["version"])
    if denied:  # the decisions are on record; nothing else was written
        d = denied[0]
        raise RiskDenied(
            f"price change refused by risk control (decision {d.id}): {'; '.join(d.reasons)}", d.id
        )
    return version, out


def _plan_price(
    conn: psycopg.Connection,
    station_id: int,
    grade: str,
    price: Decimal,
    ef: datetime | None,
    now: datetime,
    source: str,
) -> tuple[PriceChange, tuple[int, str] | None]:
    """What setting this price would do (new, updated or unchanged), and (id, source) of the row it
    corrects."""
    at = ef or now
    same = _one(
        conn,
        "SELECT id, price_cny, source FROM prices WHERE station_id = %s AND grade = %s AND effective_from = %s",
        (station_id, grade, at),
    )
    if same is not None:
        old = Decimal(same["price_cny"])
        action = "unchanged" if old == price and same["source"] == source else "updated"
        return PriceChange(grade, price, at, action, old), (int(same["id"]), str(same["source"]))
    if ef is None:
        cur = _one(
            conn,
            "SELECT price_cny FROM prices WHERE station_id = %s AND grade = %s AND effective_from <= %s"
            " ORDER BY effective_from DESC LIMIT 1",
            (station_id, grade, at),
        )
        if cur is not None and Decimal(cur["price_cny"]) == price:
            return PriceChange(grade, price, at, "unchanged", Decimal(cur["price_cny"])), None
    return PriceChange(grade, price, at, "new"), None


def _write_price(
    conn: psycopg.Connection,
    station_id: int,
    c: PriceChange,
    same: tuple[int, str] | None,
    *,
    source: str,
    actor: str,
) -> None:
    """Write a planned new or corrected price with its audit row."""
    if same is not None:
        same_id, old_source = same
        conn.execute(
            "UPDATE prices SET price_cny = %s, source = %s, observed_at = now() WHERE id = %s",
            (c.price_cny, source, same_id),
        )
        old = price_audit(station_id, c.grade, c.effective_from, c.old_price_cny or Decimal(0), old_source)
        record(
            conn,
            actor=actor,
            action="update",
            entity="price",
            entity_id=same_id,
            old=old,
            new=price_audit(station_id, c.grade, c.effective_from, c.price_cny, source),
        )
        return
    new = _one(
        conn,
        "INSERT INTO prices (station_id, grade, price_cny, effective_from, observed_at, source)"
        " VALUES (%s, %s, %s, %s, now(), %s) RETURNING id",
        (station_id, c.grade, c.price_cny, c.effective_from, source),
    )
    assert new is not None
    record(
        conn,
        actor=actor,
        action="create",
        entity="price",
        entity_id=int(new["id"]),
        old=None,
        new=price_audit(station_id, c.grade, c.effective_from, c.price_cny, source),
    )


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
