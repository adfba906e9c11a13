"""Over HTTP: a uvicorn server (subprocess) on the bench database; route, live batch, stations, load, ranking."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np

from benchmarks._common import DEMO_EXTRACT, OSM, RUSH, Ctx, Progress, p50, ratio, tmp_dir
from benchmarks._report import percentiles
from benchmarks._wrk import CONNECTIONS, WrkResult, paths, run_wrk, uvicorn_flags, wrk_path
from config import PROJECT_ROOT, Settings

DEMO_BBOX = (1.04, 41.74, 1.83, 42.79)  # data/regions/andorra.toml (served as the demo region)


class Server:
    """uvicorn api.main:app on 127.0.0.1:<free port> against `db_url`, with `make run`'s flags and
    `workers` workers; the rate limit is lifted through the settings (FUEL_RATE_LIMIT_PER_MINUTE)."""

    def __init__(self, db_url: str, *, workers: int = 2) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workers = workers
        self.base = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "DATABASE_URL": db_url,
            "FUEL_ENV": "development",
            "FUEL_BIND_HOST": "127.0.0.1",
            "FUEL_RATE_LIMIT_PER_MINUTE": "100000000",
        }
        self.log_path = tmp_dir() / f"server-{self.port}.log"
        self.log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(workers), *uvicorn_flags(), "--log-level", "info"],
            cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            # every worker has started (one line each), and the database and graph are ready
            started = self.log_path.read_text(encoding="utf-8").count("Application startup complete")
            try:
                if started >= workers and httpx.get(self.base + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server not ready within 180 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def load_demo(db_url: str) -> dict[str, Any]:
    from ingest._load_region import load_region_data

    settings = Settings(database_url=db_url)
    return load_region_data(
        settings, region_name="andorra", extract=OSM / DEMO_EXTRACT, demo=True, progress=False
    )


def _sample(client: httpx.Client, paths: list[str], n: int) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0
    for i in range(n):
        t0 = time.perf_counter()
        resp = client.get(paths[i % len(paths)])
        lat.append(time.perf_counter() - t0)
        errors += int(resp.status_code != 200)
    return lat, errors


def _route_path(a: tuple[float, float], b: tuple[float, float], depart: datetime | None) -> str:
    q = {"from": f"{a[0]},{a[1]}", "to": f"{b[0]},{b[1]}"}
    if depart is not None:
        q["depart_at"] = depart.isoformat()
    return "/v1/route?" + urlencode(q)


# ---- 6 (HTTP part): route, matrix, live batch ---------------------------------------------------------
def http_routes(ctx: Ctx, srv: Server) -> None:
    sec = ctx.report.section("6b. Performance over HTTP: route, matrix, live-traffic batch")
    sec.text += [
        f"uvicorn ({srv.workers} workers, `make run`'s flags) in a subprocess on 127.0.0.1, bench database loaded with the demo region",
        "(`ingest._load_region.load_region_data`); sequential requests from the bench process (httpx, keep-alive).",
        "Baseline: the same server's /health p50.",
    ]
    pairs = ctx.pairs(DEMO_EXTRACT, ctx.n(200, 30), salt=71)
    r = ctx.router(DEMO_EXTRACT)
    inproc = []
    for p in pairs:
        t0 = time.perf_counter()
        r.route(p.origin, p.destination, depart_at=RUSH)
        inproc.append(time.perf_counter() - t0)
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        _sample(c, ["/health"], 20)  # warm-up
        health, _ = _sample(c, ["/health"], ctx.n(500, 100))
        paths = [_route_path(p.origin, p.destination, RUSH) for p in pairs]
        _sample(c, paths[:5], 5)
        route, route_err = _sample(c, paths, len(paths))
        pts = [list(p.origin) for p in pairs[:50]]
        k = ctx.n(50, 20)
        t0 = time.perf_counter()
        resp = c.post(
            "/v1/matrix", json={"sources": pts[:k], "targets": pts[:k], "depart_at": RUSH.isoformat()}
        )
        mat_s = time.perf_counter() - t0
        mat_ok = resp.status_code == 200
        visible = _live_batch(ctx, c, pairs)
    h, rt, ip = percentiles(health), percentiles(route), percentiles(inproc)
    sec.tables.append(
        (["request", "p50 ms", "p90 ms", "p99 ms", "n", "ratio p50 vs /health"],
         [["GET /health", h["p50_ms"], h["p90_ms"], h["p99_ms"], h["n"], 1.0],
          ["GET /v1/route (full JSON)", rt["p50_ms"], rt["p90_ms"], rt["p99_ms"], rt["n"], ratio(rt["p50_ms"], h["p50_ms"])],
          ["in-process Router.route, same pairs", ip["p50_ms"], ip["p90_ms"], ip["p99_ms"], ip["n"], ratio(ip["p50_ms"], h["p50_ms"])]])
    )  # fmt: skip
    sec.tables.append(
        (["operation", "result"],
         [[f"POST /v1/matrix {k}x{k}", f"{mat_s:.3f} s, {k * k / mat_s:,.0f} cells/s" + ("" if mat_ok else f" (HTTP {resp.status_code})")],
          ["POST /v1/traffic 1,000 updates -> next route reflects it",
           ", ".join(f"{v * 1e3:.0f} ms" for v in visible) or "not visible"]])
    )  # fmt: skip
    sec.data.update({"health": h, "route": rt, "inprocess": ip, "route_errors": route_err,
                     "matrix_cells_per_s": k * k / mat_s, "live_visible_s": visible})  # fmt: skip
    ctx.report.bar(
        "live traffic: a 1,000-update batch is visible to the next route within 1 s",
        bool(visible) and max(visible) <= 1.0 and len(visible) == ctx.n(3, 1),
        f"POST start -> first route reflecting it: {', '.join(f'{v * 1e3:.0f} ms' for v in visible) or 'never'}",
    )


def _live_batch(ctx: Ctx, c: httpx.Client, pairs: list[Any]) -> list[float]:
    rng = np.random.default_rng(ctx.seed + 72)
    g = ctx.graph(DEMO_EXTRACT)
    out = []
    for p in pairs[: ctx.n(3, 1)]:
        path = _route_path(p.origin, p.destination, None)  # now: the batch is observed now
        before = c.get(path + "&geometries=segments").json()  # the edges driven: ask for the segments
        edges = [s["edge_id"] for s in before["segments"]]
        others = rng.choice(g.n_road_edges, 1000, replace=False).tolist()
        ids = list(dict.fromkeys(edges + others))[:1000]
        now = datetime.now(UTC)
        upd = [
            {"edge_id": int(e), "factor": 0.2, "observed_at": now.isoformat(),
             "expires_at": (now + timedelta(seconds=120)).isoformat()}
            for e in ids
        ]  # fmt: skip
        t0 = time.perf_counter()
        resp = c.post("/v1/traffic", json={"updates": upd}, headers={"X-API-Key": ctx.settings.admin_api_key})
        if resp.status_code != 200:
            print(f"  live batch rejected: {resp.status_code} {resp.text[:300]}", flush=True)
            continue
        while time.perf_counter() - t0 < 5.0:
            after = c.get(path).json()
            if abs(after["duration_s"] - before["duration_s"]) > 0.05:
                out.append(time.perf_counter() - t0)
                break
    return out


# ---- 7. station index -----------------------------------------------------------------------------------
def _seed_stations(conn: Any, start: int, count: int, seed: int) -> float:
    """COPY `count` stations uniformly over the demo bbox (H3 cells computed per point)."""
    from geo._brands import BRANDS
    from geo._h3cells import cells_for_points

    rng = np.random.default_rng(seed + start)
    west, south, east, north = DEMO_BBOX
    lat = rng.uniform(south, north, count)
    lon = rng.uniform(west, east, count)
    t0 = time.perf_counter()
    cells = cells_for_points(lat.tolist(), lon.tolist())
    brands = list(BRANDS)
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY stations (source, source_ref, name, brand, geom, h3_r7, h3_r8, h3_r9, grades) FROM STDIN"
        ) as cp,
    ):
        for i in range(count):
            r7, r8, r9 = cells[i]
            cp.write_row(
                ("demo", f"bench-{start + i}", f"Bench {start + i}", brands[(start + i) % len(brands)],
                 f"SRID=4326;POINT({lon[i]:.7f} {lat[i]:.7f})", r7, r8, r9, ["92", "95"])
            )  # fmt: skip
    conn.commit()
    conn.execute("ANALYZE stations")
    conn.commit()
    return time.perf_counter() - t0


class _ExplainConn:
    """Wraps a connection so the service's own nearby query runs as EXPLAIN (ANALYZE) (plans collected)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.plans: list[str] = []

    def transaction(self) -> Any:
        return self.conn.transaction()

    def execute(self, query: Any, params: Any = None) -> Any:
        # the nearby statement is composed (psycopg.sql) and starts with WITH: render it to explain it
        text = query if isinstance(query, str) else query.as_string(self.conn)
        if text.lstrip().upper().startswith(("SELECT", "WITH")):
            cur = self.conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + text, params)
            self.plans.append("\n".join(str(r[0]) for r in cur.fetchall()))
        return self.conn.execute(query, params)


