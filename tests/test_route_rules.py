"""Routes a driver can trust, each rule on a hand-made OSM fixture (tests/osm_fixtures.py):
junction endpoints, kept components, node barriers, the car access policy, vehicles, restrictions."""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config import load_region
from geo import InvalidInput, RouteNotFound
from geo._build import build_graph
from geo._graph import CompiledGraph
from geo._reference import ReferenceRouter, empty_live
from geo._router import Router
from geo._traffic import TrafficProfile
from geo._vehicle import CAR, Vehicle, make_vehicle
from tests.conftest import FIXTURES
from tests.osm_fixtures import ladder, osm_xml

TZ = ZoneInfo("Asia/Shanghai")
HOL = load_region("lijiang").holidays
SPEEDS = load_region("lijiang").speeds_kmh
DEP = datetime(2026, 3, 10, 3, 0, tzinfo=TZ)


def fixture_router(name: str, **build: object) -> Router:
    g = build_graph(FIXTURES / name, speeds_kmh=SPEEDS, **build)  # type: ignore[arg-type]
    return Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)


def node(g: CompiledGraph, osm_id: int) -> tuple[float, float]:
    """Coordinates of an OSM node of the graph's geometry."""
    i = int(np.flatnonzero(g.geom_osm == osm_id)[0])
    return float(g.geom_lat[i]), float(g.geom_lon[i])


def osm_path(r: Router, edges: list[int]) -> list[int]:
    g = r.g
    return [int(g.node_osm[g.edge_u[edges[0]]])] + [int(g.node_osm[g.edge_v[e]]) for e in edges]


def reference_distance(r: Router, a: tuple[float, float], b: tuple[float, float]) -> float:
    ref = ReferenceRouter(r.g, TrafficProfile.default(), HOL, TZ)
    s, d = r.snapper.snap(*a), r.snapper.snap(*b)
    return ref.cost(s, d, DEP.timestamp(), empty_live(r.g.n_road_edges), 2)


# ---- 1. phantom endpoints ------------------------------------------------------------------------
def test_junction_start_on_a_one_way_street_leaves_by_any_road() -> None:
    r = fixture_router("junction_oneway.osm")
    g = r.g
    s = r.snapper.snap(*node(g, 2))
    assert int(g.edge_way[s.edge]) == 10  # the tie at junction 2 snaps to the one-way street
    res = r.route(node(g, 2), node(g, 1), depart_at=DEP, metric="distance")
    assert osm_path(r, res.edges) == [2, 1]
    assert res.distance_m == pytest.approx(99.3, abs=0.5)  # not the 520 m loop by the one-way street
    assert res.distance_m == pytest.approx(reference_distance(r, node(g, 2), node(g, 1)), rel=1e-9)
    assert [st.name for st in res.steps] == ["直行路", "直行路"]  # depart, arrive: no 0 m one-way step
    assert all(st.distance_m >= 1.0 for st in res.steps if st.maneuver != "arrive")


def test_junction_end_arrives_by_any_road_and_mid_edge_goes_either_way() -> None:
    r = fixture_router("junction_oneway.osm")
    g = r.g
    res = r.route(node(g, 5), node(g, 2), depart_at=DEP, metric="distance")
    assert osm_path(r, res.edges)[-2:] == [1, 2]
    assert res.steps[-1].name == "直行路" and "单行街" not in [st.name for st in res.steps]
    assert res.distance_m == pytest.approx(reference_distance(r, node(g, 5), node(g, 2)), rel=1e-9)
    # a point in the middle of the two-way road 1-2 may go either way
    mid = ((node(g, 1)[0] + node(g, 2)[0]) / 2, (node(g, 1)[1] + node(g, 2)[1]) / 2)
    assert r.route(mid, node(g, 1), depart_at=DEP, metric="distance").distance_m == pytest.approx(
        49.6, abs=0.5
    )
    assert r.route(mid, node(g, 2), depart_at=DEP, metric="distance").distance_m == pytest.approx(
        49.6, abs=0.5
    )
    # the same junction as both ends is an empty route
    assert r.route(node(g, 2), node(g, 2), depart_at=DEP).distance_m == 0.0


