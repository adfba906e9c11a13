"""Points redeemed on a fuelling session's payment, end to end through the endpoint the web page pays with
(`POST /v1/fuelling/sessions/{id}/pay?redeem_points=N`), every part a real process (fake WeChat Pay
gateway, link server, simulated site, API, payments worker): the redemption is held with the order,
posted by the paid notification (once, however often WeChat repeats it), and voided when the payment
fails and the order is closed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from config import load_loyalty_rules
from store._nozzles import issue_tokens
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY
from tests.test_points_pay import give, points, verify

pytestmark = pytest.mark.slow  # real processes


def fuelled_session(stack: PayStack, token: str) -> tuple[dict[str, Any], SimProcess]:
    """A session bound to pump 1 nozzle 1 of a new site by scanning its QR token, fuelled 20 L and
    completed: the session as the API answers it."""
    assert stack.api is not None
    site = stack.site()
    with psycopg.connect(stack.db_url) as conn:
        tokens = {(t.pump_no, t.nozzle_no): t.token for t in issue_tokens(
            conn, site.station, actor="test", secret_key=TEST_SECRET_KEY
        )}  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    base = stack.api.base
    r = httpx.post(
        f"{base}/v1/fuelling/sessions",
        json={"nozzle_token": tokens[(1, 1)]},
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    site.post("/pumps/1/lift", nozzle=1)
    site.post("/pumps/1/fuel", litres="20", wait="true")
    site.post("/pumps/1/hangup")

    def completed() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(
            f"{base}/v1/fuelling/sessions/{sid}", headers=auth, timeout=10
        ).json()
        return body if body["state"] == "completed" and body["final_amount_fen"] else None

    return wait_for(completed, timeout_s=30, what="the completed session"), site


def pay_session(stack: PayStack, sid: int, token: str, redeem: int) -> httpx.Response:
    assert stack.api is not None
    return httpx.post(
        f"{stack.api.base}/v1/fuelling/sessions/{sid}/pay",
        params={"redeem_points": redeem},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )


def transfers(stack: PayStack, no: str) -> list[tuple[str, int]]:
    rows = stack.sql("SELECT kind, amount FROM ledger_transfers WHERE out_trade_no = %s ORDER BY id", no)
    return [(str(k), int(a)) for k, a in rows]


def test_session_pay_redeems_points_held_then_posted_once(stack: PayStack) -> None:
    rules = load_loyalty_rules().redemption
    user, token = stack.user()
    give(stack, user.id, 1_500)
    session, _ = fuelled_session(stack, token)
    due = session["final_amount_fen"]  # the sale less its promotion: what the page shows before points
    before = points(stack, token)
    assert (before["balance"], before["redeemable"], before["unit_fen"]) == (1_500, 1_500, rules.unit_fen)

    r = pay_session(stack, session["id"], token, rules.unit_points)
    assert r.status_code == 200, r.text
    order = r.json()
    no = order["out_trade_no"]
    assert (order["redeemed_points"], order["redemption_fen"]) == (rules.unit_points, rules.unit_fen)
    assert order["amount_fen"] == due - rules.unit_fen  # the charge drops by the configured fen
    # held with the order: out of the balance, shown as pending, nothing posted yet
    held = points(stack, token)
    assert held["balance"] == 1_500 - rules.unit_points
    assert [(h["out_trade_no"], h["points"], h["fen_off"]) for h in held["pending"]] == [
        (no, rules.unit_points, rules.unit_fen)
    ]
    assert transfers(stack, no) == [("hold", rules.unit_points)]

    # WeChat Pay sends the paid notification twice: the second changes nothing
    assert stack.gateway.control("faults", fault="duplicate")[0] == 200
    assert stack.wx_pay(order)[0] == 200
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    assert stack.payment(no)["paid_fen"] == due - rules.unit_fen

    def replayed() -> bool:
        notes = [n for n in stack.gateway.get("notifications") if n["resource"].get("out_trade_no") == no]
        return len(notes) == 1 and notes[0]["delivered"] and len(notes[0]["attempts"]) >= 2

    wait_for(replayed, timeout_s=30, what="the repeated notification")
    earned = order["amount_fen"] // 100  # 1 point per whole CNY paid
    assert transfers(stack, no) == [
        ("hold", rules.unit_points),
        ("post", rules.unit_points),
        ("earn", earned),
    ]
    after = points(stack, token)
    assert after["balance"] == 1_500 - rules.unit_points + earned  # down by exactly the redeemed points
    assert after["pending"] == []
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("posted",)]
    # and the e-record shows the redemption
    assert stack.api is not None
    rec = httpx.get(
        f"{stack.api.base}/v1/me/records", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()["records"][0]
    assert (rec["receipt"]["receipt_no"], rec["points_redeemed"], rec["redemption_fen"]) == (
        no,
        rules.unit_points,
        rules.unit_fen,
    )
    assert (rec["amount_paid_fen"], rec["points_earned"]) == (due - rules.unit_fen, earned)
    assert verify(stack) == []


def test_a_failed_session_payment_voids_its_hold(stack: PayStack) -> None:
    rules = load_loyalty_rules().redemption
    user, token = stack.user()
    give(stack, user.id, 2_000)
    session, _ = fuelled_session(stack, token)
    r = pay_session(stack, session["id"], token, 2 * rules.unit_points)
    assert r.status_code == 200, r.text
    order = r.json()
    no = order["out_trade_no"]
    assert order["amount_fen"] == session["final_amount_fen"] - 2 * rules.unit_fen
    assert points(stack, token)["balance"] == 0
    # the payment sheet fails; the sweep finds the order failed at WeChat Pay and closes it
    status, answer = stack.gateway.control("pay", **order["request_payment"], result="PAYERROR")
    assert status == 200 and "fail" in answer["errMsg"]
    # old enough for the sweep (FUEL_PAYMENTS_SWEEP_AFTER_S) however soon the job runs; not expired: the
    # order is closed because WeChat Pay says PAYERROR
    stack.sql(
        "UPDATE payments SET created_at = now() - interval '1 minute' WHERE out_trade_no = %s RETURNING 1", no
    )
    stack.sweep()
    wait_for(lambda: stack.payment(no)["state"] == "closed", timeout_s=30, what="the order closed")
    wait_for(lambda: points(stack, token)["balance"] == 2_000, timeout_s=30, what="the hold voided")
    mine = points(stack, token)
    assert mine["pending"] == [] and mine["redeemable"] == 2_000
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("voided",)]
    assert transfers(stack, no) == [("hold", 2 * rules.unit_points), ("void", 2 * rules.unit_points)]
    assert stack.payment(no)["paid_fen"] is None
    assert verify(stack) == []
