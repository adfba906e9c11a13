"""Seed data of the nearby tests: 600 stations around Lijiang, a price history, station and brand
promotions (tests/test_nearby_one_trip.py, tests/test_station_cache.py)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
from hypothesis import strategies as st

from geo._pricing import Promotion
from ingest._guidance import load_guidance_file
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._stations import StationIn, upsert_stations

SH = ZoneInfo("Asia/Shanghai")
CENTRE = (26.87, 100.23)  # Lijiang old town
SINCE = datetime(2026, 11, 1, tzinfo=SH)
BRANDS = ("sinopec", "petrochina", "shell", "other")

# A nearby question around CENTRE over the seeded data: `@given(**QUERIES)`.
QUERIES = {
    "dlat": st.floats(-0.15, 0.15),
    "dlon": st.floats(-0.15, 0.15),
    "radius": st.sampled_from([300.0, 2_000.0, 8_000.0, 30_000.0]),
    "limit": st.integers(1, 250),
    "grade": st.sampled_from([None, "92", "95", "0"]),
    "day": st.floats(-2.0, 25.0),
}


def seed_nearby(c: psycopg.Connection, shared_data: Path) -> None:
    """The stations, prices (some stations none) and promotions, on an autocommit connection."""
    rng = random.Random(11)
    stations = []
    for i in range(600):
        spread = 0.01 if i < 300 else 0.12
        stations.append(
            StationIn(
                source="demo",
                source_ref=f"trip{i}",
                lat=CENTRE[0] + rng.uniform(-spread, spread),
                lon=CENTRE[1] + rng.uniform(-spread, spread),
                brand=BRANDS[i % len(BRANDS)],
                grades=("92", "95") if i % 3 else ("92", "0"),
            )
        )
    load_guidance_file(c, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
    upsert_stations(c, stations, actor="test-setup")
    ids = [int(r["id"]) for r in c.execute("SELECT id FROM stations ORDER BY id").fetchall()]
    prices = []
    for k, sid in enumerate(ids):
        if k % 5 == 0:
            continue  # some stations have no price at all
        for day in range(0, 20, 3 + k % 4):  # a history: which row is in force depends on `at`
            price = Decimal("8.20") + Decimal(rng.randrange(0, 60)) / 100
            prices.append(PriceIn(sid, "92", price, SINCE + timedelta(days=day), source="feed"))
    insert_prices(c, prices, zone="yunnan-4", actor="test-setup", now=SINCE + timedelta(days=30))
    for j, sid in enumerate(ids[::40]):
        upsert_promotion(
            c,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.25"),
                scope="station",
                station_id=sid,
                grades=("92",),
                title=f"站{j}",
                valid_from=SINCE + timedelta(days=j % 7),
                valid_to=SINCE + timedelta(days=10 + j % 5),
                time_from=None if j % 2 else datetime(2026, 1, 1, 7, 30).time(),
                time_to=None if j % 2 else datetime(2026, 1, 1, 9, 0).time(),
                source="feed",
                source_ref=f"trip:{j}",
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
    for j, brand in enumerate(BRANDS[:3]):
        upsert_promotion(
            c,
            Promotion(
                kind="cny_off_per_litre",
                value=Decimal("0.10") * (j + 1),
                scope="brand",
                brand=brand,
                valid_from=SINCE + timedelta(days=2 * j),
                source="feed",
                source_ref=f"trip:brand:{j}",
            ),
            actor="test-setup",
            zone="yunnan-4",
        )
