"""Seeded demo prices and promotions for the stations of a region (source osm/demo). Idempotent.

Everything is written through the one audited, plausibility-checked path (store._prices.insert_prices,
store._promotions.upsert_promotion) as `actor` (load-region: `load-region:<region>`).

Prices: for each station and grade it sells (a station listing no grades gets none), a list price a little (0.05-0.45 CNY) below the
ceiling of the region's price zone in force at the price's effective_from; 98# (no ceiling) is about
ceiling(95#) + 0.70. effective_from is local midnight three days before `now`. A (station, grade)
whose demo price already dates from the current ceiling notice, or that has any non-demo price in
force, is left alone: re-running changes nothing (and a new ceiling notice yields new demo prices).

Promotions (source 'demo', fixed source_ref, inserted once, never overwritten):
- demo:saturday-92: Saturdays, 92#, 0.30 CNY/L off, for the most common real brand of the region
  (brand scope), else one seeded station;
- demo:evening: 18:00-23:00 every day, 0.20 CNY/L off, one seeded station;
- demo:holiday: public holidays only, 3 % off, one seeded station;
- demo:members: members only, 0.35 CNY/L off 95#, one seeded station;
- demo:order-200: 10 CNY off an order of 200 CNY or more, one seeded station.

Pumps (so the fill-up can be tried): each station without pumps gets 2-4 pumps (labels "1号枪"...),
each with one nozzle per grade the station sells (at most four; 92# and 95# when it lists none), through
the forecourt's one audited write path (store._pumps.upsert_forecourt). A station with pumps is left
alone: re-running adds nothing, and pumps loaded with `ingest pumps` are never replaced.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from config import Region
from geo._plausible import PlausibilityRules
from geo._pricing import KNOWN_GRADES, Promotion
from store._ceilings import Ceiling, ceiling_in, ceilings_for_zone
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._pumps import NozzleIn, forecourt_of, upsert_forecourt
from store._stations import station_ids_in_region

# Used only when the zone has no ceiling for a grade at that time.
FALLBACK_PRICES = {"89": Decimal("8.10"), "92": Decimal("8.80"), "95": Decimal("9.40"), "0": Decimal("8.45")}
PRICE_AGE = timedelta(days=3)


@dataclass(frozen=True)
class DemoSummary:
    stations: int
    prices_written: int
    promotions_written: int
    pumps_written: int = 0


def _base_price(grade: str, at: datetime, ceilings: list[Ceiling]) -> tuple[Decimal, Ceiling | None]:
    if grade == "98":
        c95 = ceiling_in(ceilings, "95", at)
        base = c95.max_price_cny if c95 is not None else FALLBACK_PRICES["95"]
        return base + Decimal("0.70"), c95
    c = ceiling_in(ceilings, grade, at)
    return (c.max_price_cny if c is not None else FALLBACK_PRICES.get(grade, Decimal("8.80"))), c


def _skip_existing(
    conn: psycopg.Connection, station_id: int, grade: str, now: datetime, since: datetime | None
) -> bool:
    row = conn.execute(
        "SELECT source, effective_from FROM prices WHERE station_id = %s AND grade = %s AND effective_from <= %s"
        " ORDER BY effective_from DESC LIMIT 1",
        (station_id, grade, now),
    ).fetchone()
    if row is None:
        return False
    source, effective_from = (row["source"], row["effective_from"]) if isinstance(row, dict) else row
    if source != "demo":
        return True
    return since is None or effective_from >= since


def seed_demo(
    conn: psycopg.Connection,
    region: Region,
    *,
    seed: int = 0,
    now: datetime,
    actor: str,
    rules: PlausibilityRules | None = None,
) -> DemoSummary:
    """Seed demo prices and promotions for the region's osm/demo stations (see the module docstring)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tz = region.tz
    local_now = now.astimezone(tz)
    effective_from = datetime.combine(local_now.date() - PRICE_AGE, time(0), tz)
    ceilings = ceilings_for_zone(conn, region.price_zone)
    stations = [
        s
        for s in station_ids_in_region(conn, region.bbox, sources=("osm", "demo"))
        if region.contains(float(s["lat"]), float(s["lon"]))
    ]
    prices: list[PriceIn] = []
    for s in stations:
        rng = random.Random(f"{seed}:{s['source']}:{s['source_ref']}")
        for grade in s["grades"] or ():
            base, ceiling = _base_price(grade, effective_from, ceilings)
            since = ceiling.effective_from if ceiling is not None else None
            if _skip_existing(conn, int(s["id"]), grade, now, since):
                continue
            below = Decimal(rng.randrange(5, 46)) / 100
            prices.append(PriceIn(int(s["id"]), grade, base - below, effective_from, source="demo"))
    with conn.transaction():
        written = insert_prices(conn, prices, zone=region.price_zone, actor=actor, rules=rules, now=now)
        promos = _demo_promotions(stations, seed=seed, tz_now=local_now)
        promo_written = sum(
            1
            for p in promos
            if upsert_promotion(conn, p, actor=actor, zone=region.price_zone, rules=rules, replace=False)[1]
        )
        pumps = seed_demo_pumps(conn, stations, seed=seed, actor=actor)
    return DemoSummary(
        stations=len(stations), prices_written=written, promotions_written=promo_written, pumps_written=pumps
    )


