"""Turn-by-turn guidance on a hand-drawn town: roundabout exits, continue, new name, end of road, road
numbers, ramps and merges, exclusions, step geometry, bearings. The graph is built from OSM XML by the
real builder (geo._build), so `ref`, `junction=roundabout` and `toll` travel through the graph cache."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config import load_region
from geo import RouteNotFound
from geo._build import build_graph
from geo._graph import FLAG_ROUNDABOUT, FLAG_TOLL, CompiledGraph
from geo._router import Router
from geo._steps import MIN_DRIVEN_M, _bearings, heading
from geo._traffic import TrafficProfile

TZ = ZoneInfo("Asia/Shanghai")
DEP = datetime(2026, 3, 11, 3, 0, tzinfo=TZ)
LAT0, LON0 = 26.87, 100.23
U = 0.001  # one grid unit in degrees (about 111 m north-south)

# node id -> (north, east) in grid units
NODES = {
    1: (0.3, 0.0), 2: (0.212, -0.212), 3: (0.0, -0.3), 4: (-0.212, -0.212),  # roundabout, N W S E
    5: (-0.3, 0.0), 6: (-0.212, 0.212), 7: (0.0, 0.3), 8: (0.212, 0.212),
    20: (-5, 0), 21: (-3, 0), 30: (0, 3), 40: (3, 0), 41: (6, 0), 50: (6, -3), 51: (6, 3),
    60: (0, -3), 61: (3, -3), 62: (0, -6), 70: (7.5, 6), 71: (4.5, 6),
    200: (-8, -6), 201: (-8, -3), 202: (-8, 0), 203: (-8, 3), 204: (-8, 6),
    210: (-6.5, -3), 211: (-7.2, 4.2), 212: (-7, 6),
}  # fmt: skip
WAYS = [
    (100, [1, 2, 3, 4, 5, 6, 7, 8, 1], {"highway": "primary", "junction": "roundabout"}),
    (101, [20, 21, 5], {"highway": "primary", "name": "南路", "name:en": "South Road"}),
    (102, [7, 30], {"highway": "secondary", "ref": "S303"}),
    (103, [1, 40], {"highway": "primary", "name": "北路", "name:en": "North Road"}),
    (104, [40, 41], {"highway": "primary", "name": "玉龙路", "name:en": "Yulong Road"}),
    (105, [50, 41, 51], {"highway": "primary", "name": "丽江大道", "name:en": "Lijiang Avenue"}),
    (106, [3, 60, 61], {"highway": "primary", "name": "西路", "name:en": "West Road", "ref": "G214"}),
    (107, [60, 62], {"highway": "residential", "name": "小路", "name:en": "Lane"}),
    (108, [51, 70], {"highway": "secondary", "name": "花园路", "name:en": "Garden Road"}),
    (109, [51, 71], {"highway": "secondary", "name": "滨河路", "name:en": "Riverside Road"}),
    (110, [200, 201, 202, 203, 204], {"highway": "motorway", "name": "京昆高速", "ref": "G5", "toll": "yes"}),
    (111, [20, 210, 200], {"highway": "motorway_link", "oneway": "yes"}),
    (112, [203, 211, 20], {"highway": "motorway_link", "oneway": "yes"}),
    (113, [204, 212, 211], {"highway": "motorway_link", "oneway": "yes"}),
]


def town_xml(ring: dict[str, str] | None = None) -> str:
    """The town as OSM XML; `ring` replaces the roundabout's tags."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="tests">']
    for nid, (n, e) in NODES.items():
        lines.append(f'  <node id="{nid}" version="1" lat="{LAT0 + n * U:.7f}" lon="{LON0 + e * U:.7f}"/>')
    for wid, refs, tags in WAYS:
        tags = ring if ring is not None and wid == 100 else tags
        lines.append(f'  <way id="{wid}" version="1">')
        lines += [f'    <nd ref="{r}"/>' for r in refs]
        lines += [f'    <tag k="{k}" v="{v}"/>' for k, v in tags.items()]
        lines.append("  </way>")
    lines.append("</osm>")
    return "\n".join(lines)


