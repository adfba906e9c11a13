"""Shift handover (交班) end to end, every part real: a simulated site sells through the link server, a
driver pays one sale with WeChat Pay (fake gateway, worker), the cashier takes the others, the price of 92#
changes mid-shift, and the outgoing attendant plants a cash shortfall. The handover takes the controller's
totalisers, reconciles expected against counted cash, is signed by both attendants, cannot be edited
afterwards and is corrected only by an audited entry."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests._console import PASSWORD, console, create_staff
from tests._payments import wait_for
from tests._sale_pay import PayStack

pytestmark = pytest.mark.slow  # real processes


def cashier(stack: PayStack, site, pump: int, litres: str, *, nozzle: int = 1) -> int:  # type: ignore[no-untyped-def]
    sale_id = stack.fuel(site, pump, litres, nozzle=nozzle)
    tx = stack.sale(sale_id)["site_tx_id"]
    site.post(f"/pumps/{pump}/cashier", site_tx_id=tx)
    wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="the cashier's sale")
    return sale_id


def test_handover_with_a_price_change_and_a_cash_shortfall(stack: PayStack) -> None:
    assert stack.api is not None
    base = stack.api.base
    site = stack.site()
    station = site.station
    manager = console(base, create_staff(base, station, "manager"))
    outgoing_name = create_staff(base, station, "attendant", by=manager)
    incoming_name = create_staff(base, station, "attendant", by=manager)
    outgoing = console(base, outgoing_name)

    r = outgoing.post("/v1/console/shifts")
    assert r.status_code == 201, r.text
    shift = r.json()
    assert shift["state"] == "open"
    assert outgoing.post("/v1/console/shifts").status_code == 409  # one running shift per station

    # 92# at the site's opening price, paid at the till
    first = cashier(stack, site, 1, "10", nozzle=1)
    # 95# paid by a driver with WeChat Pay
    paid = stack.fuel(site, 2, "20", nozzle=2)
    _, token = stack.user()
    body = stack.pay(paid, token, str(uuid.uuid4())).json()
    assert stack.wx_pay(body)[0] == 200
    wait_for(lambda: stack.sale(paid)["state"] == "cleared", timeout_s=30, what="the WeChat sale cleared")
    # the price board changes 92# mid-shift; the next 92# sale is sold at the new price
    old_price = stack.sql("SELECT unit_price_fen FROM fcc_sales WHERE id = %s", first)[0][0]
    new_price = old_price + 37
    site.post("/prices/92", price=f"{new_price / 100:.2f}")
    second = cashier(stack, site, 1, "15", nozzle=1)
    sales = {
        r[0]: r[1:]
        for r in stack.sql(
            "SELECT id, volume_ml, amount_fen, unit_price_fen FROM fcc_sales WHERE station_id = %s", station
        )
    }
    assert sales[second][2] == new_price
    cash_sales = sales[first][1] + sales[second][1]
    wechat_sale = sales[paid][1]

    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/close")
    assert r.status_code == 200, r.text
    closed = r.json()
    assert closed["state"] == "counting"
    nozzles = {(n["pump_no"], n["nozzle_no"]): n for n in closed["nozzles"]}
    n92 = nozzles[(1, 1)]
    # the controller's volume totaliser moved by exactly the two sales; the amount is the sum of sales,
    # each at its own price, which volume x the closing price would get wrong
    assert n92["closing_ml"] - n92["opening_ml"] == 25_000 == n92["sales_ml"]
    assert n92["sales"] == 2 and n92["prices"] == [old_price, new_price]
    assert n92["amount_fen"] == cash_sales
    assert n92["amount_fen"] != 25 * new_price
    assert nozzles[(2, 2)]["amount_fen"] == wechat_sale and nozzles[(2, 2)]["sales_ml"] == 20_000
    assert closed["wechat_fen"] == wechat_sale
    assert sum(n["amount_fen"] for n in closed["nozzles"]) == cash_sales + wechat_sale

    # the incoming attendant cannot sign before the tenders are in and the outgoing one has signed
    sign_in = {"username": incoming_name, "password": PASSWORD}
    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/sign-incoming", json=sign_in)
    assert r.status_code == 409 and "counting" in r.json()["error"]["message"], r.text
    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/sign-outgoing")
    assert (r.status_code == 409 and "tenders" in r.text) or "cash" in r.text, r.text

    # the attendant declares the cash taken, but 20 yuan are missing from the drawer
    short = 2_000
    tenders = {
        "cash_fen": cash_sales,
        "card_fen": 0,
        "counted_cash_fen": cash_sales - short,
        "tolerance_fen": 500,
    }
    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/tenders", json=tenders)
    assert r.status_code == 200, r.text
    rec = r.json()["reconciliation"]
    assert rec["sales_fen"] == cash_sales + wechat_sale
    assert rec["expected_cash_fen"] == cash_sales
    assert rec["cash_difference_fen"] == -short and rec["status"] == "short"
    assert rec["unreported_ml"] == 0 and rec["tender_difference_fen"] == 0

    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/sign-outgoing")
    assert r.status_code == 200 and r.json()["state"] == "awaiting_incoming", r.text
    wrong = outgoing.post(
        f"/v1/console/shifts/{shift['id']}/sign-incoming", json={**sign_in, "password": "not-the-password"}
    )
    assert wrong.status_code == 401, wrong.text
    same = outgoing.post(
        f"/v1/console/shifts/{shift['id']}/sign-incoming",
        json={"username": outgoing_name, "password": PASSWORD},
    )
    assert same.status_code == 409, same.text  # the incoming signature is another attendant's
    r = outgoing.post(f"/v1/console/shifts/{shift['id']}/sign-incoming", json=sign_in)
    assert r.status_code == 200, r.text
    signed, nxt = r.json()["signed"], r.json()["next_shift"]
    assert signed["state"] == "signed" and signed["signed_summary"]["status"] == "short"
    assert nxt["state"] == "open" and nxt["attendant_id"] == signed["incoming_id"]
    assert datetime.fromisoformat(nxt["opened_at"]) == datetime.fromisoformat(signed["closed_at"])

    # signed: immutable; a manager corrects it with an audited entry, the signed figures stay
    again = outgoing.post(f"/v1/console/shifts/{shift['id']}/tenders", json=tenders)
    assert again.status_code == 409 and "correction" in again.json()["error"]["message"], again.text
    assert (
        outgoing.post(
            f"/v1/console/shifts/{shift['id']}/corrections",
            json={"field": "counted_cash_fen", "delta_fen": short, "reason": "found in the safe"},
        ).status_code
        == 403
    )  # attendants do not correct
    r = manager.post(
        f"/v1/console/shifts/{shift['id']}/corrections",
        json={"field": "counted_cash_fen", "delta_fen": short, "reason": "found in the safe"},
    )
    assert r.status_code == 200, r.text
    corrected = r.json()
    assert corrected["reconciliation"]["status"] == "balanced"
    assert (
        corrected["signed_summary"]["status"] == "short"
        and corrected["counted_cash_fen"] == cash_sales - short
    )
    audit = stack.sql(
        "SELECT actor, action, new_value->>'event' FROM audit_log WHERE entity = 'shift' AND entity_id = %s"
        " ORDER BY id",
        str(shift["id"]),
    )
    assert [a[2] for a in audit] == [None, "close", "enter_tenders", "sign_outgoing", "sign_incoming"]
    assert (
        stack.sql(
            "SELECT count(*) FROM audit_log WHERE entity = 'shift_correction' AND new_value->>'shift_id' = %s",
            str(shift["id"]),
        )[0][0]
        == 1
    )

    # the day's reports see the shift's attendant and the tenders
    r = manager.get("/v1/console/reports/sales", params={"by": "payment"})
    assert r.status_code == 200, r.text
    by_payment = {row["key"]: row["amount_fen"] for row in r.json()["rows"]}
    assert by_payment == {"station": cash_sales, "wechat": wechat_sale}
    r = manager.get("/v1/console/reports/sales", params={"by": "attendant"})
    assert [row["sales"] for row in r.json()["rows"]] == [3]
    # today cannot be closed while it runs
    today = (
        datetime.fromisoformat(signed["closed_at"]).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    )
    r = manager.post("/v1/console/daily-closes", json={"business_day": today})
    assert r.status_code == 409 and "not over" in r.text, r.text


def test_who_may_create_staff_and_the_lockout_over_http(stack: PayStack) -> None:
    assert stack.api is not None
    base = stack.api.base
    site = stack.site(pumps=1)
    other = stack.site(pumps=1)
    manager = console(base, create_staff(base, site.station, "manager"))
    attendant_name = create_staff(base, site.station, "attendant", by=manager)
    attendant = console(base, attendant_name)

    def body(station: int, role: str) -> dict:
        return {
            "station_id": station,
            "username": f"n-{uuid.uuid4().hex[:8]}",
            "display_name": "新员工",
            "role": role,
            "password": PASSWORD,
        }

    cases = [
        (manager, body(other.station, "attendant"), 403, "own station"),
        (manager, body(site.station, "manager"), 403, "operators"),
        (attendant, body(site.station, "attendant"), 403, "may not create"),
    ]
    for client, payload, status, words in cases:
        r = client.post("/v1/console/staff", json=payload)
        assert r.status_code == status and words in r.json()["error"]["message"], r.text
    anonymous = httpx.post(f"{base}/v1/console/staff", json=body(site.station, "attendant"), timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Cookie")
    weak = manager.post(
        "/v1/console/staff", json={**body(site.station, "attendant"), "password": "aaaaaaaaaaaa"}
    )
    assert weak.status_code == 422 and weak.json()["error"]["param"] == "password", weak.text
    assert attendant.get("/v1/console/reports/sales").status_code == 403  # reports are the manager's
    assert attendant.get("/v1/console/staff").status_code == 403
    # the 5th wrong password in a row locks the account: 429 with Retry-After, even for the right password
    statuses = [
        httpx.post(
            f"{base}/v1/console/login",
            json={"username": attendant_name, "password": f"wrong-{i}"},
            timeout=30,
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 401, 429]
    locked = httpx.post(
        f"{base}/v1/console/login", json={"username": attendant_name, "password": PASSWORD}, timeout=30
    )
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 800, locked.text
    assert "locked" in locked.json()["error"]["message"]
    audit = stack.sql(
        "SELECT new_value ? 'locked_until' FROM audit_log WHERE entity = 'staff' AND actor LIKE 'login:%%'"
    )
    assert audit and all(a[0] for a in audit)
    # a session ends at logout
    assert attendant.post("/v1/console/logout").status_code == 204
    assert attendant.get("/v1/console/me").status_code == 401
