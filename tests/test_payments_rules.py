"""Payment rules without a network: notification verification (signature, window, serial, ciphertext),
order numbers and expiry, trade-bill parsing to exact fen, fuel e-invoice validation."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from payments import (
    BadCiphertext,
    BillIntegrityError,
    Buyer,
    ForgedSignature,
    FuelInvoice,
    FuelLine,
    InvalidInvoice,
    Seller,
    StaleTimestamp,
    UnknownSerial,
    application_request,
    order_expiry,
    out_trade_no_for,
    parse_trade_bill,
    validate_invoice,
    yuan_to_fen,
)
from payments._bill import COLUMNS, SUMMARY_COLUMNS
from payments._keys import DevKeys, ensure_dev_keys
from tests._payments import client_for, notification_body, notification_headers


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


def notification(
    keys: DevKeys, resource: dict[str, Any], *, stamp: int, signer: Any = None, apiv3: bytes | None = None
) -> tuple[dict[str, str], bytes]:
    body = notification_body(keys, resource, apiv3=apiv3, nid="EV-1")
    return notification_headers(keys, body, stamp=stamp, signer=signer), body


def test_a_good_notification_is_decrypted(keys: DevKeys) -> None:
    client = client_for(keys, "http://127.0.0.1:9")
    resource = {"out_trade_no": "LF1A0", "trade_state": "SUCCESS", "amount": {"total": 100}}
    headers, body = notification(keys, resource, stamp=int(time.time()))
    n = client.verify_notification(headers, body)
    assert (n.id, n.event_type, n.original_type, n.resource) == (
        "EV-1",
        "TRANSACTION.SUCCESS",
        "transaction",
        resource,
    )
    assert n.is_payment and not n.is_refund


def test_each_kind_of_bad_notification_has_its_error(keys: DevKeys) -> None:
    client = client_for(keys, "http://127.0.0.1:9")
    now = int(time.time())
    resource = {"out_trade_no": "LF1A0"}
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers, body = notification(keys, resource, stamp=now, signer=stranger)
    with pytest.raises(ForgedSignature):
        client.verify_notification(headers, body)
    headers, body = notification(keys, resource, stamp=now)
    with pytest.raises(ForgedSignature):  # one byte of the body changed after signing
        client.verify_notification(headers, body.replace(b"EV-1", b"EV-2"))
    with pytest.raises(ForgedSignature):
        client.verify_notification({k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body)
    with pytest.raises(UnknownSerial):
        client.verify_notification({**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body)
    for skew in (-301, 301):
        headers, body = notification(keys, resource, stamp=now + skew)
        with pytest.raises(StaleTimestamp):
            client.verify_notification(headers, body, now=now)
    for skew in (-300, 300):  # the window's edges are inside
        headers, body = notification(keys, resource, stamp=now + skew)
        client.verify_notification(headers, body, now=now)
    headers, body = notification(keys, resource, stamp=now, apiv3=b"x" * 32)
    with pytest.raises(BadCiphertext):
        client.verify_notification(headers, body)


def test_out_trade_no_is_deterministic_and_valid() -> None:
    a = out_trade_no_for("station-7/tx-991")
    assert a == out_trade_no_for("station-7/tx-991") and len(a) <= 32
    assert a != out_trade_no_for("station-7/tx-992") and a != out_trade_no_for("station-7/tx-991", 1)
    assert all(c.isalnum() for c in a)
    expiry = order_expiry(datetime(2026, 5, 1, 1, 2, 3, 456_789, tzinfo=UTC), 900)
    assert expiry.isoformat() == "2026-05-01T09:17:03+08:00"


def bill_text(rows: list[list[str]], summary: list[str]) -> str:
    lines = [",".join(COLUMNS)] + [",".join("`" + f for f in r) for r in rows]
    lines += [",".join(SUMMARY_COLUMNS), ",".join("`" + v for v in summary)]
    return "\ufeff" + "\r\n".join(lines) + "\r\n"


def pay_row(no: str, yuan: str, fee: str) -> list[str]:
    return [
        "2026-05-01 10:00:00",
        "wxapp",
        "1900000109",
        "0",
        "",
        "4200001",
        no,
        "o-1",
        "JSAPI",
        "SUCCESS",
        "OTHERS",
        "CNY",
        yuan,
        "0.00",
        "0",
        "0",
        "0.00",
        "0.00",
        "",
        "",
        "92号汽油",
        "",
        fee,
        "0.60%",
        yuan,
        "0.00",
        "",
    ]


def test_bill_amounts_become_exact_fen() -> None:
    text = bill_text(
        [pay_row("A", "312.50", "1.87500"), pay_row("B", "0.01", "0.00006")],
        ["2", "312.51", "0.00", "0.00", "1.87506", "312.51", "0.00"],
    )
    bill = parse_trade_bill(text)
    assert [r.order_fen for r in bill.rows] == [31_250, 1]
    assert bill.rows[0].fee_yuan == Decimal("1.87500") and bill.rows[0].trade_time.utcoffset() == timedelta(
        hours=8
    )
    assert bill.summary.order_fen == 31_251
    assert yuan_to_fen("1234.56") == 123_456 and yuan_to_fen("-0.10") == -10
    for bad in ("0.001", "abc", "1e400", "NaN"):
        with pytest.raises(BillIntegrityError):
            yuan_to_fen(bad)


def test_a_bill_whose_summary_disagrees_is_refused() -> None:
    rows = [pay_row("A", "10.00", "0.06000")]
    with pytest.raises(BillIntegrityError, match="订单总金额"):
        parse_trade_bill(bill_text(rows, ["1", "10.00", "0.00", "0.00", "0.06000", "10.01", "0.00"]))
    with pytest.raises(BillIntegrityError, match="counts"):
        parse_trade_bill(bill_text(rows, ["2", "10.00", "0.00", "0.00", "0.06000", "10.00", "0.00"]))
    with pytest.raises(BillIntegrityError, match="header"):
        parse_trade_bill("交易时间,商户号\r\n`x,`y\r\n总交易单数\r\n`0\r\n")


def test_fuel_invoice_rules() -> None:
    seller = Seller(station_id=3, name="丽江白沙加油站", taxpayer_id="91530721MA6P000001")
    ok = FuelInvoice(
        "LF1A0",
        "F1",
        Buyer(type="INDIVIDUAL", name="李四"),
        seller,
        (FuelLine("0", 55_555, 41_111), FuelLine("95", 1, 1)),
    )
    validate_invoice(ok)
    buyer, fapiao = application_request(ok)
    assert buyer == {"type": "INDIVIDUAL", "name": "李四"}
    items = fapiao[0]["items"]
    assert [i["quantity"] for i in items] == [5_555_500_000, 100_000]  # litres with 8 decimals, exact
    assert [i["tax_code"] for i in items] == ["1070101030100000000", "1070101010100000000"]
    assert fapiao[0]["total_amount"] == 41_112 and all(i["goods_category"] == "成品油" for i in items)
    bad = {
        "buyer.type": FuelInvoice("LF1A0", "F1", Buyer(type="COMPANY", name="x"), seller, ok.lines),  # type: ignore[arg-type]
        "buyer.taxpayer_id": FuelInvoice(
            "LF1A0", "F1", Buyer(type="ORGANIZATION", name="某公司", taxpayer_id="123"), seller, ok.lines
        ),
        "lines": FuelInvoice("LF1A0", "F1", ok.buyer, seller, ()),
        "lines.0.amount_fen": FuelInvoice("LF1A0", "F1", ok.buyer, seller, (FuelLine("92", 1_000, 0),)),
        "fapiao_apply_id": FuelInvoice("LF 1", "F1", ok.buyer, seller, ok.lines),
        "seller.name": FuelInvoice("LF1A0", "F1", ok.buyer, Seller(3, " ", seller.taxpayer_id), ok.lines),
    }
    for param, inv in bad.items():
        with pytest.raises(InvalidInvoice) as e:
            validate_invoice(inv)
        assert e.value.param == param


def test_dev_keys_are_generated_once(tmp_path: Path) -> None:
    a = ensure_dev_keys(tmp_path)
    b = ensure_dev_keys(tmp_path)
    assert a == b and len(a.apiv3_key.encode()) == 32 and a.public_key_id.startswith("PUB_KEY_ID_")
    assert (tmp_path / "platform_private.pem").stat().st_mode & 0o777 == 0o600