def at(n: float, e: float) -> tuple[float, float]:
    return LAT0 + n * U, LON0 + e * U


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Router:
    path: Path = tmp_path_factory.mktemp("town") / "town.osm"
    path.write_text(town_xml(), encoding="utf-8")
    g = build_graph(path, speeds_kmh=load_region("lijiang").speeds_kmh)
    saved = tmp_path_factory.mktemp("cache") / "town.graph"
    g.save(saved)
    g = CompiledGraph.load(saved)  # what the service loads: the cache format keeps the guidance fields
    return Router(g, profile=TrafficProfile.default(), holidays=load_region("lijiang").holidays, tz=TZ)


def kinds(steps) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(s.type, s.modifier) for s in steps]


def test_graph_keeps_refs_roundabouts_and_tolls(town: Router) -> None:
    g = town.g
    assert set(g.refs) == {"S303", "G214", "G5"}
    ring = (g.edge_flags & FLAG_ROUNDABOUT) != 0
    assert ring.sum() == 4  # one-way ring: four edges between its four junctions
    assert ((g.edge_flags & FLAG_TOLL) != 0).sum() == 2  # the motorway: 200-203, 203-204
    assert g.geom_osm.shape == g.geom_lat.shape and set(NODES) >= set(g.geom_osm.tolist())


def test_roundabout_second_exit_new_name_end_of_road(town: Router) -> None:
    res = town.route(at(-4, 0), at(6, 2), depart_at=DEP)
    assert kinds(res.steps) == [
        ("depart", ""),
        ("roundabout", "straight"),
        ("exit roundabout", "straight"),
        ("new name", "straight"),
        ("end of road", "right"),
        ("arrive", ""),
    ]
    rb = res.steps[1]
    assert rb.exit == 2 and rb.name == "北路"
    assert rb.text_zh == "进入环岛，从第2出口驶出，进入北路"
    assert rb.text_en == "Enter the roundabout and take the 2nd exit onto North Road"
    assert (
        res.steps[0].text_zh == "从南路出发，向北行驶" and res.steps[0].text_en == "Head north on South Road"
    )
    assert res.steps[3].text_en == "Continue onto Yulong Road"
    assert res.steps[4].text_zh == "在道路尽头右转，进入丽江大道"
    assert res.steps[4].text_en == "At the end of the road, turn right onto Lijiang Avenue"


@pytest.mark.parametrize(("dest", "exit_no", "road_zh", "road_en"), [((0, 2), 1, "S303", "S303"), ((2, -3), 3, "西路（G214）", "West Road (G214)")])  # fmt: skip
def test_roundabout_exit_numbers_and_refs(town: Router, dest: tuple[float, float], exit_no: int, road_zh: str, road_en: str) -> None:  # fmt: skip
    res = town.route(at(-4, 0), at(*dest), depart_at=DEP)
    rb = next(s for s in res.steps if s.type == "roundabout")
    assert rb.exit == exit_no
    assert rb.text_zh.startswith(f"进入环岛，从第{exit_no}出口驶出，进入{road_zh}")
    assert rb.text_en.endswith(f"exit onto {road_en}")


def test_road_that_turns_is_continue_with_its_ref(town: Router) -> None:
    res = town.route(at(-4, 0), at(2, -3), depart_at=DEP)
    cont = [s for s in res.steps if s.type == "continue"]
    assert len(cont) == 1 and cont[0].modifier == "right" and cont[0].ref == "G214"
    assert cont[0].text_zh == "右转，继续沿西路（G214）行驶"
    assert cont[0].text_en == "Turn right to stay on West Road (G214)"


def test_on_ramp_merge_off_ramp(town: Router) -> None:
    onto = town.route(at(-4, 0), at(-8, 1.5), depart_at=DEP)
    assert [k for k, _ in kinds(onto.steps)] == ["depart", "on ramp", "merge", "arrive"]
    assert onto.steps[2].ref == "G5" and "G5" in onto.steps[2].text_zh
    assert onto.steps[0].bearing_after == pytest.approx(180, abs=2)  # heads south to the ramp
    off = town.route(at(-8, 1.5), at(6, 2), depart_at=DEP)
    types = [k for k, _ in kinds(off.steps)]
    assert types[:2] == ["depart", "off ramp"] and "roundabout" in types
    assert off.steps[1].modifier == "slight left"
    assert off.steps[1].text_en == "Take the exit on the left"