def stations(ctx: Ctx, srv: Server, db_url: str) -> None:
    """Growth: nearby throughput (wrk) and the bare SQL at 10k / 100k / 1M stations; route throughput on
    the 50k and 1M-node synthetic graphs (in-process)."""
    import psycopg

    from store._stations import nearby_stations

    sec = ctx.report.section("7. Growth: nearby at 10k / 100k / 1M stations, route on 50k / 1M-node graphs")
    levels = [10_000, 100_000, 1_000_000] if not ctx.quick else [10_000]
    seconds = ctx.n(10.0, 3.0)
    sec.text += [
        f"Stations seeded uniformly over the served (demo) region's bbox {DEMO_BBOX} by COPY with H3 r7-r9",
        "cells. Query points: seeded road points. GET /v1/stations/nearby with the API defaults (radius 5 km,",
        f"limit 20): wrk, {CONNECTIONS} connections, {seconds:.0f} s, against the server of `make run`"
        f" ({srv.workers} workers), and /health in the same run as the baseline. The bare SQL",
        "(`store._stations.nearby_stations`, in-process, sequential). EXPLAIN (ANALYZE) of the service's exact",
        "nearby SQL at each level. Up to FUEL_STATION_CACHE_MAX_STATIONS (50,000) stations the server answers",
        "nearby from each worker's in-memory copy (10k), above it from that SQL (100k, 1M).",
    ]
    pts = [p.origin for p in ctx.pairs(DEMO_EXTRACT, 200, salt=81)]
    nearby_paths = ["/v1/stations/nearby?" + urlencode({"lat": a, "lon": b}) for a, b in pts]
    rows = []
    plot: list[tuple[int, float, float]] = []
    data: dict[str, Any] = {}
    seeded = 0
    last: dict[str, Any] = {}
    have_wrk = wrk_path() is not None
    with psycopg.connect(db_url) as conn:
        for level in levels:
            copy_s = _seed_stations(conn, seeded, level - seeded, ctx.seed)
            seeded = level
            print(f"  seeded {level:,} stations ({copy_s:.1f} s for this step)", flush=True)
            sql_lat = []
            prog = Progress(f"nearby SQL {level:,}", len(pts))
            for i, (a, b) in enumerate(pts, 1):
                t0 = time.perf_counter()
                nearby_stations(conn, a, b, 5000.0, limit=20)
                sql_lat.append(time.perf_counter() - t0)
                conn.commit()
                prog.tick(i)
            ex = _ExplainConn(conn)
            nearby_stations(ex, pts[0][0], pts[0][1], 5000.0, limit=20)  # type: ignore[arg-type]
            conn.commit()
            plan = ex.plans[-1] if ex.plans else ""
            sq = percentiles(sql_lat)
            seq_scan = "Seq Scan on stations" in plan
            index_used = "Index" in plan and "stations" in plan
            entry: dict[str, Any] = {"sql": sq, "copy_s": copy_s, "seq_scan": seq_scan}
            if have_wrk:
                paths(srv.base, nearby_paths, seconds=2, name="warmup")
                hl = paths(srv.base, ["/health"], seconds=seconds, name="health")
                nb = paths(srv.base, nearby_paths, seconds=seconds, name="nearby")
                r = ratio(nb.rps, hl.rps)
                rows.append(
                    [f"{level:,}", sq["p50_ms"], f"{nb.rps:,.0f}", nb.p50_ms, nb.p99_ms, f"{hl.rps:,.0f}", r,
                     nb.errors, "yes" if index_used else "NO", "YES" if seq_scan else "no"]
                )  # fmt: skip
                plot.append((level, nb.rps, r))
                entry |= {"nearby": nb.__dict__, "health": hl.__dict__, "ratio": r}
            else:
                rows.append([f"{level:,}", sq["p50_ms"], "-", "-", "-", "-", "-", "-",
                             "yes" if index_used else "NO", "YES" if seq_scan else "no"])  # fmt: skip
            data[str(level)] = entry
            last = {"level": level, "plan": plan, "seq_scan": seq_scan, "index": index_used}
    sec.tables.append(
        (["stations", "SQL p50 ms", "nearby req/s", "nearby p50 ms", "nearby p99 ms", "/health req/s",
          "nearby / health", "errors", "index used", "Seq Scan"], rows)
    )  # fmt: skip
    if not have_wrk:
        sec.text.append("wrk is not installed: the HTTP columns are empty (make bench installs it).")
    sec.text += [
        "",
        f"EXPLAIN (ANALYZE) at {last.get('level', 0):,} stations:",
        "",
        "```",
        *str(last.get("plan", "")).splitlines(),
        "```",
    ]
    routes = _route_growth(ctx, sec)
    sec.data.update(data | {"routes": routes})
    _growth_plot(ctx, plot, routes, sec)
    if last:
        ctx.report.bar(
            "nearby query uses an index and no Seq Scan on stations (EXPLAIN ANALYZE)",
            last["index"] and not last["seq_scan"],
            f"at {last['level']:,} stations: index {'yes' if last['index'] else 'no'}, Seq Scan {'yes' if last['seq_scan'] else 'no'}",
        )


