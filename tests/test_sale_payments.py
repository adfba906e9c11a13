"""Paying a controller sale end to end, every part a real process (fake WeChat Pay gateway, link server,
simulated site, API, payments worker): LOCKTX, the JSAPI order behind an Idempotency-Key, the
notification, CLEAR at the site once, the cashier-first refund, the unpaid order closed and the sale
unlocked, and sales that must not be paid."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from payments import _queue
from payments._sale import fsc_tx_id_for
from store._nozzles import issue_tokens
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes


def test_a_sale_is_locked_ordered_paid_and_cleared_once(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "20", nozzle=2)  # 95# at 8.18: 163.60 CNY
    user, token = stack.user()
    key = str(uuid.uuid4())
    r = stack.pay(sale_id, token, key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["sale_id"], body["sale_amount_fen"], body["amount_fen"]) == (sale_id, 16_360, 16_360)
    assert body["request_payment"]["package"].startswith("prepay_id=")
    fsc = fsc_tx_id_for(sale_id, user.id)
    assert stack.sale(sale_id)["state"] == "locked" and stack.sale(sale_id)["locked_by"] == fsc
    # a retried request (same key) gets the same answer; a double tap (another key) the same order
    assert stack.pay(sale_id, token, key).json() == body
    again = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    assert again["out_trade_no"] == body["out_trade_no"]
    assert again["request_payment"]["package"] == body["request_payment"]["package"]
    assert stack.sql("SELECT count(*) FROM payments WHERE sale_ref = %s", f"fcc:{sale_id}")[0][0] == 1
    # the driver pays; the notification records it, the worker clears the sale at the site
    status, answer = stack.wx_pay(body)
    assert status == 200, answer
    no = body["out_trade_no"]
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="CLEAR")
    sale = stack.sale(sale_id)
    wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="the site's SALE line")
    assert stack.sale(sale_id)["cleared_by"] == fsc
    assert stack.payment(no)["state"] == "paid" and stack.payment(no)["paid_fen"] == 16_360
    clears = stack.commands(site.station, "CLEAR")
    assert [c[1] for c in clears] == [True]  # one CLEAR
    # paying it again: 409 (paid), nothing new
    late = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert late.status_code == 409, late.text
    assert sale["id"] == sale_id


def test_two_workers_and_a_repeated_job_send_one_clear(stack: PayStack) -> None:
    site = stack.site()
    second = stack.add_worker()
    try:
        sale_id = stack.fuel(site, 2, "10")
        _, token = stack.user()
        body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
        no = body["out_trade_no"]
        # hold the sale payment so that both jobs queue up behind it
        with psycopg.connect(stack.db_url) as conn, conn.transaction():
            conn.execute("SELECT 1 FROM sale_payments WHERE out_trade_no = %s FOR UPDATE", (no,))
            assert stack.wx_pay(body)[0] == 200
            wait_for(lambda: stack.payment(no)["state"] == "paid", what="paid")
            with psycopg.connect(stack.db_url) as other, other.transaction():
                _queue.defer(other, _queue.CLEAR_SALE, out_trade_no=no)  # a second delivery
            wait_for(
                lambda: sum(j["status"] == "doing" for j in _queue.jobs_of(conn, _queue.CLEAR_SALE)) >= 2,
                what="both jobs running",
            )
        wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="CLEAR")
        wait_for(
            lambda: all(
                j["status"] == "succeeded"
                for j in _queue.jobs_of(psycopg.connect(stack.db_url), _queue.CLEAR_SALE)
                if j["args"] == {"out_trade_no": no}
            ),
            what="both jobs done",
        )
        assert len(stack.commands(site.station, "CLEAR")) == 1
    finally:
        second.close()
        stack.workers.remove(second)


def test_a_sale_the_cashier_took_meanwhile_is_refunded_in_full(stack: PayStack) -> None:
    site = stack.site()
    body = stack.ordered_then_taken_by_the_cashier(site, 1, "5")
    no = body["out_trade_no"]
    assert stack.wx_pay(body)[0] == 200  # the driver pays anyway
    wait_for(lambda: stack.payment(no)["site_state"] == "paid_elsewhere", timeout_s=30, what="CLEAR 403")
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="refund")
    assert [c[2] for c in stack.commands(site.station, "CLEAR")] == [403]
    refunds = stack.sql("SELECT refund_fen, state FROM payment_refunds WHERE out_trade_no = %s", no)
    assert refunds == [(body["amount_fen"], "success")]


def test_an_unpaid_order_is_closed_and_the_sale_unlocked_for_the_cashier(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 2, "8")
    _, token = stack.user()
    body = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    no = body["out_trade_no"]
    assert stack.sale(sale_id)["state"] == "locked"
    stack.sql(  # as if the order's 15 minutes had passed without the driver paying
        "UPDATE payments SET expires_at = now() - interval '1 second', created_at = now() - interval '16 minutes'"
        " WHERE out_trade_no = %s RETURNING 1",
        no,
    )
    stack.sweep()
    wait_for(lambda: stack.payment(no)["state"] == "closed", timeout_s=30, what="closed")
    wait_for(lambda: stack.payment(no)["site_state"] == "unlocked", timeout_s=30, what="UNLOCKTX")
    wait_for(lambda: stack.sale(sale_id)["state"] == "payable", what="the site's SALE line")
    assert [c[1] for c in stack.commands(site.station, "UNLOCKTX")] == [True]
    site.post("/pumps/2/cashier")  # the cashier can take it now
    wait_for(lambda: stack.sale(sale_id)["cleared_by"] == "cashier", what="cashier")


def test_sales_that_must_not_be_paid(stack: PayStack) -> None:
    site = stack.site()
    a = stack.fuel(site, 1, "4")
    b = stack.fuel(site, 2, "6")
    _, alice_token = stack.user()
    _, bob_token = stack.user()
    assert stack.pay(a, alice_token).status_code == 422  # no Idempotency-Key
    assert stack.pay(a, "not-a-token", "k1").status_code == 401
    assert stack.pay(999_999_999, alice_token, "k2").status_code == 404
    # someone else is paying it: 409 at our check, and at the site for another payer's lock
    assert stack.pay(a, alice_token, "k3").status_code == 200
    taken = stack.pay(a, bob_token, "k4")
    assert taken.status_code == 409, taken.text
    # settled at the cashier: 410
    site.post("/pumps/2/cashier")
    wait_for(lambda: stack.sale(b)["state"] == "cleared", what="cashier")
    gone = stack.pay(b, bob_token, "k5")
    assert gone.status_code == 410, gone.text
    assert stack.pay(b, bob_token, "k5").status_code == 410  # the stored answer
    # a key reused for another sale
    assert stack.pay(b, alice_token, "k3").status_code == 422
    # no fuel, no pay: a sale whose volume is not its totaliser delta is under review
    row = stack.sql(
        "INSERT INTO fcc_sales (station_id, pump_no, nozzle_no, site_tx_id, grade, volume_ml, amount_fen,"
        " unit_price_fen, totaliser_start_ml, totaliser_end_ml, state, review_reason)"
        " VALUES (%s, 1, 1, 'FAKE-1', '92', 67960, 52329, 770, 1000, 40780, 'payable',"
        " 'volume 67960 ml differs from the totaliser delta 39780 ml') RETURNING id",
        site.station,
    )
    review = stack.pay(int(row[0][0]), bob_token, "k6")
    assert review.status_code == 409 and "review" in review.json()["error"]["message"]
    assert stack.sql("SELECT count(*) FROM payments WHERE sale_ref = %s", f"fcc:{row[0][0]}")[0][0] == 0


def test_a_fuelling_session_is_paid_through_its_sale(stack: PayStack) -> None:
    """The driver's loop: bind the nozzle, fuel, pay the session; the session follows its sale's lock and
    payment (locked, then paid) and someone else cannot pay it."""
    site = stack.site()
    with psycopg.connect(stack.db_url) as conn:
        issued = issue_tokens(conn, site.station, actor="test", secret_key=TEST_SECRET_KEY)
    tokens = {(t.pump_no, t.nozzle_no): t.token for t in issued}
    assert stack.api is not None
    api = stack.api.base
    _, token = stack.user()
    auth = {"Authorization": f"Bearer {token}"}
    bound = httpx.post(f"{api}/v1/fuelling/sessions", json={"nozzle_token": tokens[(1, 1)]}, headers=auth)
    assert bound.status_code == 201, bound.text
    sid = bound.json()["id"]
    early = httpx.post(
        f"{api}/v1/fuelling/sessions/{sid}/pay", headers={**auth, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert early.status_code == 409, early.text  # nothing to pay before the fill-up ends
    sale_id = stack.fuel(site, 1, "10", nozzle=1)

    def state() -> str:
        return str(httpx.get(f"{api}/v1/fuelling/sessions/{sid}", headers=auth).json()["state"])

    wait_for(lambda: state() == "completed", what="the completed session")
    _, other = stack.user()
    stranger = httpx.post(
        f"{api}/v1/fuelling/sessions/{sid}/pay",
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": str(uuid.uuid4())},
    )
    assert stranger.status_code == 403, stranger.text
    r = httpx.post(
        f"{api}/v1/fuelling/sessions/{sid}/pay",
        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sale_id"] == sale_id and body["sale_amount_fen"] == stack.sale(sale_id)["amount_fen"]
    assert state() == "locked"
    status, answer = stack.wx_pay(body)
    assert status == 200, answer
    wait_for(lambda: state() == "paid", timeout_s=30, what="the paid session")
    wait_for(
        lambda: stack.payment(body["out_trade_no"])["site_state"] == "cleared", timeout_s=30, what="CLEAR"
    )
