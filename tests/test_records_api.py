"""The driver's e-records, monthly summary, odometer, membership and account deletion, every part a real
process (fake WeChat Pay gateway, link server, simulated site, API, payments worker): paid fill-ups are
made at the pump and paid through WeChat Pay, then read back through the API."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from store._users import User
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests.test_points_pay import give

pytestmark = pytest.mark.slow  # real processes
SHANGHAI = ZoneInfo("Asia/Shanghai")


def paid_fillup(
    stack: PayStack, sim: SimProcess, pump: int, litres: str, token: str, *, nozzle: int = 1
) -> int:
    """A fill-up at the pump paid through WeChat Pay; its payment id (the record id) once paid."""
    sale_id = stack.fuel(sim, pump, litres, nozzle=nozzle)
    r = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert stack.wx_pay(body)[0] == 200
    no = body["out_trade_no"]
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    return int(stack.sql("SELECT id FROM payments WHERE out_trade_no = %s", no)[0][0])


def get(stack: PayStack, path: str, token: str | None, **params: Any) -> httpx.Response:
    assert stack.api is not None
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{stack.api.base}{path}", headers=headers, params=params, timeout=30)


def put(stack: PayStack, path: str, token: str, body: Any) -> httpx.Response:
    assert stack.api is not None
    return httpx.put(
        f"{stack.api.base}{path}", headers={"Authorization": f"Bearer {token}"}, json=body, timeout=30
    )


class Driver:
    def __init__(self, stack: PayStack) -> None:
        self.user, self.token = stack.user()
        self.records: list[int] = []


@pytest.fixture(scope="module")
def fleet(stack: PayStack) -> dict[str, Any]:
    """Two stations; alice fills up three times (two stations, two grades), bob once."""
    a, b = stack.site(), stack.site()
    alice, bob = Driver(stack), Driver(stack)
    alice.records.append(paid_fillup(stack, a, 1, "20", alice.token, nozzle=1))  # 92# at 7.65
    alice.records.append(paid_fillup(stack, b, 1, "30", alice.token, nozzle=2))  # 95# at 8.18
    alice.records.append(paid_fillup(stack, a, 2, "25.5", alice.token, nozzle=1))
    bob.records.append(paid_fillup(stack, a, 1, "10", bob.token))
    return {"a": a, "b": b, "alice": alice, "bob": bob}


def _db_record(stack: PayStack, record_id: int) -> dict[str, Any]:
    names = (
        "out_trade_no",
        "transaction_id",
        "paid_fen",
        "site_tx_id",
        "volume_ml",
        "amount_fen",
        "unit_price_fen",
        "station_id",
        "pump_no",
        "nozzle_no",
        "grade",
        "paid_at",
    )
    row = stack.sql(
        "SELECT p.out_trade_no, p.transaction_id, p.paid_fen, f.site_tx_id, f.volume_ml, f.amount_fen,"
        " f.unit_price_fen, f.station_id, f.pump_no, f.nozzle_no, f.grade, p.paid_at"
        " FROM payments p JOIN sale_payments sp USING (out_trade_no) JOIN fcc_sales f ON f.id = sp.sale_id"
        " WHERE p.id = %s",
        record_id,
    )[0]
    return dict(zip(names, row, strict=True))


def test_records_list_newest_first_with_receipt_fields(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice: Driver = fleet["alice"]
    r = get(stack, "/v1/me/records", alice.token)
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    assert [x["id"] for x in records] == alice.records[::-1]
    assert r.json()["next_cursor"] is None
    for rec in records:
        db = _db_record(stack, rec["id"])
        assert rec["litres"] == db["volume_ml"] / 1000
        assert rec["unit_price_fen"] == db["unit_price_fen"]
        assert rec["list_amount_fen"] == db["amount_fen"]
        assert rec["amount_paid_fen"] == db["paid_fen"]
        assert rec["wechat_transaction_id"] == db["transaction_id"]
        assert (rec["station_id"], rec["pump_no"], rec["nozzle_no"], rec["grade"]) == (
            db["station_id"],
            db["pump_no"],
            db["nozzle_no"],
            db["grade"],
        )
        assert rec["receipt"] == {
            "trace_no": db["site_tx_id"],
            "terminal": f"P{db['pump_no']:02d}-N{db['nozzle_no']:02d}",
            "receipt_no": db["out_trade_no"],
        }
        assert rec["paid_at"].endswith("+08:00")
        assert datetime.fromisoformat(rec["paid_at"]) == db["paid_at"]
        assert rec["invoice_status"] is None
        earned = stack.sql("SELECT amount FROM ledger_transfers WHERE ref = %s", f"earn:{db['out_trade_no']}")
        assert rec["points_earned"] == earned[0][0] > 0  # what the payment earned, from the ledger
        assert (rec["points_redeemed"], rec["redemption_fen"], rec["points_reversed"]) == (0, 0, 0)
    # the 95# fill-up: 30 L at 8.18
    second = next(x for x in records if x["id"] == alice.records[1])
    assert (second["grade"], second["litres"], second["list_amount_fen"]) == ("95", 30.0, 24_540)
    # one record alone: the same body
    one = get(stack, f"/v1/me/records/{alice.records[1]}", alice.token)
    assert one.status_code == 200 and one.json() == second


def test_records_show_points_earned_redeemed_and_reversed_by_a_refund(stack: PayStack) -> None:
    """A fill-up that earned, one that redeemed 1,000 points for 10 CNY off: list, detail and CSV show both
    from the ledger; a full refund of the second shows its earned points taken back and its redeemed ones
    given back."""
    site = stack.site()
    user, token = stack.user()
    give(stack, user.id, 1_500)
    plain = paid_fillup(stack, site, 1, "15", token)
    sale_id = stack.fuel(site, 2, "20")
    order = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000})
    assert order.status_code == 200, order.text
    body = order.json()
    assert (body["redeemed_points"], body["redemption_fen"]) == (1_000, 1_000)
    assert stack.wx_pay(body)[0] == 200
    no = body["out_trade_no"]
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    redeemed = int(stack.sql("SELECT id FROM payments WHERE out_trade_no = %s", no)[0][0])

    records = get(stack, "/v1/me/records", token).json()["records"]
    assert [r["id"] for r in records] == [redeemed, plain]
    first, second = records[1], records[0]
    assert first["points_earned"] == first["amount_paid_fen"] // 100 > 0  # 1 point per whole CNY paid
    assert (first["points_redeemed"], first["redemption_fen"]) == (0, 0)
    assert (second["points_redeemed"], second["redemption_fen"]) == (1_000, 1_000)
    assert second["amount_paid_fen"] == second["list_amount_fen"] - body["discount_fen"] - 1_000
    assert second["points_earned"] == second["amount_paid_fen"] // 100
    assert (second["points_reversed"], second["points_returned"]) == (0, 0)
    assert get(stack, f"/v1/me/records/{redeemed}", token).json() == second

    rows = list(
        csv.DictReader(io.StringIO(get(stack, "/v1/me/records.csv", token).content.decode("utf-8-sig")))
    )
    by_id = {int(r["记录号 record"]): r for r in rows}
    assert by_id[redeemed]["积分抵扣 points redeemed"] == "1000"
    assert by_id[redeemed]["积分抵扣金额 points off (CNY)"] == "10.00"
    assert by_id[redeemed]["获得积分 points earned"] == str(second["points_earned"])
    assert by_id[plain]["获得积分 points earned"] == str(first["points_earned"])
    assert by_id[plain]["积分抵扣 points redeemed"] == "0"
    assert by_id[plain]["积分抵扣金额 points off (CNY)"] == "0.00"

    from payments._flow import request_refund

    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        request_refund(
            conn, out_trade_no=no, out_refund_no=f"r-{no}", refund_fen=body["amount_fen"], reason="test",
            actor="test",
        )  # fmt: skip
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="refund")
    wait_for(
        lambda: get(stack, f"/v1/me/records/{redeemed}", token).json()["points_returned"] == 1_000,
        timeout_s=30,
        what="the points reversed",
    )
    after = get(stack, f"/v1/me/records/{redeemed}", token).json()
    assert after["refunded_fen"] == body["amount_fen"]
    assert after["points_reversed"] == after["points_earned"] == second["points_earned"]
    assert (after["points_redeemed"], after["redemption_fen"]) == (1_000, 1_000)  # what the payment did
    rows = list(
        csv.DictReader(io.StringIO(get(stack, "/v1/me/records.csv", token).content.decode("utf-8-sig")))
    )
    again = next(r for r in rows if int(r["记录号 record"]) == redeemed)
    assert again["退款收回积分 points reversed"] == str(after["points_earned"])
    assert again["退款退回积分 points returned"] == "1000"


def test_records_pages_and_filters(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice: Driver = fleet["alice"]
    first = get(stack, "/v1/me/records", alice.token, limit=2).json()
    assert [x["id"] for x in first["records"]] == alice.records[:0:-1]
    assert first["next_cursor"]
    rest = get(stack, "/v1/me/records", alice.token, limit=2, cursor=first["next_cursor"]).json()
    assert [x["id"] for x in rest["records"]] == alice.records[:1] and rest["next_cursor"] is None
    at_b = get(stack, "/v1/me/records", alice.token, station_id=fleet["b"].station).json()["records"]
    assert [x["id"] for x in at_b] == [alice.records[1]]
    today = datetime.now(SHANGHAI).date()
    assert (
        len(
            get(stack, "/v1/me/records", alice.token, **{"from": str(today), "to": str(today)}).json()[
                "records"
            ]
        )
        == 3
    )
    tomorrow = today + timedelta(days=1)
    assert get(stack, "/v1/me/records", alice.token, **{"from": str(tomorrow)}).json()["records"] == []
    assert (
        get(stack, "/v1/me/records", alice.token, to=str(today - timedelta(days=1))).json()["records"] == []
    )


def test_other_users_records_and_bad_input(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice, bob = fleet["alice"], fleet["bob"]
    assert [x["id"] for x in get(stack, "/v1/me/records", bob.token).json()["records"]] == bob.records
    r = get(stack, f"/v1/me/records/{alice.records[0]}", bob.token)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    assert (
        put(stack, f"/v1/me/records/{alice.records[0]}/odometer", bob.token, {"odometer_km": 5}).status_code
        == 404
    )
    assert get(stack, "/v1/me/records/999999999", alice.token).status_code == 404
    assert get(stack, "/v1/me/records", None).status_code == 401
    assert get(stack, "/v1/me/records", "not-a-token").status_code == 401
    for params in (
        {"limit": 0},
        {"limit": 101},
        {"cursor": "@@"},
        {"cursor": "bm9wZQ"},
        {"from": "2026-13-01"},
        {"from": "2026-05-02", "to": "2026-05-01"},
        {"station_id": 0},
        {"from": "2020-01-01", "to": "2026-01-01"},
    ):
        r = get(stack, "/v1/me/records", alice.token, **params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["message"], params
    assert get(stack, "/v1/me/records/0", alice.token).status_code == 422
    for body in ({"odometer_km": -1}, {"odometer_km": 2_000_001}, {"odometer_km": "far"}, {"km": 5}, [1]):
        r = put(stack, f"/v1/me/records/{alice.records[0]}/odometer", alice.token, body)
        assert r.status_code == 422, (body, r.text)
    for params in (
        {"from": "2026-1"},
        {"from": "2020-01", "to": "2026-01"},
        {"from": "2026-05", "to": "2026-04"},
    ):
        assert get(stack, "/v1/me/records/summary", alice.token, **params).status_code == 422, params


def test_csv_export_opens_in_excel(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice: Driver = fleet["alice"]
    r = get(stack, "/v1/me/records.csv", alice.token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the Chinese headers
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "记录号 record" and "实付 paid (CNY)" in rows[0]
    assert [int(x[0]) for x in rows[1:]] == alice.records[::-1]
    paid_col = rows[0].index("实付 paid (CNY)")
    for row in rows[1:]:
        assert Decimal(row[paid_col]) * 100 == _db_record(stack, int(row[0]))["paid_fen"]
    assert get(stack, "/v1/me/records.csv", None).status_code == 401


def test_monthly_summary_against_nearby_list_prices(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice: Driver = fleet["alice"]
    a, b = fleet["a"].station, fleet["b"].station
    # list prices in force before the fill-ups at the two stations (the same spot: both are "nearby")
    stack.sql(
        "INSERT INTO prices (station_id, grade, price_cny, effective_from, source) VALUES"
        " (%s, '92', 7.60, now() - interval '2 days', 'station'), (%s, '92', 7.80, now() - interval '2 days', 'station'),"
        " (%s, '95', 8.30, now() - interval '2 days', 'station'), (%s, '95', 8.50, now() - interval '2 days', 'station')"
        " RETURNING 1",
        a,
        b,
        a,
        b,
    )
    r = get(stack, "/v1/me/records/summary", alice.token)
    assert r.status_code == 200, r.text
    body = r.json()
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    assert [m["month"] for m in body["months"]] == [month]
    m = body["months"][0]
    dbs = [_db_record(stack, i) for i in alice.records]
    volume = sum(d["volume_ml"] for d in dbs)
    spend = sum(d["paid_fen"] for d in dbs)
    assert (m["fillups"], m["litres"], m["spend_fen"]) == (3, volume / 1000, spend)
    assert m["avg_paid_fen_per_litre"] == round(spend * 1000 / volume)
    nearby = {"92": Decimal("7.70"), "95": Decimal("8.40")}  # the averages of the two stations
    expected = sum(d["volume_ml"] * nearby[d["grade"]] for d in dbs) * 100 / volume
    assert m["avg_nearby_list_fen_per_litre"] == round(expected)
    assert (
        m["saving_vs_nearby_fen_per_litre"]
        == m["avg_nearby_list_fen_per_litre"] - m["avg_paid_fen_per_litre"]
    )
    assert (body["litres"], body["spend_fen"]) == (volume / 1000, spend)
    assert (
        get(stack, "/v1/me/records/summary", alice.token, **{"from": "2020-01", "to": "2020-12"}).json()[
            "months"
        ]
        == []
    )


def test_odometer_gives_consumption_and_stays_monotonic(stack: PayStack, fleet: dict[str, Any]) -> None:
    alice: Driver = fleet["alice"]
    r1, r2, r3 = alice.records
    url = "/v1/me/records/{}/odometer"
    ok = put(stack, url.format(r1), alice.token, {"odometer_km": 10_000})
    assert ok.status_code == 200, ok.text
    assert (ok.json()["odometer_km"], ok.json()["distance_km"], ok.json()["l_per_100km"]) == (
        10_000,
        None,
        None,
    )
    later = put(stack, url.format(r3), alice.token, {"odometer_km": 10_600}).json()
    assert later["distance_km"] == 600
    assert later["l_per_100km"] == float((Decimal("25.5") * 100 / 600).quantize(Decimal("0.01")))
    assert later["fen_per_km"] == float((Decimal(later["amount_paid_fen"]) / 600).quantize(Decimal("0.1")))
    # a reading between the two must lie between them
    backwards = put(stack, url.format(r2), alice.token, {"odometer_km": 9_999})
    assert backwards.status_code == 422, backwards.text
    err = backwards.json()["error"]
    assert err["rule"] == "odometer.monotonic" and err["allowed"] == {"min": 10_000, "max": 10_600}
    assert put(stack, url.format(r2), alice.token, {"odometer_km": 10_601}).status_code == 422
    mid = put(stack, url.format(r2), alice.token, {"odometer_km": 10_250}).json()
    assert mid["distance_km"] == 250
    assert get(stack, f"/v1/me/records/{r3}", alice.token).json()["distance_km"] == 350
    # no tank lasts 5,000 km
    assert put(stack, url.format(r3), alice.token, {"odometer_km": 16_000}).status_code == 422
    month = get(stack, "/v1/me/records/summary", alice.token).json()["months"][0]
    assert month["distance_km"] == 600
    assert month["l_per_100km"] == float((Decimal("55.5") * 100 / 600).quantize(Decimal("0.01")))
    # removed again, audited
    assert put(stack, url.format(r2), alice.token, {"odometer_km": None}).json()["odometer_km"] is None
    assert get(stack, f"/v1/me/records/{r3}", alice.token).json()["distance_km"] == 600
    audits = stack.sql(
        "SELECT count(*) FROM audit_log WHERE entity = 'record_odometer' AND actor = %s",
        f"user:{alice.user.id}",
    )
    assert audits[0][0] == 4  # the four accepted writes


def test_membership_from_the_last_12_months_spend(stack: PayStack, fleet: dict[str, Any]) -> None:
    bob: Driver = fleet["bob"]
    r = get(stack, "/v1/me/membership", bob.token)
    assert r.status_code == 200, r.text
    body = r.json()
    spend = _db_record(stack, bob.records[0])["paid_fen"]
    assert body["spend_12m_fen"] == spend
    assert body["tier"]["code"] == "basic" and body["next_tier"]["code"] == "silver"
    assert body["to_next_tier_fen"] == body["next_tier"]["min_spend_fen"] - spend
    assert [t["code"] for t in body["tiers"]] == ["basic", "silver", "gold", "platinum"]
    assert get(stack, "/v1/me/membership", None).status_code == 401


def test_deleting_the_account_anonymises_and_ends_its_tokens(stack: PayStack) -> None:
    sim = stack.site()
    user, token = stack.user()
    rid = paid_fillup(stack, sim, 1, "12", token)
    assert put(stack, f"/v1/me/records/{rid}/odometer", token, {"odometer_km": 321}).status_code == 200
    stack.sql(
        "UPDATE users SET phone = '+8613800000000', unionid = 'u-secret' WHERE id = %s RETURNING 1", user.id
    )
    before = _db_record(stack, rid)
    assert stack.api is not None
    r = httpx.delete(f"{stack.api.base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": True, "records_kept": 1}
    # the token stops working at once
    for path in ("/v1/me", "/v1/me/records", f"/v1/me/records/{rid}"):
        assert get(stack, path, token).status_code == 401, path
    again = httpx.delete(f"{stack.api.base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert again.status_code == 401
    # and on the live WebSocket of fuelling sessions: refused before any session is looked up
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ws_url = stack.api.base.replace("http://", "ws://") + f"/v1/fuelling/sessions/999999/live?token={token}"
    with connect(ws_url, open_timeout=10, close_timeout=5) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    _, live_token = stack.user()  # a live account's token gets as far as the session lookup
    with (
        connect(ws_url.replace(token, live_token), open_timeout=10, close_timeout=5) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
    # personal data gone, the accounting record kept
    row = stack.sql(
        "SELECT openid, unionid, phone, deleted_at IS NOT NULL, anonymised_at IS NOT NULL FROM users WHERE id = %s",
        user.id,
    )
    assert row == [(f"deleted:{user.id}", None, None, True, True)]
    assert stack.sql("SELECT count(*) FROM payments WHERE openid = %s", user.openid)[0][0] == 0
    assert stack.sql("SELECT count(*) FROM record_odometers WHERE user_id = %s", user.id)[0][0] == 0
    assert stack.sql("SELECT count(*) FROM idempotency_keys WHERE user_id = %s", user.id)[0][0] == 0
    after = _db_record(stack, rid)
    assert after == before  # amounts, station, time, transaction id
    audit = stack.sql(
        "SELECT new_value FROM audit_log WHERE entity = 'user' AND action = 'delete' AND entity_id = %s",
        str(user.id),
    )
    assert len(audit) == 1 and audit[0][0]["anonymised"] is True
    # the same WeChat user coming back is a new account that does not see the old records
    from api import _tokens
    from tests._servers import TEST_SECRET_KEY

    new_id = stack.sql("INSERT INTO users (openid) VALUES (%s) RETURNING id", user.openid)[0][0]
    fresh, _ = _tokens.issue(User(int(new_id), user.openid), secret_key=TEST_SECRET_KEY, ttl_s=60)
    assert get(stack, "/v1/me/records", fresh).json()["records"] == []
    assert get(stack, f"/v1/me/records/{rid}", fresh).status_code == 404
