"""Risk control in front of real money, every part a real process (fake WeChat Pay gateway, link server,
simulated site, API): a denied payment moves nothing (no LOCKTX, no order at the gateway, no payment row);
a held one waits for an operator's review through the API, then pays (approved) or stays refused
(rejected); rules changed in the database apply to the running API without a restart; the review page
works in Chromium."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from risk import Rule
from store import _risk
from store._auth import create_api_key
from tests._sale_pay import PayStack
from tests._servers import TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes
SHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"


@pytest.fixture(scope="module")
def keys(stack: PayStack) -> dict[str, str]:
    with psycopg.connect(stack.db_url) as conn:
        return {
            "operator": create_api_key(conn, "risk-desk", "operator", secret_key=TEST_SECRET_KEY),
            "manager": create_api_key(conn, "a-manager", "manager", [1], secret_key=TEST_SECRET_KEY),
        }


def _override(stack: PayStack, name: str, expr: str, outcome: str, reason: str) -> None:
    """A database override, written while the API runs: it must apply at once (no restart)."""
    with psycopg.connect(stack.db_url) as conn, conn.transaction():
        _risk.put_override(conn, Rule(name, "pay", expr, outcome, reason), enabled=True, actor="test")


def _orders_at_gateway(stack: PayStack) -> int:
    return sum(1 for r in stack.gateway.get("requests") if "/v3/pay/transactions/jsapi" in str(r.get("path")))


def _api(stack: PayStack, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    assert stack.api is not None
    return httpx.request(method, f"{stack.api.base}{path}", headers={"X-API-Key": key}, timeout=30, **kw)


def test_a_denied_payment_moves_no_money(stack: PayStack) -> None:
    site = stack.site()
    _override(stack, "pay.test_ring", "litres >= 33 and litres < 34", "deny", "a litre figure the ring uses")
    sale_id = stack.fuel(site, 1, "33.5")
    _, token = stack.user()
    orders = _orders_at_gateway(stack)
    r = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert stack.api is not None
    assert r.status_code == 403, stack.api.output()[-3000:]
    err = r.json()["error"]
    assert err["code"] == "RiskDenied" and "a litre figure the ring uses" in err["message"]
    assert stack.commands(site.station, "LOCKTX") == []  # nothing locked at the site
    assert _orders_at_gateway(stack) == orders  # no order at WeChat Pay
    assert stack.sql("SELECT count(*) FROM payments WHERE sale_ref = %s", f"fcc:{sale_id}")[0][0] == 0
    assert stack.sale(sale_id)["locked_by"] is None
    row = stack.sql(
        "SELECT outcome, fired, facts, subject FROM risk_decisions WHERE id = %s", err["decision_id"]
    )[0]
    assert row[0] == "deny" and [f["rule"] for f in row[1]] == ["pay.test_ring"]
    assert row[2]["litres"] == 33.5 and row[3]["sale_id"] == sale_id
    # a retry with the same key is screened again (the key was released), and refused again
    assert stack.pay(sale_id, token, str(uuid.uuid4())).status_code == 403
    assert stack.commands(site.station, "LOCKTX") == []


def test_a_held_payment_waits_for_the_operator(stack: PayStack, keys: dict[str, str]) -> None:
    site = stack.site()
    _override(stack, "pay.test_hold", "litres >= 22 and litres < 23", "review", "a fill-up the desk checks")
    sale_id = stack.fuel(site, 1, "22.5")
    other_id = stack.fuel(site, 2, "22.5")
    _, token = stack.user()
    r = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert r.status_code == 403 and r.json()["error"]["code"] == "RiskHeld", r.text
    held = r.json()["error"]["decision_id"]
    assert stack.commands(site.station, "LOCKTX") == []
    # the operator sees it with its evidence; a manager key may not
    assert _api(stack, "GET", "/v1/risk/reviews", keys["manager"]).status_code == 403
    assert _api(stack, "GET", "/v1/risk/reviews", "no-such-key").status_code == 401
    queue = _api(stack, "GET", "/v1/risk/reviews?limit=200", keys["operator"]).json()["decisions"]
    mine = next(d for d in queue if d["id"] == held)
    assert mine["fired"][0]["rule"] == "pay.test_hold" and mine["facts"]["litres"] == 22.5
    assert mine["subject"]["sale_id"] == sale_id
    bad = _api(
        stack, "POST", f"/v1/risk/decisions/{held}/review", keys["operator"], json={"approve": "maybe"}
    )
    assert bad.status_code == 422
    ok = _api(
        stack,
        "POST",
        f"/v1/risk/decisions/{held}/review",
        keys["operator"],
        json={"approve": True, "note": "ok"},
    )
    assert (
        ok.status_code == 200
        and ok.json()["review_state"] == "approved"
        and ok.json()["reviewed_by"] == "risk-desk"
    )
    again = _api(
        stack, "POST", f"/v1/risk/decisions/{held}/review", keys["operator"], json={"approve": False}
    )
    assert again.status_code == 409
    assert _api(stack, "GET", "/v1/risk/decisions/999999999", keys["operator"]).status_code == 404
    # approved: the retry pays
    r = stack.pay(sale_id, token, str(uuid.uuid4()))
    assert r.status_code == 200, r.text
    assert len(stack.commands(site.station, "LOCKTX")) == 1
    audit = stack.sql(
        "SELECT actor, new_value FROM audit_log WHERE entity = 'risk_decision' AND entity_id = %s", str(held)
    )
    assert audit == [("risk-desk", {"review_state": "approved", "review_note": "ok"})]
    # rejected: the retry stays refused, still without a lock
    r = stack.pay(other_id, token, str(uuid.uuid4()))
    other = r.json()["error"]["decision_id"]
    no = _api(
        stack,
        "POST",
        f"/v1/risk/decisions/{other}/review",
        keys["operator"],
        json={"approve": False, "note": "ring"},
    )
    assert no.status_code == 200
    r = stack.pay(other_id, token, str(uuid.uuid4()))
    assert r.status_code == 403 and r.json()["error"]["code"] == "RiskDenied"
    assert len(stack.commands(site.station, "LOCKTX")) == 1


def test_the_review_page_in_chromium(stack: PayStack, keys: dict[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    site = stack.site()
    _override(stack, "pay.test_page", "litres >= 44 and litres < 45", "review", "a fill-up shown on the page")
    sale_id = stack.fuel(site, 1, "44.5")
    _, token = stack.user()
    held = stack.pay(sale_id, token, str(uuid.uuid4())).json()["error"]["decision_id"]
    assert stack.api is not None
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{stack.api.base}/console/review")
            page.fill("#key", keys["operator"])
            page.click("#load")
            card = page.locator(f'.card[data-id="{held}"]')
            card.wait_for(timeout=10_000)
            assert "pay.test_page" in card.inner_text() and "a fill-up shown on the page" in card.inner_text()
            page.screenshot(path=str(SHOTS / "risk_review_queue.png"), full_page=True)
            card.locator("input").fill("checked the CCTV")
            card.locator("button.approve").click()
            page.locator(f'.card[data-id="{held}"] h2', has_text="approved by risk-desk").wait_for(
                timeout=10_000
            )
            page.screenshot(path=str(SHOTS / "risk_review_approved.png"), full_page=True)
        finally:
            browser.close()
    row = stack.sql("SELECT review_state, reviewed_by, review_note FROM risk_decisions WHERE id = %s", held)[
        0
    ]
    assert row == ("approved", "risk-desk", "checked the CCTV")
