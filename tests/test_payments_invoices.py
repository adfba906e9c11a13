"""Fuel e-invoices and operator refunds of paid sales, end to end with real processes (fake WeChat Pay
gateway, link server, simulated site, API, payments worker): the station's seller identity, the payer's
invoice request behind an Idempotency-Key, the fapiao application and its status, partial and full refunds
(idempotent per out_refund_no, never above what is left), the red-letter reversal after a refund, and an
ABNORMAL refund opening a back-office case."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from payments._fapiao import FUEL_CATEGORY, FUEL_UNIT, QUANTITY_SCALE, application_request
from payments._invoice import build_invoice
from store import _invoices
from store._auth import create_api_key
from tests._forecourt import SimProcess
from tests._payments import wait_for
from tests._sale_pay import PayStack
from tests._servers import TEST_ADMIN_KEY, TEST_SECRET_KEY

pytestmark = pytest.mark.slow  # real processes

SELLER_TAX_ID = "91530700MA6N8XY21K"
BUYER_TAX_ID = "91530100MA6K7Q2W3E"
ADMIN = {"X-API-Key": TEST_ADMIN_KEY}


@pytest.fixture(scope="module")
def site(stack: PayStack) -> SimProcess:
    return stack.site(pumps=2)


def api(stack: PayStack, method: str, path: str, **kw: Any) -> httpx.Response:
    assert stack.api is not None
    return httpx.request(method, f"{stack.api.base}{path}", timeout=30, **kw)


def paid_sale(stack: PayStack, site: SimProcess, pump: int, litres: str) -> tuple[dict[str, Any], str]:
    """A fill-up paid by a new driver and cleared at the site: (the pay answer, the driver's token)."""
    sale_id = stack.fuel(site, pump, litres)
    _, token = stack.user()
    body: dict[str, Any] = stack.pay(sale_id, token, str(uuid.uuid4())).json()
    assert stack.wx_pay(body)[0] == 200
    no = body["out_trade_no"]
    wait_for(lambda: stack.payment(no)["site_state"] == "cleared", timeout_s=30, what="paid and cleared")
    return body, token


def ask_invoice(stack: PayStack, no: str, token: str, key: str, **buyer: Any) -> httpx.Response:
    return api(
        stack,
        "POST",
        f"/v1/payments/{no}/invoice",
        json=buyer,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def invoice(stack: PayStack, no: str, token: str) -> httpx.Response:
    return api(stack, "GET", f"/v1/payments/{no}/invoice", headers={"Authorization": f"Bearer {token}"})


def refund(
    stack: PayStack, no: str, out_refund_no: str, fen: int, key: dict[str, str] = ADMIN
) -> httpx.Response:
    body = {"out_refund_no": out_refund_no, "refund_fen": fen, "reason": "多收款"}
    return api(stack, "POST", f"/v1/payments/{no}/refunds", json=body, headers=key)


def set_seller(stack: PayStack, station: int, name: str = "丽江古城石化销售有限公司") -> httpx.Response:
    return api(
        stack,
        "PUT",
        f"/v1/stations/{station}/seller",
        json={"legal_name": name, "taxpayer_id": SELLER_TAX_ID},
        headers=ADMIN,
    )


def test_operators_set_a_stations_seller_identity_audited(stack: PayStack, site: SimProcess) -> None:
    path = f"/v1/stations/{site.station}/seller"
    good = {"legal_name": "丽江古城石化销售有限公司", "taxpayer_id": SELLER_TAX_ID}
    assert api(stack, "PUT", path, json=good).status_code == 401
    with psycopg.connect(stack.db_url) as conn:
        manager = create_api_key(
            conn, f"mgr-{uuid.uuid4().hex[:6]}", "manager", [site.station], secret_key=TEST_SECRET_KEY
        )
    r = api(stack, "PUT", path, json=good, headers={"X-API-Key": manager})
    assert r.status_code == 403, r.text
    bad = api(stack, "PUT", path, json={**good, "taxpayer_id": "12345"}, headers=ADMIN)
    assert bad.status_code == 422 and "taxpayer_id" in bad.text
    assert api(stack, "PUT", "/v1/stations/999999999/seller", json=good, headers=ADMIN).status_code == 404
    r = set_seller(stack, site.station, "丽江旧名石化有限公司")
    assert r.status_code == 200, r.text
    r = set_seller(stack, site.station)
    assert (r.json()["legal_name"], r.json()["taxpayer_id"]) == (good["legal_name"], SELLER_TAX_ID)
    # the station's manager reads it
    read = api(stack, "GET", path, headers={"X-API-Key": manager})
    assert read.status_code == 200 and read.json()["legal_name"] == good["legal_name"]
    audit = stack.sql(
        "SELECT action, old_value, new_value FROM audit_log WHERE entity = 'station_seller' AND entity_id = %s ORDER BY id",
        str(site.station),
    )
    assert [a[0] for a in audit] == ["create", "update"]
    assert (
        audit[1][1]["legal_name"] == "丽江旧名石化有限公司"
        and audit[1][2]["legal_name"] == good["legal_name"]
    )


def test_a_paid_sale_is_invoiced_with_fuel_rules_then_reversed_after_a_refund(
    stack: PayStack, site: SimProcess
) -> None:
    assert set_seller(stack, site.station).status_code == 200
    body, token = paid_sale(stack, site, 1, "20")
    no = body["out_trade_no"]
    assert invoice(stack, no, token).status_code == 404  # none asked for yet
    key = str(uuid.uuid4())
    buyer = {"type": "ORGANIZATION", "name": "丽江古城运输有限公司", "taxpayer_id": BUYER_TAX_ID}
    r = ask_invoice(stack, no, token, key, **buyer)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] in ("requested", "applied", "issued")
    assert (first["total_fen"], first["seller_taxpayer_id"], first["buyer_taxpayer_id"]) == (
        body["amount_fen"],
        SELLER_TAX_ID,
        BUYER_TAX_ID,
    )
    # the same key answers the same invoice; another key for the same payment is a 409
    again = ask_invoice(stack, no, token, key, **buyer).json()
    assert again["fapiao_id"] == first["fapiao_id"]
    assert ask_invoice(stack, no, token, str(uuid.uuid4()), **buyer).status_code == 409
    assert ask_invoice(stack, no, token, key, type="INDIVIDUAL", name="张三").status_code == 422
    issued = wait_for(
        lambda: (j := invoice(stack, no, token).json())["status"] == "issued" and j,
        timeout_s=30,
        what="issued",
    )
    assert len(issued["fapiao_number"]) == 20
    # what WeChat Pay was asked: one fuel line in litres, the station as seller
    apps = [q for q in stack.gateway.get("requests") if q["path"].endswith("/fapiao-applications")]
    assert len(apps) == 1
    rows = stack.sql("SELECT count(*) FROM payment_invoices WHERE out_trade_no = %s", no)
    assert rows == [(1,)]
    sale = stack.sale(body["sale_id"])
    assert sale["amount_fen"] == body["sale_amount_fen"]
    # a partial refund by an operator: the invoice is reversed (红冲)
    r = refund(stack, no, f"{no}-op1", 100)
    assert r.status_code == 200, r.text
    assert r.json()["state"] in ("requested", "processing", "success")
    wait_for(lambda: stack.payment(no)["refunded_fen"] == 100, timeout_s=30, what="the refund")
    reversed_ = wait_for(
        lambda: (j := invoice(stack, no, token).json())["status"] == "reversed" and j,
        timeout_s=40,
        what="红冲",
    )
    assert reversed_["reversal_wanted"] is True
    statuses = [
        a[0]["status"]
        for a in stack.sql(
            "SELECT new_value FROM audit_log WHERE entity = 'payment_invoice' AND entity_id = %s AND new_value ? 'status'"
            " ORDER BY id",
            no,
        )
    ]
    assert statuses[0] == "applied" and statuses[-1] == "reversed" and "issued" in statuses


def test_the_fuel_invoice_sent_to_wechat_pay(stack: PayStack, site: SimProcess) -> None:
    assert set_seller(stack, site.station).status_code == 200
    body, token = paid_sale(stack, site, 2, "12.5")
    no = body["out_trade_no"]
    r = ask_invoice(stack, no, token, str(uuid.uuid4()), type="INDIVIDUAL", name="张三")
    assert r.status_code == 200, r.text
    wait_for(lambda: invoice(stack, no, token).json()["status"] == "issued", timeout_s=30, what="issued")
    # WeChat Pay was asked once for this application, and queried for its status
    paths = [q["path"] for q in stack.gateway.get("requests")]
    assert any(p.endswith(f"fapiao-applications/{no}") for p in paths)
    with psycopg.connect(stack.db_url) as conn:
        row = conn.execute(
            "SELECT buyer_type, buyer_name, total_fen, status, detail FROM payment_invoices WHERE out_trade_no = %s",
            (no,),
        ).fetchone()
    assert row is not None and row[:4] == ("INDIVIDUAL", "张三", body["amount_fen"], "issued")
    with psycopg.connect(stack.db_url) as conn:
        stored = _invoices.invoice_of_payment(conn, no)
        assert stored is not None
        buyer, fapiao = application_request(build_invoice(conn, stored))
    item = fapiao[0]["items"][0]
    assert (item["goods_category"], item["unit"], item["quantity"]) == (
        FUEL_CATEGORY,
        FUEL_UNIT,
        125 * QUANTITY_SCALE // 10,
    )
    assert SELLER_TAX_ID in fapiao[0]["remark"] and buyer == {"type": "INDIVIDUAL", "name": "张三"}


def test_invoice_requests_that_cannot_be_served(stack: PayStack, site: SimProcess) -> None:
    body, token = paid_sale(stack, site, 1, "4")
    no = body["out_trade_no"]
    _, stranger = stack.user()
    # another driver's payment: 403; an unknown payment: 404; no token: 401
    assert ask_invoice(stack, no, stranger, "k1", type="INDIVIDUAL", name="李四").status_code == 403
    assert invoice(stack, no, stranger).status_code == 403
    assert (
        ask_invoice(stack, "NOSUCHORDER123", token, "k2", type="INDIVIDUAL", name="张三").status_code == 404
    )
    assert api(stack, "GET", f"/v1/payments/{no}/invoice").status_code == 401
    # an organisation without its taxpayer id, a malformed one, an empty name, no key: 422 naming the field
    r = ask_invoice(stack, no, token, "k3", type="ORGANIZATION", name="丽江运输公司")
    assert r.status_code == 422 and "taxpayer_id" in r.text
    r = ask_invoice(stack, no, token, "k4", type="ORGANIZATION", name="丽江运输公司", taxpayer_id="ABC")
    assert r.status_code == 422 and "taxpayer_id" in r.text
    assert ask_invoice(stack, no, token, "k5", type="INDIVIDUAL", name="").status_code == 422
    assert ask_invoice(stack, no, token, "k6", type="COMPANY", name="x").status_code == 422
    r = api(
        stack,
        "POST",
        f"/v1/payments/{no}/invoice",
        json={"type": "INDIVIDUAL", "name": "张三"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 422 and "Idempotency-Key" in r.text
    # a station without a seller identity cannot issue: 409, nothing stored
    stack.sql("DELETE FROM station_sellers WHERE station_id = %s RETURNING 1", site.station)
    r = ask_invoice(stack, no, token, "k7", type="INDIVIDUAL", name="张三")
    assert r.status_code == 409 and "seller" in r.text
    # a payment refunded in full has nothing to invoice
    assert set_seller(stack, site.station).status_code == 200
    assert refund(stack, no, f"{no}-all", body["amount_fen"]).status_code == 200
    wait_for(lambda: stack.payment(no)["refunded_fen"] == body["amount_fen"], timeout_s=30, what="refund")
    r = ask_invoice(stack, no, token, "k8", type="INDIVIDUAL", name="张三")
    assert r.status_code == 409 and "refunded" in r.text
    assert stack.sql("SELECT count(*) FROM payment_invoices WHERE out_trade_no = %s", no) == [(0,)]


def test_operator_refunds_are_idempotent_and_never_exceed_what_is_left(
    stack: PayStack, site: SimProcess
) -> None:
    body, _ = paid_sale(stack, site, 2, "10")
    no, paid = body["out_trade_no"], body["amount_fen"]
    assert refund(stack, no, f"{no}-a", 100, key={}).status_code == 401
    with psycopg.connect(stack.db_url) as conn:
        manager = create_api_key(
            conn, f"mgr-{uuid.uuid4().hex[:6]}", "manager", [site.station], secret_key=TEST_SECRET_KEY
        )
    assert refund(stack, no, f"{no}-a", 100, key={"X-API-Key": manager}).status_code == 403
    assert refund(stack, "NOSUCHORDER123", "r-x", 100).status_code == 404
    assert refund(stack, no, "bad refund no!", 100).status_code == 422
    assert refund(stack, no, f"{no}-a", 0).status_code == 422
    first = refund(stack, no, f"{no}-a", 300)
    assert first.status_code == 200, first.text
    # the same number again: the same refund; with another amount: 409
    assert refund(stack, no, f"{no}-a", 300).json()["out_refund_no"] == f"{no}-a"
    assert refund(stack, no, f"{no}-a", 301).status_code == 409
    # more than is left: 409 naming what is left
    over = refund(stack, no, f"{no}-b", paid - 299)
    assert over.status_code == 409 and str(paid - 300) in over.text
    assert refund(stack, no, f"{no}-b", paid - 300).status_code == 200  # the rest: a full refund
    wait_for(lambda: stack.payment(no)["refunded_fen"] == paid, timeout_s=30, what="both refunds")
    listed = api(stack, "GET", f"/v1/payments/{no}/refunds", headers=ADMIN).json()
    assert (listed["paid_fen"], listed["refunded_fen"], listed["refundable_fen"]) == (paid, paid, 0)
    assert sorted((r["out_refund_no"], r["state"]) for r in listed["refunds"]) == [
        (f"{no}-a", "success"),
        (f"{no}-b", "success"),
    ]
    # one refund per out_refund_no at WeChat Pay, whatever the retries
    order = httpx.get(f"{stack.gateway.base}/fake/orders/{no}", timeout=10).json()
    assert order["refunded_fen"] == paid
    audit = stack.sql(
        "SELECT actor FROM audit_log WHERE entity = 'payment_refund' AND action = 'create' AND entity_id LIKE %s",
        f"{no}-%",
    )
    assert sorted(a[0] for a in audit) == ["admin", "admin"]
    assert refund(stack, no, f"{no}-c", 1).status_code == 409  # nothing left


def test_an_abnormal_refund_opens_a_case(stack: PayStack, site: SimProcess) -> None:
    body, _ = paid_sale(stack, site, 1, "6")
    no = body["out_trade_no"]
    assert stack.gateway.control("refund-outcome", status="ABNORMAL")[0] == 200
    assert refund(stack, no, f"{no}-ab", 200).status_code == 200
    wait_for(
        lambda: (
            stack.sql("SELECT state FROM payment_refunds WHERE out_refund_no = %s", f"{no}-ab")
            == [("abnormal",)]
        ),
        timeout_s=30,
        what="the ABNORMAL notification",
    )
    cases = stack.sql("SELECT kind, sale_id, detail FROM payment_cases WHERE out_trade_no = %s", no)
    assert [(c[0], c[1], c[2]["out_refund_no"]) for c in cases] == [
        ("refund_abnormal", body["sale_id"], f"{no}-ab")
    ]
    assert stack.payment(no)["refunded_fen"] == 0