# ---- 2. every road is kept -------------------------------------------------------------------------
def test_small_parts_are_kept_and_snapped_to_when_much_closer() -> None:
    r = fixture_router("small_parts.osm")
    g = r.g
    assert set(np.unique(g.edge_way).tolist()) == {1, 2, 3, 4, 20, 30}
    assert g.meta["counts"]["components"] >= 3
    on_lone = (26.8730, 100.2305)  # on the lone one-way street, 222 m from the square
    assert int(g.edge_way[r.snapper.snap(*on_lone).edge]) == 20
    near_small = (26.8719, 100.2318)  # 20 m from way 30, 103 m from the square: the small part wins
    assert int(g.edge_way[r.snapper.snap(*near_small).edge]) == 30
    between = (26.8716, 100.2316)  # 40 m from way 30, 89 m from the square: the main part wins
    assert int(g.edge_way[r.snapper.snap(*between).edge]) in (1, 2, 3, 4)
    # driving along the lone street works; reaching the square from it does not
    res = r.route(on_lone, (26.8730, 100.2309), depart_at=DEP, metric="distance")
    assert res.distance_m == pytest.approx(39.7, abs=0.5)
    with pytest.raises(RouteNotFound, match="not connected"):
        r.route(on_lone, node(g, 1), depart_at=DEP)


def test_lone_one_way_street_builds() -> None:
    r = fixture_router("lone_oneway.osm")
    assert r.g.n_road_edges == 1
    res = r.route((26.8730, 100.2301), (26.8730, 100.2309), depart_at=DEP, metric="distance")
    assert res.distance_m == pytest.approx(79.4, abs=0.5)
    with pytest.raises(RouteNotFound):
        r.route((26.8730, 100.2309), (26.8730, 100.2301), depart_at=DEP)


# ---- 3 and 4. node tags and the car access policy (geo._access) -----------------------------------
def tag(**kv: str) -> str:
    return "".join(f'<tag k="{k.replace("__", ":")}" v="{escape(v)}"/>' for k, v in kv.items())


def ladder_distance(
    tmp_path: Path,
    a: int,
    b: int,
    way_tags: str = "",
    node_tags: str = "",
    vehicle: Vehicle | None = None,
    **kw: str,
) -> float:
    """Shortest distance from node a to node b of the ladder fixture, inf when unreachable; the
    reference router must agree."""
    p = tmp_path / "ladder.osm"
    p.write_text(ladder(way_tags, node_tags, **kw))
    g = build_graph(p, speeds_kmh=SPEEDS)
    r = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)
    ref = ReferenceRouter(g, TrafficProfile.default(), HOL, TZ)
    s, d = r.snapper.snap(*node(g, a)), r.snapper.snap(*node(g, b))
    want = ref.cost(s, d, DEP.timestamp(), empty_live(g.n_road_edges), 2, vehicle=vehicle)
    try:
        got = r.route(node(g, a), node(g, b), depart_at=DEP, metric="distance", vehicle=vehicle).distance_m
    except RouteNotFound:
        got = float("inf")
    assert got == pytest.approx(want, rel=1e-9)
    return got


DIRECT, AROUND = 222.4, 421.0


