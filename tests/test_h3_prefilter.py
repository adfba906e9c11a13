"""The H3 prefilter never misses a station that plain ST_DWithin(geography) finds (real PostGIS)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import h3
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo._coords import haversine_m
from geo._h3cells import covering_cells, disk_size, rings_for_radius
from store._stations import StationIn, nearby_stations, upsert_stations

MAX_RADIUS = 50_000.0
# Keep away from Lijiang, where the API tests put their own stations.
LIJIANG_BOX = (98.5, 25.0, 102.5, 29.0)


def destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    """Point at `dist_m` along `bearing_deg` from (lat, lon) on the sphere."""
    r = 6_371_008.8
    d = dist_m / r
    b = math.radians(bearing_deg)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def _outside_lijiang(lat: float, lon: float) -> bool:
    w, s, e, n = LIJIANG_BOX
    return not (s <= lat <= n and w <= lon <= e)


latitudes = st.floats(min_value=-80.0, max_value=80.0, allow_nan=False)
longitudes = st.floats(min_value=-179.0, max_value=179.0, allow_nan=False)


@st.composite
def query_points(draw: st.DrawFn) -> tuple[float, float]:
    """Random points, and points exactly on H3 cell vertices and edge midpoints at r7-r9."""
    lat, lon = draw(latitudes), draw(longitudes)
    kind = draw(st.sampled_from(["plain", "vertex", "edge"]))
    if kind == "plain":
        return lat, lon
    res = draw(st.sampled_from([7, 8, 9]))
    boundary = h3.cell_to_boundary(h3.latlng_to_cell(lat, lon, res))
    i = draw(st.integers(0, len(boundary) - 1))
    if kind == "vertex":
        return boundary[i]
    a, b = boundary[i], boundary[(i + 1) % len(boundary)]
    return (a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0


radii = st.one_of(st.just(MAX_RADIUS), st.floats(min_value=1.0, max_value=MAX_RADIUS, allow_nan=False))


@pytest.fixture(scope="module")
def conn(module_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as c:
        yield c


# --- pure: the covering contains the cell of every point in the circle ----------------------------
@settings(max_examples=300, deadline=None)
@given(center=query_points(), radius=radii, bearing=st.floats(0, 360), frac=st.floats(0.0, 1.0))
def test_covering_contains_every_point_of_the_circle(
    center: tuple[float, float], radius: float, bearing: float, frac: float
) -> None:
    lat, lon = center
    cover = covering_cells(lat, lon, radius)
    assert cover.cells is not None, "every radius up to 50 km is under the cell cap"
    cells = set(cover.cells)
    for f in (frac, 1.0):
        p = destination(lat, lon, bearing, radius * f)
        cell = h3.str_to_int(h3.latlng_to_cell(p[0], p[1], cover.res))
        assert cell in cells, (center, radius, p, cover.res, cover.k)


def test_largest_radius_fits_the_cap() -> None:
    cover = covering_cells(26.87, 100.23, MAX_RADIUS)
    assert cover.cells is not None and cover.res == 7
    assert len(cover.cells) <= disk_size(cover.k)
    assert rings_for_radius(1.0, 9) >= 2


# --- against PostGIS ------------------------------------------------------------------------------
def _seed(conn: psycopg.Connection, lat: float, lon: float, radius: float, bearings: list[float]) -> None:
    pts: list[tuple[float, float]] = []
    for i, b in enumerate(bearings):
        # dense inside, and a ring hugging the circle just inside and just outside it
        for f in (0.0, 0.25, 0.5, 0.8, 0.95, 0.999, 0.9999, 1.0, 1.0001, 1.001, 1.05, 1.3):
            pts.append(destination(lat, lon, b + i * 0.37 * f, radius * f))
    tag = uuid.uuid4().hex[:10]
    upsert_stations(
        conn,
        [
            StationIn(source="onboarding", source_ref=f"h3test/{tag}/{j}", lat=a, lon=o, name="h3")
            for j, (a, o) in enumerate(pts)
            if -90 < a < 90
        ],
        actor="test-setup",
    )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    center=query_points().filter(lambda p: _outside_lijiang(*p)),
    radius=radii,
    bearings=st.lists(st.floats(0, 360, allow_nan=False), min_size=6, max_size=14),
)
def test_prefilter_never_misses_a_station(
    conn: psycopg.Connection, center: tuple[float, float], radius: float, bearings: list[float]
) -> None:
    lat, lon = center
    _seed(conn, lat, lon, radius, bearings)
    plain = {
        r[0]
        for r in conn.execute(
            "SELECT id FROM stations WHERE ST_DWithin(geom::geography,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s)",
            (lon, lat, radius),
        )
    }
    fast = nearby_stations(conn, lat, lon, radius, limit=1_000_000, use_bbox=False)  # H3 alone
    got = {r["id"] for r in fast}
    assert [r["id"] for r in nearby_stations(conn, lat, lon, radius, limit=1_000_000)] == [
        r["id"] for r in fast
    ]
    assert plain, "the seeding puts stations inside the circle"
    assert plain == got, f"missed {sorted(plain - got)[:5]}, extra {sorted(got - plain)[:5]}"
    distances = [r["distance_m"] for r in fast]
    assert distances == sorted(distances)
    assert all(d <= radius + 1e-6 for d in distances)
    # distances are geodesic (spheroid): within 0.6 % of the spherical haversine
    for r in fast[:20]:
        h = haversine_m(lat, lon, r["lat"], r["lon"])
        assert abs(r["distance_m"] - h) <= 0.006 * h + 0.01


def test_without_prefilter_same_answer(conn: psycopg.Connection) -> None:
    lat, lon = 42.5, 1.55
    _seed(conn, lat, lon, 3_000.0, [10.0, 100.0, 200.0, 300.0])
    a = [r["id"] for r in nearby_stations(conn, lat, lon, 3_000.0, limit=10_000)]
    b = [r["id"] for r in nearby_stations(conn, lat, lon, 3_000.0, limit=10_000, use_h3=False)]
    d = [r["id"] for r in nearby_stations(conn, lat, lon, 3_000.0, limit=10_000, use_bbox=False)]
    c = [r["id"] for r in nearby_stations(conn, lat, lon, 3_000.0, limit=10_000, max_cells=1)]
    assert a == b == c == d and a
    assert (
        nearby_stations(conn, lat, lon, 3_000.0, limit=3)
        == nearby_stations(conn, lat, lon, 3_000.0, limit=10_000)[:3]
    )