def _route_growth(ctx: Ctx, sec: Any) -> dict[str, dict[str, float]]:
    """Routes per second in one process (search, steps and the full JSON of /v1/route) on synthetic graphs."""
    from api._routing import route_json
    from geo._errors import RouteNotFound

    names = ["synthetic-50000", "synthetic-1000000"] if not ctx.quick else ["synthetic-50000"]
    rows = []
    out: dict[str, dict[str, float]] = {}
    for name in names:
        r = ctx.router(name)
        pairs = ctx.pairs(name, ctx.n(200, 40), salt=83)
        done = 0
        t0 = time.perf_counter()
        for p in pairs:
            try:
                route_json(r, r.route(p.origin, p.destination, depart_at=p.depart_at), "wgs84")
                done += 1
            except RouteNotFound:
                pass
        dt = time.perf_counter() - t0
        n_nodes = r.g.n_nodes
        out[name] = {
            "nodes": n_nodes,
            "routes": done,
            "routes_per_s": done / dt,
            "ms_per_route": dt / max(1, done) * 1e3,
        }
        rows.append(
            [f"{name} (synthetic)", f"{n_nodes:,}", done, f"{done / dt:,.0f}", dt / max(1, done) * 1e3]
        )
    sec.text += [
        "",
        "Route growth, in-process: `Router.route` (time-dependent, seeded weekday departures, with steps) and",
        "`api._routing.route_json` (the body of /v1/route), one thread, seeded random road points anywhere on",
        "the synthetic road-like graphs (`geo._synthetic`). One worker serves about this many routes a second",
        "before HTTP; the served region is the demo extract, so these graphs are not measured over HTTP."
        + ("" if not ctx.quick else " (quick: the 1M-node graph is left out)"),
    ]
    sec.tables.append((["graph", "nodes", "routes", "routes/s (1 thread)", "ms per route"], rows))
    return out


