"""The worker's in-memory copy of the nearby data (store/_station_cache.py) answers exactly what the SQL
search answers, and its feed (store/_station_feed.py) makes every committed write visible to the next
read: prices, promotions (station and brand), station edits, moves, deletions and bulk changes. When its
connection dies it answers None (the API uses SQL) and comes back by itself."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings

from geo._pricing import Promotion
from store._prices import PriceIn, insert_prices
from store._promotions import upsert_promotion
from store._station_cache import StationCache
from store._station_feed import StationFeed
from store._stations import NearbyOffer, nearby_offers
from tests._nearby_data import BRANDS, CENTRE, QUERIES, SINCE


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@contextmanager
def _feed(loop: asyncio.AbstractEventLoop, url: str, **kw: Any) -> Iterator[StationFeed]:
    """A started feed, stopped on the way out."""
    kw.setdefault("max_stations", 50_000)
    kw.setdefault("history", timedelta(days=400))  # the seeded history starts 2026-11-01
    feed = StationFeed(url, **kw)
    loop.run_until_complete(feed.start())
    try:
        yield feed
    finally:
        loop.run_until_complete(feed.stop())


@pytest.fixture(scope="module")
def feed(
    loop: asyncio.AbstractEventLoop, module_db: str, nearby_conn: psycopg.Connection
) -> Iterator[StationFeed]:
    with _feed(loop, module_db, retry_s=0.2) as f:
        yield f


def _fresh(loop: asyncio.AbstractEventLoop, feed: StationFeed) -> StationCache | None:
    return loop.run_until_complete(feed.fresh())


def _fresh_cache(loop: asyncio.AbstractEventLoop, feed: StationFeed) -> StationCache:
    """fresh() until it answers a cache: None meanwhile is a full load being built (SQL answers then)."""
    deadline = time.monotonic() + 10
    while (cache := _fresh(loop, feed)) is None and time.monotonic() < deadline:
        loop.run_until_complete(asyncio.sleep(0.02))
    assert cache is not None
    return cache


def _same(got: list[NearbyOffer], want: list[NearbyOffer]) -> None:
    assert [int(f.row["id"]) for f in got] == [int(f.row["id"]) for f in want]
    for g, w in zip(got, want, strict=True):
        assert g.row["distance_m"] == pytest.approx(w.row["distance_m"], abs=1e-6)
        assert {k: v for k, v in g.row.items() if k != "distance_m"} == {
            k: v for k, v in w.row.items() if k != "distance_m"
        }
        assert g.prices == w.prices
        assert g.promotions == w.promotions


@settings(max_examples=60, deadline=None, derandomize=True)
@given(**QUERIES)
def test_memory_answers_what_sql_answers(
    nearby_conn: psycopg.Connection,
    loop: asyncio.AbstractEventLoop,
    feed: StationFeed,
    dlat: float,
    dlon: float,
    radius: float,
    limit: int,
    grade: str | None,
    day: float,
) -> None:
    cache = _fresh_cache(loop, feed)
    assert len(cache) == 600
    lat, lon = CENTRE[0] + dlat, CENTRE[1] + dlon
    at = SINCE + timedelta(days=day)
    assert cache.covers(at)
    want = nearby_offers(nearby_conn, lat, lon, radius, limit=limit, grade=grade, at=at)
    _same(cache.nearby_offers(lat, lon, radius, limit=limit, grade=grade, at=at), want)


def _write(c: psycopg.Connection, rng: random.Random, k: int) -> tuple[float, float]:
    """One committed write of kind k % 7; the point near which it shows."""
    ids = [int(r["id"]) for r in c.execute("SELECT id FROM stations ORDER BY id").fetchall()]
    sid = rng.choice(ids)
    row = c.execute("SELECT ST_Y(geom) AS lat, ST_X(geom) AS lon, brand FROM stations WHERE id = %s", (sid,))
    here = row.fetchone()
    assert here is not None
    point = (float(here["lat"]), float(here["lon"]))
    now = datetime.now(UTC)
    kind = k % 7
    if kind == 0:  # a new price in force now
        price = Decimal("7.50") + Decimal(rng.randrange(0, 150)) / 100
        insert_prices(c, [PriceIn(sid, "92", price, now - timedelta(seconds=1), source="feed")],
                      zone="yunnan-4", actor="test", now=now)  # fmt: skip
    elif kind == 1:  # a station promotion valid now
        upsert_promotion(
            c,
            Promotion(kind="cny_off_per_litre", value=Decimal("0.30"), scope="station", station_id=sid,
                      valid_from=now - timedelta(hours=1), source="feed", source_ref=f"w{k}"),
            actor="test", zone="yunnan-4",
        )  # fmt: skip
    elif kind == 2:  # a brand promotion valid now
        upsert_promotion(
            c,
            Promotion(kind="percent_off", value=Decimal("3"), scope="brand", brand=here["brand"],
                      valid_from=now - timedelta(hours=1), source="feed", source_ref=f"w{k}"),
            actor="test", zone="yunnan-4",
        )  # fmt: skip
    elif kind == 3:  # a station edited: name, status
        c.execute(
            "UPDATE stations SET name = %s, status = %s WHERE id = %s",
            (f"改名{k}", rng.choice(["open", "temporarily_closed"]), sid),
        )
    elif kind == 4:  # a station moved
        point = (point[0] + rng.uniform(-0.01, 0.01), point[1] + rng.uniform(-0.01, 0.01))
        c.execute(
            "UPDATE stations SET geom = ST_SetSRID(ST_MakePoint(%s, %s), 4326) WHERE id = %s",
            (point[1], point[0], sid),
        )
    elif kind == 5:  # a promotion ended (an update that can move one off its target too)
        c.execute("UPDATE promotions SET valid_to = now() WHERE id = (SELECT max(id) FROM promotions)")
    else:  # many stations at once (one `*`): a grade added to every station of a brand
        c.execute(
            "UPDATE stations SET grades = array_append(grades, '98') WHERE brand = %s AND NOT '98' = ANY(grades)",
            (rng.choice(BRANDS),),
        )
    return point


def test_every_committed_write_is_in_the_next_answer(
    nearby_conn: psycopg.Connection, loop: asyncio.AbstractEventLoop, feed: StationFeed
) -> None:
    rng = random.Random(5)
    for k in range(42):
        lat, lon = _write(nearby_conn, rng, k)
        cache = _fresh_cache(loop, feed)  # straight after the commit: no waiting for the notification
        at = datetime.now(UTC)
        for radius, grade in ((3_000.0, None), (30_000.0, "92"), (8_000.0, "98")):
            want = nearby_offers(nearby_conn, lat, lon, radius, limit=60, grade=grade, at=at)
            _same(cache.nearby_offers(lat, lon, radius, limit=60, grade=grade, at=at), want)


def test_a_deleted_station_is_gone(
    nearby_conn: psycopg.Connection, loop: asyncio.AbstractEventLoop, feed: StationFeed
) -> None:
    found = nearby_conn.execute(
        "SELECT id, ST_Y(geom) AS lat, ST_X(geom) AS lon FROM stations ORDER BY id DESC LIMIT 1"
    )
    row = found.fetchone()
    assert row is not None
    nearby_conn.execute("DELETE FROM stations WHERE id = %s", (row["id"],))
    cache = _fresh_cache(loop, feed)
    assert int(row["id"]) not in cache.stations
    at = datetime.now(UTC)
    want = nearby_offers(nearby_conn, row["lat"], row["lon"], 5_000.0, limit=40, at=at)
    _same(cache.nearby_offers(row["lat"], row["lon"], 5_000.0, limit=40, at=at), want)


def test_prices_older_than_the_copy_are_not_covered(loop: asyncio.AbstractEventLoop, module_db: str) -> None:
    with _feed(loop, module_db, history=timedelta(hours=48)) as feed:
        cache = _fresh(loop, feed)
        assert cache is not None
        assert cache.covers(datetime.now(UTC) - timedelta(hours=47))
        assert not cache.covers(datetime.now(UTC) - timedelta(hours=49))  # the API asks SQL for these


def test_a_lost_connection_answers_none_then_reconnects(
    nearby_conn: psycopg.Connection, loop: asyncio.AbstractEventLoop, module_db: str
) -> None:
    with _feed(loop, module_db, retry_s=0.2) as feed:
        assert _fresh(loop, feed) is not None
        nearby_conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'fuel station cache' AND datname = current_database()"
        )
        assert _fresh(loop, feed) is None  # the barrier fails: the caller uses SQL
        deadline = time.monotonic() + 10
        cache = None
        while cache is None and time.monotonic() < deadline:
            loop.run_until_complete(asyncio.sleep(0.1))
            cache = _fresh(loop, feed)
        assert cache is not None, "the feed did not reconnect"
        at = datetime.now(UTC)
        want = nearby_offers(nearby_conn, CENTRE[0], CENTRE[1], 5_000.0, limit=30, at=at)
        _same(cache.nearby_offers(CENTRE[0], CENTRE[1], 5_000.0, limit=30, at=at), want)


def test_the_copy_is_renewed_every_half_window(
    nearby_conn: psycopg.Connection, loop: asyncio.AbstractEventLoop, module_db: str
) -> None:
    with _feed(loop, module_db, history=timedelta(seconds=1)) as feed:
        first = _fresh_cache(loop, feed)
        loop.run_until_complete(asyncio.sleep(0.6))
        assert _fresh(loop, feed) is None  # the renewal is being built: SQL answers meanwhile
        again = _fresh_cache(loop, feed)
        assert again is not first and again.cover_from > first.cover_from
        at = datetime.now(UTC)
        want = nearby_offers(nearby_conn, CENTRE[0], CENTRE[1], 8_000.0, limit=50, at=at)
        _same(again.nearby_offers(CENTRE[0], CENTRE[1], 8_000.0, limit=50, at=at), want)


def test_a_region_above_the_cap_is_not_held_until_it_fits(
    loop: asyncio.AbstractEventLoop, module_db: str
) -> None:
    with _feed(loop, module_db, max_stations=10, retry_s=0.05) as feed:
        assert _fresh(loop, feed) is None
        feed.max_stations = 50_000  # as if the region had shrunk below the cap: counted again, then held
        loop.run_until_complete(asyncio.sleep(1.0))
        assert len(_fresh_cache(loop, feed)) > 10


def test_no_database_answers_none(loop: asyncio.AbstractEventLoop) -> None:
    with _feed(loop, "host=127.0.0.1 port=1 dbname=nothing user=nobody", connect_timeout_s=1) as feed:
        assert _fresh(loop, feed) is None
