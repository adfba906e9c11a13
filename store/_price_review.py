"""Price anomalies: a price change far outside the station's own steps or its neighbours' prices is held
for an operator's review (a `price` risk decision carrying the price) instead of being published; approving
the decision publishes it through the one price write path (store._prices.insert_price, audited).

A held change is held once: the same station, grade and price again, while its decision awaits review, is
that decision (a retrying client, a feed run again). Approving never rewrites the past: the price takes
effect at the later of the time asked and the approval, and never over a newer price (NewerPriceExists)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg

from geo import Conflict
from risk import Decision, evaluate, price_change_facts
from store._ceilings import default_rules
from store._prices import PriceIn, check_prices, insert_price, price_history
from store._risk import tuple_cursor

NEIGHBOUR_RADIUS_M = 5_000.0
HISTORY = 20
SAME_CHANGE = ("station_id", "grade", "price_cny")  # a held change's subject keys: one pending decision


class NewerPriceExists(Conflict):
    """Approving a held price would override a price published after it was asked (409): reject it."""


def _fen(cny: Any) -> int:
    return int((Decimal(str(cny)) * 100).to_integral_value())


def neighbour_prices_fen(
    conn: psycopg.Connection, station_id: int, grade: str, *, radius_m: float
) -> list[int]:
    """The latest price of `grade` at every other station within `radius_m` (fen)."""
    rows = (
        tuple_cursor(conn)
        .execute(
            "SELECT DISTINCT ON (p.station_id) p.price_cny FROM stations me"
            " JOIN stations s ON s.id <> me.id AND ST_DWithin(s.geom::geography, me.geom::geography, %s)"
            " JOIN prices p ON p.station_id = s.id AND p.grade = %s"
            " WHERE me.id = %s ORDER BY p.station_id, p.effective_from DESC",
            (radius_m, grade, station_id),
        )
        .fetchall()
    )
    return [_fen(r[0]) for r in rows]


def price_decision(
    conn: psycopg.Connection,
    price: PriceIn,
    *,
    zone: str,
    actor: str,
    radius_m: float = NEIGHBOUR_RADIUS_M,
) -> Decision:
    """Evaluate and log the `price` rules for this change against the station's stored history and its
    neighbours (nothing is written but the decision, in the caller's transaction). The decision's `action`
    carries the price, so approving a held one publishes it (publish_held). While a decision holding the
    same station, grade and price awaits review, a change held again is that decision (nothing new is
    logged). Plausibility is the caller's check, made before."""
    cny = str(Decimal(price.price_cny).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))  # as stored
    history = [
        _fen(r["price_cny"])
        for r in reversed(price_history(conn, price.station_id, grade=price.grade, limit=HISTORY))
    ]
    facts = price_change_facts(
        _fen(price.price_cny),
        history,
        neighbour_prices_fen(conn, price.station_id, price.grade, radius_m=radius_m),
    )
    action = {
        "publish_price": {
            "station_id": price.station_id,
            "grade": price.grade,
            "price_cny": cny,
            "effective_from": price.effective_from.isoformat(),
            "source": price.source,
            "zone": zone,
        }
    }
    subject = {
        "station_id": price.station_id,
        "grade": price.grade,
        "price_cny": cny,
        "actor": actor,
    }
    return evaluate(conn, "price", facts, subject=subject, action=action, pending_keys=SAME_CHANGE)


def screen_price(
    conn: psycopg.Connection,
    price: PriceIn,
    *,
    zone: str,
    actor: str,
    radius_m: float = NEIGHBOUR_RADIUS_M,
    now: datetime | None = None,
) -> Decision:
    """Evaluate the `price` rules for this change; publish it (insert_price) when allowed, hold it in the
    decision's `action` when reviewed or denied. In the caller's transaction. An implausible price
    (outside the official ceiling's band, a grade the station does not sell) is refused first
    (ImplausibleValue, 422), never held."""
    check_prices(conn, [price], zone=zone, rules=default_rules(), now=now or datetime.now(UTC))
    d = price_decision(conn, price, zone=zone, actor=actor, radius_m=radius_m)
    if d.outcome == "allow":
        insert_price(conn, price, zone=zone, actor=actor, now=now)
    return d


def publish_held(conn: psycopg.Connection, decision: Mapping[str, Any], *, actor: str) -> dict[str, Any]:
    """Publish a held price (an approved decision's action) through the audited price write path, from
    the later of the time asked and now (the approval): a change approved after its time does not
    rewrite what was in force before. The price's audit row names both times and the decision; returns
    {price_cny, effective_from, requested_effective_from}. In the caller's transaction, after locking the
    station (price writes wait). NewerPriceExists when a price of the station's grade effective after the
    time asked was published after it was asked, or would be overridden by publishing now."""
    p = decision["action"]["publish_price"]
    station_id, grade = int(p["station_id"]), str(p["grade"])
    asked = datetime.fromisoformat(p["effective_from"])
    cur = tuple_cursor(conn)
    cur.execute("SELECT id FROM stations WHERE id = %s FOR UPDATE", (station_id,))
    now_row = cur.execute("SELECT now()").fetchone()
    assert now_row is not None
    publish_at = max(asked, now_row[0])
    newer = cur.execute(
        "SELECT price_cny, effective_from FROM prices WHERE station_id = %(sid)s AND grade = %(grade)s"
        # a later start that would be overridden or was published after the hold, or a price published
        # after the hold for the very time asked (approving would replace it in place, or start on top of it)
        " AND ((effective_from > %(asked)s AND (effective_from <= %(at)s OR created_at > %(held)s))"
        "   OR (effective_from = %(asked)s AND created_at > %(held)s))"
        " ORDER BY effective_from DESC LIMIT 1",
        {"sid": station_id, "grade": grade, "asked": asked, "at": publish_at, "held": decision["created_at"]},
    ).fetchone()
    if newer is not None:
        raise NewerPriceExists(
            f"station {station_id} has a newer {grade}# price, {newer[0]} CNY/L from"
            f" {newer[1].isoformat()}, than the one risk decision {decision['id']} holds"
            f" ({p['price_cny']} CNY/L asked from {asked.isoformat()}): approving it would override the"
            " newer price; reject the decision instead"
        )
    price = PriceIn(station_id, grade, Decimal(p["price_cny"]), publish_at, str(p["source"]))
    note = {"decision_id": decision["id"], "requested_effective_from": asked}
    insert_price(conn, price, zone=str(p["zone"]), actor=actor, audit_note=note)
    return {"price_cny": price.price_cny, "effective_from": publish_at, "requested_effective_from": asked}
