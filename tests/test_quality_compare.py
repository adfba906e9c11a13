"""The independent-engine comparison (benchmarks/_independent.py): osmnx builds its own graph from a
hand-made extract (tests/osm_fixtures.py `ladders`) where each ladder holds one known difference, and every
disagreement with our router gets its class; a dual carriageway's end (`median_end`) holds the U-turn
across a median that our graph refuses and osmnx makes."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config import load_region
from geo._build import build_graph
from geo._router import Router
from geo._traffic import TrafficProfile
from tests.osm_fixtures import ladders, median_end

ox = pytest.importorskip("osmnx")  # the `bench` extra

from benchmarks import _independent as ind  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
DEP = datetime(2026, 3, 10, 3, 0, tzinfo=TZ)
CASES = {  # ladder k: (way tags of the middle rung, tags of its middle node, its highway, restriction)
    "plain": ("", "", "residential", ""),
    "bus only": ('<tag k="access" v="no"/><tag k="bus" v="yes"/>', "", "residential", ""),
    "bollard": ("", '<tag k="barrier" v="bollard"/>', "residential", ""),
    "no straight on": ("", "", "residential", "no_straight_on"),
    "service": ("", "", "service", ""),
    "destination": ('<tag k="access" v="destination"/>', "", "residential", ""),
}


def _comparison(folder: Path, xml: str) -> ind.Comparison:
    extract = folder / "extract.osm"
    extract.write_text(xml, encoding="utf-8")
    region = load_region("lijiang")
    g = build_graph(extract, speeds_kmh=region.speeds_kmh)
    r = Router(g, profile=TrafficProfile.default(), holidays=region.holidays, tz=TZ)
    return ind.Comparison.build(extract, r, folder / "osmnx.osm")


@pytest.fixture(scope="module")
def cmp(tmp_path_factory: pytest.TempPathFactory) -> ind.Comparison:
    return _comparison(tmp_path_factory.mktemp("independent"), ladders(list(CASES.values())))


def _junction(c: ind.Comparison, osm_id: int) -> int:
    g = c.r.g
    return next(j for j in range(g.n_nodes) if int(g.node_osm[j]) == osm_id and int(g.node_base[j]) == j)


def _spur_to_spur(c: ind.Comparison, case: str) -> tuple[float, float, ind.Verdict]:
    o = 100 * list(CASES).index(case)
    return c.compare(_junction(c, o + 8), _junction(c, o + 9), DEP)


def test_the_other_graph_is_osmnxs_own() -> None:
    """osmnx's drive filter, evaluated on tags, keeps what osmnx keeps (a bus-only street, no service)."""
    drive = ind.osmnx_filter("drive")
    assert ind.filter_matches(drive, {"highway": "residential", "access": "no", "bus": "yes"})
    assert not ind.filter_matches(drive, {"highway": "service"})
    assert not ind.filter_matches(drive, {"highway": "residential", "access": "private"})
    assert not ind.filter_matches(drive, {"highway": "residential", "motor_vehicle": "no"})
    assert not ind.filter_matches(drive, {"building": "yes"})
    with pytest.raises(ValueError, match="unsupported"):
        ind.parse_overpass_filter('["highway"](poly:"1 2")')


def test_same_roads_agree(cmp: ind.Comparison) -> None:
    ours, theirs, v = _spur_to_spur(cmp, "plain")
    assert v.cls is None and v.rel_diff <= ind.TOL
    assert ours == pytest.approx(444.0, rel=0.01) and theirs == pytest.approx(ours, rel=0.01)


@pytest.mark.parametrize(
    ("case", "cls", "subject"),
    [
        ("bus only", "policy", "way 130"),
        ("bollard", "barrier", "node 207"),
        ("no straight on", "turn restriction", "relation 903"),
        ("destination", "policy", "way 530"),
    ],
)
def test_osmnx_shorter_explained(cmp: ind.Comparison, case: str, cls: str, subject: str) -> None:
    ours, theirs, v = _spur_to_spur(cmp, case)
    assert theirs == pytest.approx(444.0, rel=0.01)
    assert ours == pytest.approx(642.0, rel=0.01)
    assert (v.cls, v.shorter, v.subject) == (cls, "osmnx", subject)


