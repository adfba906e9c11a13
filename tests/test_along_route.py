"""Stations along a route (GET and POST /v1/stations/along-route) on the demo region (Andorra), in the
database of tests/test_ranking.py's fixtures (this module builds its own copy), with hand-placed stations
left and right of the road from Andorra la Vella to Encamp."""

from __future__ import annotations

import itertools
import math
import warnings
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from geo import haversine_m
from geo._polyline import decode
from geo._ranking import corridor_cells, corridor_positions, detour_raw_ok, drive_times, legs_to
from store._prices import PriceIn, insert_prices
from tests import test_ranking
from tests.test_ranking import SINCE, WED, A, B, add_station, point_on, route_line

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

# this module's own copy of the database and app (module-scoped fixtures of tests/test_ranking.py)
rank_db = test_ranking.rank_db
rank_client = test_ranking.rank_client

# ref: (fraction of the route A -> B, lateral metres: + left / - right, 92# price)
LAYOUT: dict[str, tuple[float, float, str]] = {
    "L1": (0.2, 40.0, "8.90"),
    "R1": (0.5, -40.0, "8.60"),
    "R2": (0.8, -60.0, "8.40"),
    "OFF": (0.6, 1_500.0, "8.00"),
}


@pytest.fixture(scope="module")
def line(rank_client: TestClient) -> np.ndarray:
    return route_line(rank_client, A, B)


@pytest.fixture(scope="module")
def ids(rank_db: str, line: np.ndarray) -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(rank_db, autocommit=True) as conn:
        for ref, (frac, lateral, _) in LAYOUT.items():
            out[ref] = add_station(conn, f"along/{ref}", point_on(line, frac, lateral), ("92", "95"))
        insert_prices(
            conn,
            [PriceIn(out[ref], "92", Decimal(p), SINCE) for ref, (_, _, p) in LAYOUT.items()],
            zone="yunnan-4",
            actor="test-setup",
        )
    return out


def q(p: tuple[float, float]) -> str:
    return f"{p[0]},{p[1]}"


def along(client: TestClient, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"from": q(A), "to": q(B), "depart_at": WED.isoformat()}
    r = client.get("/v1/stations/along-route", params={**base, **params})
    assert r.status_code == 200, r.text
    return r.json()