@pytest.mark.parametrize(
    ("node_tags", "open_"),
    [
        ("", True),
        (tag(barrier="bollard"), False),
        (tag(barrier="block"), False),
        (tag(barrier="kerb"), False),
        (tag(barrier="chain"), False),
        (tag(barrier="jersey_barrier"), False),
        (tag(barrier="gate"), True),
        (tag(barrier="lift_gate", access="no"), False),
        (tag(barrier="lift_gate", motorcar="yes"), True),
        (tag(barrier="bollard", motor_vehicle="yes"), True),
        (tag(barrier="toll_booth"), True),
        (tag(barrier="entrance"), True),
        (tag(access="no"), False),
        (tag(barrier="gate", access="private"), True),
    ],
)
def test_node_barriers_and_access(tmp_path: Path, node_tags: str, open_: bool) -> None:
    there = ladder_distance(tmp_path, 2, 5, node_tags=node_tags)
    assert there == pytest.approx(DIRECT if open_ else AROUND, abs=1.5)
    # a barrier still lets a driver reach the road up to it and turn back
    assert ladder_distance(tmp_path, 2, 7, node_tags=node_tags) == pytest.approx(111.2, abs=1.0)


@pytest.mark.parametrize(
    ("way_tags", "forward", "backward"),  # 2 -> 5 along the way's node order, 5 -> 2 against it
    [
        (tag(access="psv"), False, False),
        (tag(motor_vehicle="bus"), False, False),
        (tag(access="taxi"), False, False),
        (tag(access="foot"), False, False),
        (tag(access="emergency"), False, False),
        (tag(access="military"), False, False),
        (tag(access="no", motorcar="yes"), True, True),
        (tag(access="forestry;permissive"), True, True),
        (tag(access__forward="no"), False, True),
        (tag(motor_vehicle__backward="no"), True, False),
        (tag(oneway__motorcar="yes"), True, False),
        (tag(oneway="yes", oneway__motor_vehicle="no"), True, True),
        (tag(oneway="reversible"), False, False),
        (tag(construction="yes"), False, False),
        (tag(construction="minor"), True, True),
        (tag(smoothness="impassable"), False, False),
        (tag(impassable="yes"), False, False),
    ],
)
def test_way_access_policy(tmp_path: Path, way_tags: str, forward: bool, backward: bool) -> None:
    assert ladder_distance(tmp_path, 2, 5, way_tags) == pytest.approx(DIRECT if forward else AROUND, abs=1.5)
    assert ladder_distance(tmp_path, 5, 2, way_tags) == pytest.approx(DIRECT if backward else AROUND, abs=1.5)


@pytest.mark.parametrize(
    ("highway", "way_tags"),
    [("footway", tag(access="yes")), ("construction", ""), ("cycleway", tag(motorcar="yes"))],
)
def test_non_roads_stay_closed(tmp_path: Path, highway: str, way_tags: str) -> None:
    assert ladder_distance(tmp_path, 2, 5, way_tags, highway=highway) == pytest.approx(AROUND, abs=1.5)


@pytest.mark.parametrize("value", ["destination", "private"])
def test_destination_and_private_roads_carry_no_through_traffic(tmp_path: Path, value: str) -> None:
    p = tmp_path / "ladder.osm"
    p.write_text(ladder(tag(access=value)))
    g = build_graph(p, speeds_kmh=SPEEDS)
    r = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ, restricted_penalty_s=120.0)
    through = r.route(node(g, 2), node(g, 5), depart_at=DEP, free_flow=True)
    assert through.distance_m == pytest.approx(AROUND, abs=1.5)  # around, not through the private rung
    # a trip that starts or ends on it uses it, and the reported time is the true driving time
    into = r.route(node(g, 2), node(g, 7), depart_at=DEP, free_flow=True)
    assert into.distance_m == pytest.approx(111.2, abs=1.0)
    assert into.duration_s == pytest.approx(
        into.distance_m / float(g.edge_speed_mps[into.edges[0]]), rel=1e-6
    )
    out = r.route(node(g, 7), node(g, 5), depart_at=DEP, free_flow=True)
    assert out.distance_m == pytest.approx(111.2, abs=1.0)
    dur, _ = r.one_to_many(node(g, 2), [node(g, 7)], depart_at=DEP, free_flow=True)
    assert dur[0] == pytest.approx(into.duration_s, rel=1e-6)  # matrices report true times too
    # without the penalty the rung is just a road
    r0 = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ, restricted_penalty_s=0.0)
    assert r0.route(node(g, 2), node(g, 5), depart_at=DEP, free_flow=True).distance_m == pytest.approx(
        DIRECT, abs=1.5
    )