DEMO_GRADES = ("92", "95")
MAX_DEMO_NOZZLES = 4


def seed_demo_pumps(
    conn: psycopg.Connection, stations: list[dict[str, Any]], *, seed: int, actor: str
) -> int:
    """2-4 pumps with nozzles for each station that has none (see the module docstring); the pumps written."""
    have = forecourt_of(conn, [int(s["id"]) for s in stations])
    rows: list[NozzleIn] = []
    for s in stations:
        sid = int(s["id"])
        if sid in have:
            continue
        rng = random.Random(f"{seed}:pumps:{s['source']}:{s['source_ref']}")
        grades = [g for g in KNOWN_GRADES if g in (s["grades"] or ())] or list(DEMO_GRADES)
        for pump_no in range(1, rng.randint(2, 4) + 1):
            rows.extend(
                NozzleIn(sid, pump_no, nozzle_no, grade, pump_label=f"{pump_no}号枪")
                for nozzle_no, grade in enumerate(grades[:MAX_DEMO_NOZZLES], start=1)
            )
    counts, _ = upsert_forecourt(conn, rows, actor=actor)
    return counts.pumps_new


def _demo_promotions(stations: list[dict[str, Any]], *, seed: int, tz_now: datetime) -> list[Promotion]:
    if not stations:
        return []
    rng = random.Random(f"demo-promotions:{seed}")
    picks = rng.sample(stations, k=min(len(stations), 4))
    while len(picks) < 4:
        picks.append(picks[-1])
    valid_from = datetime(tz_now.year, 1, 1, tzinfo=tz_now.tzinfo)
    brands = Counter(s["brand"] for s in stations if s["brand"] != "other")
    brand = sorted(brands.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] if brands else None
    return [
        Promotion(
            kind="cny_off_per_litre",
            value=Decimal("0.30"),
            title="周六92#每升优惠0.30元",
            title_en="Saturdays: 0.30 CNY/L off 92#",
            grades=("92",),
            days_of_week=(6,),
            source_ref="demo:saturday-92",
            scope="brand" if brand else "station",
            brand=brand,
            station_id=None if brand else int(picks[0]["id"]),
            source="demo",
            valid_from=valid_from,
        ),
        Promotion(
            kind="cny_off_per_litre",
            value=Decimal("0.20"),
            scope="station",
            station_id=int(picks[1]["id"]),
            title="晚间18:00-23:00每升优惠0.20元",
            title_en="Evenings 18:00-23:00: 0.20 CNY/L off",
            time_from=time(18, 0),
            time_to=time(23, 0),
            source_ref="demo:evening",
            source="demo",
            valid_from=valid_from,
        ),
        Promotion(
            kind="percent_off",
            value=Decimal("3"),
            scope="station",
            station_id=int(picks[2]["id"]),
            title="法定节假日97折",
            title_en="Public holidays: 3% off",
            public_holidays_only=True,
            source_ref="demo:holiday",
            source="demo",
            valid_from=valid_from,
        ),
        Promotion(
            kind="cny_off_per_litre",
            value=Decimal("0.35"),
            scope="station",
            station_id=int(picks[3]["id"]),
            title="会员95#每升优惠0.35元",
            title_en="Members: 0.35 CNY/L off 95#",
            grades=("95",),
            members_only=True,
            source_ref="demo:members",
            source="demo",
            valid_from=valid_from,
        ),
        Promotion(
            kind="cny_off_per_order",
            value=Decimal("10"),
            scope="station",
            station_id=int(picks[0]["id"]),
            title="单笔满200元立减10元",
            title_en="10 CNY off orders of 200 CNY or more",
            min_amount_cny=Decimal("200"),
            source_ref="demo:order-200",
            source="demo",
            valid_from=valid_from,
        ),
    ]
