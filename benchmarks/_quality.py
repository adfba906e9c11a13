"""Route quality: optimality vs the reference, pgRouting and osmnx agreement, traffic awareness, alternatives."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from benchmarks._common import EXTRACTS, OSM, RUSH, Ctx, Progress, p50, ratio, rel_diff
from benchmarks._independent import TOL as TOL_INDEPENDENT
from geo._errors import RouteNotFound
from geo._graph import FLAG_RESTRICTED, CompiledGraph
from geo._reference import ReferenceRouter
from geo._router import Router, RouteResult
from geo._traffic import LiveState

TOL_EXACT = 1e-6
TOL_AGREE = 1e-3  # 0.1 %


# ---- helpers ---------------------------------------------------------------------------------------
def incidents(
    g: CompiledGraph, seed: int, observed: float, *, slow: float = 0.04, closed: float = 0.01
) -> list[dict[str, Any]]:
    """Seeded incidents: `slow` share of road edges slowed to 15-50 % of free flow, `closed` share closed,
    edges drawn with probability proportional to length (longer roads matter more); 3 hours long."""
    rng = np.random.default_rng(seed)
    m = g.n_road_edges
    k_slow, k_closed = max(1, int(m * slow)), max(1, int(m * closed))
    w = np.asarray(g.edge_length_m, dtype=float)
    ids = rng.choice(m, size=min(m, k_slow + k_closed), replace=False, p=w / w.sum())
    out: list[dict[str, Any]] = []
    for i, e in enumerate(ids.tolist()):
        item: dict[str, Any] = {
            "edge_id": int(e),
            "observed_at": observed,
            "expires_at": observed + 3 * 3600.0,
        }
        if i < k_slow:
            item["factor"] = float(rng.uniform(0.15, 0.5))
        else:
            item["closed"] = True
        out.append(item)
    return out


def ground_truth_router(ctx: Ctx, name: str, salt: int = 0) -> Router:
    """Default profile + seeded incidents observed one minute before RUSH (08:00 weekday)."""
    t_obs = RUSH.timestamp() - 60.0
    r = ctx.router(name, clock=RUSH.timestamp() + 3 * 3600.0)
    r.live.apply(incidents(r.g, ctx.seed + salt, t_obs))
    return r


def _route(r: Router, a: tuple[float, float], b: tuple[float, float], **kw: Any) -> RouteResult | None:
    try:
        return r.route(a, b, steps=False, **kw)
    except RouteNotFound:
        return None


def path_truth(ref: ReferenceRouter, res: RouteResult, t_dep: float, live: LiveState) -> float:
    """Time-dependent cost of driving `res`'s path under `live` (inf when it ENTERS a closed edge; the
    first edge is where the trip starts, so a closure there does not block it, as in the router)."""
    closed = live.closed_at(t_dep)
    if any(bool(closed[e]) for e in res.edges[1:]):
        return math.inf
    L = ref.length
    first_off = res.first_fraction * L[res.edges[0]]
    last_end = res.last_fraction * L[res.edges[-1]]
    return ref.path_cost(res.edges, first_off, last_end, t_dep, live, mode=0)


def junction_candidates(r: Router) -> np.ndarray:
    """Junctions whose coordinate snaps onto a two-way road end (so a start/end there is a plain junction
    visit) and that are no turn-restriction via node."""
    g = r.g
    n = g.n_nodes
    junction = np.flatnonzero(g.node_base == np.arange(n))
    via = set(g.node_base[g.node_base != np.arange(n)].tolist())
    pts = np.column_stack((g.node_lat[junction], g.node_lon[junction]))
    snaps = r.snapper.snap_many(pts)
    keep = []
    for j, s in zip(junction.tolist(), snaps, strict=True):
        if s is None or s.distance_m > 0.05 or j in via:
            continue
        if r._rev[s.edge] < 0:  # a one-way road end: the start would have to drive that edge
            continue
        keep.append(j)
    return np.asarray(keep, np.int64)


def _latlon(g: CompiledGraph, j: int) -> tuple[float, float]:
    return float(g.node_lat[j]), float(g.node_lon[j])


# ---- 1. optimality ---------------------------------------------------------------------------------
def reference_for(r: Router) -> ReferenceRouter:
    """The reference router with `r`'s graph, traffic profile and costs (the same rules, checked twice)."""
    return ReferenceRouter(
        r.g, r.profile, r.holidays, r.tz, decay_s=r.decay_s,
        restricted_penalty_s=r.restricted_penalty_s, u_turn_penalty_s=r.u_turn_penalty_s,
    )  # fmt: skip


