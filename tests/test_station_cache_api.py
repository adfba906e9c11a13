"""Through a real server with two workers, each with its own in-memory copy of the nearby data: a price
written through the manager API is in the very next nearby answer, whichever worker the write and the
read land on, and in the answer of the SQL search (the copy turned off) too."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from config import Settings
from ingest._load_region import load_region_data
from tests._servers import TEST_ADMIN_KEY, Server

A = (42.5063, 1.5218)  # Andorra la Vella
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}


@pytest.fixture(scope="module")
def region_db(module_db: str, shared_data: Path) -> str:
    settings = Settings(database_url=module_db, shared_data_dir=shared_data)
    extract = shared_data / "osm" / "andorra.osm.pbf"
    load_region_data(settings, region_name="andorra", extract=extract, demo=True, progress=False)
    return module_db


@pytest.fixture(scope="module")
def servers(region_db: str) -> Iterator[tuple[Server, Server]]:
    cached = Server(region_db, uvicorn_args=["--workers", "2"])
    by_sql = Server(region_db, FUEL_STATION_CACHE_MAX_STATIONS="0")
    try:
        yield cached, by_sql
    finally:
        cached.close()
        by_sql.close()


def _nearby(base: str) -> dict[int, float | None]:
    r = httpx.get(
        base + "/v1/stations/nearby", params={"lat": A[0], "lon": A[1], "radius_m": 8000}, timeout=10
    )
    assert r.status_code == 200, r.text
    return {int(s["id"]): s["grades"].get("92", {}).get("list_price") for s in r.json()["results"]}


def test_a_price_written_is_in_the_next_answer_of_every_worker(
    region_db: str, servers: tuple[Server, Server]
) -> None:
    cached, by_sql = servers
    listed = _nearby(cached.base)
    sid = next(i for i, p in listed.items() if p is not None)
    assert listed == _nearby(by_sql.base)
    with psycopg.connect(region_db) as conn:
        row = conn.execute("SELECT version FROM stations WHERE id = %s", (sid,)).fetchone()
    assert row is not None
    version = int(row[0])
    base_price = Decimal(str(listed[sid]))
    with httpx.Client(base_url=cached.base, timeout=10) as c:
        for k in range(24):  # two workers: writes and reads land on either, in any order
            price = base_price + Decimal("0.01") * (1 + k % 3)
            r = c.put(
                f"/v1/stations/{sid}/prices",
                json=[{"grade": "92", "price_cny": str(price)}],
                headers={**ADMIN, "If-Match": f'"{version}"'},
            )
            assert r.status_code == 200, r.text
            version = int(r.json()["version"])
            for _ in range(2):
                got = _nearby(cached.base)
                assert got[sid] == float(price), f"write {k}: listed {got[sid]}, written {price}"
    assert _nearby(cached.base) == _nearby(by_sql.base)