def _growth_plot(
    ctx: Ctx, plot: list[tuple[int, float, float]], routes: dict[str, dict[str, float]], sec: Any
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if plot:
        xs = [p[0] for p in plot]
        ax1.plot(xs, [p[1] for p in plot], marker="o", label="nearby req/s (HTTP, wrk)")
        ax1.set_xscale("log")
        ax1.set_xlabel("stations")
        ax1.set_ylabel("requests/s")
        ax1b = ax1.twinx()
        ax1b.plot(xs, [p[2] for p in plot], marker="s", color="tab:orange", label="nearby / /health")
        ax1b.set_ylabel("ratio to /health")
        ax1.set_ylim(bottom=0)
        ax1b.set_ylim(bottom=0)
        ax1.legend(loc="lower left")
        ax1b.legend(loc="upper right")
    ax1.set_title("nearby vs stations")
    if routes:
        names = list(routes)
        ax2.bar([f"{routes[n]['nodes']:,.0f}" for n in names], [routes[n]["routes_per_s"] for n in names])
        ax2.set_xlabel("graph nodes (synthetic)")
        ax2.set_ylabel("routes/s, in-process, 1 thread")
    ax2.set_title("route vs graph size")
    ctx.report.save_plot(fig, "growth", sec)


# ---- 8. load (wrk) ---------------------------------------------------------------------------------------
def _manager_stations(db_url: str, threads: int) -> list[str]:
    """`S <id> <version> <wrk thread>` lines: the stations selling 92# (each owned by one wrk thread)."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, version FROM stations WHERE '92' = ANY(grades) ORDER BY (source = 'osm') DESC, id LIMIT 200"
        ).fetchall()
    return [f"S {int(sid)} {int(v)} {i % threads + 1}" for i, (sid, v) in enumerate(rows)]


def load(ctx: Ctx, db_url: str) -> None:
    from benchmarks._wrk import WRK_THREADS

    sec = ctx.report.section("8. Load (wrk): /health, nearby, route, and the mixed load")
    if wrk_path() is None:
        sec.text.append("SKIPPED: wrk is not installed (`make bench` installs the Debian package `wrk`).")
        ctx.report.bar("load: wrk is installed", False, "wrk not found: the load bars were not measured")
        return
    seconds, mixed_s = ctx.n(10.0, 3.0), ctx.n(60.0, 10.0)
    pairs = ctx.pairs(DEMO_EXTRACT, 300, salt=91)
    nearby_paths = [
        "/v1/stations/nearby?" + urlencode({"lat": p.origin[0], "lon": p.origin[1]}) for p in pairs
    ]
    route_paths = [_route_path(p.origin, p.destination, None) for p in pairs]
    sec.text += [
        f"wrk ({WRK_THREADS} threads, {CONNECTIONS} connections, {seconds:.0f} s per run after a 2 s warm-up) from a",
        "second process against uvicorn with the flags of `make run` (h11 with the request-head deadline),",
        "1 and then 2 workers, demo region, rate limit lifted with FUEL_RATE_LIMIT_PER_MINUTE. Nearby: 300",
        "seeded road points, API defaults (5 km, limit 20); route: 300 seeded OD pairs departing now, the full",
        "JSON (GeoJSON geometry and steps). Ratios are to /health of the same server in the same run.",
        f"Mixed: {mixed_s:.0f} s, 2 workers, nearby 70 % / route 20 % / price writes 10 % (`benchmarks/wrk/load.lua`:",
        "PUT /v1/stations/{id}/prices with If-Match and the dev manager key, each wrk thread writing its own",
        "stations one at a time, so a write never carries a stale version). Errors: non-2xx answers and",
        "socket errors (connect, read, write, timeout).",
    ]
    rows: list[list[Any]] = []
    runs: dict[str, dict[str, Any]] = {}
    mixed: WrkResult | None = None
    for workers in (1, 2):
        srv = Server(db_url, workers=workers)
        try:
            if workers == 1:  # pairs the road network does not join (a 404 RouteNotFound) are left out
                with httpx.Client(base_url=srv.base, timeout=30) as c:
                    route_paths = [x for x in route_paths if c.get(x).status_code == 200]
                    sec.text.append(
                        f"Route pairs answered 200 (the others are not joined by roads): {len(route_paths)} of {len(pairs)}."
                    )
            paths(srv.base, nearby_paths + route_paths, seconds=2, name="warmup")
            res = {
                "health": paths(srv.base, ["/health"], seconds=seconds, name="health"),
                "nearby": paths(srv.base, nearby_paths, seconds=seconds, name="nearby"),
                "route": paths(srv.base, route_paths, seconds=seconds, name="route"),
            }
            if workers == 2:
                data = [f"N {x}" for x in nearby_paths] + [f"R {x}" for x in route_paths]
                data += [f"K {ctx.settings.admin_api_key}", *_manager_stations(db_url, WRK_THREADS)]
                mixed = run_wrk(srv.base, data=data, seconds=mixed_s, name="mixed")
        finally:
            srv.stop()
        h = res["health"].rps
        for kind, label in (
            ("health", "GET /health"),
            ("nearby", "GET /v1/stations/nearby"),
            ("route", "GET /v1/route (full JSON)"),
        ):
            w = res[kind]
            rows.append([workers, label, *w.row(), ratio(w.rps, h)])
        runs[str(workers)] = {k: v.__dict__ for k, v in res.items()}
    sec.tables.append(
        (["workers", "request", "req/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors", "req/s vs /health"], rows)
    )  # fmt: skip
    two = runs["2"]
    nb_r = ratio(two["nearby"]["rps"], two["health"]["rps"])
    rt_r = ratio(two["route"]["rps"], two["health"]["rps"])
    errs = sum(v["non2xx"] + v["socket_errors"] for w in runs.values() for v in w.values())
    examples = [v["examples"] for w in runs.values() for v in w.values() if v["examples"]]
    if examples:
        sec.text += ["", "Error examples: " + " | ".join(examples)[:600]]
    sec.data.update({"runs": runs})
    _load_plot(ctx, runs, sec)
    ctx.report.bar(
        f"nearby >= 0.30x /health throughput (2 workers, {CONNECTIONS} connections)",
        nb_r >= 0.30,
        f"{two['nearby']['rps']:,.0f} vs {two['health']['rps']:,.0f} req/s = {nb_r:.2f}x",
    )
    ctx.report.bar(
        f"route (full JSON with steps) >= 0.20x /health throughput (2 workers, {CONNECTIONS} connections)",
        rt_r >= 0.20,
        f"{two['route']['rps']:,.0f} vs {two['health']['rps']:,.0f} req/s = {rt_r:.2f}x",
    )
    ctx.report.bar(
        "nearby p99 <= 250 ms (2 workers, 64 connections)",
        two["nearby"]["p99_ms"] <= 250.0,
        f"p99 {two['nearby']['p99_ms']:.0f} ms (p50 {two['nearby']['p50_ms']:.0f} ms)",
    )
    ctx.report.bar("load: no non-2xx in the throughput runs (1 and 2 workers)", errs == 0, f"{errs} errors")
    if mixed is not None:
        sec.tables.append(
            (["mixed load (2 workers)", "req/s", "p50 ms", "p90 ms", "p99 ms", "requests", "errors", "sent: nearby / route / write"],
             [[f"{mixed_s:.0f} s", *mixed.row(), " / ".join(str(mixed.sent.get(k, 0)) for k in ("nearby", "route", "write"))]])
        )  # fmt: skip
        if mixed.examples:
            sec.text += ["", "Mixed-load error examples: " + mixed.examples[:600]]
        sec.data["mixed"] = mixed.__dict__
        ctx.report.bar(
            f"mixed load: 0 errors in {mixed_s:.0f} s at {CONNECTIONS} connections",
            mixed.errors == 0 and mixed.requests > 0,
            f"{mixed.errors} errors ({mixed.non2xx} non-2xx, {mixed.socket_errors} socket) in {mixed.requests:,}"
            f" requests, {mixed.rps:,.0f} req/s, p99 {mixed.p99_ms:.0f} ms; sent {mixed.sent}",
        )


def _load_plot(ctx: Ctx, runs: dict[str, dict[str, Any]], sec: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["health", "nearby", "route"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.38
    for j, workers in enumerate(runs):
        xs = [i + (j - 0.5) * width for i in range(len(kinds))]
        ax1.bar(xs, [runs[workers][k]["rps"] for k in kinds], width, label=f"{workers} worker(s)")
        ax2.bar(xs, [runs[workers][k]["p99_ms"] for k in kinds], width, label=f"{workers} worker(s)")
    for ax, title in ((ax1, "requests/s (log)"), (ax2, "p99 latency, ms")):
        ax.set_xticks(range(len(kinds)), ["/health", "nearby", "route"])
        ax.set_title(title)
        ax.legend()
    ax1.set_yscale("log")
    ctx.report.save_plot(fig, "load", sec)


# ---- 9. ranking ----------------------------------------------------------------------------------------
def ranking(ctx: Ctx, srv: Server) -> None:
    sec = ctx.report.section("9. Ranking by total cost")
    pairs = ctx.pairs(DEMO_EXTRACT, ctx.n(60, 15), salt=95)
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        p0 = pairs[0].origin
        probe = c.get(
            "/v1/stations/nearby?"
            + urlencode({"lat": p0[0], "lon": p0[1], "sort": "total_cost", "grade": "92", "limit": 50})
        )
        if probe.status_code != 200:
            msg = f"SKIPPED: sort=total_cost is not supported by /v1/stations/nearby yet (HTTP {probe.status_code})"
            sec.text.append(msg)
            print("  " + msg, flush=True)
            sec.data["skipped"] = True
            return
        rank_paths = [
            "/v1/stations/nearby?"
            + urlencode(
                {"lat": p.origin[0], "lon": p.origin[1], "sort": "total_cost", "grade": "92", "limit": 50}
            )
            for p in pairs
        ]
        route_paths = [_route_path(p.origin, p.destination, None) for p in pairs]
        rk, _ = _sample(c, rank_paths, len(rank_paths))
        rt, _ = _sample(c, route_paths, len(route_paths))
    r = ratio(p50(rk), p50(rt))
    sec.tables.append(
        (
            ["request", "p50 ms", "ratio vs one route"],
            [["nearby sort=total_cost limit=50", p50(rk) * 1e3, r], ["route", p50(rt) * 1e3, 1.0]],
        )
    )
    sec.data.update({"rank_p50_ms": p50(rk) * 1e3, "route_p50_ms": p50(rt) * 1e3})
    ctx.report.bar(
        "ranking 50 candidates by total cost <= 5x one route (p50)",
        r <= 5.0,
        f"{r:.1f}x ({p50(rk) * 1e3:.1f} ms vs {p50(rt) * 1e3:.1f} ms)",
    )


def all_http(ctx: Ctx, only: set[str] | None) -> None:
    from benchmarks._common import bench_database
    from benchmarks._quality import pgrouting

    def want(s: str) -> bool:
        return only is None or s in only

    if not any(want(s) for s in ("pgrouting", "http", "stations", "load", "ranking")):
        return
    with bench_database() as url:
        print(f"bench database {url.split('dbname=')[-1]}", flush=True)
        if want("pgrouting"):
            pgrouting(ctx, url)
        if not any(want(s) for s in ("http", "stations", "load", "ranking")):
            return
        t0 = time.perf_counter()
        summary = load_demo(url)
        print(
            f"  demo region loaded in {time.perf_counter() - t0:.1f} s: {summary.get('stations')}", flush=True
        )
        # the load runs start their own servers (1 and 2 workers); the station growth seeds up to 1M
        # stations, so it comes last
        if want("load"):
            load(ctx, url)
        if not any(want(s) for s in ("http", "stations", "ranking")):
            return
        srv = Server(url, workers=2)
        try:
            if want("http"):
                http_routes(ctx, srv)
            if want("ranking"):
                ranking(ctx, srv)
            if want("stations"):
                stations(ctx, srv, url)
        finally:
            srv.stop()
