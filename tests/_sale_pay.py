"""The whole fill-up payment stack for tests, every part a real process: the fake WeChat Pay gateway, the
station link server, a simulated site, the API and the payments worker, on one throwaway database."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api import _tokens
from config import PROJECT_ROOT
from payments._keys import DevKeys, ensure_dev_keys
from store._users import User
from tests._forecourt import LinkProcess, SimProcess, seed_station, site_key
from tests._payments import (
    ApiProcess,
    FakeGatewayProcess,
    WorkerProcess,
    payment_env,
    service_env,
    wait_for,
)
from tests._servers import TEST_SECRET_KEY, free_port

# The simulated nozzles pour 100 L/s: these tests wait for each fill-up to end (fuel(..., wait=true)) and
# look only at the sale, so the pour's duration is time spent for nothing.
FLOW_L_MIN = 6000.0
SALE_FIELDS = "id, site_tx_id, pump_no, state, cleared_by, locked_by, amount_fen, review_reason"


class PayStack:
    def __init__(self, db_url: str, keys_dir: Path) -> None:
        self.db_url = db_url
        self.keys: DevKeys = ensure_dev_keys(keys_dir)
        self.gateway = FakeGatewayProcess(self.keys.folder, time_factor=0.02)
        self.link = LinkProcess(db_url)
        self.port = free_port()
        self.notify_url = f"http://127.0.0.1:{self.port}/v1/payments/wechat/notify"
        self.env = service_env(
            db_url,
            {
                **payment_env(self.keys, self.gateway, self.notify_url),
                "FUEL_PAYMENTS_HEARTBEAT_S": "0.5",
                "FUEL_PAYMENTS_STALLED_AFTER_S": "2",
                "FUEL_PAYMENTS_SWEEP_AFTER_S": "0.5",
                "FUEL_PAYMENTS_SITE_TIMEOUT_S": "5",
                "FUEL_PAYMENTS_IDEMPOTENCY_LOCK_S": "2",
            },
        )
        self.api: ApiProcess | None = ApiProcess(self.env, port=self.port)
        self.workers: list[WorkerProcess] = [WorkerProcess(self.env)]
        self.sites: list[SimProcess] = []

    # ---- processes -------------------------------------------------------------------------------------

    def restart_api(self) -> None:
        if self.api is not None:
            self.api.close()
        self.api = ApiProcess(self.env, port=self.port)

    def add_worker(self) -> WorkerProcess:
        w = WorkerProcess(self.env)
        self.workers.append(w)
        return w

    def site(self, pumps: int = 2, *, flow_l_min: float = FLOW_L_MIN) -> SimProcess:
        station = seed_station(self.db_url, pumps=pumps)
        key, secret = site_key(self.db_url, station)
        sim = SimProcess(
            self.db_url, station, self.link.address, key, secret, pumps=pumps, flow_l_min=flow_l_min
        )
        sim.wait_online()
        wait_for(
            lambda: self.sql("SELECT 1 FROM forecourt_links WHERE station_id = %s", station), what="the link"
        )
        self.sites.append(sim)
        return sim

    def __enter__(self) -> PayStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for s in self.sites:
            s.close()
        for w in self.workers:
            w.close()
        if self.api is not None:
            self.api.close()
        self.link.close()
        self.gateway.close()

    # ---- data ------------------------------------------------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def user(self, openid: str | None = None) -> tuple[User, str]:
        """A user (as after a WeChat login) and its session token."""
        openid = openid or f"o-{uuid.uuid4().hex[:20]}"
        row = self.sql("INSERT INTO users (openid) VALUES (%s) RETURNING id", openid)[0]
        user = User(id=int(row[0]), openid=openid)
        token, _ = _tokens.issue(user, secret_key=TEST_SECRET_KEY, ttl_s=3600)
        return user, token

    def fuel(self, sim: SimProcess, pump: int, litres: str, *, nozzle: int = 1) -> int:
        """A fill-up at the simulated site; the id of its controller sale once stored."""
        before = {r[0] for r in self.sql("SELECT id FROM fcc_sales WHERE station_id = %s", sim.station)}
        sim.post(f"/pumps/{pump}/lift", nozzle=nozzle)
        sim.post(f"/pumps/{pump}/fuel", litres=litres, wait="true")
        sim.post(f"/pumps/{pump}/hangup")

        def new() -> int | None:
            ids = {r[0] for r in self.sql("SELECT id FROM fcc_sales WHERE station_id = %s", sim.station)}
            fresh = sorted(ids - before)
            return fresh[0] if fresh else None

        return int(wait_for(new, what="the sale"))

    def sale(self, sale_id: int) -> dict[str, Any]:
        row = self.sql(f"SELECT {SALE_FIELDS} FROM fcc_sales WHERE id = %s", sale_id)[0]
        return dict(zip([f.strip() for f in SALE_FIELDS.split(",")], row, strict=True))

    def pay(self, sale_id: int, token: str, key: str | None = None, **kw: Any) -> httpx.Response:
        assert self.api is not None
        headers = {"Authorization": f"Bearer {token}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.api.base}/v1/sales/{sale_id}/pay", headers=headers, timeout=30, **kw)

    def wx_pay(self, body: dict[str, Any]) -> tuple[int, Any]:
        """The user confirms wx.requestPayment with the parameters the API answered."""
        result: tuple[int, Any] = self.gateway.control("pay", **body["request_payment"])
        return result

    def payment(self, out_trade_no: str) -> dict[str, Any]:
        row = self.sql(
            "SELECT p.state, p.amount_fen, p.paid_fen, p.refunded_fen, sp.site_state, sp.sale_id"
            " FROM payments p JOIN sale_payments sp USING (out_trade_no) WHERE out_trade_no = %s",
            out_trade_no,
        )[0]
        return dict(
            zip(
                ("state", "amount_fen", "paid_fen", "refunded_fen", "site_state", "sale_id"), row, strict=True
            )
        )

    def commands(self, station: int, verb: str) -> list[tuple[Any, ...]]:
        return self.sql(
            "SELECT line, reply_ok, reply_code FROM forecourt_commands WHERE station_id = %s AND line LIKE %s"
            " ORDER BY id",
            station,
            f"{verb} %",
        )

    def ordered_then_taken_by_the_cashier(self, sim: SimProcess, pump: int, litres: str) -> dict[str, Any]:
        """A sale locked and ordered by a driver, then the site loses our lock (a controller restart) and
        the cashier takes the sale; the pay answer (the driver has not paid yet)."""
        from config import Settings
        from forecourt import send_command
        from payments._sale import fsc_tx_id_for

        sale_id = self.fuel(sim, pump, litres)
        user, token = self.user()
        body: dict[str, Any] = self.pay(sale_id, token, str(uuid.uuid4())).json()
        tx = self.sale(sale_id)["site_tx_id"]
        url = Settings(database_url=self.db_url).service_url
        unlock = [str(pump), tx, fsc_tx_id_for(sale_id, user.id)]
        assert send_command(url, sim.station, "UNLOCKTX", unlock, timeout_s=5).ok
        sim.post(f"/pumps/{pump}/cashier", site_tx_id=tx)
        return body

    def reconcile(self, day: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """`python -m ingest reconcile --date DAY` with the service's settings."""
        return subprocess.run(
            [sys.executable, "-m", "ingest", "reconcile", "--date", day, *extra],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def close_unpaid(self, out_trade_no: str) -> None:
        """Age the order past its expiry and run the sweep: it closes the order unpaid and the station
        releases (UNLOCKTX) its sale."""
        self.sql(
            "UPDATE payments SET expires_at = now() - interval '1 second', created_at = now() - interval '16 minutes'"
            " WHERE out_trade_no = %s RETURNING 1",
            out_trade_no,
        )
        self.sweep()
        wait_for(
            lambda: self.payment(out_trade_no)["site_state"] == "unlocked", timeout_s=30, what="UNLOCKTX"
        )

    def sweep(self) -> None:
        """Queue a sweep now; when the periodic one is queued already (its queueing lock), that one runs."""
        from procrastinate.exceptions import AlreadyEnqueued

        from payments import _queue

        try:
            with psycopg.connect(self.db_url) as conn, conn.transaction():
                _queue.defer(conn, _queue.SWEEP)
        except AlreadyEnqueued:
            pass
