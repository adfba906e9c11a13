"""The station console over HTTP against a real API, link server and simulated site: the prices say whether
the official ceilings are stale exactly as GET /v1/manage/ceilings does, and the push channel
(/v1/console/stations/{id}/live) sends pump status changes and new fill-ups as they happen, to the station's
own staff only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from store._ceilings import Ceiling, upsert_ceilings
from tests._console import console, create_staff, fuel
from tests._forecourt import seed_station
from tests._fuelling import Stack, read_messages
from tests._servers import TEST_ADMIN_KEY

pytestmark = pytest.mark.slow  # real processes
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    s = Stack(module_db, pumps=2, flow_l_min=600.0)
    try:
        yield s
    finally:
        s.close()


def notice(url: str, day: Any, price: str = "8.20") -> None:
    """The 92# ceiling of a notice dated `day` (in force from its 24:00)."""
    at = datetime.combine(day + timedelta(days=1), time(0), TZ)
    with psycopg.connect(url) as conn:
        upsert_ceilings(conn, [Ceiling("yunnan-4", "92", Decimal(price), at, day)], actor="test")


def live(stack: Stack, client: httpx.Client | None, station: int | None = None) -> ClientConnection:
    cookie = {} if client is None else {"Cookie": f"fuel_console={client.cookies['fuel_console']}"}
    url = f"ws://127.0.0.1:{stack.api.port}/v1/console/stations/{station or stack.station}/live"
    return connect(url, open_timeout=10, close_timeout=5, additional_headers=cookie)


def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=15)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_console_prices_say_when_the_ceilings_are_stale(stack: Stack) -> None:
    base = stack.api.base
    m = console(base, create_staff(base, stack.station, "manager"))
    today = datetime.now(TZ).date()
    notice(stack.url, today - timedelta(days=40))  # two or three adjustment windows ago
    got = m.get("/v1/console/prices")
    assert got.status_code == 200, got.text
    status = got.json()["ceiling_status"]
    manage = httpx.get(f"{base}/v1/manage/ceilings", headers={"X-API-Key": TEST_ADMIN_KEY}, timeout=30).json()
    assert status == {k: manage[k] for k in status}  # the same computation as the CLI's and the manage API's
    assert status["stale"] is True and status["newest_notice"] == (today - timedelta(days=40)).isoformat()
    assert status["last_adjustment_window"] == status["missed_windows"][-1] > status["newest_notice"]
    assert "stale" in status["warning"]

    notice(stack.url, datetime.fromisoformat(status["last_adjustment_window"]).date(), "8.10")
    current = m.get("/v1/console/prices").json()["ceiling_status"]
    assert current["stale"] is False and current["warning"] is None and current["missed_windows"] == []
    assert current["newest_notice"] == current["last_adjustment_window"] == status["last_adjustment_window"]


def test_the_push_channel_sends_fill_ups_and_pump_status_as_they_happen(stack: Stack) -> None:
    base = stack.api.base
    attendant = console(base, create_staff(base, stack.station, "attendant"))
    with live(stack, attendant) as ws:
        first = [json.loads(ws.recv(timeout=15)) for _ in range(2)]
        assert {m["type"] for m in first} == {"pumps", "fill_ups"}
        pumps = next(m["pumps"] for m in first if m["type"] == "pumps")
        assert pumps["station_id"] == stack.station and {p["pump_no"] for p in pumps["pumps"]} == {1, 2}
        known = {f["id"] for m in first if m["type"] == "fill_ups" for f in m["fill_ups"]["fill_ups"]}

        sale = fuel(stack, 1, "12", nozzle=1, cashier=False)
        seen = read_messages(
            ws,
            until=lambda m: m["type"] == "fill_ups" and sale in {f["id"] for f in m["fill_ups"]["fill_ups"]},
        )
        row = next(f for f in seen[-1]["fill_ups"]["fill_ups"] if f["id"] == sale)
        assert sale not in known and row["pump_no"] == 1 and row["volume_ml"] == 12_000
        assert row["amount_fen"] == stack.sql("SELECT amount_fen FROM fcc_sales WHERE id = %s", sale)[0][0]
        assert any(m["type"] == "pumps" for m in seen)  # the pump went busy and back on the way

        stack.sim.post("/pumps/2/lift", nozzle=1)  # a driver lifts a nozzle: the status is pushed
        busy = read_messages(
            ws,
            until=lambda m: (
                m["type"] == "pumps"
                and next(p for p in m["pumps"]["pumps"] if p["pump_no"] == 2)["status"] != "free"
            ),
            timeout=10,
        )
        assert busy
        stack.sim.post("/pumps/2/hangup")
        read_messages(
            ws,
            until=lambda m: (
                m["type"] == "pumps"
                and next(p for p in m["pumps"]["pumps"] if p["pump_no"] == 2)["status"] == "free"
            ),
            timeout=10,
        )
        assert attendant.post("/v1/console/logout").status_code == 204
        assert close_code(ws) == 4401  # the session ended: so does the channel


def test_the_push_channel_is_the_own_stations_staff_only(stack: Stack) -> None:
    base = stack.api.base
    other_station = seed_station(stack.url, pumps=1)
    stranger = console(base, create_staff(base, other_station, "manager"))
    with live(stack, stranger) as ws:
        assert close_code(ws) == 4403
    with live(stack, None) as ws:
        assert close_code(ws) == 4401
    with live(stack, stranger, other_station) as ws:  # its own station: allowed
        assert json.loads(ws.recv(timeout=15))["type"] in ("pumps", "fill_ups")