def test_traffic_circle_is_a_rotary_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "circle.osm"
    ring = {"highway": "primary", "junction": "circular", "name": "文化环岛", "name:en": "Culture Circle"}
    path.write_text(town_xml(ring), encoding="utf-8")
    region = load_region("lijiang")
    r = Router(build_graph(path, speeds_kmh=region.speeds_kmh), profile=TrafficProfile.default(), holidays=region.holidays, tz=TZ)  # fmt: skip
    res = r.route(at(-4, 0), at(6, 2), depart_at=DEP)
    rot = res.steps[1]
    assert (rot.type, rot.exit, rot.rotary_name) == ("rotary", 2, "文化环岛")
    assert rot.text_zh == "进入文化环岛，从第2出口驶出，进入北路"
    assert rot.text_en == "Enter Culture Circle and take the 2nd exit onto North Road"
    assert res.steps[2].type == "exit rotary"


def test_fork(town: Router) -> None:
    res = town.route(at(6, 2), at(7, 5), depart_at=DEP)
    assert kinds(res.steps) == [("depart", ""), ("fork", "slight left"), ("arrive", "")]
    assert res.steps[1].text_zh == "在岔路口靠左行驶，进入花园路"
    assert res.steps[1].text_en == "Keep left at the fork onto Garden Road"
    right = town.route(at(6, 2), at(5, 5), depart_at=DEP)
    assert kinds(right.steps)[1] == ("fork", "slight right")


def test_exclude_motorway_and_toll(town: Router) -> None:
    s = town.snapper.snap(*at(-4, 0))
    d = town.snapper.snap(*at(-8, 1.5))
    plain = town.route_legs([s, d], depart_at=DEP)
    assert plain[0][0].distance_m > 0
    for cls in ("motorway", "toll"):
        with pytest.raises(RouteNotFound):
            town.route_legs([s, d], depart_at=DEP, exclude=[cls])
    same = town.route_legs([s, d], depart_at=DEP, exclude=["ferry"])  # no ferry in the graph
    assert same[0][0].edges == plain[0][0].edges
    # avoiding the motorway where another way exists
    e = town.snapper.snap(*at(6, 2))
    via_motorway = town.route_legs([d, e], depart_at=DEP)[0][0]
    assert via_motorway.distance_m > 0


def test_step_geometry_and_sums(town: Router) -> None:
    s0, s1 = town.snapper.snap(*at(-4, 0)), town.snapper.snap(*at(6, 2))
    res = town.route_legs([s0, s1], depart_at=DEP)[0][0]  # with the junctions passed (intersections)
    pts = []
    for s in res.steps:
        a, b = s.geometry
        assert b >= a
        pts.extend(res.polyline[a : b + 1] if not pts else res.polyline[a + 1 : b + 1])
        assert all(0 <= x <= 359 for x in (s.bearing_before, s.bearing_after))
        assert s.intersections and all(0 <= b <= 359 for x in s.intersections for b in x.bearings)
    assert pts == res.polyline
    assert sum(s.distance_m for s in res.steps) == pytest.approx(res.distance_m)
    # the roundabout step lists the junction it passes (the first exit) after its own
    rb = res.steps[1]
    assert len(rb.intersections) == 2 and rb.intersections[0].in_ is not None


def test_no_zero_metre_step_on_a_road_not_driven(town: Router) -> None:
    # start a hair before junction 41 on 玉龙路, go east on 丽江大道: the route starts at the junction
    lat, lon = at(5.9999, 0)
    res = town.route((lat, lon), at(6, 2), depart_at=DEP)
    assert res.steps[0].name == "丽江大道" and res.steps[0].type == "depart"
    assert all(s.distance_m >= MIN_DRIVEN_M for s in res.steps[:-1])
    end = town.route(at(6, 2), (lat, lon), depart_at=DEP)
    assert end.steps[-2].name == "丽江大道"


