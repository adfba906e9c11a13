"""Points through the real stack (fake WeChat Pay gateway, link server, simulated site, API, payments
worker): a paid fill-up earns once, `redeem_points` takes points off the order (held with the order,
posted on the notification, voided when the order closes unpaid), bad redemptions are refused with a 422
naming `redeem_points`, a refund reverses exactly, and `GET /v1/me/points` shows it all."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from payments._sale import fsc_tx_id_for
from store import _ledger
from store._users import User
from tests._payments import wait_for
from tests._sale_pay import PayStack

pytestmark = pytest.mark.slow  # real processes


def points(stack: PayStack, token: str, **params: Any) -> dict[str, Any]:
    assert stack.api is not None
    r = httpx.get(
        f"{stack.api.base}/v1/me/points",
        headers={"Authorization": f"Bearer {token}"},
        params=params,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def give(stack: PayStack, user_id: int, n: int) -> None:
    with psycopg.connect(stack.db_url) as conn:
        _ledger.earn(
            conn,
            user_id=user_id,
            out_trade_no=f"seed-{uuid.uuid4().hex}",
            points=n,
            earned_at=datetime.now().astimezone() - timedelta(days=2),  # not today: outside today's cap
            expiry_months=12,
            actor="test",
        )


def redeeming_order(stack: PayStack, pump: int, litres: str, n: int) -> tuple[int, User, str, dict[str, Any]]:
    """A fill-up ordered by a new driver given `n` points who redeems them all: (the sale id, the driver,
    their token, the pay answer)."""
    sale_id = stack.fuel(stack.site(), pump, litres)
    user, token = stack.user()
    give(stack, user.id, n)
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": n})
    assert r.status_code == 200, r.text
    return sale_id, user, token, r.json()


def verify(stack: PayStack) -> list[str]:
    with psycopg.connect(stack.db_url) as conn:
        return _ledger.verify(conn)


def test_a_paid_fill_up_earns_once_and_a_redemption_is_held_then_posted(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "20", nozzle=2)  # 95# at 8.18: 163.60 CNY
    user, token = stack.user()
    give(stack, user.id, 2_500)
    # refused: not a multiple of the unit, more than the balance; nothing is locked or held
    for bad, words in ((1_500, "multiple of 1000"), (3_000, "unexpired points")):
        r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": bad})
        assert r.status_code == 422, (r.text, stack.api.output() if stack.api else "")
        assert "redeem_points" in r.text and words in r.text
    assert stack.sale(sale_id)["locked_by"] is None
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 2_000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["sale_amount_fen"], body["redeemed_points"], body["redemption_fen"]) == (
        16_360,
        2_000,
        2_000,
    )
    assert body["amount_fen"] == 16_360 - body["discount_fen"] - 2_000  # no fuel, no pay: recorded
    mine = points(stack, token)
    assert mine["balance"] == 500 and mine["redeemable"] == 500
    assert [(h["out_trade_no"], h["points"]) for h in mine["pending"]] == [(body["out_trade_no"], 2_000)]
    assert stack.wx_pay(body)[0] == 200
    no = body["out_trade_no"]
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    earned = body["amount_fen"] // 100  # 1 point per whole CNY paid
    wait_for(lambda: points(stack, token)["balance"] == 500 + earned, timeout_s=30, what="points earned")
    mine = points(stack, token, limit=2)
    assert mine["pending"] == [] and [e["kind"] for e in mine["history"]] == ["earn", "hold"]
    older = points(stack, token, limit=2, cursor=mine["next_cursor"])
    assert [e["kind"] for e in older["history"]] == ["earn"] and older["next_cursor"] is None
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("posted",)]
    # a replayed notification earns nothing more
    assert stack.sql("SELECT count(*) FROM ledger_transfers WHERE ref = %s", f"earn:{no}") == [(1,)]
    assert verify(stack) == []


def test_an_unpaid_order_voids_its_hold(stack: PayStack) -> None:
    _, _, token, body = redeeming_order(stack, 2, "10", 1_000)
    no = body["out_trade_no"]
    assert points(stack, token)["balance"] == 0
    stack.close_unpaid(no)
    wait_for(lambda: points(stack, token)["balance"] == 1_000, timeout_s=30, what="the hold voided")
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("voided",)]
    assert verify(stack) == []


def test_a_payment_after_its_hold_was_released_opens_a_case(stack: PayStack) -> None:
    """The order closed unpaid (its hold voided, the points back), then WeChat Pay reports it paid after
    all: the driver paid the discounted amount without redeeming; the sale is cleared by that payment and
    a `points_released` case is opened once for a person to settle."""
    sale_id, user, token, body = redeeming_order(stack, 1, "12", 2_000)
    no = body["out_trade_no"]
    assert (body["redeemed_points"], body["redemption_fen"]) == (2_000, 2_000)
    stack.close_unpaid(no)
    wait_for(lambda: points(stack, token)["balance"] == 2_000, timeout_s=30, what="the hold voided")
    wait_for(lambda: stack.sale(sale_id)["state"] == "payable", what="the site's SALE line")
    assert stack.gateway.control("late-pay", out_trade_no=no)[0] == 200
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="the late notification")
    cases = stack.sql("SELECT kind, sale_id, detail FROM payment_cases WHERE out_trade_no = %s", no)
    assert len(cases) == 1 and cases[0][:2] == ("points_released", sale_id), cases
    detail = cases[0][2]
    assert {k: detail[k] for k in ("user_id", "points", "fen_off", "sale_id")} == {
        "user_id": user.id,
        "points": 2_000,
        "fen_off": 2_000,
        "sale_id": sale_id,
    }
    assert "积分" in detail["reason"] and "points" in detail["reason"]
    # the sale ends cleared by that payment, of the discounted amount, nothing refunded
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="CLEAR after all")
    wait_for(lambda: stack.sale(sale_id)["state"] == "cleared", what="the site's SALE line")
    assert stack.sale(sale_id)["cleared_by"] == fsc_tx_id_for(sale_id, user.id)
    paid = stack.payment(no)
    assert (paid["paid_fen"], paid["refunded_fen"]) == (body["amount_fen"], 0)
    # the redeemed points were not taken: the balance is what was given plus what the payment earned
    earned = body["amount_fen"] // 100
    wait_for(lambda: points(stack, token)["balance"] == 2_000 + earned, timeout_s=30, what="points earned")
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("voided",)]
    kinds = stack.sql("SELECT kind FROM ledger_transfers WHERE out_trade_no = %s ORDER BY id", no)
    assert [k for (k,) in kinds] == ["hold", "void", "earn"]
    audit = stack.sql(
        "SELECT action FROM audit_log WHERE entity = 'payment_case' AND entity_id = %s",
        f"{no}:points_released",
    )
    assert audit == [("create",)]
    assert verify(stack) == []


def test_a_late_payment_refunded_in_full_settles_its_points_case(stack: PayStack) -> None:
    """As above, but the cashier took the released sale meanwhile: the late payment is refunded in full, so
    its `points_released` case owes nothing and is resolved by the service (audited), not left open."""
    sale_id, _, token, body = redeeming_order(stack, 2, "9", 1_000)
    no = body["out_trade_no"]
    stack.close_unpaid(no)
    wait_for(lambda: stack.sale(sale_id)["state"] == "payable", what="the site's SALE line")
    site = stack.sites[-1]
    site.post("/pumps/2/cashier")  # the cashier takes the released sale
    wait_for(lambda: stack.sale(sale_id)["cleared_by"] == "cashier", what="cashier")
    assert stack.gateway.control("late-pay", out_trade_no=no)[0] == 200
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="the refund")

    def case() -> tuple[Any, ...] | None:
        rows = stack.sql(
            "SELECT kind, resolved_by, resolution_note FROM payment_cases WHERE out_trade_no = %s"
            " AND kind = 'points_released' AND resolved_at IS NOT NULL",
            no,
        )
        return rows[0] if rows else None

    resolved = wait_for(case, timeout_s=30, what="the case resolved")
    assert resolved[1] == "points" and "refunded in full" in resolved[2], resolved
    audit = stack.sql(
        "SELECT action FROM audit_log WHERE entity = 'payment_case' AND entity_id = %s ORDER BY id",
        f"{no}:points_released",
    )
    assert audit == [("create",), ("update",)]
    # the driver keeps the points, and the earned ones went back with the refund
    wait_for(lambda: points(stack, token)["balance"] == 1_000, timeout_s=30, what="points after the refund")
    assert verify(stack) == []


def test_a_refund_reverses_the_points_exactly(stack: PayStack) -> None:
    _, _, token, body = redeeming_order(stack, 1, "10", 1_000)
    no = body["out_trade_no"]
    assert stack.wx_pay(body)[0] == 200
    wait_for(lambda: stack.payment(no)["state"] == "paid", timeout_s=30, what="paid")
    wait_for(
        lambda: points(stack, token)["balance"] == body["amount_fen"] // 100, timeout_s=30, what="earned"
    )
    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        from payments._flow import request_refund

        request_refund(
            conn,
            out_trade_no=no,
            out_refund_no=f"r-{no}",
            refund_fen=body["amount_fen"],
            reason="test",
            actor="test",
        )
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="refund")
    wait_for(lambda: points(stack, token)["balance"] == 1_000, timeout_s=30, what="points reversed")
    kinds = stack.sql("SELECT kind, amount FROM ledger_transfers WHERE out_trade_no = %s ORDER BY id", no)
    assert [k for k, _ in kinds] == ["hold", "post", "earn", "reverse_earn", "return_redeemed"]
    assert dict(kinds)["reverse_earn"] == dict(kinds)["earn"] and dict(kinds)["return_redeemed"] == 1_000
    assert verify(stack) == []
