"""Measured (printed, not asserted): route latency on a 50k-node synthetic graph, bytes per arc."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from config import load_region
from geo._router import Router
from geo._synthetic import synthetic_graph
from geo._traffic import TrafficProfile

TZ = ZoneInfo("Asia/Shanghai")


def test_latency_and_memory_50k():
    t = time.perf_counter()
    g = synthetic_graph(50_000, seed=3, restrictions=500)
    build_s = time.perf_counter() - t
    bpa = g.nbytes() / g.n_arcs
    r = Router(g, profile=TrafficProfile.default(), holidays=load_region("lijiang").holidays, tz=TZ)
    r.warmup()
    rng = np.random.default_rng(0)
    la0, la1, lo0, lo1 = g.node_lat.min(), g.node_lat.max(), g.node_lon.min(), g.node_lon.max()
    pairs = [
        ((rng.uniform(la0, la1), rng.uniform(lo0, lo1)), (rng.uniform(la0, la1), rng.uniform(lo0, lo1)))
        for _ in range(300)
    ]
    lines = [
        f"50k synthetic: {g.n_nodes} nodes, {g.n_arcs} arcs, build {build_s:.2f} s, {bpa:.0f} bytes/arc "
        f"(landmarks {g.lm_from.shape[0]})"
    ]
    for label, dep in (
        ("weekday 08:15 peak", datetime(2026, 3, 10, 8, 15, tzinfo=TZ)),
        ("weekday 03:00 night", datetime(2026, 3, 11, 3, 0, tzinfo=TZ)),
    ):
        ts, cpu, st = [], [], []
        for a, b in pairs:
            t, c = time.perf_counter(), time.thread_time()
            res = r.route(a, b, depart_at=dep)
            cpu.append(time.thread_time() - c)
            ts.append(time.perf_counter() - t)
            st.append(res.settled)
        p50, p90 = np.percentile(ts, 50) * 1e3, np.percentile(ts, 90) * 1e3
        c50, c90 = np.percentile(cpu, 50) * 1e3, np.percentile(cpu, 90) * 1e3
        lines.append(
            f"route() {label}: wall p50 {p50:.2f} ms p90 {p90:.2f} ms; thread CPU p50 {c50:.2f} ms p90 {c90:.2f} ms; "
            f"settled p50 {np.median(st):.0f}"
        )
    print("\n" + "\n".join(lines))
    assert bpa <= 300
