"""The OSRM-compatible API with real OSRM clients against a real uvicorn server (demo region, Andorra):
routingpy's OSRM client (via points, alternatives, matrix) and osrm-text-instructions (node), which must
compile every step of a route set in English and Simplified Chinese. The hand-drawn town of
tests/test_guidance.py adds the maneuvers Andorra lacks (ramps, merge, end of road, continue)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from routingpy import OSRM

from api._osrm import _route
from config import PROJECT_ROOT, load_region
from geo._build import build_graph
from geo._router import Router
from geo._traffic import TrafficProfile
from tests._servers import Server
from tests.test_guidance import TZ, at, town_xml

A = (1.5218, 42.5063)  # lon, lat: Andorra la Vella
B = (1.5800, 42.5347)  # Encamp
C = (1.5148, 42.5447)  # La Massana
NODE = shutil.which("node") or "/usr/bin/node"
WEB = PROJECT_ROOT / "web"
SCRIPT = Path(__file__).with_name("osrm_text_instructions.js")


@pytest.fixture(scope="module")
def server(demo_db: str) -> Iterator[str]:
    s = Server(demo_db, FUEL_REGION="andorra")
    try:
        yield s.base
    finally:
        s.close()


def test_routingpy_directions_with_via_points(server: str) -> None:
    client = OSRM(base_url=server)
    d = client.directions(
        locations=[list(A), list(C), list(B)],
        profile="driving",
        steps=True,
        geometries="geojson",
        overview="full",
    )
    raw = d.raw["routes"][0] if "routes" in d.raw else d.raw
    assert len(raw["legs"]) == 2
    assert d.distance == pytest.approx(sum(leg["distance"] for leg in raw["legs"]), abs=1)
    assert d.duration > 0 and len(d.geometry) >= 2
    assert d.geometry[0] == pytest.approx(raw["legs"][0]["steps"][0]["maneuver"]["location"], abs=1e-6)


def test_routingpy_alternatives(server: str) -> None:
    client = OSRM(base_url=server)
    alts = client.directions(locations=[list(A), list(B)], profile="driving", alternatives=True)
    routes = list(alts)
    assert 1 <= len(routes) <= 2
    assert routes[0].duration == min(r.duration for r in routes)
    three = list(client.directions(locations=[list(A), list(B)], profile="driving", alternatives=3))
    assert 1 <= len(three) <= 4


def test_routingpy_matrix(server: str) -> None:
    client = OSRM(base_url=server)
    m = client.matrix(
        locations=[list(A), list(B), list(C)], profile="driving", sources=[0], destinations=[1, 2]
    )
    assert np.asarray(m.durations).shape == (1, 2) and np.asarray(m.distances).shape == (1, 2)
    assert all(v > 0 for v in m.durations[0]) and all(v > 0 for v in m.distances[0])
    route = OSRM(base_url=server).directions(locations=[list(A), list(B)], profile="driving")
    assert m.distances[0][0] == pytest.approx(route.distance, rel=0.05)


def _node_compile(responses: list[dict[str, Any]], languages: list[str]) -> list[dict[str, Any]]:
    if not Path(NODE).is_file():
        pytest.skip(f"node is not installed at {NODE}")
    if not (WEB / "node_modules" / "osrm-text-instructions" / "package.json").is_file():
        subprocess.run(["make", "-s", "-C", str(WEB), "deps"], check=True, timeout=300)
    run = subprocess.run(
        [NODE, str(SCRIPT)],
        input=json.dumps({"languages": languages, "responses": responses}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out: list[dict[str, Any]] = json.loads(run.stdout)
    return out


def _town_responses(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "town.osm"
    path.write_text(town_xml(), encoding="utf-8")
    region = load_region("lijiang")
    r = Router(
        build_graph(path, speeds_kmh=region.speeds_kmh),
        profile=TrafficProfile.default(),
        holidays=region.holidays,
        tz=TZ,
    )
    trips = [
        ((-4, 0), (6, 2)),
        ((-4, 0), (0, 2)),
        ((-4, 0), (2, -3)),
        ((-4, 0), (-8, 1.5)),
        ((-8, 1.5), (6, 2)),
    ]
    out = []
    for a, b in trips:
        legs = r.route_legs([r.snapper.snap(*at(*a)), r.snapper.snap(*at(*b))], depart_at=datetime(2026, 3, 11, 3, tzinfo=TZ))[0]  # fmt: skip
        out.append({"code": "Ok", "routes": [_route(r, legs, steps=True, kind="polyline", overview="full", annotations=[])]})  # fmt: skip
    return out


def test_osrm_text_instructions_compile_every_step(server: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    west, south, east, north = 1.43, 42.45, 1.65, 42.60
    responses = []
    with httpx.Client(base_url=server, timeout=30) as h:
        for params in ({"alternatives": "2"}, {}):
            r = h.get(f"/route/v1/driving/{A[0]},{A[1]};{C[0]},{C[1]};{B[0]},{B[1]}", params={"steps": "true", **params})  # fmt: skip
            assert r.status_code == 200, r.text
            responses.append(r.json())
        while len(responses) < 24:
            pts = [(rng.uniform(west, east), rng.uniform(south, north)) for _ in range(2)]
            coords = ";".join(f"{x:.6f},{y:.6f}" for x, y in pts)
            r = h.get(f"/route/v1/driving/{coords}", params={"steps": "true", "radiuses": "1000;1000"})
            if r.status_code == 200:
                responses.append(r.json())
    town = _town_responses(tmp_path)
    compiled = _node_compile(responses + town, ["en", "zh-Hans"])
    n_steps = sum(len(leg["steps"]) for resp in responses + town for route in resp["routes"] for leg in route["legs"])  # fmt: skip
    assert len(compiled) == n_steps
    assert all(c["text"]["en"] and c["text"]["zh-Hans"] for c in compiled)
    types = {c["type"] for c in compiled}
    assert {
        "depart",
        "arrive",
        "roundabout",
        "exit roundabout",
        "new name",
        "end of road",
        "continue",
    } <= types
    assert {"on ramp", "off ramp", "merge", "fork"} <= types
    first_town = [c for c in compiled if c["route"] == len(responses)]
    rb = next(c for c in first_town if c["type"] == "roundabout")
    assert "2nd exit" in rb["text"]["en"] and "第二出口" in rb["text"]["zh-Hans"]
    assert "北路" in rb["text"]["zh-Hans"] and "North Road" not in rb["text"]["zh-Hans"]
    unnamed_ref = [c for c in compiled if c["route"] == len(responses) + 1 and c["type"] == "roundabout"]
    assert "S303" in unnamed_ref[0]["text"]["en"]
