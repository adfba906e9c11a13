"""Fuelling sessions over real HTTP and a real WebSocket: a real API process, a real link server and a real
simulated site in a real database. Bind, follow the pump (post-pay and preset), the completed sale, the
cashier, cancel, expiry, two phones on one nozzle, owners only, the live protocol (first message, order,
resume with after_seq, close codes), the polling fallback, and bad input (forged, revoked, closed station,
a sale that fails the cross-check, progress out of order) leaving no trace."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from store._nozzles import revoke_token
from tests._forecourt import RawSite, seed_station, site_key
from tests._fuelling import Stack, read_messages, wait_for
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes: link server, simulated site, API

BIND_TIMEOUT_S = 8


@pytest.fixture(scope="module")
def stack(module_db: str) -> Iterator[Stack]:
    s = Stack(module_db, pumps=4, api_env={"FUEL_FUELLING_BIND_TIMEOUT_S": str(BIND_TIMEOUT_S)})
    try:
        yield s
    finally:
        s.close()


def fuel(stack: Stack, pump: int, litres: str, nozzle: int = 1) -> None:
    stack.sim.post(f"/pumps/{pump}/lift", nozzle=nozzle)
    stack.sim.post(f"/pumps/{pump}/fuel", litres=litres, wait="true")
    stack.sim.post(f"/pumps/{pump}/hangup")


def sale_row(stack: Stack, site_tx_id: str) -> tuple[Any, ...]:
    return stack.sql(
        "SELECT id, volume_ml, amount_fen, totaliser_end_ml - totaliser_start_ml, state FROM fcc_sales"
        " WHERE station_id = %s AND site_tx_id = %s",
        stack.station,
        site_tx_id,
    )[0]


def events(stack: Stack, auth: dict[str, str], sid: int, after: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        r = stack.http.get(
            f"/v1/fuelling/sessions/{sid}/events", params={"after_seq": after, "limit": 50}, headers=auth
        )
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["events"]
        if not page["more"]:
            return out
        after = page["events"][-1]["seq"]


def test_post_pay_flow_live_from_bind_to_the_checked_sale(stack: Stack) -> None:
    auth = stack.user()
    r = stack.bind(auth, pump=1, nozzle=2)
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["state"], s["pump_no"], s["nozzle_no"], s["grade"], s["last_seq"]) == ("bound", 1, 2, "95", 1)
    assert s["amount_final"] is False and s["final_amount_fen"] is None
    with stack.live(s["id"], auth) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "session" and first["session"]["state"] == "bound"
        fuel(stack, 1, "12", nozzle=2)
        msgs = read_messages(ws, until=lambda m: m.get("event", {}).get("state") == "completed")
    got = [m["event"] for m in msgs]
    assert [e["seq"] for e in got] == list(range(2, 2 + len(got)))  # in order, none missing
    states = [e["state"] for e in got]
    assert states[0] in ("nozzle_up", "authorised") and "fuelling" in states and states[-1] == "completed"
    progress = [e for e in got if e["kind"] == "progress"]
    assert len(progress) >= 2
    assert all(a["volume_ml"] <= b["volume_ml"] for a, b in itertools.pairwise(progress))
    assert all(a["progress_seq"] < b["progress_seq"] for a, b in itertools.pairwise(progress))
    done = stack.session(auth, s["id"])
    sale = done["sale"]
    sale_id, volume, amount, delta, state = sale_row(stack, sale["site_tx_id"])
    assert (volume, delta, state) == (12_000, 12_000, "payable")
    assert done["final_amount_fen"] == amount == sale["amount_fen"] == got[-1]["final_amount_fen"]
    assert done["amount_final"] is True and done["volume_ml"] == 12_000 and done["litres"] == 12.0
    assert stack.sql("SELECT sale_id FROM fuelling_sessions WHERE id = %s", s["id"]) == [(sale_id,)]
    # the polling fallback gives the same events as the live connection
    polled = events(stack, auth, s["id"])
    assert [e["seq"] for e in polled] == list(range(1, done["last_seq"] + 1))
    assert polled[1 : 1 + len(got)] == got
    audit = stack.sql(
        "SELECT action, new_value->>'nozzle_no' FROM audit_log WHERE entity = 'fuelling_session' AND entity_id = %s",
        str(s["id"]),
    )
    assert audit == [("create", "2")]
    # the sale is the session's: the pump is free for the next driver, and the cashier taking the sale
    # later ends the session as taken_by_cashier
    driver = stack.user()
    nxt = stack.bind(driver, pump=1, nozzle=1)
    assert nxt.status_code == 201, nxt.text
    assert (
        stack.http.post(f"/v1/fuelling/sessions/{nxt.json()['id']}/cancel", headers=driver).status_code == 200
    )
    stack.sim.post("/pumps/1/cashier", site_tx_id=sale["site_tx_id"])
    taken = stack.wait_state(auth, s["id"], "taken_by_cashier")
    assert taken["terminal"] is True and taken["final_amount_fen"] is None


def test_resume_with_after_seq_loses_nothing_and_repeats_nothing(stack: Stack) -> None:
    auth = stack.user()
    sid = stack.bind(auth, pump=2).json()["id"]
    with stack.live(sid, auth) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "session"
        stack.sim.post("/pumps/2/lift", nozzle=1)
        stack.sim.post("/pumps/2/fuel", litres="15")
        first = read_messages(ws, until=lambda m: m.get("event", {}).get("kind") == "progress")
    last = first[-1]["event"]["seq"]
    time.sleep(0.5)  # events keep coming while the phone is away
    with stack.live(sid, auth, after_seq=last) as ws:
        snap = json.loads(ws.recv(timeout=10))
        assert snap["type"] == "session" and snap["session"]["last_seq"] >= last
        stack.sim.post("/pumps/2/fuel", litres="0.5", wait="true")
        stack.sim.post("/pumps/2/hangup")
        rest = read_messages(ws, until=lambda m: m.get("event", {}).get("state") == "completed")
    seqs = [m["event"]["seq"] for m in first if m["type"] == "event"] + [m["event"]["seq"] for m in rest]
    assert seqs == list(range(2, seqs[-1] + 1))  # no gap, no duplicate across the reconnect
    stack.http.post(f"/v1/fuelling/sessions/{sid}/cancel", headers=auth)  # leave the sale to the cashier


def test_two_phones_scanning_the_same_nozzle_one_wins(stack: Stack) -> None:
    a, b = stack.user(), stack.user()
    answers: list[Any] = []
    barrier = threading.Barrier(2)

    def scan(auth: dict[str, str]) -> None:
        barrier.wait()
        answers.append(stack.bind(auth, pump=3, nozzle=1))

    threads = [threading.Thread(target=scan, args=(x,)) for x in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [201, 409]
    lost = next(r for r in answers if r.status_code == 409).json()["error"]
    assert lost["code"] == "PumpBusy" and "pump 3" in lost["message"]
    # another nozzle of the same pump: the pump serves one car at a time
    assert stack.bind(b, pump=3, nozzle=2).status_code == 409
    assert stack.sql(
        "SELECT count(*) FROM fuelling_sessions WHERE station_id = %s AND pump_no = 3", stack.station
    ) == [(1,)]
    won = next(r for r in answers if r.status_code == 201).json()
    owner = a if stack.http.get(f"/v1/fuelling/sessions/{won['id']}", headers=a).status_code == 200 else b
    assert stack.http.post(f"/v1/fuelling/sessions/{won['id']}/cancel", headers=owner).status_code == 200


def test_owner_only_and_close_codes(stack: Stack) -> None:
    auth, other = stack.user(), stack.user()
    sid = stack.bind(auth, pump=4).json()["id"]
    assert stack.http.get(f"/v1/fuelling/sessions/{sid}").status_code == 401
    r = stack.http.get(f"/v1/fuelling/sessions/{sid}", headers=other)
    assert r.status_code == 403 and "another user" in r.json()["error"]["message"]
    assert stack.http.get(f"/v1/fuelling/sessions/{sid}/events", headers=other).status_code == 403
    assert stack.http.post(f"/v1/fuelling/sessions/{sid}/cancel", headers=other).status_code == 403
    assert stack.http.get("/v1/fuelling/sessions/987654321", headers=auth).status_code == 404
    assert stack.http.get(f"/v1/fuelling/sessions/{sid}/events?after_seq=-1", headers=auth).status_code == 422
    assert stack.http.get(f"/v1/fuelling/sessions/{sid}/events?limit=201", headers=auth).status_code == 422

    def close_code(sid: int, auth: dict[str, str] | None, first: str | None = None, **q: object) -> int:
        with stack.live(sid, auth, **q) as ws:
            if first is not None:
                ws.send(first)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            return int(closed.value.rcvd.code)

    assert close_code(sid, other) == 4403
    assert close_code(987654321, auth) == 4404
    assert close_code(sid, None, token="not-a-token") == 4401
    assert close_code(sid, None, first=json.dumps({"token": "forged"})) == 4401
    assert close_code(sid, None, first="not json") == 4400
    assert close_code(sid, auth, after_seq="x") == 4400
    # the token in the first message works like the query's
    with stack.live(sid, None) as ws:
        ws.send(json.dumps({"token": auth["Authorization"].removeprefix("Bearer "), "after_seq": 0}))
        snap = json.loads(ws.recv(timeout=10))
        bound = json.loads(ws.recv(timeout=10))
    assert snap["session"]["id"] == sid and bound["event"]["seq"] == 1 and bound["event"]["kind"] == "bound"
    r = stack.http.post(f"/v1/fuelling/sessions/{sid}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = stack.http.post(f"/v1/fuelling/sessions/{sid}/cancel", headers=auth)
    assert r.status_code == 409 and "cancelled" in r.json()["error"]["message"]
    # a terminal session's live connection: the snapshot, then a normal close
    assert close_code(sid, auth) == 1000


def test_cancel_is_refused_while_fuel_flows_and_a_bound_session_expires(stack: Stack) -> None:
    auth = stack.user()
    sid = stack.bind(auth, pump=4).json()["id"]
    stack.sim.post("/pumps/4/lift", nozzle=1)
    stack.sim.post("/pumps/4/fuel", litres="20")
    stack.wait_state(auth, sid, "fuelling")
    r = stack.http.post(f"/v1/fuelling/sessions/{sid}/cancel", headers=auth)
    assert r.status_code == 409 and "fuel is flowing" in r.json()["error"]["message"]
    # nobody binds a pump while fuel flows there (a driver paying cash: their fuelling is never a session's)
    stack.sim.post("/pumps/3/lift", nozzle=1)
    stack.sim.post("/pumps/3/fuel", litres="20")
    wait_for(
        lambda: stack.sql(
            "SELECT 1 FROM pump_status WHERE station_id = %s AND pump_no = 3 AND fp_state = 8", stack.station
        )
    )
    r = stack.bind(stack.user(), pump=3, nozzle=2)
    assert r.status_code == 409 and "delivering fuel to another driver" in r.json()["error"]["message"]
    stack.sim.post("/pumps/3/fuel", litres="0.1", wait="true")
    stack.sim.post("/pumps/3/hangup")
    stack.sim.post("/pumps/3/cashier")
    stack.sim.post("/pumps/4/fuel", litres="0.1", wait="true")
    stack.sim.post("/pumps/4/hangup")
    done = stack.wait_state(auth, sid, "completed")
    stack.sim.post("/pumps/4/cashier", site_tx_id=done["sale"]["site_tx_id"])
    stack.wait_state(auth, sid, "taken_by_cashier")
    # nobody lifts: the session expires after the binding's time (the sweeper), and the pump is free
    sid2 = stack.bind(auth, pump=4).json()["id"]
    expired = stack.wait_state(auth, sid2, "expired", timeout=BIND_TIMEOUT_S + 10)
    assert expired["terminal"] and expired["ended_at"] is not None
    assert stack.bind(auth, pump=4).status_code == 201


def test_bad_nozzle_tokens_leave_no_session(stack: Stack) -> None:
    auth = stack.user()
    before = stack.sql("SELECT count(*) FROM fuelling_sessions")
    good = stack.tokens[(2, 3)]
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    for token, status in ((forged, 404), ("x" * 27, 404), ("short", 422)):
        r = stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": token}, headers=auth)
        assert r.status_code == status, r.text
    r = stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": good, "preset_fen": 5}, headers=auth)
    assert r.status_code == 422 and r.json()["error"]["param"] == "preset_fen"
    r = stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": good, "extra": 1}, headers=auth)
    assert r.status_code == 422
    assert stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": good}).status_code == 401
    with psycopg.connect(stack.url) as conn:
        revoke_token(conn, good, actor="test", secret_key=TEST_SECRET_KEY)
    r = stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": good}, headers=auth)
    assert r.status_code == 410 and r.json()["error"]["code"] == "NozzleTokenRevoked"
    stack.sql("UPDATE stations SET status = 'closed' WHERE id = %s", stack.station)
    try:
        r = stack.bind(auth, pump=2, nozzle=1)
        assert r.status_code == 409 and r.json()["error"]["code"] == "StationClosed"
    finally:
        stack.sql("UPDATE stations SET status = 'open' WHERE id = %s", stack.station)
    assert stack.sql("SELECT count(*) FROM fuelling_sessions") == before


def test_preset_releases_the_pump_for_the_amount(stack: Stack) -> None:
    auth = stack.user()
    r = stack.bind(auth, pump=3, nozzle=1, preset_fen=5_000)
    assert r.status_code == 201, r.text
    s = r.json()
    assert (s["mode"], s["preset_fen"]) == ("preset", 5_000)
    fp = stack.sim.state()["pumps"][2]
    assert fp["fp_state_name"] == "AUTHORISED"
    fuel(stack, 3, "30")  # the pump stops at 50 CNY
    done = stack.wait_state(auth, s["id"], "completed")
    assert 4_990 <= done["final_amount_fen"] <= 5_000
    stack.sim.post("/pumps/3/cashier", site_tx_id=done["sale"]["site_tx_id"])
    stack.wait_state(auth, s["id"], "taken_by_cashier")


@pytest.fixture(scope="module")
def raw(stack: Stack) -> Iterator[tuple[RawSite, int, dict[tuple[int, int], str]]]:
    """A second station whose site is driven line by line (to send what a faulty controller sends)."""
    from store._nozzles import issue_tokens

    station = seed_station(stack.url, pumps=1)
    key, secret = site_key(stack.url, station)
    site = RawSite(stack.link.host, stack.link.port)
    site.handshake(key, secret, capability="CLEAR HEARTBEAT PUMPS TRANSACTIONS QUIT SALE PROGRESS")
    wait_for(lambda: stack.sql("SELECT 1 FROM forecourt_links WHERE station_id = %s", station))
    with psycopg.connect(stack.url) as conn:
        tokens = {
            (t.pump_no, t.nozzle_no): t.token
            for t in issue_tokens(conn, station, actor="t", secret_key=TEST_SECRET_KEY)
        }
    yield site, station, tokens
    site.close()


def test_a_sale_that_fails_the_cross_check_goes_to_review_and_out_of_order_progress_changes_nothing(
    stack: Stack, raw: tuple[RawSite, int, dict[tuple[int, int], str]]
) -> None:
    site, _, tokens = raw
    auth = stack.user()
    r = stack.http.post("/v1/fuelling/sessions", json={"nozzle_token": tokens[(1, 1)]}, headers=auth)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    site.send("* FPSTATE 1 4")
    site.send("* FPSTATE 1 5")
    site.send("* PROGRESS 1 1 R1 92 1 1.000 7.65 LTR CNY")
    site.send("* PROGRESS 1 1 R1 92 2 2.000 15.30 LTR CNY")
    s = stack.wait_state(auth, sid, "fuelling")
    wait_for(lambda: stack.session(auth, sid)["volume_ml"] == 2_000)
    seq = stack.session(auth, sid)["last_seq"]
    site.send("* PROGRESS 1 1 R1 92 2 3.000 22.95 LTR CNY")  # same seq again
    site.expect(r"^\* ERR 400 out of order")
    site.send("* PROGRESS 1 1 R1 92 3 1.500 11.48 LTR CNY")  # volume going back
    site.expect(r"^\* ERR 400 volume or amount went backwards")
    site.send("* PROGRESS 1 2 R1 95 3 9.000 73.62 LTR CNY")  # another nozzle's fuelling: not the session's
    time.sleep(0.5)
    after = stack.session(auth, sid)
    assert (after["last_seq"], after["volume_ml"], after["state"]) == (seq, 2_000, "fuelling")
    # the totaliser moved 3 L but the sale says 2.5 L: never payable
    site.send("* SALE 1 1 R1 payable - 0 92 LTR 2.500 CNY 19.13 7.65 100.000 103.000 2026-03-04T08:00:00Z")
    review = stack.wait_state(auth, sid, "review")
    assert "totaliser" in review["review_reason"] and review["final_amount_fen"] is None
    assert review["amount_final"] is False and s["id"] == sid


def test_progress_latency_is_bounded_through_link_and_api(stack: Stack) -> None:
    """A smoke check of the path measured by `make bench` (section 10): simulator -> WebSocket client."""
    auth = stack.user()
    sid = stack.bind(auth, pump=2, nozzle=2).json()["id"]
    with stack.live(sid, auth) as ws:
        json.loads(ws.recv(timeout=10))
        stack.sim.post("/pumps/2/lift", nozzle=2)
        stack.sim.post("/pumps/2/fuel", litres="3", wait="true")
        stack.sim.post("/pumps/2/hangup")
        msgs = read_messages(ws, until=lambda m: m.get("event", {}).get("state") == "completed")
    assert any(m["event"]["kind"] == "progress" for m in msgs)