# ---- 5. vehicles (geo._vehicle) ---------------------------------------------------------------------
TRUCK = make_vehicle("truck", height_m=4.0, weight_t=18.0, width_m=2.5, length_m=12.0)
VAN = make_vehicle("van")


@pytest.mark.parametrize(
    ("way_tags", "node_tags", "car", "van", "truck"),  # open to each (True) or not, 2 -> 5 over the rung
    [
        (tag(bridge="yes", maxheight="3"), "", True, True, False),  # a 3 m bridge: a 4 m truck goes round
        (tag(maxheight="3.5 m"), "", True, True, False),
        (tag(maxheight="13'6\""), "", True, True, True),  # 4.11 m
        (tag(maxheight="11'6\""), "", True, True, False),  # 3.51 m
        (tag(maxheight="default"), "", True, True, True),
        (tag(maxheight="none"), "", True, True, True),
        (tag(maxheight="below_default"), "", True, True, True),
        (tag(maxheight__physical="2.4"), "", True, False, False),
        (tag(maxheight="4.5", maxheight__physical="3.8"), "", True, True, False),
        (tag(maxweight="7.5"), "", True, True, False),  # a 7.5 t weight limit
        (tag(maxweight="7500 kg"), "", True, True, False),
        (tag(maxwidth="2.2"), "", True, True, False),
        (tag(maxwidth="2"), "", True, False, False),
        (tag(maxlength="10"), "", True, True, False),
        (tag(hgv="no"), "", True, True, False),  # hgv keys bind trucks only
        (tag(hgv__forward="no"), "", True, True, False),
        (tag(hgv__backward="no"), "", True, True, True),
        ("", tag(barrier="height_restrictor", maxheight="2.1"), True, False, False),  # node limit
        ("", tag(maxweight="5"), True, True, False),
    ],
)
def test_vehicle_limits(
    tmp_path: Path, way_tags: str, node_tags: str, car: bool, van: bool, truck: bool
) -> None:
    for vehicle, open_ in ((CAR, car), (VAN, van), (TRUCK, truck)):
        got = ladder_distance(tmp_path, 2, 5, way_tags, node_tags, vehicle=vehicle)
        assert got == pytest.approx(DIRECT if open_ else AROUND, abs=1.5), vehicle.kind


def test_hgv_destination_carries_no_truck_through_traffic(tmp_path: Path) -> None:
    p = tmp_path / "ladder.osm"
    p.write_text(ladder(tag(hgv="destination")))
    g = build_graph(p, speeds_kmh=SPEEDS)
    r = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ, restricted_penalty_s=120.0)
    assert r.route(node(g, 2), node(g, 5), depart_at=DEP, free_flow=True).distance_m == pytest.approx(
        DIRECT, abs=1.5
    )
    through = r.route(node(g, 2), node(g, 5), depart_at=DEP, free_flow=True, vehicle=TRUCK)
    assert through.distance_m == pytest.approx(AROUND, abs=1.5)
    into = r.route(node(g, 2), node(g, 7), depart_at=DEP, free_flow=True, vehicle=TRUCK)
    assert into.distance_m == pytest.approx(111.2, abs=1.0)  # a delivery to the street itself


