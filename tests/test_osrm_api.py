"""The OSRM v5 services (route, table, nearest) over HTTP against the demo region (Andorra), checked
against OSRM's docs/http.md: shapes, options, error codes, bounded requests; and the depart bearing bar
on 200 seeded routes."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from geo import RouteNotFound, bearing_deg, haversine_m
from geo._polyline import decode, encode, point_at
from geo._router import MAX_ALTERNATIVES

TZ = ZoneInfo("Europe/Andorra")
A = (42.5063, 1.5218)  # Andorra la Vella (lat, lon)
B = (42.5347, 1.5800)  # Encamp
C = (42.5447, 1.5148)  # La Massana


def ll(*pts: tuple[float, float]) -> str:
    return ";".join(f"{p[1]},{p[0]}" for p in pts)


def ok(client, path: str, **params: str):  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["code"] == "Ok"
    return d


def err(client, path: str, code: str, **params: str) -> str:  # type: ignore[no-untyped-def]
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == code, body
    assert set(body) == {"code", "message"} and body["message"]
    return str(body["message"])


def step_coords(step: dict) -> list[list[float]]:  # type: ignore[type-arg]
    return [list(c) for c in step["geometry"]["coordinates"]]


def test_three_waypoints_two_legs_steps_on_the_route(client) -> None:  # type: ignore[no-untyped-def]
    d = ok(client, f"/route/v1/driving/{ll(A, C, B)}", steps="true", geometries="geojson", overview="full")
    route = d["routes"][0]
    assert len(route["legs"]) == 2 and len(d["waypoints"]) == 3
    assert route["distance"] == pytest.approx(sum(leg["distance"] for leg in route["legs"]), abs=0.2)
    for w in d["waypoints"]:
        assert w["hint"] and isinstance(w["name"], str) and w["distance"] < 200
    assert any(w["name"] for w in d["waypoints"])
    line = route["geometry"]["coordinates"]
    drawn: list[list[float]] = []
    for leg in route["legs"]:
        steps = leg["steps"]
        assert steps[0]["maneuver"]["type"] == "depart" and steps[-1]["maneuver"]["type"] == "arrive"
        assert leg["summary"]
        for s in steps:
            coords = step_coords(s)
            assert len(coords) >= 2
            assert s["intersections"], s
            m = s["maneuver"]
            assert all(
                0 <= m[k] <= 359 and isinstance(m[k], int) for k in ("bearing_before", "bearing_after")
            )
            for x in s["intersections"]:
                assert all(0 <= b <= 359 for b in x["bearings"]) and len(x["entry"]) == len(x["bearings"])
                if "out" in x:
                    assert 0 <= x["out"] < len(x["bearings"])
                if "in" in x:
                    assert 0 <= x["in"] < len(x["bearings"])
            assert s["intersections"][0]["location"] == pytest.approx(m["location"], abs=1e-6)
            for c in coords:
                if not drawn or c != drawn[-1]:
                    drawn.append(c)
        assert sum(s["distance"] for s in steps) == pytest.approx(leg["distance"], abs=1.0)
    assert drawn == [list(c) for c in dict.fromkeys(tuple(c) for c in line)] or drawn == line
    # the intermediate arrive is the waypoint, the last the destination
    assert route["legs"][0]["steps"][-1]["maneuver"]["location"] == d["waypoints"][1]["location"]


def test_step_geometry_follows_the_road_not_single_points(client) -> None:  # type: ignore[no-untyped-def]
    d = ok(client, f"/route/v1/car/{ll(A, B)}.json", steps="true", overview="full")
    route = d["routes"][0]
    full = decode(route["geometry"])
    pieces = [decode(s["geometry"]) for s in route["legs"][0]["steps"]]
    assert sum(len(p) for p in pieces) >= len(full)  # every vertex is in some step
    joined = [pt for p in pieces for pt in p]
    assert set(full) <= set(joined)


def test_depart_bearing_is_the_route_start_on_200_routes(client) -> None:  # type: ignore[no-untyped-def]
    r = client.app.state.fuel.router
    g = r.g
    rng = np.random.default_rng(2026)
    good = total = 0
    while total < 200:
        e1, e2 = (int(x) for x in rng.integers(g.n_road_edges, size=2))
        pa = point_at(g.edge_polyline(e1)[:, 0], g.edge_polyline(e1)[:, 1], float(rng.random()))
        pb = point_at(g.edge_polyline(e2)[:, 0], g.edge_polyline(e2)[:, 1], float(rng.random()))
        try:
            res = r.route(pa, pb, depart_at=datetime(2026, 3, 10, 11, 0, tzinfo=TZ))
        except RouteNotFound:  # an unreachable pair is simply skipped
            continue
        if res.distance_m < 40:
            continue
        lat = np.array([p[0] for p in res.polyline])
        lon = np.array([p[1] for p in res.polyline])
        q = point_at(lat, lon, min(1.0, 20.0 / res.distance_m))
        want = bearing_deg(res.polyline[0][0], res.polyline[0][1], q[0], q[1])
        got = res.steps[0].bearing_after
        total += 1
        good += abs((got - want + 180) % 360 - 180) <= 30
    assert good >= 0.95 * total, (good, total)


def test_v1_route_depart_bearing_and_step_fields(client) -> None:  # type: ignore[no-untyped-def]
    d = client.get("/v1/route", params={"from": f"{A[0]},{A[1]}", "to": f"{B[0]},{B[1]}"}).json()
    first = d["steps"][0]
    coords = d["geometry"]["coordinates"]
    lat = np.array([c[1] for c in coords])
    lon = np.array([c[0] for c in coords])
    q = point_at(lat, lon, min(1.0, 20.0 / d["distance_m"]))
    want = bearing_deg(lat[0], lon[0], q[0], q[1])
    assert abs((first["bearing_after"] - want + 180) % 360 - 180) <= 30
    assert {"type", "modifier", "ref", "bearing_before", "bearing_after"} <= set(first)
    assert first["type"] == "depart" and d["steps"][-1]["type"] == "arrive"
    assert all(s["type"] != "turn" or s["modifier"] for s in d["steps"])


def test_alternatives_number_and_cap(client) -> None:  # type: ignore[no-untyped-def]
    d = ok(client, f"/route/v1/driving/{ll(A, B)}", alternatives=str(MAX_ALTERNATIVES))
    assert 1 <= len(d["routes"]) <= MAX_ALTERNATIVES + 1
    durations = [x["duration"] for x in d["routes"]]
    assert durations[0] == min(durations)
    t = ok(client, f"/route/v1/driving/{ll(A, B)}", alternatives="true")
    assert 1 <= len(t["routes"]) <= 2
    err(client, f"/route/v1/driving/{ll(A, B)}", "TooBig", alternatives=str(MAX_ALTERNATIVES + 1))
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", alternatives="many")


def test_polyline_coordinates_and_json_suffix(client) -> None:  # type: ignore[no-untyped-def]
    plain = ok(client, f"/route/v1/driving/{ll(A, B)}", overview="false")
    p5 = ok(client, f"/route/v1/driving/polyline({encode([A, B])}).json", overview="false")
    p6 = ok(client, f"/route/v1/bike/polyline6({encode([A, B], precision=6)})", overview="false")
    assert "geometry" not in plain["routes"][0]
    for other in (p5, p6):
        assert other["routes"][0]["distance"] == pytest.approx(plain["routes"][0]["distance"], rel=0.02)
    err(client, "/route/v1/driving/polyline(ab c)", "InvalidUrl")


def test_annotations(client) -> None:  # type: ignore[no-untyped-def]
    d = ok(
        client, f"/route/v1/driving/{ll(A, C, B)}", annotations="true", overview="full", geometries="geojson"
    )
    n_coords = len(d["routes"][0]["geometry"]["coordinates"])
    total = 0
    for leg in d["routes"][0]["legs"]:
        ann = leg["annotation"]
        n = len(ann["distance"])
        assert len(ann["duration"]) == len(ann["speed"]) == len(ann["weight"]) == len(ann["datasources"]) == n
        assert len(ann["nodes"]) == n + 1 and all(isinstance(x, int) and x > 0 for x in ann["nodes"])
        assert sum(ann["distance"]) == pytest.approx(leg["distance"], rel=0.01)
        assert sum(ann["duration"]) == pytest.approx(leg["duration"], rel=0.01, abs=1)
        assert ann["metadata"]["datasource_names"]
        total += n
    assert total == n_coords - 1  # legs share their joining point
    some = ok(client, f"/route/v1/driving/{ll(A, B)}", annotations="distance,speed")
    assert set(some["routes"][0]["legs"][0]["annotation"]) == {"distance", "speed"}
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", annotations="colour")


def test_radiuses_bearings_approaches_hints(client) -> None:  # type: ignore[no-untyped-def]
    base = ok(client, f"/route/v1/driving/{ll(A, B)}")
    snap_a = base["waypoints"][0]["distance"]
    assert snap_a > 1
    msg = err(client, f"/route/v1/driving/{ll(A, B)}", "NoSegment", radiuses=f"{snap_a / 2:.2f};")
    assert "coordinate 0" in msg
    wide = ok(client, f"/route/v1/driving/{ll(A, B)}", radiuses=f"{snap_a + 5:.2f};unlimited")
    assert wide["waypoints"][0]["location"] == base["waypoints"][0]["location"]
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidOptions", radiuses="10")
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidOptions", radiuses="-1;")
    # bearings and approaches on a straight two-way road: they choose the direction of departure
    r = client.app.state.fuel.router
    g = r.g
    npts = np.diff(g.edge_geom_offsets)
    e = int(np.flatnonzero((npts == 2) & (g.edge_length_m > 150) & (r._rev >= 0))[0])
    (la0, lo0), (la1, lo1) = g.edge_polyline(e)
    b = bearing_deg(la0, lo0, la1, lo1)
    mid = ((la0 + la1) / 2, (lo0 + lo1) / 2)
    for want in (b, (b + 180) % 360):
        got = ok(client, f"/route/v1/driving/{ll(mid, B)}", steps="true", bearings=f"{round(want)},20;")
        after = got["routes"][0]["legs"][0]["steps"][0]["maneuver"]["bearing_after"]
        assert abs((after - want + 180) % 360 - 180) <= 20
    # 8 m to the right of the road (facing b): at the curb the car departs facing b, opposite it faces back
    k = math.cos(math.radians(mid[0]))
    right = math.radians(b + 90)
    off = (mid[0] + 8 * math.cos(right) / 111_195, mid[1] + 8 * math.sin(right) / (111_195 * k))
    for approach, want in (("curb", b), ("opposite", (b + 180) % 360)):
        got = ok(client, f"/route/v1/driving/{ll(off, B)}", steps="true", approaches=f"{approach};")
        after = got["routes"][0]["legs"][0]["steps"][0]["maneuver"]["bearing_after"]
        assert abs((after - want + 180) % 360 - 180) <= 20
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidOptions", bearings="400,10;")
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", bearings="north;")
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", approaches="left;")
    hints = ";".join(w["hint"] for w in base["waypoints"])
    again = ok(client, f"/route/v1/driving/{ll(A, B)}", hints=hints)
    assert again["routes"][0]["distance"] == pytest.approx(base["routes"][0]["distance"], rel=0.01)
    ok(client, f"/route/v1/driving/{ll(A, B)}", hints=";")  # Leaflet Routing Machine's first request
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", hints="no way!;")
    nohint = ok(client, f"/route/v1/driving/{ll(A, B)}", generate_hints="false")
    assert all("hint" not in w for w in nohint["waypoints"])
    assert "waypoints" not in ok(client, f"/route/v1/driving/{ll(A, B)}", skip_waypoints="true")


def test_exclude_and_continue_straight(client) -> None:  # type: ignore[no-untyped-def]
    for cls in ("motorway", "toll", "ferry", "motorway,toll"):
        ok(client, f"/route/v1/driving/{ll(A, B)}", exclude=cls)
    msg = err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidValue", exclude="tunnel")
    assert "tunnel" in msg
    free = ok(client, f"/route/v1/driving/{ll(A, C, B)}", continue_straight="false")
    straight = ok(client, f"/route/v1/driving/{ll(A, C, B)}", continue_straight="true")
    assert straight["routes"][0]["duration"] >= free["routes"][0]["duration"] - 1
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", continue_straight="maybe")


def test_route_errors_are_osrm_errors(client) -> None:  # type: ignore[no-untyped-def]
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", colour="red")
    err(client, "/route/v1/driving/1.5,95.0;1.6,42.5", "InvalidValue")
    err(client, "/route/v1/driving/181,42.5;1.6,42.5", "InvalidValue")
    err(client, "/route/v1/driving/abc;1.6,42.5", "InvalidQuery")
    err(client, "/route/v1/driving/1.5,42.5", "InvalidOptions")
    err(client, "/route/v1/driving/1.5,41.0;1.58,42.53", "NoSegment")
    err(client, "/route/v2/driving/1.5,42.5;1.6,42.5", "InvalidVersion")
    err(client, "/fly/v1/driving/1.5,42.5;1.6,42.5", "InvalidService")
    err(client, "/match/v1/driving/1.5,42.5;1.6,42.5", "InvalidService")
    err(client, "/route/v1/driving", "InvalidUrl")
    err(client, f"/route/v1/driving/{ll(A, B)}.flatbuffers", "NotImplemented")
    err(client, f"/route/v1/driving/{ll(A, C, B)}", "NotImplemented", waypoints="0;2")
    err(client, f"/route/v1/driving/{ll(A, C, B)}", "InvalidValue", waypoints="1;2")
    ok(client, f"/route/v1/driving/{ll(A, C, B)}", waypoints="0;1;2")
    many = ";".join([f"{A[1]},{A[0]}"] * 26)
    err(client, f"/route/v1/driving/{many}", "TooBig")


def test_table_service(client) -> None:  # type: ignore[no-untyped-def]
    coords = ll(A, B, C)
    d = ok(client, f"/table/v1/driving/{coords}", annotations="duration,distance")
    assert len(d["durations"]) == 3 and all(len(row) == 3 for row in d["durations"])
    assert all(d["durations"][i][i] == 0 for i in range(3))
    assert len(d["sources"]) == 3 and len(d["destinations"]) == 3 and d["sources"][0]["hint"]
    route = ok(client, f"/route/v1/driving/{ll(A, B)}")["routes"][0]
    assert d["distances"][0][1] == pytest.approx(route["distance"], rel=0.05)
    sub = ok(client, f"/table/v1/driving/{coords}", sources="0", destinations="2;1")
    assert "distances" not in sub and len(sub["durations"]) == 1 and len(sub["durations"][0]) == 2
    assert sub["durations"][0][1] == pytest.approx(d["durations"][0][1], rel=0.05, abs=2)
    twice = ok(client, f"/table/v1/driving/{coords}", sources="0", destinations="1", scale_factor="2")
    assert twice["durations"][0][0] == pytest.approx(2 * sub["durations"][0][1], rel=0.05, abs=2)
    fb = ok(client, f"/table/v1/driving/{coords}", fallback_speed="10")
    assert fb["fallback_speed_cells"] == []
    err(client, f"/table/v1/driving/{coords}", "InvalidOptions", sources="5")
    err(client, f"/table/v1/driving/{coords}", "InvalidQuery", sources="a")
    err(client, f"/table/v1/driving/{coords}", "InvalidOptions", fallback_speed="0")
    err(client, f"/table/v1/driving/{coords}", "InvalidQuery", annotations="speed")
    big = ";".join([f"{A[1]},{A[0]}"] * 51)
    err(client, f"/table/v1/driving/{big}", "TooBig")  # 51 x 51 > max_matrix_cells (2500)
    err(client, "/table/v1/driving/1.5,41.0;1.58,42.53", "NoSegment")


def test_nearest_service(client) -> None:  # type: ignore[no-untyped-def]
    d = ok(client, f"/nearest/v1/driving/{ll(A)}.json", number="3")
    wps = d["waypoints"]
    assert 1 <= len(wps) <= 3
    dists = [w["distance"] for w in wps]
    assert dists == sorted(dists)
    for w in wps:
        assert len(w["nodes"]) == 2 and all(isinstance(x, int) and x > 0 for x in w["nodes"]) and w["hint"]
        lon, lat = w["location"]
        assert haversine_m(A[0], A[1], lat, lon) == pytest.approx(w["distance"], abs=0.5)
    one = ok(client, f"/nearest/v1/foot/{ll(A)}")
    assert one["waypoints"][0]["location"] == wps[0]["location"]
    err(client, f"/nearest/v1/driving/{ll(A)}", "TooBig", number="1000")
    err(client, f"/nearest/v1/driving/{ll(A, B)}", "InvalidOptions")
    err(client, f"/nearest/v1/driving/{ll(A)}", "InvalidQuery", number="zero")
    err(client, "/nearest/v1/driving/1.5,41.0", "NoSegment")


def test_any_profile_name(client) -> None:  # type: ignore[no-untyped-def]
    for profile in ("driving", "car", "mapbox/driving-traffic".replace("/", "-")):
        d = ok(client, f"/route/v1/{profile}/{ll(A, B)}")
        assert math.isfinite(d["routes"][0]["duration"])


def test_options_are_in_the_openapi_schema(client) -> None:  # type: ignore[no-untyped-def]
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/route/v1/{profile}/{coordinates}"]["get"]
    names = {p["name"] for p in op["parameters"]}
    assert {"profile", "coordinates", "alternatives", "steps", "radiuses", "exclude"} <= names
    assert "400" in op["responses"]
    assert (
        "/table/v1/{profile}/{coordinates}" in spec["paths"]
        and "/nearest/v1/{profile}/{coordinates}" in spec["paths"]
    )


def test_vehicle_option(client) -> None:  # type: ignore[no-untyped-def]
    car = ok(client, f"/route/v1/driving/{ll(A, B)}")
    truck = ok(client, f"/route/v1/driving/{ll(A, B)}", vehicle="truck", height_m="4", weight_t="18")
    assert truck["routes"][0]["distance"] >= car["routes"][0]["distance"] - 1.0
    assert "height_m" in err(
        client, f"/route/v1/driving/{ll(A, B)}", "InvalidValue", vehicle="truck", height_m="99"
    )
    assert "vehicle" in err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidValue", vehicle="tank")
    err(client, f"/route/v1/driving/{ll(A, B)}", "InvalidQuery", vehicle="truck", weight_t="heavy")
    err(client, f"/table/v1/driving/{ll(A, B)}", "InvalidQuery", vehicle="truck")  # route service only
