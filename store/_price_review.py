"""Price anomalies: a price change far outside the station's own steps or its neighbours' prices is held
for an operator's review (a `price` risk decision carrying the price) instead of being published; approving
the decision publishes it through the one price write path (store._prices.insert_price, audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from risk import Decision, evaluate, price_change_facts
from store._ceilings import default_rules
from store._prices import PriceIn, check_prices, insert_price, price_history
from store._risk import tuple_cursor

NEIGHBOUR_RADIUS_M = 5_000.0
HISTORY = 20


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
    carries the price, so approving a held one publishes it (publish_held). Plausibility is the caller's
    check, made before."""
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
            "price_cny": str(price.price_cny),
            "effective_from": price.effective_from.isoformat(),
            "source": price.source,
            "zone": zone,
        }
    }
    subject = {
        "station_id": price.station_id,
        "grade": price.grade,
        "price_cny": str(price.price_cny),
        "actor": actor,
    }
    return evaluate(conn, "price", facts, subject=subject, action=action)


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


def publish_held(conn: psycopg.Connection, action: dict[str, Any], *, actor: str) -> int:
    """Publish a held price (an approved decision's action) through the audited price write path."""
    p = action["publish_price"]
    price = PriceIn(
        station_id=int(p["station_id"]),
        grade=str(p["grade"]),
        price_cny=Decimal(p["price_cny"]),
        effective_from=datetime.fromisoformat(p["effective_from"]),
        source=str(p["source"]),
    )
    return insert_price(conn, price, zone=str(p["zone"]), actor=actor)