def optimality(ctx: Ctx) -> None:
    sec = ctx.report.section("1. Optimality: router vs the exact reference Dijkstra")
    sec.text += [
        "Router (time-dependent A* with landmarks, numba) vs `geo._reference.ReferenceRouter` (pure-Python",
        "edge-based Dijkstra with its own speed integration) on seeded OD pairs (`ingest od-pairs` generator)",
        "with seeded departure times 06:00-22:00 on a weekday, the default profile AND seeded incidents",
        "(4 % of edges slowed, 1 % closed, observed 07:59). Modes: time-dependent fastest, shortest distance,",
        "and one-to-many (time). Mismatch: relative difference > 1e-6 (or one side unreachable).",
    ]
    names = (
        [*EXTRACTS, "synthetic-3000-r"] if not ctx.quick else ["beijing_tsinghua.osm.bz2", "synthetic-1000-r"]
    )
    rows = []
    total_mis = total_n = 0
    data: dict[str, Any] = {}
    for name in names:
        r = ground_truth_router(ctx, name, salt=1)
        g = r.g
        ref = reference_for(r)
        live = r.live.snapshot()
        n = ctx.n(150 if g.n_road_edges < 5000 else 80, 15)
        pairs = ctx.pairs(name, n, salt=11)
        mis = {"time": 0, "distance": 0, "one_to_many": 0}
        examples: list[str] = []
        counts = {"time": 0, "distance": 0, "one_to_many": 0}
        unreachable = 0
        worst = 0.0
        prog = Progress(f"optimality {name}", n)
        t_fast = t_ref = 0.0
        for i, p in enumerate(pairs, 1):
            t_dep = p.depart_at.timestamp()
            s = r.snapper.snap(*p.origin)
            d = r.snapper.snap(*p.destination)
            metrics: tuple[tuple[Literal["time", "distance"], int], ...] = (("time", 0), ("distance", 2))
            for metric, mode in metrics:
                t0 = time.perf_counter()
                res = _route(r, p.origin, p.destination, depart_at=p.depart_at, metric=metric)
                t1 = time.perf_counter()
                want = ref.cost(s, d, t_dep, live, mode)
                t2 = time.perf_counter()
                t_fast += t1 - t0
                t_ref += t2 - t1
                got = math.inf if res is None else (res.duration_s if mode == 0 else res.distance_m)
                unreachable += int(not math.isfinite(want))
                rd = rel_diff(got, want)
                if math.isfinite(rd):
                    worst = max(worst, rd)
                counts[metric] += 1
                mis[metric] += int(rd > TOL_EXACT)
                if rd > TOL_EXACT and len(examples) < 5:
                    examples.append(
                        f"{name} {metric} pair {i - 1} {p.origin}->{p.destination} at {p.depart_at.isoformat()}:"
                        f" router {got:.6f} vs reference {want:.6f}"
                    )
            prog.tick(i)
        # one-to-many: a few origins x the pairs' destinations
        dests = [p.destination for p in pairs[: ctx.n(30, 8)]]
        dsn = [r.snapper.snap(*x) for x in dests]
        for p in pairs[: ctx.n(5, 2)]:
            dur, _ = r.one_to_many(p.origin, dests, depart_at=p.depart_at)
            s = r.snapper.snap(*p.origin)
            for k, dd in enumerate(dsn):
                want = ref.cost(s, dd, p.depart_at.timestamp(), live, 0)
                counts["one_to_many"] += 1
                bad = rel_diff(float(dur[k]), want) > TOL_EXACT
                mis["one_to_many"] += int(bad)
                if bad and len(examples) < 5:
                    examples.append(
                        f"{name} one_to_many {p.origin}->{dests[k]} at {p.depart_at.isoformat()}:"
                        f" router {float(dur[k]):.6f} vs reference {want:.6f}"
                    )
        m_all = sum(mis.values())
        c_all = sum(counts.values())
        total_mis += m_all
        total_n += c_all
        label = name + (" (synthetic, with turn restrictions)" if name.startswith("synthetic") else "")
        rows.append(
            [label, g.n_nodes, g.n_road_edges, c_all, mis["time"], mis["distance"], mis["one_to_many"], unreachable,
             f"{worst:.1e}", round(ratio(t_ref, t_fast), 1)]
        )  # fmt: skip
        data[name] = {
            "checks": counts,
            "examples": examples,
            "mismatches": mis,
            "unreachable": unreachable,
            "worst_rel_diff": worst,
        }
        for ex in examples:
            print(f"  MISMATCH {ex}", flush=True)
            sec.text.append(f"- mismatch: {ex}")
    sec.tables.append(
        (["graph", "nodes", "road edges", "checks", "mismatch time", "mismatch dist", "mismatch 1-to-N",
          "unreachable (both)", "worst rel diff", "reference / router time"], rows)
    )  # fmt: skip
    sec.data.update(data)
    ctx.report.bar(
        "optimality: mismatches vs the reference = 0",
        total_mis == 0,
        f"{total_mis} mismatches in {total_n} checks over {len(names)} graphs",
    )


