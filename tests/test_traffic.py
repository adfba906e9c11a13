"""Traffic model: profile, files, live overlay (validation, atomicity, decay, OSM addressing), FIFO."""

from __future__ import annotations

import functools
import threading
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_region
from geo import InvalidInput
from geo import _kernels as K
from geo._graph import CLASS_INDEX, CompiledGraph
from geo._reference import ReferenceRouter
from geo._synthetic import synthetic_graph
from geo._traffic import LiveTraffic, LiveUpdate, TrafficProfile

TZ = ZoneInfo("Asia/Shanghai")
HOL = load_region("lijiang").holidays
NOW = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()  # a Tuesday, morning peak


@functools.cache
def _graph_and_ref() -> tuple[CompiledGraph, ReferenceRouter]:
    gr = synthetic_graph(600, seed=5, restrictions=10, landmarks=4)
    return gr, ReferenceRouter(gr, TrafficProfile.default(), HOL, TZ)


@pytest.fixture(scope="module")
def g():
    return _graph_and_ref()[0]


def _live(g, profile=None):
    return LiveTraffic(g, profile or TrafficProfile.default(), HOL, TZ, clock=lambda: NOW)


def test_default_profile_shape_and_peaks():
    p = TrafficProfile.default()
    assert p.factors.shape == (3, 15, 96)
    assert np.all((p.factors > 0) & (p.factors <= 1))
    prim = CLASS_INDEX["primary"]
    assert p.factors[0, prim, 8 * 4] <= 0.65  # 08:00 weekday peak
    assert p.factors[0, prim, 18 * 4] <= 0.65  # 18:00 evening peak
    assert p.factors[0, prim, 3 * 4] == 1.0  # night
    assert p.factors[1, prim, 8 * 4] > p.factors[0, prim, 8 * 4]  # weekend flatter
    assert p.factors[2, prim, 12 * 4] < 0.9  # holiday midday bump


