"""Section 11: fill-ups paid end to end: simulated sites, the real API, the fake WeChat Pay gateway and a
payments worker process.

Every pump of the simulated sites fuels once; then every driver pays at the same time (the pay request:
LOCKTX at the site and the JSAPI order; then the fake gateway confirms as the driver and notifies). What is
measured, on the database's clock: from the notification stored (payment_notifications.received_at) to the
sale cleared at its site (the CLEAR job's effect row, payment_effects 'cleared'); in that time the
worker takes the CLEAR job from the queue and sends CLEAR through the station link, whose round trip is the
baseline measured in the same run (forecourt_commands: created -> replied). And the queue's throughput:
the payment jobs that succeeded over the time from the first notification to the last job's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from benchmarks._common import Ctx, bench_database, tmp_dir
from benchmarks._forecourt import BENCH_SECRET, GRADES, PRICES, _seed, _start_link
from benchmarks._report import percentiles
from config import PROJECT_ROOT

BAR_P99_MS = 2000.0  # notification stored -> sale cleared at the site
LITRES = 5


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


class _Sites(threading.Thread):
    """The simulated sites, connected to the link server for the whole run, on one asyncio loop."""

    def __init__(self, creds: list[tuple[int, str, str]], link: str, pumps: int) -> None:
        super().__init__(daemon=True)
        from forecourt._simulator import SimulatedSite
        from forecourt._site import Site

        self.loop = asyncio.new_event_loop()
        self.sims = [
            SimulatedSite(
                station,
                Site(
                    {
                        p: {n: (g, PRICES[g]) for n, g in enumerate(GRADES, start=1)}
                        for p in range(1, pumps + 1)
                    },
                    tx_prefix=f"P{station}-{uuid.uuid4().hex[:4]}-",
                    flow_ml_per_s=5000,
                ),
                link=link,
                key=key,
                secret=secret,
            )
            for station, key, secret in creds
        ]
        self.pumps = pumps

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        tasks = [self.loop.create_task(s.run()) for s in self.sims]
        self.loop.run_forever()
        left = [*tasks, *asyncio.all_tasks(self.loop)]  # the sites' own tasks too
        for t in left:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))

    def call(self, coro: Any, timeout_s: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _fuel_all(self) -> None:
        from forecourt._site import SiteError

        t0 = time.monotonic()
        while not all(s.connected.is_set() for s in self.sims):
            if time.monotonic() - t0 > 60:
                raise RuntimeError("simulated sites did not all connect")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        for s in self.sims:
            for p in range(1, self.pumps + 1):
                n = 1 + (p % len(GRADES))
                await s.operate(lambda s=s, p=p, n=n: s.site.lift(p, n) + s.site.fuel(p, LITRES * 1000))
        waiting = {(i, p) for i in range(len(self.sims)) for p in range(1, self.pumps + 1)}
        while waiting:
            for i, p in list(waiting):
                s = self.sims[i]
                f = s.site.points[p].fuelling
                if f is not None and f.to_dispense_ml == 0:
                    with contextlib.suppress(SiteError):
                        await s.operate(lambda s=s, p=p: s.site.hang_up(p, datetime.now(UTC)))
                    waiting.discard((i, p))
            await asyncio.sleep(0.1)

    def fuel_all(self) -> None:
        self.call(self._fuel_all(), timeout_s=180)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(10)


def _services(url: str, keys_dir: Path) -> tuple[list[subprocess.Popen[bytes]], str, str, dict[str, str]]:
    from payments._keys import PLATFORM_PUBLIC, ensure_dev_keys

    keys = ensure_dev_keys(keys_dir)
    gw_port, api_port = _port(), _port()
    gateway = f"http://127.0.0.1:{gw_port}"
    api = f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FUEL_ENV": "test",
        "FUEL_SECRET_KEY": BENCH_SECRET,
        "FUEL_ADMIN_API_KEY": BENCH_SECRET[::-1],
        "FUEL_EXTRACT": "/nonexistent/no-roads.osm.pbf",
        "FUEL_RATE_LIMIT_PER_MINUTE": "1000000",
        "FUEL_RATE_LIMIT_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "FUEL_WECHATPAY_BASE_URL": gateway,
        "FUEL_WECHATPAY_MCHID": keys.mchid,
        "FUEL_WECHATPAY_APPID": keys.appid,
        "FUEL_WECHATPAY_APIV3_KEY": keys.apiv3_key,
        "FUEL_WECHATPAY_MERCHANT_KEY_FILE": str(keys.folder / "merchant_private.pem"),
        "FUEL_WECHATPAY_MERCHANT_SERIAL_NO": keys.merchant_serial_no,
        "FUEL_WECHATPAY_PUBLIC_KEY_FILE": str(keys.folder / PLATFORM_PUBLIC),
        "FUEL_WECHATPAY_PUBLIC_KEY_ID": keys.public_key_id,
        "FUEL_WECHATPAY_NOTIFY_URL": f"{api}/v1/payments/wechat/notify",
        "FUEL_PAYMENTS_SITE_TIMEOUT_S": "10",
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": PROJECT_ROOT, "env": env}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "payments",
                "fake-gateway",
                "--port",
                str(gw_port),
                "--keys-dir",
                str(keys_dir),
                "--time-factor",
                "0.02",
            ],
            **quiet,  # type: ignore[call-overload]
        )
    ]
    _wait_up(gateway + "/health", procs[0], "the fake gateway")
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.main:app",
                "--port",
                str(api_port),
                "--log-level",
                "warning",
                "--no-proxy-headers",
            ],
            **quiet,  # type: ignore[call-overload]
        )
    )
    _wait_up(api + "/health", procs[1], "the API")
    procs.append(subprocess.Popen([sys.executable, "-m", "payments", "worker"], **quiet))  # type: ignore[call-overload]
    return procs, gateway, api, env


def _pay(api: str, gateway: str, sale_id: int, token: str) -> str:
    r = httpx.post(
        f"{api}/v1/sales/{sale_id}/pay",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    r.raise_for_status()
    body = r.json()
    c = httpx.post(f"{gateway}/fake/pay", json=body["request_payment"], timeout=60)
    c.raise_for_status()
    return str(body["out_trade_no"])


def payments(ctx: Ctx) -> None:
    from api import _tokens
    from store._users import User

    sites_n, pumps = int(ctx.n(25, 5)), 4
    fills = sites_n * pumps
    sec = ctx.report.section(f"11. Payments: {fills} fill-ups paid at once, end to end")
    sec.text += [
        f"{sites_n} simulated sites x {pumps} pumps (one asyncio loop, connected to one `python -m forecourt link`)",
        f"each fuel {LITRES} L; then {fills} drivers pay at once (20 client threads): `POST /v1/sales/{{id}}/pay`",
        "(LOCKTX through the link, the JSAPI order at the fake WeChat Pay gateway), then the gateway confirms as",
        "the driver and sends the signed, encrypted notification to the API (one uvicorn worker). One",
        "`python -m payments worker` process (procrastinate) runs the follow-up jobs: CLEAR at the site and",
        "the order's confirmation query. Latency on the database clock: notification stored -> sale cleared",
        "(the CLEAR effect row). Baseline of the same run: the CLEAR command's own round trip through the",
        "station link (forecourt_commands created -> replied); the ratio says what the queue adds to it.",
    ]
    with bench_database() as url:
        creds = _seed(url, sites_n, pumps)
        link, link_port = _start_link(url)
        sites = _Sites(creds, f"127.0.0.1:{link_port}", pumps)
        sites.start()
        procs: list[subprocess.Popen[bytes]] = [link]
        try:
            extra, gateway, api, _ = _services(url, tmp_dir() / "wechatpay-keys")
            procs += extra
            sites.fuel_all()
            deadline = time.monotonic() + 60
            while True:
                with psycopg.connect(url) as conn:
                    sales = [r[0] for r in conn.execute("SELECT id FROM fcc_sales ORDER BY id").fetchall()]
                if len(sales) >= fills or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            tokens = []
            with psycopg.connect(url) as conn:
                for i in range(len(sales)):
                    (uid,) = conn.execute(
                        "INSERT INTO users (openid) VALUES (%s) RETURNING id",
                        (f"o-bench-{i}-{uuid.uuid4().hex[:8]}",),
                    ).fetchone()  # type: ignore[misc]
                    openid = conn.execute("SELECT openid FROM users WHERE id = %s", (uid,)).fetchone()[0]  # type: ignore[index]
                    tokens.append(
                        _tokens.issue(User(int(uid), openid), secret_key=BENCH_SECRET, ttl_s=3600)[0]
                    )
            t0 = time.monotonic()
            errors: list[str] = []
            with ThreadPoolExecutor(20) as pool:
                futures = [pool.submit(_pay, api, gateway, s, t) for s, t in zip(sales, tokens, strict=True)]
                paid: list[str] = []
                for f in futures:
                    try:
                        paid.append(f.result())
                    except Exception as exc:  # reported in the section
                        errors.append(f"{type(exc).__name__}: {exc}"[:200])
            pay_s = time.monotonic() - t0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with psycopg.connect(url) as conn:
                    done = conn.execute(
                        "SELECT count(*) FROM payment_effects WHERE effect = 'cleared'"
                    ).fetchone()[0]  # type: ignore[index]
                    open_jobs = conn.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
                        " AND task_name <> 'payments.sweep_open_orders'"
                    ).fetchone()[0]  # type: ignore[index]
                if done >= len(paid) and open_jobs == 0:
                    break
                time.sleep(0.2)
            with psycopg.connect(url) as conn:
                lat = [
                    float(r[0])
                    for r in conn.execute(
                        "SELECT extract(epoch FROM e.done_at - n.received_at) FROM payment_effects e"
                        " JOIN payment_notifications n ON n.out_trade_no = e.out_trade_no"
                        " AND n.event_type = 'TRANSACTION.SUCCESS' WHERE e.effect = 'cleared'"
                    )
                ]
                rtt = [
                    float(r[0])
                    for r in conn.execute(
                        "SELECT extract(epoch FROM replied_at - created_at) FROM forecourt_commands"
                        " WHERE line LIKE 'CLEAR %%' AND replied_at IS NOT NULL"
                    )
                ]
                jobs = conn.execute(
                    "SELECT count(*), extract(epoch FROM max(ev.at) - (SELECT min(received_at) FROM"
                    " payment_notifications)) FROM procrastinate_jobs j JOIN procrastinate_events ev"
                    " ON ev.job_id = j.id AND ev.type = 'succeeded'"
                    " WHERE j.task_name <> 'payments.sweep_open_orders'"
                ).fetchone()
                clears = conn.execute(
                    "SELECT count(*) FROM forecourt_commands WHERE line LIKE 'CLEAR %%'"
                ).fetchone()[0]  # type: ignore[index]
                payments_n = conn.execute("SELECT count(*) FROM payments WHERE state = 'paid'").fetchone()[0]  # type: ignore[index]
        finally:
            sites.stop()
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    pct, base = percentiles(lat), percentiles(rtt)
    n_jobs, span = (int(jobs[0]), float(jobs[1] or 0)) if jobs else (0, 0.0)
    throughput = n_jobs / span if span > 0 else float("nan")
    ratio = pct["p50_ms"] / base["p50_ms"] if base["p50_ms"] > 0 else float("nan")
    sec.tables.append(
        (
            ["measure", "value"],
            [
                ["fill-ups / sales stored", f"{fills} / {len(sales)}"],
                [
                    "paid (payments) / cleared (effects) / CLEAR commands",
                    f"{payments_n} / {len(lat)} / {clears}",
                ],
                ["pay requests failed", len(errors)],
                ["all pay requests and confirmations s", round(pay_s, 1)],
                ["notification -> cleared p50 ms", round(pct["p50_ms"], 1)],
                ["notification -> cleared p90 ms", round(pct["p90_ms"], 1)],
                ["notification -> cleared p99 ms", round(pct["p99_ms"], 1)],
                ["notification -> cleared max ms", round(float(np.max(lat)) * 1000, 1) if lat else "-"],
                [
                    "baseline: CLEAR round trip through the link p50 / p99 ms",
                    f"{base['p50_ms']:.1f} / {base['p99_ms']:.1f}",
                ],
                ["ratio: notification -> cleared p50 / CLEAR round trip p50", round(ratio, 2)],
                ["queue: payment jobs succeeded", n_jobs],
                ["queue: throughput jobs/s (first notification -> last job done)", round(throughput, 1)],
                ["pay errors", "; ".join(errors[:3]) or "none"],
            ],
        )
    )
    if lat:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(np.asarray(lat) * 1000, bins=30, color="#07c160", alpha=0.8, label="notification -> cleared")
        if rtt:
            ax.hist(
                np.asarray(rtt) * 1000, bins=30, color="#555", alpha=0.6, label="CLEAR round trip (baseline)"
            )
        ax.axvline(pct["p99_ms"], color="#e03b35", linestyle="--", label=f"p99 {pct['p99_ms']:.0f} ms")
        ax.set_xlabel("ms")
        ax.set_ylabel("payments")
        ax.set_title(f"{len(lat)} fill-ups paid at once")
        ax.legend()
        ctx.report.save_plot(fig, "payments_clear_latency", sec)
    sec.data.update(
        latency=pct, baseline=base, ratio=ratio, jobs=n_jobs, jobs_per_s=throughput, errors=len(errors)
    )
    passed = bool(lat) and len(lat) == fills and pct["p99_ms"] <= BAR_P99_MS and not errors
    ctx.report.bar(
        "payments: notification -> sale cleared p99",
        passed,
        f"{pct['p99_ms']:.0f} ms (bar {BAR_P99_MS:.0f} ms) over {len(lat)} of {fills} fill-ups; "
        f"{throughput:.1f} jobs/s; {len(errors)} pay errors",
    )
    print(
        f"  payments: p50 {pct['p50_ms']:.1f} ms p99 {pct['p99_ms']:.1f} ms, baseline CLEAR p50"
        f" {base['p50_ms']:.1f} ms, {throughput:.1f} jobs/s",
        flush=True,
    )
