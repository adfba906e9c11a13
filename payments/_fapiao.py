"""Fuel e-invoices (成品油电子发票) through WeChat Pay's fapiao application API: the rules, then the request.

Rules a fuel invoice keeps (checked before anything is sent; the tax bureau refuses the rest):
- every line is fuel (成品油) of a known grade, with its quantity: volume in 升 (litres), never empty;
- the buyer is an individual, or an organisation with its taxpayer id (纳税人识别号, mandatory then);
- the seller is the station that sold the fuel (its name and taxpayer id; it is named on the invoice);
- amounts are integer fen and the invoice's total is the sum of its lines.
A refunded sale's invoice is reversed (红冲) with `reverse_request`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from payments._errors import InvalidInvoice

FUEL_CATEGORY = "成品油"
FUEL_UNIT = "升"
VAT_RATE = 1300  # 13 %, in the API's 1/10000 units
QUANTITY_SCALE = 100_000_000  # the API's quantity has 8 decimals: 1 L = 100000000
# Tax classification codes (税收分类编码) of road fuels: confirm with `fapiao_tax_codes` for a merchant.
TAX_CODES = {"汽油": "1070101010100000000", "柴油": "1070101030100000000"}
GRADE_GOODS = {  # grade (geo._pricing.KNOWN_GRADES) -> (tax class, goods name, specification)
    "89": ("汽油", "89号车用汽油", "89号"),
    "92": ("汽油", "92号车用汽油", "92号"),
    "95": ("汽油", "95号车用汽油", "95号"),
    "98": ("汽油", "98号车用汽油", "98号"),
    "0": ("柴油", "0号车用柴油", "0号"),
}
# 统一社会信用代码 (18 characters) or the older 15/17/20-character taxpayer ids.
TAXPAYER_ID = re.compile(
    r"^[0-9A-HJ-NP-RTUW-Y]{2}[0-9]{6}[0-9A-HJ-NP-RTUW-Y]{10}$|^[0-9A-Z]{15}$|^[0-9A-Z]{17}$|^[0-9A-Z]{20}$"
)
APPLY_ID = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
FAPIAO_ID = re.compile(r"^[0-9A-Za-z_-]{1,20}$")


@dataclass(frozen=True)
class Buyer:
    type: Literal["INDIVIDUAL", "ORGANIZATION"]
    name: str
    taxpayer_id: str | None = None
    address: str | None = None
    telephone: str | None = None
    bank_name: str | None = None
    bank_account: str | None = None
    phone: str | None = None  # sent encrypted with the platform public key
    email: str | None = None  # idem


@dataclass(frozen=True)
class Seller:
    """The station that sold the fuel."""

    station_id: int
    name: str
    taxpayer_id: str


@dataclass(frozen=True)
class FuelLine:
    grade: str
    volume_ml: int
    amount_fen: int
    unit: str = FUEL_UNIT


@dataclass(frozen=True)
class FuelInvoice:
    fapiao_apply_id: str  # one per invoicing of a payment (we use the out_trade_no)
    fapiao_id: str  # the merchant's invoice number; a retry after a failed issue takes a new one
    buyer: Buyer
    seller: Seller
    lines: tuple[FuelLine, ...]
    remark: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)


def validate_invoice(inv: FuelInvoice) -> None:
    """Raise InvalidInvoice (param = the field) for the first rule the invoice breaks."""
    if not APPLY_ID.match(inv.fapiao_apply_id):
        raise InvalidInvoice("fapiao_apply_id", "must be 1-32 letters, digits, _ or -")
    if not FAPIAO_ID.match(inv.fapiao_id):
        raise InvalidInvoice("fapiao_id", "must be 1-20 letters, digits, _ or -")
    b = inv.buyer
    if b.type not in ("INDIVIDUAL", "ORGANIZATION"):
        raise InvalidInvoice("buyer.type", f"must be INDIVIDUAL or ORGANIZATION, got {b.type!r}")
    if not b.name.strip() or len(b.name) > 256:
        raise InvalidInvoice("buyer.name", "must have 1 to 256 characters")
    if b.type == "ORGANIZATION" and not b.taxpayer_id:
        raise InvalidInvoice("buyer.taxpayer_id", "is required for an organisation (纳税人识别号)")
    if b.taxpayer_id is not None and not TAXPAYER_ID.match(b.taxpayer_id):
        raise InvalidInvoice(
            "buyer.taxpayer_id",
            f"must be a taxpayer id of 15, 17, 18 or 20 letters and digits, got {b.taxpayer_id!r}",
        )
    s = inv.seller
    if not s.name.strip():
        raise InvalidInvoice("seller.name", "the station's name is required: it is the seller")
    if not TAXPAYER_ID.match(s.taxpayer_id or ""):
        raise InvalidInvoice("seller.taxpayer_id", "the station's taxpayer id is required: it is the seller")
    if not inv.lines:
        raise InvalidInvoice("lines", "needs at least one fuel line")
    if len(inv.lines) > 8:
        raise InvalidInvoice("lines", f"at most 8 lines, got {len(inv.lines)}")
    for i, line in enumerate(inv.lines):
        if line.grade not in GRADE_GOODS:
            raise InvalidInvoice(
                f"lines.{i}.grade", f"must be one of {', '.join(GRADE_GOODS)}, got {line.grade!r}"
            )
        if line.unit != FUEL_UNIT:
            raise InvalidInvoice(
                f"lines.{i}.unit", f"a fuel invoice counts litres: must be {FUEL_UNIT}, got {line.unit!r}"
            )
        if line.volume_ml <= 0:
            raise InvalidInvoice(
                f"lines.{i}.volume_ml", "the quantity is mandatory on a fuel invoice: must be > 0"
            )
        if line.amount_fen <= 0:
            raise InvalidInvoice(f"lines.{i}.amount_fen", "must be a positive number of fen")


def application_request(inv: FuelInvoice) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(buyer_information, fapiao_information) of `fapiao_applications`, after `validate_invoice`."""
    validate_invoice(inv)
    b = inv.buyer
    buyer: dict[str, Any] = {"type": b.type, "name": b.name}
    for key in ("taxpayer_id", "address", "telephone", "bank_name", "bank_account", "phone", "email"):
        value = getattr(b, key)
        if value:
            buyer[key] = value
    items = []
    for line in inv.lines:
        tax_class, goods_name, spec = GRADE_GOODS[line.grade]
        items.append(
            {
                "tax_code": TAX_CODES[tax_class],
                "goods_category": FUEL_CATEGORY,
                "goods_name": goods_name,
                "specification": spec,
                "unit": line.unit,
                # litres with 8 decimals: volume_ml x 10^5, an exact integer
                "quantity": line.volume_ml * (QUANTITY_SCALE // 1000),
                "total_amount": line.amount_fen,
                "tax_rate": VAT_RATE,
                "tax_prefer_mark": "NO_FAVORABLE",
                "discount": False,
            }
        )
    remark = f"{FUEL_CATEGORY} 销售方: {inv.seller.name} ({inv.seller.taxpayer_id})"
    if inv.remark:
        remark = f"{remark}; {inv.remark}"
    fapiao = [
        {
            "fapiao_id": inv.fapiao_id,
            "total_amount": inv.total_fen,
            "need_list": False,
            "remark": remark[:200],
            "items": items,
        }
    ]
    return buyer, fapiao