def mine(body: dict[str, Any], ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    back = {v: k for k, v in ids.items()}
    return {back[r["id"]]: r for r in body["results"] if r["id"] in back}


def order(body: dict[str, Any], ids: dict[str, int]) -> list[str]:
    back = {v: k for k, v in ids.items()}
    return [back[r["id"]] for r in body["results"] if r["id"] in back]


def offset_m(points: list[tuple[float, float]], p: tuple[float, float]) -> float:
    """Independent check: the smallest haversine distance to the route densified every <= 2 m."""
    best = math.inf
    for (a0, b0), (a1, b1) in itertools.pairwise(points):
        n = max(1, math.ceil(haversine_m(a0, b0, a1, b1) / 2.0))
        for t in np.linspace(0.0, 1.0, n + 1):
            best = min(best, haversine_m(p[0], p[1], a0 + t * (a1 - a0), b0 + t * (b1 - b0)))
    if len(points) == 1:
        best = haversine_m(p[0], p[1], *points[0])
    return best


def test_stations_in_the_corridor_with_side_and_position(
    rank_client: TestClient, ids: dict[str, int], line: np.ndarray
) -> None:
    body = along(rank_client, grade="92", litres=40)
    m = mine(body, ids)
    assert set(m) == {"L1", "R1", "R2"}  # OFF is 1.5 km away
    length = body["route"]["distance_m"]
    for ref in ("L1", "R1", "R2"):
        frac, lateral, _ = LAYOUT[ref]
        r = m[ref]
        assert r["offset_m"] == pytest.approx(abs(lateral), abs=5)
        assert r["along_m"] == pytest.approx(frac * length, abs=0.02 * length)
        assert r["side"] == ("left" if lateral > 0 else "right")
        assert r["detour_s"] >= 0 and r["detour_m"] >= 0
        assert abs((datetime.fromisoformat(r["arrive_at"]) - WED).total_seconds() - r["eta_s"]) < 0.1
    assert m["L1"]["eta_s"] < m["R1"]["eta_s"] < m["R2"]["eta_s"]
    assert body["route"]["direct_duration_s"] == pytest.approx(body["route"]["duration_s"], abs=1.0)
    assert body["corridor"]["corridor_m"] == 1000 and body["corridor"]["h3_cells"] > 0
    # the right-side stations are on the way: almost no detour
    assert m["R1"]["detour_s"] < 60 and m["R2"]["detour_s"] < 60
    wide = along(rank_client, grade="92", corridor_m=2500)
    assert "OFF" in mine(wide, ids)
    assert mine(wide, ids)["OFF"]["side"] == "left"


def test_total_cost_along_the_route_hand_checked(rank_client: TestClient, ids: dict[str, int]) -> None:
    body = along(rank_client, grade="92", litres=40)
    m = mine(body, ids)
    for r in m.values():
        c = r["cost"]
        eff = c["effective_price"]
        expect = eff * 40 + r["detour_m"] / 1000 * 8 / 100 * eff + r["detour_s"] / 3600 * 30
        assert c["total"] == pytest.approx(expect, abs=0.02)
        assert c["priced_at"] == r["arrive_at"]
    assert order(body, ids)[0] == "R2"  # cheapest and on the way
    totals = [r["cost"]["total"] for r in body["results"] if r["cost"]["total"] is not None]
    assert totals == sorted(totals)
    base = body["nearest"]
    detours = [r["detour_s"] for r in body["results"] if r["cost"]["total"] is not None]
    assert base["detour_s"] == min(detours)
    for r in body["results"]:
        if r["cost"]["total"] is not None:
            assert r["cost"]["worth_it"] == (r["cost"]["total"] <= base["total"] + 1e-6)


def test_sorts_and_range(rank_client: TestClient, ids: dict[str, int]) -> None:
    by_detour = along(rank_client, sort="detour")
    d = [r["detour_s"] for r in by_detour["results"] if r["detour_s"] is not None]
    assert d == sorted(d) and "cost" not in by_detour["results"][0]
    by_along = along(rank_client, sort="along")
    a = [r["along_m"] for r in by_along["results"]]
    assert a == sorted(a) and order(by_along, ids) == ["L1", "R1", "R2"]
    short = along(rank_client, grade="92", range_km=2.5)
    assert order(short, ids) == ["L1"]
    assert all(r["road_distance_m"] <= 2500 for r in short["results"])


def test_post_with_the_route_geometry_gives_the_same_stations(
    rank_client: TestClient, ids: dict[str, int]
) -> None:
    route = rank_client.get(
        "/v1/route", params={"from": q(A), "to": q(B), "depart_at": WED.isoformat()}
    ).json()
    get = along(rank_client, grade="92")
    for geometry in (route["geometry"], [[c[1], c[0]] for c in route["geometry"]["coordinates"]]):
        r = rank_client.post(
            "/v1/stations/along-route",
            json={"geometry": geometry, "depart_at": WED.isoformat(), "grade": "92"},
        )
        assert r.status_code == 200, r.text
        post = r.json()
        assert order(post, ids) == order(get, ids)
        for ref, x in mine(post, ids).items():
            y = mine(get, ids)[ref]
            assert x["detour_s"] == pytest.approx(y["detour_s"], abs=2.0)
            assert x["along_m"] == pytest.approx(y["along_m"], abs=5.0)
            assert x["side"] == y["side"]


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"from": None}, "from"),
        ({"to": None}, "to"),
        ({"from": "42.5"}, "from"),
        ({"to": "x,y"}, "to"),
        ({"corridor_m": 0}, "corridor_m"),
        ({"corridor_m": -5}, "corridor_m"),
        ({"corridor_m": 5001}, "corridor_m"),
        ({"corridor_m": "wide"}, "corridor_m"),
        ({"range_km": 0}, "range_km"),
        ({"range_km": -1}, "range_km"),
        ({"sort": "total_cost"}, "grade"),
        ({"sort": "nearest"}, "sort"),
        ({"depart_at": "soon"}, "depart_at"),
        ({"grade": "92", "litres": 0}, "litres"),
        ({"grade": "92", "litres": 5000}, "litres"),
        ({"grade": "92", "consumption_l_100km": 50}, "consumption_l_100km"),
        ({"grade": "93"}, "grade"),
        ({"coord": "utm"}, "coord"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_input_is_422_naming_the_param(
    rank_client: TestClient, params: dict[str, Any], param: str
) -> None:
    base: dict[str, Any] = {"from": q(A), "to": q(B)}
    merged = {k: v for k, v in {**base, **params}.items() if v is not None}
    r = rank_client.get("/v1/stations/along-route", params=merged)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "body",
    [
        {"geometry": {"type": "Point", "coordinates": [1.5, 42.5]}},
        {"geometry": {"type": "LineString", "coordinates": []}},
        {"geometry": {"type": "LineString", "coordinates": [[1.5, 95.0], [1.6, 42.5]]}},
        {"geometry": [[42.5, 1.5, 3.0]]},
        {"geometry": [[42.5063, 1.5218], [42.5347, 1.58]], "corridor_m": 9000},
        {"geometry": [[42.5063, 1.5218], [42.5347, 1.58]], "surprise": 1},
        {},
    ],
)
def test_post_bad_input_is_422(rank_client: TestClient, body: dict[str, Any]) -> None:
    r = rank_client.post("/v1/stations/along-route", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"]


def test_gcj02_in_and_out(rank_client: TestClient, ids: dict[str, int]) -> None:
    from geo import from_wgs84

    ga, gb = from_wgs84(*A, "gcj02"), from_wgs84(*B, "gcj02")
    body = along(rank_client, **{"from": q(ga), "to": q(gb), "coord": "gcj02", "grade": "92"})
    assert body["coord"] == "gcj02" and set(mine(body, ids)) == {"L1", "R1", "R2"}


# ---- properties over random routes ----------------------------------------------------------------
_lat = st.floats(42.49, 42.56)
_lon = st.floats(1.50, 1.60)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.tuples(_lat, _lon), b=st.tuples(_lat, _lon), corridor=st.sampled_from([150.0, 600.0, 1000.0, 3000.0])
)
def test_random_routes_results_inside_corridor_and_consistent(
    rank_client: TestClient,
    ids: dict[str, int],
    a: tuple[float, float],
    b: tuple[float, float],
    corridor: float,
) -> None:
    params: dict[str, Any] = {
        "from": q(a),
        "to": q(b),
        "depart_at": WED.isoformat(),
        "grade": "92",
        "corridor_m": corridor,
    }
    r = rank_client.get("/v1/stations/along-route", params={**params, "limit": 200})
    assume(r.status_code == 200)  # 422 (no road near) / 404 (no path) are fine for random points
    body = r.json()
    points = decode(body["route"]["polyline6"], precision=6)
    for x in body["results"]:
        assert offset_m(points, (x["lat"], x["lon"])) <= corridor + 1.0
        assert x["offset_m"] <= corridor
        assert x["detour_s"] is None or x["detour_s"] >= 0
    totals = [x["cost"]["total"] for x in body["results"]]
    known = [t for t in totals if t is not None]
    assert known == sorted(known) and totals[: len(known)] == known


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.tuples(_lat, _lon),
    b=st.tuples(_lat, _lon),
    stations=st.lists(st.tuples(_lat, _lon), min_size=1, max_size=8),
    hour=st.integers(0, 23),
)
def test_raw_detour_is_never_negative_beyond_tolerance(
    rank_client: TestClient,
    a: tuple[float, float],
    b: tuple[float, float],
    stations: list[tuple[float, float]],
    hour: int,
) -> None:
    """FIFO: origin -> station -> destination (leaving at the arrival) is never faster than direct."""
    router = rank_client.app.state.fuel.router  # type: ignore[attr-defined]
    sa, sb = router.snapper.snap_many([a, b])
    assume(sa is not None and sb is not None)
    snaps = router.snapper.snap_many(stations)
    at = WED.replace(hour=hour)
    t, _ = drive_times(router, sa, [*snaps, sb], depart_at=at)
    t_od = float(t[-1])
    assume(math.isfinite(t_od))
    departs = [at.timestamp() + float(x) for x in t[:-1]]
    t_sd, _ = legs_to(router, snaps, sb, depart_at=departs)
    for k in range(len(snaps)):
        raw = float(t[k] + t_sd[k] - t_od)
        if math.isfinite(raw):
            assert detour_raw_ok(raw, t_od), (k, raw, t_od)