def test_depart_bearing_is_where_the_route_starts(town: Router) -> None:
    # on the roundabout's south arm heading north, the depart bearing is north even though the edge's
    # first segment (from node 20) is elsewhere on the same straight road
    res = town.route(at(-4, 0), at(6, 2), depart_at=DEP)
    assert res.steps[0].bearing_after in (359, 0, 1)
    west = town.route(at(2, -3), at(-4, 0), depart_at=DEP)
    assert abs(((west.steps[0].bearing_after - 180) + 180) % 360 - 180) < 3  # heads south on G214


def test_via_points_and_continue_straight(town: Router) -> None:
    a, b, c = (town.snapper.snap(*at(*p)) for p in ((-4, 0), (0, 2), (6, 2)))
    legs = town.route_legs([a, b, c], depart_at=DEP)[0]
    assert len(legs) == 2
    assert legs[0].steps[-1].text_en == "Arrive at waypoint 1"
    assert legs[1].depart_at == legs[0].arrive_at
    # S303 is a dead end beyond b: without a U-turn at b the second leg goes on to the end and back
    straight = town.route_legs([a, b, c], depart_at=DEP, continue_straight=True)[0]
    assert straight[1].distance_m > legs[1].distance_m
    assert any(s.modifier == "uturn" for s in straight[1].steps)


def test_annotations_match_the_geometry(town: Router) -> None:
    res = town.route(at(-4, 0), at(6, 2), depart_at=DEP)
    ann = town.annotate(res)
    n = len(res.polyline)
    assert len(ann["distance"]) == n - 1 and len(ann["nodes"]) == n
    assert sum(ann["distance"]) == pytest.approx(res.distance_m, rel=0.01)
    assert sum(ann["duration"]) == pytest.approx(res.duration_s, rel=0.01)
    assert ann["nodes"][1:-1] == [x for x in ann["nodes"][1:-1] if x in NODES]
    assert all(math.isfinite(v) for v in ann["speed"])
    assert np.all(np.diff(np.asarray(ann["nodes"])) != 0)


def _cum_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Distance along a line at each point (metres, equirectangular per segment), in numpy."""
    if len(lat) < 2:
        return np.zeros(len(lat))
    k = np.cos(np.radians((lat[:-1] + lat[1:]) / 2))
    dy = np.diff(lat) * 111_194.93
    dx = np.diff(lon) * 111_194.93 * k
    return np.concatenate(([0.0], np.cumsum(np.hypot(dx, dy))))


def _heading_over_whole_line(lat: np.ndarray, lon: np.ndarray, reverse: bool, metres: float = 20.0) -> float:
    """The oracle: distances along the whole line, then the point `metres` from the start (or end)."""
    c = _cum_m(lat, lon)
    if len(c) < 2 or c[-1] <= 0:
        return 0.0
    x = max(0.0, c[-1] - metres) if reverse else min(c[-1], metres)
    la, lo = np.array([np.interp(x, c, lat)]), np.array([np.interp(x, c, lon)])
    if reverse:
        return (
            0.0 if (la[0], lo[0]) == (lat[-1], lon[-1]) else float(_bearings(la, lo, lat[-1:], lon[-1:])[0])
        )
    return float(_bearings(lat[:1], lon[:1], la, lo)[0])


def test_heading_measures_a_prefix_and_answers_as_the_whole_line() -> None:
    """The compiled heading over the points that reach 20 m against numpy over the whole line: within
    1e-9 degrees (libm and numpy's vector sin/atan2 may differ in the last bit), and the same integer
    bearing, the one a step shows."""
    rng = np.random.default_rng(7)
    for _ in range(3_000):
        n = int(rng.integers(0, 400))
        step = float(rng.choice([1e-6, 1e-5, 1e-4, 1e-3]))
        lat = 26.8 + np.cumsum(rng.normal(0, step, n))
        lon = 100.2 + np.cumsum(rng.normal(0, step, n))
        if rng.random() < 0.1:  # a line without length
            lat[:], lon[:] = 26.8, 100.2
        for reverse in (False, True):
            got, want = heading(lat, lon, reverse=reverse), _heading_over_whole_line(lat, lon, reverse)
            assert min(abs(got - want), 360 - abs(got - want)) < 1e-9, (n, reverse, got, want)
            assert round(got) % 360 == round(want) % 360, (n, reverse, got, want)
