"""Section 10: the station link under load: simulated pumps fuelling at once through one link server.

Measures the progress latency from the moment a simulated site has written a PROGRESS line to the moment
a client LISTENing on channel `forecourt` receives its NOTIFY (the link server logged the raw line,
stored the progress row and notified, in between), the same to each pump's driver's live WebSocket
(a fuelling session per pump, one API worker), and the link server's memory per connected site.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from benchmarks._common import Ctx, bench_database
from benchmarks._report import percentiles
from config import PROJECT_ROOT, Settings

BAR_P99_MS = 300.0
RAMP_S = 5.0  # the pumps start within this many seconds
BENCH_SECRET = "bench-secret-Vb7Qx2Lr9Tk4Wm8Zp3Nc6Hj1Fd5Gs0Ya"
GRADES = ("92", "95", "0")
PRICES = {"92": 765, "95": 818, "0": 740}


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _seed(url: str, sites: int, pumps: int) -> list[tuple[int, str, str]]:
    from store._auth import create_site_key

    out = []
    with psycopg.connect(url) as conn:
        for i in range(sites):
            (station,) = conn.execute(
                "INSERT INTO stations (source, source_ref, name, brand, geom, h3_r7, h3_r8, h3_r9, grades)"
                " VALUES ('demo', %s, %s, 'sinopec', ST_SetSRID(ST_MakePoint(100.2 + %s * 0.001, 26.87), 4326),"
                " 0, 0, 0, %s) RETURNING id",
                (f"bench-{i}", f"bench {i}", i, list(GRADES)),
            ).fetchone()  # type: ignore[misc]
            for p in range(1, pumps + 1):
                conn.execute("INSERT INTO pumps (station_id, pump_no) VALUES (%s, %s)", (station, p))
                for n, g in enumerate(GRADES, start=1):
                    conn.execute(
                        "INSERT INTO nozzles (station_id, pump_no, nozzle_no, grade) VALUES (%s, %s, %s, %s)",
                        (station, p, n, g),
                    )
            key = create_site_key(conn, f"bench-{station}", station, secret_key=BENCH_SECRET)
            out.append((int(station), key.site_access_key, key.secret))
    return out


def _start_link(url: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FUEL_ENV": "test",
        "FUEL_SECRET_KEY": BENCH_SECRET,
        "FUEL_ADMIN_API_KEY": BENCH_SECRET[::-1],
        "FUEL_LINK_MAX_LINES_PER_S": "1000",
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecourt", "link", "--port", "0", "--no-ws"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        select.select([proc.stdout], [], [], 0.2)
        buf += proc.stdout.read() or b""
        m = re.search(rb"tcp=[\d.]+:(\d+)", buf)
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"link server did not start: {buf!r}")


def _start_api(url: str) -> tuple[subprocess.Popen[bytes], int]:
    """One API worker (uvicorn) on a free port: the sessions' HTTP endpoints and live WebSockets."""
    import socket

    import httpx

    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FUEL_ENV": "test",
        "FUEL_SECRET_KEY": BENCH_SECRET,
        "FUEL_ADMIN_API_KEY": BENCH_SECRET[::-1],
        "FUEL_EXTRACT": "/nonexistent/no-roads.osm.pbf",  # no road graph: the fuelling endpoints only
        "FUEL_RATE_LIMIT_PER_MINUTE": "1000000",
        "FUEL_RATE_LIMIT_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "FUEL_FUELLING_LIVE_POOL_SIZE": "8",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-proxy-headers",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the API did not start")


