"""A real simulator process fuelling through a real link server process into a real database: sales,
progress, commands to the site (LOCKTX, CLEAR, ...), the cashier, link drops and a link-server restart
mid-fuelling (nothing lost after RECONCILE), site keys from the ingest CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from config import PROJECT_ROOT, Settings
from forecourt import CommandReply, StationOffline, send_command
from geo import InvalidInput
from tests._forecourt import LinkProcess, SimProcess, seed_station, site_key
from tests._servers import TEST_SECRET_KEY, free_port

pytestmark = pytest.mark.slow  # real processes: a link server, simulated sites

PAYER_A = "e2f74ef5-f427-4ae6-bdd3-70a96709992f"
PAYER_B = "70644955-ef32-4d33-a88b-67b500a7c00d"
SALE_SQL = (
    "SELECT site_tx_id, pump_no, nozzle_no, grade, volume_ml, amount_fen, unit_price_fen, totaliser_start_ml,"
    " totaliser_end_ml, state, offline, cleared_by, review_reason FROM fcc_sales WHERE station_id = %s ORDER BY id"
)


@pytest.fixture(scope="module")
def link(module_db: str) -> Iterator[LinkProcess]:
    server = LinkProcess(module_db)
    yield server
    server.close()


@pytest.fixture
def site(link: LinkProcess, module_db: str) -> Iterator[SimProcess]:
    station = seed_station(module_db, pumps=2)
    key, secret = site_key(module_db, station)
    sim = SimProcess(module_db, station, link.address, key, secret)
    sim.wait_online()
    _wait(lambda: _live(module_db, station))
    yield sim
    sim.close()


def _rows(url: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def _wait(check: object, timeout: float = 10.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()  # type: ignore[operator]
        if value or time.monotonic() > deadline:
            assert value, "condition not reached in time"
            return value
        time.sleep(0.05)


def _live(url: str, station: int) -> bool:
    return bool(_rows(url, "SELECT 1 FROM forecourt_links WHERE station_id = %s", station))


def _service(url: str) -> str:
    return Settings(database_url=url).service_url


def fuel(sim: SimProcess, pump: int, litres: str, *, nozzle: int = 1) -> dict:
    sim.post(f"/pumps/{pump}/lift", nozzle=nozzle)
    sim.post(f"/pumps/{pump}/fuel", litres=litres, wait="true")
    return sim.post(f"/pumps/{pump}/hangup")


def _sales(url: str, station: int, n: int = 1) -> list[tuple]:
    return _wait(lambda: (r := _rows(url, SALE_SQL, station)) and len(r) >= n and r)  # type: ignore[return-value]


def test_a_fuelling_reaches_the_database_with_its_progress_and_checked_sale(
    site: SimProcess, module_db: str
) -> None:
    station = site.station
    fuel(site, 1, "20", nozzle=2)  # 95# at 8.18
    (sale,) = _sales(module_db, station)
    tx, pump, nozzle, grade, volume, amount, price, t0, t1, state, offline, cleared_by, review = sale
    assert (pump, nozzle, grade, volume, amount, price) == (1, 2, "95", 20_000, 16_360, 818)
    assert t1 - t0 == volume and (state, offline, cleared_by, review) == ("payable", False, None, None)
    progress = _rows(
        module_db,
        "SELECT seq, volume_ml, amount_fen FROM pump_progress WHERE station_id = %s AND site_tx_id = %s ORDER BY id",
        station,
        tx,
    )
    assert len(progress) >= 2
    assert [p[0] for p in progress] == sorted({p[0] for p in progress})  # strictly increasing
    assert progress[-1][1:] == (20_000, 16_360)
    assert _wait(
        lambda: (
            _rows(
                module_db,
                "SELECT status, fp_state FROM pump_status WHERE station_id = %s AND pump_no = 1",
                station,
            )
            == [("ready-to-pay", 3)]
        )
    )
    nozzles = {n["number"]: n for n in site.state()["pumps"][0]["nozzles"]}
    assert nozzles[2]["total_ml"] == t1 and nozzles[2]["count"] == 1


def test_lock_and_clear_through_send_command(site: SimProcess, module_db: str) -> None:
    station, url = site.station, _service(module_db)
    fuel(site, 2, "10")
    (sale,) = _sales(module_db, station)
    tx = sale[0]
    reply = send_command(url, station, "LOCKTX", ["2", tx, PAYER_A], timeout_s=5)
    assert isinstance(reply, CommandReply) and reply.ok
    assert any(line.startswith(f"* SALE 2 1 {tx} locked") for line in reply.lines)
    assert _rows(module_db, SALE_SQL, station)[0][9] == "locked"  # stored before the reply
    assert send_command(url, station, "LOCKTX", ["2", tx, PAYER_A], timeout_s=5).ok  # idempotent
    other = send_command(url, station, "LOCKTX", ["2", tx, PAYER_B], timeout_s=5)
    assert (other.ok, other.code) == (False, 409)
    r = site.http.post("/pumps/2/cashier")
    assert r.status_code == 404  # no payable sale: the locked one is the mobile payment's
    assert site.http.post("/pumps/2/cashier", params={"site_tx_id": tx}).status_code == 409
    cleared = send_command(url, station, "CLEAR", ["2", tx, PAYER_A, "wechat"], timeout_s=5)
    assert cleared.ok
    row = _rows(module_db, SALE_SQL, station)[0]
    assert (row[9], row[11]) == ("cleared", PAYER_A)
    again = send_command(url, station, "CLEAR", ["2", tx, PAYER_A, "wechat"], timeout_s=5)
    assert (again.ok, again.code) == (False, 410)  # a retried CLEAR: it was applied
    assert send_command(url, station, "LOCKTX", ["2", tx, PAYER_A], timeout_s=5).code == 410
    unknown = send_command(url, station, "CLEAR", ["2", "nope", PAYER_A, "wechat"], timeout_s=5)
    assert unknown.code == 404
    txs = send_command(url, station, "TRANSACTIONS", [], timeout_s=5)
    assert txs.ok and txs.lines == []
    commands = _rows(
        module_db, "SELECT state, reply_ok FROM forecourt_commands WHERE station_id = %s ORDER BY id", station
    )
    assert [c[0] for c in commands] == ["done"] * len(commands)


def test_the_cashier_first_makes_clear_answer_403(site: SimProcess, module_db: str) -> None:
    station, url = site.station, _service(module_db)
    fuel(site, 1, "5")
    (sale,) = _sales(module_db, station)
    site.post("/pumps/1/cashier")
    _wait(lambda: _rows(module_db, SALE_SQL, station)[0][9] == "cleared")
    assert _rows(module_db, SALE_SQL, station)[0][11] == "cashier"
    reply = send_command(url, station, "CLEAR", ["1", sale[0], PAYER_A, "wechat"], timeout_s=5)
    assert (reply.ok, reply.code) == (False, 403)  # paid another way: a mobile payment is refunded


def test_commands_are_checked_and_need_a_live_link(module_db: str) -> None:
    station = seed_station(module_db, pumps=1)
    url = _service(module_db)
    with pytest.raises(StationOffline):
        send_command(url, station, "PUMPS", [], timeout_s=2)
    with pytest.raises(InvalidInput):
        send_command(url, station, "QUIT", ["bye"], timeout_s=2)
    with pytest.raises(InvalidInput):
        send_command(url, station, "LOCKTX", ["1", "T1", "not-a-uuid"], timeout_s=2)
    assert _rows(module_db, "SELECT 1 FROM forecourt_commands WHERE station_id = %s", station) == []


def test_a_link_drop_mid_fuelling_loses_nothing(site: SimProcess, module_db: str) -> None:
    station = site.station
    site.post("/pumps/1/lift", nozzle=1)
    site.post("/pumps/1/fuel", litres="30")  # 10 L/s: about 3 s of flow
    _wait(lambda: _rows(module_db, "SELECT 1 FROM pump_progress WHERE station_id = %s", station))
    site.post("/link/offline")
    site.wait_online(False)
    _wait(lambda: not _live(module_db, station))
    _wait(lambda: site.state()["pumps"][0]["fuelling"]["to_dispense_ml"] == 0)
    site.post("/pumps/1/hangup")
    assert _rows(module_db, SALE_SQL, station) == []  # the site is offline: nothing yet
    offline_progress = _rows(
        module_db, "SELECT max(volume_ml) FROM pump_progress WHERE station_id = %s", station
    )[0][0]
    assert offline_progress < 30_000
    site.post("/link/online")
    site.wait_online()
    (sale,) = _sales(module_db, station)
    tx, pump, nozzle, grade, volume, amount, price, t0, t1, state, offline, cleared_by, review = sale
    assert (pump, nozzle, grade, volume, amount, price) == (1, 1, "92", 30_000, 22_950, 765)
    assert (t1 - t0, state, offline, cleared_by, review) == (30_000, "cleared", True, "cashier", None)
    seqs = [
        r[0] for r in _rows(module_db, "SELECT seq FROM pump_progress WHERE site_tx_id = %s ORDER BY id", tx)
    ]
    assert seqs == sorted(set(seqs))
    buffer = site.state()["pumps"][0]["buffer"]
    assert [(b["site_tx_id"], b["volume_ml"], b["state"]) for b in buffer] == [(tx, 30_000, "cleared")]


def test_a_link_server_restart_mid_fuelling_loses_nothing(module_db: str) -> None:
    port, ws_port = free_port(), free_port()
    link = LinkProcess(module_db, port=port, ws_port=ws_port)
    station = seed_station(module_db, pumps=1)
    key, secret = site_key(module_db, station)
    sim = SimProcess(module_db, station, link.address, key, secret, pumps=1, flow_l_min=300)
    try:
        sim.wait_online()
        sim.post("/pumps/1/lift", nozzle=3)
        sim.post("/pumps/1/fuel", litres="25")  # 5 L/s
        _wait(lambda: _rows(module_db, "SELECT 1 FROM pump_progress WHERE station_id = %s", station))
        link.kill()  # no goodbye: its forecourt_links row stays behind
        sim.wait_online(False)
        _wait(lambda: sim.state()["pumps"][0]["fuelling"]["to_dispense_ml"] == 0, timeout=15)
        sim.post("/pumps/1/hangup")
        link.close()
        link = LinkProcess(module_db, port=port, ws_port=ws_port)
        sim.wait_online()
        (sale,) = _sales(module_db, station)
        assert (sale[3], sale[4], sale[5], sale[8] - sale[7]) == ("0", 25_000, 18_500, 25_000)
        assert (sale[9], sale[10], sale[12]) == ("cleared", True, None)
        assert _live(module_db, station)
    finally:
        sim.close()
        link.close()


def test_a_simulator_over_websocket(link: LinkProcess, module_db: str) -> None:
    station = seed_station(module_db, pumps=1)
    key, secret = site_key(module_db, station)
    sim = SimProcess(module_db, station, link.ws_url, key, secret, pumps=1)
    try:
        sim.wait_online()
        fuel(sim, 1, "3")
        (sale,) = _sales(module_db, station)
        assert (sale[4], sale[5], sale[12]) == (3_000, 2_295, None)
        assert _rows(module_db, "SELECT transport FROM forecourt_links WHERE station_id = %s", station) == [
            ("ws",)
        ]
        reply = send_command(_service(module_db), station, "PRICES", [], timeout_s=5)
        assert "* PRICE 92 LTR CNY 7.65 92号汽油" in reply.lines
    finally:
        sim.close()


def test_site_keys_from_the_ingest_cli(module_db: str) -> None:
    station = seed_station(module_db, pumps=1)
    env = {**os.environ, "DATABASE_URL": module_db, "FUEL_ENV": "test", "FUEL_SECRET_KEY": TEST_SECRET_KEY}

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ingest", "keys", *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    name = f"forecourt-{uuid.uuid4().hex[:6]}"
    made = keys("create", "--name", name, "--role", "site", "--station", str(station))
    assert made.returncode == 0, made.stderr
    access, secret = made.stdout.split()
    assert uuid.UUID(access) and len(secret) >= 32
    assert "shown once" in made.stderr
    assert keys("create", "--name", name + "x", "--role", "site").returncode == 2
    assert keys("create", "--name", name + "y", "--role", "site", "--station", "999999").returncode == 2
    assert (
        keys("create", "--name", name + "z", "--role", "traffic", "--station", str(station)).returncode == 2
    )
    listed = keys("list")
    assert any(line.startswith(f"{name}\tsite\t{station}\tactive") for line in listed.stdout.splitlines())
    audit = _rows(
        module_db,
        "SELECT new_value->>'role' FROM audit_log WHERE entity = 'api_key' AND entity_id = %s",
        name,
    )
    assert audit == [("site",)]
    from forecourt._link import LinkServer  # the key authenticates on the link

    assert LinkServer  # imported: the link reads keys through store._forecourt.authenticate_site
    import asyncio

    from store._forecourt import authenticate_site

    async def check() -> tuple[int, str] | None:
        async with await psycopg.AsyncConnection.connect(module_db) as conn:
            return await authenticate_site(conn, access, secret, secret_key=TEST_SECRET_KEY)

    assert asyncio.run(check()) == (station, name)
    assert keys("revoke", name).returncode == 0

    async def check_revoked() -> tuple[int, str] | None:
        async with await psycopg.AsyncConnection.connect(module_db) as conn:
            return await authenticate_site(conn, access, secret, secret_key=TEST_SECRET_KEY)

    assert asyncio.run(check_revoked()) is None
