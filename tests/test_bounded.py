"""Every request has a bounded cost: the along-route and matrix attacks get a fast, clear answer.

The attack lines are built here (seeded): a 25 KB scribble over the demo region (Andorra), zig-zags at
and above the simplified-point cap, 320,000 matrix sources with no targets. Elapsed times are bounded
only generously (a hung worker, not a benchmark); the status and the message are what is checked."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import h3
import numpy as np
import pytest
from fastapi.testclient import TestClient

from config import Settings
from geo import Budget, BudgetExceeded, haversine_m
from geo._coords import EARTH_RADIUS_M
from geo._ranking import (
    corridor_cells,
    corridor_positions,
    line_length_m,
    simplify_line,
    simplify_tolerance_m,
)

A = (42.5063, 1.5218)  # Andorra la Vella
B = (42.5347, 1.5800)  # Encamp
WED = "2026-11-25T10:00:00+08:00"
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
GENEROUS_S = 10.0  # far above a correct answer, far below a pinned worker


def scribble(n: int, seed: int = 1) -> list[list[float]]:
    """n random points over the demo region, GeoJSON [lon, lat] rounded to 5 decimals (~21 bytes each)."""
    rng = np.random.default_rng(seed)
    lat = rng.uniform(42.43, 42.65, n)
    lon = rng.uniform(1.41, 1.79, n)
    return [[round(float(x), 5), round(float(y), 5)] for x, y in zip(lon, lat, strict=True)]


def zigzag(n: int, step_m: float = 25.0, amplitude_m: float = 40.0) -> list[list[float]]:
    """n points going back and forth between A and B, `step_m` apart along the way and every other
    one `amplitude_m` to the left: no vertex can be simplified away (checked where used)."""
    kx = M_PER_DEG * math.cos(math.radians(A[0]))
    dx, dy = (B[1] - A[1]) * kx, (B[0] - A[0]) * M_PER_DEG
    length = math.hypot(dx, dy)
    ux, uy = dx / length, dy / length
    out = []
    for i in range(n):
        along = (i * step_m) % (2 * length)
        along = along if along <= length else 2 * length - along
        off = amplitude_m if i % 2 else 0.0
        out.append([A[0] + (uy * along + ux * off) / M_PER_DEG, A[1] + (ux * along - uy * off) / kx])
    return out


def post_along(client: TestClient, geometry: Any, **extra: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    r = client.post("/v1/stations/along-route", json={"geometry": geometry, "depart_at": WED, **extra})
    return r, time.monotonic() - t0


def settings_of(client: TestClient) -> Settings:
    s: Settings = client.app.state.fuel.settings  # type: ignore[attr-defined]
    return s


@pytest.fixture(scope="module")
def tight(demo_settings: Settings) -> Iterator[TestClient]:
    """An app whose request budgets are already spent when the first check runs, and whose routes
    may be at most 1 km long (the caps and budgets of a request, not a slow machine, are tested)."""
    from api.main import create_app

    s = demo_settings.model_copy(
        update={"along_route_budget_s": 1e-9, "matrix_budget_s": 1e-9, "max_route_km": 1.0}
    )
    with TestClient(create_app(s)) as c:
        yield c


# ---- along-route: the attacks ---------------------------------------------------------------------
def test_scribbled_25kb_route_is_a_fast_422_naming_the_length_limit(client: TestClient) -> None:
    coords = scribble(1250)
    assert len(json.dumps(coords)) > 25_000
    r, elapsed = post_along(client, {"type": "LineString", "coordinates": coords})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    limit = settings_of(client).max_route_km
    assert err["param"] == "geometry"
    assert f"above the limit of {limit:,.0f} km" in err["message"]
    km = float(err["message"].split(" km long")[0].split()[-1].replace(",", ""))
    assert km > limit
    assert elapsed < GENEROUS_S


def test_scribble_at_the_point_cap_gets_a_full_answer(client: TestClient) -> None:
    """The worst line the caps let through: as many points as allowed, crossing itself everywhere
    in a 300 m square next to a road (about 5,000 x 150 m = 750 km, under the length cap)."""
    cap = settings_of(client).max_route_points
    rng = np.random.default_rng(3)
    kx = M_PER_DEG * math.cos(math.radians(A[0]))
    line = [
        [A[0] + float(dy) / M_PER_DEG, A[1] + float(dx) / kx] for dx, dy in rng.uniform(-150, 150, (cap, 2))
    ]
    r, elapsed = post_along(client, line, grade="92")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["route"]["points"] == cap
    assert body["corridor"]["h3_cells"] is not None and body["corridor"]["h3_cells"] > 0
    assert body["results"] and all(x["offset_m"] <= 1000.0 for x in body["results"])
    assert elapsed < GENEROUS_S


def test_zigzag_above_the_point_cap_is_a_fast_422_naming_the_cap(client: TestClient) -> None:
    cap = settings_of(client).max_route_points
    line = zigzag(cap + 1)
    assert len(simplify_line(line, simplify_tolerance_m(1000.0))) == cap + 1
    r, elapsed = post_along(client, line)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == "geometry"
    assert f"{cap + 1:,} points" in err["message"] and f"above the limit of {cap:,}" in err["message"]
    assert elapsed < GENEROUS_S


def test_dense_straight_route_simplifies_to_its_ends_and_finds_the_same_stations(
    client: TestClient,
) -> None:
    dense = [[A[0] + t * (B[0] - A[0]), A[1] + t * (B[1] - A[1])] for t in np.linspace(0.0, 1.0, 20_000)]
    r_dense, elapsed = post_along(client, dense, corridor_m=2500)
    r_two, _ = post_along(client, [list(A), list(B)], corridor_m=2500)
    assert r_dense.status_code == 200 and r_two.status_code == 200, (r_dense.text, r_two.text)
    d, t = r_dense.json(), r_two.json()
    assert d["route"]["points"] == 20_000
    assert [x["id"] for x in d["results"]] == [x["id"] for x in t["results"]]
    for x, y in zip(d["results"], t["results"], strict=True):
        assert x["offset_m"] == pytest.approx(y["offset_m"], abs=0.2)
    assert elapsed < GENEROUS_S


def test_get_along_route_has_the_same_length_cap(tight: TestClient) -> None:
    r = tight.get(
        "/v1/stations/along-route",
        params={"from": f"{A[0]},{A[1]}", "to": f"{B[0]},{B[1]}", "depart_at": WED},
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == "to" and "above the limit of 1 km" in err["message"]


def test_along_route_out_of_budget_is_503_or_422_for_the_client_line(tight: TestClient) -> None:
    """A spent budget stops the work: 422 naming the client's line when its geometry is what costs
    (POST), 503 when the server's own route is being searched (GET)."""
    s = settings_of(tight)
    tight.app.state.fuel.settings = s.model_copy(update={"max_route_km": 1_000.0})  # type: ignore[attr-defined]
    try:
        r, _ = post_along(tight, [list(A), list(B)])
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["param"] == "geometry" and "budget" in err["message"]
        g = tight.get(
            "/v1/stations/along-route",
            params={"from": f"{A[0]},{A[1]}", "to": f"{B[0]},{B[1]}", "depart_at": WED},
        )
        assert g.status_code == 503, g.text
        assert g.json()["error"]["code"] == "BudgetExceeded" and "budget" in g.json()["error"]["message"]
        assert "retry-after" in g.headers
    finally:
        tight.app.state.fuel.settings = s  # type: ignore[attr-defined]