class _LiveClients(threading.Thread):
    """Every pump's driver: a user with a fuelling session bound to the nozzle they will lift, and a live
    WebSocket (`/v1/fuelling/sessions/{id}/live`) read in this thread's own event loop; the receive time
    of every progress event, keyed like the sent PROGRESS lines (station, pump, seq)."""

    def __init__(self, url: str, api_port: int, drivers: list[tuple[int, int, int]]) -> None:
        super().__init__(daemon=True)
        self.url, self.api_port, self.drivers = url, api_port, drivers  # (station, pump, nozzle)
        self.received: dict[tuple[int, int, int], float] = {}
        self.sessions: dict[int, tuple[int, int]] = {}
        self.errors: list[str] = []
        self.ready = threading.Event()
        self.stop = threading.Event()

    def bind_all(self) -> None:
        import httpx

        from api import _tokens
        from store._nozzles import issue_tokens
        from store._users import User, login

        tokens: dict[tuple[int, int, int], str] = {}
        with psycopg.connect(self.url) as conn:
            for station in sorted({d[0] for d in self.drivers}):
                for t in issue_tokens(conn, station, actor="bench", secret_key=BENCH_SECRET):
                    tokens[(station, t.pump_no, t.nozzle_no)] = t.token
            users = [
                login(conn, openid=f"bench-{uuid.uuid4().hex[:10]}", unionid=None)[0] for _ in self.drivers
            ]
        self.auth: dict[int, str] = {}
        with httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=30) as http:
            for (station, pump, nozzle), user in zip(self.drivers, users, strict=True):
                bearer, _ = _tokens.issue(User(user.id, user.openid), secret_key=BENCH_SECRET, ttl_s=3600)
                r = http.post(
                    "/v1/fuelling/sessions",
                    json={"nozzle_token": tokens[(station, pump, nozzle)]},
                    headers={"Authorization": f"Bearer {bearer}"},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"bind {station}/{pump}: {r.status_code} {r.text}")
                sid = int(r.json()["id"])
                self.sessions[sid] = (station, pump)
                self.auth[sid] = bearer
        self.start()
        if not self.ready.wait(60):
            raise RuntimeError(f"live WebSockets did not all open: {self.errors[:3]}")

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        opened = 0

        async def follow(sid: int) -> None:
            nonlocal opened
            station, pump = self.sessions[sid]
            uri = f"ws://127.0.0.1:{self.api_port}/v1/fuelling/sessions/{sid}/live?token={self.auth[sid]}"
            import json

            try:
                async with connect(uri, open_timeout=30, max_queue=None) as ws:
                    json.loads(await ws.recv())  # the session now
                    opened += 1
                    if opened == len(self.sessions):
                        self.ready.set()
                    async for raw in ws:
                        t = time.perf_counter()
                        e = json.loads(raw)["event"]
                        if e["kind"] == "progress" and e["progress_seq"] is not None:
                            self.received[(station, pump, int(e["progress_seq"]))] = t
            except Exception as exc:  # reported in the section, never hidden
                self.errors.append(f"{sid}: {type(exc).__name__} {exc}")

        tasks = [asyncio.create_task(follow(sid)) for sid in self.sessions]
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Listener(threading.Thread):
    """LISTEN forecourt in its own thread: the receive time of every progress NOTIFY."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.received: dict[tuple[int, int, str, int], float] = {}
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        import json

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("LISTEN forecourt")
            self.ready.set()
            while not self.stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    t = time.perf_counter()
                    p = json.loads(note.payload)
                    if p.get("kind") == "progress":
                        self.received[(p["station_id"], p["pump_no"], p["site_tx_id"], p["seq"])] = t


async def _drive(
    sims: list[Any],
    pumps: int,
    litres: int,
    rss: list[int],
    pid: int,
    rng: random.Random,
    before_fuelling: Callable[[], None] | None = None,
) -> dict[str, float]:
    from forecourt._site import SiteError

    tasks = [asyncio.create_task(s.run()) for s in sims]
    try:
        t0 = time.monotonic()
        while not all(s.connected.is_set() for s in sims):
            if time.monotonic() - t0 > 60:
                raise RuntimeError("simulated sites did not all connect")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # the initial PRICES / PUMPS / TRANSACTIONS / RECONCILE rounds
        rss.append(_rss_kib(pid))
        if before_fuelling is not None:  # drivers bind their sessions and open the live WebSockets
            await asyncio.to_thread(before_fuelling)
        start = time.monotonic()
        # drivers do not all lift their nozzle in the same second: each pump starts at a seeded random
        # moment of the first RAMP_S seconds (all of them are fuelling at once well before the first
        # ones finish), so their once-a-second PROGRESS lines spread as real ones do
        starts = sorted((rng.uniform(0, RAMP_S), i, p) for i in range(len(sims)) for p in range(1, pumps + 1))
        for at, i, p in starts:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            s, nozzle = sims[i], 1 + (p % len(GRADES))
            await s.operate(lambda s=s, p=p, n=nozzle: s.site.lift(p, n) + s.site.fuel(p, litres * 1000))
        # each driver hangs up a seeded 0.5-2 s after their own pump stops (not all at one instant)
        hang_at: dict[tuple[int, int], float] = {}
        while len(hang_at) < len(starts) or any(t > 0 for t in hang_at.values()):
            now = time.monotonic()
            for i, s in enumerate(sims):
                for p, fp in s.site.points.items():
                    f = fp.fuelling
                    if (i, p) not in hang_at and f is not None and f.to_dispense_ml == 0:
                        hang_at[(i, p)] = now + rng.uniform(0.5, 2.0)
                    if 0 < hang_at.get((i, p), 0) <= now:
                        hang_at[(i, p)] = 0
                        with contextlib.suppress(SiteError):
                            await s.operate(lambda s=s, p=p: s.site.hang_up(p, datetime.now(UTC)))
            rss.append(_rss_kib(pid))
            await asyncio.sleep(0.1)
        fuelling_s = time.monotonic() - start
        await asyncio.sleep(1.5)
        return {"fuelling_s": fuelling_s}
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def forecourt(ctx: Ctx) -> None:
    from forecourt._simulator import SimulatedSite
    from forecourt._site import Site

    sites_n, pumps = int(ctx.n(50, 10)), 4
    litres = int(ctx.n(15, 5))
    sec = ctx.report.section(
        f"10. Station link: {sites_n * pumps} pumps fuelling at once through one link server"
    )
    sec.text += [
        f"{sites_n} simulated sites x {pumps} pumps (in the bench process, one asyncio loop) connect over TCP to one",
        "`python -m forecourt link` process; the pumps start within the first "
        f"{RAMP_S:.0f} s (seeded) and each fuels {litres} L at 30 L/min,",
        "reporting PROGRESS every second; drivers hang up 0.5-2 s after their pump stops. Latency: from the site having",
        "written the PROGRESS line to a client LISTENing on channel `forecourt` (own thread, own connection)",
        "receiving its NOTIFY; in between the link server logged the raw line, checked the sequence number,",
        "stored the progress row and notified, in one transaction. Memory: the link server's RSS before the",
        "sites connect and with them connected (per site = the difference / sites).",
    ]
    with bench_database() as url:
        creds = _seed(url, sites_n, pumps)
        proc, port = _start_link(url)
        api, api_port = _start_api(url)
        drivers = [
            (station, p, 1 + (p % len(GRADES))) for station, _, _ in creds for p in range(1, pumps + 1)
        ]
        live = _LiveClients(url, api_port, drivers)
        try:
            time.sleep(1.0)
            rss = [_rss_kib(proc.pid)]
            listener = _Listener(Settings(database_url=url).service_url)
            listener.start()
            listener.ready.wait(10)
            sent: dict[tuple[int, int, str, int], float] = {}
            wall: dict[tuple[int, int, str, int], float] = {}  # the same instant on the wall clock
            sims = []
            for station, key, secret in creds:
                site = Site(
                    {
                        p: {n: (g, PRICES[g]) for n, g in enumerate(GRADES, start=1)}
                        for p in range(1, pumps + 1)
                    },
                    tx_prefix=f"B{station}-{uuid.uuid4().hex[:4]}-",
                    flow_ml_per_s=500,
                )

                def record(event: Any, at: float, station: int = station) -> None:
                    sent[(station, event.pump, event.site_tx_id, event.seq)] = at
                    wall[(station, event.pump, event.site_tx_id, event.seq)] = time.time() - (
                        time.perf_counter() - at
                    )

                sims.append(
                    SimulatedSite(
                        station,
                        site,
                        link=f"127.0.0.1:{port}",
                        key=key,
                        secret=secret,
                        on_progress_sent=record,
                    )
                )
            info = asyncio.run(
                _drive(
                    sims, pumps, litres, rss, proc.pid, random.Random(ctx.seed), before_fuelling=live.bind_all
                )
            )
            listener.stop.set()
            listener.join(5)
            live.stop.set()
            live.join(10)
            with psycopg.connect(url) as conn:
                stored = conn.execute("SELECT count(*) FROM pump_progress").fetchone()[0]  # type: ignore[index]
                sales = conn.execute(
                    "SELECT count(*), count(*) FILTER (WHERE review_reason IS NULL) FROM fcc_sales"
                ).fetchone()
                events = conn.execute("SELECT count(*) FROM forecourt_events").fetchone()[0]  # type: ignore[index]
                stored_at = {
                    (r[0], r[1], r[2], r[3]): r[4]
                    for r in conn.execute(
                        "SELECT station_id, pump_no, site_tx_id, seq, extract(epoch FROM received_at)::float8"
                        " FROM pump_progress"
                    )
                }
        finally:
            live.stop.set()
            for pr in (proc, api):
                pr.terminate()
                try:
                    pr.wait(10)
                except subprocess.TimeoutExpired:
                    pr.kill()
    lat = [listener.received[k] - t for k, t in sent.items() if k in listener.received]
    lost = sum(1 for k in sent if k not in listener.received)
    pct = percentiles(lat)
    # where the time goes: site -> row stored (wall clocks of one machine), row stored -> NOTIFY received
    to_row = [stored_at[k] - wall[k] for k in sent if k in stored_at]
    to_listener = [
        listener.received[k] - sent[k] - (stored_at[k] - wall[k])
        for k in sent
        if k in stored_at and k in listener.received
    ]
    to_row_pct, to_listener_pct = percentiles(to_row), percentiles(to_listener)
    idle_kib, connected_kib, peak_kib = rss[0], rss[1], max(rss)
    per_site_kib = (connected_kib - idle_kib) / sites_n
    per_site_peak_kib = (peak_kib - idle_kib) / sites_n
    sec.tables.append(
        (
            ["measure", "value"],
            [
                ["pumps fuelling at once", sites_n * pumps],
                ["PROGRESS lines sent", len(sent)],
                ["progress NOTIFYs received", len(lat)],
                ["sent, not received", lost],
                ["progress rows stored", stored],
                ["raw lines logged", events],
                ["sales stored / with agreeing figures", f"{sales[0]} / {sales[1]}" if sales else "-"],
                ["fuelling time s", round(info["fuelling_s"], 1)],
                ["latency p50 ms", round(pct["p50_ms"], 1)],
                ["latency p90 ms", round(pct["p90_ms"], 1)],
                ["latency p99 ms", round(pct["p99_ms"], 1)],
                ["latency max ms", round(float(np.max(lat)) * 1000, 1) if lat else "-"],
                [
                    "of which site -> row stored p50 / p99 ms",
                    f"{to_row_pct['p50_ms']:.1f} / {to_row_pct['p99_ms']:.1f}",
                ],
                [
                    "of which row stored -> NOTIFY received p50 / p99 ms",
                    f"{to_listener_pct['p50_ms']:.1f} / {to_listener_pct['p99_ms']:.1f}",
                ],
                ["machine load average (1 min) at the end", round(os.getloadavg()[0], 1)],
                ["link server RSS idle MiB", round(idle_kib / 1024, 1)],
                ["link server RSS with sites MiB", round(connected_kib / 1024, 1)],
                ["link server RSS peak while fuelling MiB", round(peak_kib / 1024, 1)],
                ["memory per site KiB (connected)", round(per_site_kib, 1)],
                ["memory per site KiB (peak while fuelling)", round(per_site_peak_kib, 1)],
            ],
        )
    )
    # the WebSocket leg: the same PROGRESS lines, as progress events on the drivers' live connections
    sent_by_seq = {(k[0], k[1], k[3]): t for k, t in sent.items()}
    ws_lat = [live.received[k] - t for k, t in sent_by_seq.items() if k in live.received]
    ws_lost = sum(1 for k in sent_by_seq if k not in live.received)
    ws_pct = percentiles(ws_lat)
    sec.text += [
        "",
        "The WebSocket leg: before fuelling, each pump's driver binds a fuelling session (POST /v1/fuelling/sessions,",
        "one API worker) and opens its live WebSocket (a client thread of its own, one asyncio loop for all",
        f"{len(drivers)}); latency from the site having written a PROGRESS line to the driver's client receiving the",
        "session's progress event (link server: row + session event + NOTIFY fuelling in one transaction; API worker:",
        "its one LISTEN connection wakes the client, which reads the stored event and sends it).",
    ]
    sec.tables.append(
        (
            ["WebSocket leg", "value"],
            [
                [
                    "sessions bound / live WebSockets",
                    f"{len(live.sessions)} / {len(live.sessions) - len(live.errors)}",
                ],
                ["progress events received", len(ws_lat)],
                ["sent, not received", ws_lost],
                ["latency p50 ms", round(ws_pct["p50_ms"], 1)],
                ["latency p90 ms", round(ws_pct["p90_ms"], 1)],
                ["latency p99 ms", round(ws_pct["p99_ms"], 1)],
                ["latency max ms", round(float(np.max(ws_lat)) * 1000, 1) if ws_lat else "-"],
                ["client errors", "; ".join(live.errors[:3]) or "none"],
            ],
        )
    )
    ctx.report.bar(
        "fuelling live WebSocket progress latency p99",
        bool(ws_lat) and ws_pct["p99_ms"] <= BAR_P99_MS and ws_lost == 0 and not live.errors,
        f"{ws_pct['p99_ms']:.0f} ms (bar {BAR_P99_MS:.0f} ms) over {len(ws_lat)} progress events to "
        f"{len(live.sessions)} live clients, {ws_lost} lost",
    )
    print(
        f"  forecourt websocket: p50 {ws_pct['p50_ms']:.1f} ms p99 {ws_pct['p99_ms']:.1f} ms, {ws_lost} lost",
        flush=True,
    )
    sec.data.update(
        ws_latency=ws_pct,
        ws_lost=ws_lost,
        latency=pct,
        lost=lost,
        sent=len(sent),
        per_site_kib=per_site_kib,
        per_site_peak_kib=per_site_peak_kib,
    )
    passed = bool(lat) and pct["p99_ms"] <= BAR_P99_MS and lost == 0
    ctx.report.bar(
        "station link progress latency p99",
        passed,
        f"{pct['p99_ms']:.0f} ms (bar {BAR_P99_MS:.0f} ms) over {len(lat)} PROGRESS lines from {sites_n * pumps} pumps, "
        f"{lost} lost; link server {per_site_kib:.0f} KiB per site",
    )
    print(
        f"  forecourt: to row p50 {to_row_pct['p50_ms']:.1f} p99 {to_row_pct['p99_ms']:.1f}; to listener p50"
        f" {to_listener_pct['p50_ms']:.1f} p99 {to_listener_pct['p99_ms']:.1f}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(
        f"  forecourt: p50 {pct['p50_ms']:.1f} ms p99 {pct['p99_ms']:.1f} ms, {len(lat)} received, {lost} lost, "
        f"{per_site_kib:.0f} KiB/site",
        flush=True,
    )