# ---- 2. pgRouting ---------------------------------------------------------------------------------
def pgrouting(ctx: Ctx, db_url: str) -> None:
    import psycopg
    from psycopg import sql

    from store._road_edges import replace_road_edges

    sec = ctx.report.section("2. pgRouting agreement (free flow, junction to junction)")
    names = ["andorra.osm.pbf", "beijing_tsinghua.osm.bz2"]
    rows = []
    data: dict[str, Any] = {}
    agree_all = n_all = 0
    lat_ours: list[float] = []
    lat_pgr: dict[str, list[float]] = {"pgr_dijkstra": [], "pgr_bdDijkstra": []}
    with psycopg.connect(db_url, autocommit=True) as conn:
        version = conn.execute("SELECT pgr_version()").fetchone()
        sec.text += [
            f"pgRouting {version[0] if version else '?'}: `road_edges` (id, source, target = junction indices,",
            "cost = cost_s = free-flow seconds, reverse_cost = -1: the table holds one row per DIRECTED edge) loaded",
            "with `store._road_edges.replace_road_edges`; pairs of junctions that are no turn-restriction via node",
            "and whose coordinate snaps onto a two-way road end. Ours: `Router.route(..., free_flow=True)` between",
            "the junctions' coordinates. Latency: pgRouting per query (SQL round trip, edges read per query as",
            "pgRouting does) vs our router per query, same pairs.",
        ]
        for name in names:
            r = ctx.router(name)
            g = r.g
            region = "bench_" + name.split(".")[0]
            replace_road_edges(conn, region, g)
            conn.execute("ANALYZE road_edges")
            edges_sql = (
                sql.SQL(
                    "SELECT id, source, target, cost_s AS cost, -1::float8 AS reverse_cost FROM road_edges WHERE region = {}"
                )
                .format(sql.Literal(region))
                .as_string(conn)
            )
            via = set(g.node_base[g.node_base != np.arange(g.n_nodes)].tolist())
            cand = junction_candidates(r)
            rng = np.random.default_rng(ctx.seed + 21)
            n = ctx.n(200, 20)
            src = rng.choice(cand, n)
            dst = rng.choice(cand, n)
            agree = 0
            kinds: dict[str, int] = {}
            prog = Progress(f"pgrouting {name}", n)
            for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist(), strict=True), 1):
                if a == b:
                    continue
                t0 = time.perf_counter()
                res = _route(r, _latlon(g, a), _latlon(g, b), depart_at=RUSH, free_flow=True)
                lat_ours.append(time.perf_counter() - t0)
                ours = math.inf if res is None else res.duration_s
                costs = {}
                nodes: list[int] = []
                path_edges: list[int] = []
                for fn in ("pgr_dijkstra", "pgr_bdDijkstra"):
                    q = sql.SQL(
                        "SELECT node, edge, agg_cost FROM {}(%s, %s::bigint, %s::bigint, directed => true)"
                        " ORDER BY seq"
                    ).format(sql.Identifier(fn.lower()))
                    t0 = time.perf_counter()
                    got = conn.execute(q, (edges_sql, a, b)).fetchall()
                    lat_pgr[fn].append(time.perf_counter() - t0)
                    costs[fn] = float(got[-1][2]) if got else math.inf
                    if fn == "pgr_dijkstra":
                        nodes = [int(x[0]) for x in got]
                        path_edges = [int(x[1]) for x in got if int(x[1]) >= 0]
                n_all += 1
                ok = rel_diff(ours, costs["pgr_dijkstra"]) <= TOL_AGREE
                if rel_diff(costs["pgr_dijkstra"], costs["pgr_bdDijkstra"]) > TOL_AGREE:
                    kinds["pgr_dijkstra != pgr_bdDijkstra"] = (
                        kinds.get("pgr_dijkstra != pgr_bdDijkstra", 0) + 1
                    )
                if ok:
                    agree += 1
                else:
                    if ours < costs["pgr_dijkstra"]:
                        k = "router cheaper than pgRouting (unexpected)"
                    elif any(v in via for v in nodes):
                        k = "pgRouting path makes a banned turn (turn restriction; pgr_dijkstra ignores them)"
                    elif any(int(g.edge_flags[e]) & FLAG_RESTRICTED for e in path_edges[1:-1]):
                        k = "pgRouting path goes through a destination/private road (ours: no through traffic)"
                    else:
                        k = "router dearer, no restriction on pgRouting's path (unexplained)"
                    kinds[k] = kinds.get(k, 0) + 1
                prog.tick(i)
            agree_all += agree
            m = max(1, sum(1 for a, b in zip(src, dst, strict=True) if a != b))
            rows.append(
                [
                    name,
                    g.n_road_edges,
                    len(via),
                    m,
                    f"{100 * agree / m:.1f} %",
                    "; ".join(f"{k}: {v}" for k, v in kinds.items()) or "-",
                ]
            )
            data[name] = {
                "pairs": m,
                "agree": agree,
                "disagreements": kinds,
                "restriction_via_nodes": len(via),
            }
    sec.tables.append(
        (
            ["graph", "road edges", "restriction via nodes", "pairs", "cost within 0.1 %", "disagreements"],
            rows,
        )
    )
    o = p50(lat_ours)
    lrows = [["our router (route, free flow)", o * 1e3, 1.0]]
    for fn, lat in lat_pgr.items():
        lrows.append([fn, p50(lat) * 1e3, ratio(p50(lat), o)])
    sec.tables.append((["engine", "p50 ms per query", "ratio vs our router"], lrows))
    sec.text += [
        "",
        "Why costs can differ: pgr_dijkstra/pgr_bdDijkstra on the plain edge table know no turn restrictions,",
        "so where our cost is higher their path makes a banned turn (checked: the path crosses a via node:",
        "turn restrictions, node barriers and U-turns across a median are all compiled as via nodes), or it",
        "goes through a destination/private road that our car profile keeps for the start or end of a trip.",
    ]
    share = agree_all / max(1, n_all)
    sec.data.update(data | {"agree_share": share, "latency_ms": {r_[0]: r_[1] for r_ in lrows}})
    ctx.report.bar(
        "pgRouting: free-flow costs agree within 0.1 % (turn-restriction cases excepted)",
        all(
            all("unexpected" not in k and "unexplained" not in k for k in d["disagreements"])
            for d in data.values()
        ),
        f"{100 * share:.1f} % of {n_all} pairs within 0.1 %; pgr_dijkstra p50 {ratio(p50(lat_pgr['pgr_dijkstra']), o):.0f}x our route p50",
    )


# ---- 3. osmnx / networkx ----------------------------------------------------------------------------
def _drivable_xml(extract: Path, out: Path) -> None:
    """Copy the extract's drivable ways (our `is_drivable` policy) and their nodes to plain OSM XML."""
    import osmium

    from geo._osm import is_drivable

    keep_nodes: set[int] = set()
    for w in osmium.FileProcessor(str(extract), osmium.osm.WAY):
        if is_drivable({t.k: t.v for t in w.tags}):
            keep_nodes.update(n.ref for n in w.nodes)  # type: ignore[union-attr]
    if out.exists():
        out.unlink()
    with osmium.SimpleWriter(str(out)) as wr:
        for obj in osmium.FileProcessor(str(extract), osmium.osm.NODE | osmium.osm.WAY):
            if isinstance(obj, osmium.osm.Node):
                if obj.id in keep_nodes:
                    wr.add_node(obj)
            elif is_drivable({t.k: t.v for t in obj.tags}):
                wr.add_way(obj)


