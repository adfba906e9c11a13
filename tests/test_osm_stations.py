"""Fuel stations from the real OSM extracts, brands, and the demo price seeding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from config import load_region
from geo import ExtractError, brand_from_tags, normalize_brand
from ingest._demo import seed_demo
from ingest._guidance import load_guidance_file
from ingest._osm_stations import address_from_tags, amenities_from_tags, grades_from_tags, read_fuel_stations
from store._ceilings import ceiling_at
from store._prices import current_prices
from store._stations import StationIn, get_station, upsert_stations


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("andorra.osm.pbf", 19),
        ("shenzhen_longgang.osm.gz", 2),
        ("beijing_tsinghua.osm.bz2", 1),
        ("west_oakland.osm.bz2", 0),
    ],
)
def test_reads_the_real_extracts(shared_data: Path, name: str, count: int) -> None:
    stations = read_fuel_stations(shared_data / "osm" / name)
    assert len(stations) == count
    assert len({s.source_ref for s in stations}) == count
    for s in stations:
        s.validate()
        assert s.source == "osm" and s.source_ref.split("/")[0] in ("node", "way")
        assert s.grades


def test_way_station_is_the_centroid(shared_data: Path) -> None:
    stations = {s.source_ref: s for s in read_fuel_stations(shared_data / "osm" / "shenzhen_longgang.osm.gz")}
    way = stations["way/330000561"]
    assert 22.689 < way.lat < 22.690 and 114.207 < way.lon < 114.209


def test_beijing_sinopec_and_andorra_details(shared_data: Path) -> None:
    (bj,) = read_fuel_stations(shared_data / "osm" / "beijing_tsinghua.osm.bz2")
    assert bj.brand == "sinopec" and bj.brand_raw == "中国石化" and bj.source_ref == "node/380739844"
    andorra = {s.source_ref: s for s in read_fuel_stations(shared_data / "osm" / "andorra.osm.pbf")}
    tagged = andorra["node/1579330445"]  # fuel:diesel, fuel:octane_95, fuel:octane_98
    assert tagged.grades == ("95", "98", "0")
    assert andorra["node/271939031"].brand_raw == "BP" and andorra["node/271939031"].name == "bp"
    assert andorra["node/259476084"].grades == ("92", "95", "98", "0")  # region default


def test_missing_file() -> None:
    with pytest.raises(ExtractError):
        read_fuel_stations("/nonexistent/x.osm.pbf")


@pytest.mark.parametrize(
    ("text", "brand"),
    [
        ("中国石化", "sinopec"),
        ("中石化丽江分公司", "sinopec"),
        ("China Petroleum & Chemical Corporation", "sinopec"),
        ("Sinopec", "sinopec"),
        ("中国石油化工股份有限公司", "sinopec"),
        ("中国石油", "petrochina"),
        ("中石油", "petrochina"),
        ("PetroChina", "petrochina"),
        ("China National Petroleum Corporation", "petrochina"),
        ("中海油", "cnooc"),
        ("中国海油", "cnooc"),
        ("CNOOC", "cnooc"),
        ("壳牌", "shell"),
        ("延长壳牌", "shell"),
        ("Shell", "shell"),
        ("BP", "bp"),
        ("", "other"),
        (None, "other"),
        ("Shellfish Fuel", "other"),
    ],
)
def test_normalize_brand(text: str | None, brand: str) -> None:
    assert normalize_brand(text) == brand


def test_brand_from_tags_keeps_the_raw_value() -> None:
    assert brand_from_tags({"brand": "延长壳牌"}) == ("shell", "延长壳牌")
    assert brand_from_tags({"operator": "中国石油天然气股份有限公司"}) == (
        "petrochina",
        "中国石油天然气股份有限公司",
    )
    assert brand_from_tags({"name": "中石化古城加油站"}) == ("sinopec", "中石化古城加油站")
    assert brand_from_tags({"brand": "Repsol", "name": "中石化"}) == ("repsol", "Repsol")
    assert brand_from_tags({"name": "加油站"}) == ("other", None)


def test_tag_helpers() -> None:
    assert grades_from_tags({"fuel:octane_92": "yes", "fuel:diesel": "yes", "fuel:octane_95": "no"}) == (
        "92",
        "0",
    )
    assert grades_from_tags({"fuel:octane_89": "yes"}) == ("89",)
    assert grades_from_tags({}, ("92",)) == ("92",)
    assert amenities_from_tags(
        {"shop": "convenience", "car_wash": "yes", "toilets": "yes", "fuel:electricity": "yes"}
    ) == ("shop", "car_wash", "toilets", "ev_charging")
    assert (
        address_from_tags(
            {
                "addr:city": "丽江市",
                "addr:district": "古城区",
                "addr:street": "香格里拉大道",
                "addr:housenumber": "88",
            }
        )
        == "丽江市古城区香格里拉大道88号"
    )
    assert address_from_tags(
        {
            "addr:street": "Avinguda Meritxell",
            "addr:housenumber": "12",
            "addr:city": "Andorra la Vella",
            "addr:postcode": "AD500",
        }
    ) == ("12 Avinguda Meritxell, AD500 Andorra la Vella")
    assert address_from_tags({"addr:full": "x"}) == "x" and address_from_tags({}) is None


# --- into the database, and demo prices --------------------------------------------------------------
@pytest.fixture(scope="module")
def conn(module_db: str, shared_data: Path) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as c:
        load_guidance_file(c, shared_data / "prices" / "yunnan_guidance_prices.json", actor="test-setup")
        yield c


def test_bulk_upsert_is_idempotent_and_updates(conn: psycopg.Connection, shared_data: Path) -> None:
    stations = read_fuel_stations(shared_data / "osm" / "andorra.osm.pbf")
    first = upsert_stations(conn, stations, actor="test-setup")
    assert first.inserted + first.unchanged == 19  # unchanged when another test loaded them first
    again = upsert_stations(conn, stations, actor="test-setup")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 19)
    s0 = stations[0]
    moved = StationIn(**{**s0.__dict__, "name": "Renamed", "lat": s0.lat + 0.001})
    changed = upsert_stations(conn, [moved, moved], actor="test-setup")  # duplicates: last one wins
    assert (changed.inserted, changed.updated) == (0, 1)
    row = conn.execute(
        "SELECT id FROM stations WHERE source = 'osm' AND source_ref = %s", (s0.source_ref,)
    ).fetchone()
    assert row is not None
    st = get_station(conn, row[0])
    assert st is not None and st["name"] == "Renamed" and st["version"] == 2
    assert abs(st["lat"] - (s0.lat + 0.001)) < 1e-9
    upsert_stations(conn, [s0], actor="test-setup")  # restore


def test_seed_demo_prices_below_ceiling_and_idempotent(conn: psycopg.Connection, shared_data: Path) -> None:
    upsert_stations(conn, read_fuel_stations(shared_data / "osm" / "andorra.osm.pbf"), actor="test-setup")
    region = load_region("andorra")
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    first = seed_demo(conn, region, seed=0, now=now, actor="test-setup")
    assert first.stations == 19 and first.prices_written > 0 and first.promotions_written == 5
    second = seed_demo(conn, region, seed=0, now=now, actor="test-setup")
    assert (second.prices_written, second.promotions_written) == (0, 0)
    later = seed_demo(conn, region, seed=0, now=datetime(2026, 11, 26, 9, 0, tzinfo=UTC), actor="test-setup")
    assert (later.prices_written, later.promotions_written) == (0, 0)
    ids = [r[0] for r in conn.execute("SELECT id FROM stations WHERE source = 'osm' AND ST_X(geom) < 2")]
    prices = current_prices(conn, ids, now)
    c95 = ceiling_at(conn, "yunnan-4", "95", now)
    assert c95 is not None
    for by_grade in prices.values():
        for grade, p in by_grade.items():
            assert p.source == "demo" and p.effective_from < now
            if grade == "98":
                assert c95.max_price_cny + Decimal("0.2") <= p.price_cny <= c95.max_price_cny + Decimal("0.7")
            else:
                c = ceiling_at(conn, "yunnan-4", grade, p.effective_from)
                assert c is not None and c.max_price_cny - Decimal("0.5") < p.price_cny < c.max_price_cny
    n_promos = conn.execute("SELECT count(*) FROM promotions WHERE source = 'demo'").fetchone()
    assert n_promos is not None and n_promos[0] == 5
