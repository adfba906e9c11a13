"""Points redeemed at pay are screened at the `redeem` point (data/risk/rules.json: redemptions per user and
device per day, points redeemed per day), every part a real process: a denied redemption moves nothing (no
hold in the ledger, no lock at the site, no order at WeChat Pay), a reviewed one waits for the operator
and then pays, an ordinary one pays."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest

from store import _ledger
from store._auth import create_api_key
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes


def _give(stack: PayStack, user_id: int, points: int, *, redeemed_today: int = 0) -> None:
    """`points` earned two days ago; `redeemed_today` of them already held by an earlier order today."""
    now = datetime.now().astimezone()
    with psycopg.connect(stack.db_url) as conn:
        _ledger.earn(
            conn,
            user_id=user_id,
            out_trade_no=f"seed-{uuid.uuid4().hex}",
            points=points,
            earned_at=now - timedelta(days=2),
            expiry_months=12,
            actor="test",
        )
        if redeemed_today:
            _ledger.hold(
                conn,
                user_id=user_id,
                ref=f"earlier-{uuid.uuid4().hex}",
                points=redeemed_today,
                fen_off=redeemed_today,
                now=now,
                actor="test",
            )


def _holds(stack: PayStack, user_id: int) -> int:
    return int(stack.sql("SELECT count(*) FROM points_holds WHERE user_id = %s", user_id)[0][0])


def _orders_at_gateway(stack: PayStack) -> int:
    return sum(1 for r in stack.gateway.get("requests") if "/v3/pay/transactions/jsapi" in str(r.get("path")))


def _decision(stack: PayStack, decision_id: int) -> tuple[str, str, list[str], dict[str, object]]:
    row = stack.sql("SELECT point, outcome, fired, facts FROM risk_decisions WHERE id = %s", decision_id)[0]
    return row[0], row[1], [f["rule"] for f in row[2]], row[3]


def test_an_ordinary_redemption_is_screened_and_pays(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "20")
    user, token = stack.user()
    _give(stack, user.id, 3_000)
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 2_000})
    assert r.status_code == 200, r.text
    assert r.json()["redeemed_points"] == 2_000
    rows = stack.sql(
        "SELECT outcome, facts FROM risk_decisions WHERE point = 'redeem' AND subject @> %s::jsonb",
        f'{{"sale_id": {sale_id}}}',
    )
    assert len(rows) == 1 and rows[0][0] == "allow"
    facts = rows[0][1]
    assert facts["redeem_points"] == 2_000 and facts["user_points_redeemed_1d"] == 2_000
    assert facts["user_point_redemptions_1d"] == 1 and facts["velocity_available"] is True
    # a payment without points is not screened at `redeem`
    plain = stack.fuel(site, 2, "20")
    _, other = stack.user()
    assert stack.pay(plain, other, str(uuid.uuid4())).status_code == 200
    assert (
        stack.sql(
            "SELECT count(*) FROM risk_decisions WHERE point = 'redeem' AND subject @> %s::jsonb",
            f'{{"sale_id": {plain}}}',
        )[0][0]
        == 0
    )


def test_a_denied_redemption_moves_nothing(stack: PayStack) -> None:
    site = stack.site()
    sale_id = stack.fuel(site, 1, "20")
    user, token = stack.user()
    _give(stack, user.id, 60_000, redeemed_today=50_000)
    holds, orders = _holds(stack, user.id), _orders_at_gateway(stack)
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "RiskDenied" and "more than 50,000 points (500 CNY) redeemed" in err["message"]
    point, outcome, fired, facts = _decision(stack, err["decision_id"])
    assert (point, outcome) == ("redeem", "deny") and "redeem.points_per_day_deny" in fired
    assert facts["user_points_redeemed_1d"] == 51_000
    assert _holds(stack, user.id) == holds  # no hold in the ledger
    assert _orders_at_gateway(stack) == orders  # no order at WeChat Pay
    assert stack.commands(site.station, "LOCKTX") == []
    assert stack.sql("SELECT count(*) FROM payments WHERE sale_ref = %s", f"fcc:{sale_id}")[0][0] == 0
    assert stack.sale(sale_id)["locked_by"] is None
    # the same sale paid without points is not a redemption: it pays
    assert stack.pay(sale_id, token, str(uuid.uuid4())).status_code == 200


def test_a_reviewed_redemption_waits_for_the_operator(stack: PayStack) -> None:
    with psycopg.connect(stack.db_url) as conn:
        operator = create_api_key(conn, "points-desk", "operator", secret_key=TEST_SECRET_KEY)
    site = stack.site()
    sale_id = stack.fuel(site, 1, "20")
    user, token = stack.user()
    _give(stack, user.id, 25_000, redeemed_today=20_000)
    holds = _holds(stack, user.id)
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000})
    assert r.status_code == 403 and r.json()["error"]["code"] == "RiskHeld", r.text
    held = r.json()["error"]["decision_id"]
    assert _decision(stack, held)[:3] == ("redeem", "review", ["redeem.points_per_day"])
    assert _holds(stack, user.id) == holds and stack.commands(site.station, "LOCKTX") == []
    assert stack.api is not None
    ok = httpx.post(
        f"{stack.api.base}/v1/risk/decisions/{held}/review",
        headers={"X-API-Key": operator},
        json={"approve": True, "note": "a fleet card"},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
    r = stack.pay(sale_id, token, str(uuid.uuid4()), params={"redeem_points": 1_000})
    assert r.status_code == 200, r.text
    assert r.json()["redeemed_points"] == 1_000 and _holds(stack, user.id) == holds + 1