def osmnx_agreement(ctx: Ctx) -> None:
    import networkx as nx
    import osmnx as ox

    sec = ctx.report.section("3. osmnx/networkx agreement on shortest-distance routes")
    sec.text += [
        "osmnx's own XML loader (`ox.graph_from_xml`, simplify=True, largest weakly connected component) on",
        "each extract reduced to the same drivable ways as ours (our `geo._osm.is_drivable` policy, written",
        "to plain .osm XML with pyosmium; the PBF is converted the same way), so the network DEFINITION is",
        "shared and everything else (one-way rules, simplification, clipped ways, routing) is osmnx's.",
        "Pairs: OSM node ids that are junctions in both graphs (no restriction via node, snapping onto a",
        "two-way road end). osmnx: `ox.shortest_path(G, o, d, weight='length')` (networkx Dijkstra); ours:",
        "`Router.route(..., metric='distance')` (full result: polyline and steps) between the same points.",
        "Agreement: lengths within 0.1 % (or 1 m).",
    ]
    names = list(EXTRACTS) if not ctx.quick else ["beijing_tsinghua.osm.bz2", "west_oakland.osm.bz2"]
    rows = []
    lat_ox: list[float] = []
    lat_ours: list[float] = []
    lat_ours_nosteps: list[float] = []
    data: dict[str, Any] = {}
    n_all = agree_all = 0
    with tempfile.TemporaryDirectory(prefix="fuel-bench-") as tmp:
        for name in names:
            xml = Path(tmp) / (name.split(".")[0] + ".osm")
            t0 = time.perf_counter()
            _drivable_xml(OSM / name, xml)
            G = ox.graph_from_xml(xml, simplify=True, retain_all=False)
            build_s = time.perf_counter() - t0
            r = ctx.router(name)
            g = r.g
            via_osm = {
                int(g.node_osm[j]) for j in set(g.node_base[g.node_base != np.arange(g.n_nodes)].tolist())
            }
            cand = [j for j in junction_candidates(r).tolist() if int(g.node_osm[j]) in G]
            rng = np.random.default_rng(ctx.seed + 31)
            n = ctx.n(150, 20)
            if len(cand) < 2:
                rows.append([name, len(G), len(cand), 0, "-", "too few common junctions"])
                continue
            src = rng.choice(cand, n)
            dst = rng.choice(cand, n)
            agree = 0
            kinds: dict[str, int] = {}
            ties = 0
            prog = Progress(f"osmnx {name}", n)
            for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist(), strict=True), 1):
                if a == b:
                    continue
                oa, ob = int(g.node_osm[a]), int(g.node_osm[b])
                t0 = time.perf_counter()
                path = ox.shortest_path(G, oa, ob, weight="length")
                lat_ox.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                res = _ours_distance(r, _latlon(g, a), _latlon(g, b), steps=True)
                lat_ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                _ours_distance(r, _latlon(g, a), _latlon(g, b), steps=False)
                lat_ours_nosteps.append(time.perf_counter() - t0)
                theirs = math.inf if path is None else float(nx.path_weight(G, path, weight="length"))
                ours = math.inf if res is None else res.distance_m
                n_all += 1
                if ours == theirs or (
                    math.isfinite(ours) and abs(ours - theirs) <= max(1.0, TOL_AGREE * theirs)
                ):
                    agree += 1
                    if path is not None and res is not None:
                        our_nodes = {int(g.node_osm[g.edge_u[e]]) for e in res.edges[1:]}
                        their_nodes = set(path[1:-1])
                        if our_nodes and our_nodes != their_nodes and abs(ours - theirs) > 0.01:
                            ties += 1
                else:
                    kinds_key = _classify(ours, theirs, path, via_osm)
                    kinds[kinds_key] = kinds.get(kinds_key, 0) + 1
                prog.tick(i)
            m = max(1, sum(1 for a, b in zip(src, dst, strict=True) if a != b))
            agree_all += agree
            rows.append(
                [name, f"{len(G)} / {g.n_nodes}", len(cand), m, f"{100 * agree / m:.1f} %",
                 "; ".join(f"{k}: {v}" for k, v in kinds.items()) or "-", round(build_s, 1)]
            )  # fmt: skip
            data[name] = {"pairs": m, "agree": agree, "disagreements": kinds, "near_ties_other_path": ties}
    sec.tables.append(
        (["extract", "nodes osmnx / ours", "common junctions", "pairs", "length within 0.1 %", "disagreements",
          "osmnx load s"], rows)
    )  # fmt: skip
    o, ox_p = p50(lat_ours), p50(lat_ox)
    syn = _synthetic_vs_networkx(ctx, SYNTH_OSMNX)
    s_o, s_ox, s_ns = p50(syn["ours"]), p50(syn["ox"]), p50(syn["ours_nosteps"])
    real = ", ".join(n.split(".")[0] for n in names)
    sec.tables.append(
        (["graph", "engine", "p50 ms", "p90 ms", "ratio vs osmnx p50"],
         [[f"real extracts ({real})", "osmnx shortest_path (networkx)", ox_p * 1e3, _p90(lat_ox), 1.0],
          [f"real extracts ({real})", "our route, metric=distance (polyline + steps)", o * 1e3, _p90(lat_ours), ratio(o, ox_p)],
          [f"real extracts ({real})", "our route, metric=distance, steps=False", p50(lat_ours_nosteps) * 1e3,
           _p90(lat_ours_nosteps), ratio(p50(lat_ours_nosteps), ox_p)],
          [f"{SYNTH_OSMNX} (synthetic)", "osmnx shortest_path (networkx)", s_ox * 1e3, _p90(syn["ox"]), 1.0],
          [f"{SYNTH_OSMNX} (synthetic)", "our route, metric=distance (polyline + steps)", s_o * 1e3, _p90(syn["ours"]),
           ratio(s_o, s_ox)],
          [f"{SYNTH_OSMNX} (synthetic)", "our route, metric=distance, steps=False", s_ns * 1e3, _p90(syn["ours_nosteps"]),
           ratio(s_ns, s_ox)]])
    )  # fmt: skip
    sec.text += [
        "",
        f"Synthetic graph ({SYNTH_OSMNX}, seed = --seed, no turn restrictions): converted to a networkx",
        "MultiDiGraph (one node per junction, one edge per directed road edge with its 'length'), then",
        "`ox.shortest_path(G, o, d, weight='length')` vs `Router.route(..., metric='distance')` between the",
        f"same junction pairs (as above). Agreement (length within 0.1 %): {syn['agree']} of {syn['n']}.",
    ]
    sec.text += [
        "",
        "Kinds of disagreement: *turn restriction* (osmnx ignores them: its path crosses a via node where our",
        "route may not turn); *osmnx shorter, no restriction*: the graphs differ (osmnx keeps ways clipped at",
        "the extract edge by joining the remaining nodes, our loader splits them; osmnx keeps the largest",
        "WEAKLY connected component where we keep the largest STRONGLY connected one, and one-way details);",
        "*no path in osmnx / ours*: the node is outside the other's kept component. Equal-length ties (same",
        "length, other path) count as agreement since lengths are compared.",
    ]
    share = agree_all / max(1, n_all)
    speedup = ratio(ox_p, o)
    s_speed = ratio(s_ox, s_o)
    sec.data.update(
        data
        | {"agree_share": share, "osmnx_p50_ms": ox_p * 1e3, "ours_p50_ms": o * 1e3, "speedup": speedup}
        | {
            "synthetic": {
                "graph": SYNTH_OSMNX, "pairs": syn["n"], "agree": syn["agree"], "osmnx_p50_ms": s_ox * 1e3,
                "ours_p50_ms": s_o * 1e3, "ours_nosteps_p50_ms": s_ns * 1e3, "speedup": s_speed,
            }
        }
    )  # fmt: skip
    ctx.report.bar(
        f"route p50 at least 50x faster than osmnx shortest_path on the real extracts ({real}; same graphs"
        " and pairs)",
        speedup >= 50,
        f"osmnx p50 {ox_p * 1e3:.2f} ms vs ours {o * 1e3:.3f} ms (full result) = {speedup:.0f}x;"
        f" steps=False {ratio(ox_p, p50(lat_ours_nosteps)):.0f}x; agreement {100 * share:.1f} % of {n_all}",
    )
    ctx.report.bar(
        f"route p50 at least 50x faster than osmnx shortest_path on the {SYNTH_OSMNX} synthetic graph"
        " (networkx conversion, same junction pairs)",
        s_speed >= 50,
        f"osmnx p50 {s_ox * 1e3:.2f} ms vs ours {s_o * 1e3:.3f} ms (full result) = {s_speed:.0f}x;"
        f" steps=False {ratio(s_ox, s_ns):.0f}x; agreement {syn['agree']} of {syn['n']}",
    )


