"""Over HTTP: a uvicorn server (subprocess) on the bench database; route, live batch, stations, load, ranking."""

from __future__ import annotations

import json
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
from config import PROJECT_ROOT, Settings

DEMO_BBOX = (1.04, 41.74, 1.83, 42.79)  # data/regions/andorra.toml (served as the demo region)


class Server:
    """uvicorn api.main:app on 127.0.0.1:<free port>, one worker, against `db_url`."""

    def __init__(self, db_url: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "DATABASE_URL": db_url,
            "FUEL_ENV": "development",
            "FUEL_RATE_LIMIT_PER_MINUTE": "100000000",
        }
        self.log = open(tmp_dir() / "server.log", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-access-log", "--log-level", "warning"],
            cwd=PROJECT_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.base + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("server not ready within 120 s")

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


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    d = tmp_dir()
    sp, op = d / "loadgen_spec.json", d / "loadgen_out.json"
    sp.write_text(json.dumps(spec), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "benchmarks._loadgen", str(sp), str(op)], cwd=PROJECT_ROOT, check=True
    )
    out: dict[str, Any] = json.loads(op.read_text(encoding="utf-8"))
    return out


# ---- 6 (HTTP part): route, matrix, live batch ---------------------------------------------------------
def http_routes(ctx: Ctx, srv: Server) -> None:
    sec = ctx.report.section("6b. Performance over HTTP: route, matrix, live-traffic batch")
    sec.text += [
        "uvicorn (1 worker) in a subprocess on 127.0.0.1, bench database loaded with the demo region",
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
    import psycopg

    from store._stations import nearby_stations

    sec = ctx.report.section("7. Station index: nearby latency at 10k / 100k / 1M stations")
    levels = [10_000, 100_000, 1_000_000] if not ctx.quick else [10_000]
    clients, seconds = ctx.n(30, 10), ctx.n(15.0, 4.0)
    sec.text += [
        f"Stations seeded uniformly over the served (demo) region's bbox {DEMO_BBOX} by COPY with H3 r7-r9",
        "cells. Query points: seeded road points. GET /v1/stations/nearby with the API defaults (radius 5 km,",
        f"limit 20) under load from a second process ({clients} concurrent clients, {seconds:.0f} s, 80 % nearby /",
        "20 % /health, so /health is measured under the same load), and the bare SQL",
        "(`store._stations.nearby_stations`, in-process, sequential). EXPLAIN (ANALYZE) of the service's exact",
        "nearby SQL at each level.",
    ]
    pts = [p.origin for p in ctx.pairs(DEMO_EXTRACT, 200, salt=81)]
    paths = ["/v1/stations/nearby?" + urlencode({"lat": a, "lon": b}) for a, b in pts]
    rows = []
    plot: list[tuple[int, float, float, float]] = []
    data: dict[str, Any] = {}
    seeded = 0
    last: dict[str, Any] = {}
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
            res = run_loadgen(
                {"base": srv.base, "clients": clients, "seconds": seconds, "seed": ctx.seed,
                 "mix": {"nearby": 8, "health": 2}, "requests": {"nearby": paths, "health": ["/health"]}}
            )  # fmt: skip
            nb, hl = percentiles(res["nearby"]["lat"]), percentiles(res["health"]["lat"])
            sq = percentiles(sql_lat)
            errors = res["nearby"]["errors"] + res["health"]["errors"]
            thr = len(res["nearby"]["lat"]) / res["_elapsed_s"]
            seq_scan = "Seq Scan on stations" in plan
            index_used = "Index" in plan and "stations" in plan
            rows.append(
                [f"{level:,}", sq["p50_ms"], nb["p50_ms"], nb["p99_ms"], hl["p50_ms"], ratio(nb["p50_ms"], hl["p50_ms"]),
                 ratio(nb["p50_ms"], sq["p50_ms"]), f"{thr:,.0f}", errors, "yes" if index_used else "NO", "YES" if seq_scan else "no"]
            )  # fmt: skip
            plot.append((level, sq["p50_ms"], nb["p50_ms"], hl["p50_ms"]))
            last = {
                "level": level,
                "nearby": nb,
                "health": hl,
                "sql": sq,
                "plan": plan,
                "seq_scan": seq_scan,
                "index": index_used,
            }
            data[str(level)] = {"sql": sq, "nearby_http": nb, "health_http": hl, "nearby_rps": thr, "errors": errors,
                                "examples": res["nearby"]["examples"][:3], "copy_s": copy_s, "seq_scan": seq_scan}  # fmt: skip
    sec.tables.append(
        (["stations", "SQL p50 ms", "HTTP nearby p50 ms", "nearby p99 ms", "/health p50 ms (same load)",
          "nearby / health", "HTTP nearby / SQL", "nearby req/s", "errors", "index used", "Seq Scan"], rows)
    )  # fmt: skip
    sec.text += [
        "",
        f"EXPLAIN (ANALYZE) at {last.get('level', 0):,} stations:",
        "",
        "```",
        *str(last.get("plan", "")).splitlines(),
        "```",
    ]
    sec.data.update(data)
    _stations_plot(ctx, plot, sec)
    if last:
        rr = ratio(last["nearby"]["p50_ms"], last["health"]["p50_ms"])
        ctx.report.bar(
            f"nearby p50 at most 3x /health p50 at {last['level']:,} stations"
            + ("" if last["level"] >= 1_000_000 else " (quick: not 1M)"),
            rr <= 3.0,
            f"nearby p50 {last['nearby']['p50_ms']:.1f} ms vs /health p50 {last['health']['p50_ms']:.1f} ms under the same load = {rr:.1f}x"
            f" (bare SQL p50 {last['sql']['p50_ms']:.2f} ms)",
        )
        ctx.report.bar(
            "nearby query uses an index and no Seq Scan on stations (EXPLAIN ANALYZE)",
            last["index"] and not last["seq_scan"],
            f"at {last['level']:,} stations: index {'yes' if last['index'] else 'no'}, Seq Scan {'yes' if last['seq_scan'] else 'no'}",
        )


def _stations_plot(ctx: Ctx, plot: list[tuple[int, float, float, float]], sec: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [p[0] for p in plot]
    for i, label in (
        (1, "bare SQL p50"),
        (2, "HTTP nearby p50 (under load)"),
        (3, "HTTP /health p50 (same load)"),
    ):
        ax.plot(xs, [p[i] for p in plot], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stations")
    ax.set_ylabel("ms")
    ax.legend()
    fig.tight_layout()
    path = ctx.report.plot_path("stations")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    sec.plots.append(path.name)


def _price_probe(c: httpx.Client, db_url: str, key: str, clients: int) -> tuple[bool, list[int], str]:
    """Station ids for the price writers (the demo region's OSM stations first), and one probe write."""
    import psycopg

    with psycopg.connect(db_url) as conn:
        ids = [int(r[0]) for r in conn.execute(
            "SELECT id FROM stations WHERE '92' = ANY(grades) ORDER BY (source = 'osm') DESC, id LIMIT %s",
            (4 * clients,),
        ).fetchall()]  # fmt: skip
    if not ids:
        return False, [], "no stations"
    got = c.get(f"/v1/manage/stations/{ids[0]}", headers={"X-API-Key": key})
    if got.status_code != 200:
        return False, ids, f"GET /v1/manage/stations -> {got.status_code}"
    put = c.put(
        f"/v1/stations/{ids[0]}/prices",
        json={"prices": [{"grade": "92", "price_cny": "7.50"}]},
        headers={"X-API-Key": key, "If-Match": got.headers.get("etag", "")},
    )
    return put.status_code == 200, ids, f"PUT -> {put.status_code} {put.text[:120]}"


# ---- 8. load -------------------------------------------------------------------------------------------
def _price_endpoint(c: httpx.Client) -> bool:
    try:
        spec = c.get("/openapi.json").json()
    except (httpx.HTTPError, ValueError):
        return False
    return "put" in spec.get("paths", {}).get("/v1/stations/{station_id}/prices", {})


def load(ctx: Ctx, srv: Server, db_url: str) -> None:
    sec = ctx.report.section("8. Load: nearby 70 % / route 20 % / writes 10 %")
    clients, seconds = ctx.n(50, 50), ctx.n(45.0, 8.0)
    pairs = ctx.pairs(DEMO_EXTRACT, 300, salt=91)
    g = ctx.graph(DEMO_EXTRACT)
    writes: dict[str, Any] = {
        "mode": "traffic",
        "n_edges": g.n_road_edges,
        "batch": 5,
        "api_key": ctx.settings.admin_api_key,
    }
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        has_prices = _price_endpoint(c)
        probe = _price_probe(c, db_url, ctx.settings.admin_api_key, clients) if has_prices else None
    if probe is not None and probe[0]:
        writes |= {"mode": "prices", "station_ids": probe[1], "api_key": ctx.settings.admin_api_key,
                   "price_lo": 7.0, "price_hi": 8.5, "grade": "92"}  # fmt: skip
        note = (
            "Writes: GET /v1/manage/stations/{id} (X-API-Key: the dev admin key) for the fresh ETag, then"
            " PUT /v1/stations/{id}/prices with If-Match (92# at 7.00-8.50 CNY, within the plausible band under the zone-4 ceiling); each"
            " client owns its own stations, so no writer sends a stale version."
        )
    elif has_prices:
        note = (
            "PUT /v1/stations/{id}/prices exists but the probe write failed"
            f" ({probe[2] if probe else '?'}): the write share is POST /v1/traffic (5 slowdowns per request)."
        )
    else:
        note = (
            "Writes: PUT /v1/stations/{id}/prices is not in the API (checked in /openapi.json), so the write share"
            " is POST /v1/traffic (5 live slowdowns per request) as the brief allows."
        )
    sec.text += [
        f"A second process (`benchmarks._loadgen`, asyncio + httpx) drives {clients} concurrent clients for {seconds:.0f} s",
        "against the uvicorn server (1 worker, loopback, rate limit raised with FUEL_RATE_LIMIT_PER_MINUTE).",
        "Nearby: seeded road points, API defaults; route: seeded OD pairs departing now.",
        note,
    ]
    res = run_loadgen(
        {"base": srv.base, "clients": clients, "seconds": seconds, "seed": ctx.seed,
         "mix": {"nearby": 70, "route": 20, "write": 10},
         "requests": {"nearby": ["/v1/stations/nearby?" + urlencode({"lat": p.origin[0], "lon": p.origin[1]}) for p in pairs],
                      "route": [_route_path(p.origin, p.destination, None) for p in pairs]},
         "writes": writes}
    )  # fmt: skip
    rows = []
    errors = 0
    total = 0
    all_lat: list[float] = []
    for kind in ("nearby", "route", "write"):
        d = res.get(kind, {"lat": [], "errors": 0, "status": {}, "examples": []})
        pc = percentiles(d["lat"])
        errors += d["errors"]
        total += len(d["lat"])
        all_lat += d["lat"]
        rows.append(
            [
                kind,
                pc["n"],
                f"{pc['n'] / res['_elapsed_s']:,.1f}",
                pc["p50_ms"],
                pc["p99_ms"],
                d["errors"],
                json.dumps(d["status"]),
            ]
        )
    pa = percentiles(all_lat)
    rows.append(
        ["all", pa["n"], f"{pa['n'] / res['_elapsed_s']:,.1f}", pa["p50_ms"], pa["p99_ms"], errors, ""]
    )
    sec.tables.append((["kind", "requests", "req/s", "p50 ms", "p99 ms", "errors", "status counts"], rows))
    examples = [e for k in ("nearby", "route", "write") for e in res.get(k, {}).get("examples", [])]
    if examples:
        sec.text += ["", "Error examples: " + " | ".join(examples[:6])]
    sec.data.update({"result": {k: {kk: vv for kk, vv in v.items() if kk != "lat"} for k, v in res.items() if isinstance(v, dict)},
                     "p50_ms": pa["p50_ms"], "p99_ms": pa["p99_ms"], "errors": errors, "writes": writes["mode"]})  # fmt: skip
    ctx.report.bar(
        f"load: 0 errors with {clients} concurrent clients for {seconds:.0f} s",
        errors == 0 and total > 0,
        f"{errors} errors in {total} requests; p50 {pa['p50_ms']:.1f} ms, p99 {pa['p99_ms']:.1f} ms, {total / res['_elapsed_s']:.0f} req/s",
    )


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
        srv = Server(url)
        try:
            if want("http"):
                http_routes(ctx, srv)
            if want("stations"):
                stations(ctx, srv, url)
            if want("ranking"):
                ranking(ctx, srv)
            if want("load"):
                load(ctx, srv, url)
        finally:
            srv.stop()