# ---- matrix -------------------------------------------------------------------------------------
def test_matrix_with_empty_targets_is_a_fast_422(client: TestClient) -> None:
    body = {"sources": [[42.5, 1.5]] * 320_000, "targets": []}
    t0 = time.monotonic()
    r = client.post("/v1/matrix", json=body)
    elapsed = time.monotonic() - t0
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == "targets" and "at least one" in err["message"]
    assert elapsed < GENEROUS_S


def test_matrix_caps_sources_and_targets_separately(client: TestClient) -> None:
    s = settings_of(client)
    r = client.post(
        "/v1/matrix", json={"sources": [list(A)] * (s.max_matrix_sources + 1), "targets": [list(B)]}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == "sources"
    assert f"{s.max_matrix_sources + 1:,} points" in err["message"]
    assert f"above the limit of {s.max_matrix_sources:,}" in err["message"]
    r = client.post(
        "/v1/matrix", json={"sources": [list(A)], "targets": [list(B)] * (s.max_matrix_targets + 1)}
    )
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["param"] == "targets" and f"above the limit of {s.max_matrix_targets:,}" in err["message"]
    r = client.post("/v1/matrix", json={"sources": [list(A)] * (s.max_matrix_sources + 1)})
    assert r.status_code == 422 and r.json()["error"]["param"] == "sources"  # targets default to sources


def test_matrix_checks_every_coordinate_before_any_search(client: TestClient) -> None:
    pts = [list(A), list(B)] * 10
    r = client.post("/v1/matrix", json={"sources": pts, "targets": [*pts, [42.5, 181.0]]})
    assert r.status_code == 422 and r.json()["error"]["param"] == f"targets[{len(pts)}]"
    nan = json.dumps({"sources": [*pts, [float("nan"), 1.5]], "targets": pts})  # NaN: Python's JSON
    r = client.post("/v1/matrix", content=nan, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["param"] == f"sources[{len(pts)}]"


def test_matrix_out_of_budget_is_503(tight: TestClient) -> None:
    r = tight.post("/v1/matrix", json={"sources": [list(A), list(B), list(A)], "targets": [list(B)]})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "BudgetExceeded" and "3 x 1 matrix" in err["message"] and "budget" in err["message"]
    one = tight.post("/v1/matrix", json={"sources": [list(A)], "targets": [list(B)]})
    assert one.status_code == 200  # the first search always runs: a budget never refuses all work


# ---- geometry: simplification and the H3 cover --------------------------------------------------
def wiggly(n: int, seed: int) -> np.ndarray:
    """A winding mountain road: a random walk of short steps with a slowly turning heading."""
    rng = np.random.default_rng(seed)
    heading = np.cumsum(rng.normal(0.0, 0.25, n))
    step = rng.uniform(3.0, 40.0, n)
    x, y = np.cumsum(step * np.cos(heading)), np.cumsum(step * np.sin(heading))
    lat0 = 26.87
    return np.column_stack((lat0 + y / M_PER_DEG, 100.23 + x / (M_PER_DEG * math.cos(math.radians(lat0)))))


@pytest.mark.parametrize(("seed", "corridor"), [(1, 50.0), (2, 400.0), (3, 1000.0), (4, 5000.0)])
def test_cover_of_the_simplified_line_covers_the_corridor_of_the_raw_line(seed: int, corridor: float) -> None:
    raw = wiggly(3000, seed)
    tol = simplify_tolerance_m(corridor)
    simple = simplify_line(raw, tol)
    assert 2 <= len(simple) < len(raw)
    assert tuple(simple[0]) == pytest.approx(tuple(raw[0])) and tuple(simple[-1]) == pytest.approx(
        tuple(raw[-1])
    )
    assert corridor_positions(simple, raw).offset_m.max() <= tol * 1.001 + 0.01  # within the tolerance
    cover = corridor_cells(simple, corridor, tolerance_m=tol)
    assert cover.cells is not None
    cells = set(cover.cells)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(raw), 4000)
    ang = rng.uniform(0, 2 * math.pi, 4000)
    dist = rng.uniform(0, 1.2 * corridor, 4000)
    lat = raw[i, 0] + dist * np.sin(ang) / M_PER_DEG
    lon = raw[i, 1] + dist * np.cos(ang) / (M_PER_DEG * np.cos(np.radians(raw[i, 0])))
    pos = corridor_positions(raw, np.column_stack((lat, lon)))
    inside = 0
    west, south, east, north = cover.bbox
    for la, lo, off in zip(lat.tolist(), lon.tolist(), pos.offset_m.tolist(), strict=True):
        if off <= corridor:
            inside += 1
            assert h3.str_to_int(h3.latlng_to_cell(la, lo, cover.res)) in cells, (la, lo, off)
            assert west <= lo <= east and south <= la <= north
    assert inside > 1000


def test_line_length_is_the_haversine_sum() -> None:
    line = [A, B, A]
    assert line_length_m(line) == pytest.approx(2 * haversine_m(*A, *B), rel=1e-12)
    assert line_length_m([A]) == 0.0


def test_cover_of_a_long_scribble_stays_bounded() -> None:
    """A line far longer than any route folds over itself: the cover is capped (or falls back to
    the bounding box), never a union of thousands of buffers."""
    pts = np.array([(p[1], p[0]) for p in scribble(1250)])
    cover = corridor_cells(pts, 5000.0)
    assert cover.cells is None or len(cover.cells) <= 60_000
    w, s, e, n = cover.bbox
    assert w <= pts[:, 1].min() and e >= pts[:, 1].max() and s <= pts[:, 0].min() and n >= pts[:, 0].max()


def test_budget_checks() -> None:
    b = Budget(60.0, what="the search")
    b.check()
    b.check(param="geometry")
    spent = Budget(0.0, what="the 2 x 2 matrix")
    with pytest.raises(BudgetExceeded, match="the 2 x 2 matrix did not finish within"):
        spent.check()
    from geo import InvalidInput

    with pytest.raises(InvalidInput) as ei:
        spent.check(param="geometry")
    assert ei.value.param == "geometry" and "budget" in ei.value.message


# ---- the router's matrix and the second legs under a budget ---------------------------------------
def test_router_matrix_and_legs_stop_between_searches_and_agree_within_budget() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from config import load_region
    from geo import Router, synthetic_graph
    from geo._ranking import legs_to
    from geo._traffic import TrafficProfile

    tz = ZoneInfo("Asia/Shanghai")
    dep = datetime(2026, 3, 10, 8, 10, tzinfo=tz)
    g = synthetic_graph(1500, seed=3)
    router = Router(g, profile=TrafficProfile.default(), holidays=load_region("lijiang").holidays, tz=tz)
    rng = np.random.default_rng(11)
    nodes = rng.integers(0, len(g.node_lat), 8)
    pts = [(float(g.node_lat[v]), float(g.node_lon[v])) for v in nodes]
    plain = router.matrix(pts[:4], pts[4:], depart_at=dep)
    assert np.isfinite(plain.durations_s).sum() >= 8
    roomy = router.matrix(pts[:4], pts[4:], depart_at=dep, budget=Budget(600.0, what="the 4 x 4 matrix"))
    assert np.array_equal(plain.durations_s, roomy.durations_s)
    assert np.array_equal(plain.distances_m, roomy.distances_m)
    with pytest.raises(BudgetExceeded, match="the 4 x 4 matrix did not finish"):
        router.matrix(pts[:4], pts[4:], depart_at=dep, budget=Budget(0.0, what="the 4 x 4 matrix"))
    one = router.matrix(pts[:1], pts[4:], depart_at=dep, budget=Budget(0.0, what="the 1 x 4 matrix"))
    assert np.array_equal(one.durations_s, plain.durations_s[:1])  # the first search always runs

    snaps = router.snap_many(pts[:4])
    dest = router.snapper.snap(*pts[7])
    departs = [dep.timestamp()] * 4
    free, _ = legs_to(router, snaps, dest, depart_at=departs)
    kept, _ = legs_to(router, snaps, dest, depart_at=departs, budget=Budget(600.0, what="the legs"))
    assert np.array_equal(free, kept)
    with pytest.raises(BudgetExceeded):
        legs_to(router, snaps, dest, depart_at=departs, budget=Budget(0.0, what="the legs"))