SYNTH_OSMNX = "synthetic-50000"


def _p90(xs: list[float]) -> float:
    return float(np.percentile(xs, 90)) * 1e3 if xs else math.nan


def to_networkx(g: CompiledGraph) -> Any:
    """MultiDiGraph of the junctions and directed road edges (attribute 'length' in metres), osmnx-style
    (node x/y, graph crs), so `ox.shortest_path` runs on it unchanged."""
    import networkx as nx

    G = nx.MultiDiGraph(crs="epsg:4326")
    junction = np.flatnonzero(g.node_base == np.arange(g.n_nodes))
    G.add_nodes_from(
        (int(j), {"x": float(x), "y": float(y)})
        for j, x, y in zip(junction.tolist(), g.node_lon[junction].tolist(), g.node_lat[junction].tolist(), strict=True)
    )  # fmt: skip
    G.add_edges_from(
        (u, v, {"length": w})
        for u, v, w in zip(g.edge_u.tolist(), g.edge_v.tolist(), g.edge_length_m.tolist(), strict=True)
    )
    return G


def _synthetic_vs_networkx(ctx: Ctx, name: str) -> dict[str, Any]:
    """osmnx/networkx vs our distance routes on a synthetic graph, between the same junctions."""
    import networkx as nx
    import osmnx as ox

    r = ctx.router(name)
    g = r.g
    G = to_networkx(g)
    cand = junction_candidates(r)
    rng = np.random.default_rng(ctx.seed + 33)
    n = ctx.n(150, 20)
    src, dst = rng.choice(cand, n), rng.choice(cand, n)
    out: dict[str, Any] = {"ox": [], "ours": [], "ours_nosteps": [], "agree": 0, "n": 0}
    prog = Progress(f"osmnx {name}", n)
    for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist(), strict=True), 1):
        if a == b:
            continue
        t0 = time.perf_counter()
        path = ox.shortest_path(G, a, b, weight="length")
        out["ox"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = _ours_distance(r, _latlon(g, a), _latlon(g, b), steps=True)
        out["ours"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _ours_distance(r, _latlon(g, a), _latlon(g, b), steps=False)
        out["ours_nosteps"].append(time.perf_counter() - t0)
        theirs = math.inf if path is None else float(nx.path_weight(G, path, weight="length"))
        ours = math.inf if res is None else res.distance_m
        out["n"] += 1
        if ours == theirs or (math.isfinite(ours) and abs(ours - theirs) <= max(1.0, TOL_AGREE * theirs)):
            out["agree"] += 1
        prog.tick(i)
    return out


def _ours_distance(
    r: Router, a: tuple[float, float], b: tuple[float, float], *, steps: bool
) -> RouteResult | None:
    try:
        return r.route(a, b, depart_at=RUSH, metric="distance", steps=steps)
    except RouteNotFound:
        return None


def _classify(ours: float, theirs: float, path: list[int] | None, via_osm: set[int]) -> str:
    if path is None:
        return "no path in osmnx (outside its kept component / one-way)"
    if not math.isfinite(ours):
        return "no path in ours (outside our strongly connected component)"
    if ours > theirs:
        if any(x in via_osm for x in path[1:-1]):
            return "osmnx shorter via a banned turn (turn restriction)"
        return "osmnx shorter, no restriction (graph difference: clipped ways / one-way / access)"
    return "ours shorter (osmnx graph lacks a link: simplification / component / one-way)"


# ---- 3b. an independent engine ----------------------------------------------------------------------
INDEPENDENT_EXTRACTS = ("andorra.osm.pbf", "shenzhen_longgang.osm.gz", "beijing_tsinghua.osm.bz2")


def independent(ctx: Ctx) -> None:
    """Our shortest-distance routes vs osmnx's, osmnx's graph built by osmnx from the extract itself."""
    sec = ctx.report.section("3b. Independent engine: osmnx's own graph from the extract (shortest distance)")
    sec.text += [
        "osmnx builds its graph from the extract itself, as its users would: the ways passing osmnx's own",
        "network filter (`drive`, and `drive_service` which keeps service roads as we do; the Overpass filter",
        "osmnx sends, evaluated tag by tag) are written to plain .osm XML with pyosmium and loaded with",
        "`ox.graph_from_xml` (its one-way rules, largest weakly connected component, `simplify_graph`,",
        "great-circle lengths); nothing of our graph goes into it. Pairs: seeded OSM node ids that are",
        "junctions in both graphs (ours: no restriction via node, snapping onto a two-way road end). osmnx:",
        "`nx.shortest_path_length(G, o, d, weight='length')`; ours: `Router.route(..., metric='distance')`.",
        "Relative difference: |ours - osmnx| / the shorter. A pair disagrees beyond 1 % (or when one side",
        "has no path) and is explained by the first thing on the SHORTER side's path the other may not use:",
        "*component* (a side has no path, or osmnx dropped the way's component), *barrier* (a node we block",
        "on osmnx's path), *policy* (a way one side drives and the other not, or not that way, or not",
        "through: destination/private), *turn restriction* (osmnx reads none: its path makes a banned turn),",
        "*u-turn across a median* (osmnx's path turns from a one-way carriageway back onto the opposite one",
        "at a junction that is not a dead end; our graph refuses that turn, osmnx has no such rule),",
        "*clipped way* (osmnx joins a way's nodes across the extract edge), *other* (unexplained: a finding).",
    ]
    rows: list[list[Any]] = []
    class_rows: list[list[Any]] = []
    hist: dict[str, dict[str, np.ndarray]] = {}
    names = [x for x in INDEPENDENT_EXTRACTS if (OSM / x).is_file()]
    with tempfile.TemporaryDirectory(prefix="fuel-bench-") as tmp:
        for network_type in ("drive", "drive_service"):
            for name in names:
                d = _independent_one(ctx, name, network_type, Path(tmp))
                label = f"{name} ({network_type})"
                sec.data[label] = d
                if not d["pairs"]:
                    rows.append([label, d["nodes"], d["common_junctions"], 0] + ["-"] * 7)
                    continue
                hist.setdefault(name.split(".")[0], {})[network_type] = 100.0 * np.asarray(d.pop("rel_diffs"))
                rows.append(
                    [label, d["nodes"], d["common_junctions"], d["pairs"], f"{100 * d['within_1pct'] / d['pairs']:.1f} %",
                     f"{100 * d['median_rel_diff']:.3f} %", f"{100 * d['p95_rel_diff']:.2f} %",
                     d["shorter"]["osmnx"], d["shorter"]["ours"], d["classes"]["component"], round(d["seconds"], 1)]
                )  # fmt: skip
                for c, causes in d["causes"].items():
                    top = sorted(causes.items(), key=lambda kv: -kv[1][0])[:3]
                    class_rows.append(
                        [
                            label,
                            c,
                            d["classes"][c],
                            len(causes),
                            "<br>".join(f"{k} x {ex}" for _, (k, ex) in top),
                        ]
                    )
                for subject, (k, ex) in d["causes"].get("other", {}).items():
                    print(f"  UNEXPLAINED {label} {subject}: {ex}", flush=True)
                    sec.text.append(f"- unexplained ({label}, {k} pairs): {ex}")
    sec.tables.append(
        (["extract (osmnx filter)", "nodes osmnx / ours", "common junctions", "pairs", "within 1 %",
          "median rel diff", "p95 rel diff", "osmnx shorter (>1 %)", "ours shorter (>1 %)", "no path one side",
          "s"], rows)
    )  # fmt: skip
    sec.tables.append(
        (
            ["extract (osmnx filter)", "class", "pairs", "distinct causes", "top causes: pairs x example"],
            class_rows,
        )
    )
    _rel_diff_plot(ctx, hist, sec)
    done = {k: d for k, d in sec.data.items() if d["pairs"]}
    others = sum(d["classes"]["other"] for d in done.values())
    ctx.report.bar(
        "independent engine (osmnx from the extract): every disagreement beyond 1 % explained (no 'other')",
        others == 0 and bool(done),
        "; ".join(
            f"{k.split('.')[0]}{' +service' if 'service' in k else ''} {100 * d['within_1pct'] / d['pairs']:.1f} %"
            f" within 1 % of {d['pairs']} (osmnx shorter {d['shorter']['osmnx']}, ours shorter"
            f" {d['shorter']['ours']}, other {d['classes']['other']})"
            for k, d in done.items()
        )
        or "no extract",
    )


def _rel_diff_plot(ctx: Ctx, series: dict[str, dict[str, np.ndarray]], sec: Any) -> None:
    """One panel per extract: histogram of the relative difference (%, pairs with a path on both sides)
    for each osmnx filter, log counts (most pairs agree exactly), the 1 % line marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not series:
        return
    fig, axes = plt.subplots(len(series), 1, figsize=(7, 2.4 * len(series)), squeeze=False)
    for ax, (extract, by_filter) in zip(axes[:, 0], series.items(), strict=True):
        top = max((float(a.max()) for a in by_filter.values() if len(a)), default=1.0)
        bins = np.linspace(0.0, max(top, 2.0), 41)
        for label, a in by_filter.items():
            if len(a):
                ax.hist(a, bins=bins, alpha=0.6, log=True, label=f"osmnx {label}")
        ax.axvline(100 * TOL_INDEPENDENT, color="k", linestyle=":", linewidth=1)
        ax.set_title(extract, fontsize=9)
        ax.set_ylabel("pairs")
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("|ours - osmnx| / shorter (%); dotted: 1 %")
    fig.tight_layout()
    path = ctx.report.plot_path("independent_rel_diff")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sec.plots.append(path.name)


def _independent_one(ctx: Ctx, name: str, network_type: str, tmp: Path) -> dict[str, Any]:
    """One extract against osmnx's graph with its `network_type` filter: counts, classes and causes."""
    from benchmarks import _independent as ind

    t0 = time.perf_counter()
    r = ctx.router(name)
    g = r.g
    cmp = ind.Comparison.build(
        OSM / name, r, tmp / f"{name.split('.')[0]}-{network_type}.osm", network_type=network_type
    )
    cand = cmp.common(junction_candidates(r).tolist())
    out: dict[str, Any] = {"nodes": f"{len(cmp.G)} / {g.n_nodes}", "common_junctions": len(cand), "pairs": 0}
    if len(cand) < 2:
        return out
    rng = np.random.default_rng(ctx.seed + 71)
    n = ctx.n(300, 40)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n:
        a, b = (int(x) for x in rng.choice(cand, 2))
        if a != b:
            pairs.append((a, b))
    verdicts: list[ind.Verdict] = []
    causes: dict[str, dict[str, list[Any]]] = {}  # class -> subject -> [pairs, first example]
    prog = Progress(f"independent {name} {network_type}", n)
    for i, (a, b) in enumerate(pairs, 1):
        ours, theirs, v = cmp.compare(a, b, RUSH)
        verdicts.append(v)
        if v.cls is not None:
            ex = f"{int(g.node_osm[a])} -> {int(g.node_osm[b])}: ours {ours:.0f} m, osmnx {theirs:.0f} m; {v.detail}"
            causes.setdefault(v.cls, {}).setdefault(v.subject, [0, ex])[0] += 1
        prog.tick(i)
    rds = [v.rel_diff for v in verdicts if math.isfinite(v.rel_diff)]
    return out | {
        "pairs": len(verdicts),
        "within_1pct": sum(1 for v in verdicts if v.cls is None),
        "classes": {c: sum(1 for v in verdicts if v.cls == c) for c in ind.CLASSES},
        "shorter": {
            k: sum(1 for v in verdicts if v.cls is not None and v.shorter == k) for k in ("ours", "osmnx")
        },
        "median_rel_diff": float(np.median(rds)) if rds else math.nan,
        "p95_rel_diff": float(np.percentile(rds, 95)) if rds else math.nan,
        "causes": causes,
        "rel_diffs": rds,
        "seconds": time.perf_counter() - t0,
    }


# ---- 4. traffic awareness ---------------------------------------------------------------------------
def traffic(ctx: Ctx) -> None:
    from geo._traffic import TrafficProfile

    sec = ctx.report.section("4. Traffic awareness: ground truth = rush-hour profile + incidents")
    sec.text += [
        "Ground truth: the default profile at 08:00 on a weekday (2026-03-04) plus seeded incidents (4 % of road",
        "edges slowed to 15-50 % of free flow, 1 % closed; observed 07:59, applied with `LiveTraffic.apply`).",
        "All departures at 08:00. For each pair: the TRUE travel time (the path's time-dependent cost under",
        "the ground truth, integrated by the reference's `path_cost`) of (a) the route planned on free-flow",
        "speeds (`free_flow=True`), (b) the route planned with the profile only (no incidents), (c) our route",
        "seeing everything. Saving = (truth(a) - truth(c)) / truth(a). Routes of (a)/(b) that drive a closed",
        "road are 'blocked' (the driver meets a closure) and left out of the saving; their count is shown.",
        "ETA error: MAPE of the duration the router announced vs the truth of the same path.",
    ]
    names = ["andorra.osm.pbf", "synthetic-20000"] if not ctx.quick else ["andorra.osm.pbf", "synthetic-2000"]
    rows = []
    data: dict[str, Any] = {}
    t_dep = RUSH.timestamp()
    savings_plot: dict[str, np.ndarray] = {}
    for name in names:
        full = ground_truth_router(ctx, name, salt=2)
        prof = ctx.router(name, profile=TrafficProfile.default())
        ref = reference_for(full)
        live = full.live.snapshot()
        n = ctx.n(300, 30)
        pairs = ctx.pairs(name, n, salt=41, min_distance_m=2000.0)
        sv_ff: list[float] = []
        sv_prof: list[float] = []
        ape: dict[str, list[float]] = {"free_flow": [], "profile": [], "full": []}
        blocked = {"free_flow": 0, "profile": 0}
        differs = 0
        unreachable = 0
        prog = Progress(f"traffic {name}", n)
        for i, p in enumerate(pairs, 1):
            rc = _route(full, p.origin, p.destination, depart_at=RUSH)
            if rc is None:
                unreachable += 1
                continue
            ra = _route(full, p.origin, p.destination, depart_at=RUSH, free_flow=True)
            rb = _route(prof, p.origin, p.destination, depart_at=RUSH)
            assert ra is not None and rb is not None
            tc = path_truth(ref, rc, t_dep, live)
            ta = path_truth(ref, ra, t_dep, live)
            tb = path_truth(ref, rb, t_dep, live)
            if not (math.isfinite(tc) and tc > 0):
                unreachable += 1
                continue
            differs += int(ra.edges != rc.edges)
            ape["full"].append(abs(rc.duration_s - tc) / tc)
            for key, res, tr, sv in (("free_flow", ra, ta, sv_ff), ("profile", rb, tb, sv_prof)):
                if math.isfinite(tr):
                    sv.append(100.0 * (tr - tc) / tr)
                    ape[key].append(abs(res.duration_s - tr) / tr)
                else:
                    blocked[key] += 1
            prog.tick(i)
        a_ff, a_pr = np.asarray(sv_ff), np.asarray(sv_prof)
        savings_plot[name] = a_ff
        label = name + (" (synthetic)" if name.startswith("synthetic") else "")
        m = n - unreachable
        rows.append(
            [label, m, f"{100 * differs / max(1, m):.0f} %", float(a_ff.mean()) if a_ff.size else math.nan,
             float(np.percentile(a_ff, 90)) if a_ff.size else math.nan, blocked["free_flow"],
             float(a_pr.mean()) if a_pr.size else math.nan, blocked["profile"],
             100 * float(np.mean(ape["free_flow"])), 100 * float(np.mean(ape["profile"])), 100 * float(np.mean(ape["full"]))]
        )  # fmt: skip
        data[name] = {
            "pairs": m,
            "unreachable_under_closures": unreachable,
            "saving_vs_free_flow_pct": {
                "mean": float(a_ff.mean()) if a_ff.size else None,
                "p50": float(np.median(a_ff)) if a_ff.size else None,
            },
            "saving_vs_profile_only_pct": {"mean": float(a_pr.mean()) if a_pr.size else None},
            "blocked": blocked,
            "mape_pct": {k: 100 * float(np.mean(v)) for k, v in ape.items()},
        }
    sec.tables.append(
        (["graph", "pairs", "route differs from free-flow plan", "saving vs free-flow plan % (mean)", "p90 %",
          "free-flow plans blocked", "saving vs profile-only plan % (mean)", "profile-only plans blocked",
          "ETA MAPE % free-flow", "ETA MAPE % profile only", "ETA MAPE % sees everything"], rows)
    )  # fmt: skip
    sec.data.update(data)
    _hist(ctx, "traffic_savings", savings_plot, "true-time saving vs the free-flow plan (%)", sec)
    worst = max((d["mape_pct"]["full"] for d in data.values()), default=0.0)
    ctx.report.bar(
        "traffic: ETA seeing everything matches the ground truth (MAPE < 0.01 %)",
        worst < 0.01,
        f"MAPE {worst:.2e} %; profile-only MAPE "
        + ", ".join(f"{k.split('.')[0]} {v['mape_pct']['profile']:.1f} %" for k, v in data.items()),
    )


def _q(a: list[float], x: float) -> float:
    return float(np.percentile(a, x)) if a else math.nan


def _hist(ctx: Ctx, name: str, series: dict[str, np.ndarray], xlabel: str, sec: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, a in series.items():
        if len(a):
            ax.hist(a, bins=30, alpha=0.6, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pairs")
    ax.legend()
    fig.tight_layout()
    path = ctx.report.plot_path(name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sec.plots.append(path.name)


# ---- 5. alternatives --------------------------------------------------------------------------------
def alternatives(ctx: Ctx) -> None:
    sec = ctx.report.section("5. Alternatives: overlap with the main route and stretch")
    sec.text += [
        "`Router.route(..., alternatives=2)` at 08:00 weekday (default profile). Overlap = length shared with",
        "an accepted route / alternative length (accepted below 0.7); stretch = alternative / best duration",
        "(accepted up to 1.4). Distribution over seeded pairs at least 2 km apart.",
    ]
    names = ["andorra.osm.pbf", "synthetic-20000"] if not ctx.quick else ["andorra.osm.pbf"]
    rows = []
    data: dict[str, Any] = {}
    scatter: dict[str, tuple[list[float], list[float]]] = {}
    for name in names:
        r = ctx.router(name)
        n = ctx.n(200, 20)
        pairs = ctx.pairs(name, n, salt=51, min_distance_m=2000.0)
        found = [0, 0, 0]
        ov: list[float] = []
        st: list[float] = []
        lat_alt: list[float] = []
        lat_one: list[float] = []
        prog = Progress(f"alternatives {name}", n)
        for i, p in enumerate(pairs, 1):
            t0 = time.perf_counter()
            res = _route(r, p.origin, p.destination, depart_at=RUSH, alternatives=2)
            lat_alt.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _route(r, p.origin, p.destination, depart_at=RUSH)
            lat_one.append(time.perf_counter() - t0)
            if res is None:
                continue
            found[len(res.alternatives)] += 1
            for a in res.alternatives:
                ov.append(a.overlap)
                st.append(a.stretch)
            prog.tick(i)
        scatter[name] = (ov, st)
        rows.append(
            [name + (" (synthetic)" if name.startswith("synthetic") else ""), n, found[0], found[1], found[2],
             _q(ov, 50), _q(ov, 90), _q(st, 50), _q(st, 90), ratio(p50(lat_alt), p50(lat_one))]
        )  # fmt: skip
        data[name] = {"pairs": n, "alternatives_found": {"0": found[0], "1": found[1], "2": found[2]},
                      "overlap_p50": _q(ov, 50), "stretch_p50": _q(st, 50), "latency_ratio_vs_single": ratio(p50(lat_alt), p50(lat_one))}  # fmt: skip
    sec.tables.append(
        (["graph", "pairs", "0 alts", "1 alt", "2 alts", "overlap p50", "overlap p90", "stretch p50", "stretch p90",
          "p50 time vs single route"], rows)
    )  # fmt: skip
    sec.data.update(data)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (ov, st) in scatter.items():
        ax.scatter(ov, st, s=10, alpha=0.6, label=label)
    ax.set_xlabel("overlap with accepted routes")
    ax.set_ylabel("stretch (duration / best)")
    ax.legend()
    fig.tight_layout()
    path = ctx.report.plot_path("alternatives")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sec.plots.append(path.name)
    bad = sum(
        1 for ov, st in scatter.values() for o, s in zip(ov, st, strict=True) if o >= 0.7 or s > 1.4 + 1e-9
    )
    ctx.report.bar(
        "alternatives respect overlap < 0.7 and stretch <= 1.4",
        bad == 0,
        f"{bad} violations in {sum(len(v[0]) for v in scatter.values())} alternatives",
    )
