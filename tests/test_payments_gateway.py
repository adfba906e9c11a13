"""The WeChat Pay adapter (real wechatpayv3 SDK) against the fake gateway running as its own process:
signed requests and answers, orders, the mini-program's payment parameters, refunds, trade bills and
fuel e-invoices. The gateway's base URL comes from configuration: every call here goes to the fake."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payments import (
    Buyer,
    FuelInvoice,
    FuelLine,
    GatewayError,
    InvalidInvoice,
    Seller,
    WeChatPayClient,
    order_expiry,
    out_trade_no_for,
)
from payments._keys import DevKeys, ensure_dev_keys
from tests._payments import FakeGatewayProcess, client_for, wait_for

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp("wechatpay-keys"))


@pytest.fixture(scope="module")
def gateway(keys: DevKeys) -> Iterator[FakeGatewayProcess]:
    g = FakeGatewayProcess(keys.folder, time_factor=0.02)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def client(keys: DevKeys, gateway: FakeGatewayProcess) -> WeChatPayClient:
    return client_for(keys, gateway.base)


def new_order(
    client: WeChatPayClient, *, amount_fen: int = 31_250, openid: str = "o-driver-1", ttl_s: int = 900
):  # type: ignore[no-untyped-def]
    no = out_trade_no_for(uuid.uuid4().hex)
    expires = order_expiry(datetime.now().astimezone(), ttl_s)
    kwargs = dict(
        out_trade_no=no,
        amount_fen=amount_fen,
        openid=openid,
        expires_at=expires,
        station_id=42,
        station_name="丽江古城加油站",
        goods="92号汽油 40.00升",
        client_ip="127.0.0.1",
    )
    return client.create_jsapi_order(**kwargs), kwargs  # type: ignore[arg-type]


def pay(
    gateway: FakeGatewayProcess, client: WeChatPayClient, prepay_id: str, **extra: object
) -> tuple[int, dict]:
    return gateway.control("pay", **client.request_payment_params(prepay_id), **extra)  # type: ignore[no-any-return]


def test_every_request_is_signed_and_every_answer_verified(
    keys: DevKeys, gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    order, _ = new_order(client)
    assert order.prepay_id.startswith("wx")
    log = gateway.get("requests")
    assert log and all(r["verified"] for r in log)  # the fake checked our Authorization on each call

    # a merchant key WeChat Pay does not know: 401 SIGN_ERROR
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(GatewayError) as bad_sign:
        client_for(keys, gateway.base, merchant_private_pem=pem.decode()).query_order(order.out_trade_no)
    assert (bad_sign.value.status, bad_sign.value.code) == (401, "SIGN_ERROR")

    # an answer signed by another platform key than the one we were given: refused
    other_pub = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(GatewayError) as bad_answer:
        client_for(keys, gateway.base, public_key_pem=other_pub.decode()).query_order(order.out_trade_no)
    assert bad_answer.value.code == "INVALID_RESPONSE_SIGNATURE"


def test_an_order_retried_with_the_same_parameters_gets_the_same_prepay_id(client: WeChatPayClient) -> None:
    order, kwargs = new_order(client)
    again = client.create_jsapi_order(**kwargs)  # type: ignore[arg-type]
    assert again.prepay_id == order.prepay_id
    # the same order number with another amount is refused: a second order never exists
    with pytest.raises(GatewayError) as changed:
        client.create_jsapi_order(**{**kwargs, "amount_fen": kwargs["amount_fen"] + 1})  # type: ignore[arg-type]
    assert changed.value.code == "INVALID_REQUEST"
    assert client.query_order(order.out_trade_no).trade_state == "NOTPAY"


def test_request_payment_params_are_signed_over_the_documented_string(
    keys: DevKeys, gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    order, _ = new_order(client)
    p = client.request_payment_params(order.prepay_id)
    assert set(p) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert p["package"] == f"prepay_id={order.prepay_id}" and p["signType"] == "RSA"
    message = f"{keys.appid}\n{p['timeStamp']}\n{p['nonceStr']}\n{p['package']}\n".encode()
    public = serialization.load_pem_public_key(keys.merchant_public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        base64.b64decode(p["paySign"]), message, padding.PKCS1v15(), hashes.SHA256()
    )  # raises if wrong
    # a tampered signature is refused by the "user's" WeChat; the right one pays
    status, body = gateway.control("pay", **{**p, "paySign": base64.b64encode(b"x" * 256).decode()})
    assert status == 400 and "paySign" in body["errMsg"]
    status, body = gateway.control("pay", **p, openid="o-driver-1")
    assert (status, body["errMsg"]) == (200, "requestPayment:ok")
    paid = client.query_order(order.out_trade_no)
    assert paid.trade_state == "SUCCESS" and paid.amount_fen == 31_250 and paid.transaction_id
    assert paid.openid == "o-driver-1" and paid.success_time is not None


def test_close_an_unpaid_order_and_a_paid_one_cannot_be_closed(
    gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    unpaid, _ = new_order(client)
    client.close_order(unpaid.out_trade_no)
    client.close_order(unpaid.out_trade_no)  # idempotent
    assert client.query_order(unpaid.out_trade_no).trade_state == "CLOSED"
    status, _ = pay(gateway, client, unpaid.prepay_id)
    assert status == 400  # the user can no longer pay it

    paid, _ = new_order(client)
    assert pay(gateway, client, paid.prepay_id)[0] == 200
    with pytest.raises(GatewayError) as e:
        client.close_order(paid.out_trade_no)
    assert e.value.code == "ORDERPAID" and not e.value.retryable
    with pytest.raises(GatewayError) as missing:
        client.query_order(out_trade_no_for("never-ordered"))
    assert (missing.value.status, missing.value.code) == (404, "ORDER_NOT_EXIST")


def test_refunds_full_and_partial_idempotent_per_out_refund_no(
    gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    order, _ = new_order(client, amount_fen=20_000)
    assert pay(gateway, client, order.prepay_id)[0] == 200
    first = client.refund(
        out_trade_no=order.out_trade_no,
        out_refund_no="R1" + order.out_trade_no[-20:],
        refund_fen=5_000,
        total_fen=20_000,
        reason="少加",
    )
    again = client.refund(
        out_trade_no=order.out_trade_no,
        out_refund_no="R1" + order.out_trade_no[-20:],
        refund_fen=5_000,
        total_fen=20_000,
        reason="少加",
    )
    assert first.refund_id == again.refund_id and first.refund_fen == 5_000
    with pytest.raises(GatewayError) as too_much:
        client.refund(
            out_trade_no=order.out_trade_no,
            out_refund_no="R2" + order.out_trade_no[-20:],
            refund_fen=15_001,
            total_fen=20_000,
            reason="x",
        )
    assert too_much.value.code == "NOT_ENOUGH"
    rest = client.refund(
        out_trade_no=order.out_trade_no,
        out_refund_no="R3" + order.out_trade_no[-20:],
        refund_fen=15_000,
        total_fen=20_000,
        reason="取消",
    )
    assert rest.status == "PROCESSING"
    done = wait_for(
        lambda: client.query_refund(rest.out_refund_no).status == "SUCCESS", what="refund success"
    )
    assert done
    assert client.query_order(order.out_trade_no).trade_state == "REFUND"
    state = httpx.get(f"{gateway.base}/fake/orders/{order.out_trade_no}").json()
    assert state["refunded_fen"] == 20_000


def test_the_trade_bill_is_downloaded_checked_and_parsed_to_exact_fen(
    gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    amounts = [1, 99, 31_250, 123_456]  # 0.01 .. 1234.56 CNY: no float on the way
    orders = []
    for amount in amounts:
        order, _ = new_order(client, amount_fen=amount)
        assert pay(gateway, client, order.prepay_id)[0] == 200
        orders.append(order)
    refund = client.refund(
        out_trade_no=orders[2].out_trade_no,
        out_refund_no="RB" + orders[2].out_trade_no[-20:],
        refund_fen=1_250,
        total_fen=31_250,
        reason="多收",
    )
    wait_for(lambda: client.query_refund(refund.out_refund_no).status == "SUCCESS", what="refund")
    bill = client.download_trade_bill(datetime.now(SHANGHAI).date())
    by_no = {r.out_trade_no: r for r in bill.rows if r.trade_state == "SUCCESS"}
    for order, amount in zip(orders, amounts, strict=True):
        row = by_no[order.out_trade_no]
        assert row.order_fen == amount and row.settlement_fen == amount
        assert row.transaction_id == client.query_order(order.out_trade_no).transaction_id
        assert row.trade_time.utcoffset() == timedelta(hours=8)
    refunds = [r for r in bill.rows if r.out_refund_no == refund.out_refund_no]
    assert len(refunds) == 1 and refunds[0].refund_fen == 1_250 and refunds[0].trade_state == "REFUND"
    assert bill.summary.count == len(bill.rows)
    assert bill.summary.order_fen == sum(r.order_fen for r in bill.rows if r.trade_state == "SUCCESS")
    # a bill date in the future has no bill
    with pytest.raises(GatewayError):
        client.download_trade_bill(datetime.now(SHANGHAI).date() + timedelta(days=3))


def _invoice(apply_id: str, **changes: object) -> FuelInvoice:
    values: dict[str, object] = dict(
        fapiao_apply_id=apply_id,
        fapiao_id="F" + apply_id[-12:],
        buyer=Buyer(
            type="ORGANIZATION",
            name="丽江某某物流有限公司",
            taxpayer_id="91530700MA6K123456",
            email="a@example.cn",
        ),
        seller=Seller(station_id=42, name="丽江古城加油站", taxpayer_id="91530702MA6N654321"),
        lines=(FuelLine(grade="92", volume_ml=40_000, amount_fen=31_250),),
    )
    values.update(changes)
    return FuelInvoice(**values)  # type: ignore[arg-type]


def test_fuel_invoice_is_issued_then_reversed(gateway: FakeGatewayProcess, client: WeChatPayClient) -> None:
    apply_id = out_trade_no_for(uuid.uuid4().hex)
    inv = _invoice(apply_id)
    client.apply_invoice(inv)
    client.apply_invoice(inv)  # the same application again is accepted once
    first = client.query_invoice(apply_id)
    assert len(first) == 1 and first[0]["status"] in ("ISSUE_ACCEPTED", "ISSUED")
    item = first[0]["items"][0]
    assert (
        item["goods_category"] == "成品油" and item["unit"] == "升" and item["quantity"] == 40 * 100_000_000
    )
    assert item["total_amount"] == 31_250 and "丽江古城加油站" in first[0]["remark"]
    issued = wait_for(
        lambda: [f for f in client.query_invoice(apply_id) if f["status"] == "ISSUED"], what="issued"
    )
    blue = issued[0]["blue_fapiao"]
    client.reverse_invoice(
        apply_id,
        reason="退款",
        fapiao_id=inv.fapiao_id,
        fapiao_code=blue["fapiao_code"],
        fapiao_number=blue["fapiao_number"],
    )
    reversed_ = wait_for(
        lambda: [f for f in client.query_invoice(apply_id) if f["status"] == "REVERSED"], what="reversed"
    )
    assert reversed_[0]["red_fapiao"]["fapiao_number"]


def test_invalid_fuel_invoices_are_refused_before_anything_is_sent(
    gateway: FakeGatewayProcess, client: WeChatPayClient
) -> None:
    before = len(gateway.get("requests"))
    cases = {
        "buyer.taxpayer_id": _invoice("A1", buyer=Buyer(type="ORGANIZATION", name="某公司")),
        "lines.0.volume_ml": _invoice("A2", lines=(FuelLine(grade="95", volume_ml=0, amount_fen=100),)),
        "lines.0.unit": _invoice(
            "A3", lines=(FuelLine(grade="95", volume_ml=1_000, amount_fen=100, unit="桶"),)
        ),
        "seller.taxpayer_id": _invoice("A4", seller=Seller(station_id=1, name="某站", taxpayer_id="")),
        "lines.0.grade": _invoice("A5", lines=(FuelLine(grade="100", volume_ml=1_000, amount_fen=100),)),
    }
    for param, inv in cases.items():
        with pytest.raises(InvalidInvoice) as e:
            client.apply_invoice(inv)
        assert e.value.param == param
    assert len(gateway.get("requests")) == before
    # an individual needs no taxpayer id
    client.apply_invoice(
        _invoice(out_trade_no_for(uuid.uuid4().hex), buyer=Buyer(type="INDIVIDUAL", name="张三"))
    )


def test_the_gateway_is_the_configured_one(tmp_path: Path, keys: DevKeys) -> None:
    """Nothing reaches the production host: a client pointed at a closed port fails as unreachable."""
    closed = client_for(keys, "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(GatewayError) as e:
        closed.query_order(out_trade_no_for("x"))
    assert e.value.status == 0 and e.value.retryable
