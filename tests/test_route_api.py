"""The routing API over HTTP against the demo region: /v1/route, OSRM, /v1/matrix, /v1/traffic."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from geo import from_wgs84, haversine_m
from geo._polyline import decode
from tests._servers import TEST_ADMIN_KEY

TZ = ZoneInfo("Asia/Shanghai")
A = (42.5063, 1.5218)  # Andorra la Vella
B = (42.5347, 1.5800)  # Encamp
C = (42.5447, 1.5148)  # La Massana
FEED = {"X-API-Key": TEST_ADMIN_KEY}  # live traffic is posted with an operator (or traffic) key


def q(p: tuple[float, float]) -> str:
    return f"{p[0]},{p[1]}"


def test_route_shape_and_consistency(client) -> None:  # type: ignore[no-untyped-def]
    params = {"from": q(A), "to": q(B), "depart_at": "2026-11-25T03:00:00", "geometries": "all"}
    r = client.get("/v1/route", params=params)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["distance_m"] > haversine_m(*A, *B)  # a road route is longer than the straight line
    assert d["duration_s"] >= d["duration_free_flow_s"] - 1e-6
    assert math.isclose(d["delay_s"], d["duration_s"] - d["duration_free_flow_s"], abs_tol=0.2)
    coords = d["geometry"]["coordinates"]
    assert len(coords) >= 2
    pts = decode(d["polyline6"], precision=6)
    assert len(pts) == len(coords)
    assert abs(pts[0][0] - coords[0][1]) < 1e-6 and abs(pts[-1][1] - coords[-1][0]) < 1e-6
    assert sum(s["distance_m"] for s in d["segments"]) == pytest.approx(d["distance_m"], rel=1e-3)
    assert sum(s["duration_s"] for s in d["segments"]) == pytest.approx(d["duration_s"], rel=1e-3, abs=1)
    assert d["steps"][0]["maneuver"] == "depart" and d["steps"][-1]["maneuver"] == "arrive"
    assert all(s["text_zh"] and s["text_en"] for s in d["steps"])
    assert d["snap"]["from"]["distance_m"] < 200
    arrive = datetime.fromisoformat(d["arrive_at"])
    depart = datetime.fromisoformat(d["depart_at"])
    assert (arrive - depart).total_seconds() == pytest.approx(d["duration_s"], abs=1)


def test_peak_is_slower_than_night(client) -> None:  # type: ignore[no-untyped-def]
    night = client.get(
        "/v1/route", params={"from": q(A), "to": q(B), "depart_at": "2026-11-25T03:00:00"}
    ).json()
    peak = client.get(
        "/v1/route", params={"from": q(A), "to": q(B), "depart_at": "2026-11-25T08:15:00"}
    ).json()
    assert peak["duration_s"] > night["duration_s"]


def test_gcj02_in_and_out(client) -> None:  # type: ignore[no-untyped-def]
    # Andorra is outside China, where GCJ-02 is the identity; use the conversion anyway to prove the path.
    w = client.get("/v1/route", params={"from": q(A), "to": q(B), "depart_at": "2026-11-25T03:00:00"}).json()
    ga, gb = from_wgs84(*A, "gcj02"), from_wgs84(*B, "gcj02")
    g = client.get(
        "/v1/route", params={"from": q(ga), "to": q(gb), "coord": "gcj02", "depart_at": "2026-11-25T03:00:00"}
    ).json()
    assert g["coord"] == "gcj02"
    assert g["distance_m"] == pytest.approx(w["distance_m"], rel=1e-6)


def test_alternatives_are_different_and_bounded(client) -> None:  # type: ignore[no-untyped-def]
    d = client.get(
        "/v1/route", params={"from": q(A), "to": q(B), "alternatives": 2, "depart_at": "2026-11-25T10:00:00"}
    ).json()
    assert len(d["alternatives"]) <= 2
    for alt in d["alternatives"]:
        assert alt["overlap"] < 0.7 and 1.0 <= alt["stretch"] <= 1.4 + 1e-9
        assert alt["duration_s"] >= d["duration_s"] - 1e-6


def test_wechat_format(client) -> None:  # type: ignore[no-untyped-def]
    d = client.get(
        "/v1/route", params={"from": q(A), "to": q(B), "format": "wechat", "coord": "wgs84"}
    ).json()
    assert d["coord"] == "gcj02"
    line = d["polyline"][0]
    assert {"points", "color", "width"} <= set(line)
    assert {"latitude", "longitude"} == set(line["points"][0])


def test_same_point_is_a_zero_route(client) -> None:  # type: ignore[no-untyped-def]
    d = client.get("/v1/route", params={"from": q(A), "to": q(A)}).json()
    assert d["distance_m"] == 0 and d["duration_s"] == 0


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"to": "42.5,1.5"}, "from"),
        ({"from": "91,1.5", "to": "42.5,1.5"}, "from"),
        ({"from": "42.5,181", "to": "42.5,1.5"}, "from"),
        ({"from": "nan,1.5", "to": "42.5,1.5"}, "from"),
        ({"from": "42.5", "to": "42.5,1.5"}, "from"),
        ({"from": "42.5,1.5", "to": "inf,1.5"}, "to"),
        ({"from": "42.5,1.5", "to": "42.5,1.6", "depart_at": "tomorrow"}, "depart_at"),
        ({"from": "42.5,1.5", "to": "42.5,1.6", "alternatives": "5"}, "alternatives"),
        ({"from": "42.5,1.5", "to": "42.5,1.6", "coord": "utm"}, "coord"),
        ({"from": "42.5,1.5", "to": "42.5,1.6", "format": "xml"}, "format"),
        ({"from": "41.0,1.5", "to": "42.5,1.6"}, "from"),  # no road within 1 km
    ],
)
def test_route_bad_input_is_422_naming_the_param(client, params: dict[str, str], param: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/route", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_osrm_compatible(client) -> None:  # type: ignore[no-untyped-def]
    path = f"/route/v1/driving/{A[1]},{A[0]};{B[1]},{B[0]}"
    d = client.get(path, params={"steps": "true", "geometries": "polyline6", "overview": "full"}).json()
    assert d["code"] == "Ok"
    route = d["routes"][0]
    assert route["distance"] > 0 and route["legs"][0]["steps"][0]["maneuver"]["type"] == "depart"
    assert decode(route["geometry"], precision=6)
    gj = client.get(path, params={"geometries": "geojson"}).json()
    assert gj["routes"][0]["geometry"]["type"] == "LineString"
    assert len(d["waypoints"]) == 2
    bad = client.get("/route/v1/driving/1.5,42.5", params={})
    assert bad.status_code == 400 and bad.json()["code"] == "InvalidOptions"  # OSRM: fewer than two
    far = client.get("/route/v1/driving/1.5,41.0;1.58,42.53")
    assert far.status_code == 400 and far.json()["code"] == "NoSegment"


def test_matrix_matches_routes(client) -> None:  # type: ignore[no-untyped-def]
    at = "2026-11-25T08:00:00+08:00"
    body = {"sources": [list(A), list(C)], "targets": [list(B), list(C)], "depart_at": at}
    m = client.post("/v1/matrix", json=body).json()
    assert m["durations_s"][1][1] == 0
    single = client.get("/v1/route", params={"from": q(A), "to": q(B), "depart_at": at}).json()
    assert m["durations_s"][0][0] == pytest.approx(single["duration_s"], rel=1e-6, abs=0.2)


def test_matrix_cap_and_bad_points(client) -> None:  # type: ignore[no-untyped-def]
    big = {"sources": [list(A)] * 60, "targets": [list(B)] * 60}
    r = client.post("/v1/matrix", json=big)
    assert r.status_code == 422 and "cap" in r.json()["error"]["message"]
    r = client.post("/v1/matrix", json={"sources": [[95, 1.5]]})
    assert r.status_code == 422 and r.json()["error"]["param"].startswith("sources")
    r = client.post("/v1/matrix", json={"sources": []})
    assert r.status_code == 422


def test_live_closure_changes_the_route_and_bad_batch_applies_nothing(client) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(TZ)
    # one departure for every route of the test: departing "now" twice, seconds apart on a busy machine,
    # is two departures whose traffic-profile times differ (559.7 s against 559.8 s once in CI)
    params = {"from": q(A), "to": q(B), "geometries": "segments", "depart_at": now.isoformat()}
    before = client.get("/v1/route", params=params).json()
    # every edge of the middle third of the route is closed for 10 minutes
    segs = before["segments"]
    middle = [s["edge_id"] for s in segs[len(segs) // 3 : 2 * len(segs) // 3]] or [segs[0]["edge_id"]]
    bad = {
        "updates": [
            {"edge_id": middle[0], "closed": True, "observed_at": now.isoformat()},
            {"edge_id": 10**9, "factor": 0.5, "observed_at": now.isoformat()},
            {"edge_id": middle[0], "speed_kmh": -5, "observed_at": now.isoformat()},
            {"edge_id": middle[0], "factor": 0.5, "observed_at": (now + timedelta(hours=2)).isoformat()},
        ]
    }
    r = client.post("/v1/traffic", json=bad, headers=FEED)
    assert r.status_code == 422
    msg = r.json()["error"]["message"]
    assert "[1]" in msg and "[2]" in msg and "[3]" in msg and "none applied" in msg
    same = client.get("/v1/route", params=params).json()
    assert same["duration_s"] == pytest.approx(before["duration_s"], rel=1e-9, abs=1e-6)

    expires = (now + timedelta(minutes=10)).isoformat()
    ok = {
        "updates": [
            {"edge_id": e, "closed": True, "observed_at": now.isoformat(), "expires_at": expires}
            for e in middle
        ]
    }
    r = client.post("/v1/traffic", json=ok, headers=FEED)
    assert r.status_code == 200, r.text
    assert r.json()["applied"] == len(middle)
    after = client.get("/v1/route", params=params)
    if after.status_code == 200:
        used = {s["edge_id"] for s in after.json()["segments"]}
        assert not used & set(middle)
        assert after.json()["duration_s"] >= before["duration_s"] - 1e-6
    else:
        assert after.status_code == 404
    seen = client.get("/v1/traffic", params={"bbox": "1.40,42.42,1.80,42.66"}).json()
    closed = {e["edge_id"] for e in seen["edges"] if e["level"] == "closed"}
    assert set(middle) <= closed
    # reopen: a newer observation at free flow
    later = (now + timedelta(seconds=1)).isoformat()
    reopen = {"updates": [{"edge_id": e, "factor": 1.0, "observed_at": later} for e in middle]}
    assert client.post("/v1/traffic", json=reopen, headers=FEED).status_code == 200


def _limited_edge(client, column: int) -> tuple[int, tuple[float, float], tuple[float, float]]:  # type: ignore[no-untyped-def]
    """A road edge of the demo graph with a limit in `column` (0 height, 1 weight): id, its two junctions."""
    g = client.app.state.fuel.router.g
    e = int(np.flatnonzero(np.isfinite(g.edge_limits[:, column]))[0])
    u, v = int(g.edge_u[e]), int(g.edge_v[e])
    return e, (float(g.node_lat[u]), float(g.node_lon[u])), (float(g.node_lat[v]), float(g.node_lon[v]))


def test_route_for_a_van_keeps_off_a_weight_limited_road(client) -> None:  # type: ignore[no-untyped-def]
    e, a, b = _limited_edge(client, 1)
    limit = float(client.app.state.fuel.router.g.edge_limits[e, 1])
    params = {"from": q(a), "to": q(b), "depart_at": "2026-11-25T03:00:00", "geometries": "segments"}
    car = client.get("/v1/route", params=params)
    assert car.status_code == 200, car.text
    assert e in {s["edge_id"] for s in car.json()["segments"]}
    heavy = client.get("/v1/route", params=params | {"vehicle": "van", "weight_t": str(limit + 1.0)})
    if heavy.status_code == 200:
        assert e not in {s["edge_id"] for s in heavy.json()["segments"]}
    else:
        assert heavy.status_code == 404 and "van" in heavy.json()["error"]["message"], heavy.text
    light = client.get(
        "/v1/route", params=params | {"vehicle": "van", "weight_t": str(max(limit - 0.5, 0.5))}
    )
    assert light.status_code == 200 and e in {s["edge_id"] for s in light.json()["segments"]}


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"vehicle": "lorry"}, "vehicle"),
        ({"height_m": "4"}, "height_m"),  # dimensions need a van or a truck
        ({"vehicle": "truck", "height_m": "40"}, "height_m"),
        ({"vehicle": "truck", "weight_t": "heavy"}, "weight_t"),
        ({"vehicle": "van", "width_m": "0"}, "width_m"),
        ({"vehicle": "truck", "length_m": "nan"}, "length_m"),
    ],
)
def test_route_vehicle_bad_input_is_422_naming_the_param(client, params: dict[str, str], param: str) -> None:  # type: ignore[no-untyped-def]
    r = client.get("/v1/route", params={"from": q(A), "to": q(B)} | params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_route_sends_one_geometry_unless_asked(client) -> None:  # type: ignore[no-untyped-def]
    base = {"from": q(A), "to": q(B), "depart_at": "2026-11-25T03:00:00", "alternatives": "1"}
    default = client.get("/v1/route", params=base).json()
    full = client.get("/v1/route", params=base | {"geometries": "all"}).json()
    for d in (default, *default["alternatives"]):
        assert "geometry" in d and "polyline6" not in d and "segments" not in d
    for d in (full, *full["alternatives"]):
        assert {"geometry", "polyline6", "segments"} <= set(d)
    assert default["geometry"] == full["geometry"] and default["steps"] == full["steps"]
    only = client.get("/v1/route", params=base | {"geometries": "segments, polyline6"}).json()
    assert "geometry" not in only and only["polyline6"] == full["polyline6"]
    assert only["segments"] == full["segments"]
    bad = client.get("/v1/route", params=base | {"geometries": "wkt"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "geometries"


def test_json_is_gzipped_when_asked_and_small_answers_are_not(client) -> None:  # type: ignore[no-untyped-def]
    gz = {"Accept-Encoding": "gzip"}
    big = client.get("/v1/map/roads", params={"bbox": "1.48,42.48,1.56,42.53", "zoom": 14}, headers=gz)
    assert big.status_code == 200 and big.headers["content-encoding"] == "gzip"
    assert big.json()["type"] == "FeatureCollection"  # the client undid the compression
    assert int(big.headers["content-length"]) < len(big.content) / 3
    assert big.headers["x-content-type-options"] == "nosniff"  # the security headers are kept
    small = client.get("/health", headers=gz)
    assert small.status_code == 200 and "content-encoding" not in small.headers
    plain = client.get(
        "/v1/map/roads",
        params={"bbox": "1.48,42.48,1.56,42.53", "zoom": 14},
        headers={"Accept-Encoding": "identity"},
    )
    assert "content-encoding" not in plain.headers
    assert plain.json()["features"] == big.json()["features"]
    osrm = client.get(
        f"/route/v1/driving/{A[1]},{A[0]};{B[1]},{B[0]}", params={"overview": "full"}, headers=gz
    )
    assert osrm.status_code == 200 and osrm.json()["code"] == "Ok"
    bad = client.get("/v1/route", params={"from": "91,1", "to": q(B)}, headers=gz)
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "from"


def test_a_route_in_the_thread_pool_answers_as_on_the_loop(client, demo_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On road graphs above FUEL_ROUTE_ON_LOOP_MAX_NODES a route is computed in the thread pool: the
    same answer, alternatives and WeChat shape included."""
    from fastapi.testclient import TestClient

    import api._routing as routing
    from api.main import create_app

    handed: list[int] = []
    real = routing.run_sync

    async def counted(fn, *args):  # type: ignore[no-untyped-def]
        handed.append(1)
        return await real(fn, *args)

    monkeypatch.setattr(routing, "run_sync", counted)
    asks = [
        {
            "from": q(A),
            "to": q(B),
            "depart_at": "2026-11-25T03:00:00",
            "geometries": "all",
            "alternatives": 1,
        },
        {"from": q(A), "to": q(C), "depart_at": "2026-11-25T08:15:00", "format": "wechat"},
    ]
    on_loop = [client.get("/v1/route", params=p) for p in asks]
    assert not handed
    with TestClient(create_app(demo_settings.model_copy(update={"route_on_loop_max_nodes": 0}))) as threads:
        in_pool = [threads.get("/v1/route", params=p) for p in asks]
    assert len(handed) == len(asks)
    for x, y in zip(on_loop, in_pool, strict=True):
        assert x.status_code == y.status_code == 200, (x.text, y.text)
        assert x.json() == y.json()
