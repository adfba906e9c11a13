"""WeChat Pay trade bills (交易账单, `GET /v3/bill/tradebill`): parse the CSV exactly, amounts to integer fen.

The bill is CSV in UTF-8: a header row, one row per transaction or refund with every field prefixed by a
backtick (so spreadsheets keep long numbers as text), then a summary header and one summary row. Amounts
are yuan with two decimals (the fee with five); order and refund amounts become integer fen exactly, and a
value that is not a whole number of fen is refused rather than rounded. The fee stays a Decimal in yuan.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from payments._errors import BillIntegrityError

SHANGHAI = ZoneInfo("Asia/Shanghai")
AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,8})?$")  # yuan as WeChat writes them: digits, a point, decimals

# The columns of an ALL bill, in WeChat's order (a bill of another order is read by name).
COLUMNS = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
SUMMARY_COLUMNS = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)


@dataclass(frozen=True)
class BillRow:
    """One transaction (trade_state SUCCESS) or refund (trade_state REFUND) of the bill."""

    trade_time: datetime
    appid: str
    mchid: str
    transaction_id: str
    out_trade_no: str
    openid: str
    trade_type: str
    trade_state: str
    currency: str
    settlement_fen: int  # 应结订单金额: the order amount less merchant coupons
    coupon_fen: int
    refund_id: str
    out_refund_no: str
    refund_fen: int
    refund_status: str
    goods: str
    attach: str
    fee_yuan: Decimal  # 手续费, five decimals
    rate: str
    order_fen: int  # 订单金额
    requested_refund_fen: int


@dataclass(frozen=True)
class BillSummary:
    count: int
    settlement_fen: int
    refund_fen: int
    coupon_refund_fen: int
    fee_yuan: Decimal
    order_fen: int
    requested_refund_fen: int


@dataclass(frozen=True)
class TradeBill:
    rows: tuple[BillRow, ...]
    summary: BillSummary


def yuan_to_fen(text: str, *, field: str = "amount") -> int:
    """'12.34' -> 1234, exactly; '0.001' (not a whole fen) or 'abc' raise BillIntegrityError."""
    plain = text.strip() or "0"
    if not AMOUNT.match(plain):
        raise BillIntegrityError(f"{field}: {text!r} is not an amount in yuan")
    fen = Decimal(plain) * 100
    if fen != fen.to_integral_value():
        raise BillIntegrityError(f"{field}: {text!r} is not a whole number of fen")
    return int(fen)


def _fields(line: list[str]) -> list[str]:
    return [f[1:] if f.startswith("`") else f for f in line]


def parse_trade_bill(text: str) -> TradeBill:
    """The rows and summary of a trade bill; raises BillIntegrityError on anything malformed, including a
    summary that disagrees with the rows."""
    lines = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(c.strip() for c in row)]
    if len(lines) < 3:
        raise BillIntegrityError(f"a trade bill has a header, rows and a summary; got {len(lines)} lines")
    header = [c.strip() for c in lines[0]]
    missing = [c for c in COLUMNS[:-1] if c not in header]  # 费率备注 is recent: optional
    if missing:
        raise BillIntegrityError(f"the bill's header lacks {', '.join(missing)}")
    at = {name: i for i, name in enumerate(header)}
    try:
        cut = next(i for i, row in enumerate(lines) if row and row[0].strip() == SUMMARY_COLUMNS[0])
    except StopIteration:
        raise BillIntegrityError("the bill has no summary (总交易单数)") from None
    if cut + 1 >= len(lines):
        raise BillIntegrityError("the bill's summary header has no values")

    rows = []
    for n, raw in enumerate(lines[1:cut], start=2):
        f = _fields(raw)
        if len(f) < len(header) - (0 if "费率备注" not in header else 1):
            raise BillIntegrityError(f"line {n}: {len(f)} fields, the header has {len(header)}")

        def get(name: str, f: list[str] = f) -> str:
            i = at.get(name)
            return f[i].strip() if i is not None and i < len(f) else ""

        try:
            when = datetime.strptime(get("交易时间"), "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
        except ValueError:
            raise BillIntegrityError(f"line {n}: 交易时间 {get('交易时间')!r} is not a time") from None
        try:
            fee = Decimal(get("手续费") or "0")
        except InvalidOperation:
            raise BillIntegrityError(f"line {n}: 手续费 {get('手续费')!r} is not an amount") from None
        rows.append(
            BillRow(
                trade_time=when,
                appid=get("公众账号ID"),
                mchid=get("商户号"),
                transaction_id=get("微信订单号"),
                out_trade_no=get("商户订单号"),
                openid=get("用户标识"),
                trade_type=get("交易类型"),
                trade_state=get("交易状态"),
                currency=get("货币种类"),
                settlement_fen=yuan_to_fen(get("应结订单金额"), field=f"line {n} 应结订单金额"),
                coupon_fen=yuan_to_fen(get("代金券金额"), field=f"line {n} 代金券金额"),
                refund_id=get("微信退款单号") if get("微信退款单号") != "0" else "",
                out_refund_no=get("商户退款单号") if get("商户退款单号") != "0" else "",
                refund_fen=yuan_to_fen(get("退款金额"), field=f"line {n} 退款金额"),
                refund_status=get("退款状态"),
                goods=get("商品名称"),
                attach=get("商户数据包"),
                fee_yuan=fee,
                rate=get("费率"),
                order_fen=yuan_to_fen(get("订单金额"), field=f"line {n} 订单金额"),
                requested_refund_fen=yuan_to_fen(get("申请退款金额"), field=f"line {n} 申请退款金额"),
            )
        )

    s = _fields(lines[cut + 1])
    if len(s) < len(SUMMARY_COLUMNS):
        raise BillIntegrityError(f"the summary has {len(s)} values, expected {len(SUMMARY_COLUMNS)}")
    try:
        summary = BillSummary(
            count=int(s[0]),
            settlement_fen=yuan_to_fen(s[1], field="应结订单总金额"),
            refund_fen=yuan_to_fen(s[2], field="退款总金额"),
            coupon_refund_fen=yuan_to_fen(s[3], field="充值券退款总金额"),
            fee_yuan=Decimal(s[4]),
            order_fen=yuan_to_fen(s[5], field="订单总金额"),
            requested_refund_fen=yuan_to_fen(s[6], field="申请退款总金额"),
        )
    except (ValueError, InvalidOperation) as exc:
        raise BillIntegrityError(f"the summary is not numbers: {exc}") from None
    _check_summary(rows, summary)
    return TradeBill(rows=tuple(rows), summary=summary)


def _check_summary(rows: list[BillRow], s: BillSummary) -> None:
    if s.count != len(rows):
        raise BillIntegrityError(f"the summary counts {s.count} rows, the bill has {len(rows)}")
    pays = [r for r in rows if r.trade_state != "REFUND"]
    checks = (
        ("应结订单总金额", s.settlement_fen, sum(r.settlement_fen for r in pays)),
        ("退款总金额", s.refund_fen, sum(r.refund_fen for r in rows)),
        ("订单总金额", s.order_fen, sum(r.order_fen for r in pays)),
        ("手续费总金额", s.fee_yuan, sum((r.fee_yuan for r in rows), Decimal(0))),
    )
    for name, total, computed in checks:
        if total != computed:
            raise BillIntegrityError(f"the summary's {name} is {total}, the rows add up to {computed}")
