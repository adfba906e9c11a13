"""The unlock race: an order closed unpaid (its sale unlocked for the cashier) and a payment WeChat Pay
took at the last moment, whose notification comes after. The money is real: the sale must end cleared by
that payment, or the payment refunded in full when the cashier took the sale meanwhile; never paid and
left unsettled. Real processes throughout (fake gateway, link server, simulated site, API, worker)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from api import _tokens
from payments import _queue
from payments._sale import fsc_tx_id_for
from store._users import User
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes


def closed_and_unlocked(
    stack: PayStack, site: SimProcess, pump: int, litres: str
) -> tuple[int, int, dict[str, Any]]:
    """A sale ordered by a driver whose order the sweep closed unpaid and whose sale it unlocked."""
    sale_id = stack.fuel(site, pump, litres)
    user, token = stack.user()
    body: dict[str, Any] = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    no = body["out_trade_no"]
    stack.close_unpaid(no)
    wait_for(lambda: stack.sale(sale_id)["state"] == "payable", what="the site's SALE line")
    return sale_id, user.id, body


def test_a_late_payment_of_a_closed_order_clears_the_sale_still_payable(stack: PayStack) -> None:
    site = stack.site()
    sale_id, user_id, body = closed_and_unlocked(stack, site, 1, "7")
    no = body["out_trade_no"]
    status, answer = stack.gateway.control("late-pay", out_trade_no=no)
    assert status == 200, answer
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="the late notification")
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="CLEAR after all")
    wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="the site's SALE line")
    assert stack.sale(sale_id)["cleared_by"] == fsc_tx_id_for(sale_id, user_id)
    assert [c[1] for c in stack.commands(site.station, "CLEAR")] == [True]
    assert stack.payment(no)["refunded_fen"] == 0
    # no points were redeemed: nothing for a person to settle
    assert stack.sql("SELECT kind FROM payment_cases WHERE out_trade_no = %s", no) == []


def test_a_late_payment_after_the_cashier_took_the_sale_is_refunded_in_full(stack: PayStack) -> None:
    site = stack.site()
    sale_id, _, body = closed_and_unlocked(stack, site, 2, "9")
    no = body["out_trade_no"]
    site.post("/pumps/2/cashier")  # the cashier takes the released sale
    wait_for(lambda: stack.sale(sale_id)["cleared_by"] == "cashier", what="cashier")
    assert stack.gateway.control("late-pay", out_trade_no=no)[0] == 200
    wait_for(lambda: stack.payment(no)["site_state"] == "paid_elsewhere", timeout_s=30, what="CLEAR 403")
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="the refund")
    assert [c[2] for c in stack.commands(site.station, "CLEAR")] == [403]
    refunds = stack.sql("SELECT refund_fen, state FROM payment_refunds WHERE out_trade_no = %s", no)
    assert refunds == [(body["amount_fen"], "success")]


def test_a_late_payment_while_the_payer_retried_with_a_new_order(stack: PayStack) -> None:
    site = stack.site()
    sale_id, _, body = closed_and_unlocked(stack, site, 1, "3")
    no = body["out_trade_no"]
    # the same driver pays again: a new order (attempt 1) locks the sale again
    user_id = stack.sql("SELECT user_id FROM sale_payments WHERE out_trade_no = %s", no)[0][0]
    openid = stack.sql("SELECT openid FROM users WHERE id = %s", user_id)[0][0]
    token, _ = _tokens.issue(User(id=user_id, openid=openid), secret_key=TEST_SECRET_KEY, ttl_s=3600)
    again = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert again.status_code == 200, again.text
    assert again.json()["out_trade_no"] != no
    assert stack.gateway.control("late-pay", out_trade_no=no)[0] == 200
    # one payment of the sale ends paid and cleared; any other paid one is refunded in full
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=20, what="the late payment recorded")
    newer = again.json()["out_trade_no"]
    # the late payment pays the sale; the newer order is closed here and at WeChat Pay
    assert stack.payment(newer)["state"] == "closed"
    wait_for(
        lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="CLEAR by the late payment"
    )
    wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="the site's SALE line")
    assert stack.payment(no)["refunded_fen"] == 0
    assert [c[1] for c in stack.commands(site.station, "CLEAR")] == [True]
    # the payer confirms the newer order too late: WeChat Pay refuses it (closed), nothing is charged
    status, _ = stack.wx_pay(again.json())
    assert status >= 400
    assert stack.payment(newer)["state"] == "closed"


def test_a_late_payment_after_the_sale_was_paid_again_is_refunded_in_full(
    stack: PayStack, tmp_path: Path
) -> None:
    site = stack.site()
    sale_id, user_id, body = closed_and_unlocked(stack, site, 2, "4")
    no = body["out_trade_no"]
    openid = stack.sql("SELECT openid FROM users WHERE id = %s", user_id)[0][0]
    token, _ = _tokens.issue(User(id=user_id, openid=openid), secret_key=TEST_SECRET_KEY, ttl_s=3600)
    again = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert again.status_code == 200, again.text
    newer = again.json()["out_trade_no"]
    assert stack.wx_pay(again.json())[0] == 200  # the sale is paid by the newer order
    wait_for(lambda: stack.payment(newer)["site_state"] == "cleared", timeout_s=30, what="CLEAR")
    assert stack.gateway.control("late-pay", out_trade_no=no)[0] == 200  # and then the old one is taken
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="the refund")
    dup = stack.sql("SELECT state, duplicate_of FROM payments WHERE out_trade_no = %s", no)
    assert dup == [("paid", newer)]
    assert stack.payment(newer)["refunded_fen"] == 0
    # the once-a-minute sweep has nothing to CLEAR for it: a refunded duplicate is not the sale's payment
    # (it used to CLEAR the sale again for the duplicate, and the site refused)
    _sweep_and_wait(stack)
    assert _jobs(stack, _queue.CLEAR_SALE, no) == []
    assert [c[1] for c in stack.commands(site.station, "CLEAR")] == [True]  # one CLEAR, by the newer order
    refunds = stack.sql("SELECT refund_fen, state FROM payment_refunds WHERE out_trade_no = %s", no)
    assert refunds == [(body["amount_fen"], "success")]
    assert stack.sql("SELECT kind FROM payment_cases WHERE out_trade_no = %s", no) == []
    # the day's reconciliation matches it: paid, and refunded in full
    out = tmp_path / "report.json"
    stack.reconcile(datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat(), "--output", str(out))
    report = json.loads(out.read_text())
    assert no in report["matched"], [f for f in report["mismatches"] if f["ref"] == no]


def _jobs(stack: PayStack, task: str, out_trade_no: str) -> list[str]:
    rows = stack.sql(
        "SELECT status::text FROM procrastinate_jobs WHERE task_name = %s AND args->>'out_trade_no' = %s",
        task,
        out_trade_no,
    )
    return [r[0] for r in rows]


def _sweep_and_wait(stack: PayStack) -> None:
    """Run the sweep now and wait until it has run (with every job it deferred queued by then)."""
    last = stack.sql(
        "SELECT coalesce(max(id), 0) FROM procrastinate_jobs WHERE task_name = %s", _queue.SWEEP
    )[0][0]
    stack.sweep()
    wait_for(
        lambda: (
            stack.sql(
                "SELECT status::text FROM procrastinate_jobs WHERE task_name = %s AND id > %s ORDER BY id LIMIT 1",
                _queue.SWEEP,
                last,
            )
            == [("succeeded",)]
        ),
        timeout_s=30,
        what="the sweep",
    )
