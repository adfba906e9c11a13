"""Router behaviour: snapping, zero routes, closures, live updates, alternatives, matrix, steps, threads."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
import shapely

from config import load_region
from geo import InvalidInput, NoRoadNear, RouteNotFound, haversine_m
from geo._polyline import decode, encode
from geo._router import ALT_MAX_OVERLAP, ALT_MAX_STRETCH, Router
from geo._synthetic import synthetic_graph
from geo._traffic import TrafficProfile

TZ = ZoneInfo("Asia/Shanghai")
HOL = load_region("lijiang").holidays
DEP = datetime(2026, 3, 10, 8, 10, tzinfo=TZ)


@pytest.fixture(scope="module")
def router():
    g = synthetic_graph(2500, seed=7, restrictions=40)
    return Router(g, profile=TrafficProfile.default(), holidays=HOL, tz=TZ)


def _pt(g, e, f=0.5):
    pl = g.edge_polyline(e)
    i = min(int(f * (len(pl) - 1)), len(pl) - 2)
    p = pl[i] + 0.5 * (pl[i + 1] - pl[i])
    return float(p[0]), float(p[1])


def test_snap_is_on_an_edge_and_limit_applies(router):
    g = router.g
    rng = np.random.default_rng(0)
    for _ in range(50):
        lat = float(rng.uniform(g.node_lat.min(), g.node_lat.max()))
        lon = float(rng.uniform(g.node_lon.min(), g.node_lon.max()))
        s = router.snapper.snap(lat, lon)
        assert 0.0 <= s.fraction <= 1.0
        assert s.distance_m == pytest.approx(haversine_m(lat, lon, s.lat, s.lon), abs=1e-6)
        line = router.snapper.lines[s.edge]
        x, y = router.snapper._xy(np.array([s.lat]), np.array([s.lon]))
        assert shapely.distance(line, shapely.points(x[0], y[0])) < 0.01  # on the edge polyline
    far = (float(g.node_lat.max()) + 0.05, float(g.node_lon.max()) + 0.05)  # ~5 km outside
    with pytest.raises(NoRoadNear) as ei:
        router.route(far, _pt(g, 0), depart_at=DEP)
    assert ei.value.param == "from"
    assert isinstance(ei.value, InvalidInput)
    with pytest.raises(NoRoadNear) as ei2:
        router.route(_pt(g, 0), far, depart_at=DEP)
    assert ei2.value.param == "to"


def test_origin_equals_destination_is_zero(router):
    p = _pt(router.g, 10)
    res = router.route(p, p, depart_at=DEP)
    assert res.duration_s == 0 and res.distance_m == 0 and res.delay_s == 0


def test_same_edge_forward_is_direct(router):
    g = router.g
    e = int(np.argmax(g.edge_length_m))
    a, b = g.edge_polyline(e)[0], g.edge_polyline(e)[-1]
    p1 = (float(a[0] + 0.2 * (b[0] - a[0])), float(a[1] + 0.2 * (b[1] - a[1])))
    p2 = (float(a[0] + 0.8 * (b[0] - a[0])), float(a[1] + 0.8 * (b[1] - a[1])))
    res = router.route(p1, p2, depart_at=DEP)
    assert len(res.edges) == 1
    assert res.distance_m < g.edge_length_m[e]


def test_closure_makes_route_not_found_and_live_shows_next_query(router):
    g = router.g
    t = DEP.timestamp()
    a, b = _pt(g, 5), _pt(g, 900)
    base = router.route(a, b, depart_at=DEP)
    # slow every edge of the route: the next query sees it
    router.live.apply([{"edge_id": e, "observed_at": t, "factor": 0.1} for e in base.edges])
    try:
        slowed = router.route(a, b, depart_at=DEP)
        assert slowed.duration_s > base.duration_s
        assert router.congestion(base.edges[:3], t).max() == pytest.approx(0.1)
    finally:
        router.live.clear()
    # close the destination road (both directions) and every road into its junctions
    d = router.snapper.snap(*b)
    dead = {d.edge, int(router._rev[d.edge])} - {-1}
    juncs = {int(g.edge_u[e]) for e in dead} | {int(g.edge_v[e]) for e in dead}
    dead |= {int(e) for e in np.flatnonzero(np.isin(g.edge_v, list(juncs)))}
    router.live.apply(
        [{"edge_id": e, "observed_at": t, "closed": True, "expires_at": t + 3600} for e in dead]
    )
    try:
        with pytest.raises(RouteNotFound) as ei:
            router.route(a, b, depart_at=DEP)
        assert "closed" in str(ei.value)
        # after expiry the road is open again
        assert router.route(a, b, depart_at=t + 7200).duration_s > 0
    finally:
        router.live.clear()
    assert router.route(a, b, depart_at=DEP).duration_s == pytest.approx(base.duration_s)


def test_alternatives_differ_and_obey_limits(router):
    g = router.g
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(15):
        a = _pt(g, int(rng.integers(g.n_road_edges)))
        b = _pt(g, int(rng.integers(g.n_road_edges)))
        res = router.route(a, b, depart_at=DEP, alternatives=2)
        assert len(res.alternatives) <= 2
        for alt in res.alternatives:
            found += 1
            assert alt.edges != res.edges
            assert alt.stretch <= ALT_MAX_STRETCH + 1e-9
            assert alt.overlap < ALT_MAX_OVERLAP
            assert alt.duration_s >= res.duration_s - 1e-6
            assert alt.stretch == pytest.approx(alt.duration_s / res.duration_s)
    assert found >= 5


def test_matrix_and_one_to_many_equal_single_routes(router):
    g = router.g
    rng = np.random.default_rng(5)
    srcs = [_pt(g, int(e)) for e in rng.integers(g.n_road_edges, size=3)]
    tgts = [_pt(g, int(e)) for e in rng.integers(g.n_road_edges, size=4)] + [srcs[0]]
    m = router.matrix(srcs, tgts, depart_at=DEP)
    assert m.durations_s.shape == (3, 5)
    for i, s in enumerate(srcs):
        for j, t in enumerate(tgts):
            r = router.route(s, t, depart_at=DEP, steps=False)
            assert m.durations_s[i, j] == pytest.approx(r.duration_s, rel=1e-9, abs=1e-9)
            assert m.distances_m[i, j] == pytest.approx(r.distance_m, rel=1e-9, abs=1e-6)
    assert m.durations_s[0, 4] == 0.0
    times, dists = router.one_to_many(srcs[1], tgts, depart_at=DEP)
    assert np.allclose(times, m.durations_s[1]) and np.allclose(dists, m.distances_m[1])
    capped, _ = router.one_to_many(srcs[1], tgts, depart_at=DEP, max_time_s=float(np.median(times)))
    assert np.all(np.isinf(capped[times > np.median(times)]))


def test_free_flow_and_distance_options(router):
    g = router.g
    a, b = _pt(g, 30), _pt(g, 1700)
    peak = router.route(a, b, depart_at=DEP)
    ff = router.route(a, b, depart_at=DEP, free_flow=True)
    short = router.route(a, b, depart_at=DEP, metric="distance")
    assert ff.duration_s <= peak.duration_s + 1e-9
    assert peak.delay_s > 0 and ff.delay_s == pytest.approx(0, abs=1e-9)
    assert short.distance_m <= min(peak.distance_m, ff.distance_m) + 1e-6
    assert peak.duration_free_flow_s >= ff.duration_s - 1e-6


def test_result_fields_polyline_and_steps(router):
    g = router.g
    a, b = _pt(g, 100, 0.3), _pt(g, 2000, 0.6)
    res = router.route(a, b, depart_at=DEP)
    assert res.polyline[0] == res.from_snapped and res.polyline[-1] == res.to_snapped
    assert len(res.edge_entry_s) == len(res.edges) and res.edge_entry_s[0] == 0.0
    assert all(x <= y for x, y in zip(res.edge_entry_s, res.edge_entry_s[1:], strict=False))
    assert (res.arrive_at - res.depart_at).total_seconds() == pytest.approx(res.duration_s)
    steps = res.steps
    assert steps[0].maneuver == "depart" and steps[-1].maneuver == "arrive"
    assert sum(s.distance_m for s in steps) == pytest.approx(res.distance_m)
    assert sum(s.duration_s for s in steps) == pytest.approx(res.duration_s)
    assert all(re.search(r"[\u4e00-\u9fff]", s.text_zh) for s in steps)
    assert all(re.search(r"[A-Za-z]", s.text_en) for s in steps)
    turns = [s for s in steps if s.maneuver in ("left", "right")]
    assert turns and any(("左转" in s.text_zh) or ("右转" in s.text_zh) for s in turns)
    assert any(s.text_en.startswith(("Turn left", "Turn right")) for s in turns)
    enc = encode(res.polyline)
    assert decode(enc)[0] == pytest.approx(res.polyline[0], abs=1e-5)


def test_bad_options(router):
    p = _pt(router.g, 1)
    with pytest.raises(InvalidInput):
        router.route(p, p, depart_at=DEP, alternatives=4)
    with pytest.raises(InvalidInput):
        router.route(p, p, depart_at=DEP, metric="bogus")


def test_concurrent_queries_match_sequential(router):
    g = router.g
    rng = np.random.default_rng(9)
    pairs = [
        (_pt(g, int(rng.integers(g.n_road_edges))), _pt(g, int(rng.integers(g.n_road_edges))))
        for _ in range(40)
    ]
    want = [router.route(a, b, depart_at=DEP, steps=False).duration_s for a, b in pairs]
    got: dict[int, float] = {}

    def work(lo: int) -> None:
        for i in range(lo, len(pairs), 3):
            got[i] = router.route(*pairs[i], depart_at=DEP, steps=False).duration_s

    ts = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [got[i] for i in range(len(pairs))] == want


def test_public_snapped_one_to_many(router):
    g = router.g
    pts = [_pt(g, e) for e in (10, 200, 900, 1500)]
    snaps = router.snap_many([*pts, (0.0, 0.0)])
    assert snaps[-1] is None and all(s is not None for s in snaps[:-1])
    o = snaps[0]
    assert o is not None
    dur, dist = router.one_to_many_snapped(o, snaps[1:], depart_at=DEP)
    d2, m2 = router.one_to_many(pts[0], pts[1:], depart_at=DEP)
    assert np.isinf(dur[-1]) and np.isinf(dist[-1])
    np.testing.assert_allclose(dur[:-1], d2, rtol=1e-12)
    np.testing.assert_allclose(dist[:-1], m2, rtol=1e-12)
    cap = float(np.nanmin(dur[:-1][dur[:-1] > 0]))
    dc, _ = router.one_to_many_snapped(o, snaps[1:], depart_at=DEP, max_time_s=cap)
    assert np.all(np.isinf(dc[:-1][dur[:-1] > cap]))
    with pytest.raises(InvalidInput):
        router.snap_many([(float("nan"), 1.0)], "stations")


def test_route_snapping_errors_name_the_end(router):
    g = router.g
    a = _pt(g, 10)
    with pytest.raises(NoRoadNear) as ei:
        router.route(a, (0.0, 0.0), depart_at=DEP)
    assert ei.value.args[0] == "to" or "to" in str(ei.value)
    with pytest.raises(InvalidInput) as ei2:
        router.route((float("nan"), 0.0), a, depart_at=DEP)
    assert "from" in str(ei2.value)