def test_truck_diesel_trip_does_not_pass_under_a_low_bridge(tmp_path: Path) -> None:
    """One search to many targets (the nearby ranking's call) honours the vehicle too."""
    p = tmp_path / "ladder.osm"
    p.write_text(ladder(tag(bridge="yes", maxheight="3")))
    g = build_graph(p, speeds_kmh=SPEEDS)
    r = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)
    _, car = r.one_to_many(node(g, 2), [node(g, 5)], depart_at=DEP, metric="distance")
    _, truck = r.one_to_many(node(g, 2), [node(g, 5)], depart_at=DEP, metric="distance", vehicle=TRUCK)
    assert car[0] == pytest.approx(DIRECT, abs=1.5)
    assert truck[0] == pytest.approx(AROUND, abs=1.5)


def test_no_route_for_a_truck_says_why(tmp_path: Path) -> None:
    p = tmp_path / "ladder.osm"
    p.write_text(ladder(tag(maxheight="3")))
    g = build_graph(p, speeds_kmh=SPEEDS)
    r = Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)
    assert r.route(node(g, 2), node(g, 7), depart_at=DEP).distance_m == pytest.approx(111.2, abs=1.0)
    with pytest.raises(RouteNotFound, match="for this truck: height"):  # node 7 lies under the bridge
        r.route(node(g, 2), node(g, 7), depart_at=DEP, vehicle=TRUCK)


@pytest.mark.parametrize(
    ("kind", "dims", "param"),
    [
        ("lorry", {}, "vehicle"),
        ("car", {"height_m": 4.0}, "height_m"),
        ("truck", {"height_m": 0.2}, "height_m"),
        ("truck", {"weight_t": float("nan")}, "weight_t"),
        ("truck", {"width_m": 9.0}, "width_m"),
        ("van", {"length_m": -1.0}, "length_m"),
    ],
)
def test_vehicle_validation(kind: str, dims: dict[str, float], param: str) -> None:
    with pytest.raises(InvalidInput) as err:
        make_vehicle(kind, **dims)
    assert err.value.param == param


# ---- 6. turn restrictions through ways, malformed relations, U-turns across a median ----------------
U = 0.001  # about 100 m
# a street 1-2-3-4-11 going east, a north street 7-8, rungs 3-7 and 4-8, a side road 9-2 from the south
STREET = {1: (0, 0), 2: (1, 0), 3: (2, 0), 4: (3, 0), 11: (4, 0), 7: (2, 2), 8: (3, 2), 9: (1, -1)}
STREET_WAYS: dict[int, tuple[list[int], dict[str, str]]] = {
    10: ([1, 2], {}),
    11: ([2, 3], {}),
    12: ([3, 4], {}),
    18: ([4, 11], {}),
    13: ([3, 7], {}),
    16: ([4, 8], {}),
    20: ([7, 8], {}),
    17: ([9, 2], {}),
}


def street_router(
    tmp_path: Path, relations: list[tuple[int, list[tuple[str, int, str]], dict[str, str]]]
) -> Router:
    nodes = {i: (26.87 + y * U, 100.23 + x * U) for i, (x, y) in STREET.items()}
    p = tmp_path / "street.osm"
    p.write_text(osm_xml(nodes, STREET_WAYS, relations))
    g = build_graph(p, speeds_kmh=SPEEDS)
    return Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)


def street_path(r: Router, a: int, b: int) -> tuple[list[int], float]:
    """OSM node path and distance of the shortest route a -> b (junctions), checked against the reference."""
    g = r.g
    res = r.route(node(g, a), node(g, b), depart_at=DEP, metric="distance")
    assert res.distance_m == pytest.approx(reference_distance(r, node(g, a), node(g, b)), rel=1e-9)
    return osm_path(r, res.edges), res.distance_m


def has_run(path: list[int], run: list[int]) -> bool:
    return any(path[i : i + len(run)] == run for i in range(len(path) - len(run) + 1))


def via_way(
    rid: int, frm: int, via: list[int], to: list[int], **tags: str
) -> tuple[int, list[tuple[str, int, str]], dict[str, str]]:
    members = [("way", frm, "from"), *(("way", v, "via") for v in via), *(("way", t, "to") for t in to)]
    return rid, members, {"type": "restriction"} | {k.replace("__", ":"): v for k, v in tags.items()}


