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

from store import _ledger
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
    site = stack.site()
    sale_id = stack.fuel(site, 2, "10")
    user, token = stack.user()
    give(stack, user.id, 1_000)
    body = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000}).json()
    no = body["out_trade_no"]
    assert points(stack, token)["balance"] == 0
    stack.sql(
        "UPDATE payments SET expires_at = now() - interval '1 second', created_at = now() - interval '16 minutes'"
        " WHERE out_trade_no = %s RETURNING 1",
        no,
    )
    stack.sweep()
    wait_for(lambda: stack.payment(no)["site_state"] == "unlocked", timeout_s=30, what="UNLOCKTX")
    wait_for(lambda: points(stack, token)["balance"] == 1_000, timeout_s=30, what="the hold voided")
    assert stack.sql("SELECT state FROM points_holds WHERE ref = %s", no) == [("voided",)]
    assert verify(stack) == []


def test_a_refund_reverses_the_points_exactly(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "10")
    user, token = stack.user()
    give(stack, user.id, 1_000)
    body = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000}).json()
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
