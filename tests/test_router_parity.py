"""Fast router (numba, node-split CSR, ALT) == reference (pure Python, edge-based) on seeded random inputs."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config import load_region
from geo import RouteNotFound
from geo._reference import ReferenceRouter
from geo._router import Router
from geo._synthetic import synthetic_graph
from geo._traffic import TrafficProfile

TZ = ZoneInfo("Asia/Shanghai")
HOL = load_region("lijiang").holidays
REL = 1e-6

DEPARTURES = [
    datetime(2026, 3, 10, 8, 15, tzinfo=TZ),  # weekday morning peak
    datetime(2026, 3, 10, 18, 5, tzinfo=TZ),  # evening peak
    datetime(2026, 3, 14, 12, 0, tzinfo=TZ),  # weekend midday bump
    datetime(2026, 10, 2, 11, 40, tzinfo=TZ),  # national holiday
    datetime(2026, 3, 10, 23, 52, tzinfo=TZ),  # crosses local midnight
    datetime(2026, 9, 30, 23, 58, tzinfo=TZ),  # weekday -> holiday at midnight
    datetime(2026, 3, 11, 3, 0, tzinfo=TZ),  # night
]


@pytest.fixture(scope="module")
def world():
    g = synthetic_graph(2500, seed=11, restrictions=80)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ)
    ref = ReferenceRouter(g, prof, HOL, TZ)
    return g, r, ref


def _points(g, rng, k):
    """Random points near roads (on a polyline, jittered) and a few anywhere in the bbox."""
    pts = []
    for _ in range(k):
        if rng.random() < 0.8:
            e = int(rng.integers(g.n_road_edges))
            pl = g.edge_polyline(e)
            i = int(rng.integers(len(pl) - 1))
            f = rng.random()
            lat, lon = pl[i] + f * (pl[i + 1] - pl[i])
            pts.append((float(lat + rng.normal(0, 1e-4)), float(lon + rng.normal(0, 1e-4))))
        else:
            pts.append(
                (
                    float(rng.uniform(g.node_lat.min(), g.node_lat.max())),
                    float(rng.uniform(g.node_lon.min(), g.node_lon.max())),
                )
            )
    return pts


def _departure(rng):
    if rng.random() < 0.6:
        return DEPARTURES[int(rng.integers(len(DEPARTURES)))].timestamp() + float(rng.uniform(0, 600))
    return datetime(2026, 3, 1, tzinfo=TZ).timestamp() + float(rng.uniform(0, 60 * 86400))


def _check(r, ref, a, b, dep, *, free_flow=False, metric="time", vehicle=None):
    s = r.snapper.snap(*a)
    d = r.snapper.snap(*b)
    live = r._empty_live if free_flow else r.live.snapshot()
    mode = 2 if metric == "distance" else (1 if free_flow else 0)
    want = ref.cost(s, d, dep, live, mode, vehicle=vehicle)
    try:
        res = r.route(a, b, depart_at=dep, free_flow=free_flow, metric=metric, steps=False, vehicle=vehicle)
    except RouteNotFound:
        assert math.isinf(want), f"router found no route, reference {want}"
        return "unreachable"
    got = res.distance_m if metric == "distance" else res.duration_s
    assert got == pytest.approx(want, rel=REL, abs=1e-6), (a, b, dep)
    # the returned path really costs that (independent evaluation)
    if len(res.edges) and res.distance_m > 0:
        f0 = res.first_fraction * float(g_len(r, res.edges[0]))
        f1 = res.last_fraction * float(g_len(r, res.edges[-1]))
        pc = ref.path_cost(res.edges, f0, f1, dep if mode != 2 else 0.0, live, mode)
        assert pc == pytest.approx(got, rel=REL, abs=1e-5)
    return "ok"


def g_len(r, e):
    return r.g.edge_length_m[e]


def test_parity_profile_only(world):
    g, r, ref = world
    rng = np.random.default_rng(1)
    pts = _points(g, rng, 500)
    out = [_check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng)) for i in range(250)]
    print(f"\nparity profile-only: {out.count('ok')} ok, {out.count('unreachable')} unreachable (both)")


def test_parity_with_live_updates_and_closures(world):
    g, r, ref = world
    rng = np.random.default_rng(2)
    t_obs = datetime(2026, 10, 2, 11, 0, tzinfo=TZ).timestamp()
    edges = rng.choice(g.n_road_edges, 400, replace=False)
    batch = []
    for i, e in enumerate(edges.tolist()):
        o = t_obs - float(rng.uniform(0, 1800))
        if i < 40:
            batch.append(
                {
                    "edge_id": e,
                    "observed_at": o,
                    "closed": True,
                    "expires_at": o + float(rng.uniform(600, 10800)),
                }
            )
        elif i % 2:
            batch.append({"edge_id": e, "observed_at": o, "factor": float(rng.uniform(0.1, 1.4))})
        else:
            batch.append(
                {
                    "edge_id": e,
                    "observed_at": o,
                    "speed_kmh": float(rng.uniform(3, 1.45 * 3.6 * g.edge_speed_mps[e])),
                    "expires_at": o + 5400,
                }
            )
    r.live.apply(batch)
    try:
        pts = _points(g, rng, 400)
        out = []
        for i in range(200):
            dep = t_obs + float(rng.uniform(-900, 7200))
            out.append(_check(r, ref, pts[2 * i], pts[2 * i + 1], dep))
        print(f"\nparity live: {out.count('ok')} ok, {out.count('unreachable')} unreachable (both)")
    finally:
        r.live.clear()


def test_parity_free_flow_and_distance(world):
    g, r, ref = world
    rng = np.random.default_rng(3)
    pts = _points(g, rng, 120)
    for i in range(30):
        _check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng), free_flow=True)
    for i in range(30, 60):
        _check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng), metric="distance")


def test_parity_without_restrictions_small_graph():
    g = synthetic_graph(900, seed=21, restrictions=0, landmarks=8)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ)
    ref = ReferenceRouter(g, prof, HOL, TZ)
    rng = np.random.default_rng(4)
    pts = _points(g, rng, 120)
    for i in range(60):
        _check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng))


def test_parity_period_tables_with_slow_live(world):
    """Peak departures with only slow live factors (<= 0.55): the period landmark tables stay in use
    (their horizon ends at the first bin whose factor may exceed a ceiling) and results stay exact."""
    g, r, ref = world
    rng = np.random.default_rng(5)
    t_obs = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()
    edges = rng.choice(g.n_road_edges, 300, replace=False)
    batch = [
        {
            "edge_id": int(e),
            "observed_at": t_obs - float(rng.uniform(0, 1800)),
            "factor": float(rng.uniform(0.1, 0.55)),
        }
        for e in edges
    ]
    assert r._periods, "period tables are built at load"
    for live in (False, True):
        if live:
            r.live.apply(batch)
        try:
            pts = _points(g, rng, 160)
            used = 0
            for i in range(80):
                dep = t_obs + float(rng.uniform(0, 5400))
                ctx = r._ctx(dep, free_flow=False, metric="time")
                used += r._period(ctx, 0.0)[0] >= 0
                _check(r, ref, pts[2 * i], pts[2 * i + 1], dep)
            assert used > 40
        finally:
            r.live.clear()


def test_parity_distance_many(world):
    """metric="distance" with the straight-line bound == reference on many pairs."""
    g, r, ref = world
    assert r._geo_ok
    rng = np.random.default_rng(6)
    pts = _points(g, rng, 300)
    for i in range(150):
        _check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng), metric="distance")


def test_parity_period_tables_with_fast_live_on_one_class(world):
    """Peak departures with FAST live observations (factor up to 1.3, clamped to 1) on residential
    streets only, slow ones elsewhere: the per-class live maxima keep a period table usable (the single
    global maximum, 1.0, would exceed every table's smallest ceiling and switch them all off), and
    results stay exact."""
    g, r, ref = world
    from geo._graph import CLASS_INDEX

    rng = np.random.default_rng(7)
    t_obs = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()
    res_edges = np.flatnonzero(g.edge_class == CLASS_INDEX["residential"])
    other = np.flatnonzero(g.edge_class != CLASS_INDEX["residential"])
    fast = rng.choice(res_edges, 150, replace=False)
    slow = rng.choice(other, 150, replace=False)
    batch = [
        {"edge_id": int(e), "observed_at": t_obs - float(rng.uniform(0, 1800)), "factor": float(rng.uniform(0.7, 1.3))}
        for e in fast
    ] + [
        {"edge_id": int(e), "observed_at": t_obs - float(rng.uniform(0, 1800)), "factor": float(rng.uniform(0.1, 0.55))}
        for e in slow
    ]  # fmt: skip
    r.live.apply(batch)
    try:
        st = r.live.snapshot()
        assert st.fmax == 1.0 and all(st.fmax > p.smin for p in r._periods)  # a global bound: no table
        assert st.class_fmax[CLASS_INDEX["residential"]] == 1.0
        assert st.class_fmax[CLASS_INDEX["primary"]] <= 0.55
        pts = _points(g, rng, 160)
        used = 0
        for i in range(80):
            dep = t_obs + float(rng.uniform(0, 5400))
            ctx = r._ctx(dep, free_flow=False, metric="time")
            used += r._period(ctx, 0.0)[0] >= 0
            _check(r, ref, pts[2 * i], pts[2 * i + 1], dep)
        assert used > 40
    finally:
        r.live.clear()


def test_parity_junction_endpoints(world):
    """Points on junctions (phantom endpoints: any road out, any road in) agree with the reference."""
    g, r, ref = world
    rng = np.random.default_rng(5)
    n_j = int(np.count_nonzero(g.node_base == np.arange(g.n_nodes)))
    js = rng.integers(0, n_j, 240)
    pts = [(float(g.node_lat[j]), float(g.node_lon[j])) for j in js]
    out = []
    for i in range(120):
        metric = ("time", "distance")[i % 2]
        out.append(_check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng), metric=metric))
    assert out.count("ok") >= 100


def test_parity_restricted_roads():
    """Destination/private roads (an entry cost, no through traffic) agree with the reference too."""
    from dataclasses import replace

    from geo._graph import FLAG_RESTRICTED

    g0 = synthetic_graph(2500, seed=11, restrictions=80)
    rng = np.random.default_rng(9)
    flags = (
        g0.edge_flags.copy()
        if g0.edge_flags.shape[0] == g0.n_road_edges
        else np.zeros(g0.n_road_edges, np.uint8)
    )
    flags[rng.random(g0.n_road_edges) < 0.15] |= FLAG_RESTRICTED
    g = replace(g0, edge_flags=flags)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ, restricted_penalty_s=90.0)
    ref = ReferenceRouter(g, prof, HOL, TZ, restricted_penalty_s=90.0)
    pts = _points(g, rng, 200)
    n_j = int(np.count_nonzero(g.node_base == np.arange(g.n_nodes)))
    pts += [(float(g.node_lat[j]), float(g.node_lon[j])) for j in rng.integers(0, n_j, 80)]
    out = []
    for i in range(140):
        metric = ("time", "distance")[i % 2]
        out.append(_check(r, ref, pts[2 * i], pts[2 * i + 1], _departure(rng), metric=metric))
    assert out.count("ok") >= 100


def test_parity_vehicles():
    """Vans and trucks (per-edge limits and hgv access as a closure mask, hgv=destination as an entry
    cost) agree with the reference, also from and to junctions and with live closures."""
    from dataclasses import replace

    from geo._vehicle import CAR, make_vehicle

    g0 = synthetic_graph(2500, seed=11, restrictions=80)
    rng = np.random.default_rng(13)
    m = g0.n_road_edges
    limits = np.full((m, 4), np.inf, np.float32)
    for k, (lo, hi) in enumerate(((2.0, 5.0), (3.0, 40.0), (1.8, 3.5), (6.0, 20.0))):
        pick = rng.random(m) < 0.06
        limits[pick, k] = rng.uniform(lo, hi, int(pick.sum()))
    hgv = np.full(m, 2, np.uint8)
    hgv[rng.random(m) < 0.05] = 0
    hgv[rng.random(m) < 0.05] = 1
    g = replace(g0, edge_limits=limits, edge_hgv=hgv)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ, restricted_penalty_s=60.0)
    ref = ReferenceRouter(g, prof, HOL, TZ, restricted_penalty_s=60.0)
    vehicles = [
        CAR,
        make_vehicle("van"),
        make_vehicle("truck"),
        make_vehicle("truck", height_m=3.2, weight_t=7.0, width_m=2.2, length_m=8.0),
    ]
    t_obs = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()
    closed = rng.choice(m, 30, replace=False).tolist()
    r.live.apply(
        [{"edge_id": e, "observed_at": t_obs, "closed": True, "expires_at": t_obs + 7200} for e in closed]
    )
    try:
        pts = _points(g, rng, 200)
        n_j = int(np.count_nonzero(g.node_base == np.arange(g.n_nodes)))
        pts += [(float(g.node_lat[j]), float(g.node_lon[j])) for j in rng.integers(0, n_j, 120)]
        order = rng.permutation(len(pts))
        pts = [pts[i] for i in order]
        out = []
        for i in range(160):
            metric = ("time", "distance")[i % 2]
            dep = t_obs + float(rng.uniform(0, 3600))
            v = vehicles[i % len(vehicles)]
            out.append(_check(r, ref, pts[2 * i], pts[2 * i + 1], dep, metric=metric, vehicle=v))
        assert out.count("ok") >= 100
    finally:
        r.live.clear()


def random_extract(seed: int, rows: int = 14, cols: int = 14) -> tuple[str, int]:
    """A random OSM grid extract with turn restrictions through one or two via ways and through via
    nodes: every grid line cut into ways of one to three segments, some of them one-way, a few segments
    missing. Returns (OSM XML, restrictions written)."""
    from tests.osm_fixtures import osm_xml

    rng = np.random.default_rng(seed)
    step = 0.0012

    def nid(r: int, c: int) -> int:
        return r * cols + c + 1

    nodes = {
        nid(r, c): (26.86 + r * step + rng.uniform(-0.2, 0.2) * step, 100.22 + c * step + rng.uniform(-0.2, 0.2) * step)
        for r in range(rows)
        for c in range(cols)
    }  # fmt: skip
    ways: dict[int, tuple[list[int], dict[str, str]]] = {}
    lines: list[list[int]] = []  # way ids along each grid line, in order
    wid = 1000
    for k in range(rows + cols):
        seq = [nid(k, c) for c in range(cols)] if k < rows else [nid(r, k - rows) for r in range(rows)]
        i, line = 0, []
        while i < len(seq) - 1:
            n = int(rng.integers(1, 4))
            piece = seq[i : i + n + 1]
            i += n
            if rng.random() < 0.04:
                continue  # a missing stretch
            tags = {"highway": "tertiary" if k % 5 == 0 else "residential"}
            if rng.random() < 0.12:
                tags["oneway"] = "yes" if rng.random() < 0.5 else "-1"
            ways[wid] = (piece, tags)
            line.append(wid)
            wid += 1
        lines.append(line)
    ends: dict[int, list[int]] = {}
    for w, (refs, _) in ways.items():
        for n in refs:
            ends.setdefault(n, []).append(w)
    kinds = ["no_left_turn", "no_right_turn", "no_straight_on", "no_u_turn", "only_straight_on",
             "only_left_turn", "only_right_turn"]  # fmt: skip
    relations = []
    for rid in range(1, 121):
        line = lines[int(rng.integers(len(lines)))]
        if len(line) < 2:
            continue
        j = int(rng.integers(len(line) - 1))
        via = [line[j]] if rng.random() < 0.7 or j + 2 > len(line) else line[j : j + 2]
        first, last = ways[via[0]][0][0], ways[via[-1]][0][-1]
        frm = [w for w in ends.get(first, []) if w not in via]
        to = [w for w in ends.get(last, []) if w not in via]
        if not frm or not to:
            continue
        kind = kinds[int(rng.integers(len(kinds)))]
        f, t = frm[int(rng.integers(len(frm)))], to[int(rng.integers(len(to)))]
        if rng.random() < 0.5:  # the other way through
            f, t = t, f
        if rng.random() < 0.25:  # a plain via-node restriction at the via way's end
            members = [("way", f, "from"), ("node", last, "via"), ("way", via[-1], "to")]
        else:
            members = [("way", f, "from"), *(("way", v, "via") for v in via), ("way", t, "to")]
        relations.append((rid, members, {"type": "restriction", "restriction": kind}))
    return osm_xml(nodes, ways, relations), len(relations)


@pytest.mark.parametrize(("seed", "u_turn_s"), [(31, 20.0), (32, 120.0), (33, 0.0)])
def test_parity_via_way_restrictions_and_u_turns(tmp_path, seed, u_turn_s):
    """Random extracts with via-way (one or two ways) and via-node restrictions, built by the real
    builder (private copies along each via path), and a U-turn cost: fast == reference, from and to
    junctions and mid-road points, by time (with live traffic) and by distance."""
    from geo._build import build_graph

    xml, n_rel = random_extract(seed)
    assert n_rel >= 60
    p = tmp_path / "random.osm"
    p.write_text(xml)
    g = build_graph(p, speeds_kmh=load_region("lijiang").speeds_kmh)
    counts = g.meta["counts"]
    assert counts["restrictions_applied_via_way"] >= 20, counts
    assert counts["split_nodes"] > counts["restrictions_applied_via_way"]  # multi-level copies
    from geo._landmarks import add_landmarks

    add_landmarks(g, count=8, seed=seed)
    prof = TrafficProfile.default()
    r = Router(g, profile=prof, holidays=HOL, tz=TZ, u_turn_penalty_s=u_turn_s)
    ref = ReferenceRouter(g, prof, HOL, TZ, u_turn_penalty_s=u_turn_s)
    rng = np.random.default_rng(seed)
    t_obs = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()
    slow = rng.choice(g.n_road_edges, g.n_road_edges // 10, replace=False)
    r.live.apply(
        [{"edge_id": int(e), "observed_at": t_obs, "factor": float(rng.uniform(0.2, 0.9))} for e in slow]
    )
    try:
        pts = _points(g, rng, 160)
        n_j = int(np.count_nonzero(g.node_base == np.arange(g.n_nodes)))
        pts += [(float(g.node_lat[j]), float(g.node_lon[j])) for j in rng.integers(0, n_j, 120)]
        pts = [pts[i] for i in rng.permutation(len(pts))]
        out = []
        u_turns = 0
        for i in range(140):
            metric = ("time", "distance")[i % 2]
            dep = t_obs + float(rng.uniform(0, 3600))
            out.append(_check(r, ref, pts[2 * i], pts[2 * i + 1], dep, metric=metric))
            if out[-1] == "ok":
                res = r.route(pts[2 * i], pts[2 * i + 1], depart_at=dep, metric=metric, steps=False)
                u_turns += sum(int(r._rev[a]) == b for a, b in zip(res.edges, res.edges[1:], strict=False))
        assert out.count("ok") >= 100
        print(
            f"\nvia-way parity seed {seed}, U-turn {u_turn_s} s: {out.count('ok')} ok, {u_turns} U-turns driven"
        )
    finally:
        r.live.clear()


def test_u_turn_penalty_changes_routes_and_stays_exact():
    """Starts with a forced direction of travel (a driver already heading one way, the `src_dir` of
    route legs), often away from the destination: turning back at the next junction pays the U-turn cost,
    going round the block or to a dead end does not. A large cost changes many routes, and fast ==
    reference with it (time with live traffic, free flow, distance)."""
    g = synthetic_graph(2500, seed=11, restrictions=80)
    prof = TrafficProfile.default()
    r0 = Router(g, profile=prof, holidays=HOL, tz=TZ, u_turn_penalty_s=0.0)
    r = Router(g, profile=prof, holidays=HOL, tz=TZ, u_turn_penalty_s=90.0)
    ref = ReferenceRouter(g, prof, HOL, TZ, u_turn_penalty_s=90.0)
    rng = np.random.default_rng(17)
    t_obs = datetime(2026, 3, 10, 8, 0, tzinfo=TZ).timestamp()
    slow = rng.choice(g.n_road_edges, 300, replace=False)
    batch = [{"edge_id": int(e), "observed_at": t_obs, "factor": float(rng.uniform(0.2, 0.9))} for e in slow]
    r.live.apply(batch)
    r0.live.apply(batch)
    pts = _points(g, rng, 400)
    changed = turned = 0
    try:
        for i in range(200):
            s = r.snapper.snap(*pts[2 * i])
            d = r.snapper.snap(*pts[2 * i + 1])
            direction = int(rng.choice([-1, 1]))
            if direction == -1 and r._rev[s.edge] < 0:
                direction = 1
            mode = i % 3
            metric = "distance" if mode == 2 else "time"
            dep = t_obs + float(rng.uniform(0, 3600))
            live = r._empty_live if mode == 1 else r.live.snapshot()
            want = ref.cost(s, d, dep, live, mode, src_dir=direction)
            ctx = r._ctx(dep, free_flow=mode == 1, metric=metric)
            try:
                res = r.route_snapped(s, d, ctx=ctx, steps=False, metric=metric, src_dir=direction)
            except RouteNotFound:
                assert math.isinf(want)
                continue
            got = res.distance_m if mode == 2 else res.duration_s
            assert got == pytest.approx(want, rel=REL, abs=1e-6), (i, direction)
            ctx0 = r0._ctx(dep, free_flow=mode == 1, metric=metric)
            res0 = r0.route_snapped(s, d, ctx=ctx0, steps=False, metric=metric, src_dir=direction)
            changed += res.edges != res0.edges
            turned += sum(int(r._rev[a]) == b for a, b in zip(res0.edges, res0.edges[1:], strict=False))
    finally:
        r.live.clear()
        r0.live.clear()
    print(f"\nforced-direction parity: {turned} U-turns without the cost, {changed} routes changed by it")
    assert turned >= 20 and changed >= 10, (turned, changed)