def test_via_way_no_left_turn(tmp_path: Path) -> None:
    free = street_router(tmp_path, [])
    assert street_path(free, 1, 7)[0] == [1, 2, 3, 7]
    r = street_router(tmp_path, [via_way(1, 10, [11], [13], restriction="no_left_turn")])
    assert r.g.meta["counts"]["restrictions_applied_via_way"] == 1
    path, dist = street_path(r, 1, 7)
    assert not has_run(path, [1, 2, 3, 7]) and dist > street_path(free, 1, 7)[1] + 150
    assert street_path(r, 9, 7)[0] == [9, 2, 3, 7]  # another approach to the via way may turn
    assert street_path(r, 1, 4)[0] == [1, 2, 3, 4]  # and straight on is fine
    assert street_path(r, 2, 7)[0] == [2, 3, 7]  # starting on the via way is not coming from way 10


def test_via_way_only_straight_on_across_two_ways(tmp_path: Path) -> None:
    r = street_router(tmp_path, [via_way(2, 10, [11, 12], [18], restriction="only_straight_on")])
    assert r.g.meta["counts"]["restrictions_applied_via_way"] == 1
    assert street_path(r, 1, 11)[0] == [1, 2, 3, 4, 11]
    path, _ = street_path(r, 1, 8)
    assert not has_run(path, [1, 2, 3, 4, 8])  # no left turn at the end of the second via way
    free = street_router(tmp_path, [])
    assert street_path(r, 9, 8)[1] == pytest.approx(street_path(free, 9, 8)[1])  # from elsewhere: any turn


@pytest.mark.parametrize(
    ("relation", "counter"),
    [
        (via_way(3, 10, [11], [13, 12], restriction="no_left_turn"), "restrictions_skipped_malformed"),  # two to
        (via_way(3, 10, [16], [13], restriction="no_left_turn"), "restrictions_skipped_via_way"),  # not connected
        (via_way(3, 10, [], [13], restriction="no_left_turn"), "restrictions_skipped_missing"),  # no via
        ((3, [("way", 10, "from"), ("node", 2, "via"), ("way", 11, "via"), ("way", 13, "to")],
          {"type": "restriction", "restriction": "no_left_turn"}), "restrictions_skipped_malformed"),
    ],
)  # fmt: skip
def test_malformed_restriction_is_ignored_and_counted(
    tmp_path: Path, relation: tuple[int, list[tuple[str, int, str]], dict[str, str]], counter: str
) -> None:
    r = street_router(tmp_path, [relation])
    assert r.g.meta["counts"][counter] == 1
    assert r.g.meta["counts"]["restrictions_applied"] == 0
    assert street_path(r, 1, 7)[0] == [1, 2, 3, 7]


@pytest.mark.parametrize(
    ("tags", "applied"),
    [
        ({"restriction": "no_left_turn", "except": "motorcar"}, False),
        ({"restriction": "no_left_turn", "except": "psv;motor_vehicle"}, False),
        ({"restriction": "no_left_turn", "except": "bicycle"}, True),
        ({"restriction:motorcar": "no_left_turn"}, True),
        ({"restriction:hgv": "no_left_turn"}, False),  # for lorries only
    ],
)
def test_except_and_restriction_motorcar(tmp_path: Path, tags: dict[str, str], applied: bool) -> None:
    r = street_router(tmp_path, [via_way(4, 10, [11], [13], **tags)])
    path, _ = street_path(r, 1, 7)
    assert has_run(path, [1, 2, 3, 7]) is not applied


