"""The expanding nearby search returns exactly what the one-shot search over the full radius does."""

from __future__ import annotations

import random
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store._stations import StationIn, nearby_stations, upsert_stations

CENTRE = (26.87, 100.23)  # Lijiang old town


@pytest.fixture(scope="module")
def conn(module_db: str) -> Iterator[psycopg.Connection]:
    rng = random.Random(7)
    stations = []
    for i in range(3000):
        # dense core, sparse outskirts: both the first disk and later ones matter
        spread = 0.01 if i < 1500 else 0.15
        lat = CENTRE[0] + rng.uniform(-spread, spread)
        lon = CENTRE[1] + rng.uniform(-spread, spread)
        stations.append(
            StationIn(
                source="demo", source_ref=f"t{i}", lat=lat, lon=lon, grades=("92",) if i % 3 else ("95",)
            )
        )
    with psycopg.connect(module_db, autocommit=True) as c:
        upsert_stations(c, stations, actor="test-setup")
        yield c


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    dlat=st.floats(-0.2, 0.2),
    dlon=st.floats(-0.2, 0.2),
    radius=st.sampled_from([300.0, 2_000.0, 8_000.0, 30_000.0]),
    limit=st.integers(1, 60),
    grade=st.sampled_from([None, "92", "95"]),
)
def test_expanding_equals_one_shot(
    conn: psycopg.Connection, dlat: float, dlon: float, radius: float, limit: int, grade: str | None
) -> None:
    lat, lon = CENTRE[0] + dlat, CENTRE[1] + dlon
    fast = nearby_stations(conn, lat, lon, radius, limit=limit, grade=grade)
    full = nearby_stations(conn, lat, lon, radius, limit=limit, grade=grade, expand=False)
    assert [r["id"] for r in fast] == [r["id"] for r in full]
