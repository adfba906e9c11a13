"""In-process performance: graph build time and memory, route percentiles by size, matrices, live batches."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import OSM, RUSH, Ctx, Progress, make_router, p50, ratio
from benchmarks._report import percentiles
from geo._errors import RouteNotFound
from geo._graph import CompiledGraph
from geo._router import Router

BYTES_PER_EDGE_BAR = 300
BAR_NODES = 50_000
BAR_P50_MS = 2.0


def _router_bytes(r: Router) -> int:
    """numpy arrays the Router builds on top of the graph (snapping tree not counted)."""
    total = 0
    for v in vars(r).values():
        if isinstance(v, np.ndarray):
            total += v.nbytes
    return total


def _geometry_bytes(g: CompiledGraph) -> int:
    return int(g.geom_lat.nbytes + g.geom_lon.nbytes + g.edge_geom_offsets.nbytes)


def _landmark_bytes(g: CompiledGraph) -> int:
    return int(g.lm_from.nbytes + g.lm_to.nbytes + g.lm_nodes.nbytes)


def _build(ctx: Ctx, name: str) -> tuple[CompiledGraph, float]:
    """Cold build (no cache) timed; the graph is cached in ctx for later sections."""
    t0 = time.perf_counter()
    if name.startswith("synthetic-"):
        from geo._synthetic import synthetic_graph

        g = synthetic_graph(int(name.split("-")[1]), seed=ctx.seed)
    else:
        from geo._graphcache import load_or_build

        with tempfile.TemporaryDirectory(prefix="fuel-bench-graph-") as tmp:
            g = load_or_build(OSM / name, speeds_kmh=ctx.region.speeds_kmh, cache_dir=Path(tmp))
    dt = time.perf_counter() - t0
    ctx.graphs.setdefault(name, g)
    return g, dt


def _scipy_sssp(g: CompiledGraph, sources: np.ndarray) -> list[float]:
    from scipy.sparse.csgraph import dijkstra

    from geo._landmarks import arc_matrix

    mat = arc_matrix(g)
    out = []
    for s in sources.tolist():
        t0 = time.perf_counter()
        dijkstra(mat, directed=True, indices=int(s))
        out.append(time.perf_counter() - t0)
    return out


def performance(ctx: Ctx) -> None:
    sec = ctx.report.section(
        "6. Performance in-process: build, memory, route percentiles, matrix, live batch"
    )
    sec.text += [
        "Graphs: the Andorra extract (real, the demo region) and SYNTHETIC grids (`geo._synthetic`, clearly",
        "labelled, seed = --seed) of 10k, 50k, 100k and 1M junctions. Build: cold (no cache), including the",
        "16 landmarks. Router init: snapping index, packed arrays. Memory: `CompiledGraph.nbytes()` (arrays;",
        "geometry and landmarks included) per directed road edge; router arrays on top. Route: `Router.route`",
        "(time-dependent at a seeded weekday departure, full result with polyline and steps) between seeded",
        "random road points (`ingest od-pairs` generator) anywhere on the graph. Baseline (same run): scipy's",
        "compiled one-to-ALL Dijkstra (`scipy.sparse.csgraph.dijkstra`) on the same arc graph.",
    ]
    sizes = [10_000, 50_000, 100_000, 1_000_000] if not ctx.quick else [10_000, 50_000]
    names = ["andorra.osm.pbf", *(f"synthetic-{n}" for n in sizes)]
    rows = []
    mem_rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    growth: list[tuple[int, dict[str, float]]] = []
    bar50: dict[str, float] | None = None
    for name in names:
        g, build_s = _build(ctx, name)
        t0 = time.perf_counter()
        r = make_router(g, ctx.region)
        init_s = time.perf_counter() - t0
        ctx.routers.setdefault(name, r)
        n_q = ctx.n(300 if g.n_nodes <= 200_000 else 60, 40)
        pairs = ctx.pairs(name, n_q, salt=61)
        lat: list[float] = []
        lat_nosteps: list[float] = []
        settled: list[int] = []
        prog = Progress(f"perf {name}", n_q)
        for i, p in enumerate(pairs, 1):
            try:
                t0 = time.perf_counter()
                res = r.route(p.origin, p.destination, depart_at=p.depart_at)
                lat.append(time.perf_counter() - t0)
                settled.append(res.settled)
                t0 = time.perf_counter()
                r.route(p.origin, p.destination, depart_at=p.depart_at, steps=False)
                lat_nosteps.append(time.perf_counter() - t0)
            except RouteNotFound:
                pass
            prog.tick(i)
        rng = np.random.default_rng(ctx.seed + 62)
        base = _scipy_sssp(g, rng.integers(0, g.n_nodes, ctx.n(5 if g.n_nodes > 200_000 else 20, 3)))
        pc = percentiles(lat)
        pc_ns = percentiles(lat_nosteps)
        nb = g.nbytes()
        per_edge = nb / max(1, g.n_road_edges)
        label = name + (" (synthetic)" if name.startswith("synthetic") else " (real)")
        rows.append(
            [label, g.n_nodes, g.n_road_edges, round(build_s, 2), round(init_s, 2), pc["p50_ms"], pc["p90_ms"],
             pc["p99_ms"], pc_ns["p50_ms"], float(np.median(settled)) if settled else math.nan,
             p50(base) * 1e3, ratio(pc["p50_ms"], p50(base) * 1e3)]
        )  # fmt: skip
        mem_rows.append(
            [label, nb / 2**20, per_edge, _geometry_bytes(g) / max(1, g.n_road_edges),
             _landmark_bytes(g) / max(1, g.n_road_edges), (nb - _geometry_bytes(g)) / max(1, g.n_road_edges),
             _router_bytes(r) / 2**20]
        )  # fmt: skip
        data[name] = {
            "nodes": g.n_nodes, "road_edges": g.n_road_edges, "arcs": g.n_arcs, "build_s": build_s, "router_init_s": init_s,
            "route": pc, "route_no_steps": pc_ns, "scipy_sssp_p50_ms": p50(base) * 1e3, "nbytes": nb,
            "bytes_per_road_edge": per_edge, "router_array_bytes": _router_bytes(r),
        }  # fmt: skip
        growth.append((g.n_nodes, pc | {"build_s": build_s, "scipy_ms": p50(base) * 1e3}))
        if name == f"synthetic-{BAR_NODES}":
            bar50 = pc
        print(
            f"  {label}: build {build_s:.1f}s, route p50 {pc['p50_ms']:.2f} ms, {per_edge:.0f} B/edge",
            flush=True,
        )
        if g.n_nodes > 200_000:  # free the big one for the later sections
            ctx.graphs.pop(name, None)
            ctx.routers.pop(name, None)
    sec.tables.append(
        (["graph", "nodes", "road edges", "build s", "router init s", "route p50 ms", "p90 ms", "p99 ms",
          "p50 ms steps=False", "settled p50", "baseline scipy 1-to-all ms", "route p50 / baseline"], rows)
    )  # fmt: skip
    sec.tables.append(
        (["graph", "graph MiB", "bytes / road edge", "of which geometry", "of which landmarks",
          "without geometry", "router arrays MiB"], mem_rows)
    )  # fmt: skip
    _growth_plot(ctx, growth, sec)
    # matrix throughput and live batch, in-process (Andorra)
    r = ctx.router("andorra.osm.pbf")
    pts = [p.origin for p in ctx.pairs("andorra.osm.pbf", 50, salt=63)]
    k = ctx.n(50, 20)
    t0 = time.perf_counter()
    m = r.matrix(pts[:k], pts[:k], depart_at=RUSH)
    mat_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r.route(pts[0], pts[1], depart_at=RUSH)
    one_s = time.perf_counter() - t0
    big = "synthetic-100000"
    rb = ctx.routers.get(big) or ctx.router("synthetic-10000")
    big_name = big if big in ctx.routers else "synthetic-10000"
    bpts = [p.origin for p in ctx.pairs(big_name, 20, salt=64)]
    t0 = time.perf_counter()
    rb.matrix(bpts, bpts, depart_at=RUSH)
    big_s = time.perf_counter() - t0
    from benchmarks._quality import incidents

    batch = incidents(r.g, ctx.seed + 65, time.time() - 60, slow=1.0, closed=0.0)[:1000]
    t0 = time.perf_counter()
    r.live.apply(batch)
    apply_s = time.perf_counter() - t0
    r.live.clear()
    sec.tables.append(
        (["operation", "size", "seconds", "throughput", "ratio vs one route"],
         [["matrix Andorra", f"{k}x{k}", mat_s, f"{k * k / mat_s:,.0f} cells/s", ratio(mat_s, one_s)],
          [f"matrix {big_name} (synthetic)", "20x20", big_s, f"{400 / big_s:,.0f} cells/s", math.nan],
          ["LiveTraffic.apply (Andorra)", f"{len(batch)} updates", apply_s, f"{len(batch) / apply_s:,.0f} updates/s", ratio(apply_s, one_s)]])
    )  # fmt: skip
    sec.data.update(
        data
        | {
            "matrix_cells_per_s": k * k / mat_s,
            "live_apply_s": apply_s,
            "finite_cells": int(np.isfinite(m.durations_s).sum()),
        }
    )
    if bar50 is not None:
        ctx.report.bar(
            f"route p50 < {BAR_P50_MS} ms in-process on a {BAR_NODES // 1000}k-node synthetic graph",
            bar50["p50_ms"] < BAR_P50_MS,
            f"p50 {bar50['p50_ms']:.3f} ms (p90 {bar50['p90_ms']:.2f}, p99 {bar50['p99_ms']:.2f}) over {bar50['n']} routes",
        )
    worst = max(mem_rows, key=lambda x: x[2])
    ctx.report.bar(
        f"memory <= {BYTES_PER_EDGE_BAR} bytes per directed road edge (every graph)",
        all(x[2] <= BYTES_PER_EDGE_BAR for x in mem_rows),
        "; ".join(f"{x[0].split(' ')[0]} {x[2]:.0f} B" for x in mem_rows)
        + f" (worst: {worst[0]}, geometry {worst[3]:.0f} B of it)",
    )


def _growth_plot(ctx: Ctx, growth: list[tuple[int, dict[str, float]]], sec: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    growth = sorted(growth)
    xs = [n for n, _ in growth]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("p50_ms", "p90_ms", "p99_ms", "scipy_ms"):
        a1.plot(
            xs, [d[key] for _, d in growth], marker="o", label=key.replace("scipy_ms", "scipy 1-to-all p50")
        )
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xlabel("nodes")
    a1.set_ylabel("ms")
    a1.set_title("route latency vs graph size")
    a1.legend()
    a2.plot(xs, [d["build_s"] for _, d in growth], marker="o")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel("nodes")
    a2.set_ylabel("s")
    a2.set_title("graph build (cold, with landmarks)")
    fig.tight_layout()
    path = ctx.report.plot_path("perf_growth")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sec.plots.append(path.name)