def median_router(tmp_path: Path, *, cross_street: bool) -> Router:
    """A dual carriageway's end: one-way 21 (1 -> 2) east, one-way 22 (2 -> 3) back west just north of it,
    road 25 from 3 north to 5, roads 26-27 from 5 round by 6 to 1; with `cross_street`, road 23 leaves
    junction 2 north to 4, and 24 joins 4 to 5."""
    nodes = {1: (-3.0, 0.0), 2: (1.0, 0.05), 3: (-3.0, 0.1), 4: (1.0, 1.0), 5: (-3.0, 1.0), 6: (-5.0, 0.05)}
    ways: dict[int, tuple[list[int], dict[str, str]]] = {
        21: ([1, 2], {"oneway": "yes", "highway": "primary"}),
        22: ([2, 3], {"oneway": "yes", "highway": "primary"}),
        24: ([4, 5], {}),
        25: ([3, 5], {}),
        26: ([5, 6], {}),
        27: ([6, 1], {}),
    }
    if cross_street:
        ways[23] = ([2, 4], {})
    p = tmp_path / "median.osm"
    p.write_text(osm_xml({i: (26.87 + y * U, 100.23 + x * U) for i, (x, y) in nodes.items()}, ways))
    g = build_graph(p, speeds_kmh=SPEEDS)
    return Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)


ON_21 = (26.87 - 0.00002, 100.23 - U)  # a point beside the eastbound carriageway


def median_path(r: Router) -> tuple[list[int], float]:
    g = r.g
    res = r.route(ON_21, node(g, 5), depart_at=DEP, metric="distance")
    assert res.distance_m == pytest.approx(reference_distance(r, ON_21, node(g, 5)), rel=1e-9)
    return osm_path(r, res.edges), res.distance_m


def test_u_turn_across_a_median_is_refused(tmp_path: Path) -> None:
    r = median_router(tmp_path, cross_street=True)
    assert r.g.meta["counts"]["median_u_turns_forbidden"] == 1
    path, _ = median_path(r)
    assert path == [1, 2, 4, 5]  # not back along the other carriageway, although that is shorter


def test_a_one_way_hairpin_at_a_junction_is_driven_on(tmp_path: Path) -> None:
    """A mountain road's one-way hairpin: way 31 runs east to 2, where a side street leaves, and turns
    back west to 3. Going on along the same way is not a U-turn across a median."""
    nodes = {1: (-3.0, 0.0), 2: (1.0, 0.05), 3: (-3.0, 0.1), 4: (1.0, 1.0), 5: (-3.0, 1.0), 6: (-5.0, 0.05)}
    ways: dict[int, tuple[list[int], dict[str, str]]] = {
        31: ([1, 2, 3], {"oneway": "yes", "highway": "secondary"}),
        23: ([2, 4], {}),
        24: ([4, 5], {}),
        25: ([3, 5], {}),
        26: ([5, 6], {}),
        27: ([6, 1], {}),
    }
    p = tmp_path / "hairpin.osm"
    p.write_text(osm_xml({i: (26.87 + y * U, 100.23 + x * U) for i, (x, y) in nodes.items()}, ways))
    r = Router(build_graph(p, speeds_kmh=SPEEDS), profile=TrafficProfile.default(), holidays=HOL, tz=TZ)
    assert r.g.meta["counts"]["median_u_turns_forbidden"] == 0
    res = r.route(ON_21, node(r.g, 3), depart_at=DEP, metric="distance")
    assert osm_path(r, res.edges) == [1, 2, 3]
    assert res.distance_m == pytest.approx(reference_distance(r, ON_21, node(r.g, 3)), rel=1e-9)


def test_u_turn_at_a_dead_end_is_allowed(tmp_path: Path) -> None:
    r = median_router(tmp_path, cross_street=False)
    assert r.g.meta["counts"]["median_u_turns_forbidden"] == 0
    assert median_path(r)[0] == [1, 2, 3, 5]