def test_corridor_cells_cover_the_corridor() -> None:
    """Every point within the corridor lies in a covering cell (sampled around a zig-zag line)."""
    import h3

    rng = np.random.default_rng(7)
    line = [(26.85, 100.20), (26.87, 100.23), (26.86, 100.26), (26.90, 100.27)]
    for corridor in (50.0, 400.0, 1000.0, 5000.0):
        cover = corridor_cells(line, corridor)
        assert cover.cells is not None
        cells = set(cover.cells)
        pts = np.column_stack((rng.uniform(26.80, 26.95, 4000), rng.uniform(100.15, 100.32, 4000)))
        pos = corridor_positions(line, pts)
        for (lat, lon), off in zip(pts.tolist(), pos.offset_m.tolist(), strict=True):
            if off <= corridor:
                assert h3.str_to_int(h3.latlng_to_cell(lat, lon, cover.res)) in cells
                w, s, e, n = cover.bbox
                assert w <= lon <= e and s <= lat <= n


def test_corridor_positions_side_and_along() -> None:
    line = [(0.0, 0.0), (0.0, 0.01)]  # eastwards along the equator, about 1113 m
    pos = corridor_positions(line, [(0.001, 0.005), (-0.001, 0.002), (0.0, 0.02)])
    assert pos.side[:2] == ["left", "right"]  # north of an eastward road is on the left
    assert pos.offset_m[0] == pytest.approx(111.2, abs=0.5)
    assert pos.along_m[1] == pytest.approx(0.2 * pos.route_length_m, abs=0.5)
    assert pos.along_m[2] == pytest.approx(pos.route_length_m) and pos.offset_m[2] == pytest.approx(
        1112, abs=2
    )
