"""Routes a driver can trust, each rule on a hand-made OSM fixture (tests/osm_fixtures.py):
junction endpoints, kept components, node barriers, the car access policy, vehicles, restrictions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config import load_region
from geo import RouteNotFound
from geo._build import build_graph
from geo._graph import CompiledGraph
from geo._reference import ReferenceRouter, empty_live
from geo._router import Router
from geo._traffic import TrafficProfile
from tests.conftest import FIXTURES

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