def test_service_road_osmnx_drops_is_policy(cmp: ind.Comparison) -> None:
    ours, theirs, v = _spur_to_spur(cmp, "service")
    assert ours == pytest.approx(444.0, rel=0.01) and theirs == pytest.approx(642.0, rel=0.01)
    assert (v.cls, v.shorter, v.subject) == ("policy", "ours", "way 430")
    assert "highway=service" in v.detail and "osmnx's filter drops it" in v.detail


def test_u_turn_across_a_median_osmnx_makes_is_its_own_class(tmp_path: Path) -> None:
    """osmnx turns back at the carriageway's end onto the opposite one-way carriageway; our graph
    refuses that U-turn (2 is no dead end) and drives round by the side streets."""
    c = _comparison(tmp_path, median_end())
    ours, theirs, v = c.compare(_junction(c, 8), _junction(c, 9), DEP)
    assert theirs == pytest.approx(397.0, rel=0.01) and ours == pytest.approx(603.0, rel=0.01)
    assert (v.cls, v.shorter, v.subject) == ("u-turn across a median", "osmnx", "node 2")
    assert "way 21 -> way 22" in v.detail


def test_u_turn_at_a_dead_end_is_not_a_median_u_turn() -> None:
    """The same turn where the carriageway's end has no other way on: our graph allows it, so it
    explains nothing (an unexplained difference stays 'other')."""
    coords = {1: (26.87, 100.23), 2: (26.87005, 100.231), 3: (26.8701, 100.23)}
    seg_way = {(1, 2): 21, (2, 3): 22}
    for exits, cls in ((2, "u-turn across a median"), (1, "other")):
        net = ind.OurNetwork(seg_way, set(), set(), [], coords=coords, exits={1: 1, 2: exits, 3: 0})
        v = ind.explain(300.0, 200.0, [], [1, 2, 3], [21, 22], net, set(seg_way), _no_ways())
        assert (v.cls, v.shorter) == (cls, "osmnx")


def test_no_path_on_one_side_is_component() -> None:
    v = ind.explain(1000.0, math.inf, [], [], [], ind.OurNetwork({}, set(), set(), []), set(), _no_ways())
    assert (v.cls, v.detail) == ("component", "no path in osmnx")
    # no path in ours: osmnx's path names what cuts it off for us (a bollard at node 2)
    net = ind.OurNetwork({(1, 2): 10, (2, 3): 10}, set(), {2}, [])
    ways = ind.ExtractWays(tags={}, refs={10: [1, 2, 3]}, kept={10}, node_tags={2: {"barrier": "bollard"}})
    v = ind.explain(math.inf, 200.0, [], [1, 2, 3], [10, 10], net, {(1, 2), (2, 3)}, ways)
    assert (v.cls, v.shorter, v.subject) == ("component", "-", "node 2")
    assert v.detail == "no path in ours, cut off by node 2 barrier=bollard"
    assert (
        ind.explain(
            math.inf, math.inf, [], [], [], ind.OurNetwork({}, set(), set(), []), set(), _no_ways()
        ).cls
        is None
    )


def test_unexplained_difference_is_other() -> None:
    """Both engines may drive every segment, yet lengths differ: nothing explains it."""
    net = ind.OurNetwork({(1, 2): 10, (2, 3): 10}, set(), set(), [])
    v = ind.explain(300.0, 200.0, [1, 2, 3], [1, 2, 3], [10, 10], net, {(1, 2), (2, 3)}, _no_ways())
    assert (v.cls, v.shorter) == ("other", "osmnx")


def _no_ways() -> ind.ExtractWays:
    return ind.ExtractWays(tags={}, refs={}, kept=set())