def test_day_types_across_midnight_and_holiday():
    p = TrafficProfile.default()
    # 2026-10-01 is a holiday; 2026-09-30 a Wednesday; table starting 23:00 local on 09-30
    b0 = int(datetime(2026, 9, 30, 23, 0, tzinfo=TZ).timestamp() // 900)
    tab = p.table(b0, HOL, TZ, np.zeros(0, np.int64))
    prim = CLASS_INDEX["primary"]
    assert tab[0, prim] == p.factors[0, prim, 23 * 4]
    # 12:00 on the holiday is 13 hours (52 bins) later
    assert tab[52, prim] == p.factors[2, prim, 12 * 4]


def test_profile_from_csv_and_json(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text(
        "day_type,road_class,bin,factor,edge_id\nweekday,primary,32,0.5,\nweekend,residential,40,0.7,12\n"
    )
    p = TrafficProfile.from_file(csv)
    assert p.factors[0, CLASS_INDEX["primary"], 32] == 0.5
    assert p.edge_factors[12][1, 40] == 0.7
    js = tmp_path / "p.json"
    js.write_text('{"classes": {"holiday": {"motorway": ' + str([0.9] * 96) + "}}}")
    assert TrafficProfile.from_file(js).factors[2, CLASS_INDEX["motorway"], 5] == 0.9
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "day_type,road_class,bin,factor\nsunday,primary,1,0.5\nweekday,bogus,1,0.5\nweekday,primary,99,0.5\n"
    )
    with pytest.raises(InvalidInput) as ei:
        TrafficProfile.from_file(bad)
    msg = str(ei.value)
    assert "line 2" in msg and "line 3" in msg and "line 4" in msg


def test_per_edge_override_used_by_router_and_reference(g):
    base = TrafficProfile.default()
    ef = {3: np.full((3, 96), 0.3)}
    p = TrafficProfile(base.factors, ef)
    keys, ids = p.edge_keys(g.n_road_edges, g.edge_class)
    assert keys[3] == 15 and list(ids) == [3]
    live = _live(g, p)
    assert live.congestion([3], NOW)[0] == pytest.approx(0.3)


def test_bad_batch_lists_every_item_and_applies_nothing(g):
    live = _live(g)
    before = live.snapshot()
    batch = [
        {"edge_id": 0, "observed_at": NOW, "speed_kmh": 20},  # fine
        {"edge_id": 10**9, "observed_at": NOW, "factor": 0.5},  # unknown edge
        {"edge_id": 1, "observed_at": NOW, "speed_kmh": -5},  # negative speed
        {"edge_id": 2, "observed_at": NOW, "factor": 1.7},  # factor too high
        {"edge_id": 3, "observed_at": NOW + 3600, "factor": 0.5},  # future
        {"edge_id": 4, "observed_at": NOW, "factor": 0.5, "expires_at": NOW + 30 * 86400},  # too far ahead
        {"edge_id": 5, "observed_at": NOW, "factor": 0.5, "expires_at": NOW - 10},  # before observed
        {"edge_id": 6, "observed_at": NOW, "speed_kmh": 0},  # zero speed
    ]
    with pytest.raises(InvalidInput) as ei:
        live.apply(batch)
    msg = str(ei.value)
    for i in range(1, 8):
        assert f"[{i}]" in msg
    assert "[0]" not in msg
    assert live.snapshot() is before
    assert not live.snapshot().flag.any()


def test_live_apply_decay_expiry_and_osm_addressing(g):
    live = _live(g)
    e = int(np.flatnonzero(g.edge_class == CLASS_INDEX["residential"])[0])
    way, u, v = int(g.edge_way[e]), int(g.node_osm[g.edge_u[e]]), int(g.node_osm[g.edge_v[e]])
    assert live.resolve_osm(way, u, v) == e
    r = live.apply(
        [LiveUpdate(observed_at=NOW, way_id=way, u_osm=u, v_osm=v, factor=0.2, expires_at=NOW + 7200)]
    )
    assert r.applied == 1
    prof = live.congestion([e], NOW + 7300)[0]  # after expiry: profile only
    assert live.congestion([e], NOW)[0] == pytest.approx(0.2)
    mid = live.congestion([e], NOW + 1800)[0]
    assert 0.2 < mid < prof
    # an older observation is stale and skipped; a closure shows as 0
    r2 = live.apply([{"edge_id": e, "observed_at": NOW - 600, "factor": 0.9}])
    assert r2.stale == 1 and r2.applied == 0
    live.apply([{"edge_id": e, "observed_at": NOW, "closed": True, "expires_at": NOW + 600}])
    assert live.congestion([e], NOW)[0] == 0.0
    # speeds above free flow are clamped to 1
    live.apply([{"edge_id": e + 1, "observed_at": NOW, "speed_mps": float(g.edge_speed_mps[e + 1]) * 1.2}])
    assert live.snapshot().factor[e + 1] == 1.0


def test_concurrent_batches_are_atomic(g):
    live = _live(g)
    edges = np.arange(50)
    seen_bad = []

    def reader():
        for _ in range(300):
            st_ = live.snapshot()
            f = st_.factor[edges]
            if not (np.all(f == f[0])):
                seen_bad.append(f)

    def writer():
        for k in range(100):
            val = 0.3 + 0.005 * k
            live.apply([{"edge_id": int(e), "observed_at": NOW, "factor": val} for e in edges])

    ts = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not seen_bad


@settings(max_examples=200, deadline=None)
@given(
    e=st.integers(0, 10**6),
    t1=st.floats(0, 3 * 86400),
    dt=st.floats(0, 7200),
    frac=st.floats(0.01, 1.0),
    live_f=st.floats(0.05, 1.0),
)
def test_fifo_edges(e, t1, dt, frac, live_f):
    """Entering an edge later never means leaving it earlier (kernel and reference)."""
    g, ref = _graph_and_ref()
    e = e % g.n_road_edges
    live = _live(g)
    live.apply([{"edge_id": e, "observed_at": NOW, "factor": live_f}])
    st_ = live.snapshot()
    b0 = int(NOW // 900)
    tab = TrafficProfile.default().table(b0, HOL, TZ, np.zeros(0, np.int64))
    keys = g.edge_class.astype(np.float64)
    edge_f = np.ascontiguousarray(np.column_stack((g.edge_length_m, g.edge_speed_mps, keys)))
    d = float(g.edge_length_m[e]) * frac
    path = np.array([e], np.int64)
    a1 = K.path_times(path, 0.0, d, 0, b0, t1, 3600.0, edge_f, tab, st_.flag, st_.data)[-1]
    a2 = K.path_times(path, 0.0, d, 0, b0, t1 + dt, 3600.0, edge_f, tab, st_.flag, st_.data)[-1]
    assert a2 >= a1 - 1e-9
    r1 = ref.travel(e, b0 * 900 + t1, d, 0, st_)
    r2 = ref.travel(e, b0 * 900 + t1 + dt, d, 0, st_)
    assert b0 * 900 + t1 + dt + r2 >= b0 * 900 + t1 + r1 - 1e-6
    assert r1 == pytest.approx(a1 - t1, rel=1e-9, abs=1e-6)


def _same_overlay(x: LiveTraffic, y: LiveTraffic) -> bool:
    a, b = x.snapshot(), y.snapshot()
    return bool(np.array_equal(a.flag, b.flag) and np.array_equal(a.data, b.data))


@settings(max_examples=50, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.integers(0, 5), st.sampled_from([0.0, 60.0]), st.sampled_from([0.2, 0.4, 0.6, None])
            ),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    ),
    order=st.randoms(use_true_random=False),
)
def test_stored_batches_give_one_overlay_whatever_their_order(batches, order):
    """Per edge the greatest (observed_at, batch id, index) wins: arrival order and repeats do not matter."""
    g = _graph_and_ref()[0]
    stored = [
        (
            bid,
            [
                {"edge_id": e, "observed_at": NOW - dt, "expires_at": NOW + 600}
                | ({"closed": True} if f is None else {"factor": f})
                for e, dt, f in items
            ],
        )
        for bid, items in enumerate(batches, start=1)
    ]
    in_order, shuffled = _live(g), _live(g)
    for b in stored:
        in_order.apply_stored([b])
    mixed = stored + stored[: len(stored) // 2]
    order.shuffle(mixed)
    for b in mixed:
        shuffled.apply_stored([b])
    assert _same_overlay(in_order, shuffled)
    at_once = _live(g)
    at_once.apply_stored(list(reversed(stored)))
    assert _same_overlay(in_order, at_once)


def test_equal_observation_times_the_higher_batch_wins_and_a_clear_is_final(g):
    live = _live(g)
    hi = live.apply_stored(
        [(7, [{"edge_id": 1, "factor": 0.6, "observed_at": NOW, "expires_at": NOW + 600}])]
    )
    lo = live.apply_stored(
        [(5, [{"edge_id": 1, "factor": 0.3, "observed_at": NOW, "expires_at": NOW + 600}])]
    )
    assert (hi.applied, lo.applied, lo.stale) == (1, 0, 1)
    assert live.snapshot().factor[1] == 0.6
    assert lo.version == hi.version  # nothing changed: no new version
    # a clear through id 7, then only batch 9: earlier batches never come back
    late = [{"edge_id": 2, "closed": True, "observed_at": NOW, "expires_at": NOW + 600}]
    live.rebuild(7, [(9, late)])
    assert live.cleared_through == 7 and live.snapshot().flag[1] == 0 and live.snapshot().flag[2] == 2
    again = live.apply_stored(
        [(6, [{"edge_id": 1, "factor": 0.2, "observed_at": NOW + 1, "expires_at": NOW + 600}])]
    )
    assert again.applied == 0 and live.snapshot().flag[1] == 0
    # a malformed stored batch is refused whole
    bad = live.apply_stored(
        [(10, [{"edge_id": 3, "factor": 0.5, "observed_at": NOW, "expires_at": NOW + 1}, {"edge_id": -1}])]
    )
    assert bad.rejected == (10,) and live.snapshot().flag[3] == 0


def test_intake_rules_for_feeds(g):
    live = _live(g)
    live.set_limits(skew_s=5, max_ahead_s=86400, max_closure_s=3600, max_age_s=3600)
    ok = live.prepare(
        [
            {"edge_id": 0, "observed_at": NOW + 4, "factor": 0.5},
            {"edge_id": 1, "observed_at": NOW, "closed": True, "expires_at": NOW + 3600},
            {"edge_id": 2, "observed_at": NOW - 3000, "speed_mps": float(g.edge_speed_mps[2]) * 1.2},
        ]
    )
    assert ok[0] == {"edge_id": 0, "observed_at": NOW + 4, "expires_at": NOW + 4 + 3600, "factor": 0.5}
    assert ok[1]["closed"] is True and ok[2]["factor"] == 1.0  # faster than free flow: clamped
    bad = [
        {"edge_id": 0, "observed_at": NOW + 1, "closed": True},  # a closure starting in the future
        {"edge_id": 0, "observed_at": NOW + 6, "factor": 0.5},  # beyond the skew
        {"edge_id": 0, "observed_at": NOW, "closed": True, "expires_at": NOW + 3601},  # above the cap
        {"edge_id": 0, "observed_at": NOW - 3601, "factor": 0.5},  # too old
        {"edge_id": 0, "observed_at": datetime(1, 1, 1), "factor": 0.5},  # year 1
        {"edge_id": 0, "observed_at": NOW, "factor": float("nan")},
        {"edge_id": 0, "observed_at": float("inf"), "factor": 0.5},
    ]
    with pytest.raises(InvalidInput) as ei:
        live.prepare([{"edge_id": 5, "observed_at": NOW, "factor": 0.5}, *bad])
    msg = str(ei.value)
    assert "[0]" not in msg and all(f"[{i}]" in msg for i in range(1, len(bad) + 1))
    assert "future" in msg and "cap" in msg and "old" in msg
    with pytest.raises(InvalidInput):
        live.set_limits(skew_s=float("nan"))