def missed_turn_router(tmp_path: Path, *, spur: bool, u_turn_penalty_s: float = 20.0) -> tuple[Router, float]:
    """A missed left turn: one-way 40 runs east into junction 1, where turning left onto 42 (north to 7)
    is forbidden; street 41 goes on east to 2, from where 43 goes round the block by 8 and 9 to 7. With
    `spur`, a 20 m cul-de-sac 44 leaves 2 eastwards to 3. Returns the router and the distance the
    reference router (same U-turn penalty) gives from a point on 40 to 7."""
    nodes = {
        0: (-1.0, 0.0),
        1: (0.0, 0.0),
        2: (1.0, 0.0),
        3: (1.2, 0.0),
        7: (0.0, 1.0),
        8: (1.0, 1.5),
        9: (0.0, 1.5),
    }
    ways: dict[int, tuple[list[int], dict[str, str]]] = {
        40: ([0, 1], {"oneway": "yes"}),
        41: ([1, 2], {}),
        42: ([1, 7], {}),
        43: ([2, 8, 9, 7], {}),
    }
    if spur:
        ways[44] = ([2, 3], {})
    rel = (
        5,
        [("way", 40, "from"), ("node", 1, "via"), ("way", 42, "to")],
        {"type": "restriction", "restriction": "no_left_turn"},
    )
    p = tmp_path / "missed_turn.osm"
    p.write_text(osm_xml({i: (26.87 + y * U, 100.23 + x * U) for i, (x, y) in nodes.items()}, ways, [rel]))
    g = build_graph(p, speeds_kmh=SPEEDS)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ, u_turn_penalty_s=u_turn_penalty_s)
    ref = ReferenceRouter(g, prof, HOL, TZ, u_turn_penalty_s=u_turn_penalty_s)
    s, d = r.snapper.snap(*ON_40), r.snapper.snap(*node(g, 7))
    return r, ref.cost(s, d, DEP.timestamp(), empty_live(g.n_road_edges), 2)


ON_40 = (26.87 - 0.00002, 100.23 - 0.5 * U)  # a point on the one-way street 40, heading east


@pytest.mark.parametrize(
    ("spur", "penalty", "path", "metres"),
    [
        (False, 0.0, [0, 1, 2, 1, 7], 310),  # free U-turns: back at junction 2
        (False, 20.0, [0, 1, 2, 7], 421),  # 20 s (200 m in a distance route) > 111 m more round the block
        (False, 5.0, [0, 1, 2, 1, 7], 310),  # 50 m < 111 m: the U-turn at 2
        (True, 20.0, [0, 1, 2, 3, 2, 1, 7], 350),  # turning back at the cul-de-sac costs nothing
    ],
)
def test_u_turn_penalty_and_dead_ends(
    tmp_path: Path, spur: bool, penalty: float, path: list[int], metres: float
) -> None:
    r, want = missed_turn_router(tmp_path, spur=spur, u_turn_penalty_s=penalty)
    res = r.route(ON_40, node(r.g, 7), depart_at=DEP, metric="distance")
    assert osm_path(r, res.edges) == path
    assert res.distance_m - 49.6 == pytest.approx(metres, abs=2.0)  # 49.6 m from the start to junction 1
    assert res.distance_m == pytest.approx(want, rel=1e-9)  # the reference router agrees
    # the penalty steers the choice only: the reported time is the driving time of the roads
    ff = r.route(ON_40, node(r.g, 7), depart_at=DEP, free_flow=True)
    assert ff.duration_s == pytest.approx(ff.distance_m / float(r.g.edge_speed_mps[ff.edges[1]]), rel=1e-6)
    dur, _ = r.one_to_many(ON_40, [node(r.g, 7)], depart_at=DEP, free_flow=True)
    assert dur[0] == pytest.approx(ff.duration_s, rel=1e-6)


def test_u_turn_penalty_setting() -> None:
    from config import Settings

    assert Settings(route_u_turn_penalty_s=35.0).route_u_turn_penalty_s == 35.0
    assert Settings().route_u_turn_penalty_s == 20.0
    with pytest.raises(ValueError):
        Settings(route_u_turn_penalty_s=-1.0)
